//! The runtime's commands, as library calls: what `berth-runc <cmd>` runs.

mod checkpoint;
mod exec;
mod lifecycle;
mod manage;

pub use checkpoint::{CheckpointOpts, dump_args};
pub use exec::ExecOpts;
pub use lifecycle::{CreateOpts, RunOpts};
pub use manage::{ListFormat, UpdateFlags};

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::id::ContainerId;

/// Connect to `--console-socket`, where the pty master will be sent.
fn connect_console(id: &ContainerId, path: Option<&Path>) -> Result<Option<OwnedFd>, Error> {
    let Some(p) = path else { return Ok(None) };
    let stream = UnixStream::connect(p).map_err(Error::io(
        id,
        format!("connect --console-socket {}", p.display()),
    ))?;
    Ok(Some(OwnedFd::from(stream)))
}

/// `--pidfd-socket`: connected before anything is started, so a bad path
/// fails without side effects.
fn connect_pidfd_socket(
    id: &ContainerId,
    path: Option<&Path>,
) -> Result<Option<UnixStream>, Error> {
    path.map(|p| {
        UnixStream::connect(p).map_err(Error::io(
            id,
            format!("connect --pidfd-socket {}", p.display()),
        ))
    })
    .transpose()
}

/// Send a pidfd of `pid` (SCM_RIGHTS), as runc does for containerd.
fn send_pidfd(id: &ContainerId, sock: &UnixStream, pid: i32) -> Result<(), Error> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = crate::sys::pidfd_open(pid).map_err(Error::io(id, "open pidfd"))?;
    crate::sys::send_fd(sock.as_fd(), fd.as_raw_fd())
        .map_err(Error::io(id, "send pidfd over --pidfd-socket"))
}

/// Global options shared by every command.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// State root (`--root`).
    pub root: PathBuf,
    /// `--systemd-cgroup`: the container's cgroup is a transient scope
    /// unit systemd owns (cgroupsPath "slice:prefix:name"). Without it a
    /// path of that form is placed where systemd would, through cgroupfs.
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
