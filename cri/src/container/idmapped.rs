//! The rootfs of a container in a pod user namespace: the image's layers
//! seen through the pod's id mappings, so root in the pod owns what the
//! image's root owns (and can write it), without copying or chowning the
//! shared snapshots.
//!
//! Each layer gets an idmapped bind mount (open_tree + MOUNT_ATTR_IDMAP with
//! the pod's user namespace + move_mount) on a folder of the container's
//! own; the overlay is mounted over those, and they are detached again at
//! once (overlayfs keeps private clones of its layers). The upper folder is
//! given to the pod's root before the mount, so new and copied-up files
//! belong to the pod's range on the host, as containerd 2's idmapped
//! snapshots do. Needs idmapped mounts on the snapshots' file system and
//! overlayfs over idmapped layers (Linux 5.19).

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_images::rootfs::{Rootfs, RootfsError};
use berth_runtime::sys::idmap;

/// Mount the container's overlay in `dir` over `lowerdirs` (top first),
/// each idmapped through the user namespace at `userns`; `root` is the
/// host (uid, gid) of the pod's root.
pub fn prepare(
    dir: &Path,
    lowerdirs: &[PathBuf],
    userns: &Path,
    root: (u32, u32),
) -> Result<Rootfs, RootfsError> {
    let io = |path: &Path, op: &'static str| {
        let path = path.to_path_buf();
        move |source: io::Error| RootfsError::Io { path, op, source }
    };
    let ns = File::open(userns).map_err(io(userns, "open the pod's user namespace"))?;
    let upper = dir.join("upper");
    std::fs::create_dir_all(&upper).map_err(io(&upper, "create folder"))?;
    std::os::unix::fs::chown(&upper, Some(root.0), Some(root.1))
        .map_err(io(&upper, "give the upper folder to the pod's root"))?;
    let layers = dir.join("layers");
    let mut mapped = Vec::with_capacity(lowerdirs.len());
    let attached = (|| {
        for (i, l) in lowerdirs.iter().enumerate() {
            let at = layers.join(i.to_string());
            std::fs::create_dir_all(&at).map_err(io(&at, "create folder"))?;
            let src = std::ffi::CString::new(l.as_os_str().as_encoded_bytes())
                .map_err(|e| io(l, "open_tree")(e.into()))?;
            let tree = idmap::open_tree_clone(&src, false).map_err(io(l, "open_tree"))?;
            idmap::set_idmap(
                std::os::fd::AsFd::as_fd(&tree),
                std::os::fd::AsFd::as_fd(&ns),
                false,
            )
            .map_err(io(l, "idmap the layer"))?;
            let target = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(&at)
                .map_err(io(&at, "open"))?;
            idmap::move_mount(
                std::os::fd::AsFd::as_fd(&tree),
                std::os::fd::AsFd::as_fd(&target),
            )
            .map_err(io(&at, "attach the idmapped layer"))?;
            mapped.push(at);
        }
        Ok(())
    })();
    let mounted = attached.and_then(|()| berth_images::rootfs::mount_overlay(dir, &mapped));
    // The overlay holds its own clones of the layers: the attached copies
    // go either way.
    for at in &mapped {
        let _ = rustix::mount::unmount(at.as_path(), rustix::mount::UnmountFlags::DETACH);
    }
    // One folder at a time, never recursively: a layer still attached
    // (its detach failed) must not have the image's files deleted under it.
    for i in 0..lowerdirs.len() {
        let _ = std::fs::remove_dir(layers.join(i.to_string()));
    }
    let _ = std::fs::remove_dir(&layers);
    mounted
}
