//! The container's root file system, set up by init inside its new mount
//! namespace: propagation, the rootfs bind, the spec's mounts, /dev, masked
//! and read-only paths, sysctls, then pivot_root (or MS_MOVE + chroot).
//!
//! Every path inside the rootfs goes through `resolve` (fd-based, in-root).
//! Host paths are used only for bind sources named by the config and for
//! /proc/self/fd/N (after checking /proc is procfs).

pub mod dev;
pub mod idmap;
pub mod mount;
pub mod resolve;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub use resolve::ResolveError;

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{field}")]
    Resolve {
        field: String,
        #[source]
        source: ResolveError,
    },
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Check(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Io { what, source }
}

pub(crate) fn nix_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> RootfsError {
    let what = what.into();
    move |e| RootfsError::Io {
        what,
        source: e.into(),
    }
}

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Check that `fd` is on a procfs (CVE-2019-16884: a fake /proc in the
/// image must not receive our writes).
pub fn check_procfs(fd: std::os::fd::BorrowedFd<'_>, what: &str) -> Result<(), RootfsError> {
    let st = nix::sys::statfs::fstatfs(fd).map_err(nix_err(format!("statfs {what}")))?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(RootfsError::Check(format!("{what} is not procfs")));
    }
    Ok(())
}

/// The host /proc, checked once; /proc/self/fd/N paths go through it.
pub fn check_host_proc() -> Result<(), RootfsError> {
    let f = std::fs::File::open("/proc").map_err(io_err("open /proc"))?;
    check_procfs(f.as_fd(), "/proc")
}

/// Set propagation on `/`, make the rootfs a mount of its own, and return an
/// fd of it (the new mount).
pub fn bind_rootfs(rootfs: &std::path::Path, propagation: u64) -> Result<OwnedFd, RootfsError> {
    if propagation & libc::MS_SHARED != 0 {
        // rshared: `/` stays shared, so bind mounts of host paths keep
        // their host peers and mounts made in them travel both ways (what a
        // Bidirectional CRI mount asks). The mount holding the rootfs is made
        // private (in our namespace only), so the rootfs bind and what is
        // mounted under it never show up on the host.
        sys::mount(None, c"/", None, libc::MS_SHARED | libc::MS_REC, None)
            .map_err(io_err("set propagation of /"))?;
        let parent = mount_point_of(rootfs)?;
        let pp = CString::new(parent.as_os_str().as_encoded_bytes())
            .map_err(|_| RootfsError::Check("mount point has a NUL".into()))?;
        sys::mount(None, &pp, None, libc::MS_PRIVATE, None).map_err(io_err(format!(
            "make the rootfs' parent mount {} private",
            parent.display()
        )))?;
    } else {
        // Slave (or what rootfsPropagation says), so nothing we mount
        // propagates back to the host.
        sys::mount(None, c"/", None, propagation, None).map_err(io_err("set propagation of /"))?;
    }
    let rp = CString::new(rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| RootfsError::Check("rootfs path has a NUL".into()))?;
    sys::mount(Some(&rp), &rp, None, libc::MS_BIND | libc::MS_REC, None)
        .map_err(io_err(format!("bind rootfs {}", rootfs.display())))?;
    let f =
        std::fs::File::open(rootfs).map_err(io_err(format!("open rootfs {}", rootfs.display())))?;
    Ok(OwnedFd::from(f))
}

/// The mount point of the mount `path` is on (the longest mount point in
/// /proc/self/mountinfo that contains it).
fn mount_point_of(path: &std::path::Path) -> Result<std::path::PathBuf, RootfsError> {
    let path =
        std::fs::canonicalize(path).map_err(io_err(format!("resolve {}", path.display())))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(io_err("read mountinfo"))?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| std::path::PathBuf::from(unescape_mountinfo(mp)))
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.components().count())
        .ok_or_else(|| RootfsError::Check(format!("no mount holds {}", path.display())))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub(crate) fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// pivot_root into `root` (an fd of the rootfs mount) and detach the old
/// root; with `no_pivot`, MS_MOVE + chroot (for ramfs roots).
pub fn enter(root: &OwnedFd, no_pivot: bool, propagation: u64) -> Result<(), RootfsError> {
    // The old root, by fd: after pivot_root(".", ".") the path "." names
    // the new root for mount(2), so a recursive "make slave" through it
    // would also turn the container's own shared mounts (Bidirectional
    // binds) into slaves and cut them off from the host.
    let old_root = std::fs::File::open("/").map_err(io_err("open old root"))?;
    nix::unistd::fchdir(root.as_fd()).map_err(nix_err("chdir to rootfs"))?;
    if no_pivot {
        sys::mount(Some(c"."), c"/", None, libc::MS_MOVE, None)
            .map_err(io_err("move rootfs to /"))?;
        nix::unistd::chroot(".").map_err(nix_err("chroot"))?;
    } else {
        sys::pivot_root(c".", c".").map_err(io_err("pivot_root"))?;
        // The old root is now stacked on the new one: make it slave so the
        // unmount cannot propagate to the host, then detach it. Through its
        // fd when the container has a /proc to resolve it with; else "."
        // (then shared mounts of the container become slaves too).
        let proc_ok = std::fs::File::open("/proc/self/fd")
            .ok()
            .is_some_and(|f| check_procfs(f.as_fd(), "/proc/self/fd").is_ok());
        let by_fd = proc_ok
            && sys::mount(
                None,
                &sys::fd_path(old_root.as_raw_fd()),
                None,
                libc::MS_SLAVE | libc::MS_REC,
                None,
            )
            .is_ok();
        if !by_fd {
            sys::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
                .map_err(io_err("make old root slave"))?;
        }
        drop(old_root);
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
            .map_err(nix_err("detach old root"))?;
    }
    nix::unistd::chdir("/").map_err(nix_err("chdir /"))?;
    if propagation & libc::MS_SHARED != 0 {
        sys::mount(None, c"/", None, propagation, None).map_err(io_err("set propagation of /"))?;
    }
    Ok(())
}

/// Remount `/` read-only, keeping the flags the kernel has locked on it.
pub fn readonly_root() -> Result<(), RootfsError> {
    let locked = mount::locked_flags(c"/")?;
    sys::mount(
        None,
        c"/",
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
        None,
    )
    .map_err(io_err("remount / read-only"))
}

/// Write sysctls through the container's own /proc (checked to be procfs),
/// before /proc/sys is made read-only.
pub fn write_sysctls(root: &OwnedFd, sysctls: &[(String, String)]) -> Result<(), RootfsError> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let proc = resolve::open_in_root(root.as_fd(), "proc", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(io_err("open the container's /proc for sysctls"))?;
    check_procfs(proc.as_fd(), "the container's /proc")?;
    for (k, v) in sysctls {
        let rel = CString::new(format!("sys/{}", k.replace('.', "/"))).expect("validated");
        let f = sys::openat2(
            proc.as_fd(),
            &rel,
            libc::O_WRONLY,
            0,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
        )
        .map_err(io_err(format!("sysctl {k}: open")))?;
        nix::unistd::write(&f, v.as_bytes())
            .map_err(nix_err(format!("sysctl {k}: write {v:?}")))?;
        let _ = f.as_raw_fd();
    }
    Ok(())
}
