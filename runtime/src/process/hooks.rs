//! OCI hooks: run each with the state JSON on stdin, its own env and args,
//! and its timeout (the process is killed when it passes).

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::config::spec::Hook;

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {index} ({path}): start")]
    Start {
        kind: &'static str,
        index: usize,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} hook {index} ({path}): timed out after {secs}s")]
    Timeout {
        kind: &'static str,
        index: usize,
        path: String,
        secs: i64,
    },
    #[error("{kind} hook {index} ({path}): {status}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: String,
        status: std::process::ExitStatus,
    },
}

pub fn run(kind: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    for (index, h) in hooks.iter().enumerate() {
        let start = |source| HookError::Start {
            kind,
            index,
            path: h.path.clone(),
            source,
        };
        let mut cmd = Command::new(&h.path);
        if let Some((a0, rest)) = h.args.split_first() {
            cmd.arg0(a0).args(rest);
        }
        cmd.env_clear();
        for e in &h.env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped());
        let mut child = cmd.spawn().map_err(start)?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its stdin is fine (EPIPE ignored).
            let _ = stdin.write_all(state_json.as_bytes());
        }
        if let Some(secs) = h.timeout {
            let pidfd = crate::sys::pidfd_open(child.id() as i32).map_err(start)?;
            let done = crate::sys::pidfd_wait(
                pidfd.as_fd(),
                (secs.min(i64::from(i32::MAX / 1000)) * 1000) as i32,
            )
            .map_err(start)?;
            if !done {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout {
                    kind,
                    index,
                    path: h.path.clone(),
                    secs,
                });
            }
        }
        let status = child.wait().map_err(start)?;
        if !status.success() {
            return Err(HookError::Failed {
                kind,
                index,
                path: h.path.clone(),
                status,
            });
        }
    }
    Ok(())
}
