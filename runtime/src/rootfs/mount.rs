//! Mounting the spec's `mounts` onto targets resolved in-root, and the
//! masked/read-only paths.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::resolve::{self, Leaf};
use super::{RootfsError, io_err, nix_err};
use crate::cgroups::CgroupPaths;
use crate::config::{MountConfig, MountKind};
use crate::sys;

const REMOUNT_FLAGS: u64 = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME;

/// Flags of the mount at `path` that a remount must keep (in a user
/// namespace the kernel refuses to clear locked ones).
pub fn locked_flags(path: &CStr) -> Result<u64, RootfsError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(nix_err(format!("statvfs {path:?}")))?;
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = 0;
    for (s, m) in [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if f.contains(s) {
            out |= m;
        }
    }
    Ok(out)
}

fn field(m: &MountConfig) -> String {
    format!("mounts[{}] {}", m.index, m.destination)
}

/// Bind `src` (recursively) onto the resolved target `t`.
fn rbind(src: &CStr, t: &OwnedFd) -> std::io::Result<()> {
    sys::mount(
        Some(src),
        &sys::fd_path(t.as_raw_fd()),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

fn target(root: BorrowedFd<'_>, m: &MountConfig, leaf: Leaf) -> Result<OwnedFd, RootfsError> {
    resolve::ensure(root, &m.destination, leaf).map_err(|source| RootfsError::Resolve {
        field: format!("mounts[{}].destination", m.index),
        source,
    })
}

/// Re-resolve after mounting: the fd taken before points below the new mount.
fn mounted(root: BorrowedFd<'_>, m: &MountConfig) -> Result<OwnedFd, RootfsError> {
    resolve::existing(root, &m.destination)
        .map_err(|source| RootfsError::Resolve {
            field: format!("mounts[{}].destination", m.index),
            source,
        })?
        .ok_or_else(|| RootfsError::Check(format!("{}: vanished after mounting", field(m))))
}

/// Mount `m` at its destination under `root`. `idmapped` is the detached
/// tree prepared for an idmapped bind (`rootfs::idmap`).
pub fn mount_one(
    root: BorrowedFd<'_>,
    m: &MountConfig,
    cgroup: &CgroupPaths,
    cgroupns: bool,
    idmapped: Option<BorrowedFd<'_>>,
) -> Result<(), RootfsError> {
    let data = (!m.data.is_empty()).then(|| CString::new(m.data.as_str()).expect("validated"));
    match &m.kind {
        MountKind::Bind {
            source, recursive, ..
        } => {
            let is_dir = std::fs::metadata(source)
                .map_err(io_err(format!(
                    "{}: stat source {}",
                    field(m),
                    source.display()
                )))?
                .is_dir();
            let t = target(root, m, if is_dir { Leaf::Dir } else { Leaf::File })?;
            let src = CString::new(source.as_os_str().as_encoded_bytes()).expect("validated");
            let flags = libc::MS_BIND | if *recursive { libc::MS_REC } else { 0 };
            match idmapped {
                Some(tree) => sys::idmap::move_mount(tree, t.as_fd()).map_err(io_err(format!(
                    "{}: attach the idmapped {}",
                    field(m),
                    source.display()
                )))?,
                None => sys::mount(Some(&src), &sys::fd_path(t.as_raw_fd()), None, flags, None)
                    .map_err(io_err(format!("{}: bind {}", field(m), source.display())))?,
            }
            if m.flags & REMOUNT_FLAGS != 0 {
                let t = mounted(root, m)?;
                let p = sys::fd_path(t.as_raw_fd());
                let keep = locked_flags(&p)? & !libc::MS_RDONLY;
                let f = libc::MS_BIND | libc::MS_REMOUNT | (m.flags & REMOUNT_FLAGS) | keep;
                sys::mount(None, &p, None, f, None)
                    .map_err(io_err(format!("{}: remount", field(m))))?;
            }
        }
        MountKind::Cgroup => mount_cgroup(root, m, cgroup, cgroupns)?,
        MountKind::Fs { fstype, source } => {
            let t = target(root, m, Leaf::Dir)?;
            let fst = CString::new(fstype.as_str()).expect("validated");
            let src = CString::new(source.as_str()).unwrap_or_else(|_| fst.clone());
            let flags = m.flags & !(libc::MS_BIND | libc::MS_REC);
            let r = sys::mount(
                Some(&src),
                &sys::fd_path(t.as_raw_fd()),
                Some(&fst),
                flags,
                data.as_deref(),
            );
            match r {
                // mqueue/sysfs cannot be mounted in some user-namespace
                // setups: bind the host's instead, as runc does for sysfs.
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        && (fstype == "sysfs" || fstype == "mqueue") =>
                {
                    let host = CString::new(if fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    })
                    .expect("static");
                    rbind(&host, &t).map_err(io_err(format!(
                        "{}: mount {fstype} (bind fallback)",
                        field(m)
                    )))?;
                }
                r => r.map_err(io_err(format!("{}: mount {fstype}", field(m))))?,
            }
        }
    }
    if !m.propagation.is_empty() || m.attr_set | m.attr_clr != 0 {
        let t = mounted(root, m)?;
        for p in &m.propagation {
            sys::mount(None, &sys::fd_path(t.as_raw_fd()), None, *p, None)
                .map_err(io_err(format!("{}: set propagation", field(m))))?;
        }
        if m.attr_set | m.attr_clr != 0 {
            sys::mount_setattr_recursive(t.as_fd(), m.attr_set, m.attr_clr)
                .map_err(io_err(format!("{}: mount_setattr", field(m))))?;
        }
    }
    Ok(())
}

/// `/sys/fs/cgroup` in the container. v2: a cgroup2 mount (scoped by the
/// cgroup namespace) or, without one, a bind of the container's cgroup. v1:
/// a tmpfs holding a bind of the container's directory per hierarchy.
fn mount_cgroup(
    root: BorrowedFd<'_>,
    m: &MountConfig,
    cgroup: &CgroupPaths,
    cgroupns: bool,
) -> Result<(), RootfsError> {
    let ro = m.flags & libc::MS_RDONLY;
    let base = m.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
    let t = target(root, m, Leaf::Dir)?;
    match cgroup {
        CgroupPaths::V2 { path } => {
            let r = if cgroupns {
                sys::mount(
                    Some(c"cgroup2"),
                    &sys::fd_path(t.as_raw_fd()),
                    Some(c"cgroup2"),
                    base | ro,
                    None,
                )
            } else {
                Err(std::io::Error::from_raw_os_error(libc::EPERM))
            };
            if r.is_err() {
                let src = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
                rbind(&src, &t).map_err(io_err(format!(
                    "{}: bind cgroup {}",
                    field(m),
                    path.display()
                )))?;
            }
        }
        CgroupPaths::V1 { dirs } => {
            sys::mount(
                Some(c"tmpfs"),
                &sys::fd_path(t.as_raw_fd()),
                Some(c"tmpfs"),
                base,
                Some(c"mode=755"),
            )
            .map_err(io_err(format!("{}: mount tmpfs for cgroups", field(m))))?;
            for d in dirs {
                let name = d.controllers.join(",");
                let name = name.strip_prefix("name=").unwrap_or(&name).to_owned();
                let dest = format!("{}/{}", m.destination, name);
                let t = resolve::ensure(root, &dest, Leaf::Dir).map_err(|source| {
                    RootfsError::Resolve {
                        field: format!("mounts[{}] cgroup {name}", m.index),
                        source,
                    }
                })?;
                let src = CString::new(d.path.as_os_str().as_encoded_bytes()).expect("path");
                sys::mount(
                    Some(&src),
                    &sys::fd_path(t.as_raw_fd()),
                    None,
                    libc::MS_BIND,
                    None,
                )
                .map_err(io_err(format!(
                    "{}: bind cgroup {}",
                    field(m),
                    d.path.display()
                )))?;
                let t = resolve::existing(root, &dest)
                    .map_err(|source| RootfsError::Resolve {
                        field: dest.clone(),
                        source,
                    })?
                    .ok_or_else(|| RootfsError::Check(format!("{dest}: vanished")))?;
                sys::mount(
                    None,
                    &sys::fd_path(t.as_raw_fd()),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | base | ro,
                    None,
                )
                .map_err(io_err(format!("{}: remount cgroup {name}", field(m))))?;
                if d.controllers.len() > 1 {
                    // "cpu" -> "cpu,cpuacct", as hosts lay it out.
                    let parent = resolve::existing(root, &m.destination)
                        .map_err(|source| RootfsError::Resolve {
                            field: m.destination.clone(),
                            source,
                        })?
                        .ok_or_else(|| {
                            RootfsError::Check(format!("{}: vanished", m.destination))
                        })?;
                    let parent = reopen_dir(parent.as_fd())?;
                    for c in &d.controllers {
                        let _ = nix::unistd::symlinkat(name.as_str(), parent.as_fd(), c.as_str());
                    }
                }
            }
            if ro != 0 {
                let t = mounted(root, m)?;
                sys::mount(
                    None,
                    &sys::fd_path(t.as_raw_fd()),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | base | ro,
                    None,
                )
                .map_err(io_err(format!(
                    "{}: remount cgroup tmpfs read-only",
                    field(m)
                )))?;
            }
        }
    }
    Ok(())
}

/// An O_DIRECTORY fd for an O_PATH one (for *at calls that need it).
pub fn reopen_dir(fd: BorrowedFd<'_>) -> Result<OwnedFd, RootfsError> {
    nix::fcntl::openat(
        fd,
        ".",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(nix_err("reopen directory"))
}

/// Bind `path` onto itself read-only (keeping locked flags).
pub fn readonly_path(root: BorrowedFd<'_>, path: &str) -> Result<(), RootfsError> {
    let Some(t) = resolve::existing(root, path).map_err(|source| RootfsError::Resolve {
        field: format!("linux.readonlyPaths {path}"),
        source,
    })?
    else {
        return Ok(());
    };
    let p = sys::fd_path(t.as_raw_fd());
    sys::mount(Some(&p), &p, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(io_err(format!("readonly path {path}: bind")))?;
    let t = resolve::existing(root, path)
        .map_err(|source| RootfsError::Resolve {
            field: format!("linux.readonlyPaths {path}"),
            source,
        })?
        .ok_or_else(|| RootfsError::Check(format!("readonly path {path}: vanished")))?;
    let p = sys::fd_path(t.as_raw_fd());
    let keep = locked_flags(&p)?;
    sys::mount(
        None,
        &p,
        None,
        libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | keep,
        None,
    )
    .map_err(io_err(format!("readonly path {path}: remount")))
}

/// Hide `path`: a read-only empty tmpfs over a directory, the host's
/// /dev/null (checked to be char 1:3, CVE-2025-31133) over anything else.
pub fn mask_path(
    root: BorrowedFd<'_>,
    path: &str,
    devnull: BorrowedFd<'_>,
) -> Result<(), RootfsError> {
    let Some(t) = resolve::existing(root, path).map_err(|source| RootfsError::Resolve {
        field: format!("linux.maskedPaths {path}"),
        source,
    })?
    else {
        return Ok(());
    };
    let st =
        nix::sys::stat::fstat(t.as_fd()).map_err(nix_err(format!("masked path {path}: stat")))?;
    let p = sys::fd_path(t.as_raw_fd());
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys::mount(
            Some(c"tmpfs"),
            &p,
            Some(c"tmpfs"),
            libc::MS_RDONLY,
            Some(c"size=0k,mode=755"),
        )
        .map_err(io_err(format!("masked path {path}: mount tmpfs")))
    } else {
        sys::mount(
            Some(&sys::fd_path(devnull.as_raw_fd())),
            &p,
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(io_err(format!("masked path {path}: bind /dev/null")))
    }
}

/// The host's /dev/null, verified to be the real null device.
pub fn open_devnull() -> Result<OwnedFd, RootfsError> {
    let f = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(nix_err("open /dev/null"))?;
    let st = nix::sys::stat::fstat(f.as_fd()).map_err(nix_err("stat /dev/null"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || libc::major(st.st_rdev) != 1
        || libc::minor(st.st_rdev) != 3
    {
        return Err(RootfsError::Check(
            "/dev/null is not the null device (char 1:3)".into(),
        ));
    }
    Ok(f)
}
