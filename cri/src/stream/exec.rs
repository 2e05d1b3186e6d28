//! A streamed `Exec`: wait for the client's streams, run `<runtime> exec`
//! with its stdio piped to them (or a pty from `--console-socket` when
//! `tty`), apply resizes, and report the exit on the error stream.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use super::conn::{Conn, StreamWriter};
use super::spdy::header;
use super::{ExecProtocol, ExecRequest};

/// How long the client gets to open its streams.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long output may keep flowing after the process exited (a background
/// child holding the pipes must not hold the session).
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The client's streams of a remotecommand session (exec or attach).
#[derive(Default)]
pub(super) struct Streams {
    pub error: Option<StreamWriter>,
    pub stdin: Option<UnboundedReceiver<Vec<u8>>>,
    pub stdout: Option<StreamWriter>,
    pub stderr: Option<StreamWriter>,
    pub resize: Option<UnboundedReceiver<Vec<u8>>>,
}

/// Which streams a session asked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Want {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    fn complete(&self, want: Want, proto: ExecProtocol) -> bool {
        self.error.is_some()
            && (!want.stdin || self.stdin.is_some())
            && (!want.stdout || self.stdout.is_some())
            && (!want.stderr || want.tty || self.stderr.is_some())
            && (!want.tty || proto < ExecProtocol::V3 || self.resize.is_some())
    }
}

/// How the command ended.
pub(super) enum Outcome {
    Exited(i32),
    Failed(String),
}

/// Wait for the client to open the streams it asked for; `None` (and the
/// connection closed) when it does not in time.
pub(super) async fn gather(conn: &mut Conn, want: Want, proto: ExecProtocol) -> Option<Streams> {
    let mut s = Streams::default();
    let gathered = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while !s.complete(want, proto) {
            let Some(inc) = conn.streams.recv().await else {
                return false;
            };
            // Only the streams we write to get a writer: a FIN on stdin
            // would tell client-go the session is over before it sent
            // anything (it stops copying stdin when the server closes it).
            match header(&inc.headers, "streamtype").unwrap_or_default() {
                "error" => s.error = Some(conn.writer(inc.id)),
                "stdin" => s.stdin = Some(inc.data),
                "stdout" => s.stdout = Some(conn.writer(inc.id)),
                "stderr" => s.stderr = Some(conn.writer(inc.id)),
                "resize" => s.resize = Some(inc.data),
                other => {
                    tracing::debug!(
                        stream_type = other,
                        "remotecommand: unknown stream type ignored"
                    );
                }
            }
        }
        true
    })
    .await;
    matches!(gathered, Ok(true)).then_some(s)
}

pub(super) async fn serve(
    link: Link,
    mut s: Streams,
    req: ExecRequest,
    proto: ExecProtocol,
    state_dir: &Path,
) {
    let error = s.error.take();
    let outcome = if req.tty {
        run_tty(&req, state_dir, s).await
    } else {
        run_piped(&req, state_dir, s).await
    };
    finish(link, error, proto, &req.cmd, &outcome).await;
}

/// The connection a session runs on: SPDY streams or WebSocket channels.
pub(super) enum Link {
    Spdy(Conn),
    Ws(super::ws::Session),
}

impl Link {
    /// Resolves when the client has gone away.
    pub(super) async fn client_gone(&mut self) {
        match self {
            // No more streams come: the client closed the connection.
            Link::Spdy(c) => while c.streams.recv().await.is_some() {},
            Link::Ws(s) => s.client_gone().await,
        }
    }

    pub(super) async fn shutdown(self) {
        match self {
            Link::Spdy(c) => c.shutdown().await,
            Link::Ws(s) => s.shutdown().await,
        }
    }
}

