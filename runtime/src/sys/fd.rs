//! File descriptor hygiene for the init process (CVE-2024-21626): nothing
//! but stdio and the preserved fds may survive exec.

use std::io;

/// Mark every fd >= `first` close-on-exec. close_range(CLOSE_RANGE_CLOEXEC)
/// where the kernel has it (5.11), else walk /proc/self/fd.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: integer arguments only; only sets flags on fds.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return Ok(());
    }
    for e in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = e?.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if fd >= first as i32 {
            // SAFETY: setting FD_CLOEXEC on a (possibly already closed) fd is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}

/// Clear close-on-exec on `fd` (a preserved fd).
pub fn keep_on_exec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on an int fd; failure is reported.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
