//! berth-kubelet: the node agent. Talks to the API server (kube-rs) and to a
//! CRI runtime over gRPC only, so it runs on containerd as well as berthd.
#![forbid(unsafe_code)]

pub mod config;
pub mod cri;
pub mod duration;
pub mod error;
pub mod flags;

pub use error::{Error, Result};
