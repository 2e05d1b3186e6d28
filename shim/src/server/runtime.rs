//! The monitor's runtime calls and children: `<runtime> create/start/kill/
//! delete` spawned without blocking the loop and finished when reaped, the
//! containers' records, and the reaper.

use std::fs::File;
use std::io::{BufRead, ErrorKind as IoKind};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{
    ContainerIo, Creating, Entry, Op, Output, Pending, Shim, Token, err, exit_code, nonblocking,
    now_ns,
};
use crate::logfmt::Stream;
use crate::logger::{LineSplitter, LogFile};
use crate::proto::{ContainerState, ErrorKind, Response, RuntimeCmd, Status, frame};

/// A request's fate: `Ok`, its answer comes when its runtime call is
/// reaped; `Err`, the answer to send now (not necessarily an error).
pub(super) type Answer = Result<(), Box<Response>>;

impl Shim {
    // --- the runtime -------------------------------------------------------

    /// Start `<runtime> <args>`; it finishes in [`Shim::finish`] when reaped.
    pub(super) fn spawn_runtime(
        &mut self,
        t: Token,
        id: &str,
        rt: &RuntimeCmd,
        args: &[&str],
        stdio: [Stdio; 3],
        op: Op,
    ) -> Answer {
        let log = self.dir.join(format!("{id}.runtime.log"));
        let _ = std::fs::remove_file(&log);
        let [i, o, e] = stdio;
        let child = Command::new(&rt.binary)
            .args(rt.global_args())
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(i)
            .stdout(o)
            .stderr(e)
            .spawn()
            .map_err(|e| {
                err(
                    ErrorKind::Runtime,
                    format!("{}: start: {e}", rt.binary.display()),
                )
            })?;
        // The Child handle is dropped unwaited: the reaper owns the pid.
        let pid = child.id() as i32;
        let verb = match op {
            Op::Create(_) => "create",
            Op::Start { .. } => "start",
            Op::Kill => "kill",
            Op::Delete => "delete",
        };
        let pending = Pending {
            conn: t,
            id: id.to_owned(),
            binary: rt.binary.clone(),
            verb,
            op,
        };
        self.busy(t);
        match self.unclaimed.remove(&pid) {
            Some((code, _)) => self.finish(pending, code),
            None => {
                self.commands.insert(pid, pending);
            }
        }
        Ok(())
    }

    /// A runtime call exited with `code`.
    pub(super) fn finish(&mut self, p: Pending, code: i32) {
        let id = p.id.clone();
        let failed = (code != 0).then(|| {
            let log = self.dir.join(format!("{id}.runtime.log"));
            let msg = runtime_error(&log).unwrap_or_else(|| format!("exit status {code}"));
            err(
                ErrorKind::Runtime,
                format!("{} {}: {msg}", p.binary.display(), p.verb),
            )
        });
        let resp = match p.op {
            Op::Create(c) => match failed {
                Some(e) => {
                    if let Some((_, path)) = &c.console {
                        let _ = std::fs::remove_file(path);
                    }
                    e
                }
                None => self.created(&id, *c),
            },
            Op::Start { started_at } => match failed {
                Some(e) => e,
                None => {
                    if let Some(e) = self.entries.get_mut(&id) {
                        e.state.started_at = Some(started_at);
                        if e.state.status == Status::Created {
                            e.state.status = Status::Running;
                        }
                        let _ = self.store.put(&id, &e.state);
                    }
                    Response::Ok
                }
            },
            Op::Kill => match failed {
                // It may have exited between the check and the kill.
                Some(_)
                    if self
                        .entries
                        .get(&id)
                        .is_some_and(|e| e.state.status == Status::Exited) =>
                {
                    Response::Ok
                }
                Some(e) => e,
                None => Response::Ok,
            },
            Op::Delete => {
                if let Some(Response::Error { message, .. }) = &failed {
                    note!("container {id}: runtime delete: {message}");
                }
                self.forget(&id);
                Response::Ok
            }
        };
        self.respond(p.conn, &resp);
    }

