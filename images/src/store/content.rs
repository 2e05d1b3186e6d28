//! The content store: verified blobs under `<root>/blobs/<alg>/<hex>`.
//!
//! A blob is written to `<root>/ingest/<hex>` first and renamed into
//! place only after its size and digest match, so a blob path that exists
//! is always complete and correct. A partial ingest file survives a crash
//! or cancel and the next download continues from its length (HTTP Range).
//! An ingest file is `flock`ed while written so two processes sharing the
//! store never append to the same one.
//!
//! Everything here is blocking file I/O: call it from `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected}: got {size} bytes with digest {actual}, want {want_size} bytes")]
    Mismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
        want_size: u64,
    },
    #[error("blob {digest}: more than the expected {want_size} bytes")]
    Oversize { digest: Digest, want_size: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(d.hex())
    }

    fn ingest_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}-{}", d.algorithm().as_str(), d.hex()))
    }

    /// The size of a committed blob, if present.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Reads a small committed blob (manifest, config), at most `max` bytes.
    pub fn read(&self, d: &Digest, max: u64) -> Result<Vec<u8>, ContentError> {
        let p = self.blob_path(d);
        let f = File::open(&p).map_err(io_err(&p))?;
        let mut out = Vec::new();
        f.take(max + 1).read_to_end(&mut out).map_err(io_err(&p))?;
        if out.len() as u64 > max {
            return Err(ContentError::Oversize {
                digest: d.clone(),
                want_size: max,
            });
        }
        Ok(out)
    }

    /// Writes a small blob already in memory (verifies it first).
    pub fn write_all(&self, d: &Digest, data: &[u8]) -> Result<(), ContentError> {
        if self.size(d) == Some(data.len() as u64) {
            return Ok(());
        }
        let Some(mut w) = self.ingest(d, data.len() as u64)? else {
            return Ok(());
        };
        w.restart()?;
        w.write(data)?;
        w.commit()
    }

    /// Opens (or resumes) the ingest of `d`; `None` when the blob is
    /// already committed (perhaps by a concurrent writer we waited for).
    /// Blocks while another process holds the same ingest.
    pub fn ingest(&self, d: &Digest, size: u64) -> Result<Option<Ingest>, ContentError> {
        let p = self.ingest_path(d);
        let mut file = loop {
            if self.size(d) == Some(size) {
                return Ok(None);
            }
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&p)
                .map_err(io_err(&p))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| io_err(&p)(e.into()))?;
            // The holder we waited for may have committed (renamed) the
            // file we opened: only the file still at the path is ours.
            let ours = file.metadata().map_err(io_err(&p))?;
            match fs::metadata(&p) {
                Ok(at_path) if at_path.ino() == ours.ino() && at_path.dev() == ours.dev() => {
                    break file;
                }
                _ => continue,
            }
        };
        if self.size(d) == Some(size) {
            let _ = fs::remove_file(&p);
            return Ok(None);
        }
        let mut len = file.metadata().map_err(io_err(&p))?.len();
        if len > size {
            file.set_len(0).map_err(io_err(&p))?;
            len = 0;
        }
        // The hash state is not persisted: hash what is already there.
        let mut hasher = sha2::Sha256::new();
        file.seek(SeekFrom::Start(0)).map_err(io_err(&p))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want]).map_err(io_err(&p))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(Some(Ingest {
            store: self.clone(),
            digest: d.clone(),
            want_size: size,
            path: p,
            file,
            hasher,
            written: len,
        }))
    }

    /// Stores a blob whose digest nobody told us (a legacy `docker save`
    /// entry): hashes `r` while writing it to a private ingest file, then
    /// renames it to the digest it has. The name is computed here, so the
    /// store's invariant (a blob path names its content) holds.
    pub fn ingest_computed(&self, r: &mut impl Read) -> Result<(Digest, u64), ContentError> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self
            .root
            .join("ingest")
            .join(format!("computed-{}-{n}", std::process::id()));
        let res = (|| {
            let mut f = File::create(&p).map_err(io_err(&p))?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut len = 0u64;
            loop {
                let k = r.read(&mut buf).map_err(io_err(&p))?;
                if k == 0 {
                    break;
                }
                hasher.update(&buf[..k]);
                f.write_all(&buf[..k]).map_err(io_err(&p))?;
                len += k as u64;
            }
            let d = Digest::from_sha256(hasher.finalize().into());
            if self.size(&d) == Some(len) {
                return Ok((d, len));
            }
            f.sync_all().map_err(io_err(&p))?;
            let dst = self.blob_path(&d);
            fs::rename(&p, &dst).map_err(io_err(&dst))?;
            Ok((d, len))
        })();
        let _ = fs::remove_file(&p);
        res
    }

    /// Removes a blob (GC). Missing is fine.
    pub fn remove(&self, d: &Digest) -> Result<(), ContentError> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&p)(e)),
            _ => Ok(()),
        }
    }

    /// Every committed blob with its size.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, ContentError> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let e = e.map_err(io_err(&dir))?;
                let name = e.file_name();
                let Some(d) = name
                    .to_str()
                    .and_then(|n| format!("{alg}:{n}").parse::<Digest>().ok())
                else {
                    continue;
                };
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((d, len));
            }
        }
        Ok(out)
    }
}

