//! exec: run another process in a created or running container.

use std::path::PathBuf;

use super::Runtime;
use crate::config::{self, ProcessConfig, tables};
use crate::error::Error;
use crate::id::ContainerId;
use crate::process::exec::{ExecArgs, spawn};
use crate::state::{Container, Status};

/// What `exec` runs: a `--process` JSON, or the container's own process
/// with the command-line overrides (runc's behaviour).
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub process_json: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// "uid[:gid]"
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub tty: bool,
    pub no_new_privs: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub pidfd_socket: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// AppArmor profile in place of the container's.
    pub apparmor: Option<String>,
    /// SELinux label in place of the container's.
    pub process_label: Option<String>,
}

impl Runtime {
    /// Returns the process's exit code (0 with `detach`).
    pub fn exec(&self, id: &ContainerId, o: &ExecOpts) -> Result<i32, Error> {
        let c = Container::load(&self.root, id)?;
        match c.status() {
            Status::Created | Status::Running => {}
            Status::Paused => return Err(Error::status(id, "cannot exec in a paused container")),
            s => {
                return Err(Error::status(
                    id,
                    format!("cannot exec in a {} container", s.as_str()),
                ));
            }
        }
        let process = self.exec_process(&c, o)?;
        let filter = match &c.state.seccomp {
            Some((path, flags)) => Some(
                crate::seccomp::compile::Filter::from_cache(
                    path,
                    *flags,
                    c.state.seccomp_listener.clone(),
                )
                .map_err(|source| Error::Seccomp {
                    id: id.to_string(),
                    source,
                })?,
            ),
            None => None,
        };
        let console = super::connect_console(id, o.console_socket.as_deref())?;
        let pidfd_socket = super::connect_pidfd_socket(id, o.pidfd_socket.as_deref())?;
        let mut set = nix::sys::signal::SigSet::empty();
        if !o.detach {
            for s in super::lifecycle::FORWARDED {
                set.add(s);
            }
            set.add(nix::sys::signal::Signal::SIGCHLD);
            set.thread_block()
                .map_err(|e| Error::io(id, "block signals")(e.into()))?;
        }
        let args = ExecArgs {
            init_pid: c.state.pid,
            cgroup: &c.state.cgroup,
            process: &process,
            console,
            preserve_fds: o.preserve_fds,
            seccomp: filter.as_ref(),
            id: id.as_str(),
            bundle: &c.state.bundle,
            annotations: &c.state.annotations,
        };
        let pid = spawn(&args).map_err(Error::process(id))?;
        if let Some(sock) = &pidfd_socket {
            super::send_pidfd(id, sock, pid)?;
        }
        if let Some(p) = &o.pid_file {
            super::lifecycle::write_pid_file(p, pid)
                .map_err(Error::io(id, format!("write --pid-file {}", p.display())))?;
        }
        if o.detach {
            return Ok(0);
        }
        Ok(super::lifecycle::forward_and_wait(pid, &set))
    }

    fn exec_process(&self, c: &Container, o: &ExecOpts) -> Result<ProcessConfig, Error> {
        if let Some(p) = &o.process_json {
            let bytes = std::fs::read(p)
                .map_err(Error::io(&c.id, format!("read --process {}", p.display())))?;
            let name = p.display().to_string();
            let spec: config::spec::Process = config::parse_json(&name, &bytes)?;
            let pc = config::validate_process("process", &spec, &name)?;
            if pc.args.is_empty() {
                return Err(Error::Usage(format!(
                    "{name}: process.args must not be empty"
                )));
            }
            return Ok(pc);
        }
        if o.args.is_empty() {
            return Err(Error::Usage("exec needs a command (or --process)".into()));
        }
        let cfg = config::load(&c.state.bundle)?;
        let mut p = cfg.process;
        p.args = o
            .args
            .iter()
            .map(|a| {
                std::ffi::CString::new(a.as_str())
                    .map_err(|_| Error::Usage("argument has a NUL".into()))
            })
            .collect::<Result<_, _>>()?;
        for e in &o.env {
            let key = e.split('=').next().unwrap_or("");
            p.env
                .retain(|x| x.to_bytes().split(|b| *b == b'=').next() != Some(key.as_bytes()));
            p.env.push(
                std::ffi::CString::new(e.as_str())
                    .map_err(|_| Error::Usage("env has a NUL".into()))?,
            );
        }
        if let Some(cwd) = &o.cwd {
            p.cwd = cwd.clone();
        }
        if let Some(u) = &o.user {
            let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
            p.user.uid = uid
                .parse()
                .map_err(|_| Error::Usage(format!("--user {u:?}: numeric uid[:gid] only")))?;
            p.user.gid = gid
                .parse()
                .map_err(|_| Error::Usage(format!("--user {u:?}: numeric uid[:gid] only")))?;
        }
        if !o.additional_gids.is_empty() {
            p.user.additional_gids = o.additional_gids.clone();
        }
        if !o.caps.is_empty() {
            let sets = p.caps.get_or_insert_with(Default::default);
            for name in &o.caps {
                let n = tables::capability(name)
                    .ok_or_else(|| Error::Usage(format!("--cap {name:?}: unknown capability")))?;
                sets.bounding |= 1 << n;
                sets.effective |= 1 << n;
                sets.permitted |= 1 << n;
            }
        }
        p.terminal = o.tty;
        p.no_new_privs |= o.no_new_privs;
        if let Some(a) = &o.apparmor {
            if !a.is_empty() && !crate::sys::apparmor::enabled() {
                return Err(Error::Usage(format!(
                    "--apparmor {a:?}: AppArmor is not enabled on this host"
                )));
            }
            p.apparmor_profile = (!a.is_empty()).then(|| a.clone());
        }
        if let Some(l) = o.process_label.as_deref().filter(|l| !l.is_empty()) {
            p.selinux_label = config::selinux_label("--process-label", l)
                .map_err(|(f, m)| Error::Usage(format!("{f}: {m}")))?;
        }
        Ok(p)
    }
}
