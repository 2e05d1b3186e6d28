//! What the store may delete and what it must keep: garbage collection,
//! leases and pins.
//!
//! GC keeps every blob and snapshot an image record references, and every
//! snapshot a lease names. A lease is how a user of an image (berthd's
//! container manager: one lease per container, holder = its id) keeps the
//! layers of a rootfs it mounted after the image is removed; the lease is
//! durable (`store::leases`), so a berthd restart does not forget it.
//! Leases keep snapshots only, not blobs: a running container needs its
//! unpacked layers, never the compressed ones.
//!
//! Pins (`StoreOptions::pinned`, berthd's `sandbox_image`) are what
//! containerd calls pinned images: reported as such to the kubelet, whose
//! image GC then never asks to remove them. An explicit RemoveImage still
//! removes a pinned image, as in containerd; this GC never removes a
//! record, so while the pinned image's record exists its snapshots and
//! blobs stay, and after an explicit removal the sandboxes that use it keep
//! theirs through their leases.

use std::collections::HashSet;
use std::sync::Arc;

use crate::digest::Digest;
use crate::pull::{Error, ImageStore};
use crate::store::content::ContentError;
use crate::store::images::ImageRecord;
use crate::store::leases::Lease;

impl ImageStore {
    /// Deletes blobs and snapshots that no image record and no lease
    /// references. Safe to run after a crash: anything referenced is kept;
    /// a snapshot is renamed aside before it is deleted. Returns bytes
    /// freed.
    pub async fn gc(self: &Arc<Self>) -> Result<u64, Error> {
        let _gc = self.gc_write().await?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.gc_locked())
            .await
            .map_err(Error::Join)?
    }

    fn gc_locked(&self) -> Result<u64, Error> {
        let images = self.meta.list()?;
        // Read before anything is deleted: an unreadable lease stops GC.
        let leases = self.leases.list()?;
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_snaps: HashSet<Digest> = HashSet::new();
        for i in &images {
            keep_blobs.insert(i.id.clone());
            keep_blobs.insert(i.manifest.clone());
            for rd in &i.repo_digests {
                if let Some((_, d)) = rd.rsplit_once('@')
                    && let Ok(d) = d.parse()
                {
                    keep_blobs.insert(d);
                }
            }
            keep_blobs.extend(i.layers.iter().map(|l| l.digest.clone()));
            keep_snaps.extend(i.chain_ids.iter().cloned());
        }
        for l in &leases {
            keep_snaps.extend(l.chain_ids.iter().cloned());
        }
        let mut freed = 0;
        for (d, size) in self.content.list().map_err(content_err)? {
            if !keep_blobs.contains(&d) {
                freed += size;
                let _ = self.content.remove(&d);
            }
        }
        for s in self.snapshots.list() {
            if !keep_snaps.contains(&s.chain_id) {
                freed += s.size;
                self.snapshots.remove(&s.chain_id)?;
            }
        }
        Ok(freed)
    }

    /// Keeps the snapshots of `rec` for `holder` until [`Self::release`],
    /// across image removal, GC and restarts. Leasing again replaces the
    /// holder's lease. Fails with [`Error::SnapshotGone`] when a snapshot
    /// of `rec` is no longer there (the image was removed and collected
    /// since `rec` was read): pull it again.
    pub async fn lease(self: &Arc<Self>, holder: &str, rec: &ImageRecord) -> Result<Lease, Error> {
        // Shared: GC cannot delete a snapshot between the check and the write.
        let _gc = self.gc_read().await?;
        let lease = Lease {
            holder: holder.to_owned(),
            image: rec.id.clone(),
            chain_ids: rec.chain_ids.clone(),
        };
        let me = self.clone();
        let l = lease.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(c) = l.chain_ids.iter().find(|c| !me.snapshots.exists(c)) {
                return Err(Error::SnapshotGone {
                    image: l.image.clone(),
                    chain: c.clone(),
                });
            }
            me.leases.put(&l).map_err(Error::from)
        })
        .await
        .map_err(Error::Join)??;
        Ok(lease)
    }

    /// Drops `holder`'s lease; the next GC may collect what only it kept.
    /// Returns false when `holder` had no lease (releasing is idempotent).
    pub async fn release(self: &Arc<Self>, holder: &str) -> Result<bool, Error> {
        let me = self.clone();
        let holder = holder.to_owned();
        tokio::task::spawn_blocking(move || me.leases.remove(&holder))
            .await
            .map_err(Error::Join)?
            .map_err(Error::from)
    }

    /// Every lease, sorted by holder (blocking: small file reads).
    pub fn leases(&self) -> Result<Vec<Lease>, Error> {
        Ok(self.leases.list()?)
    }

    /// True when one of `rec`'s names or repo digests is a pinned reference.
    pub fn is_pinned(&self, rec: &ImageRecord) -> bool {
        self.opts.pinned.iter().any(|p| {
            let p = p.to_string();
            rec.names.contains(&p) || rec.repo_digests.contains(&p)
        })
    }

    /// Inodes used, from recorded data (no walk): the tar entries of every
    /// snapshot plus one per blob. Hard links and whiteouts make it a
    /// slight overcount; snapshots unpacked before entries were recorded
    /// count 0.
    pub fn inodes(&self) -> u64 {
        let blobs = self.content.list().map(|l| l.len() as u64).unwrap_or(0);
        let snaps: u64 = self.snapshots.list().iter().map(|s| s.entries).sum();
        blobs + snaps
    }
}

