//! Hard links whose target is a file of a lower layer.
//!
//! A layer built on an overlay mount (docker build, buildah) may hard-link
//! a file it did not write: the kernel copied the file up into the layer's
//! upper directory first, but the tar only holds the link. Applied on its
//! own, such a layer names a target that is not in it. berth unpacks layers
//! in parallel into separate snapshots, so the lower layers may not exist
//! yet while the tar streams: the applier records these links, and once
//! the parent chain is committed, [`link_from_lowers`] does what overlay
//! would have done: copy the target up from the topmost lower layer that
//! shows it (whiteouts and opaque directories respected) into this layer,
//! with its owner, mode, xattrs and times, then link it.
//!
//! Lower snapshots are committed and never change, and their paths are
//! walked one component at a time with `lstat`, refusing symlinks, so a
//! lookup can never leave a lower layer. Writes into this layer go through
//! [`Root`] like every other entry.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::safe::{CleanPath, Root, remove_all_at};
use super::whiteout::OPAQUE_XATTR;
use super::{UnpackError, fs_err};

/// A hard link entry whose target was not in its own layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    pub path: CleanPath,
    pub target: CleanPath,
}

/// Where a path is in a stack of layers.
enum Found {
    /// Present as a real (non-whiteout) entry in this lower layer.
    In(PathBuf, std::fs::Metadata),
    /// Hidden (whited out, under an opaque dir, or under a non-directory)
    /// or in no layer.
    Absent,
}

/// Looks `p` up in `lowers` (topmost first) the way overlayfs merges them.
fn find(lowers: &[PathBuf], p: &CleanPath) -> Found {
    let comps = p.components();
    for l in lowers {
        let mut at = l.clone();
        let mut opaque_above = false;
        let mut present = true;
        for (k, c) in comps.iter().enumerate() {
            at.push(OsStr::from_bytes(c));
            let Ok(md) = std::fs::symlink_metadata(&at) else {
                present = false;
                break;
            };
            if md.file_type().is_char_device() && md.rdev() == 0 {
                return Found::Absent; // whiteout
            }
            if k + 1 == comps.len() {
                return Found::In(at, md);
            }
            if !md.is_dir() {
                return Found::Absent; // a file or symlink hides the rest
            }
            if is_opaque(&at) {
                opaque_above = true;
            }
        }
        if !present && opaque_above {
            return Found::Absent;
        }
    }
    Found::Absent
}

fn is_opaque(dir: &Path) -> bool {
    let mut v = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, OPAQUE_XATTR, &mut v), Ok(1) if v[0] == b'y')
}

fn times(md: &std::fs::Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec() as _,
        },
    }
}

/// Completes the layer at `dir` from `lowers` (the parent chain's snapshot
/// dirs, topmost first): makes every link of `pending`, copying targets
/// up, and gives the directories the layer implied without entries
/// (`implicit`) the owner, mode and times the lower layers show for them,
/// as overlay's copy-up would have.
pub fn complete_from_lowers(
    dir: &Path,
    lowers: &[PathBuf],
    pending: &[PendingLink],
    implicit: &[CleanPath],
) -> Result<(), UnpackError> {
    let mut root = Root::open(dir).map_err(|e| UnpackError::Root {
        path: dir.display().to_string(),
        source: e.into(),
    })?;
    for l in pending {
        let missing = |source: Errno| UnpackError::HardlinkTarget {
            path: l.path.display(),
            target: l.target.display(),
            source: source.into(),
        };
        let tname = OsStr::from_bytes(l.target.name());
        // Copied up already (an earlier link to the same file), or written
        // by this layer after the link entry? Looked up without creating
        // the parents: copied-up parents take the lower dirs' metadata.
        let here = match root.open_dir(&l.target.parent(), OFlags::PATH) {
            Ok(pfd) => match rustix::fs::statat(&pfd, tname, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir() => {
                    return Err(missing(Errno::ISDIR));
                }
                Ok(_) => true,
                Err(Errno::NOENT) => false,
                Err(e) => return Err(missing(e)),
            },
            Err(Errno::NOENT) => false,
            Err(e) => return Err(missing(e)),
        };
        if !here {
            let Found::In(src, md) = find(lowers, &l.target) else {
                return Err(missing(Errno::NOENT));
            };
            if !md.is_file() {
                // Overlay copies up anything; a layer linking a lower
                // symlink or device has not been seen in practice.
                return Err(missing(Errno::INVAL));
            }
            copy_dirs_meta(&mut root, lowers, &l.target)?;
            let tparent = root.parent_of(&l.target).map_err(missing)?;
            copy_up(&src, &md, &tparent, tname, &l.target)?;
        }
        let tparent = root.parent_of(&l.target).map_err(missing)?;
        let lparent = root.parent_of(&l.path).map_err(missing)?;
        let lname = OsStr::from_bytes(l.path.name());
        let link = || rustix::fs::linkat(&*tparent, tname, &*lparent, lname, AtFlags::empty());
        match link() {
            Err(Errno::EXIST) => {
                root.invalidate();
                remove_all_at(lparent.as_fd(), lname)
                    .map_err(fs_err(&l.path, "remove existing"))?;
                link().map_err(missing)?;
            }
            r => r.map_err(missing)?,
        }
    }
    let mut dirs: Vec<_> = implicit.iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().len()));
    for d in dirs {
        if let Found::In(_, md) = find(lowers, d)
            && md.is_dir()
        {
            let parent = root.parent_of(d).map_err(fs_err(d, "open parent"))?;
            set_meta(&parent, OsStr::from_bytes(d.name()), &md, d)?;
        }
    }
    Ok(())
}

