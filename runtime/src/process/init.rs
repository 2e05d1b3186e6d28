//! The container's init, from clone to execve. Runs in the cloned child;
//! never returns: it execs the container process or reports the error over
//! the sync channel and exits.
//!
//! Never: keep an fd other than stdio and the preserved ones across exec
//! (CVE-2024-21626); stay dumpable while joining namespaces (CVE-2016-9962);
//! write to a /proc that is not procfs; give inheritable capabilities the
//! spec does not list.

use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{InitArgs, StartGate, hooks, sync};
use crate::config::{NsKind, ProcessConfig};
use crate::rootfs::idmap::IdmapTrees;
use crate::rootfs::{self, RootfsError, dev, mount};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rootfs")]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error("{0}")]
    Msg(String),
    #[error("seccomp")]
    Seccomp(#[from] crate::seccomp::compile::SeccompError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InitError {
    let what = what.into();
    move |source| InitError::Io { what, source }
}

fn nix(what: impl Into<String>) -> impl FnOnce(nix::Error) -> InitError {
    let what = what.into();
    move |e| InitError::Io {
        what,
        source: e.into(),
    }
}

/// Entry point in the cloned child.
pub fn child(args: &InitArgs<'_>, sock: OwnedFd, direct: bool, idmapped: &IdmapTrees) -> ! {
    let Err(e) = run(args, sock.as_fd(), direct, idmapped);
    let _ = sync::send(sock.as_fd(), sync::ERROR, super::chain(&e).as_bytes());
    sys::exit_now(1)
}

fn wait_go(sock: BorrowedFd<'_>) -> Result<(), InitError> {
    match sync::recv(sock).map_err(io("sync: receive"))? {
        Some((sync::GO, _)) => Ok(()),
        Some((sync::START, _)) => Ok(()),
        _ => Err(InitError::Msg("sync: parent went away".into())),
    }
}

