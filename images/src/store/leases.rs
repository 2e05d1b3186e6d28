//! Leases: durable claims on an image's snapshots by a holder (a container
//! or a sandbox), so GC keeps what a running container's rootfs is made of
//! even after its image record is removed. One small JSON file per holder,
//! `<root>/leases/<sha256 of holder>.json`, written atomically (temp file,
//! fsync, rename, fsync dir): a crash leaves the old lease or the new one.
//! The file name is a hash so any holder string is a safe name; the holder
//! itself is inside.
//!
//! Everything here is blocking file I/O: call it from `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lease {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("lease holder is empty")]
    EmptyHolder,
}

/// What one holder keeps from GC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: String,
    /// The image id (config digest) the snapshots came from; informational.
    pub image: Digest,
    /// Snapshots kept, bottom layer first (the image's whole chain).
    pub chain_ids: Vec<Digest>,
}

#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LeaseError + '_ {
    move |source| LeaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Leases {
    /// Opens `<root>/leases`, removing temp files a crash left behind.
    pub fn open(root: &Path) -> Result<Leases, LeaseError> {
        let dir = root.join("leases");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Leases { dir })
    }

    fn path(&self, holder: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            Digest::sha256_of(holder.as_bytes()).hex()
        ))
    }

    /// Writes (or replaces) the lease of `lease.holder`.
    pub fn put(&self, lease: &Lease) -> Result<(), LeaseError> {
        if lease.holder.is_empty() {
            return Err(LeaseError::EmptyHolder);
        }
        let path = self.path(&lease.holder);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(lease).map_err(|e| io_err(&tmp)(e.into()))?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.sync_dir()
    }

    /// Drops the lease of `holder`; false when it had none.
    pub fn remove(&self, holder: &str) -> Result<bool, LeaseError> {
        let path = self.path(holder);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.sync_dir()?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn get(&self, holder: &str) -> Result<Option<Lease>, LeaseError> {
        let path = self.path(holder);
        match fs::read(&path) {
            Ok(b) => Ok(Some(parse(&path, &b)?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every lease. A corrupt file is an error, not skipped: GC must not
    /// collect what an unreadable lease might name.
    pub fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        let rd = fs::read_dir(&self.dir).map_err(io_err(&self.dir))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err(&self.dir))?;
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match fs::read(&path) {
                Ok(b) => out.push(parse(&path, &b)?),
                // Released meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        out.sort_by(|a, b| a.holder.cmp(&b.holder));
        Ok(out)
    }

    fn sync_dir(&self) -> Result<(), LeaseError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))
    }
}

fn parse(path: &Path, b: &[u8]) -> Result<Lease, LeaseError> {
    serde_json::from_slice(b).map_err(|source| LeaseError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn leases_survive_reopen_replace_and_release() {
        let dir = tempfile::tempdir().unwrap();
        let l = Leases::open(dir.path()).unwrap();
        let a = Lease {
            holder: "container/abc".into(),
            image: d('a'),
            chain_ids: vec![d('1'), d('2')],
        };
        l.put(&a).unwrap();
        l.put(&Lease {
            holder: "../../etc/passwd".into(),
            image: d('b'),
            chain_ids: vec![d('3')],
        })
        .unwrap();
        // A crash mid-write leaves a temp file; reopening removes it.
        std::fs::write(dir.path().join("leases/x.json.tmp"), b"{").unwrap();
        let l = Leases::open(dir.path()).unwrap();
        assert!(!dir.path().join("leases/x.json.tmp").exists());
        let all = l.list().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].holder, "../../etc/passwd");
        assert_eq!(l.get("container/abc").unwrap(), Some(a.clone()));

        let a2 = Lease {
            chain_ids: vec![d('4')],
            ..a
        };
        l.put(&a2).unwrap();
        assert_eq!(l.get("container/abc").unwrap(), Some(a2));
        assert!(l.remove("container/abc").unwrap());
        assert!(!l.remove("container/abc").unwrap());
        assert_eq!(l.list().unwrap().len(), 1);
        assert!(matches!(
            l.put(&Lease {
                holder: String::new(),
                image: d('a'),
                chain_ids: vec![]
            }),
            Err(LeaseError::EmptyHolder)
        ));
    }

    #[test]
    fn a_corrupt_lease_stops_the_listing() {
        let dir = tempfile::tempdir().unwrap();
        let l = Leases::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("leases/bad.json"), b"{not json").unwrap();
        assert!(matches!(l.list(), Err(LeaseError::Corrupt { .. })));
    }
}
