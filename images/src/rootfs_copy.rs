//! Copy-based rootfs, for hosts where overlayfs cannot be mounted: the
//! snapshots are merged bottom-up into a plain folder, honouring overlay
//! whiteouts (0/0 character devices remove, `trusted.overlay.opaque=y`
//! directories hide what is below). Writes go through `unpack::safe`, so
//! a symlink made by a lower layer never leads a copy out of the rootfs.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::rootfs::{Rootfs, RootfsError};
use crate::unpack::safe::{CleanPath, Root, remove_all_at};
use crate::unpack::whiteout::OPAQUE_XATTR;

/// Builds `<dir>/rootfs` by copying `lowerdirs` (top layer first, as for
/// overlay) bottom-up.
pub fn copy_rootfs(dir: &Path, lowerdirs: &[PathBuf]) -> Result<Rootfs, RootfsError> {
    let target = dir.join("rootfs");
    let err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| RootfsError::Io {
            path,
            op,
            source: e,
        }
    };
    fs::create_dir_all(&target).map_err(err("create folder", &target))?;
    let mut root = Root::open(&target).map_err(|e| err("open", &target)(e.into()))?;
    for layer in lowerdirs.iter().rev() {
        copy_dir(layer, &mut root, &CleanPath::parse(b"").expect("root path"))
            .map_err(err("copy layer", layer))?;
    }
    Ok(Rootfs {
        dir: dir.to_path_buf(),
        rootfs: target,
    })
}

fn copy_dir(layer: &Path, dst: &mut Root, rel: &CleanPath) -> io::Result<()> {
    let src_dir = layer.join(OsStr::from_bytes(&rel.components().join(&b'/')));
    let mut names: Vec<_> = fs::read_dir(&src_dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name();
        let child = child_of(rel, name.as_bytes());
        let src = e.path();
        let md = fs::symlink_metadata(&src)?;
        let parent = dst.parent_of(&child).map_err(io::Error::from)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            dst.invalidate();
            remove_all_at(parent.as_fd(), &name).map_err(io::Error::from)?;
            continue;
        }
        if ft.is_dir() {
            let opaque = rustix::fs::lgetxattr(&src, OPAQUE_XATTR, &mut [0u8; 4][..]).is_ok();
            let existing = rustix::fs::statat(&*parent, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
            let is_dir = existing.as_ref().is_some_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            });
            if existing.is_some() && (opaque || !is_dir) {
                dst.invalidate();
                remove_all_at(parent.as_fd(), &name).map_err(io::Error::from)?;
            }
            if !is_dir || opaque {
                rustix::fs::mkdirat(&*parent, &name, Mode::from_raw_mode(0o700))?;
            }
            copy_dir(layer, dst, &child)?;
            // After the children: creating them moved the directory's mtime.
            let parent = dst.parent_of(&child).map_err(io::Error::from)?;
            meta_at(&parent, &name, &md)?;
            continue;
        }
        dst.invalidate();
        remove_all_at(parent.as_fd(), &name).map_err(io::Error::from)?;
        if ft.is_symlink() {
            let t = fs::read_link(&src)?;
            rustix::fs::symlinkat(&t, &*parent, &name)?;
        } else if ft.is_file() {
            let fd = rustix::fs::openat(
                &*parent,
                &name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut out = fs::File::from(fd);
            io::copy(&mut fs::File::open(&src)?, &mut out)?;
        } else {
            let kind = if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else if ft.is_block_device() {
                rustix::fs::FileType::BlockDevice
            } else if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else {
                continue; // sockets are not image content
            };
            rustix::fs::mknodat(&*parent, &name, kind, Mode::from_raw_mode(0o600), md.rdev())?;
        }
        meta_at(&parent, &name, &md)?;
    }
    Ok(())
}

fn child_of(rel: &CleanPath, name: &[u8]) -> CleanPath {
    let mut bytes = rel.components().join(&b'/');
    bytes.push(b'/');
    bytes.extend_from_slice(name);
    CleanPath::parse(&bytes).expect("names from read_dir are clean")
}

/// Owner, mode and mtime of `name` in `parent`, never following it.
pub(crate) fn meta_at(parent: &OwnedFd, name: &OsStr, md: &fs::Metadata) -> io::Result<()> {
    rustix::fs::chownat(
        parent,
        name,
        Some(rustix::fs::Uid::from_raw(md.uid())),
        Some(rustix::fs::Gid::from_raw(md.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !md.file_type().is_symlink() {
        // Just created by us as a non-symlink: chmodat cannot be redirected.
        match rustix::fs::chmodat(
            parent,
            name,
            Mode::from_raw_mode(md.mode() & 0o7777),
            AtFlags::empty(),
        ) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let t = Timestamps {
        last_access: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(parent, name, &t, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
