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
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;

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

mod oom;
mod runtime;
mod stdio;

use runtime::CreateArgs;

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
    /// The watch on its memory cgroup's OOM kills, while it runs.
    oom: Option<oom::OomWatch>,
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
    Oom(String),
}

impl Shim {
    /// Load the records in `dir`; `socket` is where berthd reaches us (the
    /// console sockets of tty containers are made next to it, where paths
    /// are short).
    pub fn open(dir: &Path, socket: &Path) -> Result<Self, crate::store::StoreError> {
        // Under the state folder: gone at reboot with the containers.
        let store: JsonStore<ContainerState> = JsonStore::open_volatile(dir.join("containers"))?;
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
                    oom: None,
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
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let mut srcs = vec![Source::Listener];
        // OOM notifications before SIGCHLD: a kill is recorded from the
        // notification before the exit it causes is, while the cgroup is
        // still there to read.
        for (id, e) in &self.entries {
            if let Some(w) = &e.oom {
                fds.push(PollFd::new(w.fd(), PollFlags::POLLIN));
                srcs.push(Source::Oom(id.clone()));
            }
        }
        fds.push(PollFd::new(sigfd.as_fd(), PollFlags::POLLIN));
        srcs.push(Source::Signal);
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
            // Nothing to read or write (a request in flight from a peer that
            // has gone, an attach whose stdin backlog is full): not polled,
            // since poll reports a hang-up whether asked or not and the loop
            // would spin on it. The answer, when it comes, finds the peer
            // gone and drops the connection.
            if flags.is_empty() {
                continue;
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
            Source::Listener => {
                while let Ok((sock, _)) = listener.accept() {
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
            }
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
            Source::Oom(id) => self.oom_event(&id),
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
            while let Some(line) = self.next_line(t) {
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

    /// The next request line of an idle connection.
    fn next_line(&mut self, t: Token) -> Option<Vec<u8>> {
        let c = self.conns.get_mut(&t)?;
        if !matches!(c.mode, Mode::Request) {
            return None;
        }
        let nl = c.rbuf.iter().position(|&b| b == b'\n')?;
        Some(c.rbuf.drain(..=nl).collect())
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
                    Err(e) => *e,
                }
            }
            Request::Start { id } => match self.start(t, &id) {
                Ok(()) => return,
                Err(e) => *e,
            },
            Request::Kill { id, signal, all } => match self.kill(t, &id, signal, all) {
                Ok(()) => return,
                Err(e) => *e,
            },
            Request::Delete { id } => match self.delete(t, &id) {
                Ok(()) => return,
                Err(e) => *e,
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
}
