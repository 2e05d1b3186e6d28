//! Starting the container's init: the parent side (`spawn`) and the child
//! side (`init`). Synchronous and single-threaded throughout.
//!
//! Model: one clone3 straight into the new namespaces when nothing forces an
//! order (the common case); otherwise an intermediate child joins/unshares
//! and forks the init with CLONE_PARENT (so the runtime stays its parent,
//! for `run`). The parent places the child in its cgroup and writes the id
//! maps, then one GO message lets it continue; the init answers READY (or
//! ERROR with the message) once everything up to exec is done.

pub mod exec;
pub mod hooks;
pub mod init;
pub mod sync;

use std::os::fd::{AsFd, OwnedFd};

use crate::cgroups::{CgroupError, CgroupPaths};
use crate::config::{Config, NsKind};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("init: {0}")]
    Init(String),
    #[error("init exited before it was ready")]
    InitGone,
    #[error("unexpected message {0:?} from init")]
    Protocol(char),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    SeccompNotify(#[from] crate::seccomp::notify::NotifyError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Io { what, source }
}

/// How init waits between `create` and `start`.
#[derive(Debug)]
pub enum StartGate {
    /// `create`: a listening unix socket in the state dir; `start` connects.
    Listener(OwnedFd),
    /// `run`: the parent sends START over the sync channel.
    Sync,
}

/// Everything the init needs; borrowed across the clone (the child has a
/// copy of the parent's memory).
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub cfg: &'a Config,
    pub cgroup: &'a CgroupPaths,
    pub gate: StartGate,
    pub console: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// prestart/createRuntime hooks exist: init asks the parent to run them.
    pub runtime_hooks: bool,
    /// The compiled seccomp filter, if the config has a profile.
    pub seccomp: Option<&'a crate::seccomp::compile::Filter>,
    /// Puts the init (its pid) in its cgroup instead of `cgroup.add_pid`:
    /// the systemd driver starts the scope with it, then applies resources.
    pub place: Option<&'a dyn Fn(i32) -> Result<(), CgroupError>>,
}

/// A started init, ready and waiting for start.
pub struct Spawned {
    pub pid: i32,
    /// The parent's end of the sync channel (for START in `run`).
    pub sock: OwnedFd,
}