fn run(
    args: &InitArgs<'_>,
    sock: BorrowedFd<'_>,
    direct: bool,
    idmapped: &IdmapTrees,
) -> Result<Infallible, InitError> {
    let cfg = args.cfg;
    let ns = &cfg.linux.namespaces;
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).map_err(io("set non-dumpable"))?;
    // `run` blocks the signals it forwards; the container must not inherit that.
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(nix("reset signal mask"))?;
    // Until GO, the parent is moving us into the cgroup (on v1 the first
    // cgroup.procs write waits for an RCU grace period, ~10 ms). Without a
    // user namespace nothing before the cgroup mounts depends on it, so the
    // rootfs work overlaps with that wait.
    let mut barrier = CgroupBarrier {
        go_pending: false,
        unshare: ns.is_new(NsKind::Cgroup),
    };
    if direct {
        if ns.is_new(NsKind::User) {
            wait_go(sock)?;
            become_ns_root()?;
        } else {
            barrier.go_pending = true;
        }
        join_namespaces(args, false)?;
    } else {
        join_namespaces(args, true)?;
        let flags = super::new_ns_flags(cfg);
        // SAFETY: unshare with namespace flags only; single-threaded.
        if unsafe { libc::unshare(flags as libc::c_int) } < 0 {
            return Err(io("unshare namespaces")(std::io::Error::last_os_error()));
        }
        if !cfg.linux.time_offsets.is_empty() {
            let s: String = cfg
                .linux
                .time_offsets
                .iter()
                .map(|(c, s, n)| format!("{c} {s} {n}\n"))
                .collect();
            std::fs::write("/proc/self/timens_offsets", s).map_err(io("write timens_offsets"))?;
        }
        sync::send(sock, sync::UNSHARED, &[]).map_err(io("sync: send"))?;
        wait_go(sock)?;
        // Root in the user namespace, new or joined: the rootfs work creates
        // files, which the host's root (unmapped there) may not own.
        if ns.has(NsKind::User) {
            become_ns_root()?;
        }
        // The init proper: pid 1 of a new pid namespace, our parent's child.
        let pid = sys::clone3(libc::CLONE_PARENT as u64, None).map_err(io("clone3 init"))?;
        if pid > 0 {
            sync::send(sock, sync::PID, &pid.to_le_bytes()).map_err(io("sync: send"))?;
            sys::exit_now(0);
        }
        // Nothing of ours may overtake the intermediate's PID message on
        // the shared channel: the parent says go once it has it.
        wait_go(sock)?;
    }
    if let Some(adj) = cfg.process.oom_score_adj {
        set_oom_score_adj(adj)?;
    }

    // Root file system, all before pivot_root: the host /proc (checked) is
    // what /proc/self/fd/N paths go through.
    rootfs::check_host_proc()?;
    let devnull = mount::open_devnull()?;
    let root = rootfs::bind_rootfs(&cfg.root.path, cfg.root.propagation)?;
    let cgroupns = ns.has(NsKind::Cgroup);
    for m in &cfg.mounts {
        if m.kind == crate::config::MountKind::Cgroup {
            barrier.pass(sock)?;
        }
        mount::mount_one(
            root.as_fd(),
            m,
            args.cgroup,
            cgroupns,
            idmapped.get(m.index),
        )?;
    }
    barrier.pass(sock)?;
    let dev_bound = cfg.mounts.iter().any(|m| {
        m.destination == "/dev" && matches!(m.kind, crate::config::MountKind::Bind { .. })
    });
    let in_userns = ns.has(NsKind::User);
    if !dev_bound {
        for d in dev::default_devices()
            .iter()
            .chain(cfg.linux.devices.iter())
        {
            dev::create_device(root.as_fd(), d, in_userns)?;
        }
        let with_pts = cfg.mounts.iter().any(|m| m.destination == "/dev/pts");
        dev::create_symlinks(root.as_fd(), with_pts)?;
    } else {
        for d in &cfg.linux.devices {
            dev::create_device(root.as_fd(), d, in_userns)?;
        }
    }
    let console = if cfg.process.terminal {
        let sockfd = args.console.as_ref().ok_or_else(|| {
            InitError::Msg("process.terminal is true but no --console-socket was given".into())
        })?;
        let (master, slave) = dev::open_console(root.as_fd(), cfg.process.console_size)?;
        sys::send_fd(sockfd.as_fd(), master.as_raw_fd())
            .map_err(io("console: send the pty master over --console-socket"))?;
        Some(slave)
    } else {
        None
    };
    rootfs::write_sysctls(&root, &cfg.linux.sysctl)?;
    for p in &cfg.linux.readonly_paths {
        mount::readonly_path(root.as_fd(), p)?;
    }
    for p in &cfg.linux.masked_paths {
        mount::mask_path(root.as_fd(), p, devnull.as_fd())?;
    }
    drop(devnull);
    if args.runtime_hooks {
        sync::send(sock, sync::HOOKS, &[]).map_err(io("sync: send"))?;
        wait_go(sock)?;
    }
    if !cfg.hooks.create_container.is_empty() {
        hooks::run(
            "createContainer",
            &cfg.hooks.create_container,
            &hook_state(args, "created"),
        )?;
    }
    rootfs::enter(&root, args.no_pivot, cfg.root.propagation)?;
    drop(root);
    if cfg.root.readonly {
        rootfs::readonly_root()?;
    }
    if let Some(h) = &cfg.hostname {
        nix::unistd::sethostname(h).map_err(nix(format!("sethostname {h:?}")))?;
    }
    if let Some(d) = &cfg.domainname {
        sys::setdomainname(d).map_err(io(format!("setdomainname {d:?}")))?;
    }
    if let Some(slave) = &console {
        dev::become_console(slave)?;
    } else {
        // Its own session without a terminal, as runc's init: the
        // container's processes are not in a session whose leader is
        // outside (CRIU refuses to dump such a tree).
        nix::unistd::setsid().map_err(nix("setsid"))?;
    }
    drop(console);
    if !args.no_new_keyring {
        if let Some(l) = &cfg.process.selinux_label {
            sys::selinux::set_keycreate_label(l)
                .map_err(io(format!("set SELinux key label {l:?}")))?;
        }
        let name = CString::new(format!("_ses.{}", args.id)).expect("id has no NUL");
        // Not fatal: kernels without keyrings, or a seccomp'd host.
        let _ = sys::join_session_keyring(&name);
    }
    if let Some(per) = cfg.linux.personality {
        // SAFETY: personality takes an integer; it returns the old value or -1.
        if unsafe { libc::personality(per as libc::c_ulong) } == -1 {
            return Err(io("set personality")(std::io::Error::last_os_error()));
        }
    }
    let seccomp = args.seccomp;
    let (exe, notify) = finalize(&cfg.process, args.preserve_fds, seccomp)?;
    if let Some(fd) = notify {
        sync::send_fd(sock, sync::SECCOMP, fd.as_fd()).map_err(io("sync: send seccomp fd"))?;
    }

    sync::send(sock, sync::READY, &[]).map_err(io("sync: send ready"))?;
    match &args.gate {
        StartGate::Sync => wait_go(sock)?,
        StartGate::Listener(l) => wait_start(l.as_fd())?,
    }
    if !cfg.hooks.start_container.is_empty() {
        hooks::run(
            "startContainer",
            &cfg.hooks.start_container,
            &hook_state(args, "running"),
        )?;
    }
    exec(&exe, &cfg.process, seccomp)
}

