//! create, start, run, delete: the container lifecycle.

use std::cell::RefCell;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::Runtime;
use crate::cgroups::systemd::{Scope, Systemd};
use crate::cgroups::{CgroupPaths, Layout};
use crate::config::{self, Config};
use crate::error::Error;
use crate::id::ContainerId;
use crate::process::{self, InitArgs, ProcessError, StartGate, hooks, sync};
use crate::state::{self, Container, START_SOCKET, StateError, StateFile, Status};

#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

#[derive(Debug, Clone, Default)]
pub struct RunOpts {
    pub create: CreateOpts,
    pub detach: bool,
    pub keep: bool,
}

/// Undoes a half-done create: scope unit, cgroup and state dir (the init
/// itself is killed by `process::spawn`'s guard).
struct Cleanup<'a> {
    dir: Option<PathBuf>,
    cgroup: Option<CgroupPaths>,
    unit: Option<(&'a RefCell<Systemd>, &'a str)>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some((sd, unit)) = self.unit.take()
            && let Err(e) = sd.borrow_mut().stop(unit)
        {
            crate::log::warn(&format!("cleanup: {e}"));
        }
        if let Some(cg) = self.cgroup.take()
            && let Err(e) = cg.remove()
        {
            crate::log::warn(&format!("cleanup: {}", process::chain(&e)));
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// `<dir>/<name>` spelled through /proc/self/fd, short enough for sun_path
/// whatever the state root's length.
fn short_path(dir: &OwnedFd, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

impl Runtime {
    pub fn create(&self, id: &ContainerId, o: &CreateOpts) -> Result<(), Error> {
        self.create_inner(id, o, false).map(drop)
    }

    fn create_inner(
        &self,
        id: &ContainerId,
        o: &CreateOpts,
        run: bool,
    ) -> Result<(Container, process::Spawned), Error> {
        let cfg = config::load(&o.bundle)?;
        let layout = Layout::detect().map_err(Error::cgroup(id))?;
        // The systemd driver: the scope, and systemd reached, before
        // anything is made (a refusal leaves nothing behind).
        let scope = match self.systemd_cgroup {
            true => Some(
                Scope::parse(cfg.linux.cgroups_path.as_deref(), id.as_str())
                    .map_err(Error::cgroup(id))?,
            ),
            false => None,
        };
        let scope_path = scope.as_ref().map(Scope::cgroup_path);
        let cgroup = CgroupPaths::plan(
            &layout,
            scope_path.as_deref().or(cfg.linux.cgroups_path.as_deref()),
            id.as_str(),
        )
        .map_err(Error::cgroup(id))?;
        let systemd = match &scope {
            Some(_) => Some(RefCell::new(Systemd::connect().map_err(Error::cgroup(id))?)),
            None => None,
        };
        let seccomp = match &cfg.linux.seccomp {
            Some(p) => Some(
                crate::seccomp::compile::load_or_compile(p, &self.root).map_err(|source| {
                    Error::Seccomp {
                        id: id.to_string(),
                        source,
                    }
                })?,
            ),
            None => None,
        };
        create_root(&self.root).map_err(Error::io(
            id,
            format!("create state root {}", self.root.display()),
        ))?;
        let dir = self.root.join(id.as_str());
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()).into());
            }
            Err(e) => return Err(Error::io(id, format!("create {}", dir.display()))(e)),
        }
        let mut cleanup = Cleanup {
            dir: Some(dir.clone()),
            cgroup: None,
            unit: None,
        };
        let place_in_scope = |pid: i32| -> Result<(), crate::cgroups::CgroupError> {
            if let (Some(sd), Some(scope)) = (&systemd, &scope) {
                let v2 = matches!(layout, Layout::Unified(_));
                sd.borrow_mut()
                    .start_scope(scope, pid, &cfg.linux.resources, v2)?;
                // The hierarchies systemd leaves alone (v1), then the exact
                // values, as with cgroupfs.
                cgroup.create()?;
                apply_resources(&cgroup, &cfg)?;
            }
            cgroup.add_pid(pid)
        };
        match (&systemd, &scope) {
            (Some(sd), Some(scope)) => {
                cleanup.unit = Some((sd, scope.unit.as_str()));
                cleanup.cgroup = Some(cgroup.clone());
            }
            _ => {
                cgroup.create().map_err(Error::cgroup(id))?;
                cleanup.cgroup = Some(cgroup.clone());
                apply_resources(&cgroup, &cfg).map_err(Error::cgroup(id))?;
            }
        }

        let dirfd: OwnedFd = std::fs::File::open(&dir)
            .map_err(Error::io(id, "open state dir"))?
            .into();
        let gate = if run {
            StartGate::Sync
        } else {
            let l = UnixListener::bind(short_path(&dirfd, START_SOCKET))
                .map_err(Error::io(id, "bind start socket"))?;
            StartGate::Listener(OwnedFd::from(l))
        };
        let console = super::connect_console(id, o.console_socket.as_deref())?;
        let pidfd_socket = super::connect_pidfd_socket(id, o.pidfd_socket.as_deref())?;
        let runtime_hooks = !cfg.hooks.prestart.is_empty() || !cfg.hooks.create_runtime.is_empty();
        let args = InitArgs {
            id: id.as_str(),
            cfg: &cfg,
            cgroup: &cgroup,
            gate,
            console,
            no_pivot: o.no_pivot,
            no_new_keyring: o.no_new_keyring,
            preserve_fds: o.preserve_fds,
            runtime_hooks,
            seccomp: seccomp.as_ref(),
            place: systemd.is_some().then_some(&place_in_scope as _),
        };
        let mut run_hooks = |pid: i32| -> Result<(), ProcessError> {
            let st = hook_state(id, pid, "creating", &cfg);
            hooks::run("prestart", &cfg.hooks.prestart, &st)?;
            hooks::run("createRuntime", &cfg.hooks.create_runtime, &st)?;
            Ok(())
        };
        let spawned = process::spawn(&args, &mut run_hooks).map_err(Error::process(id))?;
        drop(args);
        let c = Container {
            id: id.clone(),
            dir: dir.clone(),
            state: StateFile {
                id: id.to_string(),
                pid: spawned.pid,
                pid_start: state::proc_start_time(spawned.pid).unwrap_or(0),
                bundle: cfg.bundle.clone(),
                rootfs: cfg.root.path.clone(),
                created: state::rfc3339_now(),
                owner: String::new(),
                annotations: cfg.annotations.clone(),
                cgroup: cgroup.clone(),
                systemd_unit: scope.as_ref().map(|s| s.unit.clone()),
                hooks: cfg.hooks.clone(),
                own_pid_ns: cfg.linux.namespaces.is_new(crate::config::NsKind::Pid),
                seccomp: match (&cfg.linux.seccomp, &seccomp) {
                    (Some(p), Some(f)) => Some((
                        crate::seccomp::compile::cache_path(p, &self.root),
                        f.flags(),
                    )),
                    _ => None,
                },
                seccomp_listener: seccomp.as_ref().and_then(|f| f.listener().cloned()),
            },
        };
        let kill_init = || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(spawned.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(spawned.pid), None);
        };
        if let Err(e) = c.save() {
            kill_init();
            return Err(e.into());
        }
        if let Some(sock) = &pidfd_socket
            && let Err(e) = super::send_pidfd(id, sock, spawned.pid)
        {
            kill_init();
            return Err(e);
        }
        if let Some(p) = &o.pid_file
            && let Err(e) = write_pid_file(p, spawned.pid)
        {
            kill_init();
            return Err(Error::io(id, format!("write --pid-file {}", p.display()))(
                e,
            ));
        }
        cleanup.dir = None;
        cleanup.cgroup = None;
        cleanup.unit = None;
        crate::log::debug(&format!(
            "container {id}: created, init pid {}",
            spawned.pid
        ));
        Ok((c, spawned))
    }

    pub fn start(&self, id: &ContainerId) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        match c.status() {
            Status::Created => {}
            Status::Stopped => {
                return Err(Error::status(
                    id,
                    "cannot start a container that has stopped",
                ));
            }
            Status::Running => {
                return Err(Error::status(
                    id,
                    "cannot start an already running container",
                ));
            }
            s => {
                return Err(Error::status(
                    id,
                    format!("cannot start a container in status {}", s.as_str()),
                ));
            }
        }
        let dirfd: OwnedFd = std::fs::File::open(&c.dir)
            .map_err(Error::io(id, "open state dir"))?
            .into();
        let mut conn = UnixStream::connect(short_path(&dirfd, START_SOCKET))
            .map_err(Error::io(id, "connect to init"))?;
        let mut b = [0u8; 1];
        // Blocks until init has accepted: it replies and then execs.
        match conn.read(&mut b) {
            Ok(1) => {}
            Ok(_) => return Err(Error::status(id, "init exited before start")),
            Err(e) => return Err(Error::io(id, "wait for init")(e)),
        }
        let _ = std::fs::remove_file(c.dir.join(START_SOCKET));
        run_poststart(&c);
        crate::log::debug(&format!("container {id}: started"));
        Ok(())
    }

    /// create + start; in the foreground, wait and return the exit code.
    pub fn run(&self, id: &ContainerId, o: &RunOpts) -> Result<i32, Error> {
        // Block the signals we forward before init exists, so none is lost.
        let mut set = nix::sys::signal::SigSet::empty();
        if !o.detach {
            for s in FORWARDED {
                set.add(s);
            }
            set.add(nix::sys::signal::Signal::SIGCHLD);
            set.thread_block()
                .map_err(|e| Error::io(id, "block signals")(e.into()))?;
        }
        let (c, spawned) = self.create_inner(id, &o.create, true)?;
        sync::send(spawned.sock.as_fd(), sync::START, &[]).map_err(Error::io(id, "start init"))?;
        run_poststart(&c);
        if o.detach {
            return Ok(0);
        }
        let code = forward_and_wait(spawned.pid, &set);
        if !o.keep {
            self.destroy(&c)?;
        }
        Ok(code)
    }

    pub fn delete(&self, id: &ContainerId, force: bool) -> Result<(), Error> {
        let c = match Container::load(&self.root, id) {
            Ok(c) => c,
            Err(StateError::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match c.status() {
            Status::Stopped => {}
            Status::Created => kill_and_wait(&c),
            s if force => {
                if s == Status::Paused {
                    let _ = c.state.cgroup.freeze(false);
                }
                kill_and_wait(&c)
            }
            s => {
                return Err(Error::status(
                    id,
                    format!(
                        "cannot delete container {id} that is not stopped: {}",
                        s.as_str()
                    ),
                ));
            }
        }
        self.destroy(&c)
    }

    /// Remove what a stopped container leaves: cgroup, state; run poststop.
    fn destroy(&self, c: &Container) -> Result<(), Error> {
        // Processes left in the cgroup without a pid namespace to end them.
        for pid in c.state.cgroup.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(unit) = &c.state.systemd_unit {
            // Usually gone already: systemd ends a scope once it is empty.
            if let Err(e) = Systemd::connect().and_then(|mut sd| sd.stop(unit)) {
                crate::log::warn(&format!("container {}: {e}", c.id));
            }
        }
        c.state.cgroup.remove().map_err(Error::cgroup(&c.id))?;
        if !c.state.hooks.poststop.is_empty() {
            let st = c.oci_state().to_string();
            if let Err(e) = hooks::run("poststop", &c.state.hooks.poststop, &st) {
                crate::log::warn(&format!("container {}: {}", c.id, process::chain(&e)));
            }
        }
        std::fs::remove_dir_all(&c.dir).map_err(Error::io(&c.id, "remove state dir"))?;
        crate::log::debug(&format!("container {}: deleted", c.id));
        Ok(())
    }
}

pub(crate) const FORWARDED: [nix::sys::signal::Signal; 7] = {
    use nix::sys::signal::Signal::*;
    [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH]
};

pub(crate) fn forward_and_wait(pid: i32, set: &nix::sys::signal::SigSet) -> i32 {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let p = nix::unistd::Pid::from_raw(pid);
    loop {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Err(nix::errno::Errno::ECHILD) => return 255,
            _ => {}
        }
        match set.wait() {
            Ok(nix::sys::signal::Signal::SIGCHLD) | Err(_) => {}
            Ok(sig) => {
                let _ = nix::sys::signal::kill(p, sig);
            }
        }
    }
}

