//! The image service: pull (resolve, platform, config, layers fetched in
//! parallel, each decompressed and unpacked while it downloads, snapshots
//! committed in layer order), list/inspect/remove and GC.
//!
//! Concurrency: one download per layer chain across concurrent pulls (a
//! keyed async lock: one downloads, the others wait and then find the
//! snapshot). Blocking work (file I/O, hashing, decompression, tar) runs
//! on the blocking pool, fed by a bounded channel from the network task.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::manifest::{self, Compression, Descriptor, MAX_CONFIG_BYTES, ManifestKind};
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::registry::auth::AuthConfig;
use crate::registry::{self, Registry, RegistryError, RegistryOptions};
use crate::store::content::{ContentError, ContentStore};
use crate::store::images::{ImageMeta, ImageRecord, MetaError};
use crate::store::leases::{LeaseError, Leases};
use crate::store::snapshot::{SnapshotError, SnapshotInfo, Snapshots};
use crate::unpack::{self, Limits, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {reference}")]
    Registry {
        reference: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("image {reference}")]
    Manifest {
        reference: String,
        #[source]
        source: manifest::ManifestError,
    },
    #[error("image {reference}: layer {digest}")]
    Unpack {
        reference: String,
        digest: Digest,
        #[source]
        source: Box<UnpackError>,
    },
    #[error(
        "image {reference}: layer {digest}: uncompressed digest is {actual}, config says {expected}"
    )]
    DiffId {
        reference: String,
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("image {reference}: blob {digest}")]
    Content {
        reference: String,
        digest: Digest,
        #[source]
        source: Box<ContentError>,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("image {image}: snapshot {chain} is gone (image removed and collected meanwhile)")]
    SnapshotGone { image: Digest, chain: Digest },
    #[error("image {0}: not found")]
    NotFound(String),
    #[error("image {reference}: layer {digest}: download interrupted too often")]
    Interrupted { reference: String, digest: Digest },
    #[error(transparent)]
    Archive(Box<crate::archive::ArchiveError>),
    #[error("background task failed")]
    Join(#[source] tokio::task::JoinError),
}

/// Per-layer download progress, for a display.
pub trait Progress: Send + Sync {
    fn layer(&self, digest: &Digest, done: u64, total: u64);
    fn layer_done(&self, digest: &Digest, cached: bool);
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub root: PathBuf,
    pub registry: RegistryOptions,
    pub platform: Platform,
    pub limits: Limits,
    /// Layers downloaded and unpacked at once.
    pub parallel: usize,
    /// syncfs each snapshot before it becomes visible (crash safety).
    pub sync: bool,
    /// Images reported as pinned (berthd's sandbox image), see
    /// [`ImageStore::is_pinned`].
    pub pinned: Vec<ImageRef>,
}

impl StoreOptions {
    pub fn new(root: &Path) -> StoreOptions {
        StoreOptions {
            root: root.to_path_buf(),
            registry: RegistryOptions::default(),
            platform: Platform::host(),
            limits: Limits::default(),
            parallel: 4,
            sync: true,
            pinned: vec![],
        }
    }
}

pub struct ImageStore {
    pub(crate) opts: StoreOptions,
    registry: Registry,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Snapshots,
    pub(crate) meta: ImageMeta,
    pub(crate) leases: Leases,
    inflight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Pulls, imports and new leases hold it shared, GC exclusively: blobs
    /// and snapshots of an install in progress have no record yet, and a
    /// lease must not name a snapshot GC is deleting. With `<root>/gc.lock`
    /// (flock) beside it for other processes on the store (`gc_read`).
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
}

/// Held while GC must wait (shared) or while GC runs (exclusive). The
/// file is released before the in-process lock.
pub(crate) struct GcGuard<'a> {
    _file: std::fs::File,
    _local: GcLocal<'a>,
}

/// The in-process half: one of the two guards of `gc_lock`.
pub(crate) struct GcLocal<'a> {
    _read: Option<tokio::sync::RwLockReadGuard<'a, ()>>,
    _write: Option<tokio::sync::RwLockWriteGuard<'a, ()>>,
}

