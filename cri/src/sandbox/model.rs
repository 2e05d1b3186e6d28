//! Pod sandboxes as berthd keeps them: validated once from the CRI request
//! (`service::convert`), stored durably, never re-parsed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cni::PortMapping;

/// Where one of a pod's namespaces comes from (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NsMode {
    /// One namespace for the whole pod.
    #[default]
    Pod,
    /// One per container.
    Container,
    /// The host's.
    Node,
    /// Another container's (`target_id`).
    Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The pod's identity: name, namespace, uid and attempt; one live sandbox
/// per identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMeta {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl PodMeta {
    /// The reservation key (as containerd names sandboxes).
    pub fn key(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

/// One id range of a pod's user namespace (CRI `IDMapping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// A pod user namespace (CRI `NamespaceMode::POD` user namespace): one
/// range each for uids and gids, starting at container id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodUserns {
    pub uids: IdRange,
    pub gids: IdRange,
}

/// A validated `RunPodSandbox` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub meta: PodMeta,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<Dns>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub network: NsMode,
    pub pid: NsMode,
    pub ipc: NsMode,
    pub runtime_handler: String,
    /// A user namespace of the pod's own; None: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<PodUserns>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// A sandbox's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub spec: SandboxSpec,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub state: SandboxState,
    /// Pinned namespaces; `None` where the pod uses the host's.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pinned user namespace that owns the three above (`spec.userns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<PathBuf>,
    /// Pod IPs from CNI, primary first.
    pub ips: Vec<String>,
    /// hostname, hosts and resolv.conf for the containers to mount.
    pub files_dir: PathBuf,
    /// Whether the network is attached (CNI ADD done, DEL not yet).
    pub network_attached: bool,
    /// The pod's monitor (berth-shim): its pid and socket.
    #[serde(default)]
    pub shim: Option<ShimRef>,
    /// The pause process holding a pod-wide PID namespace (only then).
    #[serde(default)]
    pub pause: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRef {
    pub pid: u32,
    pub socket: PathBuf,
}

impl Sandbox {
    /// The pause process's pid, when the pod shares a PID namespace.
    pub fn pause_pid(&self) -> Option<i32> {
        self.pause
    }

    /// Transition: only a Ready sandbox can be stopped into NotReady; a
    /// NotReady one stays as it is (stop is idempotent).
    pub fn can_stop(&self) -> bool {
        self.state == SandboxState::Ready || self.network_attached
    }
}
