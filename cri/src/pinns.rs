//! Pinned pod namespaces (network, IPC, UTS): made persistent by a bind mount
//! of the namespace file onto a file under the state folder (as `ip netns
//! add` does), so a namespace lives as long as its pod, whether or not a
//! process is in it. This is what lets berthd run pods without a pause
//! process unless they share a PID namespace.
//!
//! The folder is a shared mount of its own, so that removing a namespace's
//! bind mount also removes the copies container mount namespaces took.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Which namespace a pin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    Net,
    Ipc,
    Uts,
}

impl NsKind {
    fn flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path}: {op}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("netns {path}: {op}")]
    Sys {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// A persistent namespace, named by its bind-mount path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedNs {
    path: PathBuf,
}

/// The network namespace of a pod (the common case).
pub type NetNs = PinnedNs;

impl PinnedNs {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refer to an existing namespace file (after a restart).
    pub fn at(path: PathBuf) -> Self {
        PinnedNs { path }
    }

    /// Create a new network namespace bound at `dir/name`.
    pub fn create(dir: &Path, name: &str) -> Result<Self, NetnsError> {
        Self::pin(dir, name, NsKind::Net, None)
    }

    /// Create a new namespace of `kind` bound at `dir/name`; a UTS namespace
    /// gets `hostname` set inside it. `dir` is made a shared mount point.
    pub fn pin(
        dir: &Path,
        name: &str,
        kind: NsKind,
        hostname: Option<&str>,
    ) -> Result<Self, NetnsError> {
        make_shared_dir(dir)?;
        let path = dir.join(name);
        let io = |op, source| NetnsError::Io {
            path: path.clone(),
            op,
            source,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io("create mount point", e))?;
        // unshare of these namespaces changes only the calling thread: do it
        // on a thread of its own that ends right after, leaving ours untouched.
        let target = path.clone();
        let hostname = hostname.map(str::to_owned);
        let made = std::thread::spawn(move || -> Result<(), NetnsError> {
            let sys = |op, source| NetnsError::Sys {
                path: target.clone(),
                op,
                source,
            };
            unshare(kind.flag()).map_err(|e| sys("unshare", e))?;
            if let (NsKind::Uts, Some(h)) = (kind, &hostname) {
                nix::unistd::sethostname(h).map_err(|e| sys("sethostname", e))?;
            }
            if kind == NsKind::Net {
                // Up from the start, as containerd's and CRI-O's pods
                // have it: no `loopback` plugin run needed.
                berth_runtime::sys::loopback_up().map_err(|e| NetnsError::Io {
                    path: target.clone(),
                    op: "bring lo up",
                    source: e,
                })?;
            }
            let source = format!("/proc/thread-self/ns/{}", kind.as_str());
            mount(
                Some(source.as_str()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| sys("bind mount", e))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Io {
                path: path.clone(),
                op: "namespace thread",
                source: std::io::Error::other("panicked"),
            })
        });
        if let Err(e) = made {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(PinnedNs { path })
    }

    /// Unmount and delete. Idempotent: a namespace already gone is fine.
    pub fn remove(&self) -> Result<(), NetnsError> {
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => {
                return Err(NetnsError::Sys {
                    path: self.path.clone(),
                    op: "unmount",
                    source: e,
                });
            }
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetnsError::Io {
                path: self.path.clone(),
                op: "remove",
                source: e,
            }),
        }
    }
}

/// A pod user namespace and the namespaces it owns, pinned.
#[derive(Debug)]
pub struct UsernsPins {
    pub user: PinnedNs,
    pub owned: Vec<(NsKind, PinnedNs)>,
}

