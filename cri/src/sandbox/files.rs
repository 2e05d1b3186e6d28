//! The files a pod's containers see as /etc/hostname, /etc/hosts and
//! /etc/resolv.conf.

use std::path::Path;

use super::model::{Dns, SandboxSpec};

pub fn resolv_conf(dns: Option<&Dns>, host_resolv: &str) -> String {
    let Some(dns) = dns else {
        return host_resolv.to_owned();
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

pub fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// The hostname the pod's containers get: the requested one, else (and
/// always with the host's network) the node's, as containerd does.
pub fn hostname(spec: &SandboxSpec) -> String {
    if spec.network == super::model::NsMode::Node || spec.hostname.is_empty() {
        return nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    spec.hostname.clone()
}

pub fn write_all(dir: &Path, spec: &SandboxSpec, ip: Option<&str>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let name = hostname(spec);
    std::fs::write(dir.join("hostname"), format!("{name}\n"))?;
    std::fs::write(dir.join("hosts"), hosts(&name, ip))?;
    std::fs::write(
        dir.join("resolv.conf"),
        resolv_conf(spec.dns.as_ref(), &host_resolv),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = Dns {
            servers: vec!["10.96.0.10".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns), "nameserver 1.1.1.1\n"),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert_eq!(
            resolv_conf(None, "nameserver 9.9.9.9\n"),
            "nameserver 9.9.9.9\n"
        );
    }

    #[test]
    fn hosts_names_the_pod_ip() {
        assert!(hosts("web-0", Some("10.89.0.7")).ends_with("10.89.0.7\tweb-0\n"));
        assert!(hosts("web-0", None).starts_with("127.0.0.1\tlocalhost\n"));
    }
}
