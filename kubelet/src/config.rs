//! The kubelet's settings: a KubeletConfiguration file
//! (`kubelet.config.k8s.io/v1beta1`, YAML or JSON) with the command-line
//! flags on top, resolved once into [`Settings`]. Fields berth-kubelet does
//! not implement are reported by name (and ignored), never silently dropped.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::duration::parse_go_duration;
use crate::error::{Error, Result};
use crate::flags::Flags;

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";
/// berthd's socket: the runtime berth-kubelet is built to drive.
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/berth/berthd.sock";

/// The KubeletConfiguration fields berth-kubelet implements. Everything else
/// in the file is reported with a warning and ignored.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileConfig {
    pub static_pod_path: Option<PathBuf>,
    #[serde(default, deserialize_with = "go_duration")]
    pub file_check_frequency: Option<Duration>,
    #[serde(default, deserialize_with = "go_duration")]
    pub sync_frequency: Option<Duration>,
    pub container_runtime_endpoint: Option<String>,
    pub image_service_endpoint: Option<String>,
    #[serde(default, deserialize_with = "go_duration")]
    pub runtime_request_timeout: Option<Duration>,
    pub pod_logs_dir: Option<PathBuf>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<IpAddr>>,
    pub cluster_domain: Option<String>,
    pub resolv_conf: Option<PathBuf>,
    pub max_pods: Option<u32>,
    #[serde(default, deserialize_with = "go_duration")]
    pub node_status_update_frequency: Option<Duration>,
    #[serde(default, deserialize_with = "go_duration")]
    pub node_status_report_frequency: Option<Duration>,
    pub node_lease_duration_seconds: Option<u32>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    pub cgroup_root: Option<String>,
    pub cgroup_driver: Option<String>,
    pub user_namespaces: Option<UserNamespacesConfig>,
}

/// `userNamespaces`: pod user namespaces (`spec.hostUsers: false`).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserNamespacesConfig {
    /// Host ids per pod: a multiple of 65536 (default 65536).
    pub ids_per_pod: Option<i64>,
}

/// The keys of [`FileConfig`] as they are spelled in the file.
const IMPLEMENTED: &[&str] = &[
    "staticPodPath",
    "fileCheckFrequency",
    "syncFrequency",
    "containerRuntimeEndpoint",
    "imageServiceEndpoint",
    "runtimeRequestTimeout",
    "podLogsDir",
    "clusterDNS",
    "clusterDomain",
    "resolvConf",
    "maxPods",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "cgroupsPerQOS",
    "cgroupRoot",
    "cgroupDriver",
    "userNamespaces",
];

fn go_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    s.map(|s| parse_go_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// A YAML or JSON document as a JSON value (JSON first: it is also YAML, but
/// its own parser gives better positions in errors).
pub fn parse_document(text: &str) -> std::result::Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// Parse a KubeletConfiguration file's text. Returns the implemented fields
/// and one warning per field that is not implemented.
pub fn parse_config(path: &Path, text: &str) -> Result<(FileConfig, Vec<String>)> {
    let err = |message: String| Error::Config {
        path: path.to_owned(),
        message,
    };
    let doc = parse_document(text).map_err(err)?;
    let Value::Object(mut map) = doc else {
        return Err(err("not a mapping (want a KubeletConfiguration)".into()));
    };
    match map.remove("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(v) => return Err(err(format!("apiVersion {v}: want {API_VERSION:?}"))),
        None => return Err(err(format!("apiVersion missing: want {API_VERSION:?}"))),
    }
    match map.remove("kind") {
        Some(Value::String(v)) if v == KIND => {}
        Some(v) => return Err(err(format!("kind {v}: want {KIND:?}"))),
        None => return Err(err(format!("kind missing: want {KIND:?}"))),
    }
    let mut warnings = Vec::new();
    let mut known = serde_json::Map::new();
    for (k, v) in map {
        if IMPLEMENTED.contains(&k.as_str()) {
            if !v.is_null() {
                known.insert(k, v);
            }
        } else {
            warnings.push(format!(
                "kubelet config {}: field {k:?} is not implemented by berth-kubelet, ignored",
                path.display()
            ));
        }
    }
    let cfg: FileConfig = serde_path_to_error::deserialize(Value::Object(known))
        .map_err(|e| err(format!("{}: {}", e.path(), e.inner())))?;
    Ok((cfg, warnings))
}

/// What the kubelet runs with: the config file's fields, flags on top,
/// defaults for the rest (upstream's defaults).
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub root_dir: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub node_ip: Option<IpAddr>,
    pub runtime_endpoint: String,
    pub image_endpoint: String,
    pub runtime_request_timeout: Duration,
    pub static_pod_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    pub sync_frequency: Duration,
    pub pod_logs_dir: PathBuf,
    pub dns: DnsSettings,
    pub max_pods: u32,
    pub node_labels: std::collections::BTreeMap<String, String>,
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration: Duration,
    /// Pod cgroups by QoS (`pod_cgroups.rs`) under `cgroup_root`.
    pub cgroups_per_qos: bool,
    pub cgroup_root: String,
    /// `cgroupDriver: systemd`: the QoS and pod levels are slices.
    pub cgroup_driver_systemd: bool,
    /// `userNamespaces.idsPerPod`: the host ids of each pod user namespace.
    pub userns_ids_per_pod: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: Option<String>,
    /// The host's resolv.conf for `dnsPolicy: Default` (empty: none).
    pub resolv_conf: Option<PathBuf>,
}

