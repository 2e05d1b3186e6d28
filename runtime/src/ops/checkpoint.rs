//! `checkpoint`: dump a running container's process tree with CRIU (the
//! `criu` binary, as runc calls it), leaving it running or stopping it.
//!
//! What CRIU cannot see from inside the container is named for it: host
//! paths bound in (and the cgroup mount) are external mounts keyed by their
//! destination, namespaces joined by path (the pod's network) are external
//! namespaces. Restore is not built (no CRI call restores; it wants the
//! same keys given back).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Runtime;
use crate::config::model::{MountKind, NsKind};
use crate::error::Error;
use crate::id::ContainerId;
use crate::state::{Container, Status};

/// `checkpoint`'s options (runc's names).
#[derive(Debug, Clone, Default)]
pub struct CheckpointOpts {
    /// Where the CRIU images go (created when missing).
    pub image_path: PathBuf,
    /// CRIU's log and work files; default: the image path.
    pub work_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// `soft`, `full`, `strict` or `ignore` (CRIU's `--manage-cgroups`).
    pub manage_cgroups_mode: Option<String>,
    /// The criu binary; default `criu` from PATH.
    pub criu: Option<PathBuf>,
}

/// CRIU's arguments for a dump of `pid` (pure: the unit tests check them).
pub fn dump_args(
    pid: i32,
    rootfs: &Path,
    external_mounts: &[String],
    external_ns: &[(&'static str, u64)],
    o: &CheckpointOpts,
) -> Vec<String> {
    let work = o.work_path.as_deref().unwrap_or(&o.image_path);
    let mut a: Vec<String> = vec![
        "dump".into(),
        "--tree".into(),
        pid.to_string(),
        "--images-dir".into(),
        o.image_path.display().to_string(),
        "--work-dir".into(),
        work.display().to_string(),
        "--log-file".into(),
        "dump.log".into(),
        "-v4".into(),
        "--root".into(),
        rootfs.display().to_string(),
        // An optional argument: only `=` attaches it.
        format!(
            "--manage-cgroups={}",
            o.manage_cgroups_mode.as_deref().unwrap_or("soft")
        ),
    ];
    for (flag, on) in [
        ("--leave-running", o.leave_running),
        ("--tcp-established", o.tcp_established),
        ("--ext-unix-sk", o.ext_unix_sk),
        ("--shell-job", o.shell_job),
        ("--file-locks", o.file_locks),
    ] {
        if on {
            a.push(flag.into());
        }
    }
    for dest in external_mounts {
        a.push("--external".into());
        a.push(format!("mnt[{dest}]:{dest}"));
    }
    for (kind, ino) in external_ns {
        a.push("--external".into());
        a.push(format!("{kind}[{ino}]:extRoot{kind}NS"));
    }
    a
}

/// Mount points (as the container sees them) of `devtmpfs` mounts in a
/// `/proc/<pid>/mountinfo`: the host's device nodes bound in.
pub fn host_dev_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split(' ').nth(4)?;
            (post.split(' ').next()? == "devtmpfs")
                .then(|| crate::rootfs::unescape_mountinfo(point))
        })
        .collect()
}

/// Files the container's processes hold open on mounts outside its mount
/// namespace (its stdio from the monitor, e.g. the host's /dev/null), as
/// CRIU's external-file keys `file[<mnt_id>:<inode>]` (hex). Pipes,
/// sockets and anonymous inodes are CRIU's own business.
fn outside_files(pids: &[i32], mountinfo: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inside: Vec<u64> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let mut keys = Vec::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if !target.is_absolute() {
                continue; // pipe:[..], socket:[..], anon_inode:..
            }
            let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
            let mnt_id = std::fs::read_to_string(info).ok().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("mnt_id:")?.trim().parse::<u64>().ok())
            });
            let (Some(mnt_id), Ok(md)) = (mnt_id, std::fs::metadata(fd.path())) else {
                continue;
            };
            let key = format!("file[{mnt_id:x}:{:x}]", md.ino());
            if !inside.contains(&mnt_id) && !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

