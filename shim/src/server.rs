//! The per-pod monitor's logic (runs inside `berth-shim`).
//!
//! The shim is a child subreaper: a container's init, forked by the OCI
//! runtime's `create`, is re-parented to it when the runtime exits, so the
//! shim reaps it and records its exit status durably. It owns the read ends
//! of the containers' stdout/stderr (or the pty master of a tty container)
//! and writes the CRI log files itself, so containers run and logs flow
//! while berthd is down; it keeps the write end of a container's stdin for
//! attach sessions, and copies output to the attached clients.
//!
//! It is one thread with one `poll(2)` loop and no async runtime: one of
//! these runs per pod, so its memory is what the node pays per pod (a tokio
//! runtime, its thread-locals and the code it links were most of the old
//! shim's 4 MB RSS). A single thread also means registering a child's pid
//! cannot race its reaping: children are reaped only in [`Shim::reap`],
//! called from the loop on SIGCHLD (a signalfd). A request that runs the OCI
//! runtime does not block the loop: the runtime process is spawned, the
//! connection waits, and the request finishes when its pid is reaped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, ErrorKind as IoKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::logfmt::Stream;
use crate::logger::{LineSplitter, LogFile};
use crate::proto::{ContainerState, ErrorKind, Request, Response, RuntimeCmd, Status, frame};
use crate::store::JsonStore;

/// A request line longer than this is refused (the connection is closed).
const MAX_REQUEST: usize = 1 << 20;
/// An attached client that falls this far behind is dropped: the log and
/// the container never wait for a client.
const MAX_ATTACH_BACKLOG: usize = 4 << 20;
/// Input for a container's stdin kept while it does not read; attach
/// clients are not read from beyond this.
const MAX_STDIN_BACKLOG: usize = 1 << 20;
/// One read buffer for every stream, reused.
const READ_CHUNK: usize = 32 * 1024;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

/// The shim's own diagnostics go to its stderr (berthd points it at
/// `shim.log`): one line per lifecycle event.
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{} berth-shim: {}", crate::logfmt::rfc3339_now(), format_args!($($arg)*))
    };
}

type Token = u64;

/// One of a container's output streams: a pipe, or the pty master.
struct Output {
    fd: File,
    kind: u8,
    lines: LineSplitter,
}

/// What the shim holds of a container's stdio.
#[derive(Default)]
struct ContainerIo {
    log: Option<LogFile>,
    outputs: Vec<Output>,
    /// The write end of its stdin pipe, or a copy of the pty master.
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    /// Close `stdin` once `stdin_buf` is written.
    close_stdin: bool,
    stdin_once: bool,
    /// The pty master of a tty container, for resizes.
    pty: Option<OwnedFd>,
    /// Connections in attach mode.
    attached: Vec<Token>,
}

struct Entry {
    state: ContainerState,
    io: ContainerIo,
    /// Connections waiting in `Wait`.
    waiters: Vec<Token>,
}

