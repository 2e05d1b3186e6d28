//! /dev in the container: the default device nodes, the spec's devices, the
//! usual symlinks, and the console pty.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::mount::reopen_dir;
use super::resolve::{self, Leaf};
use super::{RootfsError, io_err, nix_err};
use crate::config::DeviceNode;
use crate::sys;

/// The nodes every container gets (OCI runtime spec, "Default Devices").
pub fn default_devices() -> Vec<DeviceNode> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, maj, min)| DeviceNode {
        path: p.to_owned(),
        kind: libc::S_IFCHR,
        major: maj,
        minor: min,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Create `d` in the rootfs: mknod relative to its parent's fd; in a user
/// namespace (no mknod) bind the host's node onto an empty file instead.
pub fn create_device(root: BorrowedFd<'_>, d: &DeviceNode, bind: bool) -> Result<(), RootfsError> {
    let (dir, name) = d.path.rsplit_once('/').expect("absolute");
    let parent = resolve::ensure(root, dir, Leaf::Dir).map_err(|source| RootfsError::Resolve {
        field: format!("device {}", d.path),
        source,
    })?;
    let parent = reopen_dir(parent.as_fd())?;
    // A node (or symlink) already there from the image is replaced.
    let _ = nix::unistd::unlinkat(
        parent.as_fd(),
        name,
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    );
    if bind {
        let f = nix::fcntl::openat(
            parent.as_fd(),
            name,
            nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(nix_err(format!("device {}: create bind target", d.path)))?;
        drop(f);
        let t = resolve::existing(root, &d.path)
            .map_err(|source| RootfsError::Resolve {
                field: format!("device {}", d.path),
                source,
            })?
            .ok_or_else(|| RootfsError::Check(format!("device {}: vanished", d.path)))?;
        let src = CString::new(d.path.as_str()).expect("validated");
        return sys::mount(
            Some(&src),
            &sys::fd_path(t.as_raw_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(io_err(format!("device {}: bind from host", d.path)));
    }
    let cname = CString::new(name).expect("validated");
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    // SAFETY: `cname` is NUL-terminated; the dir fd is valid.
    let r = unsafe { libc::mknodat(parent.as_raw_fd(), cname.as_ptr(), d.kind | d.mode, dev) };
    if r < 0 {
        return Err(io_err(format!("device {}: mknod", d.path))(
            std::io::Error::last_os_error(),
        ));
    }
    // mknod applies the umask: set the mode exactly, then the owner.
    nix::sys::stat::fchmodat(
        parent.as_fd(),
        name,
        nix::sys::stat::Mode::from_bits_truncate(d.mode),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .map_err(nix_err(format!("device {}: chmod", d.path)))?;
    nix::unistd::fchownat(
        parent.as_fd(),
        name,
        Some(d.uid.into()),
        Some(d.gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(nix_err(format!("device {}: chown", d.path)))
}

/// /dev/fd, /dev/std{in,out,err}, /dev/core and /dev/ptmx -> pts/ptmx.
pub fn create_symlinks(root: BorrowedFd<'_>, with_pts: bool) -> Result<(), RootfsError> {
    let dev = resolve::ensure(root, "/dev", Leaf::Dir).map_err(|source| RootfsError::Resolve {
        field: "/dev".into(),
        source,
    })?;
    let dev = reopen_dir(dev.as_fd())?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("/proc/kcore", "core"),
    ];
    if with_pts {
        let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(nix_err(format!("symlink /dev/{name}"))(e)),
        }
    }
    Ok(())
}

/// A new pty from the container's devpts: (master, slave). The slave is
/// also bind-mounted on /dev/console.
pub fn open_console(
    root: BorrowedFd<'_>,
    size: Option<crate::config::spec::ConsoleSize>,
) -> Result<(OwnedFd, OwnedFd), RootfsError> {
    let (master, slave) = open_pty(root, size)?;
    let console = resolve::ensure(root, "/dev/console", Leaf::File).map_err(|source| {
        RootfsError::Resolve {
            field: "/dev/console".into(),
            source,
        }
    })?;
    sys::mount(
        Some(&sys::fd_path(slave.as_raw_fd())),
        &sys::fd_path(console.as_raw_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(io_err("console: bind the pty on /dev/console"))?;
    Ok((master, slave))
}

/// A new pty pair from the container's /dev/ptmx (resolved in-root).
pub fn open_pty(
    root: BorrowedFd<'_>,
    size: Option<crate::config::spec::ConsoleSize>,
) -> Result<(OwnedFd, OwnedFd), RootfsError> {
    let master = resolve::open_in_root(root, "dev/ptmx", libc::O_RDWR | libc::O_NOCTTY)
        .map_err(io_err("console: open the container's /dev/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int, valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io_err("console: unlock pty")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd.
    let s = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        return Err(io_err("console: open pty peer")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the ioctl returned a new fd we now own.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    if let Some(sz) = size {
        let ws = libc::winsize {
            ws_row: sz.height,
            ws_col: sz.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize valid for the call.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    Ok((master, slave))
}

/// Make `slave` the controlling terminal and stdio of this process.
pub fn become_console(slave: &OwnedFd) -> Result<(), RootfsError> {
    nix::unistd::setsid().map_err(nix_err("console: setsid"))?;
    // SAFETY: TIOCSCTTY takes an int argument.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
        return Err(io_err("console: set controlling terminal")(
            std::io::Error::last_os_error(),
        ));
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto stdio; both fds are valid.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(io_err("console: dup2")(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