impl Settings {
    /// Read the config file the flags name (if any) and resolve.
    /// Returns the settings and the warnings to log.
    pub fn load(flags: &Flags) -> Result<(Settings, Vec<String>)> {
        let (file, warnings) = match &flags.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    path: p.clone(),
                    message: format!("cannot read: {e}"),
                })?;
                parse_config(p, &text)?
            }
            None => (FileConfig::default(), Vec::new()),
        };
        Ok((Self::resolve(flags, file)?, warnings))
    }

    pub fn resolve(flags: &Flags, file: FileConfig) -> Result<Settings> {
        let node_name = match &flags.hostname_override {
            Some(h) => h.trim().to_lowercase(),
            None => hostname()?.to_lowercase(),
        };
        if !crate::flags::is_dns_subdomain(&node_name) {
            return Err(Error::Flag {
                flag: "--hostname-override",
                message: format!("node name {node_name:?} is not a valid DNS subdomain"),
            });
        }
        let runtime_endpoint = flags
            .container_runtime_endpoint
            .clone()
            .or(file.container_runtime_endpoint)
            .unwrap_or_else(|| DEFAULT_RUNTIME_ENDPOINT.to_owned());
        let image_endpoint = flags
            .image_service_endpoint
            .clone()
            .or(file.image_service_endpoint)
            .unwrap_or_else(|| runtime_endpoint.clone());
        let static_pod_path = flags.pod_manifest_path.clone().or(file.static_pod_path);
        let resolv_conf = match file.resolv_conf {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(p),
            None => Some(PathBuf::from("/etc/resolv.conf")),
        };
        if let Some(d) = &file.cluster_domain
            && !crate::flags::is_dns_subdomain(d.trim_end_matches('.'))
        {
            return Err(Error::Flag {
                flag: "clusterDomain",
                message: format!("{d:?} is not a valid DNS domain"),
            });
        }
        if flags.bootstrap_kubeconfig.is_some()
            && !flags.kubeconfig.as_ref().is_some_and(|k| k.exists())
        {
            return Err(Error::Flag {
                flag: "--bootstrap-kubeconfig",
                message: "TLS bootstrap is not implemented yet: give a --kubeconfig that exists"
                    .into(),
            });
        }
        let register_with_taints = flags
            .register_with_taints
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| crate::node::parse_taint(t.trim()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|message| Error::Flag {
                flag: "--register-with-taints",
                message,
            })?;
        let cgroups_per_qos = file.cgroups_per_qos.unwrap_or(true);
        let cgroup_driver_systemd = match file.cgroup_driver.as_deref() {
            None | Some("cgroupfs") => false,
            Some("systemd") => true,
            Some(d) => {
                return Err(Error::Flag {
                    flag: "cgroupDriver",
                    message: format!("{d:?} is not a cgroup driver (cgroupfs or systemd)"),
                });
            }
        };
        let cgroup_root = file.cgroup_root.unwrap_or_else(|| "/".into());
        if cgroup_driver_systemd && cgroups_per_qos && cgroup_root != "/" {
            return Err(Error::Flag {
                flag: "cgroupRoot",
                message: format!(
                    "{cgroup_root:?} with the systemd driver: only \"/\" is implemented (kubepods.slice at the root)"
                ),
            });
        }
        if !cgroup_root.starts_with('/') || cgroup_root.split('/').any(|c| c == "..") {
            return Err(Error::Flag {
                flag: "cgroupRoot",
                message: format!("{cgroup_root:?} is not an absolute cgroup path"),
            });
        }
        let userns_ids_per_pod = match file.user_namespaces.and_then(|u| u.ids_per_pod) {
            None => crate::userns::BLOCK,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n > 0 && n.is_multiple_of(crate::userns::BLOCK))
                .ok_or_else(|| Error::Flag {
                    flag: "userNamespaces.idsPerPod",
                    message: format!(
                        "{n} is not a positive multiple of {} below 2^32",
                        crate::userns::BLOCK
                    ),
                })?,
        };
        let lease_secs = file.node_lease_duration_seconds.unwrap_or(40);
        if lease_secs == 0 {
            return Err(Error::Flag {
                flag: "nodeLeaseDurationSeconds",
                message: "must be positive".into(),
            });
        }
        Ok(Settings {
            node_name,
            root_dir: flags.root_dir.clone(),
            kubeconfig: flags.kubeconfig.clone(),
            node_ip: flags.node_ip,
            runtime_endpoint,
            image_endpoint,
            runtime_request_timeout: file
                .runtime_request_timeout
                .unwrap_or(Duration::from_secs(120)),
            static_pod_path,
            file_check_frequency: file.file_check_frequency.unwrap_or(Duration::from_secs(20)),
            sync_frequency: file.sync_frequency.unwrap_or(Duration::from_secs(60)),
            pod_logs_dir: file
                .pod_logs_dir
                .unwrap_or_else(|| PathBuf::from("/var/log/pods")),
            dns: DnsSettings {
                cluster_dns: file.cluster_dns.unwrap_or_default(),
                cluster_domain: file
                    .cluster_domain
                    .map(|d| d.trim_end_matches('.').to_owned()),
                resolv_conf,
            },
            max_pods: file.max_pods.unwrap_or(110),
            node_labels: flags.node_labels.clone().unwrap_or_default(),
            register_with_taints,
            node_status_update_frequency: file
                .node_status_update_frequency
                .unwrap_or(Duration::from_secs(10)),
            node_status_report_frequency: file
                .node_status_report_frequency
                .unwrap_or(Duration::from_secs(300)),
            node_lease_duration: Duration::from_secs(lease_secs.into()),
            cgroups_per_qos,
            cgroup_root,
            cgroup_driver_systemd,
            userns_ids_per_pod,
        })
    }
}