enum Mode {
    /// Reading request lines.
    Request,
    /// A request is in flight (a runtime call, a `Wait`).
    Busy,
    Attach {
        id: String,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Close once what is queued is written.
    Closing,
}

struct Conn {
    sock: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    mode: Mode,
    eof: bool,
}

/// A runtime call in flight and what to do when it exits.
struct Pending {
    conn: Token,
    id: String,
    binary: PathBuf,
    verb: &'static str,
    op: Op,
}

enum Op {
    Create(Box<Creating>),
    Start { started_at: i64 },
    Kill,
    Delete,
}

struct Creating {
    bundle: PathBuf,
    runtime: RuntimeCmd,
    log_path: Option<PathBuf>,
    io: ContainerIo,
    /// tty: the listener the runtime sends the pty master to, and its path.
    console: Option<(UnixListener, PathBuf)>,
}

pub struct Shim {
    dir: PathBuf,
    socket: PathBuf,
    store: JsonStore<ContainerState>,
    entries: HashMap<String, Entry>,
    /// Runtime CLI calls, by pid.
    commands: HashMap<i32, Pending>,
    /// Container init pids.
    inits: HashMap<i32, String>,
    /// Exits of pids nobody had claimed yet, with when they were seen.
    unclaimed: HashMap<i32, (i32, Instant)>,
    conns: HashMap<Token, Conn>,
    next_token: Token,
    next_console: u32,
    scratch: Vec<u8>,
    stop: bool,
}

fn exit_code(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

fn nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(std::io::Error::from)
}

/// Where a poll result belongs.
#[derive(Clone)]
enum Source {
    Listener,
    Signal,
    Conn(Token),
    Output(String, usize),
    Stdin(String),
}

impl Shim {
    /// Load the records in `dir`; `socket` is where berthd reaches us (the
    /// console sockets of tty containers are made next to it, where paths
    /// are short).
    pub fn open(dir: &Path, socket: &Path) -> Result<Self, crate::store::StoreError> {
        let store: JsonStore<ContainerState> = JsonStore::open(dir.join("containers"))?;
        let (records, bad) = store.load_all();
        for e in bad {
            note!("skipping unreadable container record: {e}");
        }
        let mut entries = HashMap::new();
        for (id, mut state) in records {
            // A shim that starts again cannot reap what an earlier one ran:
            // a container it did not see exit is reported as exited, unknown.
            if state.status != Status::Exited {
                state.status = Status::Exited;
                state.exit_code = Some(255);
                state.finished_at = Some(now_ns());
            }
            entries.insert(
                id,
                Entry {
                    state,
                    io: ContainerIo::default(),
                    waiters: Vec::new(),
                },
            );
        }
        Ok(Shim {
            dir: dir.to_owned(),
            socket: socket.to_owned(),
            store,
            entries,
            commands: HashMap::new(),
            inits: HashMap::new(),
            unclaimed: HashMap::new(),
            conns: HashMap::new(),
            next_token: 0,
            next_console: 0,
            scratch: vec![0; READ_CHUNK],
            stop: false,
        })
    }

