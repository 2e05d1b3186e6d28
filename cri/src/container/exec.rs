//! `ExecSync`: run a command in a running container and collect its
//! output, with a timeout and a cap on what is kept in memory.
//!
//! berthd runs `<runtime> exec` itself: the runtime waits for the process
//! and exits with its status, so no monitor is involved. On timeout the
//! process is killed by the pid the runtime wrote.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
use crate::shim::proto::RuntimeCmd;

/// At most this much of each stream is kept; the rest is read and dropped.
pub const OUTPUT_CAP: usize = 16 << 20;

#[derive(Debug)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

async fn read_capped(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
}

/// Run `cmd` in container `id`; `timeout` zero means none.
pub async fn exec_sync(
    runtime: &RuntimeCmd,
    state_dir: &Path,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecOutput> {
    if cmd.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "exec in container {id}: empty command"
        )));
    }
    let dir = state_dir.join("exec");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        what: "exec folder",
        path: dir.clone(),
        source,
    })?;
    let tag = &crate::sandbox::new_id()[..16];
    let pid_file = dir.join(format!("{tag}.pid"));
    let log = dir.join(format!("{tag}.log"));
    let mut child = tokio::process::Command::new(&runtime.binary)
        .args(runtime.global_args())
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "exec", "--pid-file"])
        .arg(&pid_file)
        .arg(id)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Io {
            what: "start runtime exec",
            path: runtime.binary.clone(),
            source,
        })?;
    let out = tokio::spawn(read_capped(child.stdout.take().expect("piped")));
    let err = tokio::spawn(read_capped(child.stderr.take().expect("piped")));
    let waited = if timeout.is_zero() {
        Ok(child.wait().await)
    } else {
        tokio::time::timeout(timeout, child.wait()).await
    };
    let cleanup = || {
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
    };
    let status = match waited {
        Ok(s) => s.map_err(|source| Error::Io {
            what: "wait for runtime exec",
            path: runtime.binary.clone(),
            source,
        })?,
        Err(_) => {
            // Kill the process, then let the runtime (its parent) reap it
            // and exit: killing the runtime instead would orphan the
            // process to the container's init, which may never reap it.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut killed = false;
            while !killed && tokio::time::Instant::now() < deadline {
                if let Some(pid) = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    killed = true;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            cleanup();
            return Err(Error::DeadlineExceeded(format!(
                "exec in container {id}: command {cmd:?} timed out after {timeout:?}"
            )));
        }
    };
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let runtime_error = std::fs::read_to_string(&log).unwrap_or_default();
    cleanup();
    let exit_code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    // The runtime failing to exec at all (not the command failing) is an
    // error, as in containerd: its log names why.
    if exit_code != 0
        && let Some(msg) = runtime_error
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "error" || v["level"] == "fatal")
            .find_map(|v| v["msg"].as_str().map(str::to_owned))
    {
        return Err(Error::Runtime(format!("exec in container {id}: {msg}")));
    }
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code,
    })
}
