//! AppArmor: whether the host enforces it, and the profile change a process
//! asks for at its next exec (`/proc/thread-self/attr/.../exec`).

use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// True when the kernel has AppArmor and it is on.
pub fn enabled() -> bool {
    std::fs::read(ENABLED).is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// Make the next execve(2) of this thread switch to `profile`. The file
/// written must be on procfs: a container image that mounts something over
/// /proc (CVE-2019-16884) would otherwise swallow the write and leave the
/// process unconfined.
pub fn change_onexec(profile: &str) -> io::Result<()> {
    let proc = open("/proc", libc::O_PATH | libc::O_DIRECTORY, None)?;
    // The per-LSM file (Linux 5.8+) first, then the shared one.
    let file = match open(
        "thread-self/attr/apparmor/exec",
        libc::O_WRONLY,
        Some(&proc),
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            open("thread-self/attr/exec", libc::O_WRONLY, Some(&proc))?
        }
        r => r?,
    };
    let st = nix::sys::statfs::fstatfs(file.as_fd())?;
    if st.filesystem_type().0 as i64 != PROC_SUPER_MAGIC {
        return Err(io::Error::other(
            "the AppArmor attribute file is not on procfs",
        ));
    }
    let mut f = std::fs::File::from(file);
    // One write: the kernel parses the command from a single buffer.
    f.write_all(format!("exec {profile}").as_bytes())
}

fn open(path: &str, flags: libc::c_int, dir: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let c =
        std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: valid C string, flags only; the result is checked.
    let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
