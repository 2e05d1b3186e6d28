//! Snapshots: one unpacked layer per chain ID, in overlayfs upper form,
//! at `<root>/snapshots/<chain hex>/fs`, shared by every image with that
//! layer chain. A snapshot is unpacked in `<root>/snapshots/tmp/<pid>-<n>`
//! and renamed into place whole, so a visible snapshot is complete.
//! `info.json` beside `fs` records the parent chain ID and sizes, so disk
//! usage never needs a tree walk.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Uncompressed tar bytes: close to the space the snapshot takes.
    pub size: u64,
    /// Tar entries unpacked: close to the inodes the snapshot takes (0 for
    /// snapshots recorded before this was counted).
    #[serde(default)]
    pub entries: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A snapshot being unpacked; removed on drop unless committed.
pub struct TempSnapshot {
    dir: PathBuf,
    committed: bool,
}

impl TempSnapshot {
    /// The directory the layer is applied into.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for TempSnapshot {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots, SnapshotError> {
        let s = Snapshots {
            root: root.join("snapshots"),
        };
        let tmp = s.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        s.clean_stale_tmp();
        Ok(s)
    }

    /// Removes temp dirs of processes that are gone (crash leftovers).
    fn clean_stale_tmp(&self) {
        let tmp = self.root.join("tmp");
        let Ok(rd) = fs::read_dir(&tmp) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn dir(&self, chain: &Digest) -> PathBuf {
        self.root.join(chain.hex())
    }

    /// The directory to use as an overlay lowerdir.
    pub fn fs_dir(&self, chain: &Digest) -> PathBuf {
        self.dir(chain).join("fs")
    }

    pub fn exists(&self, chain: &Digest) -> bool {
        self.dir(chain).join("info.json").exists()
    }

    pub fn info(&self, chain: &Digest) -> Option<SnapshotInfo> {
        let b = fs::read(self.dir(chain).join("info.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn prepare(&self) -> Result<TempSnapshot, SnapshotError> {
        let dir = self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let fsdir = dir.join("fs");
        fs::create_dir_all(&fsdir).map_err(io_err(&fsdir))?;
        fs::set_permissions(&fsdir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io_err(&fsdir))?;
        Ok(TempSnapshot {
            dir,
            committed: false,
        })
    }

    /// Makes the snapshot visible under its chain ID. When another pull
    /// committed the same chain first, ours is dropped.
    pub fn commit(
        &self,
        mut t: TempSnapshot,
        info: &SnapshotInfo,
        sync: bool,
    ) -> Result<(), SnapshotError> {
        let info_path = t.dir.join("info.json");
        let bytes = serde_json::to_vec_pretty(info).map_err(|e| io_err(&info_path)(e.into()))?;
        fs::write(&info_path, bytes).map_err(io_err(&info_path))?;
        if sync {
            let d = fs::File::open(&t.dir).map_err(io_err(&t.dir))?;
            rustix::fs::syncfs(&d).map_err(|e| io_err(&t.dir)(e.into()))?;
        }
        let dst = self.dir(&info.chain_id);
        match fs::rename(&t.dir, &dst) {
            Ok(()) => {
                t.committed = true;
                if sync {
                    fs::File::open(&self.root)
                        .and_then(|d| d.sync_all())
                        .map_err(io_err(&self.root))?;
                }
                Ok(())
            }
            // Lost a race with another pull of the same chain: theirs stays,
            // ours is removed on drop.
            Err(_) if self.exists(&info.chain_id) => Ok(()),
            Err(e) => Err(io_err(&dst)(e)),
        }
    }

    /// Removes a snapshot: renamed aside first so a half-removed one is
    /// never visible under its chain ID.
    pub fn remove(&self, chain: &Digest) -> Result<(), SnapshotError> {
        let src = self.dir(chain);
        if !src.exists() {
            return Ok(());
        }
        let aside = self.root.join("tmp").join(format!(
            "{}-rm-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::rename(&src, &aside).map_err(io_err(&src))?;
        fs::remove_dir_all(&aside).map_err(io_err(&aside))
    }

    pub fn list(&self) -> Vec<SnapshotInfo> {
        let Ok(rd) = fs::read_dir(&self.root) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let d: Digest = format!("sha256:{n}").parse().ok()?;
                self.info(&d)
            })
            .collect()
    }
}
