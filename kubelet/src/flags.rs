//! The command line (upstream kubelet's flag names) and the parsing of flag
//! values that come as `k=v` lists.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::Parser;

/// berth-kubelet's flags, spelled as upstream's. Settings that also live in
/// the `--config` file are resolved in [`crate::config::Settings`]; a flag
/// wins over the file.
#[derive(Debug, Clone, Parser)]
#[command(name = "berth-kubelet", version, about = "The berth node agent")]
pub struct Flags {
    /// KubeletConfiguration file (kubelet.config.k8s.io/v1beta1, YAML or JSON)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// kubeconfig of the API server to join; without it the kubelet runs
    /// standalone (static pods only)
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig with bootstrap credentials (TLS bootstrap; not
    /// implemented yet: refused when --kubeconfig does not exist)
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// The kubelet's own state folder
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// Node name to use instead of the host name
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// CRI runtime socket (unix:///path); default berthd's
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// CRI image service socket; default the runtime endpoint
    #[arg(long)]
    pub image_service_endpoint: Option<String>,
    /// Static pod folder (staticPodPath in the config file)
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Labels for the Node (key=value,...)
    #[arg(long, value_parser = parse_labels_arg)]
    pub node_labels: Option<BTreeMap<String, String>>,
    /// Taints the node registers with (key[=value]:Effect,...)
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// The node's IP address
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Log verbosity (0: lifecycle events, 2-3: debug, 4+: trace)
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,
}

impl Flags {
    /// Parse an argument list (the first item is the program name).
    pub fn parse_from_args<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::parse_from(args)
    }
}

fn parse_labels_arg(s: &str) -> Result<BTreeMap<String, String>, FlagError> {
    parse_labels(s)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("label {0:?} is not of the form key=value")]
    NotKeyValue(String),
    #[error("label key {0:?} is not a valid qualified name")]
    BadKey(String),
    #[error("label value {0:?} is not a valid label value")]
    BadValue(String),
}

fn is_name(s: &str) -> bool {
    // A qualified name part: 1-63 chars, alphanumeric at both ends, [-_.] inside.
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A DNS label (RFC 1123): 1-63 of [a-z0-9-], alphanumeric at both ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !p.starts_with('-')
                && !p.ends_with('-')
        })
}

/// Parse `--node-labels` (`a=b,example.com/c=d`) the way the API server
/// validates label keys and values.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, FlagError> {
    let mut out = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| FlagError::NotKeyValue(item.to_owned()))?;
        let key_ok = match k.split_once('/') {
            Some((prefix, name)) => is_dns_subdomain(prefix) && is_name(name),
            None => is_name(k),
        };
        if !key_ok {
            return Err(FlagError::BadKey(k.to_owned()));
        }
        if !(v.is_empty() || is_name(v)) {
            return Err(FlagError::BadValue(v.to_owned()));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_prefixed_labels() {
        let m = parse_labels("a=b, node-role.kubernetes.io/worker=,x.example.com/y=z-1").unwrap();
        assert_eq!(m["a"], "b");
        assert_eq!(m["node-role.kubernetes.io/worker"], "");
        assert_eq!(m["x.example.com/y"], "z-1");
    }

    #[test]
    fn rejects_invalid_labels() {
        assert_eq!(
            parse_labels("novalue"),
            Err(FlagError::NotKeyValue("novalue".into()))
        );
        assert_eq!(parse_labels("-a=b"), Err(FlagError::BadKey("-a".into())));
        assert_eq!(
            parse_labels("Bad_Prefix/a=b"),
            Err(FlagError::BadKey("Bad_Prefix/a".into()))
        );
        assert_eq!(
            parse_labels("a=b c"),
            Err(FlagError::BadValue("b c".into()))
        );
    }
}
