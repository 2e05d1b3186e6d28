//! OOM kills of a container, seen as they happen.
//!
//! A container's cgroup can be gone by the time its exit is read: under the
//! systemd cgroup driver systemd removes a scope's cgroup as soon as it is
//! empty. So the monitor watches the memory controller's counter while the
//! container runs, the way containerd's shims do, and records an OOM kill in
//! the container's durable state:
//!
//! - cgroup v2: an inotify watch on `memory.events` (the kernel notifies a
//!   change of it), whose `oom_kill` count is compared with the count at
//!   create;
//! - cgroup v1: an eventfd registered through `cgroup.event_control` for
//!   `memory.oom_control`. The kernel signals it as an OOM in the cgroup
//!   begins, before the kill raises the `oom_kill` count, so a signal seen
//!   while the cgroup is still there is the OOM kill (as containerd's v1
//!   shims take it): the count alone would be read too early, and after the
//!   exit the cgroup may be gone. The eventfd also fires when the cgroup is
//!   removed; the file is then unreadable and nothing is recorded.
//!
//! The cgroup comes from `/proc/<pid>/cgroup` of the container's init, read
//! from the monitor's own cgroup namespace (the host's), so it works for any
//! OCI runtime and either cgroup driver.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

pub(super) struct OomWatch {
    /// The file with the `oom_kill` count.
    counter: PathBuf,
    /// The count when the watch started.
    baseline: u64,
    /// The inotify or eventfd descriptor polled for changes.
    fd: OwnedFd,
    /// v1 only: the control file, kept open while the eventfd is
    /// registered. Its presence also says that a signal of `fd` is an OOM
    /// in the cgroup (v2: any change of `memory.events`, so only the count
    /// tells).
    v1_control: Option<File>,
}

/// The memory cgroup of `pid` from its `/proc/<pid>/cgroup` text: a v1
/// hierarchy with the memory controller, else the unified one when it is
/// mounted alone (pure v2), as (is_v1, folder).
pub(super) fn memory_cgroup(proc_cgroup: &str, root: &Path) -> Option<(bool, PathBuf)> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "memory") {
            return Some((true, root.join("memory").join(path.trim_start_matches('/'))));
        }
    }
    // No v1 memory hierarchy: the unified one, where it has the controller.
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = root.join(path.trim_start_matches('/'));
    dir.join("memory.events").exists().then_some((false, dir))
}

/// The `oom_kill` count in the text of `memory.events` or
/// `memory.oom_control`.
pub(super) fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

fn read_count(path: &Path) -> Option<u64> {
    oom_kill_count(&std::fs::read_to_string(path).ok()?)
}

impl OomWatch {
    /// Watch the memory cgroup of `pid`; `None` where there is none to
    /// watch (no memory controller, the process is gone).
    pub(super) fn start(pid: i32) -> std::io::Result<Option<OomWatch>> {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return Ok(None);
        };
        let Some((v1, dir)) = memory_cgroup(&text, Path::new(CGROUP_ROOT)) else {
            return Ok(None);
        };
        if v1 {
            let counter = dir.join("memory.oom_control");
            let control = File::open(&counter)?;
            let fd = rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )?;
            let line = format!("{} {}", fd.as_raw_fd(), control.as_raw_fd());
            std::fs::write(dir.join("cgroup.event_control"), line)?;
            let baseline = read_count(&counter).unwrap_or(0);
            Ok(Some(OomWatch {
                counter,
                baseline,
                fd,
                v1_control: Some(control),
            }))
        } else {
            let counter = dir.join("memory.events");
            use rustix::fs::inotify;
            let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
            inotify::add_watch(&fd, &counter, inotify::WatchFlags::MODIFY)?;
            let baseline = read_count(&counter).unwrap_or(0);
            Ok(Some(OomWatch {
                counter,
                baseline,
                fd,
                v1_control: None,
            }))
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Drain the notifications and tell whether an OOM kill happened: the
    /// count has grown since the start, or (v1) an OOM was signalled while
    /// the cgroup is there. Also right for a cgroup that is already gone:
    /// no count, no kill seen.
    pub(super) fn check(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut signalled = false;
        while let Ok(n) = rustix::io::read(&self.fd, &mut buf) {
            if n == 0 {
                break;
            }
            signalled = true;
        }
        read_count(&self.counter)
            .is_some_and(|n| n > self.baseline || (signalled && self.v1_control.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_hierarchy_wins() {
        let text = "12:pids:/a\n5:memory:/kubepods/pod1/c1\n0::/system.slice/x\n";
        assert_eq!(
            memory_cgroup(text, Path::new("/sys/fs/cgroup")),
            Some((
                true,
                PathBuf::from("/sys/fs/cgroup/memory/kubepods/pod1/c1")
            ))
        );
        let joined = "4:cpu,memory:/x\n";
        assert_eq!(
            memory_cgroup(joined, Path::new("/r")),
            Some((true, PathBuf::from("/r/memory/x")))
        );
    }

    #[test]
    fn unified_needs_the_controller_file() {
        let dir = tempfile::tempdir().unwrap();
        let text = "0::/pod/c\n";
        assert_eq!(memory_cgroup(text, dir.path()), None);
        std::fs::create_dir_all(dir.path().join("pod/c")).unwrap();
        std::fs::write(dir.path().join("pod/c/memory.events"), "oom_kill 0\n").unwrap();
        assert_eq!(
            memory_cgroup(text, dir.path()),
            Some((false, dir.path().join("pod/c")))
        );
        assert_eq!(memory_cgroup("garbage", dir.path()), None);
    }

    #[test]
    fn counts_parse() {
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n"),
            Some(2)
        );
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(oom_kill_count("oom 1\n"), None);
    }
}