/// Pin a new user namespace mapping container ids 0.. to `uids`/`gids`, and
/// new namespaces of `kinds` owned by it (so the pod's containers, root in
/// that user namespace, may mount sysfs, mqueue and the like in them), at
/// `dir/<name>-user`, `dir/<name>-<kind>`; a UTS namespace gets `hostname`.
///
/// unshare(CLONE_NEWUSER) is refused to a multi-threaded process, so a
/// helper process (`helper`, a sleeper such as berth-pause) is forked with
/// one unshare of all of them before its exec; berthd writes its id maps,
/// binds its namespace files, and kills it.
pub fn pin_userns(
    dir: &Path,
    name: &str,
    uids: (u32, u32),
    gids: (u32, u32),
    kinds: &[NsKind],
    hostname: Option<&str>,
    helper: &Path,
) -> Result<UsernsPins, NetnsError> {
    make_shared_dir(dir)?;
    let user_path = dir.join(format!("{name}-user"));
    let io = |path: &Path, op, source| NetnsError::Io {
        path: path.to_owned(),
        op,
        source,
    };
    let mut flags = CloneFlags::CLONE_NEWUSER;
    for k in kinds {
        flags |= k.flag();
    }
    let mut child = berth_runtime::sys::spawn_unshared(helper, flags.bits(), hostname)
        .map_err(|e| io(&user_path, "start the namespace helper", e))?;
    let pid = child.id();
    let mut made: Vec<(NsKind, PinnedNs)> = Vec::new();
    let mut user = None;
    let result = (|| -> Result<(), NetnsError> {
        for (file, (host, len)) in [("uid_map", uids), ("gid_map", gids)] {
            let p = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&p, format!("0 {host} {len}\n"))
                .map_err(|e| io(&user_path, "write the id map", e))?;
        }
        let bind = |kind: &str, path: &Path| -> Result<PinnedNs, NetnsError> {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| io(path, "create mount point", e))?;
            let source = format!("/proc/{pid}/ns/{kind}");
            if let Err(e) = mount(
                Some(source.as_str()),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            ) {
                let _ = std::fs::remove_file(path);
                return Err(NetnsError::Sys {
                    path: path.to_owned(),
                    op: "bind mount",
                    source: e,
                });
            }
            Ok(PinnedNs {
                path: path.to_owned(),
            })
        };
        user = Some(bind("user", &user_path)?);
        for k in kinds {
            let p = dir.join(format!("{name}-{}", k.as_str()));
            made.push((*k, bind(k.as_str(), &p)?));
            if *k == NsKind::Net {
                loopback_up_in(&p)?;
            }
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    match (result, user) {
        (Ok(()), Some(user)) => Ok(UsernsPins { user, owned: made }),
        (r, user) => {
            for p in made.iter().map(|(_, p)| p).chain(user.as_ref()) {
                let _ = p.remove();
            }
            Err(r
                .err()
                .unwrap_or_else(|| io(&user_path, "pin", std::io::Error::other("not pinned"))))
        }
    }
}

/// Bring `lo` up in the pinned network namespace at `path`, from a thread
/// of its own that joins it and ends right after.
fn loopback_up_in(path: &Path) -> Result<(), NetnsError> {
    let target = path.to_owned();
    std::thread::spawn(move || {
        let err = |op, source| NetnsError::Io {
            path: target.clone(),
            op,
            source,
        };
        let ns = std::fs::File::open(&target).map_err(|e| err("open", e))?;
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| err("join", std::io::Error::from(e)))?;
        berth_runtime::sys::loopback_up().map_err(|e| err("bring lo up", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NetnsError::Io {
            path: path.to_owned(),
            op: "bring lo up",
            source: std::io::Error::other("thread panicked"),
        })
    })
}

/// Make `dir` a shared mount point (binding it onto itself first if needed).
fn make_shared_dir(dir: &Path) -> Result<(), NetnsError> {
    let sys = |op, source| NetnsError::Sys {
        path: dir.to_owned(),
        op,
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| NetnsError::Io {
        path: dir.to_owned(),
        op: "create folder",
        source: e,
    })?;
    let shared = |d: &Path| {
        mount(
            None::<&str>,
            d,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if is_mount_point(dir) {
        return shared(dir).map_err(|e| sys("make shared", e));
    }
    mount(
        Some(dir),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| sys("bind onto itself", e))?;
    shared(dir).map_err(|e| sys("make shared", e))
}

fn is_mount_point(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|mp| unescape(mp) == want))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(super::unescape("/a\\040b\\134c"), "/a b\\c");
    }
}
