//! Confined file operations inside one snapshot directory.
//!
//! Every path from a layer is split into clean components first (no `..`,
//! no empty names); the parent directory is then opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the
//! snapshot's root fd, so symlinks (absolute or relative, made by this
//! layer or earlier entries) resolve inside the root and never outside.
//! The final component is always acted on with an `*at` call on that
//! parent fd and `NOFOLLOW` semantics, so no step ever follows a symlink
//! out of the root. This module must never take a host path from a layer.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// A path inside a layer, cleaned: components without `.`, `..`, `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CleanPath {
    comps: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    DotDot,
    TooLong,
    Nul,
}

impl CleanPath {
    /// Leading `/` and `./` are dropped (as tar and containerd do); a `..`
    /// component anywhere is refused rather than clamped, since no honest
    /// layer has one.
    pub fn parse(raw: &[u8]) -> Result<CleanPath, PathProblem> {
        if raw.len() > 4096 {
            return Err(PathProblem::TooLong);
        }
        if raw.contains(&0) {
            return Err(PathProblem::Nul);
        }
        let mut comps = Vec::new();
        for c in raw.split(|&b| b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(PathProblem::DotDot),
                c if c.len() > 255 => return Err(PathProblem::TooLong),
                c => comps.push(c.to_vec()),
            }
        }
        Ok(CleanPath { comps })
    }

    pub fn is_root(&self) -> bool {
        self.comps.is_empty()
    }
    pub fn name(&self) -> &[u8] {
        self.comps.last().map_or(b".", |c| c.as_slice())
    }
    pub fn parent(&self) -> CleanPath {
        CleanPath {
            comps: self.comps[..self.comps.len().saturating_sub(1)].to_vec(),
        }
    }
    pub fn with_name(&self, name: &[u8]) -> CleanPath {
        let mut p = self.parent();
        p.comps.push(name.to_vec());
        p
    }
    pub fn components(&self) -> &[Vec<u8>] {
        &self.comps
    }
    fn rel(&self) -> Vec<u8> {
        if self.comps.is_empty() {
            return b".".to_vec();
        }
        self.comps.join(&b'/')
    }
    pub fn display(&self) -> String {
        format!("/{}", String::from_utf8_lossy(&self.comps.join(&b'/')))
    }
}

/// The snapshot root and a one-entry cache of the last parent directory.
pub struct Root {
    fd: OwnedFd,
    cache: Option<(Vec<Vec<u8>>, Rc<OwnedFd>)>,
    /// Directories made on the way to an entry (no entry of their own):
    /// their metadata should come from the layers below (`lower`).
    pub created: std::collections::HashSet<CleanPath>,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    pub fn open(path: &Path) -> Result<Root, Errno> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            cache: None,
            created: Default::default(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Forget the cached parent (after anything was removed or replaced,
    /// since a cached fd could then point at an unlinked directory).
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// Opens a directory inside the root, resolving symlinks inside it.
    pub fn open_dir(&self, p: &CleanPath, flags: OFlags) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(
            &self.fd,
            OsStr::from_bytes(&p.rel()),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
    }

    /// The parent directory of `p` as an `O_PATH` fd, creating missing
    /// directories (mode 0755) on the way.
    pub fn parent_of(&mut self, p: &CleanPath) -> Result<Rc<OwnedFd>, Errno> {
        let parent = p.parent();
        if let Some((c, fd)) = &self.cache
            && *c == parent.comps
        {
            return Ok(fd.clone());
        }
        let fd = match self.open_dir(&parent, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.mkdir_all(&parent)?,
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cache = Some((parent.comps, fd.clone()));
        Ok(fd)
    }

    fn mkdir_all(&mut self, p: &CleanPath) -> Result<OwnedFd, Errno> {
        let mut cur = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        for i in 0..p.comps.len() {
            let prefix = CleanPath {
                comps: p.comps[..=i].to_vec(),
            };
            cur = match self.open_dir(&prefix, OFlags::PATH) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(
                        &cur,
                        OsStr::from_bytes(&p.comps[i]),
                        Mode::from_raw_mode(0o755),
                    ) {
                        Ok(()) => {
                            self.created.insert(prefix.clone());
                        }
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    self.open_dir(&prefix, OFlags::PATH)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }
}

/// Removes `name` in `dir` (recursively for directories), never
/// following symlinks.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
        let sub = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for e in rustix::fs::Dir::read_from(&sub)? {
            let e = e?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            remove_all_at(sub.as_fd(), OsStr::from_bytes(&n))?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths() {
        let p = CleanPath::parse(b"/./usr//bin/sh").unwrap();
        assert_eq!(p.display(), "/usr/bin/sh");
        assert_eq!(p.name(), b"sh");
        assert_eq!(p.parent().display(), "/usr/bin");
        assert!(CleanPath::parse(b"./").unwrap().is_root());
        for bad in [&b"../x"[..], b"a/../../x", b"/..", b"a/.."] {
            assert_eq!(CleanPath::parse(bad), Err(PathProblem::DotDot), "{bad:?}");
        }
        assert_eq!(CleanPath::parse(b"a\0b"), Err(PathProblem::Nul));
        assert_eq!(
            CleanPath::parse(&vec![b'a'; 256]),
            Err(PathProblem::TooLong)
        );
        // "..." and "..x" are ordinary names.
        assert!(CleanPath::parse(b"a/.../..x").is_ok());
    }

    #[test]
    fn symlinks_resolve_inside_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", root_dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../", root_dir.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.path().join("host")).unwrap();
        let mut root = Root::open(root_dir.path()).unwrap();
        for (i, link) in ["abs", "rel"].into_iter().enumerate() {
            let p = CleanPath::parse(format!("{link}/sub/file{i}").as_bytes()).unwrap();
            // The parent is created inside the root, never outside.
            let fd = root.parent_of(&p).unwrap();
            rustix::fs::openat(
                &*fd,
                format!("file{i}"),
                OFlags::CREATE | OFlags::WRONLY | OFlags::EXCL,
                Mode::from_raw_mode(0o644),
            )
            .unwrap();
            root.invalidate();
        }
        assert!(root_dir.path().join("sub/file0").exists());
        assert!(root_dir.path().join("sub/file1").exists());
        // A link to a host path that does not exist inside the root: refused.
        let p = CleanPath::parse(b"host/file").unwrap();
        assert!(root.parent_of(&p).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
