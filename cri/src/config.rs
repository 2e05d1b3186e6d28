//! berthd's configuration: a TOML file (`/etc/berth/berthd.toml` by default),
//! every key overridable by a flag, every path configurable so tests run
//! isolated instances side by side.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berthd.toml";

/// Which cgroup driver containers are placed with (CRI `RuntimeConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

/// One runtime handler (a RuntimeClass's `handler`): an OCI runtime binary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// The OCI runtime binary (`berth-runc`, `runc`, `crun`).
    pub path: PathBuf,
    /// The runtime's `--root` state folder; default `<state_dir>/runtime/<name>`.
    #[serde(default)]
    pub root: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The CRI socket.
    pub socket: PathBuf,
    /// Durable state: images, snapshots, the metadata store.
    pub root_dir: PathBuf,
    /// Runtime state, gone after a reboot: bundles, monitor sockets.
    pub state_dir: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// Parent cgroup for pods when the kubelet gives none.
    pub cgroup_parent: String,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// containerd-style `certs.d/<host>/hosts.toml` mirror configuration.
    pub registry_config_path: Option<PathBuf>,
    pub sandbox_image: String,
    pub default_runtime: String,
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    /// Address the streaming server (exec/attach/port-forward) binds to.
    pub stream_address: String,
    /// Address of the Prometheus `/metrics` endpoint; empty: none.
    pub metrics_address: String,
    /// A streaming connection idle this long is closed ("4h", "90s", "30m";
    /// "0": never), as containerd's `stream_idle_timeout`.
    pub stream_idle_timeout: String,
    /// TLS for the streaming server: a PEM certificate chain and its PEM
    /// private key (both or neither); URLs are then `https://`.
    pub stream_tls_cert_file: Option<PathBuf>,
    pub stream_tls_key_file: Option<PathBuf>,
    /// The per-pod monitor; a bare name is looked up next to berthd first.
    pub shim_path: PathBuf,
    /// The pause binary for pods that share a PID namespace; looked up like
    /// `shim_path`.
    pub pause_path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let runtime = RuntimeHandler {
            path: PathBuf::from("berth-runc"),
            root: None,
        };
        Config {
            socket: PathBuf::from("/run/berth/berthd.sock"),
            root_dir: PathBuf::from("/var/lib/berth"),
            state_dir: PathBuf::from("/run/berth"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            cgroup_parent: "/berth".to_owned(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            registry_config_path: None,
            sandbox_image: "registry.k8s.io/pause:3.10".to_owned(),
            default_runtime: "berth-runc".to_owned(),
            runtimes: BTreeMap::from([("berth-runc".to_owned(), runtime)]),
            stream_address: "127.0.0.1:0".to_owned(),
            metrics_address: String::new(),
            stream_idle_timeout: "4h".to_owned(),
            stream_tls_cert_file: None,
            stream_tls_key_file: None,
            shim_path: PathBuf::from("berth-shim"),
            pause_path: PathBuf::from("berth-pause"),
        }
    }
}

impl Config {
    /// Load the file at `path`. A missing file is an error only when the
    /// caller named it explicitly; the default path may be absent.
    pub fn load(path: &Path, explicit: bool) -> Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(Error::ConfigRead {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        let cfg: Config = toml::from_str(&text).map_err(|e| Error::ConfigParse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|message| Error::ConfigParse {
            path: path.to_owned(),
            message,
        })?;
        Ok(cfg)
    }

    /// `stream_idle_timeout` as a duration; `None`: never.
    pub fn stream_idle(&self) -> std::result::Result<Option<std::time::Duration>, String> {
        let t = self.stream_idle_timeout.trim();
        if t == "0" || t.is_empty() {
            return Ok(None);
        }
        let bad = || {
            format!("stream_idle_timeout {t:?}: want a number with s, m or h (\"4h\"), or \"0\"")
        };
        let (num, unit) = t.split_at(t.len() - 1);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => n,
            "m" => n.checked_mul(60).ok_or_else(bad)?,
            "h" => n.checked_mul(3600).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok((secs > 0).then(|| std::time::Duration::from_secs(secs)))
    }

    /// Checks that cannot be expressed in the types.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.stream_idle()?;
        match (&self.stream_tls_cert_file, &self.stream_tls_key_file) {
            (Some(_), None) => {
                return Err("stream_tls_cert_file is set without stream_tls_key_file".into());
            }
            (None, Some(_)) => {
                return Err("stream_tls_key_file is set without stream_tls_cert_file".into());
            }
            _ => {}
        }
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(format!(
                "default_runtime {:?} is not a key of [runtimes] (have: {})",
                self.default_runtime,
                self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (key, p) in [
            ("root_dir", &self.root_dir),
            ("state_dir", &self.state_dir),
            ("socket", &self.socket),
        ] {
            if !p.is_absolute() {
                return Err(format!("{key} {} is not an absolute path", p.display()));
            }
        }
        Ok(())
    }

    /// Whether a CNI network configuration is present (NetworkReady).
    pub fn cni_config_present(&self) -> bool {
        std::fs::read_dir(&self.cni_conf_dir)
            .map(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.ends_with(".conflist")
                        || name.ends_with(".conf")
                        || name.ends_with(".json")
                })
            })
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_idle_timeout_parses_or_names_the_key() {
        let with = |t: &str| Config {
            stream_idle_timeout: t.into(),
            ..Config::default()
        };
        let secs = |t: &str| with(t).stream_idle().unwrap().map(|d| d.as_secs());
        assert_eq!(secs("4h"), Some(14400));
        assert_eq!(secs("30m"), Some(1800));
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("0"), None);
        for bad in ["4", "h", "1d", "-1s", "1.5h", "99999999999999999h"] {
            let e = with(bad).validate().unwrap_err();
            assert!(e.contains("stream_idle_timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn stream_tls_wants_both_files() {
        let cert_only = Config {
            stream_tls_cert_file: Some("/c.pem".into()),
            ..Config::default()
        };
        let e = cert_only.validate().unwrap_err();
        assert!(e.contains("without stream_tls_key_file"), "{e}");
        let key_only = Config {
            stream_tls_key_file: Some("/k.pem".into()),
            ..Config::default()
        };
        let e = key_only.validate().unwrap_err();
        assert!(e.contains("without stream_tls_cert_file"), "{e}");
    }

    #[test]
    fn parses_a_full_file_and_keeps_defaults_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.toml");
        std::fs::write(
            &path,
            r#"
socket = "/tmp/x/berthd.sock"
cgroup_driver = "systemd"
default_runtime = "runc"
[runtimes.runc]
path = "/usr/sbin/runc"
"#,
        )
        .unwrap();
        let cfg = Config::load(&path, true).unwrap();
        assert_eq!(cfg.socket, PathBuf::from("/tmp/x/berthd.sock"));
        assert_eq!(cfg.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(cfg.runtimes["runc"].path, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(cfg.root_dir, PathBuf::from("/var/lib/berth"));
    }

    #[test]
    fn names_the_bad_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berthd.toml");
        std::fs::write(&path, "sockett = \"/x\"\n").unwrap();
        let err = Config::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("sockett"), "{err}");

        std::fs::write(&path, "default_runtime = \"nope\"\n").unwrap();
        let err = Config::load(&path, true).unwrap_err().to_string();
        assert!(err.contains("default_runtime \"nope\""), "{err}");
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_file_is_not() {
        let p = Path::new("/nonexistent/berthd.toml");
        assert_eq!(Config::load(p, false).unwrap(), Config::default());
        assert!(Config::load(p, true).is_err());
    }
}