fn hostname() -> Result<String> {
    let p = Path::new("/proc/sys/kernel/hostname");
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(FileConfig, Vec<String>)> {
        parse_config(Path::new("/etc/kubelet.yaml"), text)
    }

    #[test]
    fn parses_yaml_with_implemented_and_other_fields() {
        let (cfg, warnings) = parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             staticPodPath: /etc/kubernetes/manifests\nfileCheckFrequency: 5s\n\
             clusterDNS: [10.96.0.10]\nclusterDomain: cluster.local\n\
             evictionHard:\n  memory.available: 100Mi\nauthentication: {}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.static_pod_path.as_deref(),
            Some(Path::new("/etc/kubernetes/manifests"))
        );
        assert_eq!(cfg.file_check_frequency, Some(Duration::from_secs(5)));
        assert_eq!(cfg.cluster_dns.unwrap()[0].to_string(), "10.96.0.10");
        assert_eq!(warnings.len(), 2);
        assert!(warnings.iter().any(|w| w.contains("\"evictionHard\"")));
        assert!(warnings.iter().any(|w| w.contains("\"authentication\"")));
    }

    #[test]
    fn parses_json() {
        let (cfg, w) = parse(
            r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","syncFrequency":"1m30s","maxPods":20}"#,
        )
        .unwrap();
        assert_eq!(cfg.sync_frequency, Some(Duration::from_secs(90)));
        assert_eq!(cfg.max_pods, Some(20));
        assert!(w.is_empty());
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfileCheckFrequency: 5 seconds\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("kubelet config /etc/kubelet.yaml: fileCheckFrequency:"),
            "{e}"
        );
        let e = parse("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [not-an-ip]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("clusterDNS[0]"), "{e}");
        let e = parse("apiVersion: v1\nkind: KubeletConfiguration\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("apiVersion \"v1\""), "{e}");
        let e = parse("kind: KubeletConfiguration\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("apiVersion missing"), "{e}");
        assert!(
            parse("- a\n- b\n")
                .unwrap_err()
                .to_string()
                .contains("not a mapping")
        );
        assert!(parse("a: [b\n").is_err());
    }

    #[test]
    fn the_cgroup_driver_is_cgroupfs_or_systemd_at_the_root() {
        let flags = Flags::parse_from_args(["berth-kubelet", "--hostname-override=n"]);
        let with = |driver: &str, root: Option<&str>| {
            Settings::resolve(
                &flags,
                FileConfig {
                    cgroup_driver: Some(driver.into()),
                    cgroup_root: root.map(str::to_owned),
                    ..Default::default()
                },
            )
        };
        assert!(with("systemd", None).unwrap().cgroup_driver_systemd);
        assert!(!with("cgroupfs", Some("/x")).unwrap().cgroup_driver_systemd);
        let e = with("systemd", Some("/x")).unwrap_err().to_string();
        assert!(e.contains("cgroupRoot") && e.contains("systemd"), "{e}");
        let e = with("cgroupsv2", None).unwrap_err().to_string();
        assert!(e.contains("cgroupDriver") && e.contains("cgroupsv2"), "{e}");
    }

    #[test]
    fn ids_per_pod_are_whole_blocks() {
        let (cfg, w) = parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nuserNamespaces: {idsPerPod: 131072}\n",
        )
        .unwrap();
        assert!(w.is_empty());
        let flags = Flags::parse_from_args(["berth-kubelet", "--hostname-override=n"]);
        assert_eq!(
            Settings::resolve(&flags, cfg).unwrap().userns_ids_per_pod,
            131072
        );
        assert_eq!(
            Settings::resolve(&flags, FileConfig::default())
                .unwrap()
                .userns_ids_per_pod,
            65536
        );
        for bad in [0, 1000, -65536, 1 << 32] {
            let cfg = FileConfig {
                user_namespaces: Some(UserNamespacesConfig {
                    ids_per_pod: Some(bad),
                }),
                ..Default::default()
            };
            let e = Settings::resolve(&flags, cfg).unwrap_err().to_string();
            assert!(e.starts_with("userNamespaces.idsPerPod: "), "{e}");
        }
        assert!(parse(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nuserNamespaces: {idsPerPods: 1}\n"
        )
        .unwrap_err()
        .to_string()
        .contains("userNamespaces"));
    }

    #[test]
    fn flags_override_the_file() {
        let flags = Flags::parse_from_args([
            "berth-kubelet",
            "--hostname-override=Node-1",
            "--container-runtime-endpoint=unix:///tmp/x.sock",
        ]);
        let file = FileConfig {
            container_runtime_endpoint: Some("unix:///run/containerd/containerd.sock".into()),
            static_pod_path: Some("/m".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&flags, file).unwrap();
        assert_eq!(s.node_name, "node-1");
        assert_eq!(s.runtime_endpoint, "unix:///tmp/x.sock");
        assert_eq!(s.image_endpoint, "unix:///tmp/x.sock");
        assert_eq!(s.static_pod_path.as_deref(), Some(Path::new("/m")));
        assert_eq!(s.file_check_frequency, Duration::from_secs(20));
        let s = Settings::resolve(
            &Flags::parse_from_args(["berth-kubelet", "--hostname-override=n"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(s.runtime_endpoint, DEFAULT_RUNTIME_ENDPOINT);
        assert!(
            Settings::resolve(
                &Flags::parse_from_args(["berth-kubelet", "--hostname-override=bad_name"]),
                FileConfig::default()
            )
            .is_err()
        );
    }
}