/// Ends a session (exec or attach): the outcome on the error stream, if the
/// client opened one, then the connection closed.
pub(super) async fn finish(
    link: Link,
    error: Option<StreamWriter>,
    proto: ExecProtocol,
    cmd: &[String],
    outcome: &Outcome,
) {
    if let Some(error) = error {
        let msg = status_message(proto, cmd, outcome);
        if !msg.is_empty() {
            error.write(msg.as_bytes()).await;
        }
        error.close().await;
    }
    link.shutdown().await;
}

/// What the error stream carries: a metav1.Status in v4, plain text before.
pub(super) fn status_message(proto: ExecProtocol, cmd: &[String], outcome: &Outcome) -> String {
    let text = match outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(format!(
            "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
        )),
        Outcome::Failed(m) => Some(m.clone()),
    };
    if proto < ExecProtocol::V4 {
        return text.unwrap_or_default();
    }
    let v = match outcome {
        Outcome::Exited(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": text,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(m) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": m,
            "reason": "InternalError",
        }),
    };
    v.to_string()
}

/// Files of one exec under `<state>/exec/`, removed on drop.
struct ExecFiles {
    pid: std::path::PathBuf,
    log: std::path::PathBuf,
    console: std::path::PathBuf,
}

impl ExecFiles {
    fn new(state_dir: &Path) -> Result<Self, String> {
        let dir = state_dir.join("exec");
        std::fs::create_dir_all(&dir).map_err(|e| format!("exec folder {}: {e}", dir.display()))?;
        let tag = &crate::sandbox::new_id()[..16];
        Ok(ExecFiles {
            pid: dir.join(format!("{tag}.pid")),
            log: dir.join(format!("{tag}.log")),
            console: dir.join(format!("{tag}.sock")),
        })
    }

    /// The runtime's own failure (not the command's), from its log.
    fn runtime_error(&self) -> Option<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "error" || v["level"] == "fatal")
            .find_map(|v| v["msg"].as_str().map(str::to_owned))
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        for p in [&self.pid, &self.log, &self.console] {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn runtime_command(req: &ExecRequest, files: &ExecFiles) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(&req.runtime.binary);
    c.args(req.runtime.global_args())
        .arg("--log")
        .arg(&files.log)
        .args(["--log-format", "json", "exec", "--pid-file"])
        .arg(&files.pid);
    if req.tty {
        c.arg("--tty").arg("--console-socket").arg(&files.console);
    }
    c.arg(&req.container_id)
        .args(&req.cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    c
}

fn outcome(
    req: &ExecRequest,
    files: &ExecFiles,
    status: std::io::Result<std::process::ExitStatus>,
) -> Outcome {
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failed(format!("exec in container {}: wait: {e}", req.container_id));
        }
    };
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    if code != 0
        && let Some(msg) = files.runtime_error()
    {
        return Outcome::Failed(format!("exec in container {}: {msg}", req.container_id));
    }
    Outcome::Exited(code)
}

async fn copy_out(mut r: impl AsyncRead + Unpin, w: StreamWriter) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !w.write(&buf[..n]).await {
                    break;
                }
            }
        }
    }
    w.close().await;
}

/// Wait for the output copies, but not forever after the process is gone.
async fn drain(mut outputs: JoinSet<()>) {
    let _ = tokio::time::timeout(OUTPUT_DRAIN, async {
        while outputs.join_next().await.is_some() {}
    })
    .await;
}

async fn run_piped(req: &ExecRequest, state_dir: &Path, s: Streams) -> Outcome {
    let files = match ExecFiles::new(state_dir) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(e),
    };
    let mut cmd = runtime_command(req, &files);
    if s.stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    if s.stdout.is_some() {
        cmd.stdout(Stdio::piped());
    }
    if s.stderr.is_some() {
        cmd.stderr(Stdio::piped());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failed(format!(
                "exec in container {}: start {}: {e}",
                req.container_id,
                req.runtime.binary.display()
            ));
        }
    };
    let mut outputs = JoinSet::new();
    if let (Some(out), Some(w)) = (child.stdout.take(), s.stdout) {
        outputs.spawn(copy_out(out, w));
    }
    if let (Some(err), Some(w)) = (child.stderr.take(), s.stderr) {
        outputs.spawn(copy_out(err, w));
    }
    let mut input = JoinSet::new();
    if let (Some(mut stdin), Some(mut rx)) = (child.stdin.take(), s.stdin) {
        input.spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if stdin.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            // Client closed stdin: the process sees EOF.
        });
    }
    let status = child.wait().await;
    drain(outputs).await;
    drop(input);
    outcome(req, &files, status)
}

