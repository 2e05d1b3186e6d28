//! A pod as the runtime has it: its sandboxes and containers, found by the
//! CRI labels the kubelet puts on them (the same names as upstream's, so a
//! kubelet restart adopts what runs, and the tools that read them work).

use k8s_cri::v1 as cri;

use crate::cri::Cri;
use crate::error::Result;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: i64,
    },
    Exited {
        started_at: i64,
        finished_at: i64,
        exit_code: i32,
        reason: String,
        message: String,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub restart_count: u32,
    pub hash: String,
    pub created_at: i64,
    pub state: ContainerState,
    pub image_ref: String,
    /// The pod's grace period when the container was made (for orphans).
    pub grace_period: Option<u64>,
}

impl RuntimeContainer {
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// Sandboxes and containers of one pod UID, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimePod {
    pub sandboxes: Vec<RuntimeSandbox>,
    pub containers: Vec<RuntimeContainer>,
    /// IDs of containers the kubelet killed for failing a liveness or
    /// startup probe (its memory, not the runtime's): they count as failed
    /// whatever their exit code, so OnFailure restarts them as upstream does.
    pub probe_killed: std::collections::BTreeSet<String>,
    /// IDs of running containers whose startup probe has not succeeded yet
    /// (the prober's memory): a sidecar among them holds the next init
    /// container back.
    pub startup_pending: std::collections::BTreeSet<String>,
}

impl RuntimePod {
    pub fn new(mut sandboxes: Vec<RuntimeSandbox>, mut containers: Vec<RuntimeContainer>) -> Self {
        sandboxes.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.attempt)));
        containers.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.restart_count)));
        RuntimePod {
            sandboxes,
            containers,
            probe_killed: Default::default(),
            startup_pending: Default::default(),
        }
    }

    /// The newest sandbox: the one the pod's containers belong in.
    pub fn current_sandbox(&self) -> Option<&RuntimeSandbox> {
        self.sandboxes.first()
    }

    /// Instances of container `name`, newest first, in any sandbox.
    pub fn history<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a RuntimeContainer> + 'a {
        self.containers.iter().filter(move |c| c.name == name)
    }

    pub fn latest(&self, name: &str) -> Option<&RuntimeContainer> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The newest instance of `name` in sandbox `sandbox_id`.
    pub fn latest_in(&self, name: &str, sandbox_id: &str) -> Option<&RuntimeContainer> {
        self.containers
            .iter()
            .find(|c| c.name == name && c.sandbox_id == sandbox_id)
    }

    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }

    /// Read pod `uid` from the runtime: lists filtered by its label, a
    /// status call per container (exit codes and times), the current
    /// sandbox's IP.
    pub async fn fetch(cri: &Cri, uid: &str) -> Result<RuntimePod> {
        // The two lists, then every status, each set at once: this runs
        // twice in every sync that starts something, on the pod's path to
        // Running.
        let selector = || [(POD_UID.to_owned(), uid.to_owned())].into_iter().collect();
        let (sandboxes, list) = tokio::try_join!(
            cri.list_pod_sandbox(Some(cri::PodSandboxFilter {
                label_selector: selector(),
                ..Default::default()
            })),
            cri.list_containers(Some(cri::ContainerFilter {
                label_selector: selector(),
                ..Default::default()
            })),
        )?;
        let mut sbs: Vec<RuntimeSandbox> = sandboxes.iter().map(sandbox_from).collect();
        sbs.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let ready = sbs.first().filter(|s| s.ready).map(|s| s.id.clone());
        let sandbox_status = async {
            match &ready {
                Some(id) => Some(cri.pod_sandbox_status(id).await),
                None => None,
            }
        };
        let statuses =
            futures_util::future::join_all(list.iter().map(|c| cri.container_status(&c.id)));
        let (sandbox_status, statuses) = tokio::join!(sandbox_status, statuses);
        if let (Some(s), Some(st)) = (sbs.first_mut(), sandbox_status) {
            match st {
                Ok(st) => s.ip = st.network.map(|n| n.ip).filter(|ip| !ip.is_empty()),
                Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => s.ready = false,
                Err(e) => return Err(e),
            }
        }
        let mut containers = Vec::with_capacity(list.len());
        for (c, st) in list.iter().zip(statuses) {
            match st {
                Ok(st) => containers.push(container_from(c, Some(&st))),
                // Removed between the list and the status call.
                Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(RuntimePod::new(sbs, containers))
    }
}

pub fn sandbox_from(s: &cri::PodSandbox) -> RuntimeSandbox {
    RuntimeSandbox {
        id: s.id.clone(),
        attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
        ready: s.state == cri::PodSandboxState::SandboxReady as i32,
        created_at: s.created_at,
        ip: None,
    }
}

/// A runtime container from its list entry and (when there is one) its
/// status; labels name it, annotations carry the kubelet's bookkeeping.
pub fn container_from(c: &cri::Container, st: Option<&cri::ContainerStatus>) -> RuntimeContainer {
    let name = c
        .labels
        .get(CONTAINER_NAME)
        .cloned()
        .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
        .unwrap_or_default();
    let attempt = c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
    let state_code = st.map(|s| s.state).unwrap_or(c.state);
    let state = match cri::ContainerState::try_from(state_code) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running {
            started_at: st.map(|s| s.started_at).unwrap_or(c.created_at),
        },
        Ok(cri::ContainerState::ContainerExited) => {
            let st = st.cloned().unwrap_or_default();
            ContainerState::Exited {
                started_at: st.started_at,
                finished_at: st.finished_at,
                exit_code: st.exit_code,
                reason: st.reason,
                message: st.message,
            }
        }
        _ => ContainerState::Unknown,
    };
    RuntimeContainer {
        id: c.id.clone(),
        sandbox_id: c.pod_sandbox_id.clone(),
        name,
        restart_count: c
            .annotations
            .get(RESTART_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(attempt),
        hash: c
            .annotations
            .get(CONTAINER_HASH)
            .cloned()
            .unwrap_or_default(),
        created_at: c.created_at,
        state,
        image_ref: if c.image_ref.is_empty() {
            c.image_id.clone()
        } else {
            c.image_ref.clone()
        },
        grace_period: c.annotations.get(GRACE_PERIOD).and_then(|v| v.parse().ok()),
    }
}
