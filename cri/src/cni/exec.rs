//! Running one CNI plugin binary: the environment protocol, stdin config,
//! stdout result or error, and a timeout that kills a hung plugin.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin not found in {0}")]
    NotFound(String),
    #[error("start")]
    Spawn(#[source] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Reported {
        code: u64,
        msg: String,
        details: String,
    },
    #[error("exit status {status}: {output}")]
    Failed { status: String, output: String },
    #[error("output is not JSON: {0}")]
    BadOutput(String),
}

pub struct Call<'a> {
    pub command: &'static str,
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub args: String,
    pub bin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// Run plugin `kind` for `call`; its parsed stdout (empty for DEL/CHECK is
/// `null`).
pub async fn run(
    kind: &str,
    call: &Call<'_>,
    stdin: &serde_json::Value,
) -> Result<serde_json::Value, PluginError> {
    let bin = super::find_plugin(kind, call.bin_dirs).ok_or_else(|| {
        PluginError::NotFound(
            call.bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        )
    })?;
    let path = std::env::join_paths(call.bin_dirs).unwrap_or_default();
    let mut child = tokio::process::Command::new(&bin)
        .env_clear()
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &path)
        // Plugins such as portmap run iptables: give them a normal PATH.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(PluginError::Spawn)?;
    let input = serde_json::to_vec(stdin).expect("json values serialize");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let work = async move {
        // A plugin may exit before reading all of stdin; that is its answer.
        let _ = pipe.write_all(&input).await;
        drop(pipe);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(call.timeout, work)
        .await
        .map_err(|_| PluginError::Timeout(call.timeout))?
        .map_err(PluginError::Spawn)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let reported = serde_json::from_str::<serde_json::Value>(&stdout).ok();
        if let Some((err, code)) = reported
            .as_ref()
            .and_then(|e| Some((e, e.get("code")?.as_u64()?)))
        {
            let text = |k: &str| {
                err.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            return Err(PluginError::Reported {
                code,
                msg: text("msg"),
                details: text("details"),
            });
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let output = format!("{} {}", stdout.trim(), stderr.trim())
            .trim()
            .chars()
            .take(2000)
            .collect();
        return Err(PluginError::Failed {
            status: out.status.to_string(),
            output,
        });
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout)
        .map_err(|_| PluginError::BadOutput(stdout.chars().take(2000).collect()))
}
