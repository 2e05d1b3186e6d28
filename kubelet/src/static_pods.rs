//! The static pod source: the `staticPodPath` folder, checked every second
//! for added, changed and removed files (by size, mtime and inode) and read
//! again in full every fileCheckFrequency. Each file holds one pod; a bad
//! one is reported by name once per change and skipped, the others run.
//! Hidden files (editors' swap files) are ignored, as upstream does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::manifest::parse_manifest;
use crate::pod::Pod;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

fn signature(m: &std::fs::Metadata) -> Signature {
    use std::os::unix::fs::MetadataExt;
    Signature {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ino: m.ino(),
    }
}

/// The folder's state, kept between checks.
pub struct StaticPods {
    dir: PathBuf,
    node: String,
    files: HashMap<PathBuf, (Signature, Option<Arc<Pod>>)>,
    missing_reported: bool,
}

impl StaticPods {
    pub fn new(dir: PathBuf, node: String) -> Self {
        StaticPods {
            dir,
            node,
            files: HashMap::new(),
            missing_reported: false,
        }
    }

    /// Check the folder (`full`: read every file again). Returns the pods,
    /// one per good file, sorted by file name; a name used by two files
    /// runs from the first only.
    pub fn check(&mut self, full: bool) -> Vec<Arc<Pod>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                self.missing_reported = false;
                rd.flatten().collect::<Vec<_>>()
            }
            Err(e) => {
                if !self.missing_reported {
                    tracing::warn!(path = %self.dir.display(), "static pod folder unreadable, no static pods: {e}");
                    self.missing_reported = true;
                }
                Vec::new()
            }
        };
        let mut now: HashMap<PathBuf, (Signature, Option<Arc<Pod>>)> = HashMap::new();
        for e in entries {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Follow symlinks (ConfigMap-style ..data swaps).
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let sig = signature(&meta);
            if !full && let Some((old, pod)) = self.files.get(&path).filter(|(s, _)| *s == sig) {
                now.insert(path, (*old, pod.clone()));
                continue;
            }
            let pod = self.read(&path);
            now.insert(path, (sig, pod));
        }
        for (path, (_, pod)) in &self.files {
            if !now.contains_key(path) && pod.is_some() {
                tracing::info!(path = %path.display(), "static pod manifest removed");
            }
        }
        self.files = now;
        let mut by_file: Vec<(&PathBuf, &Arc<Pod>)> = self
            .files
            .iter()
            .filter_map(|(p, (_, pod))| pod.as_ref().map(|pod| (p, pod)))
            .collect();
        by_file.sort_by(|a, b| a.0.cmp(b.0));
        let mut names: BTreeMap<String, &PathBuf> = BTreeMap::new();
        let mut out = Vec::new();
        for (path, pod) in by_file {
            if let Some(first) = names.get(&pod.full_name()) {
                tracing::error!(path = %path.display(), "pod manifest {}: pod {} is already defined by {}, skipped", path.display(), pod.full_name(), first.display());
                continue;
            }
            names.insert(pod.full_name(), path);
            out.push(pod.clone());
        }
        out
    }

    fn read(&self, path: &Path) -> Option<Arc<Pod>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("pod manifest {}: cannot read, skipped: {e}", path.display());
                return None;
            }
        };
        match parse_manifest(path, &text, &self.node) {
            Ok((pod, warnings)) => {
                for w in warnings {
                    tracing::warn!("{w}");
                }
                tracing::debug!(path = %path.display(), pod = %pod.full_name(), uid = %pod.uid, "static pod read");
                Some(Arc::new(pod))
            }
            Err(e) => {
                tracing::error!("{e}; skipped");
                None
            }
        }
    }
}

/// Watch `dir`: send the full set of static pods at start and whenever it
/// changes. Stops when the receiver is gone.
pub async fn watch(dir: PathBuf, node: String, resync: Duration, tx: mpsc::Sender<Vec<Arc<Pod>>>) {
    let mut src = StaticPods::new(dir, node);
    let mut last: Option<Vec<(String, String)>> = None;
    let mut last_full = Instant::now();
    let mut full = true;
    loop {
        let pods = tokio::task::block_in_place(|| src.check(full));
        if full {
            last_full = Instant::now();
        }
        let key: Vec<(String, String)> = pods
            .iter()
            .map(|p| (p.uid.clone(), p.full_name()))
            .collect();
        if last.as_ref() != Some(&key) {
            if tx.send(pods).await.is_err() {
                return;
            }
            last = Some(key);
        }
        tokio::time::sleep(Duration::from_secs(1).min(resync)).await;
        full = last_full.elapsed() >= resync;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: web, image: img}]}\n";

    #[test]
    fn adds_changes_removes_and_skips_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let mut s = StaticPods::new(d.path().to_owned(), "n1".into());
        assert!(s.check(true).is_empty());
        std::fs::write(d.path().join("web.yaml"), POD).unwrap();
        std::fs::write(
            d.path().join("bad.yaml"),
            "kind: Pod\nmetadata: {name: bad}\nspec: {containers: []}\n",
        )
        .unwrap();
        std::fs::write(d.path().join(".web.yaml.swp"), "junk").unwrap();
        let pods = s.check(false);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].name, "web-n1");
        let uid = pods[0].uid.clone();
        // Unchanged: same pod, same UID.
        assert_eq!(s.check(false)[0].uid, uid);
        assert_eq!(s.check(true)[0].uid, uid);
        // Changed: a new UID.
        std::fs::write(d.path().join("web.yaml"), POD.replace("img", "img2")).unwrap();
        let pods = s.check(false);
        assert_ne!(pods[0].uid, uid);
        // A second file with the same pod name: the first file wins.
        std::fs::write(d.path().join("web2.yaml"), POD).unwrap();
        let pods = s.check(false);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].containers[0].image, "img2");
        std::fs::remove_file(d.path().join("web.yaml")).unwrap();
        std::fs::remove_file(d.path().join("web2.yaml")).unwrap();
        assert!(s.check(false).is_empty());
    }

    #[test]
    fn a_missing_folder_is_no_pods() {
        let mut s = StaticPods::new("/nonexistent/berth-manifests".into(), "n1".into());
        assert!(s.check(true).is_empty());
    }
}
