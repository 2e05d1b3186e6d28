//! berth-runtime: the OCI runtime library behind `berth-runc`.
//!
//! Owns everything between an OCI bundle and the kernel. It knows nothing of
//! images, CRI or Kubernetes. Synchronous and single-threaded by design: the
//! process model clones, and cloning a multi-threaded process is unsafe.
//!
//! Layout: `config` (config.json -> validated `Config`), `state` (state dir,
//! status), `cgroups` (v1/v2/hybrid, cgroupfs), `rootfs` (mounts through
//! fds, /dev, pivot), `process` (spawn, init, hooks, sync), `seccomp`,
//! `sys` (every raw syscall), `ops` (the commands).

pub mod cgroups;
pub mod config;
pub mod error;
pub mod features;
pub mod id;
pub mod log;
pub mod ops;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod state;
pub mod sys;

pub use error::Error;
pub use id::{ContainerId, IdError};

/// The OCI runtime spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.1";