/// Kills and reaps a child unless disarmed: a failed create leaves no
/// process behind.
pub(crate) struct ChildGuard(pub(crate) Option<i32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Whether init can be cloned straight into its namespaces. Joining a user,
/// pid or time namespace, time offsets, or a new user namespace next to
/// joined ones need the intermediate process (setns/unshare order).
pub fn direct_clone(cfg: &Config) -> bool {
    let ns = &cfg.linux.namespaces;
    !(ns.is_joined(NsKind::User)
        || ns.is_joined(NsKind::Pid)
        || ns.is_joined(NsKind::Time)
        || ns.is_new(NsKind::Time)
        || (ns.is_new(NsKind::User) && !ns.join.is_empty()))
}

/// The clone flags of the new namespaces, without the cgroup one (init
/// unshares that after it is in its cgroup, so its root is that cgroup).
pub fn new_ns_flags(cfg: &Config) -> u64 {
    cfg.linux
        .namespaces
        .new
        .iter()
        .filter(|k| **k != NsKind::Cgroup)
        .fold(0, |f, k| f | k.clone_flag())
}

/// Start the init; returns once it is READY. `run_hooks(pid)` runs the
/// prestart and createRuntime hooks when init asks for them.
pub fn spawn(
    args: &InitArgs<'_>,
    run_hooks: &mut dyn FnMut(i32) -> Result<(), ProcessError>,
) -> Result<Spawned, ProcessError> {
    // Before the clone: the init inherits the trees.
    let idmapped = crate::rootfs::idmap::prepare(&args.cfg.mounts)?;
    let (psock, csock) = sync::pair().map_err(io_err("socketpair"))?;
    let direct = direct_clone(args.cfg);
    let flags = if direct { new_ns_flags(args.cfg) } else { 0 };
    let pid = sys::clone3(flags, None).map_err(io_err("clone3"))?;
    if pid == 0 {
        drop(psock);
        init::child(args, csock, direct, &idmapped);
    }
    drop(idmapped);
    drop(csock);
    let mut guard = ChildGuard(Some(pid));
    let ps = psock.as_fd();
    if !direct {
        expect(ps, sync::UNSHARED)?;
    }
    match args.place {
        Some(place) => place(pid)?,
        None => args.cgroup.add_pid(pid)?,
    }
    if args.cfg.linux.namespaces.is_new(NsKind::User) {
        write_id_maps(pid, args.cfg)?;
    }
    sync::send(ps, sync::GO, &[]).map_err(io_err("sync: send go"))?;
    let mut init_pid = pid;
    if !direct {
        let payload = expect(ps, sync::PID)?;
        let bytes: [u8; 4] = payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(ProcessError::Protocol('P'))?;
        init_pid = i32::from_le_bytes(bytes);
        // The intermediate exits once it has forked init: reap it; the
        // guard now owns init (our child through CLONE_PARENT).
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        guard.0 = Some(init_pid);
        sync::send(ps, sync::GO, &[]).map_err(io_err("sync: send go"))?;
    }
    loop {
        match recv(ps)? {
            (sync::HOOKS, _, _) => {
                run_hooks(init_pid)?;
                sync::send(ps, sync::GO, &[]).map_err(io_err("sync: send go"))?;
            }
            (sync::SECCOMP, _, Some(fd)) => {
                let st = crate::seccomp::notify::ProcessState {
                    pid: init_pid,
                    id: args.id,
                    status: "creating",
                    init_pid,
                    bundle: &args.cfg.bundle,
                    annotations: &args.cfg.annotations,
                };
                forward_seccomp(args.seccomp, &st, fd)?;
            }
            (sync::READY, _, _) => break,
            (t, _, _) => return Err(ProcessError::Protocol(t as char)),
        }
    }
    guard.0 = None;
    Ok(Spawned {
        pid: init_pid,
        sock: psock,
    })
}

fn recv(sock: std::os::fd::BorrowedFd<'_>) -> Result<sync::Msg, ProcessError> {
    match sync::recv_with_fd(sock).map_err(io_err("sync: receive"))? {
        None => Err(ProcessError::InitGone),
        Some((sync::ERROR, msg, _)) => Err(ProcessError::Init(
            String::from_utf8_lossy(&msg).into_owned(),
        )),
        Some(m) => Ok(m),
    }
}

pub(crate) fn expect(sock: std::os::fd::BorrowedFd<'_>, tag: u8) -> Result<Vec<u8>, ProcessError> {
    match recv(sock)? {
        (t, p, _) if t == tag => Ok(p),
        (t, _, _) => Err(ProcessError::Protocol(t as char)),
    }
}

/// Hand a notify fd from the child to the profile's seccomp agent.
pub(crate) fn forward_seccomp(
    filter: Option<&crate::seccomp::compile::Filter>,
    st: &crate::seccomp::notify::ProcessState<'_>,
    fd: OwnedFd,
) -> Result<(), ProcessError> {
    let l = filter
        .and_then(|f| f.listener())
        .ok_or(ProcessError::Protocol(sync::SECCOMP as char))?;
    crate::seccomp::notify::send(l, st, fd.as_fd())?;
    Ok(())
}

fn write_id_maps(pid: i32, cfg: &Config) -> Result<(), ProcessError> {
    let fmt = crate::rootfs::idmap::map_lines;
    for (file, maps) in [
        ("uid_map", &cfg.linux.uid_mappings),
        ("gid_map", &cfg.linux.gid_mappings),
    ] {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, fmt(maps)).map_err(io_err(format!("write {p}")))?;
    }
    Ok(())
}

/// Format an error with its whole source chain, for messages that cross
/// the process boundary as text.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Wait for `pid` (our child) and return its exit code the shell way
/// (128 + signal when killed).
pub fn wait_exit_code(pid: i32) -> i32 {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