/// Owner, mode, then times of `name` in `parent` from `md`.
fn set_meta(
    parent: &rustix::fd::OwnedFd,
    name: &OsStr,
    md: &std::fs::Metadata,
    p: &CleanPath,
) -> Result<(), UnpackError> {
    crate::rootfs_copy::meta_at(parent, name, md).map_err(|source| UnpackError::Fs {
        path: p.display(),
        op: "set owner, mode and times",
        source,
    })
}

/// Creates the directories above `target` that this layer lacks, with the
/// owner, mode and times the merged view shows for them (overlay copies
/// parents up with their metadata too).
fn copy_dirs_meta(
    root: &mut Root,
    lowers: &[PathBuf],
    target: &CleanPath,
) -> Result<(), UnpackError> {
    let comps = target.components();
    let mut created = Vec::new();
    for k in 1..comps.len() {
        let prefix = CleanPath::parse(&comps[..k].join(&b'/')).expect("from clean components");
        match root.open_dir(&prefix, OFlags::PATH) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(fs_err(&prefix, "open directory")(e)),
        }
        let parent = root
            .parent_of(&prefix)
            .map_err(fs_err(&prefix, "open parent"))?;
        rustix::fs::mkdirat(
            &*parent,
            OsStr::from_bytes(prefix.name()),
            Mode::from_raw_mode(0o755),
        )
        .map_err(fs_err(&prefix, "create directory"))?;
        created.push(prefix);
    }
    // Deepest first, so a parent's times are set after its child was made.
    for prefix in created.iter().rev() {
        if let Found::In(_, md) = find(lowers, prefix) {
            let parent = root
                .parent_of(prefix)
                .map_err(fs_err(prefix, "open parent"))?;
            set_meta(&parent, OsStr::from_bytes(prefix.name()), &md, prefix)?;
        }
    }
    Ok(())
}

/// Copies the lower file `src` to `name` in `parent`: bytes, owner, mode
/// (setuid bits after chown), xattrs, times.
fn copy_up(
    src: &Path,
    md: &std::fs::Metadata,
    parent: &rustix::fd::OwnedFd,
    name: &OsStr,
    target: &CleanPath,
) -> Result<(), UnpackError> {
    let mut from = File::options()
        .read(true)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(src)
        .map_err(|e| UnpackError::Fs {
            path: target.display(),
            op: "open lower file",
            source: e,
        })?;
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(fs_err(target, "create copy"))?;
    let mut to = File::from(fd);
    io::copy(&mut from, &mut to).map_err(|e| UnpackError::Fs {
        path: target.display(),
        op: "copy up",
        source: e,
    })?;
    rustix::fs::fchown(
        &to,
        Some(rustix::fs::Uid::from_raw(md.uid())),
        Some(rustix::fs::Gid::from_raw(md.gid())),
    )
    .map_err(fs_err(target, "chown"))?;
    rustix::fs::fchmod(&to, Mode::from_raw_mode(md.mode() & 0o7777))
        .map_err(fs_err(target, "chmod"))?;
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::flistxattr(&from, &mut names).map_err(fs_err(target, "list xattrs"))?;
    let mut value = vec![0u8; 64 * 1024];
    for x in names[..n].split(|&b| b == 0).filter(|x| !x.is_empty()) {
        let x = OsStr::from_bytes(x);
        let k =
            rustix::fs::fgetxattr(&from, x, &mut value).map_err(fs_err(target, "read xattr"))?;
        rustix::fs::fsetxattr(&to, x, &value[..k], XattrFlags::empty())
            .map_err(fs_err(target, "set xattr"))?;
    }
    rustix::fs::futimens(&to, &times(md)).map_err(fs_err(target, "set times"))?;
    Ok(())
}