fn content_err(source: ContentError) -> Error {
    Error::Content {
        reference: String::new(),
        digest: Digest::sha256_of(b""),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageConfig;
    use crate::manifest::Descriptor;
    use crate::platform::Platform;
    use crate::pull::StoreOptions;
    use crate::reference::ImageRef;
    use crate::store::images::ImageMeta;
    use crate::store::snapshot::SnapshotInfo;

    fn store(root: &std::path::Path, pinned: &[&str]) -> Arc<ImageStore> {
        let mut opts = StoreOptions::new(root);
        opts.sync = false;
        opts.pinned = pinned.iter().map(|p| ImageRef::parse(p).unwrap()).collect();
        ImageStore::open(opts).unwrap()
    }

    /// A snapshot of a one-file layer on top of `parent`; returns its
    /// chain id.
    fn snapshot(s: &ImageStore, parent: Option<&Digest>, layer: &str) -> Digest {
        let diff_id = Digest::sha256_of(layer.as_bytes());
        let chain = match parent {
            None => diff_id.clone(),
            Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
        };
        let t = s.snapshots.prepare().unwrap();
        std::fs::write(t.fs().join(layer), layer).unwrap();
        let info = SnapshotInfo {
            chain_id: chain.clone(),
            parent: parent.cloned(),
            diff_id,
            size: 1000,
            entries: 1,
        };
        s.snapshots.commit(t, &info, false).unwrap();
        chain
    }

    /// An image of `layers` (names of one-file layers), recorded under
    /// `name`, with its config, manifest and layer blobs in the store.
    fn image(s: &ImageStore, name: &str, layers: &[&str]) -> ImageRecord {
        let mut chains: Vec<Digest> = vec![];
        let mut descs = vec![];
        for l in layers {
            chains.push(snapshot(s, chains.last(), l));
            let blob = format!("blob of {l}");
            let d = Digest::sha256_of(blob.as_bytes());
            s.content.write_all(&d, blob.as_bytes()).unwrap();
            descs.push(Descriptor {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest: d,
                size: blob.len() as u64,
                platform: None,
                annotations: Default::default(),
                urls: vec![],
            });
        }
        let config = format!("config of {name}");
        let id = Digest::sha256_of(config.as_bytes());
        s.content.write_all(&id, config.as_bytes()).unwrap();
        let man = format!("manifest of {name}");
        let manifest = Digest::sha256_of(man.as_bytes());
        s.content.write_all(&manifest, man.as_bytes()).unwrap();
        let r = ImageRef::parse(name).unwrap();
        let rec = ImageRecord {
            id,
            names: vec![r.to_string()],
            repo_digests: vec![r.with_digest(&manifest).to_string()],
            manifest,
            size: 1,
            layers: descs,
            chain_ids: chains,
            config: ImageConfig {
                platform: Platform::host(),
                run: Default::default(),
                diff_ids: vec![],
                created: None,
            },
        };
        ImageMeta::open(&s.opts.root).put(rec.clone()).unwrap();
        rec
    }

    fn snaps(s: &ImageStore) -> HashSet<Digest> {
        s.snapshots.list().into_iter().map(|i| i.chain_id).collect()
    }

    #[tokio::test]
    async fn gc_keeps_shared_layers_and_what_a_lease_names_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), &[]);
        let a = image(&s, "a:1", &["base", "a-top"]);
        let b = image(&s, "b:1", &["base", "b-mid", "b-top"]);
        assert_eq!(a.chain_ids[0], b.chain_ids[0], "shared base chain");
        assert_eq!(s.gc().await.unwrap(), 0, "nothing unreferenced");

        // A container runs on b, then b is removed: its layers stay.
        let lease = s.lease("container-1", &b).await.unwrap();
        assert_eq!(lease.chain_ids, b.chain_ids);
        s.remove("b:1").unwrap();
        let freed = s.gc().await.unwrap();
        assert!(freed > 0, "b's blobs are collected");
        assert!(b.chain_ids.iter().all(|c| s.snapshots.exists(c)));
        assert!(s.content.size(&b.id).is_none());
        assert!(s.content.size(&b.layers[2].digest).is_none());
        for d in [&a.id, &a.manifest, &a.layers[0].digest, &a.layers[1].digest] {
            assert!(s.content.size(d).is_some(), "a's blob {d} kept");
        }

        // Leases are durable: a restarted store still keeps them.
        drop(s);
        let s = store(dir.path(), &[]);
        s.gc().await.unwrap();
        assert!(b.chain_ids.iter().all(|c| s.snapshots.exists(c)));
        assert_eq!(s.leases().unwrap(), vec![lease]);

        assert!(s.release("container-1").await.unwrap());
        assert!(!s.release("container-1").await.unwrap(), "idempotent");
        s.gc().await.unwrap();
        let left = snaps(&s);
        let want: HashSet<Digest> = a.chain_ids.iter().cloned().collect();
        assert_eq!(left, want, "b's own layers go; the base a shares stays");
        // After release and GC, a's chain is intact and usable.
        assert!(s.lowerdirs(&a).iter().all(|d| d.is_dir()));
    }

    #[tokio::test]
    async fn leasing_a_collected_image_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), &[]);
        let a = image(&s, "a:1", &["base"]);
        s.remove("a:1").unwrap();
        s.gc().await.unwrap();
        let err = s.lease("container-2", &a).await.unwrap_err();
        assert!(matches!(err, Error::SnapshotGone { .. }), "{err:?}");
        assert!(err.to_string().contains(&a.id.to_string()), "{err}");
        assert!(s.leases().unwrap().is_empty());
    }

    #[tokio::test]
    async fn two_holders_of_one_image_keep_it_until_both_release() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), &[]);
        let a = image(&s, "a:1", &["base", "top"]);
        s.lease("c1", &a).await.unwrap();
        s.lease("c2", &a).await.unwrap();
        s.remove(&a.id.to_string()).unwrap();
        s.release("c1").await.unwrap();
        s.gc().await.unwrap();
        assert_eq!(snaps(&s).len(), 2);
        s.release("c2").await.unwrap();
        s.gc().await.unwrap();
        assert!(snaps(&s).is_empty());
    }

    #[tokio::test]
    async fn the_pinned_image_is_reported_and_kept_while_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), &["registry.k8s.io/pause:3.10"]);
        let pause = image(&s, "registry.k8s.io/pause:3.10", &["pause"]);
        let other = image(&s, "registry.k8s.io/pause:3.9", &["pause", "other"]);
        assert!(s.is_pinned(&pause));
        assert!(!s.is_pinned(&other));
        s.remove("registry.k8s.io/pause:3.9").unwrap();
        s.gc().await.unwrap();
        assert!(pause.chain_ids.iter().all(|c| s.snapshots.exists(c)));
        assert_eq!(s.inodes(), 1 + 3, "one snapshot entry, three blobs");
        // An explicit removal still removes it, as in containerd.
        s.remove("registry.k8s.io/pause:3.10").unwrap();
        s.gc().await.unwrap();
        assert!(snaps(&s).is_empty());
        assert_eq!(s.inodes(), 0);
    }
}
