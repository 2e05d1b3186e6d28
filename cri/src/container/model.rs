//! Containers as berthd keeps them: validated once from the CRI request
//! (`service::convert_container`), stored durably, never re-parsed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sandbox::model::NsMode;

/// The container's identity inside its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub name: String,
    pub attempt: u32,
}

/// Mount propagation (CRI `MountPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    #[default]
    Private,
    /// rslave: host mounts appear in the container.
    HostToContainer,
    /// rshared both ways.
    Bidirectional,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    pub propagation: Propagation,
    /// Read-only all the way down (`rro`): submounts too.
    #[serde(default)]
    pub recursive_readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub container_path: String,
    pub host_path: PathBuf,
    /// Some of `r`, `w`, `m`.
    pub permissions: String,
}

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunAs {
    /// The image's `USER` (root when it has none).
    #[default]
    Image,
    Uid(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SeccompMode {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile file on the node.
    Localhost(PathBuf),
}

/// The AppArmor profile a container asks for (CRI `apparmor`, else the
/// older `apparmor_profile` string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppArmorMode {
    /// Nothing asked: the runtime default, unless privileged.
    #[default]
    Unset,
    Unconfined,
    RuntimeDefault,
    /// A profile loaded on the node, by name.
    Localhost(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Security {
    pub privileged: bool,
    /// `CAP_` names; `ALL` is kept as is.
    pub add_caps: Vec<String>,
    pub drop_caps: Vec<String>,
    pub readonly_rootfs: bool,
    pub run_as: RunAs,
    pub run_as_group: Option<u32>,
    pub supplemental_groups: Vec<u32>,
    /// `SupplementalGroupsPolicy: Strict`: the image's /etc/group adds none.
    pub strict_groups: bool,
    pub no_new_privs: bool,
    /// `None`: the runtime's defaults (empty for privileged containers).
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: SeccompMode,
    /// Containers stored before AppArmor support read as `Unset`.
    #[serde(default)]
    pub apparmor: AppArmorMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub network: NsMode,
    /// The container whose namespaces `Target` modes name.
    pub target_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit: i64,
    pub memory_swap_limit: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// Page size (e.g. `2MB`) and limit in bytes.
    pub hugepages: Vec<(String, u64)>,
    pub unified: BTreeMap<String, String>,
}

/// A validated `CreateContainerRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub meta: ContainerMeta,
    /// The image as requested.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's log directory.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Resources,
    pub security: Security,
}

/// A container's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub spec: ContainerSpec,
    /// The image's id (`sha256:` config digest) and the name it was found by.
    pub image_id: String,
    pub image_ref: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// Bundle folder: config.json, and the rootfs mount under it.
    pub bundle: PathBuf,
    /// The absolute log file, when the pod has a log directory.
    pub log_path: Option<PathBuf>,
    /// The runtime handler the pod asked for (empty: the default).
    pub runtime_handler: String,
    /// Signal for a graceful stop (the image's `StopSignal`, else SIGTERM).
    pub stop_signal: i32,
    /// The cgroup path given to the runtime.
    pub cgroup_path: String,
    /// The process's identity as resolved at creation (ContainerStatus
    /// `user`); read back from the bundle's config.json after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ProcessUser>,
}

/// uid, gid and every group of the container's process (the primary one
/// included, as `id -G` lists them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl ProcessUser {
    pub fn new(uid: u32, gid: u32, additional: &[u32]) -> Self {
        let mut groups = vec![gid];
        groups.extend(additional.iter().filter(|g| **g != gid));
        ProcessUser { uid, gid, groups }
    }

    /// From an OCI bundle's config.json.
    pub fn from_bundle(bundle: &std::path::Path) -> Option<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
        let u = &v["process"]["user"];
        let n = |x: &serde_json::Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
        let extra: Vec<u32> = u["additionalGids"]
            .as_array()
            .map(|a| a.iter().filter_map(n).collect())
            .unwrap_or_default();
        Some(Self::new(n(&u["uid"])?, n(&u["gid"])?, &extra))
    }
}

/// What CRI reports for a container's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container's live status, from its monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub pid: i32,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, or empty while it runs.
    pub reason: String,
    pub message: String,
}
