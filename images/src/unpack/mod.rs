//! Layer application: a (compressed) tar stream into one snapshot
//! directory, in overlayfs upper-dir form, confined to that directory.
//!
//! Owns: decompression (gzip, zstd, none), the diff_id of the
//! uncompressed stream, limits (entries, bytes), whiteout conversion and
//! metadata (owners, modes incl. setuid, xattrs, mtimes, devices,
//! hardlinks). It never resolves a layer path against the host: see
//! `safe`. Blocking: run it on a blocking thread.

pub mod lower;
pub mod safe;
pub mod whiteout;

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::Digest as _;

use crate::digest::Digest;
use crate::manifest::Compression;
use safe::{CleanPath, PathProblem, Root};
use whiteout::Whiteout;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {path:?}: path has a '..' component")]
    Traversal { path: String },
    #[error("layer entry {path:?}: path is too long or has a NUL byte")]
    BadPath { path: String },
    #[error("layer entry {path:?}: invalid whiteout name")]
    BadWhiteout { path: String },
    #[error(
        "layer entry {path:?}: hard link target {target:?} is not a file in this layer or the layers below it"
    )]
    HardlinkTarget {
        path: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("layer is larger than {limit} bytes uncompressed")]
    TooLarge { limit: u64 },
    #[error("layer entry {path:?}: {op}")]
    Fs {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("read layer tar")]
    Tar(#[source] io::Error),
    #[error("open snapshot directory {path}")]
    Root {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Bounds on what one layer may do.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: u64,
    /// Uncompressed tar bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1 << 20,
            max_bytes: 64 << 30,
        }
    }
}

/// What applying a layer produced.
#[derive(Debug, Clone)]
pub struct Applied {
    pub diff_id: Digest,
    /// Uncompressed tar size.
    pub tar_bytes: u64,
    pub entries: u64,
    /// Hard links to files this layer does not hold, and directories it
    /// implies without entries of their own: completed from the lower
    /// layers with [`lower::complete_from_lowers`] before the snapshot is
    /// committed.
    pub pending_links: Vec<lower::PendingLink>,
    pub implicit_dirs: Vec<CleanPath>,
}

/// Counts and hashes the uncompressed stream, and enforces the byte limit.
struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
    n: u64,
    limit: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hasher.update(&buf[..k]);
        self.n += k as u64;
        if self.n > self.limit {
            return Err(io::Error::other(LimitHit));
        }
        Ok(k)
    }
}

#[derive(Debug)]
struct LimitHit;
impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("uncompressed size limit reached")
    }
}
impl std::error::Error for LimitHit {}

fn is_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<LimitHit>())
}

/// Decompresses `compressed` and applies it to `dir` (an empty directory
/// that becomes the layer's snapshot).
pub fn apply_layer<R: Read>(
    dir: &Path,
    compressed: R,
    compression: Compression,
    limits: Limits,
) -> Result<Applied, UnpackError> {
    let dec: Box<dyn Read> = match compression {
        Compression::None => Box::new(compressed),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, compressed),
        )),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(compressed).map_err(UnpackError::Tar)?)
        }
    };
    apply_tar(dir, dec, limits)
}