/// A blob being written. Dropping it leaves the partial file for resume.
pub struct Ingest {
    store: ContentStore,
    digest: Digest,
    want_size: u64,
    path: PathBuf,
    file: File,
    hasher: sha2::Sha256,
    written: u64,
}

impl Ingest {
    /// Bytes already on disk: where the download continues.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// A reader over the bytes already on disk (to replay them into an
    /// unpacker before the network continues).
    pub fn replay(&self) -> Result<impl Read + use<>, ContentError> {
        let f = File::open(&self.path).map_err(io_err(&self.path))?;
        Ok(f.take(self.written))
    }

    /// True once every expected byte is on disk (commit may still find
    /// the digest wrong).
    pub fn is_complete(&self) -> bool {
        self.written == self.want_size
    }

    /// Throws away the partial content (the server would not resume).
    pub fn restart(&mut self) -> Result<(), ContentError> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.hasher = sha2::Sha256::new();
        self.written = 0;
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), ContentError> {
        if self.written + data.len() as u64 > self.want_size {
            return Err(ContentError::Oversize {
                digest: self.digest.clone(),
                want_size: self.want_size,
            });
        }
        self.file.write_all(data).map_err(io_err(&self.path))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Verifies size and digest, then makes the blob visible atomically.
    /// On mismatch the partial file is deleted (it can never become right).
    pub fn commit(self) -> Result<(), ContentError> {
        let actual = Digest::from_sha256(self.hasher.clone().finalize().into());
        let ok = self.written == self.want_size
            && (self.digest.algorithm() != crate::digest::Algorithm::Sha256
                || actual == self.digest);
        if !ok {
            let _ = fs::remove_file(&self.path);
            return Err(ContentError::Mismatch {
                expected: self.digest,
                actual,
                size: self.written,
                want_size: self.want_size,
            });
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        let dst = self.store.blob_path(&self.digest);
        fs::rename(&self.path, &dst).map_err(io_err(&dst))?;
        if let Some(parent) = dst.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        Ok(())
    }

    /// Deletes the partial file (digest mismatch seen downstream).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_resume_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let data = b"hello resumable world".repeat(1000);
        let d = Digest::sha256_of(&data);
        {
            let mut w = cs.ingest(&d, data.len() as u64).unwrap().unwrap();
            w.write(&data[..5000]).unwrap();
            // dropped: simulates a cancel
        }
        assert!(cs.size(&d).is_none(), "partial blob must not be visible");
        let mut w = cs.ingest(&d, data.len() as u64).unwrap().unwrap();
        assert_eq!(w.offset(), 5000);
        let mut replay = Vec::new();
        w.replay().unwrap().read_to_end(&mut replay).unwrap();
        assert_eq!(replay, &data[..5000]);
        w.write(&data[5000..]).unwrap();
        w.commit().unwrap();
        assert_eq!(cs.size(&d), Some(data.len() as u64));
        assert_eq!(cs.read(&d, 1 << 20).unwrap(), data);
        assert_eq!(cs.list().unwrap(), vec![(d.clone(), data.len() as u64)]);
    }

    #[test]
    fn rejects_wrong_content() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"right");
        let mut w = cs.ingest(&d, 5).unwrap().unwrap();
        w.write(b"wrong").unwrap();
        assert!(matches!(w.commit(), Err(ContentError::Mismatch { .. })));
        assert!(cs.size(&d).is_none());
        let mut w = cs.ingest(&d, 5).unwrap().unwrap();
        assert_eq!(w.offset(), 0, "a bad partial is not resumed");
        assert!(w.write(b"toolong").is_err());
    }
}
