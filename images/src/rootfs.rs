//! A container's root filesystem: an overlay of the image's snapshots
//! (lowerdirs, top layer first) with a per-container upper and work dir.
//!
//! Layout under the container's folder: `upper/`, `work/`, `rootfs/`
//! (the mount point). Mounted with the new mount API (`fsopen` +
//! `lowerdir+`), which has no page-size limit on the layer list; kernels
//! before 6.8 fall back to `mount(2)` with a `lowerdir=a:b:c` string.
//! Owns the mount and its folders, nothing else; callers unmount with
//! [`remove`].

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {op}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("rootfs {path}: no layers")]
    NoLayers { path: PathBuf },
    #[error(
        "rootfs {path}: layer path {layer} contains ':' or ',' (not allowed in overlay options)"
    )]
    BadLayerPath { path: PathBuf, layer: PathBuf },
}

/// A mounted container rootfs.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
}

/// Mounts the overlay for a container in `dir` (created if needed).
/// `lowerdirs` top layer first, as [`crate::ImageStore::lowerdirs`] gives.
pub fn mount_overlay(dir: &Path, lowerdirs: &[PathBuf]) -> Result<Rootfs, RootfsError> {
    let io = |path: &Path, op| {
        let path = path.to_path_buf();
        move |source| RootfsError::Io { path, op, source }
    };
    if lowerdirs.is_empty() {
        return Err(RootfsError::NoLayers {
            path: dir.to_path_buf(),
        });
    }
    for l in lowerdirs {
        let s = l.as_os_str().as_encoded_bytes();
        if s.contains(&b':') || s.contains(&b',') {
            return Err(RootfsError::BadLayerPath {
                path: dir.to_path_buf(),
                layer: l.clone(),
            });
        }
    }
    let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &target] {
        fs::create_dir_all(d).map_err(io(d, "create folder"))?;
    }
    let new_api = || -> io::Result<()> {
        let fsfd = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        for l in lowerdirs {
            rustix::mount::fsconfig_set_string(&fsfd, "lowerdir+", l.as_path())?;
        }
        rustix::mount::fsconfig_set_string(&fsfd, "upperdir", upper.as_path())?;
        rustix::mount::fsconfig_set_string(&fsfd, "workdir", work.as_path())?;
        rustix::mount::fsconfig_create(&fsfd)?;
        let m = rustix::mount::fsmount(
            &fsfd,
            FsMountFlags::FSMOUNT_CLOEXEC,
            MountAttrFlags::empty(),
        )?;
        rustix::mount::move_mount(
            &m,
            "",
            rustix::fs::CWD,
            target.as_path(),
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )?;
        Ok(())
    };
    match new_api() {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(22) || e.raw_os_error() == Some(38) => {
            // EINVAL (no lowerdir+ before 6.8) or ENOSYS: the old way.
            let lower = lowerdirs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let data = format!(
                "lowerdir={lower},upperdir={},workdir={}",
                upper.display(),
                work.display()
            );
            let data = CString::new(data).map_err(|e| io(&target, "mount overlay")(e.into()))?;
            rustix::mount::mount(
                "overlay",
                target.as_path(),
                "overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )
            .map_err(|e| io(&target, "mount overlay")(e.into()))?;
        }
        Err(e) => return Err(io(&target, "mount overlay")(e)),
    }
    Ok(Rootfs {
        dir: dir.to_path_buf(),
        rootfs: target,
    })
}

/// An overlay rootfs, or a copied one where overlay cannot be mounted
/// (no overlayfs, or an upper filesystem it refuses).
pub fn prepare(dir: &Path, lowerdirs: &[PathBuf]) -> Result<Rootfs, RootfsError> {
    match mount_overlay(dir, lowerdirs) {
        Ok(r) => Ok(r),
        Err(RootfsError::Io {
            op: "mount overlay",
            source,
            ..
        }) => {
            tracing::warn!(dir = %dir.display(), error = %source, "overlay mount failed; copying the rootfs");
            let _ = fs::remove_dir_all(dir.join("upper"));
            let _ = fs::remove_dir_all(dir.join("work"));
            crate::rootfs_copy::copy_rootfs(dir, lowerdirs)
        }
        Err(e) => Err(e),
    }
}

/// Unmounts (lazily, so a busy mount still goes) and deletes the folder.
/// Safe to call again after a crash: missing mounts and folders are fine.
pub fn remove(dir: &Path) -> Result<(), RootfsError> {
    let target = dir.join("rootfs");
    match rustix::mount::unmount(target.as_path(), UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            return Err(RootfsError::Io {
                path: target,
                op: "unmount",
                source: e.into(),
            });
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RootfsError::Io {
            path: dir.to_path_buf(),
            op: "remove",
            source: e,
        }),
        _ => Ok(()),
    }
}