/// SIGKILL the container (all of its cgroup when it has no pid namespace)
/// and wait, without polling, until init is gone.
fn kill_and_wait(c: &Container) {
    let Ok(pidfd) = crate::sys::pidfd_open(c.state.pid) else {
        return;
    };
    if !c.init_alive() {
        return;
    }
    let _ = crate::sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    if !c.state.own_pid_ns {
        for pid in c.state.cgroup.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = crate::sys::pidfd_wait(pidfd.as_fd(), 10_000);
}

fn run_poststart(c: &Container) {
    if c.state.hooks.poststart.is_empty() {
        return;
    }
    // The state as of the start (the spec's "running", with the pid), even if
    // a short-lived process has exited by the time the hooks run.
    let mut st = c.oci_state();
    st["status"] = Status::Running.as_str().into();
    st["pid"] = c.state.pid.into();
    let st = st.to_string();
    if let Err(e) = hooks::run("poststart", &c.state.hooks.poststart, &st) {
        crate::log::warn(&format!("container {}: {}", c.id, process::chain(&e)));
    }
}

fn hook_state(id: &ContainerId, pid: i32, status: &str, cfg: &Config) -> String {
    serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": id.as_str(),
        "status": status,
        "pid": pid,
        "bundle": cfg.bundle,
        "annotations": cfg.annotations,
    })
    .to_string()
}

fn apply_resources(cg: &CgroupPaths, cfg: &Config) -> Result<(), crate::cgroups::CgroupError> {
    // The `linux.devices` nodes are allowed after the spec's rules.
    let extra: Vec<String> = cfg
        .linux
        .devices
        .iter()
        .filter(|d| d.kind != libc::S_IFIFO)
        .map(|d| {
            let k = if d.kind == libc::S_IFBLK { 'b' } else { 'c' };
            format!("{k} {}:{} rwm", d.major, d.minor)
        })
        .collect();
    match cg {
        CgroupPaths::V1 { dirs } => {
            crate::cgroups::v1::apply_writes(dirs, &cfg.linux.resources, &extra, true)
        }
        CgroupPaths::V2 { path } => {
            crate::cgroups::v2::apply_create(path, &cfg.linux.resources, &extra)
        }
    }
}

fn create_root(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
}

pub(crate) fn write_pid_file(p: &Path, pid: i32) -> std::io::Result<()> {
    let p = std::path::absolute(p)?;
    let dir = p.parent().unwrap_or(Path::new("/"));
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("pid");
    state::write_atomic(dir, name, pid.to_string().as_bytes())
}
