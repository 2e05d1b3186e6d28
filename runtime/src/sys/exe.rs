//! CVE-2019-5736: a container must not be able to overwrite the runtime's
//! binary through /proc/<pid>/exe (e.g. by making its entrypoint
//! `#!/proc/self/exe`). Commands that enter a container first re-exec the
//! runtime from a sealed memfd copy: whatever the container reaches through
//! /proc/self/exe is then an immutable, anonymous copy.
//!
//! Cost (measured by hack/bench-runtime.sh): one copy of the binary into
//! memory and one extra execve per create/run/exec.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const F_SEAL_SEAL: libc::c_int = 0x1;
const F_SEAL_SHRINK: libc::c_int = 0x2;
const F_SEAL_GROW: libc::c_int = 0x4;
const F_SEAL_WRITE: libc::c_int = 0x8;
const MFD_EXEC: libc::c_uint = 0x10;

fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    // SAFETY: fcntl on a valid fd; F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & F_SEAL_WRITE != 0
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

/// Re-exec from a sealed copy unless already running from one. Returns
/// only on error (the caller decides whether to go on unprotected).
pub fn ensure_sealed() -> io::Result<()> {
    if is_sealed() {
        return Ok(());
    }
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
    let e = nix::unistd::execveat(&mem, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .unwrap_err();
    Err(e.into())
}
