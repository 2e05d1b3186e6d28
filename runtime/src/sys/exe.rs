//! CVE-2019-5736: a container must not be able to overwrite the runtime's
//! binary through /proc/<pid>/exe (e.g. by making its entrypoint
//! `#!/proc/self/exe`). Commands that enter a container first re-exec the
//! runtime from a copy that cannot be written:
//!
//! 1. the binary opened through a private, detached, read-only overlayfs
//!    mount of its folder (fsopen/fsmount, no mount namespace touched):
//!    no copy, the page cache is shared with the installed binary, and a
//!    write through /proc/<pid>/exe meets a read-only mount;
//! 2. where that is not possible (no overlayfs, no new mount API), a sealed
//!    memfd copy.
//!
//! Cost (hack/bench-runtime.sh): one extra execve per create/run/exec,
//! plus (2) a copy of the binary into memory (about 5 ms on this host).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const F_SEAL_SEAL: libc::c_int = 0x1;
const F_SEAL_SHRINK: libc::c_int = 0x2;
const F_SEAL_GROW: libc::c_int = 0x4;
const F_SEAL_WRITE: libc::c_int = 0x8;
const MFD_EXEC: libc::c_uint = 0x10;

/// Running from a copy nothing can write: a write-sealed memfd, or a file
/// on a read-only mount (writes through /proc/self/exe go through the
/// mount the process was executed from).
fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on a valid fd; F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals >= 0 && seals & F_SEAL_WRITE != 0 {
        return true;
    }
    nix::sys::statvfs::fstatvfs(&f)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn owned(r: libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

fn fsconfig(
    fs: &OwnedFd,
    cmd: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> io::Result<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: NUL-terminated strings or null, valid for the call.
    let r = unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, p(key), p(value), 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Overlay lowerdir escaping: `\` and `:` are special.
fn escape_lower(p: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for b in p.as_os_str().as_encoded_bytes() {
        if matches!(b, b'\\' | b':' | b',') {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out
}

/// The running binary, opened (O_PATH) through a detached read-only
/// overlayfs of its folder. `empty` is an empty folder of ours: overlayfs
/// without an upper layer needs two lower ones, and the binary's folder
/// comes first, so nothing in `empty` can shadow it.
fn sealed_overlay(empty: &std::path::Path) -> io::Result<OwnedFd> {
    let bin = std::fs::read_link("/proc/self/exe")?;
    let (dir, name) = match (bin.parent(), bin.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => return Err(io::Error::other("the runtime's path has no folder")),
    };
    std::fs::create_dir_all(empty)?;
    let mut lower = escape_lower(dir);
    lower.push(b':');
    lower.extend(escape_lower(empty));
    let lower = CString::new(lower).map_err(|_| io::Error::other("NUL in a path"))?;
    // SAFETY: a NUL-terminated name and integer flags.
    let fs =
        owned(unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) })?;
    fsconfig(&fs, FSCONFIG_SET_STRING, Some(c"lowerdir"), Some(&lower))?;
    let _ = fsconfig(&fs, FSCONFIG_SET_STRING, Some(c"xino"), Some(c"off"));
    fsconfig(&fs, FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: a valid fs context fd and integer flags.
    let mnt = owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    })?;
    let name =
        CString::new(name.as_encoded_bytes()).map_err(|_| io::Error::other("NUL in a path"))?;
    // SAFETY: a valid dir fd and a NUL-terminated name.
    owned(unsafe {
        libc::openat(
            mnt.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    } as libc::c_long)
}

fn memfd() -> io::Result<OwnedFd> {
    let name = c"berth-runc";
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    for flags in [base | MFD_EXEC, base] {
        // SAFETY: `name` is NUL-terminated; flags are integers.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: memfd_create returned a new fd we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(io::Error::last_os_error())
}

/// Re-exec from a copy nothing can write unless already running from one;
/// `empty` is a folder of the runtime's own for the overlay (see
/// `sealed_overlay`). Returns only on error (the caller decides whether to
/// go on unprotected).
pub fn ensure_sealed(empty: &std::path::Path) -> io::Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let target = match sealed_overlay(empty) {
        Ok(fd) => fd,
        Err(e) => {
            crate::log::debug(&format!(
                "overlayfs seal not possible ({e}): sealed memfd copy"
            ));
            sealed_memfd()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).expect("argv has no NUL"))
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b).expect("env has no NUL")
        })
        .collect();
    let e = nix::unistd::execveat(
        &target,
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(e.into())
}

fn sealed_memfd() -> io::Result<OwnedFd> {
    let exe = std::fs::File::open("/proc/self/exe")?;
    let mem = memfd()?;
    // std::io::copy picks copy_file_range, sendfile or read/write as the
    // file systems allow (copy_file_range refuses cross-fs copies).
    let mut dst = std::fs::File::from(mem);
    std::io::copy(&mut &exe, &mut dst)?;
    let mem = OwnedFd::from(dst);
    // SAFETY: fcntl on our memfd with integer seal flags.
    if unsafe {
        libc::fcntl(
            mem.as_raw_fd(),
            libc::F_ADD_SEALS,
            F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(mem)
}
