//! berth-kubelet: the node agent. Talks to the API server (kube-rs) and to a
//! CRI runtime over gRPC only, so it runs on containerd as well as berthd.
#![forbid(unsafe_code)]

pub mod api;
pub mod backoff;
pub mod config;
pub mod cri;
pub mod cri_config;
pub mod dns;
pub mod duration;
pub mod error;
pub mod flags;
pub mod kubelet;
pub mod lifecycle;
pub mod manifest;
pub mod node;
pub mod plan;
pub mod pleg;
pub mod pod;
pub mod pod_cgroups;
pub mod pod_worker;
pub mod probe;
pub mod prober;
pub mod pull_secrets;
pub mod quantity;
pub mod runtime_pod;
pub mod security;
pub mod service_env;
pub mod static_pods;
pub mod status;
pub mod userns;
pub mod volume;
pub mod volume_manager;

pub use error::{Error, Result};
