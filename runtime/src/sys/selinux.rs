//! SELinux: whether the host runs it, and the labels a process asks for at
//! its next exec and for the keys it creates
//! (`/proc/thread-self/attr/{exec,keycreate}`).

use std::io::{self, Write};
use std::os::fd::AsFd;

const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

/// True when selinuxfs is mounted at /sys/fs/selinux (a policy is loaded).
pub fn enabled() -> bool {
    nix::sys::statfs::statfs("/sys/fs/selinux")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FsType(SELINUX_MAGIC as _))
}

/// Label the next execve(2) of this thread runs with.
pub fn set_exec_label(label: &str) -> io::Result<()> {
    write_attr("exec", label)
}

/// Label of the keys this thread creates (the session keyring).
pub fn set_keycreate_label(label: &str) -> io::Result<()> {
    write_attr("keycreate", label)
}

/// A well-formed context: `user:role:type[:level]`, printable, no spaces.
pub fn valid_label(label: &str) -> bool {
    label.split(':').count() >= 3
        && label.split(':').take(3).all(|p| !p.is_empty())
        && label.bytes().all(|b| b.is_ascii_graphic())
}

/// Write `/proc/thread-self/attr/<name>`, checked to be on procfs first (a
/// fake /proc would swallow the write, CVE-2019-16884).
fn write_attr(name: &str, value: &str) -> io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/thread-self/attr/{name}"))?;
    let st = nix::sys::statfs::fstatfs(f.as_fd())?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(io::Error::other(format!(
            "/proc/thread-self/attr/{name} is not on procfs"
        )));
    }
    // One write: the kernel takes the context from a single buffer.
    (&f).write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_checked_for_shape() {
        assert!(super::valid_label("system_u:system_r:container_t:s0:c1,c2"));
        assert!(super::valid_label("u:r:t"));
        assert!(!super::valid_label("container_t"));
        assert!(!super::valid_label("u::t:s0"));
        assert!(!super::valid_label("u:r:t s0"));
    }
}