struct LayerJob {
    reference: ImageRef,
    auth: Option<AuthConfig>,
    desc: Descriptor,
    compression: Compression,
    diff_id: Digest,
    chain: Digest,
    parent: Option<Digest>,
    /// The parent chain, topmost first (hard links into lower layers).
    lowers: Vec<Digest>,
    index: usize,
}

impl ImageStore {
    pub fn open(opts: StoreOptions) -> Result<Arc<ImageStore>, Error> {
        std::fs::create_dir_all(&opts.root).map_err(|source| SnapshotError::Io {
            path: opts.root.clone(),
            source,
        })?;
        let content = ContentStore::open(&opts.root).map_err(|source| Error::Content {
            reference: String::new(),
            digest: Digest::sha256_of(b""),
            source: Box::new(source),
        })?;
        Ok(Arc::new(ImageStore {
            registry: Registry::new(opts.registry.clone()),
            snapshots: Snapshots::open(&opts.root)?,
            meta: ImageMeta::open(&opts.root),
            leases: Leases::open(&opts.root)?,
            content,
            inflight: Mutex::default(),
            gc_lock: tokio::sync::RwLock::new(()),
            opts,
        }))
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
    /// Holds off GC (here and in other processes on the same store) while
    /// a pull, an import or a new lease writes what no record names yet.
    pub(crate) async fn gc_read(&self) -> Result<GcGuard<'_>, Error> {
        let local = GcLocal {
            _read: Some(self.gc_lock.read().await),
            _write: None,
        };
        self.gc_file_lock(local, rustix::fs::FlockOperation::LockShared)
            .await
    }