/// Applies an uncompressed tar stream to `dir`, then reads the stream to
/// its end so the diff_id covers every byte.
pub fn apply_tar<R: Read>(dir: &Path, tar: R, limits: Limits) -> Result<Applied, UnpackError> {
    let mut hashing = Hashing {
        inner: tar,
        hasher: sha2::Sha256::new(),
        n: 0,
        limit: limits.max_bytes,
    };
    let root = Root::open(dir).map_err(|e| UnpackError::Root {
        path: dir.display().to_string(),
        source: e.into(),
    })?;
    let mut ap = Applier {
        root,
        dir_times: std::collections::HashMap::new(),
        pending: std::collections::HashMap::new(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut entries = 0u64;
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_ignore_zeros(false);
        let iter = archive.entries().map_err(UnpackError::Tar)?;
        for entry in iter {
            let mut entry = entry.map_err(|e| tar_err(e, limits))?;
            entries += 1;
            if entries > limits.max_entries {
                return Err(UnpackError::TooManyEntries {
                    limit: limits.max_entries,
                });
            }
            ap.entry(&mut entry).map_err(|e| match e {
                UnpackError::Fs { source, .. } | UnpackError::Tar(source) if is_limit(&source) => {
                    UnpackError::TooLarge {
                        limit: limits.max_bytes,
                    }
                }
                e => e,
            })?;
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| tar_err(e, limits))?;
    let pending_links = ap
        .pending
        .drain()
        .map(|(path, target)| lower::PendingLink { path, target })
        .collect();
    let implicit_dirs = ap.root.created.drain().collect();
    ap.finish()?;
    Ok(Applied {
        diff_id: Digest::from_sha256(hashing.hasher.finalize().into()),
        tar_bytes: hashing.n,
        entries,
        pending_links,
        implicit_dirs,
    })
}

fn tar_err(e: io::Error, limits: Limits) -> UnpackError {
    if is_limit(&e) {
        UnpackError::TooLarge {
            limit: limits.max_bytes,
        }
    } else {
        UnpackError::Tar(e)
    }
}

struct Applier {
    root: Root,
    /// Directory mtimes are set last: creating children changes them.
    /// A map, so a layer repeating one directory entry cannot grow it.
    dir_times: std::collections::HashMap<CleanPath, i64>,
    /// Hard links (path -> target) whose target is not in this layer; a
    /// later entry for the same path replaces the link, as in tar.
    pending: std::collections::HashMap<CleanPath, CleanPath>,
    /// One copy buffer for the whole layer (not one per file).
    buf: Vec<u8>,
}

fn fs_err<'a>(path: &'a CleanPath, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Fs {
        path: path.display(),
        op,
        source: e.into(),
    }
}

impl Applier {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw_path = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let path = CleanPath::parse(&raw_path).map_err(|p| match p {
            PathProblem::DotDot => UnpackError::Traversal {
                path: shown.clone(),
            },
            _ => UnpackError::BadPath {
                path: shown.clone(),
            },
        })?;
        let kind = e.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        if path.is_root() {
            // The layer's own "./": the snapshot root keeps its metadata.
            return Ok(());
        }
        self.pending.remove(&path);
        match whiteout::classify(path.name()) {
            Whiteout::None => {}
            Whiteout::Meta => return Ok(()),
            Whiteout::Invalid => return Err(UnpackError::BadWhiteout { path: shown }),
            Whiteout::Opaque => {
                let dir = path.parent();
                let fd = self
                    .root
                    .open_dir(&dir, OFlags::RDONLY)
                    .or_else(|e| {
                        if e == Errno::NOENT {
                            self.root.parent_of(&path)?;
                            self.root.open_dir(&dir, OFlags::RDONLY)
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(fs_err(&path, "open opaque directory"))?;
                rustix::fs::fsetxattr(&fd, whiteout::OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(fs_err(&path, "set opaque xattr"))?;
                return Ok(());
            }
            Whiteout::Remove(name) => {
                let target = path.with_name(name);
                self.pending.remove(&target);
                let parent = self
                    .root
                    .parent_of(&target)
                    .map_err(fs_err(&path, "open parent"))?;
                let name = OsStr::from_bytes(name);
                self.replace(&parent, name, &target, false)?;
                rustix::fs::mknodat(
                    &*parent,
                    name,
                    rustix::fs::FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(fs_err(&target, "make whiteout device"))?;
                return Ok(());
            }
        }

        let h = e.header().clone();
        let mode = Mode::from_raw_mode(h.mode().map_err(UnpackError::Tar)? & 0o7777);
        // Empty numeric fields mean 0, as Go's archive/tar (which wrote
        // most layers) reads them.
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let xattrs = read_xattrs(e)?;
        let parent = self
            .root
            .parent_of(&path)
            .map_err(fs_err(&path, "open parent"))?;
        let name = OsStr::from_bytes(path.name());
        let owner = (
            Some(rustix::fs::Uid::from_raw(uid as u32)),
            Some(rustix::fs::Gid::from_raw(gid as u32)),
        );
        let times = Timestamps {
            last_access: ts(mtime),
            last_modification: ts(mtime),
        };

        match kind {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rustix::fs::statat(&*parent, name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(fs_err(&path, "stat"))?;
                        if rustix::fs::FileType::from_raw_mode(st.st_mode)
                            != rustix::fs::FileType::Directory
                        {
                            self.replace(&parent, name, &path, true)?;
                            rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o700))
                                .map_err(fs_err(&path, "mkdir"))?;
                        }
                    }
                    Err(err) => return Err(fs_err(&path, "mkdir")(err)),
                }
                let fd = rustix::fs::openat(
                    &*parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fs_err(&path, "open directory"))?;
                rustix::fs::fchown(&fd, owner.0, owner.1).map_err(fs_err(&path, "chown"))?;
                rustix::fs::fchmod(&fd, mode).map_err(fs_err(&path, "chmod"))?;
                set_xattrs_fd(&fd, &xattrs, &path)?;
                self.root.created.remove(&path);
                self.dir_times.insert(path, mtime);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = self.create_file(&parent, name, &path)?;
                let mut f = std::fs::File::from(fd);
                copy_data(e, &mut f, &mut self.buf).map_err(|err| UnpackError::Fs {
                    path: path.display(),
                    op: "write file",
                    source: err,
                })?;
                rustix::fs::fchown(&f, owner.0, owner.1).map_err(fs_err(&path, "chown"))?;
                rustix::fs::fchmod(&f, mode).map_err(fs_err(&path, "chmod"))?;
                set_xattrs_fd(f.as_fd(), &xattrs, &path)?;
                rustix::fs::futimens(&f, &times).map_err(fs_err(&path, "set times"))?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                if target.is_empty() || target.len() > 4095 || target.contains(&0) {
                    return Err(UnpackError::BadPath { path: shown });
                }
                self.retry_exists(&parent, name, &path, |p, n| {
                    rustix::fs::symlinkat(OsStr::from_bytes(&target), p, n)
                })?;
                // A new symlink may sit where a cached directory resolved.
                self.root.invalidate();
                rustix::fs::chownat(&*parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&path, "chown"))?;
                self.set_xattrs_path(&parent, name, &xattrs, &path)?;
                rustix::fs::utimensat(&*parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&path, "set times"))?;
            }
            tar::EntryType::Link => {
                let raw = e.link_name_bytes().unwrap_or_default().into_owned();
                let target_shown = String::from_utf8_lossy(&raw).into_owned();
                let target = CleanPath::parse(&raw).map_err(|p| match p {
                    PathProblem::DotDot => UnpackError::Traversal {
                        path: format!("{shown} -> {target_shown}"),
                    },
                    _ => UnpackError::BadPath {
                        path: shown.clone(),
                    },
                })?;
                let link_err = |source: Errno| UnpackError::HardlinkTarget {
                    path: shown.clone(),
                    target: target_shown.clone(),
                    source: source.into(),
                };
                if target.is_root() {
                    return Err(link_err(Errno::ISDIR));
                }
                let src_dir = match self.root.open_dir(&target.parent(), OFlags::PATH) {
                    Err(Errno::NOENT) => {
                        self.pending.insert(path, target);
                        return Ok(());
                    }
                    r => r.map_err(link_err)?,
                };
                let src_name = OsStr::from_bytes(target.name());
                let st = match rustix::fs::statat(&src_dir, src_name, AtFlags::SYMLINK_NOFOLLOW) {
                    // Not in this layer: a file of a lower one (see `lower`).
                    Err(Errno::NOENT) => {
                        self.pending.insert(path, target);
                        return Ok(());
                    }
                    r => r.map_err(link_err)?,
                };
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory
                {
                    return Err(link_err(Errno::ISDIR));
                }
                if target == path {
                    return Ok(());
                }
                self.retry_exists(&parent, name, &path, |p, n| {
                    rustix::fs::linkat(&src_dir, src_name, p, n, AtFlags::empty())
                })
                .map_err(|e| match e {
                    UnpackError::Fs { source, .. } => UnpackError::HardlinkTarget {
                        path: shown.clone(),
                        target: target_shown.clone(),
                        source,
                    },
                    e => e,
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                let dev = rustix::fs::makedev(
                    h.device_major().ok().flatten().unwrap_or(0),
                    h.device_minor().ok().flatten().unwrap_or(0),
                );
                self.retry_exists(&parent, name, &path, |p, n| {
                    rustix::fs::mknodat(p, n, ft, Mode::from_raw_mode(0o600), dev)
                })?;
                rustix::fs::chownat(&*parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&path, "chown"))?;
                // Just made by us and not a symlink: chmodat cannot escape.
                rustix::fs::chmodat(&*parent, name, mode, AtFlags::empty())
                    .map_err(fs_err(&path, "chmod"))?;
                self.set_xattrs_path(&parent, name, &xattrs, &path)?;
                rustix::fs::utimensat(&*parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(fs_err(&path, "set times"))?;
            }
            other => {
                tracing::debug!(path = %shown, kind = ?other, "skipping unsupported tar entry type");
            }
        }
        Ok(())
    }

    fn create_file(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
    ) -> Result<OwnedFd, UnpackError> {
        let open = |p: &OwnedFd| {
            rustix::fs::openat(
                p,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        match open(parent) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXIST) => {
                self.replace(parent, name, path, true)?;
                open(parent).map_err(fs_err(path, "create file"))
            }
            Err(e) => Err(fs_err(path, "create file")(e)),
        }
    }

    /// Runs `make`; on EEXIST removes what is there (a later entry in a
    /// layer replaces an earlier one) and runs it once more.
    fn retry_exists(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        make: impl Fn(&OwnedFd, &OsStr) -> Result<(), Errno>,
    ) -> Result<(), UnpackError> {
        match make(parent, name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                self.replace(parent, name, path, true)?;
                make(parent, name).map_err(fs_err(path, "create"))
            }
            Err(e) => Err(fs_err(path, "create")(e)),
        }
    }

    /// Removes whatever is at `name` (recursively) before a replacement.
    fn replace(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &CleanPath,
        _known_exists: bool,
    ) -> Result<(), UnpackError> {
        self.root.invalidate();
        safe::remove_all_at(parent.as_fd(), name).map_err(fs_err(path, "remove existing"))
    }

    fn set_xattrs_path(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        xattrs: &[(String, Vec<u8>)],
        path: &CleanPath,
    ) -> Result<(), UnpackError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        // lsetxattr on "<parent fd>/<name>" through procfs: the parent is
        // our confined fd and the last component is not followed.
        let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        for (k, v) in xattrs {
            match rustix::fs::lsetxattr(OsStr::from_bytes(&p), k.as_str(), v, XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
                Err(e) => return Err(fs_err(path, "set xattr")(e)),
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        let dirs = std::mem::take(&mut self.dir_times);
        self.root.invalidate();
        for (p, mtime) in &dirs {
            let Ok(parent) = self.root.open_dir(&p.parent(), OFlags::PATH) else {
                continue;
            };
            let t = Timestamps {
                last_access: ts(*mtime),
                last_modification: ts(*mtime),
            };
            // The directory may have been replaced later in the layer.
            let _ = rustix::fs::utimensat(
                &parent,
                OsStr::from_bytes(p.name()),
                &t,
                AtFlags::SYMLINK_NOFOLLOW,
            );
        }
        Ok(())
    }
}

fn ts(sec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: 0,
    }
}

fn read_xattrs<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, UnpackError> {
    let mut out = Vec::new();
    let Some(exts) = e.pax_extensions().map_err(UnpackError::Tar)? else {
        return Ok(out);
    };
    for ext in exts {
        let ext = ext.map_err(UnpackError::Tar)?;
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        if whiteout::forbidden_xattr(name) {
            tracing::warn!(xattr = name, "dropping overlay xattr from layer");
            continue;
        }
        if name.len() > 255 || ext.value_bytes().len() > 64 * 1024 {
            continue;
        }
        out.push((name.to_owned(), ext.value_bytes().to_vec()));
    }
    Ok(out)
}

fn set_xattrs_fd(
    fd: impl AsFd,
    xattrs: &[(String, Vec<u8>)],
    path: &CleanPath,
) -> Result<(), UnpackError> {
    for (k, v) in xattrs {
        match rustix::fs::fsetxattr(&fd, k.as_str(), v, XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
            Err(e) => return Err(fs_err(path, "set xattr")(e)),
        }
    }
    Ok(())
}

fn copy_data<R: Read>(e: &mut R, f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = e.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        f.write_all(&buf[..n])?;
        total += n as u64;
    }
}