async fn run_tty(req: &ExecRequest, state_dir: &Path, s: Streams) -> Outcome {
    let files = match ExecFiles::new(state_dir) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(e),
    };
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Outcome::Failed(format!(
            "exec in container {}: {what}: {e}",
            req.container_id
        ))
    };
    let listener = match tokio::net::UnixListener::bind(&files.console) {
        Ok(l) => l,
        Err(e) => return fail("console socket", &e),
    };
    let mut child = match runtime_command(req, &files).spawn() {
        Ok(c) => c,
        Err(e) => return fail("start runtime", &e),
    };
    let accepted = tokio::select! {
        a = listener.accept() => a,
        status = child.wait() => return outcome(req, &files, status),
    };
    let master = match accepted {
        Ok((sock, _)) => receive_master(sock).await,
        Err(e) => Err(e),
    };
    let (master, reader, writer) = match master.and_then(split_master) {
        Ok(m) => m,
        Err(e) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return fail("receive the pty master", &e);
        }
    };
    let mut outputs = JoinSet::new();
    if let Some(w) = s.stdout {
        // Reading the master fails with EIO once the process closed the
        // terminal: that is its end.
        outputs.spawn(copy_out(reader, w));
    }
    let mut input = JoinSet::new();
    if let Some(mut rx) = s.stdin {
        let mut writer = writer;
        input.spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
    }
    if let Some(mut rx) = s.resize {
        let m = master;
        input.spawn(async move {
            let mut pending = Vec::new();
            while let Some(chunk) = rx.recv().await {
                pending.extend_from_slice(&chunk);
                // client-go writes one JSON object per line.
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    if let Ok(size) = serde_json::from_slice::<TermSize>(&line) {
                        let _ = resize(&m, size);
                    }
                }
            }
        });
    }
    let status = child.wait().await;
    drain(outputs).await;
    drop(input);
    outcome(req, &files, status)
}

#[derive(serde::Deserialize)]
pub(super) struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

fn resize(fd: &OwnedFd, size: TermSize) -> rustix::io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
}

/// Receive the pty master the runtime sends over `--console-socket`.
async fn receive_master(sock: tokio::net::UnixStream) -> std::io::Result<OwnedFd> {
    let sock = sock.into_std()?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    tokio::task::spawn_blocking(move || berth_runtime::sys::recv_fd(sock.as_fd()))
        .await
        .map_err(std::io::Error::other)?
}

/// The master as a reader and a writer registered with tokio (a pty polls
/// like a pipe), plus a plain copy for resizes.
fn split_master(master: OwnedFd) -> std::io::Result<(OwnedFd, pipe::Receiver, pipe::Sender)> {
    rustix::io::ioctl_fionbio(&master, true)?;
    let reader = pipe::Receiver::from_owned_fd_unchecked(master.try_clone()?)?;
    let writer = pipe::Sender::from_owned_fd_unchecked(master.try_clone()?)?;
    Ok((master, reader, writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_statuses_are_metav1_status_json() {
        let cmd = vec!["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        assert_eq!(
            status_message(ExecProtocol::V4, &cmd, &Outcome::Exited(0)),
            r#"{"metadata":{},"status":"Success"}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&status_message(ExecProtocol::V4, &cmd, &Outcome::Exited(3)))
                .unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status_message(ExecProtocol::V3, &cmd, &Outcome::Exited(0)),
            ""
        );
    }
}