impl Runtime {
    pub fn checkpoint(&self, id: &ContainerId, o: &CheckpointOpts) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        if c.status() != Status::Running {
            return Err(Error::status(id, "container not running"));
        }
        let cfg = crate::config::load(&c.state.bundle)?;
        let mut external_mounts: Vec<String> = cfg
            .mounts
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Bind { .. } | MountKind::Cgroup))
            .map(|m| m.destination.clone())
            .collect();
        // Nodes bound from the host's /dev (masked files get the host's
        // /dev/null; devices in a user namespace are binds): CRIU cannot
        // find their source inside, so they are external too.
        let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", c.state.pid))
            .map_err(Error::io(id, "the container's mountinfo"))?;
        for p in host_dev_mounts(&mountinfo) {
            if !external_mounts.contains(&p) {
                external_mounts.push(p);
            }
        }
        let pids = c.state.cgroup.pids().map_err(Error::cgroup(id))?;
        let external_files = outside_files(&pids, &mountinfo);
        // Namespaces the container joined (the pod's): CRIU leaves them be.
        let mut external_ns = Vec::new();
        for (kind, path) in &cfg.linux.namespaces.join {
            let name = match kind {
                NsKind::Net => "net",
                NsKind::Pid => "pid",
                _ => continue,
            };
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(path)
                .map_err(Error::io(id, format!("namespace {}", path.display())))?
                .ino();
            external_ns.push((name, ino));
        }
        std::fs::create_dir_all(&o.image_path).map_err(Error::io(
            id,
            format!("image path {}", o.image_path.display()),
        ))?;
        if let Some(w) = &o.work_path {
            std::fs::create_dir_all(w)
                .map_err(Error::io(id, format!("work path {}", w.display())))?;
        }
        let mut args = dump_args(
            c.state.pid,
            &cfg.root.path,
            &external_mounts,
            &external_ns,
            o,
        );
        for f in external_files {
            args.push("--external".into());
            args.push(f);
        }
        let criu = o.criu.clone().unwrap_or_else(|| PathBuf::from("criu"));
        let out = Command::new(&criu)
            .args(&args)
            .output()
            .map_err(Error::io(id, format!("run {}", criu.display())))?;
        if !out.status.success() {
            let work = o.work_path.as_deref().unwrap_or(&o.image_path);
            let log = std::fs::read_to_string(work.join("dump.log")).unwrap_or_default();
            let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
            return Err(Error::status(
                id,
                format!(
                    "criu {} failed ({}): {}{} (log: {})",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim(),
                    errors
                        .iter()
                        .rev()
                        .take(3)
                        .rev()
                        .map(|l| format!("\n  {l}"))
                        .collect::<String>(),
                    work.join("dump.log").display()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_names_external_mounts_and_namespaces() {
        let o = CheckpointOpts {
            image_path: "/img".into(),
            leave_running: true,
            tcp_established: true,
            ..Default::default()
        };
        let a = dump_args(
            42,
            Path::new("/b/rootfs"),
            &["/etc/hosts".into()],
            &[("net", 4026532000)],
            &o,
        );
        let s = a.join(" ");
        assert!(
            s.starts_with("dump --tree 42 --images-dir /img --work-dir /img "),
            "{s}"
        );
        assert!(s.contains("--root /b/rootfs --manage-cgroups=soft"), "{s}");
        assert!(s.contains("--leave-running --tcp-established"), "{s}");
        assert!(!s.contains("--shell-job"), "{s}");
        assert!(s.contains("--external mnt[/etc/hosts]:/etc/hosts"), "{s}");
        assert!(s.contains("--external net[4026532000]:extRootnetNS"), "{s}");
    }

    #[test]
    fn host_device_binds_are_found_in_mountinfo() {
        let mi = "\
500 400 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l
501 500 0:61 / /proc rw - proc proc rw
502 501 0:5 /null /proc/timer_list rw - devtmpfs udev rw,size=1k
503 500 0:62 / /dev rw - tmpfs tmpfs rw
504 500 0:5 /null /odd\\040name rw - devtmpfs udev rw
";
        assert_eq!(host_dev_mounts(mi), ["/proc/timer_list", "/odd name"]);
    }
}
