//! CNI: the network of a pod sandbox, per the CNI spec (1.0 and the 0.3/0.4
//! results that older plugins print). berthd runs the plugin chain of the
//! first network config in `cni_conf_dir` with ADD, CHECK and DEL, caches
//! each ADD's result and config so DEL runs with exactly what ADD used (also
//! after a restart or a config change), and bounds every plugin call with a
//! timeout.
//!
//! Never: touch a network namespace other than the one it is given, or keep
//! state anywhere but `cache_dir`.

mod config;
mod exec;
mod result;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{NetworkList, load_network};
pub use exec::PluginError;
pub use result::{CniResult, IpConfig};

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cni: no network config (*.conflist, *.conf, *.json) in {0}")]
    NoConfig(PathBuf),
    #[error("cni config {path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("cni config {path}: read")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cni {network}: {command} {plugin}")]
    Plugin {
        network: String,
        command: &'static str,
        plugin: String,
        #[source]
        source: PluginError,
    },
    #[error("cni {network}: result of {plugin}: {message}")]
    BadResult {
        network: String,
        plugin: String,
        message: String,
    },
    #[error("cni cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A port mapping, as CNI's `portMappings` capability takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// What one attachment of a pod to the network is about.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The sandbox id (CNI_CONTAINERID).
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
}

impl Attachment {
    fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod_namespace, self.pod_name, self.container_id, self.pod_uid
        )
    }
}

/// The CNI driver of one berthd.
#[derive(Debug, Clone)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// Where ADD results are cached for DEL and CHECK.
    pub cache_dir: PathBuf,
    /// Bound on each plugin invocation.
    pub timeout: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheEntry {
    network: serde_json::Value,
    result: serde_json::Value,
}

impl Cni {
    fn cache_path(&self, a: &Attachment) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}.json", a.container_id, a.ifname))
    }

    /// Attach: run every plugin's ADD in order, each getting the previous
    /// result. On failure, what was added is deleted again.
    pub async fn add(&self, a: &Attachment) -> Result<CniResult, CniError> {
        let net = load_network(&self.conf_dir)?;
        let mut prev: Option<serde_json::Value> = None;
        for plugin in &net.plugins {
            match self.invoke(&net, plugin, "ADD", a, prev.as_ref()).await {
                Ok(out) => prev = Some(out),
                Err(e) => {
                    // Undo the partial attachment; report the ADD error.
                    let _ = self.del_with(&net, a, prev.as_ref()).await;
                    return Err(e);
                }
            }
        }
        let raw = prev.unwrap_or_else(|| serde_json::json!({ "cniVersion": net.cni_version }));
        let result = CniResult::parse(&raw).map_err(|message| CniError::BadResult {
            network: net.name.clone(),
            plugin: net
                .plugins
                .last()
                .map(|p| p.kind.clone())
                .unwrap_or_default(),
            message,
        })?;
        self.write_cache(a, &net, &raw)?;
        Ok(result)
    }

    /// CHECK the attachment against the cached ADD result (skipped when the
    /// config says `disableCheck`, as the spec requires).
    pub async fn check(&self, a: &Attachment) -> Result<(), CniError> {
        let Some((net, prev)) = self.read_cache(a)? else {
            return Err(CniError::BadResult {
                network: String::new(),
                plugin: String::new(),
                message: format!("no cached ADD result for {}", a.container_id),
            });
        };
        if net.disable_check {
            return Ok(());
        }
        for plugin in &net.plugins {
            self.invoke(&net, plugin, "CHECK", a, Some(&prev)).await?;
        }
        Ok(())
    }

    /// Detach: every plugin's DEL in reverse order, with the config and result
    /// ADD used. Idempotent: with nothing cached, DEL runs with the current
    /// config (plugins must accept a DEL of what they never added).
    pub async fn del(&self, a: &Attachment) -> Result<(), CniError> {
        let (net, prev) = match self.read_cache(a)? {
            Some((net, prev)) => (net, Some(prev)),
            None => match load_network(&self.conf_dir) {
                Ok(net) => (net, None),
                // No config and no cache: nothing was ever attached here.
                Err(CniError::NoConfig(_)) => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        self.del_with(&net, a, prev.as_ref()).await?;
        let path = self.cache_path(a);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::Cache { path, source: e }),
        }
    }

    async fn del_with(
        &self,
        net: &NetworkList,
        a: &Attachment,
        prev: Option<&serde_json::Value>,
    ) -> Result<(), CniError> {
        let mut first_err = None;
        for plugin in net.plugins.iter().rev() {
            if let Err(e) = self.invoke(net, plugin, "DEL", a, prev).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    async fn invoke(
        &self,
        net: &NetworkList,
        plugin: &config::Plugin,
        command: &'static str,
        a: &Attachment,
        prev: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, CniError> {
        let stdin = net.plugin_input(plugin, prev, &a.port_mappings);
        let call = exec::Call {
            command,
            container_id: &a.container_id,
            netns: &a.netns,
            ifname: &a.ifname,
            args: a.cni_args(),
            bin_dirs: &self.bin_dirs,
            timeout: self.timeout,
        };
        exec::run(&plugin.kind, &call, &stdin)
            .await
            .map_err(|source| CniError::Plugin {
                network: net.name.clone(),
                command,
                plugin: plugin.kind.clone(),
                source,
            })
    }

    fn write_cache(
        &self,
        a: &Attachment,
        net: &NetworkList,
        result: &serde_json::Value,
    ) -> Result<(), CniError> {
        let path = self.cache_path(a);
        let err = |source| CniError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(err)?;
        let entry = CacheEntry {
            network: net.raw.clone(),
            result: result.clone(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&entry).expect("json values serialize"),
        )
        .map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    fn read_cache(
        &self,
        a: &Attachment,
    ) -> Result<Option<(NetworkList, serde_json::Value)>, CniError> {
        let path = self.cache_path(a);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::Cache { path, source: e }),
        };
        let bad = |message: String| CniError::BadConfig {
            path: path.clone(),
            message,
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let net = NetworkList::from_value(entry.network).map_err(bad)?;
        Ok(Some((net, entry.result)))
    }
}

/// Where a plugin binary is: the first bin dir that has it.
pub fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    bin_dirs
        .iter()
        .map(|d| d.join(kind))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
