//! berth-runtime: the OCI runtime library behind `berth-runc`.
//!
//! Owns everything between an OCI bundle and the kernel. It knows nothing of
//! images, CRI or Kubernetes.

pub mod id;

pub use id::{ContainerId, IdError};
