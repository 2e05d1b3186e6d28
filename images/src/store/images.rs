//! Image records: `<root>/images.json`, rewritten whole and atomically
//! (temp file, fsync, rename, fsync dir) under an flock, so a crash leaves
//! either the old or the new list. Node image counts are small (hundreds),
//! so one file beats a database here.
//!
//! A name (`repo:tag`) belongs to at most one image: putting a name on an
//! image takes it off any other. Repo digests (`repo@sha256:...`) stay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::manifest::Descriptor;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("image metadata {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image metadata {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest.
    pub id: Digest,
    /// `domain/path:tag` names.
    pub names: Vec<String>,
    /// `domain/path@digest` (manifest or index digest as pulled).
    pub repo_digests: Vec<String>,
    pub manifest: Digest,
    /// Compressed layers + config, as a registry would count it.
    pub size: u64,
    pub layers: Vec<Descriptor>,
    pub chain_ids: Vec<Digest>,
    pub config: ImageConfig,
}

#[derive(Debug, Clone)]
pub struct ImageMeta {
    path: PathBuf,
    lock: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    images: Vec<ImageRecord>,
}

impl ImageMeta {
    pub fn open(root: &Path) -> ImageMeta {
        ImageMeta {
            path: root.join("images.json"),
            lock: root.join("images.lock"),
        }
    }

    fn io(&self, p: &Path) -> impl FnOnce(io::Error) -> MetaError {
        let p = p.to_path_buf();
        move |source| MetaError::Io { path: p, source }
    }

    fn locked<T>(
        &self,
        f: impl FnOnce(&mut Vec<ImageRecord>) -> (bool, T),
    ) -> Result<T, MetaError> {
        let lf = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(self.io(&self.lock))?;
        rustix::fs::flock(&lf, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| self.io(&self.lock)(e.into()))?;
        let mut images = self.read()?;
        let (changed, out) = f(&mut images);
        if changed {
            self.write(&images)?;
        }
        Ok(out)
    }

    fn read(&self) -> Result<Vec<ImageRecord>, MetaError> {
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice::<FileV1>(&b)
                .map(|f| f.images)
                .map_err(|source| MetaError::Corrupt {
                    path: self.path.clone(),
                    source,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }

    fn write(&self, images: &[ImageRecord]) -> Result<(), MetaError> {
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&FileV1 {
            version: 1,
            images: images.to_vec(),
        })
        .map_err(|e| self.io(&tmp)(e.into()))?;
        let mut f = File::create(&tmp).map_err(self.io(&tmp))?;
        f.write_all(&body).map_err(self.io(&tmp))?;
        f.sync_all().map_err(self.io(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(self.io(&self.path))?;
        if let Some(d) = self.path.parent() {
            File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(self.io(d))?;
        }
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, MetaError> {
        self.read()
    }

    /// Adds or updates `rec` (by id), moving its names off other images.
    pub fn put(&self, rec: ImageRecord) -> Result<(), MetaError> {
        self.locked(|images| {
            for other in images.iter_mut().filter(|i| i.id != rec.id) {
                other.names.retain(|n| !rec.names.contains(n));
            }
            match images.iter_mut().find(|i| i.id == rec.id) {
                Some(existing) => {
                    for n in &rec.names {
                        if !existing.names.contains(n) {
                            existing.names.push(n.clone());
                        }
                    }
                    for d in &rec.repo_digests {
                        if !existing.repo_digests.contains(d) {
                            existing.repo_digests.push(d.clone());
                        }
                    }
                }
                None => images.push(rec),
            }
            (true, ())
        })
    }

    /// Finds an image by name, repo digest, id or unique id prefix.
    pub fn get(&self, key: &str) -> Result<Option<ImageRecord>, MetaError> {
        Ok(find(&self.read()?, key).cloned())
    }

    /// Removes the image `key` names; returns it.
    pub fn remove(&self, key: &str) -> Result<Option<ImageRecord>, MetaError> {
        self.locked(|images| {
            let Some(rec) = find(images, key).cloned() else {
                return (false, None);
            };
            images.retain(|i| i.id != rec.id);
            (true, Some(rec))
        })
    }
}

fn find<'a>(images: &'a [ImageRecord], key: &str) -> Option<&'a ImageRecord> {
    let normalised = crate::reference::ImageRef::parse(key)
        .ok()
        .map(|r| r.to_string());
    images
        .iter()
        .find(|i| {
            i.id.to_string() == key
                || i.names
                    .iter()
                    .any(|n| Some(n) == normalised.as_ref() || n == key)
                || i.repo_digests
                    .iter()
                    .any(|n| Some(n) == normalised.as_ref() || n == key)
        })
        .or_else(|| {
            let hex = key.strip_prefix("sha256:").unwrap_or(key);
            if hex.len() < 4 {
                return None;
            }
            let mut m = images.iter().filter(|i| i.id.hex().starts_with(hex));
            let first = m.next()?;
            m.next().is_none().then_some(first)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn rec(id: char, names: &[&str]) -> ImageRecord {
        let d: Digest = format!("sha256:{}", id.to_string().repeat(64))
            .parse()
            .unwrap();
        ImageRecord {
            id: d.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            manifest: d,
            size: 1,
            layers: vec![],
            chain_ids: vec![],
            config: ImageConfig {
                platform: Platform::host(),
                run: Default::default(),
                diff_ids: vec![],
                created: None,
            },
        }
    }

    #[test]
    fn tags_move_between_images_and_records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let m = ImageMeta::open(dir.path());
        m.put(rec(
            'a',
            &[
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:1",
            ],
        ))
        .unwrap();
        m.put(rec('b', &["docker.io/library/busybox:latest"]))
            .unwrap();
        let m = ImageMeta::open(dir.path());
        let a = m
            .get(&format!("sha256:{}", "a".repeat(64)))
            .unwrap()
            .unwrap();
        assert_eq!(a.names, vec!["docker.io/library/busybox:1"]);
        // Short names are normalised; id prefixes work when unique.
        assert_eq!(m.get("busybox").unwrap().unwrap().id.hex(), "b".repeat(64));
        assert_eq!(m.get("aaaa").unwrap().unwrap().id.hex(), "a".repeat(64));
        assert!(m.get("zzzz").unwrap().is_none());
        assert!(m.remove("busybox:1").unwrap().is_some());
        assert_eq!(m.list().unwrap().len(), 1);
        // A torn write never happened: the file parses.
        std::fs::write(dir.path().join("images.json"), b"{not json").unwrap();
        assert!(matches!(m.list(), Err(MetaError::Corrupt { .. })));
    }
}
