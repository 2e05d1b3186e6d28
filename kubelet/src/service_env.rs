//! Service environment variables (docker-link style), as upstream's kubelet
//! makes them: for every Service of the pod's namespace with a cluster IP
//! (when `enableServiceLinks`, the default), and always the API server's
//! `kubernetes` Service from `default`, `<NAME>_SERVICE_HOST`,
//! `<NAME>_SERVICE_PORT[_<PORTNAME>]` and the `<NAME>_PORT*` family. The
//! container's own variables win over these.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;

/// The master Service every pod learns about.
const MASTER: (&str, &str) = ("default", "kubernetes");

fn has_cluster_ip(s: &api::Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The variables for a pod of `namespace`, sorted by name.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a api::Service>,
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &api::Service> = BTreeMap::new();
    for s in services {
        if !has_cluster_ip(s) {
            continue;
        }
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        let name = s.metadata.name.as_deref().unwrap_or_default();
        if (ns, name) == MASTER {
            chosen.entry(name.to_owned()).or_insert(s);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name.to_owned(), s);
        }
    }
    let mut out = BTreeMap::new();
    for (name, s) in chosen {
        let spec = s.spec.as_ref().expect("has a cluster IP");
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
        if let Some(first) = ports.first() {
            out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        }
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!(
                        "{prefix}_SERVICE_PORT_{}",
                        n.to_uppercase().replace('-', "_")
                    ),
                    p.port.to_string(),
                );
            }
        }
        // The docker link variables.
        let proto = |p: &api::ServicePort| p.protocol.as_deref().unwrap_or("TCP").to_owned();
        let url = |p: &api::ServicePort| {
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.clone()
            };
            format!("{}://{host}:{}", proto(p).to_lowercase(), p.port)
        };
        if let Some(first) = ports.first() {
            out.insert(format!("{prefix}_PORT"), url(first));
        }
        for p in ports {
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto(p).to_uppercase());
            out.insert(format!("{base}_PROTO"), proto(p).to_lowercase());
            out.insert(format!("{base}_PORT"), p.port.to_string());
            out.insert(format!("{base}_ADDR"), ip.clone());
            out.insert(base, url(p));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: &str) -> api::Service {
        let y = format!(
            "metadata: {{namespace: {ns}, name: {name}}}\nspec: {{clusterIP: '{ip}', ports: [{ports}]}}\n"
        );
        let v: serde_json::Value = serde_saphyr::from_str(&y).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn variables_as_upstream_names_them() {
        let all = [
            svc(
                "default",
                "kubernetes",
                "10.0.0.1",
                "{name: https, port: 443}",
            ),
            svc(
                "apps",
                "my-web",
                "10.0.0.20",
                "{name: http-alt, port: 8080}, {port: 53, protocol: UDP}",
            ),
            svc("apps", "headless", "None", "{port: 80}"),
            svc("other", "elsewhere", "10.0.0.30", "{port: 80}"),
        ];
        let env: BTreeMap<_, _> = service_env(&all, "apps", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.0.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.0.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.0.0.1");
        assert_eq!(env["MY_WEB_SERVICE_HOST"], "10.0.0.20");
        assert_eq!(env["MY_WEB_SERVICE_PORT"], "8080");
        assert_eq!(env["MY_WEB_SERVICE_PORT_HTTP_ALT"], "8080");
        assert_eq!(env["MY_WEB_PORT_53_UDP"], "udp://10.0.0.20:53");
        assert!(!env.keys().any(|k| k.starts_with("HEADLESS_")));
        assert!(!env.keys().any(|k| k.starts_with("ELSEWHERE_")));

        let env: BTreeMap<_, _> = service_env(&all, "apps", false).into_iter().collect();
        assert!(env.contains_key("KUBERNETES_SERVICE_HOST"));
        assert!(!env.keys().any(|k| k.starts_with("MY_WEB_")));
    }
}