    /// GC's side: waits for every pull, import and lease in progress.
    pub(crate) async fn gc_write(&self) -> Result<GcGuard<'_>, Error> {
        let local = GcLocal {
            _read: None,
            _write: Some(self.gc_lock.write().await),
        };
        self.gc_file_lock(local, rustix::fs::FlockOperation::LockExclusive)
            .await
    }

    /// The cross-process half of the GC lock: `flock` on `<root>/gc.lock`,
    /// so the `berthd images` CLI pruning while berthd pulls (or the
    /// reverse) cannot delete blobs and snapshots of an install in
    /// progress. flock, not fcntl locks: per open file, so two stores in one
    /// process exclude each other too, and released by the kernel when a
    /// process dies.
    async fn gc_file_lock<'a>(
        &self,
        local: GcLocal<'a>,
        op: rustix::fs::FlockOperation,
    ) -> Result<GcGuard<'a>, Error> {
        let path = self.opts.root.join("gc.lock");
        let file = tokio::task::spawn_blocking(move || {
            let io = |source| SnapshotError::Io {
                path: path.clone(),
                source,
            };
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io)?;
            rustix::fs::flock(&f, op).map_err(|e| io(e.into()))?;
            Ok::<_, SnapshotError>(f)
        })
        .await
        .map_err(Error::Join)??;
        Ok(GcGuard {
            _file: file,
            _local: local,
        })
    }
    pub fn platform(&self) -> Platform {
        self.opts.platform.clone()
    }

    /// Pulls `r` for the configured platform and records it.
    pub async fn pull(
        self: &Arc<Self>,
        r: &ImageRef,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<ImageRecord, Error> {
        self.pull_with_auth(r, None, progress).await
    }

    /// Pulls with credentials for this request only (CRI `AuthConfig`),
    /// used instead of the configured ones.
    pub async fn pull_with_auth(
        self: &Arc<Self>,
        r: &ImageRef,
        auth: Option<AuthConfig>,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<ImageRecord, Error> {
        let _gc = self.gc_read().await?;
        let reg_err = |source| Error::Registry {
            reference: r.to_string(),
            source: Box::new(source),
        };
        let man_err = |source| Error::Manifest {
            reference: r.to_string(),
            source,
        };
        let top = self
            .registry
            .fetch_manifest(r, &r.object(), auth.as_ref())
            .await
            .map_err(reg_err)?;
        let top_digest = top.digest.clone();
        self.store_small(r, &top.digest, top.bytes.clone()).await?;
        let (manifest, manifest_digest) = match registry::parse_manifest(&top).map_err(man_err)? {
            ManifestKind::Image(m) => (m, top.digest.clone()),
            ManifestKind::Index(ix) => {
                let d = ix.select(&self.opts.platform).map_err(man_err)?.clone();
                let m = self
                    .registry
                    .fetch_manifest(r, &d.digest.to_string(), auth.as_ref())
                    .await
                    .map_err(reg_err)?;
                self.store_small(r, &m.digest, m.bytes.clone()).await?;
                match registry::parse_manifest(&m).map_err(man_err)? {
                    ManifestKind::Image(m) => (m, d.digest),
                    ManifestKind::Index(_) => {
                        return Err(man_err(manifest::ManifestError::UnsupportedMediaType(
                            "index nested in an index".into(),
                        )));
                    }
                }
            }
        };
        self.install(r, &manifest, manifest_digest, top_digest, auth, progress)
            .await
    }

    /// Makes the image `manifest` describes usable: config (from the store
    /// or the registry), layers unpacked into snapshots (from stored blobs
    /// or the registry), and its record. `top_digest` is what `r` resolved
    /// to (the index for multi-platform images).
    pub async fn install(
        self: &Arc<Self>,
        r: &ImageRef,
        manifest: &manifest::Manifest,
        manifest_digest: Digest,
        top_digest: Digest,
        auth: Option<AuthConfig>,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<ImageRecord, Error> {
        let man_err = |source| Error::Manifest {
            reference: r.to_string(),
            source,
        };
        let config_bytes = self.fetch_small(r, &manifest.config, auth.as_ref()).await?;
        let config = ImageConfig::parse(&config_bytes).map_err(man_err)?;
        if config.diff_ids.len() != manifest.layers.len() {
            return Err(man_err(manifest::ManifestError::LayerCount {
                config: config.diff_ids.len(),
                manifest: manifest.layers.len(),
            }));
        }
        let chains = config.chain_ids();
        info!(image = %r, manifest = %manifest_digest, layers = manifest.layers.len(), "pulling");

        // Layers in parallel; each commits after its parent (in order).
        let (tx, rx) = watch::channel(0usize);
        let tx = Arc::new(tx);
        let sem = Arc::new(Semaphore::new(self.opts.parallel.max(1)));
        // Cancelling the pull (dropping this future) stops its layer tasks,
        // which leaves partial ingests to resume and no temp snapshots.
        let mut handles = AbortOnDrop(Vec::new());
        for (i, desc) in manifest.layers.iter().enumerate() {
            let job = LayerJob {
                reference: r.clone(),
                auth: auth.clone(),
                desc: desc.clone(),
                compression: manifest.compression(i),
                diff_id: config.diff_ids[i].clone(),
                chain: chains[i].clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
                lowers: chains[..i].iter().rev().cloned().collect(),
                index: i,
            };
            let me = self.clone();
            let (tx, mut rx, sem, progress) =
                (tx.clone(), rx.clone(), sem.clone(), progress.clone());
            handles.0.push(tokio::spawn(async move {
                me.ensure_layer(job, &sem, &mut rx, &tx, progress).await
            }));
        }
        let mut first_err = None;
        for h in handles.0.iter_mut() {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err = Some(e);
                    break;
                }
                Err(e) => {
                    first_err = Some(Error::Join(e));
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        drop(handles);

        let size = manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
        let mut names = vec![];
        if r.tag().is_some() {
            let mut tagged = r.clone();
            if tagged.digest().is_some() {
                tagged = ImageRef::parse(&format!("{}:{}", r.name(), r.tag().unwrap_or("latest")))
                    .unwrap_or(tagged);
            }
            names.push(tagged.to_string());
        }
        let rec = ImageRecord {
            id: manifest.config.digest.clone(),
            names,
            repo_digests: vec![r.with_digest(&top_digest).to_string()],
            manifest: manifest_digest,
            size,
            layers: manifest.layers.clone(),
            chain_ids: chains,
            config,
        };
        let meta = self.meta.clone();
        let rec2 = rec.clone();
        tokio::task::spawn_blocking(move || meta.put(rec2))
            .await
            .map_err(Error::Join)??;
        info!(image = %r, id = %rec.id, "pulled");
        Ok(rec)
    }

    async fn ensure_layer(
        self: Arc<Self>,
        job: LayerJob,
        sem: &Semaphore,
        rx: &mut watch::Receiver<usize>,
        tx: &watch::Sender<usize>,
        progress: Option<Arc<dyn Progress>>,
    ) -> Result<(), Error> {
        let lock = {
            let mut m = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(job.chain.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let temp = if self.snapshots.exists(&job.chain) {
            if let Some(p) = &progress {
                p.layer_done(&job.desc.digest, true);
            }
            None
        } else {
            let _permit = sem
                .acquire()
                .await
                .map_err(|_| Error::NotFound("semaphore".into()))?;
            Some(self.fetch_unpack(&job, progress.as_deref()).await?)
        };
        // Commit strictly after the parent (a visible snapshot's chain exists).
        let _ = rx.wait_for(|n| *n >= job.index).await;
        if let Some((temp, mut applied)) = temp {
            if !applied.pending_links.is_empty()
                || (!applied.implicit_dirs.is_empty() && !job.lowers.is_empty())
            {
                // Links to files of lower layers, and directories the layer
                // implied: the lower layers exist now.
                let lowers: Vec<_> = job
                    .lowers
                    .iter()
                    .map(|c| self.snapshots.fs_dir(c))
                    .collect();
                let pending = std::mem::take(&mut applied.pending_links);
                let implicit = std::mem::take(&mut applied.implicit_dirs);
                let fsdir = temp.fs();
                tokio::task::spawn_blocking(move || {
                    unpack::lower::complete_from_lowers(&fsdir, &lowers, &pending, &implicit)
                })
                .await
                .map_err(Error::Join)?
                .map_err(|source| Error::Unpack {
                    reference: job.reference.to_string(),
                    digest: job.desc.digest.clone(),
                    source: Box::new(source),
                })?;
            }
            let info = SnapshotInfo {
                chain_id: job.chain.clone(),
                parent: job.parent.clone(),
                diff_id: applied.diff_id,
                size: applied.tar_bytes,
                entries: applied.entries,
            };
            let snaps = self.snapshots.clone();
            let sync = self.opts.sync;
            tokio::task::spawn_blocking(move || snaps.commit(temp, &info, sync))
                .await
                .map_err(Error::Join)??;
            if let Some(p) = &progress {
                p.layer_done(&job.desc.digest, false);
            }
        }
        tx.send_modify(|n| *n = (*n).max(job.index + 1));
        Ok(())
    }

    /// Downloads (resuming a partial ingest) and unpacks one layer into a
    /// temp snapshot, verifying the compressed digest and the diff_id.
    async fn fetch_unpack(
        &self,
        job: &LayerJob,
        progress: Option<&dyn Progress>,
    ) -> Result<(crate::store::snapshot::TempSnapshot, unpack::Applied), Error> {
        let reference = job.reference.to_string();
        let digest = job.desc.digest.clone();
        let content_err = |source| Error::Content {
            reference: reference.clone(),
            digest: digest.clone(),
            source: Box::new(source),
        };
        let temp = self.snapshots.prepare()?;
        let fsdir = temp.fs();
        let limits = self.opts.limits;
        let compression = job.compression;
        let blocking_unpack_err = |source| Error::Unpack {
            reference: reference.clone(),
            digest: digest.clone(),
            source: Box::new(source),
        };

        let applied = if self.content.size(&digest) == Some(job.desc.size) {
            // Blob already here (imported, or snapshot was collected).
            let path = self.content.blob_path(&digest);
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path).map_err(unpack::UnpackError::Tar)?;
                unpack::apply_layer(&fsdir, f, compression, limits)
            })
            .await
            .map_err(Error::Join)?
            .map_err(blocking_unpack_err)?
        } else {
            let cs = self.content.clone();
            let (d, size) = (digest.clone(), job.desc.size);
            let ingest = tokio::task::spawn_blocking(move || cs.ingest(&d, size))
                .await
                .map_err(Error::Join)?
                .map_err(content_err)?;
            let Some(ingest) = ingest else {
                // Committed meanwhile by another pull of another chain.
                return Box::pin(self.fetch_unpack(job, progress)).await;
            };
            let start = ingest.offset();
            let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(16);
            let worker = tokio::task::spawn_blocking(move || {
                let replay = ingest.replay()?;
                let mut reader = IngestReader {
                    replay: Some(replay),
                    rx: chunk_rx,
                    cur: Bytes::new(),
                    ingest: Some(ingest),
                    err: None,
                };
                let res = unpack::apply_layer(&fsdir, &mut reader, compression, limits);
                // Whatever the tar did, take in all the bytes so the digest
                // covers the whole blob, then verify and commit it.
                let drained = io::copy(&mut reader, &mut io::sink());
                if let Some(e) = reader.err.take() {
                    return Err(LayerFail::Content(e));
                }
                let ingest = reader.ingest.take().expect("ingest kept until commit");
                if !ingest.is_complete() {
                    // Cancelled or cut: keep the partial file for a resume.
                    return Err(LayerFail::Incomplete);
                }
                // The digest speaks first: a tampered blob usually also
                // breaks decompression, and that is not the news.
                ingest.commit().map_err(LayerFail::Content)?;
                let applied = res.map_err(LayerFail::Unpack)?;
                drained.map_err(|e| LayerFail::Unpack(UnpackError::Tar(e)))?;
                Ok(applied)
            });
            let fed = self.feed(job, start, chunk_tx, progress).await;
            let res = worker.await.map_err(Error::Join)?;
            match (res, fed) {
                (Ok(a), Ok(())) => a,
                (Err(LayerFail::Content(e)), _) => return Err(content_err(e)),
                (Err(LayerFail::Incomplete), Err(fe)) => return Err(fe),
                (Err(LayerFail::Incomplete), Ok(())) => {
                    return Err(Error::Interrupted { reference, digest });
                }
                (Err(LayerFail::Unpack(e)), Ok(())) => return Err(blocking_unpack_err(e)),
                (Err(LayerFail::Unpack(e)), Err(fe)) => {
                    debug!(error = %e, "unpack stopped after the download failed");
                    return Err(fe);
                }
                (Ok(_), Err(fe)) => return Err(fe),
            }
        };
        if applied.diff_id != job.diff_id {
            return Err(Error::DiffId {
                reference,
                digest,
                expected: job.diff_id.clone(),
                actual: applied.diff_id,
            });
        }
        Ok((temp, applied))
    }

    /// Streams the blob from `start` into the channel, resuming with Range
    /// after a broken connection.
    async fn feed(
        &self,
        job: &LayerJob,
        start: u64,
        tx: mpsc::Sender<Bytes>,
        progress: Option<&dyn Progress>,
    ) -> Result<(), Error> {
        let total = job.desc.size;
        let mut offset = start;
        let mut breaks = 0;
        let r = &job.reference;
        let digest = &job.desc.digest;
        while offset < total {
            let resp = self
                .registry
                .open_blob(r, digest, offset, job.auth.as_ref())
                .await
                .map_err(|source| Error::Registry {
                    reference: r.to_string(),
                    source: Box::new(source),
                })?;
            // A server that ignores Range starts at 0: skip what we have.
            let mut skip = offset - resp.offset;
            let mut stream = resp.response.bytes_stream();
            let mut broke = false;
            while let Some(chunk) = stream.next().await {
                let mut chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(layer = %digest, offset, error = %e, "blob stream broke");
                        broke = true;
                        break;
                    }
                };
                if skip > 0 {
                    let k = skip.min(chunk.len() as u64) as usize;
                    chunk = chunk.slice(k..);
                    skip -= k as u64;
                    if chunk.is_empty() {
                        continue;
                    }
                }
                let n = chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    // The unpacker stopped; its error is the one to report.
                    return Ok(());
                }
                offset += n;
                if let Some(p) = progress {
                    p.layer(digest, offset, total);
                }
                if offset > total {
                    return Ok(()); // the ingest refuses the excess
                }
            }
            if broke || offset < total {
                breaks += 1;
                if breaks > 5 {
                    return Err(Error::Interrupted {
                        reference: r.to_string(),
                        digest: digest.clone(),
                    });
                }
                continue;
            }
        }
        Ok(())
    }

    async fn store_small(&self, r: &ImageRef, d: &Digest, bytes: Bytes) -> Result<(), Error> {
        let cs = self.content.clone();
        let d2 = d.clone();
        tokio::task::spawn_blocking(move || cs.write_all(&d2, &bytes))
            .await
            .map_err(Error::Join)?
            .map_err(|source| Error::Content {
                reference: r.to_string(),
                digest: d.clone(),
                source: Box::new(source),
            })
    }

    /// A small blob (config): from the store, else fetched, verified, kept.
    async fn fetch_small(
        &self,
        r: &ImageRef,
        desc: &Descriptor,
        auth: Option<&AuthConfig>,
    ) -> Result<Bytes, Error> {
        if self.content.size(&desc.digest) == Some(desc.size) {
            let cs = self.content.clone();
            let d = desc.digest.clone();
            if let Ok(Ok(b)) =
                tokio::task::spawn_blocking(move || cs.read(&d, MAX_CONFIG_BYTES)).await
            {
                return Ok(Bytes::from(b));
            }
        }
        let reg_err = |source| Error::Registry {
            reference: r.to_string(),
            source: Box::new(source),
        };
        let resp = self
            .registry
            .open_blob(r, &desc.digest, 0, auth)
            .await
            .map_err(reg_err)?;
        let mut out = Vec::with_capacity(desc.size.min(MAX_CONFIG_BYTES) as usize);
        let mut s = resp.response.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.map_err(|source| {
                reg_err(RegistryError::Http {
                    method: reqwest::Method::GET,
                    url: resp.url.clone(),
                    source,
                })
            })?;
            if (out.len() + c.len()) as u64 > desc.size.min(MAX_CONFIG_BYTES) {
                return Err(reg_err(RegistryError::TooLarge {
                    url: resp.url.clone(),
                    what: "config",
                    limit: desc.size,
                }));
            }
            out.extend_from_slice(&c);
        }
        let actual = Digest::sha256_of(&out);
        if actual != desc.digest || out.len() as u64 != desc.size {
            return Err(reg_err(RegistryError::DigestMismatch {
                what: "config",
                expected: desc.digest.clone(),
                actual,
            }));
        }
        let b = Bytes::from(out);
        self.store_small(r, &desc.digest, b.clone()).await?;
        Ok(b)
    }

    pub fn list(&self) -> Result<Vec<ImageRecord>, Error> {
        Ok(self.meta.list()?)
    }

    pub fn get(&self, key: &str) -> Result<Option<ImageRecord>, Error> {
        Ok(self.meta.get(key)?)
    }

    /// Removes an image record; space comes back with `gc`.
    pub fn remove(&self, key: &str) -> Result<ImageRecord, Error> {
        self.meta
            .remove(key)?
            .ok_or_else(|| Error::NotFound(key.to_owned()))
    }

    /// Bytes used by blobs and snapshots, from recorded sizes (no walk).
    pub fn usage(&self) -> (u64, u64) {
        let blobs = self
            .content
            .list()
            .map(|l| l.iter().map(|(_, s)| *s).sum())
            .unwrap_or(0);
        let snaps = self.snapshots.list().iter().map(|s| s.size).sum();
        (blobs, snaps)
    }

    /// Snapshot directories of an image, top layer first (overlay
    /// `lowerdir` order).
    pub fn lowerdirs(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        rec.chain_ids
            .iter()
            .rev()
            .map(|c| self.snapshots.fs_dir(c))
            .collect()
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<Result<(), Error>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

enum LayerFail {
    Incomplete,
    Content(ContentError),
    Unpack(UnpackError),
}

impl From<ContentError> for LayerFail {
    fn from(e: ContentError) -> Self {
        LayerFail::Content(e)
    }
}

/// The blocking side of a layer download: replays the partial ingest,
/// then takes chunks from the network task, appending each to the ingest
/// (which hashes it) before handing it to the decompressor.
struct IngestReader<P> {
    replay: Option<P>,
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    ingest: Option<crate::store::content::Ingest>,
    err: Option<ContentError>,
}

impl<P: Read> Read for IngestReader<P> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = &mut self.replay {
            let n = r.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.replay = None;
        }
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    if let Some(ing) = &mut self.ingest
                        && let Err(e) = ing.write(&c)
                    {
                        let msg = e.to_string();
                        self.err = Some(e);
                        self.rx.close();
                        return Err(io::Error::other(msg));
                    }
                    self.cur = c;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}