    pub(super) fn create(&mut self, t: Token, a: CreateArgs) -> Answer {
        let id = a.id;
        if !valid_id(&id) {
            return Err(err(
                ErrorKind::BadRequest,
                format!("container id {id:?} is not valid"),
            )
            .into());
        }
        let creating = self
            .commands
            .values()
            .any(|p| p.id == id && matches!(p.op, Op::Create(_)));
        if creating || self.entries.contains_key(&id) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("container {id} already exists"),
            )
            .into());
        }
        let log = a
            .log_path
            .as_deref()
            .map(LogFile::open)
            .transpose()
            .map_err(|e| {
                err(
                    ErrorKind::BadRequest,
                    format!("container {id}: log file: {e}"),
                )
            })?;
        let io_err = |what: &str, e: std::io::Error| {
            err(ErrorKind::Runtime, format!("container {id}: {what}: {e}"))
        };
        let mut io = ContainerIo {
            log,
            stdin_once: a.stdin_once,
            ..ContainerIo::default()
        };
        let pid_file = self.dir.join(format!("{id}.pid"));
        let bundle_s = a.bundle.to_string_lossy().into_owned();
        let pid_s = pid_file.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", &bundle_s, "--pid-file", &pid_s];
        let console_s;
        let mut console = None;
        let stdio = if a.tty {
            // The runtime makes the pty and sends us its master; the
            // runtime's own stdio goes nowhere.
            self.next_console += 1;
            let path = PathBuf::from(format!(
                "{}.{}.tty",
                self.socket.display(),
                self.next_console
            ));
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).map_err(|e| io_err("console socket", e))?;
            l.set_nonblocking(true)
                .map_err(|e| io_err("console socket", e))?;
            console_s = path.to_string_lossy().into_owned();
            args.extend(["--console-socket", &console_s]);
            console = Some((l, path));
            [Stdio::null(), Stdio::null(), Stdio::null()]
        } else {
            // Output always goes through the shim (even without a log file,
            // for attach): a closed pipe would kill the container with
            // SIGPIPE on its first write.
            let (out_r, out_w) = std::io::pipe().map_err(|e| io_err("pipe", e))?;
            let (err_r, err_w) = std::io::pipe().map_err(|e| io_err("pipe", e))?;
            for (r, kind, stream) in [
                (out_r, frame::STDOUT, Stream::Stdout),
                (err_r, frame::STDERR, Stream::Stderr),
            ] {
                nonblocking(&r).map_err(|e| io_err("pipe", e))?;
                io.outputs.push(Output {
                    fd: File::from(OwnedFd::from(r)),
                    kind,
                    lines: LineSplitter::new(stream),
                });
            }
            let stdin = if a.stdin {
                let (in_r, in_w) = std::io::pipe().map_err(|e| io_err("pipe", e))?;
                nonblocking(&in_w).map_err(|e| io_err("pipe", e))?;
                io.stdin = Some(File::from(OwnedFd::from(in_w)));
                Stdio::from(in_r)
            } else {
                Stdio::null()
            };
            [stdin, Stdio::from(out_w), Stdio::from(err_w)]
        };
        args.push(&id);
        let rt = a.runtime.clone();
        let op = Op::Create(Box::new(Creating {
            bundle: a.bundle,
            runtime: a.runtime,
            log_path: a.log_path,
            io,
            console,
        }));
        self.spawn_runtime(t, &id, &rt, &args, stdio, op)
    }

    /// `<runtime> create` succeeded: take the pty, record the container,
    /// register its init.
    pub(super) fn created(&mut self, id: &str, c: Creating) -> Response {
        let Creating {
            bundle,
            runtime,
            log_path,
            mut io,
            console,
        } = c;
        let pid_file = self.dir.join(format!("{id}.pid"));
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            self.abandon(id, &runtime);
            return err(
                ErrorKind::Runtime,
                format!("container {id}: runtime wrote no pid file"),
            );
        };
        if let Some((listener, path)) = console {
            let master = receive_master(&listener);
            let _ = std::fs::remove_file(&path);
            match master.and_then(|m| pty_io(&mut io, m)) {
                Ok(()) => {}
                Err(e) => {
                    // The container exists but cannot be talked to.
                    self.abandon(id, &runtime);
                    return err(
                        ErrorKind::Runtime,
                        format!("container {id}: receive the pty master: {e}"),
                    );
                }
            }
        }
        let state = ContainerState {
            id: id.to_owned(),
            status: Status::Created,
            pid,
            exit_code: None,
            created_at: now_ns(),
            started_at: None,
            finished_at: None,
            bundle,
            runtime,
            log_path,
            oom_killed: false,
        };
        if let Err(e) = self.store.put(id, &state) {
            return err(ErrorKind::Runtime, format!("container {id}: {e}"));
        }
        self.entries.insert(
            id.to_owned(),
            Entry {
                state,
                io,
                oom: None,
                waiters: Vec::new(),
            },
        );
        match super::oom::OomWatch::start(pid) {
            Ok(w) => {
                if let Some(e) = self.entries.get_mut(id) {
                    e.oom = w;
                }
            }
            Err(e) => note!("container {id}: no OOM watch on its memory cgroup: {e}"),
        }
        // Register the init; it may already have exited (and been reaped).
        match self.unclaimed.remove(&pid) {
            Some((code, _)) => self.mark_exited(id, code),
            None => {
                self.inits.insert(pid, id.to_owned());
            }
        }
        note!("container {id} created, pid {pid}");
        Response::Ok
    }

    /// The runtime made a container the monitor cannot keep (no pid, no
    /// terminal): `<runtime> delete --force` it in the background, so no
    /// runtime state or cgroup is left behind (berthd's clean-up `Delete`
    /// finds no record here to do it).
    fn abandon(&mut self, id: &str, rt: &RuntimeCmd) {
        let _ = self.spawn_runtime(
            Token::MAX,
            id,
            rt,
            &["delete", "--force", id],
            null3(),
            Op::Delete,
        );
    }

    pub(super) fn start(&mut self, t: Token, id: &str) -> Answer {
        let Some(e) = self.entries.get(id) else {
            return Err(err(ErrorKind::NotFound, format!("container {id} not found")).into());
        };
        if e.state.status != Status::Created {
            return Err(err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is {:?}, not created", e.state.status),
            )
            .into());
        }
        // The container may run and exit before `start` returns: take the
        // start time first, so started_at never comes after finished_at.
        let op = Op::Start {
            started_at: now_ns(),
        };
        let rt = e.state.runtime.clone();
        self.spawn_runtime(t, id, &rt, &["start", id], null3(), op)
    }

    pub(super) fn kill(&mut self, t: Token, id: &str, signal: i32, all: bool) -> Answer {
        let Some(e) = self.entries.get(id) else {
            return Err(err(ErrorKind::NotFound, format!("container {id} not found")).into());
        };
        if e.state.status == Status::Exited {
            return Err(Box::new(Response::Ok));
        }
        let rt = e.state.runtime.clone();
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.spawn_runtime(t, id, &rt, &args, null3(), Op::Kill)
    }

    pub(super) fn delete(&mut self, t: Token, id: &str) -> Answer {
        let Some(e) = self.entries.get(id) else {
            return Err(Box::new(Response::Ok));
        };
        if e.state.status == Status::Running {
            return Err(err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is running: stop it first"),
            )
            .into());
        }
        let rt = e.state.runtime.clone();
        self.spawn_runtime(t, id, &rt, &["delete", "--force", id], null3(), Op::Delete)
    }

    /// Drop every trace of a deleted container.
    pub(super) fn forget(&mut self, id: &str) {
        let _ = self.store.remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.pid")));
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.runtime.log")));
        if let Some(e) = self.entries.remove(id) {
            for w in e.waiters {
                self.respond(
                    w,
                    &err(ErrorKind::NotFound, format!("container {id} was deleted")),
                );
            }
            for a in e.io.attached {
                self.close_conn(a);
            }
        }
        self.inits.retain(|_, v| v != id);
    }

    // --- children ----------------------------------------------------------

    /// Reap every exited child; called on SIGCHLD.
    pub(super) fn reap(&mut self) {
        let mut done = Vec::new();
        loop {
            let ws = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => ws,
            };
            let Some((pid, code)) = exit_code(ws) else {
                continue;
            };
            if let Some(p) = self.commands.remove(&pid) {
                done.push((p, code));
            } else if let Some(id) = self.inits.remove(&pid) {
                self.mark_exited(&id, code);
            } else {
                self.unclaimed.insert(pid, (code, Instant::now()));
            }
        }
        self.unclaimed
            .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(300));
        // After the whole batch: a create's continuation finds its init's
        // exit among the unclaimed ones.
        for (p, code) in done {
            self.finish(p, code);
        }
    }

    /// A notification on a container's OOM watch: record a kill durably
    /// as soon as it is seen.
    pub(super) fn oom_event(&mut self, id: &str) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let killed = e.oom.as_ref().is_some_and(|w| w.check());
        if killed && !e.state.oom_killed {
            e.state.oom_killed = true;
            note!("container {id}: the OOM killer killed a process in it");
            if let Err(err) = self.store.put(id, &e.state) {
                note!("container {id}: recording the OOM kill: {err}");
            }
        }
    }

    pub(super) fn mark_exited(&mut self, id: &str, code: i32) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        // A kill whose notification is not handled yet is read here, while
        // the cgroup may still be there.
        if let Some(w) = e.oom.take()
            && w.check()
        {
            e.state.oom_killed = true;
        }
        e.state.status = Status::Exited;
        e.state.exit_code = Some(code);
        e.state.finished_at = Some(now_ns());
        if let Err(err) = self.store.put(id, &e.state) {
            note!("container {id}: recording exit status: {err}");
        }
        let state = e.state.clone();
        let waiters = std::mem::take(&mut e.waiters);
        // Its stdin has no reader any more.
        e.io.stdin = None;
        e.io.stdin_buf = Vec::new();
        note!("container {id} exited with {code}");
        for w in waiters {
            self.respond(
                w,
                &Response::State {
                    state: state.clone(),
                },
            );
        }
        // What it wrote before it exited is in the pipes: log it and pass it
        // on, then end the attach sessions (a background process that kept
        // the pipes open still gets logged).
        let n = self.entries.get(id).map_or(0, |e| e.io.outputs.len());
        for i in (0..n).rev() {
            while self.read_output(id, i) {}
        }
        let attached = self
            .entries
            .get_mut(id)
            .map(|e| std::mem::take(&mut e.io.attached))
            .unwrap_or_default();
        for a in attached {
            self.close_conn(a);
        }
    }
}