    /// Serve `listener` until a `Shutdown` arrives with no container left.
    pub fn serve(mut self, listener: UnixListener) -> std::io::Result<()> {
        // SIGCHLD arrives on a signalfd, read by the loop. Children get an
        // empty mask again (std's Command resets it before exec).
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        listener.set_nonblocking(true)?;
        self.reap();
        while !self.stop {
            let ready = self.wait_ready(&listener, &sigfd)?;
            for (src, ev) in ready {
                self.dispatch(src, ev, &listener, &sigfd);
            }
            self.process_requests();
        }
        // The answer to Shutdown goes out before we exit.
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t) {
                let _ = c.sock.set_nonblocking(false);
                let _ = c.sock.write_all(&c.wbuf);
            }
        }
        Ok(())
    }

    fn wait_ready(
        &self,
        listener: &UnixListener,
        sigfd: &SignalFd,
    ) -> std::io::Result<Vec<(Source, PollFlags)>> {
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        let mut srcs = vec![Source::Listener, Source::Signal];
        for (t, c) in &self.conns {
            let mut flags = PollFlags::empty();
            let reading = match &c.mode {
                Mode::Closing => false,
                Mode::Attach { id, .. } => self
                    .entries
                    .get(id)
                    .is_none_or(|e| e.io.stdin_buf.len() < MAX_STDIN_BACKLOG),
                _ => !c.eof,
            };
            if reading {
                flags |= PollFlags::POLLIN;
            }
            if !c.wbuf.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.sock.as_fd(), flags));
            srcs.push(Source::Conn(*t));
        }
        for (id, e) in &self.entries {
            for (i, o) in e.io.outputs.iter().enumerate() {
                fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
                srcs.push(Source::Output(id.clone(), i));
            }
            if let Some(s) = &e.io.stdin
                && !e.io.stdin_buf.is_empty()
            {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
                srcs.push(Source::Stdin(id.clone()));
            }
        }
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(fds
            .iter()
            .zip(srcs)
            .filter_map(|(fd, src)| {
                let ev = fd.revents().unwrap_or(PollFlags::empty());
                (!ev.is_empty()).then_some((src, ev))
            })
            .collect())
    }

    fn dispatch(&mut self, src: Source, ev: PollFlags, listener: &UnixListener, sigfd: &SignalFd) {
        match src {
            Source::Listener => loop {
                match listener.accept() {
                    Ok((sock, _)) => {
                        if sock.set_nonblocking(true).is_err() {
                            continue;
                        }
                        let t = self.next_token;
                        self.next_token += 1;
                        self.conns.insert(
                            t,
                            Conn {
                                sock,
                                rbuf: Vec::new(),
                                wbuf: Vec::new(),
                                mode: Mode::Request,
                                eof: false,
                            },
                        );
                    }
                    Err(_) => break,
                }
            },
            Source::Signal => {
                while let Ok(Some(_)) = sigfd.read_signal() {}
                self.reap();
            }
            Source::Conn(t) => {
                if ev.contains(PollFlags::POLLOUT) {
                    self.flush(t);
                }
                if ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                    self.read_conn(t);
                }
            }
            Source::Output(id, i) => {
                self.read_output(&id, i);
            }
            Source::Stdin(id) => self.flush_stdin(&id),
        }
    }

    // --- connections -------------------------------------------------------

    fn read_conn(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        match c.sock.read(&mut self.scratch) {
            Ok(0) => c.eof = true,
            Ok(n) => c.rbuf.extend_from_slice(&self.scratch[..n]),
            Err(e) if e.kind() == IoKind::WouldBlock || e.kind() == IoKind::Interrupted => {}
            Err(_) => c.eof = true,
        }
        if c.rbuf.len() > MAX_REQUEST + frame::MAX_PAYLOAD {
            self.drop_conn(t);
            return;
        }
        if matches!(c.mode, Mode::Attach { .. }) {
            self.attach_input(t);
        }
        self.maybe_close(t);
    }

    /// Drop a connection that is done: the peer closed it and nothing is
    /// left to answer or write.
    fn maybe_close(&mut self, t: Token) {
        let Some(c) = self.conns.get(&t) else {
            return;
        };
        let done = match c.mode {
            Mode::Request => c.eof && c.wbuf.is_empty() && !c.rbuf.contains(&b'\n'),
            Mode::Busy => false,
            Mode::Attach { .. } => c.eof,
            Mode::Closing => c.wbuf.is_empty(),
        };
        if done {
            self.drop_conn(t);
        }
    }

    fn drop_conn(&mut self, t: Token) {
        let Some(c) = self.conns.remove(&t) else {
            return;
        };
        if let Mode::Attach { id, stdin, .. } = c.mode {
            self.detach(&id, t, stdin);
        }
    }

    fn flush(&mut self, t: Token) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        while !c.wbuf.is_empty() {
            match c.sock.write(&c.wbuf) {
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == IoKind::Interrupted => {}
                Err(e) if e.kind() == IoKind::WouldBlock => return,
                Err(_) => {
                    self.drop_conn(t);
                    return;
                }
            }
        }
        if c.wbuf.capacity() > 64 * 1024 {
            c.wbuf = Vec::new();
        }
        self.maybe_close(t);
    }

    fn respond(&mut self, t: Token, resp: &Response) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        // Serializing our own types cannot fail.
        let _ = serde_json::to_writer(&mut c.wbuf, resp);
        c.wbuf.push(b'\n');
        if matches!(c.mode, Mode::Busy) {
            c.mode = Mode::Request;
        }
        self.flush(t);
    }

    /// Handle the complete request lines of every idle connection.
    fn process_requests(&mut self) {
        let ready: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.mode, Mode::Request) && c.rbuf.contains(&b'\n'))
            .map(|(t, _)| *t)
            .collect();
        for t in ready {
            loop {
                let Some(c) = self.conns.get_mut(&t) else {
                    break;
                };
                if !matches!(c.mode, Mode::Request) {
                    break;
                }
                let Some(nl) = c.rbuf.iter().position(|&b| b == b'\n') else {
                    break;
                };
                let line: Vec<u8> = c.rbuf.drain(..=nl).collect();
                match serde_json::from_slice::<Request>(&line) {
                    Ok(req) => self.handle(t, req),
                    Err(e) => {
                        self.respond(t, &err(ErrorKind::BadRequest, format!("bad request: {e}")))
                    }
                }
                if self.stop {
                    return;
                }
            }
            self.maybe_close(t);
        }
    }

    fn handle(&mut self, t: Token, req: Request) {
        let resp = match req {
            Request::Create {
                id,
                bundle,
                runtime,
                log_path,
                stdin,
                stdin_once,
                tty,
            } => {
                let c = CreateArgs {
                    id,
                    bundle,
                    runtime,
                    log_path,
                    stdin,
                    stdin_once,
                    tty,
                };
                match self.create(t, c) {
                    Ok(()) => return,
                    Err(e) => e,
                }
            }
            Request::Start { id } => match self.start(t, &id) {
                Ok(()) => return,
                Err(e) => e,
            },
            Request::Kill { id, signal, all } => match self.kill(t, &id, signal, all) {
                Ok(()) => return,
                Err(e) => e,
            },
            Request::Delete { id } => match self.delete(t, &id) {
                Ok(()) => return,
                Err(e) => e,
            },
            Request::State { id } => match self.entries.get(&id) {
                Some(e) => Response::State {
                    state: e.state.clone(),
                },
                None => err(ErrorKind::NotFound, format!("container {id} not found")),
            },
            Request::Wait { id } => match self.entries.get_mut(&id) {
                None => err(ErrorKind::NotFound, format!("container {id} not found")),
                Some(e) if e.state.status == Status::Exited => Response::State {
                    state: e.state.clone(),
                },
                Some(e) => {
                    e.waiters.push(t);
                    self.busy(t);
                    return;
                }
            },
            Request::List => {
                let mut containers: Vec<_> =
                    self.entries.values().map(|e| e.state.clone()).collect();
                containers.sort_by(|a, b| a.id.cmp(&b.id));
                Response::List { containers }
            }
            Request::ReopenLog { id } => match self.entries.get_mut(&id) {
                None => err(ErrorKind::NotFound, format!("container {id} not found")),
                Some(Entry {
                    io: ContainerIo { log: None, .. },
                    ..
                }) => err(
                    ErrorKind::FailedPrecondition,
                    format!("container {id} has no open log"),
                ),
                Some(Entry {
                    io: ContainerIo { log: Some(l), .. },
                    ..
                }) => match l.reopen() {
                    Ok(()) => Response::Ok,
                    Err(e) => err(
                        ErrorKind::Runtime,
                        format!("container {id}: reopen log: {e}"),
                    ),
                },
            },
            Request::Shutdown => {
                if self
                    .entries
                    .values()
                    .any(|e| e.state.status != Status::Exited)
                {
                    err(
                        ErrorKind::FailedPrecondition,
                        "containers are still running",
                    )
                } else {
                    self.stop = true;
                    Response::Ok
                }
            }
            Request::Attach {
                id,
                stdin,
                stdout,
                stderr,
            } => match self.entries.get_mut(&id) {
                None => err(ErrorKind::NotFound, format!("container {id} not found")),
                Some(e) if e.state.status != Status::Running => err(
                    ErrorKind::FailedPrecondition,
                    format!("container {id} is not running"),
                ),
                Some(e) => {
                    e.io.attached.push(t);
                    // Input is ignored for a container without stdin (or
                    // whose stdin_once session is over).
                    let stdin = stdin && e.io.stdin.is_some() && !e.io.close_stdin;
                    self.respond(t, &Response::Ok);
                    if let Some(c) = self.conns.get_mut(&t) {
                        c.mode = Mode::Attach {
                            id,
                            stdin,
                            stdout,
                            stderr,
                        };
                    }
                    // Frames may have come with the request.
                    self.attach_input(t);
                    return;
                }
            },
        };
        self.respond(t, &resp);
    }

    fn busy(&mut self, t: Token) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.mode = Mode::Busy;
        }
    }

    // --- the runtime -------------------------------------------------------

    /// Start `<runtime> <args>`; it finishes in [`Shim::finish`] when reaped.
    fn spawn_runtime(
        &mut self,
        t: Token,
        id: &str,
        rt: &RuntimeCmd,
        args: &[&str],
        stdio: [Stdio; 3],
        op: Op,
    ) -> Result<(), Response> {
        let log = self.dir.join(format!("{id}.runtime.log"));
        let _ = std::fs::remove_file(&log);
        let [i, o, e] = stdio;
        let child = Command::new(&rt.binary)
            .arg("--root")
            .arg(&rt.root)
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
    fn finish(&mut self, p: Pending, code: i32) {
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

    fn create(&mut self, t: Token, a: CreateArgs) -> Result<(), Response> {
        let id = a.id;
        if !valid_id(&id) {
            return Err(err(
                ErrorKind::BadRequest,
                format!("container id {id:?} is not valid"),
            ));
        }
        let creating = self
            .commands
            .values()
            .any(|p| p.id == id && matches!(p.op, Op::Create(_)));
        if creating || self.entries.contains_key(&id) {
            return Err(err(
                ErrorKind::AlreadyExists,
                format!("container {id} already exists"),
            ));
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
    fn created(&mut self, id: &str, c: Creating) -> Response {
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
                    // The container exists but cannot be talked to: kill it,
                    // its exit is reaped as usual.
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
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
        };
        if let Err(e) = self.store.put(id, &state) {
            return err(ErrorKind::Runtime, format!("container {id}: {e}"));
        }
        self.entries.insert(
            id.to_owned(),
            Entry {
                state,
                io,
                waiters: Vec::new(),
            },
        );
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

    fn start(&mut self, t: Token, id: &str) -> Result<(), Response> {
        let Some(e) = self.entries.get(id) else {
            return Err(err(
                ErrorKind::NotFound,
                format!("container {id} not found"),
            ));
        };
        if e.state.status != Status::Created {
            return Err(err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is {:?}, not created", e.state.status),
            ));
        }
        // The container may run and exit before `start` returns: take the
        // start time first, so started_at never comes after finished_at.
        let op = Op::Start {
            started_at: now_ns(),
        };
        let rt = e.state.runtime.clone();
        self.spawn_runtime(t, id, &rt, &["start", id], null3(), op)
    }

    fn kill(&mut self, t: Token, id: &str, signal: i32, all: bool) -> Result<(), Response> {
        let Some(e) = self.entries.get(id) else {
            return Err(err(
                ErrorKind::NotFound,
                format!("container {id} not found"),
            ));
        };
        if e.state.status == Status::Exited {
            return Err(Response::Ok);
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

    fn delete(&mut self, t: Token, id: &str) -> Result<(), Response> {
        let Some(e) = self.entries.get(id) else {
            return Err(Response::Ok);
        };
        if e.state.status == Status::Running {
            return Err(err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is running: stop it first"),
            ));
        }
        let rt = e.state.runtime.clone();
        self.spawn_runtime(t, id, &rt, &["delete", "--force", id], null3(), Op::Delete)
    }

    /// Drop every trace of a deleted container.
    fn forget(&mut self, id: &str) {
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
    fn reap(&mut self) {
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

    fn mark_exited(&mut self, id: &str, code: i32) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
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

    // --- stdio -------------------------------------------------------------

    /// Read once from output `i` of container `id`: log it, copy it to the
    /// attached clients. False once nothing more is to be read now.
    fn read_output(&mut self, id: &str, i: usize) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let Some(out) = e.io.outputs.get_mut(i) else {
            return false;
        };
        let n = match out.fd.read(&mut self.scratch) {
            Ok(n) => n,
            Err(err) if err.kind() == IoKind::Interrupted => return true,
            Err(err) if err.kind() == IoKind::WouldBlock => return false,
            // EIO from a pty master: the terminal's last holder closed it.
            Err(_) => 0,
        };
        if n == 0 {
            let mut out = e.io.outputs.remove(i);
            if let Some(log) = e.io.log.as_mut() {
                out.lines.finish(log);
            }
            if e.io.outputs.is_empty() {
                // Nothing more to attach to.
                let attached = std::mem::take(&mut e.io.attached);
                for a in attached {
                    self.close_conn(a);
                }
            }
            return false;
        }
        let data = &self.scratch[..n];
        if let Some(log) = e.io.log.as_mut() {
            out.lines.push(data, log);
        }
        let kind = out.kind;
        let mut slow = Vec::new();
        for t in &e.io.attached {
            let Some(c) = self.conns.get_mut(t) else {
                continue;
            };
            let wanted = match &c.mode {
                Mode::Attach { stdout, stderr, .. } => {
                    (kind == frame::STDOUT && *stdout) || (kind == frame::STDERR && *stderr)
                }
                _ => false,
            };
            if !wanted {
                continue;
            }
            if c.wbuf.len() > MAX_ATTACH_BACKLOG {
                slow.push(*t);
                continue;
            }
            for chunk in data.chunks(frame::MAX_PAYLOAD) {
                frame::encode(&mut c.wbuf, kind, chunk);
            }
        }
        let attached = e.io.attached.clone();
        for t in slow {
            note!("container {id}: dropping an attach client that does not keep up");
            self.drop_conn(t);
        }
        for t in attached {
            self.flush(t);
        }
        true
    }

    /// Frames from an attached client.
    fn attach_input(&mut self, t: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            let Mode::Attach { id, stdin, .. } = &mut c.mode else {
                return;
            };
            let (kind, payload, used) = match frame::parse(&c.rbuf) {
                Ok(Some((k, p, n))) => (k, p.to_vec(), n),
                Ok(None) => return,
                Err(e) => {
                    note!("container {id}: attach: {e}");
                    self.drop_conn(t);
                    return;
                }
            };
            c.rbuf.drain(..used);
            let id = id.clone();
            let session_stdin = *stdin;
            if kind == frame::STDIN_CLOSE && session_stdin {
                *stdin = false;
            }
            let Some(e) = self.entries.get_mut(&id) else {
                return;
            };
            match kind {
                frame::STDIN if session_stdin && e.io.stdin.is_some() && !e.io.close_stdin => {
                    e.io.stdin_buf.extend_from_slice(&payload);
                    self.flush_stdin(&id);
                }
                frame::STDIN_CLOSE if session_stdin && e.io.stdin_once => {
                    e.io.close_stdin = true;
                    self.flush_stdin(&id);
                }
                frame::RESIZE => {
                    if let (Some(pty), Some((w, h))) = (&e.io.pty, frame::parse_resize(&payload)) {
                        let _ = rustix::termios::tcsetwinsize(
                            pty,
                            rustix::termios::Winsize {
                                ws_row: h,
                                ws_col: w,
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// An attach session ended.
    fn detach(&mut self, id: &str, t: Token, had_stdin: bool) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.io.attached.retain(|a| *a != t);
        if had_stdin && e.io.stdin_once {
            e.io.close_stdin = true;
            self.flush_stdin(id);
        }
    }

    /// End a connection once what is queued for it is written.
    fn close_conn(&mut self, t: Token) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.mode = Mode::Closing;
        }
        self.flush(t);
    }

    fn flush_stdin(&mut self, id: &str) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let io = &mut e.io;
        let mut broken = false;
        if let Some(f) = io.stdin.as_mut() {
            while !io.stdin_buf.is_empty() {
                match f.write(&io.stdin_buf) {
                    Ok(n) => {
                        io.stdin_buf.drain(..n);
                    }
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(e) if e.kind() == IoKind::WouldBlock => return,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
        }
        if broken {
            // Nobody reads it any more.
            io.stdin_buf.clear();
            io.stdin = None;
        }
        if io.close_stdin && io.stdin_buf.is_empty() && io.pty.is_none() {
            io.stdin = None;
        }
        if io.stdin_buf.capacity() > 64 * 1024 && io.stdin_buf.is_empty() {
            io.stdin_buf = Vec::new();
        }
    }
}

struct CreateArgs {
    id: String,
    bundle: PathBuf,
    runtime: RuntimeCmd,
    log_path: Option<PathBuf>,
    stdin: bool,
    stdin_once: bool,
    tty: bool,
}

fn null3() -> [Stdio; 3] {
    [Stdio::null(), Stdio::null(), Stdio::null()]
}

/// The pty master the runtime sent to the console socket (it has exited by
/// now, so the connection is queued with the message in it).
fn receive_master(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (sock, _) = listener.accept()?;
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
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
