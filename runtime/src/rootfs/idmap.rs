//! Idmapped bind mounts, prepared by the runtime before the init exists.
//! Setting MOUNT_ATTR_IDMAP needs privilege over the source's file system
//! (the host's user namespace), which the init of a container with its own
//! user namespace does not have; so the runtime makes each detached,
//! idmapped tree, the init inherits the fds and attaches each tree
//! (move_mount) at its resolved destination.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{RootfsError, io_err};
use crate::config::spec::IdMapping;
use crate::config::{IdmapUsers, MountConfig, MountKind};
use crate::sys;

/// The prepared trees, by mount index.
#[derive(Default)]
pub struct IdmapTrees(Vec<(usize, OwnedFd)>);

impl IdmapTrees {
    pub fn get(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.0
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, fd)| fd.as_fd())
    }
}

/// `uid_map`/`gid_map` file contents.
pub fn map_lines(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// A detached idmapped tree for every idmapped bind mount of `mounts`.
/// One user namespace per distinct mapping.
pub fn prepare(mounts: &[MountConfig]) -> Result<IdmapTrees, RootfsError> {
    let mut namespaces: Vec<(&IdmapUsers, OwnedFd)> = Vec::new();
    let mut trees = Vec::new();
    for m in mounts {
        let MountKind::Bind {
            source,
            recursive,
            idmap: Some(idmap),
        } = &m.kind
        else {
            continue;
        };
        let what = format!("mounts[{}] {}", m.index, m.destination);
        let ns = match namespaces.iter().position(|(u, _)| *u == &idmap.users) {
            Some(k) => k,
            None => {
                let fd =
                    match &idmap.users {
                        IdmapUsers::Maps { uid, gid } => {
                            sys::idmap::userns_with_maps(&map_lines(uid), &map_lines(gid))
                                .map_err(io_err(format!("{what}: user namespace for the idmap")))?
                        }
                        IdmapUsers::Joined(p) => std::fs::File::open(p)
                            .map(OwnedFd::from)
                            .map_err(io_err(format!(
                                "{what}: open user namespace {}",
                                p.display()
                            )))?,
                    };
                namespaces.push((&idmap.users, fd));
                namespaces.len() - 1
            }
        };
        let src = CString::new(source.as_os_str().as_encoded_bytes()).expect("validated");
        let tree = sys::idmap::open_tree_clone(&src, *recursive)
            .map_err(io_err(format!("{what}: open_tree {}", source.display())))?;
        sys::idmap::set_idmap(tree.as_fd(), namespaces[ns].1.as_fd(), idmap.recursive).map_err(
            io_err(format!(
                "{what}: idmap {} (its file system must support idmapped mounts)",
                source.display()
            )),
        )?;
        trees.push((m.index, tree));
    }
    Ok(IdmapTrees(trees))
}
