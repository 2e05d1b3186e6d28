//! `exec`: a new process in a running container. The child joins the
//! init's namespaces (those that differ from ours) through fds opened by
//! the parent, is placed in the container's cgroup by the parent, forks
//! once more when the pid namespace is joined (setns applies to children),
//! and then goes through the same `finalize` as init.

use std::convert::Infallible;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::init::{self, InitError};
use super::{ChildGuard, ProcessError, io_err, sync};
use crate::cgroups::CgroupPaths;
use crate::config::{NsKind, ProcessConfig};
use crate::rootfs::dev;
use crate::sys;

pub struct ExecArgs<'a> {
    pub init_pid: i32,
    pub cgroup: &'a CgroupPaths,
    pub process: &'a ProcessConfig,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub seccomp: Option<&'a crate::seccomp::compile::Filter>,
    /// The container, as a seccomp agent learns it.
    pub id: &'a str,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
}

/// The init's namespaces that differ from ours, opened (user first).
fn namespaces_of(pid: i32) -> Result<Vec<(NsKind, File)>, ProcessError> {
    let mut out = Vec::new();
    for k in NsKind::ALL {
        let theirs = format!("/proc/{pid}/ns/{}", k.proc_name());
        let Ok(t) = std::fs::read_link(&theirs) else {
            continue;
        };
        let ours = std::fs::read_link(format!("/proc/self/ns/{}", k.proc_name())).ok();
        if ours.as_ref() == Some(&t) {
            continue;
        }
        out.push((
            k,
            File::open(&theirs).map_err(io_err(format!("open {theirs}")))?,
        ));
    }
    // User first (it grants the rights for the others), mount last (it
    // changes our root).
    out.sort_by_key(|(k, _)| match k {
        NsKind::User => 0,
        NsKind::Mount => 2,
        _ => 1,
    });
    Ok(out)
}

/// Start the process; returns its pid once it is about to exec.
pub fn spawn(args: &ExecArgs<'_>) -> Result<i32, ProcessError> {
    let ns = namespaces_of(args.init_pid)?;
    let joins_pid = ns.iter().any(|(k, _)| *k == NsKind::Pid);
    let (psock, csock) = sync::pair().map_err(io_err("socketpair"))?;
    let pid = sys::clone3(0, None).map_err(io_err("clone3"))?;
    if pid == 0 {
        drop(psock);
        let Err(e) = child(args, &ns, joins_pid, csock.as_fd());
        let _ = sync::send(csock.as_fd(), sync::ERROR, super::chain(&e).as_bytes());
        sys::exit_now(1);
    }
    drop(csock);
    let mut guard = ChildGuard(Some(pid));
    args.cgroup.add_pid(pid)?;
    sync::send(psock.as_fd(), sync::GO, &[]).map_err(io_err("sync: send go"))?;
    let mut proc_pid = pid;
    if joins_pid {
        let p = super::expect(psock.as_fd(), sync::PID)?;
        let b: [u8; 4] = p
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(ProcessError::Protocol('P'))?;
        proc_pid = i32::from_le_bytes(b);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        guard.0 = Some(proc_pid);
        // The process waits for this: its READY must not overtake the
        // intermediate's PID on the shared channel.
        sync::send(psock.as_fd(), sync::GO, &[]).map_err(io_err("sync: send go"))?;
    }
    loop {
        match super::recv(psock.as_fd())? {
            (sync::SECCOMP, _, Some(fd)) => {
                let st = crate::seccomp::notify::ProcessState {
                    pid: proc_pid,
                    id: args.id,
                    status: "running",
                    init_pid: args.init_pid,
                    bundle: args.bundle,
                    annotations: args.annotations,
                };
                super::forward_seccomp(args.seccomp, &st, fd)?;
            }
            (sync::READY, _, _) => break,
            (t, _, _) => return Err(ProcessError::Protocol(t as char)),
        }
    }
    guard.0 = None;
    Ok(proc_pid)
}

fn child(
    args: &ExecArgs<'_>,
    ns: &[(NsKind, File)],
    joins_pid: bool,
    sock: BorrowedFd<'_>,
) -> Result<Infallible, InitError> {
    let nixe = |what: &str| {
        let what = what.to_owned();
        move |e: nix::Error| InitError::Io {
            what,
            source: e.into(),
        }
    };
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).map_err(|source| InitError::Io {
        what: "set non-dumpable".into(),
        source,
    })?;
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(nixe("reset signal mask"))?;
    match sync::recv(sock) {
        Ok(Some((sync::GO, _))) => {}
        _ => return Err(InitError::Msg("sync: parent went away".into())),
    }
    for (k, f) in ns {
        nix::sched::setns(
            f.as_fd(),
            nix::sched::CloneFlags::from_bits_retain(k.clone_flag() as i32),
        )
        .map_err(nixe(&format!(
            "join the container's {} namespace",
            k.spec_name()
        )))?;
    }
    if joins_pid {
        let pid = sys::clone3(libc::CLONE_PARENT as u64, None).map_err(|source| InitError::Io {
            what: "clone3".into(),
            source,
        })?;
        if pid > 0 {
            sync::send(sock, sync::PID, &pid.to_le_bytes()).map_err(|source| InitError::Io {
                what: "sync".into(),
                source,
            })?;
            sys::exit_now(0);
        }
        match sync::recv(sock) {
            Ok(Some((sync::GO, _))) => {}
            _ => return Err(InitError::Msg("sync: parent went away".into())),
        }
    }
    if args.process.terminal {
        let sockfd = args
            .console
            .as_ref()
            .ok_or_else(|| InitError::Msg("--tty needs --console-socket".into()))?;
        let root = std::fs::File::open("/").map_err(|source| InitError::Io {
            what: "open /".into(),
            source,
        })?;
        let (master, slave) = dev::open_pty(root.as_fd(), args.process.console_size)?;
        sys::send_fd(sockfd.as_fd(), master.as_raw_fd()).map_err(|source| InitError::Io {
            what: "send the pty master over --console-socket".into(),
            source,
        })?;
        dev::become_console(&slave)?;
    }
    let (exe, notify) = init::finalize(args.process, args.preserve_fds, args.seccomp)?;
    if let Some(fd) = notify {
        sync::send_fd(sock, sync::SECCOMP, fd.as_fd()).map_err(|source| InitError::Io {
            what: "sync: send seccomp fd".into(),
            source,
        })?;
    }
    sync::send(sock, sync::READY, &[]).map_err(|source| InitError::Io {
        what: "sync".into(),
        source,
    })?;
    init::exec(&exe, args.process, args.seccomp)
}
