//! Paths inside the container's rootfs, resolved through fds: every lookup is
//! openat2(RESOLVE_IN_ROOT) from the rootfs fd, so a symlink in the image can
//! never lead a mount or mknod outside it (CVE-2021-30465 and friends).
//!
//! Absolute symlinks are read as rooted in the rootfs (images rely on them,
//! e.g. /var/run -> /run); a symlink whose `..` climbs above the rootfs is an
//! error, so a config that means to escape is refused, not silently clamped.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path}: resolves outside the rootfs through a symlink")]
    Escapes { path: String },
    #[error("{path}: too many levels of symlinks")]
    Loop { path: String },
    #[error("{path}: {what}")]
    Io {
        path: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

const RESOLVE_FLAGS: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

fn cpath(s: &str) -> CString {
    CString::new(if s.is_empty() { "." } else { s }).expect("validated: no NUL")
}

/// Open `path` (relative to the rootfs) in-root with `flags`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &str, flags: i32) -> io::Result<OwnedFd> {
    sys::openat2(
        root,
        &cpath(path.trim_start_matches('/')),
        flags,
        0,
        RESOLVE_FLAGS,
    )
}

/// The components `path` reaches inside the rootfs, following symlinks the
/// way the container would see them. Components past the first missing one
/// are taken literally.
pub fn logical_path(root: BorrowedFd<'_>, path: &str) -> Result<Vec<String>, ResolveError> {
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let mut stack: Vec<String> = Vec::new();
    let mut links = 0;
    let mut missing = false;
    while let Some(c) = todo.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() {
                return Err(ResolveError::Escapes {
                    path: path.to_owned(),
                });
            }
            continue;
        }
        stack.push(c);
        if missing {
            continue;
        }
        let here = stack.join("/");
        let fd = match open_in_root(root, &here, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                missing = true;
                continue;
            }
            Err(source) => {
                return Err(ResolveError::Io {
                    path: path.to_owned(),
                    what: "open",
                    source,
                });
            }
        };
        let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| ResolveError::Io {
            path: path.to_owned(),
            what: "stat",
            source: e.into(),
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            continue;
        }
        links += 1;
        if links > 40 {
            return Err(ResolveError::Loop {
                path: path.to_owned(),
            });
        }
        let target = nix::fcntl::readlinkat(fd.as_fd(), "").map_err(|e| ResolveError::Io {
            path: path.to_owned(),
            what: "readlink",
            source: e.into(),
        })?;
        let target = target.to_string_lossy().into_owned();
        stack.pop();
        if target.starts_with('/') {
            stack.clear();
        }
        for t in target.split('/').rev().filter(|c| !c.is_empty()) {
            todo.push_front(t.to_owned());
        }
    }
    Ok(stack)
}

/// What to create at the end of a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Dir,
    File,
}

/// Resolve `path` in-root, creating missing directories (0755) and the leaf,
/// and return an O_PATH fd of the target. Creation happens relative to the
/// parent's fd, never through a host path (CVE-2024-45310).
pub fn ensure(root: BorrowedFd<'_>, path: &str, leaf: Leaf) -> Result<OwnedFd, ResolveError> {
    let comps = logical_path(root, path)?;
    let err = |what, source| ResolveError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    let mut parent: OwnedFd = root.try_clone_to_owned().map_err(|e| err("dup", e))?;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let here = comps[..=i].join("/");
        match open_in_root(root, &here, libc::O_PATH) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("open", e)),
        }
        let name = cpath(c);
        if last && leaf == Leaf::File {
            // SAFETY: `name` is NUL-terminated; the fd is valid.
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err("create", e));
                }
            } else {
                // SAFETY: we own the new fd and only close it.
                unsafe { libc::close(fd) };
            }
        } else {
            // SAFETY: `name` is NUL-terminated; the fd is valid.
            if unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) } < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(err("mkdir", e));
                }
            }
        }
        parent = open_in_root(root, &here, libc::O_PATH).map_err(|e| err("open", e))?;
    }
    Ok(parent)
}

/// Resolve an existing path; None when it does not exist.
pub fn existing(root: BorrowedFd<'_>, path: &str) -> Result<Option<OwnedFd>, ResolveError> {
    let comps = logical_path(root, path)?;
    match open_in_root(root, &comps.join("/"), libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(source) => Err(ResolveError::Io {
            path: path.to_owned(),
            what: "open",
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_in_root_and_escapes_fail() {
        let d = std::env::temp_dir().join(format!("berth-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("run")).unwrap();
        std::fs::create_dir_all(d.join("var")).unwrap();
        symlink("/run", d.join("var/run")).unwrap();
        symlink("../../..", d.join("up")).unwrap();
        let root = std::fs::File::open(&d).unwrap();
        let root = root.as_fd();
        assert_eq!(
            logical_path(root, "/var/run/secrets").unwrap(),
            ["run", "secrets"]
        );
        assert!(matches!(
            logical_path(root, "/up/etc"),
            Err(ResolveError::Escapes { .. })
        ));
        let fd = ensure(root, "/var/run/a/b", Leaf::Dir).unwrap();
        drop(fd);
        assert!(d.join("run/a/b").is_dir());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
