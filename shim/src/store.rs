//! Records, one JSON file per object, each write atomic (temp file, rename):
//! a crash leaves either the old record or the new one, never half of one.
//! A durable store (`open`) also fsyncs the file before the rename and the
//! folder after it, so the record survives a power loss; a volatile one
//! (`open_volatile`, for state under the runtime's state folder, which a
//! reboot empties together with the processes it describes, as berth-runc's
//! own state) does not pay for that. A record that cannot be read back is
//! reported with its path and skipped, never deleted.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {op}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("store {path}: unreadable record: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("store: {0:?} is not a valid record key")]
    BadKey(String),
}

pub struct JsonStore<T> {
    dir: PathBuf,
    durable: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonStore<T> {
    /// A store whose writes survive a power loss (fsyncs).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(dir.into(), true)
    }

    /// A store of state that a reboot makes moot (no fsyncs; each write is
    /// still atomic).
    pub fn open_volatile(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(dir.into(), false)
    }

    fn open_with(dir: PathBuf, durable: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            op: "create",
            source,
        })?;
        Ok(JsonStore {
            dir,
            durable,
            _t: PhantomData,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let ok = !key.is_empty()
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(StoreError::BadKey(key.to_owned()));
        }
        Ok(self.dir.join(format!("{key}.json")))
    }

    pub fn put(&self, key: &str, value: &T) -> Result<(), StoreError> {
        use std::io::Write;
        let path = self.path(key)?;
        let tmp = self.dir.join(format!(".{key}.tmp"));
        let io = |op, source| StoreError::Io {
            path: path.clone(),
            op,
            source,
        };
        let bytes =
            serde_json::to_vec(value).map_err(|e| io("encode", std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create temp", e))?;
        f.write_all(&bytes).map_err(|e| io("write", e))?;
        if self.durable {
            f.sync_all().map_err(|e| io("fsync", e))?;
        }
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
        self.sync_dir().map_err(|e| io("fsync folder", e))
    }

    fn sync_dir(&self) -> std::io::Result<()> {
        if self.durable {
            sync_dir(&self.dir)
        } else {
            Ok(())
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<T>, StoreError> {
        let path = self.path(key)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                path,
                op: "read",
                source,
            }),
        }
    }

    pub fn remove(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => self.sync_dir().map_err(|source| StoreError::Io {
                path,
                op: "fsync folder",
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                path,
                op: "remove",
                source,
            }),
        }
    }

    /// Every readable record, and the errors of the unreadable ones.
    pub fn load_all(&self) -> (Vec<(String, T)>, Vec<StoreError>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(source) => {
                return (
                    ok,
                    vec![StoreError::Io {
                        path: self.dir.clone(),
                        op: "list",
                        source,
                    }],
                );
            }
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if key.starts_with('.') {
                continue;
            }
            match self.get(key) {
                Ok(Some(v)) => ok.push((key.to_owned(), v)),
                Ok(None) => {}
                Err(err) => bad.push(err),
            }
        }
        ok.sort_by(|a, b| a.0.cmp(&b.0));
        (ok, bad)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove_and_reload() {
        // Durable and volatile stores keep the same records; only fsyncs differ.
        type Open = fn(&Path) -> Result<JsonStore<Vec<u32>>, StoreError>;
        let opens: [Open; 2] = [|d| JsonStore::open(d), |d| JsonStore::open_volatile(d)];
        for open in opens {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path()).unwrap();
            s.put("a1", &vec![1, 2]).unwrap();
            s.put("a1", &vec![3]).unwrap();
            s.put("b2", &vec![]).unwrap();
            assert_eq!(s.get("a1").unwrap(), Some(vec![3]));
            let s2 = open(dir.path()).unwrap();
            let (all, bad) = s2.load_all();
            assert!(bad.is_empty());
            assert_eq!(all, vec![("a1".into(), vec![3]), ("b2".into(), vec![])]);
            s2.remove("a1").unwrap();
            s2.remove("a1").unwrap();
            assert_eq!(s2.get("a1").unwrap(), None);
            // No temp file left behind.
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, vec![std::ffi::OsString::from("b2.json")]);
        }
    }

    #[test]
    fn corrupt_records_are_reported_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s: JsonStore<Vec<u32>> = JsonStore::open(dir.path()).unwrap();
        s.put("good", &vec![1]).unwrap();
        std::fs::write(dir.path().join("bad.json"), b"{half").unwrap();
        std::fs::write(dir.path().join(".x.tmp"), b"junk").unwrap();
        let (all, bad) = s.load_all();
        assert_eq!(all.len(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("bad.json"), "{}", bad[0]);
        assert!(
            dir.path().join("bad.json").exists(),
            "a corrupt record was deleted"
        );
    }

    #[test]
    fn keys_cannot_escape_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s: JsonStore<u32> = JsonStore::open(dir.path()).unwrap();
        for k in ["", "../x", "a/b", ".hidden"] {
            assert!(matches!(s.put(k, &1), Err(StoreError::BadKey(_))), "{k:?}");
        }
    }
}
