//! A pod's DNS settings (the CRI's DnsConfig) from its dnsPolicy, the
//! kubelet's clusterDNS/clusterDomain and the host's resolv.conf.

use k8s_cri::v1::DnsConfig;

use crate::config::DnsSettings;
use crate::pod::{DnsPolicy, Pod};

/// The parts of a resolv.conf a pod inherits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Parse resolv.conf text. Unknown lines are skipped, as the resolver does.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut r = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => r.servers.extend(words.next().map(str::to_owned)),
            // The last search or domain line wins.
            Some("search") | Some("domain") => r.searches = words.map(str::to_owned).collect(),
            Some("options") => r.options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    r
}

/// The DNS config the runtime writes into the pod's resolv.conf.
pub fn pod_dns(pod: &Pod, settings: &DnsSettings, host: &ResolvConf) -> DnsConfig {
    let cluster = !settings.cluster_dns.is_empty();
    let policy = match pod.dns_policy {
        DnsPolicy::ClusterFirst if pod.host_network => DnsPolicy::Default,
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet if !cluster => {
            DnsPolicy::Default
        }
        p => p,
    };
    let mut cfg = match policy {
        DnsPolicy::None => DnsConfig::default(),
        DnsPolicy::Default => DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        },
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet => {
            let mut searches = Vec::new();
            if let Some(d) = &settings.cluster_domain {
                searches.push(format!("{}.svc.{d}", pod.namespace));
                searches.push(format!("svc.{d}"));
                searches.push(d.clone());
            }
            searches.extend(
                host.searches
                    .iter()
                    .filter(|s| !searches.contains(s))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            DnsConfig {
                servers: settings
                    .cluster_dns
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = &pod.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            cfg.options.retain(|x| x.split(':').next() != Some(name));
            cfg.options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_owned(),
            });
        }
    }
    // The resolver reads at most 3 name servers; more only confuse it.
    cfg.servers.truncate(3);
    cfg.searches.truncate(32);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: &str) -> Pod {
        let y = format!(
            "metadata: {{name: p, namespace: ns1, uid: u}}\nspec: {{containers: [{{name: a, image: b}}]{extra}}}\n"
        );
        let v: serde_json::Value = serde_saphyr::from_str(&y).unwrap();
        Pod::from_api(serde_json::from_value(v).unwrap()).unwrap().0
    }

    fn host() -> ResolvConf {
        parse_resolv_conf(
            "# generated\nnameserver 192.168.1.1\nnameserver 1.1.1.1 ; second\nsearch lan example.com\noptions edns0\nbogus line\n",
        )
    }

    #[test]
    fn parses_resolv_conf() {
        let r = host();
        assert_eq!(r.servers, ["192.168.1.1", "1.1.1.1"]);
        assert_eq!(r.searches, ["lan", "example.com"]);
        assert_eq!(r.options, ["edns0"]);
    }

    #[test]
    fn cluster_first_with_and_without_cluster_dns() {
        let s = DnsSettings {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            cluster_domain: Some("cluster.local".into()),
            resolv_conf: None,
        };
        let c = pod_dns(&pod(""), &s, &host());
        assert_eq!(c.servers, ["10.96.0.10"]);
        assert_eq!(
            c.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lan",
                "example.com"
            ]
        );
        assert_eq!(c.options, ["ndots:5"]);
        // Host network: the host's DNS unless ClusterFirstWithHostNet.
        assert_eq!(
            pod_dns(&pod(", hostNetwork: true"), &s, &host()).servers,
            ["192.168.1.1", "1.1.1.1"]
        );
        assert_eq!(
            pod_dns(
                &pod(", hostNetwork: true, dnsPolicy: ClusterFirstWithHostNet"),
                &s,
                &host()
            )
            .servers,
            ["10.96.0.10"]
        );
        // No cluster DNS configured: the host's.
        let none = DnsSettings {
            cluster_dns: vec![],
            cluster_domain: None,
            resolv_conf: None,
        };
        assert_eq!(
            pod_dns(&pod(""), &none, &host()),
            DnsConfig {
                servers: host().servers,
                searches: host().searches,
                options: host().options
            }
        );
    }

    #[test]
    fn dns_policy_none_and_dns_config() {
        let none = DnsSettings {
            cluster_dns: vec![],
            cluster_domain: None,
            resolv_conf: None,
        };
        let p = pod(
            ", dnsPolicy: None, dnsConfig: {nameservers: [9.9.9.9], searches: [a.b], options: [{name: ndots, value: '2'}, {name: rotate}]}",
        );
        let c = pod_dns(&p, &none, &host());
        assert_eq!(c.servers, ["9.9.9.9"]);
        assert_eq!(c.searches, ["a.b"]);
        assert_eq!(c.options, ["ndots:2", "rotate"]);
    }
}