/// Identity, limits, capabilities, cwd and fds of the process about to run;
/// returns the resolved executable, and the seccomp notify fd when the
/// profile has SCMP_ACT_NOTIFY (such a filter is loaded here, not at exec:
/// the agent must have the fd before start). Shared with `exec`.
pub fn finalize(
    p: &ProcessConfig,
    preserve_fds: u32,
    seccomp: Option<&crate::seccomp::compile::Filter>,
) -> Result<(CString, Option<OwnedFd>), InitError> {
    let mut notify = None;
    for r in &p.rlimits {
        let lim = libc::rlimit {
            rlim_cur: r.soft,
            rlim_max: r.hard,
        };
        // SAFETY: valid rlimit struct for the call.
        if unsafe { libc::setrlimit(r.resource as _, &lim) } < 0 {
            return Err(io(format!("setrlimit {}", r.resource))(
                std::io::Error::last_os_error(),
            ));
        }
    }
    if let Some(prio) = p.io_priority {
        const IOPRIO_WHO_PROCESS: libc::c_int = 1;
        // SAFETY: integer arguments only.
        if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) } < 0 {
            return Err(io("set io priority")(std::io::Error::last_os_error()));
        }
    }
    if let Some(a) = &p.scheduler {
        sys::sched_setattr(a).map_err(io("set scheduler (sched_setattr)"))?;
    }
    // Before the identity and capabilities change: the switch happens at
    // exec, and asking for it needs nothing dropped yet.
    if let Some(name) = &p.apparmor_profile {
        sys::apparmor::change_onexec(name)
            .map_err(io(format!("apply AppArmor profile {name:?}")))?;
    }
    if let Some(l) = &p.selinux_label {
        sys::selinux::set_exec_label(l).map_err(io(format!("set SELinux exec label {l:?}")))?;
    }
    let last = sys::caps::last_cap();
    if let Some(c) = &p.caps {
        sys::caps::drop_bounding(c.bounding, last).map_err(io("capabilities: bounding set"))?;
    }
    // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it now.
    if let Some(f) = seccomp
        && !p.no_new_privs
    {
        notify = f.load()?;
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(io("keep capabilities"))?;
    sys::set_ids(p.user.uid, p.user.gid, &p.user.additional_gids)
        .map_err(io(format!("set user {}:{}", p.user.uid, p.user.gid)))?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(io("keep capabilities"))?;
    if let Some(c) = &p.caps {
        sys::caps::apply(c, last).map_err(io("capabilities: set"))?;
    }
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(io("set no_new_privs"))?;
    }
    sys::umask(p.user.umask.unwrap_or(0o022));
    nix::unistd::chdir(p.cwd.as_str()).map_err(nix(format!("chdir to cwd {:?}", p.cwd)))?;
    // A leaked host directory fd would make the cwd "(unreachable)/...":
    // refuse to run outside the container's root (CVE-2024-21626).
    let cwd = nix::unistd::getcwd().map_err(nix("getcwd"))?;
    if !cwd.starts_with("/") {
        return Err(InitError::Msg(format!(
            "cwd {:?} is outside the container",
            cwd
        )));
    }
    let exe = find_executable(p)?;
    sys::fd::cloexec_from(3).map_err(io("mark fds close-on-exec"))?;
    for fd in 3..3 + preserve_fds as i32 {
        sys::fd::keep_on_exec(fd).map_err(io(format!("preserve fd {fd}")))?;
    }
    if let Some(f) = seccomp
        && p.no_new_privs
        && f.listener().is_some()
    {
        notify = f.load()?;
    }
    Ok((exe, notify))
}

