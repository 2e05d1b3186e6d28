//! Starting, finding and stopping a sandbox's berth-shim.
//!
//! berthd starts the shim and reaps it if it exits while berthd runs; the
//! shim puts itself in its own session, so it (and the containers under it)
//! outlive a berthd that is killed. A berthd that starts again finds each
//! shim by its socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::{CgroupDriver, Config};
use crate::error::{Error, Result};
use crate::shim::client::call;
use crate::shim::proto::{Request, Response, RuntimeCmd};

/// How a pod's containers are run: the runtime handler's binary (a bare
/// name is looked up next to berthd first) and its `--root`.
pub fn runtime_cmd(config: &Config, handler: &str) -> Result<RuntimeCmd> {
    let name = if handler.is_empty() {
        config.default_runtime.as_str()
    } else {
        handler
    };
    let h = config.runtimes.get(name).ok_or_else(|| {
        Error::InvalidArgument(format!("runtime handler {name:?} is not configured"))
    })?;
    Ok(RuntimeCmd {
        binary: resolve_binary(&h.path),
        root: h
            .root
            .clone()
            .unwrap_or_else(|| config.state_dir.join("runtime").join(name)),
        systemd_cgroup: config.cgroup_driver == CgroupDriver::Systemd,
    })
}

/// The cgroup (path or systemd slice:prefix:name) of a pod's container
/// `id`: under the pod's cgroup parent, or berthd's when the pod has none.
pub fn cgroup_path(config: &Config, pod_parent: &str, id: &str) -> String {
    let parent = if pod_parent.is_empty() {
        config.cgroup_parent.as_str()
    } else {
        pod_parent
    };
    match config.cgroup_driver {
        CgroupDriver::Cgroupfs => format!("{}/{id}", parent.trim_end_matches('/')),
        CgroupDriver::Systemd => {
            let slice = if parent.ends_with(".slice") {
                parent.trim_start_matches('/')
            } else {
                "system.slice"
            };
            format!("{slice}:cri-berth:{id}")
        }
    }
}

/// The shim binary: `configured` if it has a `/`, else the `berth-shim` next
/// to the running berthd, else a PATH lookup.
pub fn resolve_binary(configured: &Path) -> PathBuf {
    if configured.components().count() > 1 {
        return configured.to_owned();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(configured)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| configured.to_owned())
}

/// A unix socket path has room for 107 bytes, so sockets live in a short
/// folder of their own, named by a prefix of the sandbox id.
pub fn socket_path(socket_dir: &Path, sandbox_id: &str) -> PathBuf {
    socket_dir.join(format!("{}.sock", &sandbox_id[..sandbox_id.len().min(16)]))
}

/// Start a shim keeping its state in `dir` and serving `socket`; its pid once
/// it is ready.
pub async fn spawn(binary: &Path, dir: &Path, socket: &Path) -> Result<u32> {
    let io = |what, source| Error::Io {
        what,
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("shim folder", e))?;
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("shim socket folder", e))?;
    }
    if socket.as_os_str().len() > 107 {
        return Err(Error::FailedPrecondition(format!(
            "shim socket {} is longer than a unix socket path may be: use a shorter state_dir",
            socket.display()
        )));
    }
    let log = std::fs::File::create(dir.join("shim.log")).map_err(|e| io("shim log", e))?;
    let mut child = tokio::process::Command::new(binary)
        .arg("--dir")
        .arg(dir)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| io("start berth-shim", e))?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let ready = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    if !matches!(ready, Ok(Ok(_))) || line.trim() != "ready" {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
        // The error, not the backtrace that may follow it.
        let why = log
            .lines()
            .find(|l| l.contains("panicked") || l.starts_with("berth-shim:"))
            .or_else(|| log.lines().last())
            .unwrap_or("no output");
        return Err(Error::FailedPrecondition(format!(
            "berth-shim in {} did not start: {why}",
            dir.display()
        )));
    }
    // Reap it whenever it exits while we run.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(pid)
}

/// Whether a shim answers on `socket`.
pub async fn alive(socket: &Path) -> bool {
    matches!(
        call(socket, &Request::List).await,
        Ok(Response::List { .. })
    )
}

/// Ask the shim to exit, and make sure it did: a shim that does not go in
/// 5 s is killed, after checking the pid is still that shim.
pub async fn shutdown(pid: u32, socket: &Path) {
    let _ = call(socket, &Request::Shutdown).await;
    for _ in 0..250 {
        if !is_our_shim(pid, socket) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if is_our_shim(pid, socket) {
        tracing::warn!(pid, socket = %socket.display(), "berth-shim did not exit; killing it");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `pid` is a live (not zombie) process whose command line names `socket`.
fn is_our_shim(pid: u32, socket: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z'));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let want = socket.as_os_str().as_encoded_bytes();
    !zombie && cmdline.split(|b| *b == 0).any(|arg| arg == want)
}
