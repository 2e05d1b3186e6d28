//! The runtime's commands, as library calls: what `berth-runc <cmd>` runs.

mod exec;
mod lifecycle;
mod manage;

pub use exec::ExecOpts;
pub use lifecycle::{CreateOpts, RunOpts};
pub use manage::{ListFormat, UpdateFlags};

use std::path::PathBuf;

/// Global options shared by every command.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// State root (`--root`).
    pub root: PathBuf,
    /// `--systemd-cgroup`: accepted; cgroupsPath "slice:prefix:name" is
    /// placed the way systemd would, through cgroupfs.
    pub systemd_cgroup: bool,
}

impl Runtime {
    pub fn new(root: PathBuf, systemd_cgroup: bool) -> Self {
        Self {
            root,
            systemd_cgroup,
        }
    }
}