pub(super) struct CreateArgs {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: RuntimeCmd,
    pub log_path: Option<PathBuf>,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

fn null3() -> [Stdio; 3] {
    [Stdio::null(), Stdio::null(), Stdio::null()]
}

/// The pty master the runtime sent to the console socket (it has exited by
/// now, so the connection is queued with the message in it).
fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (sock, _) = listener.accept()?;
    sock.set_nonblocking(false)?;
    // The runtime sent the master before it exited, so it is there or it
    // never comes; the wait is short because the whole pod's loop waits.
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        &sock,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = msg
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::new(
        IoKind::InvalidData,
        "no file descriptor in the message",
    ))
}

/// The OCI runtimes' container id rule (berth-runtime's `ContainerId`,
/// which the shim does not link: see the crate's ARCHITECTURE notes).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
}

/// A tty container's stdio is its pty master: read for output (logged as
/// stdout), written for input, resized on request.
fn pty_io(io: &mut ContainerIo, master: OwnedFd) -> std::io::Result<()> {
    nonblocking(&master)?;
    io.outputs.push(Output {
        fd: File::from(master.try_clone()?),
        kind: frame::STDOUT,
        lines: LineSplitter::new(Stream::Stdout),
    });
    io.stdin = Some(File::from(master.try_clone()?));
    io.pty = Some(master);
    Ok(())
}

/// The last error the runtime wrote to its `--log` (JSON lines, runc style).
fn runtime_error(log: &Path) -> Option<String> {
    let f = std::fs::File::open(log).ok()?;
    let mut last = None;
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({"msg": line}));
        if v.get("level")
            .and_then(|l| l.as_str())
            .is_none_or(|l| l == "error" || l == "fatal")
        {
            last = v.get("msg").and_then(|m| m.as_str()).map(str::to_owned);
        }
    }
    last
}