/// exec the process; the seccomp filter (with no_new_privs) goes on last so
/// that nothing of ours runs under it.
pub fn exec(
    exe: &CStr,
    p: &ProcessConfig,
    seccomp: Option<&crate::seccomp::compile::Filter>,
) -> Result<Infallible, InitError> {
    if let Some(f) = seccomp
        && p.no_new_privs
        && f.listener().is_none()
    {
        f.load()?;
    }
    let e = nix::unistd::execve(exe, &p.args, &p.env).unwrap_err();
    Err(nix(format!("exec {:?}", exe))(e))
}

fn find_executable(p: &ProcessConfig) -> Result<CString, InitError> {
    let arg0 = p.args[0]
        .to_str()
        .map_err(|_| InitError::Msg("process.args[0] is not UTF-8".into()))?;
    let ok = |path: &str| {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
            && std::fs::metadata(path).is_ok_and(|m| m.is_file())
    };
    if arg0.contains('/') {
        if ok(arg0) {
            return Ok(p.args[0].clone());
        }
        return Err(InitError::Msg(format!(
            "exec: {arg0:?}: no such file or not executable"
        )));
    }
    for dir in p.path_var().split(':').filter(|d| !d.is_empty()) {
        let cand = format!("{dir}/{arg0}");
        if ok(&cand) {
            return Ok(CString::new(cand).expect("no NUL"));
        }
    }
    Err(InitError::Msg(format!(
        "exec: {arg0:?}: executable file not found in $PATH"
    )))
}

fn wait_start(listener: BorrowedFd<'_>) -> Result<(), InitError> {
    let conn = loop {
        match nix::sys::socket::accept4(
            listener.as_raw_fd(),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(fd) => break fd,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(nix("start: accept")(e)),
        }
    };
    // SAFETY: accept4 returned a new fd we now own.
    let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(conn) };
    nix::unistd::write(&conn, b"0").map_err(nix("start: reply"))?;
    Ok(())
}

/// In the cgroup (GO received) and, with a new cgroup namespace, unshared
/// into it, so that namespace's root is the container's cgroup.
struct CgroupBarrier {
    go_pending: bool,
    unshare: bool,
}

impl CgroupBarrier {
    fn pass(&mut self, sock: BorrowedFd<'_>) -> Result<(), InitError> {
        if std::mem::take(&mut self.go_pending) {
            wait_go(sock)?;
        }
        if std::mem::take(&mut self.unshare) {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .map_err(nix("unshare cgroup namespace"))?;
        }
        Ok(())
    }
}

fn become_ns_root() -> Result<(), InitError> {
    // SAFETY: integer arguments only.
    unsafe {
        if libc::syscall(libc::SYS_setresgid, 0, 0, 0) < 0
            || libc::syscall(libc::SYS_setresuid, 0, 0, 0) < 0
        {
            return Err(io("become root in the user namespace")(
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// setns into the joined namespaces: the user namespace first (it grants
/// the rights for the others), pid and time only when `all` (they apply to
/// children, so only the intermediate joins them).
fn join_namespaces(args: &InitArgs<'_>, all: bool) -> Result<(), InitError> {
    let mut joins = args.cfg.linux.namespaces.join.clone();
    joins.sort_by_key(|(k, _)| *k != NsKind::User);
    for (k, path) in &joins {
        if !all && matches!(k, NsKind::User | NsKind::Pid | NsKind::Time) {
            continue;
        }
        let f = std::fs::File::open(path).map_err(io(format!(
            "open {} namespace {}",
            k.spec_name(),
            path.display()
        )))?;
        nix::sched::setns(
            f.as_fd(),
            nix::sched::CloneFlags::from_bits_retain(k.clone_flag() as i32),
        )
        .map_err(nix(format!(
            "join {} namespace {}",
            k.spec_name(),
            path.display()
        )))?;
    }
    Ok(())
}

/// Lowering oom_score_adj needs CAP_SYS_RESOURCE, which the caller may not
/// have: then keep the current value (clamp), never fail.
fn set_oom_score_adj(adj: i32) -> Result<(), InitError> {
    let p = "/proc/self/oom_score_adj";
    match std::fs::write(p, adj.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            crate::log::debug(&format!(
                "oom_score_adj {adj} not allowed, keeping the current value"
            ));
            Ok(())
        }
        Err(e) => Err(io(format!("write {p}"))(e)),
    }
}

fn hook_state(args: &InitArgs<'_>, status: &str) -> String {
    serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": args.id,
        "status": status,
        "pid": std::process::id(),
        "bundle": args.cfg.bundle,
        "annotations": args.cfg.annotations,
    })
    .to_string()
}
