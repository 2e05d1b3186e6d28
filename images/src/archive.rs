//! OCI image layout archives (`oci-archive`: a tar of `oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`), for air-gapped nodes.
//!
//! Import streams each blob into the content store (verified like a
//! download: an archive is outside input), then installs every image the
//! index names, for the store's platform. Export writes one image's
//! manifest, config and layers from the content store. `docker save` from
//! Docker 25+ is an OCI layout and imports as such. The legacy `docker
//! save` format (and skopeo's `docker-archive`) has no index: a
//! `manifest.json` names each image's config and layer files by path. Its
//! files carry no digests, so each is hashed as it is stored and the image
//! gets a manifest written here; the layers are then checked against the
//! config's diff_ids as they are unpacked, like any pulled layer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::Digest;
use crate::manifest::{self, MAX_MANIFEST_BYTES, ManifestKind, media};
use crate::pull::{Error, ImageStore};
use crate::reference::ImageRef;
use crate::store::images::ImageRecord;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive {path}: entry {entry:?}")]
    Blob {
        path: PathBuf,
        entry: String,
        #[source]
        source: Box<crate::store::content::ContentError>,
    },
    #[error("archive {path}: neither index.json (OCI layout) nor manifest.json (docker save)")]
    NoIndex { path: PathBuf },
    #[error("archive {path}: manifest.json")]
    LegacyManifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive {path}: manifest.json names {entry:?}, which the archive does not hold")]
    MissingEntry { path: PathBuf, entry: String },
    #[error("archive {path}: {what} {given:?} is not an image name")]
    BadName {
        path: PathBuf,
        what: &'static str,
        given: String,
    },
    #[error("archive {path}: index entry {digest} has no usable name; pass one")]
    NoName { path: PathBuf, digest: Digest },
    #[error("archive {path}: blob {digest} is missing")]
    Missing { path: PathBuf, digest: Digest },
    #[error("archive {path}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: manifest::ManifestError,
    },
}

impl ImageStore {
    /// Imports an OCI archive; `name` names an image whose index entry has
    /// no full reference annotation (or only a tag).
    pub async fn import_oci_archive(
        self: &Arc<Self>,
        path: &Path,
        name: Option<&ImageRef>,
    ) -> Result<Vec<ImageRecord>, Error> {
        let _gc = self.gc_read().await?;
        let cs = self.content().clone();
        let p = path.to_path_buf();
        let index = match tokio::task::spawn_blocking(move || read_blobs(&p, &cs))
            .await
            .map_err(Error::Join)?
            .map_err(|e| Error::Archive(Box::new(e)))?
        {
            Found::Index(i) => i,
            Found::Legacy(l) => return self.import_legacy(path, &l, name).await,
        };
        let arch_err = |source| {
            Error::Archive(Box::new(ArchiveError::Manifest {
                path: path.to_path_buf(),
                source,
            }))
        };
        let ManifestKind::Index(ix) = manifest::parse("", &index).map_err(arch_err)? else {
            return Err(arch_err(manifest::ManifestError::UnsupportedMediaType(
                "index.json is not an index".into(),
            )));
        };
        let mut out = Vec::new();
        for d in &ix.manifests {
            let r = image_name(d, name).ok_or_else(|| {
                Error::Archive(Box::new(ArchiveError::NoName {
                    path: path.to_path_buf(),
                    digest: d.digest.clone(),
                }))
            })?;
            let m = self.stored_manifest(path, &d.digest)?;
            let (man, man_digest) = match m {
                ManifestKind::Image(m) => (m, d.digest.clone()),
                ManifestKind::Index(inner) => {
                    let sel = inner.select(&self.platform()).map_err(arch_err)?.clone();
                    match self.stored_manifest(path, &sel.digest)? {
                        ManifestKind::Image(m) => (m, sel.digest),
                        ManifestKind::Index(_) => {
                            return Err(arch_err(manifest::ManifestError::UnsupportedMediaType(
                                "index nested in an index".into(),
                            )));
                        }
                    }
                }
            };
            out.push(
                self.install(&r, &man, man_digest, d.digest.clone(), None, None)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Installs the images a legacy `docker save` manifest.json names,
    /// their files already in the content store.
    async fn import_legacy(
        self: &Arc<Self>,
        path: &Path,
        l: &Legacy,
        name: Option<&ImageRef>,
    ) -> Result<Vec<ImageRecord>, Error> {
        let err = |e: ArchiveError| Error::Archive(Box::new(e));
        let entries: Vec<LegacyEntry> = serde_json::from_slice(&l.manifest).map_err(|source| {
            err(ArchiveError::LegacyManifest {
                path: path.to_path_buf(),
                source,
            })
        })?;
        let mut out = Vec::new();
        for e in &entries {
            let blob = |entry: &str| {
                l.file(entry).ok_or_else(|| {
                    err(ArchiveError::MissingEntry {
                        path: path.to_path_buf(),
                        entry: entry.to_owned(),
                    })
                })
            };
            let (config, config_size) = blob(&e.config)?;
            let mut layers = Vec::with_capacity(e.layers.len());
            for entry in &e.layers {
                let (d, size) = blob(entry)?;
                let media_type = sniff_layer(&self.content().blob_path(&d));
                layers.push(serde_json::json!({
                    "mediaType": media_type, "digest": d.to_string(), "size": size,
                }));
            }
            let man = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media::OCI_MANIFEST,
                "config": {
                    "mediaType": media::OCI_CONFIG,
                    "digest": config.to_string(),
                    "size": config_size,
                },
                "layers": layers,
            })
            .to_string();
            let man_digest = Digest::sha256_of(man.as_bytes());
            self.content()
                .write_all(&man_digest, man.as_bytes())
                .map_err(|source| {
                    err(ArchiveError::Blob {
                        path: path.to_path_buf(),
                        entry: "manifest.json".into(),
                        source: Box::new(source),
                    })
                })?;
            let m = match manifest::parse("", man.as_bytes()) {
                Ok(ManifestKind::Image(m)) => m,
                Ok(ManifestKind::Index(_)) => unreachable!("written as an image manifest above"),
                Err(source) => {
                    return Err(err(ArchiveError::Manifest {
                        path: path.to_path_buf(),
                        source,
                    }));
                }
            };
            let mut names = Vec::new();
            for t in e.repo_tags.iter().flatten() {
                names.push(ImageRef::parse(t).map_err(|_| {
                    err(ArchiveError::BadName {
                        path: path.to_path_buf(),
                        what: "RepoTags entry",
                        given: t.clone(),
                    })
                })?);
            }
            if names.is_empty() {
                names.push(name.cloned().ok_or_else(|| {
                    err(ArchiveError::NoName {
                        path: path.to_path_buf(),
                        digest: config.clone(),
                    })
                })?);
            }
            // One record carrying every name: the last install has them all.
            let mut last = None;
            for r in &names {
                last = Some(
                    self.install(r, &m, man_digest.clone(), man_digest.clone(), None, None)
                        .await?,
                );
            }
            out.extend(last);
        }
        Ok(out)
    }

    fn stored_manifest(&self, path: &Path, d: &Digest) -> Result<ManifestKind, Error> {
        let bytes = self.content().read(d, MAX_MANIFEST_BYTES).map_err(|_| {
            Error::Archive(Box::new(ArchiveError::Missing {
                path: path.to_path_buf(),
                digest: d.clone(),
            }))
        })?;
        manifest::parse("", &bytes).map_err(|source| {
            Error::Archive(Box::new(ArchiveError::Manifest {
                path: path.to_path_buf(),
                source,
            }))
        })
    }

    /// Writes `rec` as an OCI archive at `path`, named `name`.
    pub async fn export_oci_archive(
        self: &Arc<Self>,
        rec: &ImageRecord,
        name: &ImageRef,
        path: &Path,
    ) -> Result<(), Error> {
        let cs = self.content().clone();
        let rec = rec.clone();
        let name = name.clone();
        let p = path.to_path_buf();
        tokio::task::spawn_blocking(move || write_archive(&p, &cs, &rec, &name))
            .await
            .map_err(Error::Join)?
            .map_err(|e| Error::Archive(Box::new(e)))
    }
}

fn image_name(d: &manifest::Descriptor, given: Option<&ImageRef>) -> Option<ImageRef> {
    if let Some(n) = d.annotations.get(CONTAINERD_NAME)
        && let Ok(r) = ImageRef::parse(n)
    {
        return Some(r);
    }
    let tag = d.annotations.get(REF_NAME);
    if let Some(t) = tag
        && t.contains('/')
        && let Ok(r) = ImageRef::parse(t)
    {
        return Some(r);
    }
    let g = given?;
    match tag {
        Some(t) if g.tag().is_none() && g.digest().is_none() => {
            ImageRef::parse(&format!("{}:{t}", g.name())).ok()
        }
        _ => Some(g.clone()),
    }
}

/// What an archive held besides its blobs.
enum Found {
    /// An OCI layout's index.json.
    Index(Vec<u8>),
    /// A legacy `docker save`: manifest.json, with its other files stored.
    Legacy(Legacy),
}

struct Legacy {
    manifest: Vec<u8>,
    /// Archive path -> the stored blob with its bytes.
    files: HashMap<String, (Digest, u64)>,
    /// Archive path -> the archive path a symlink entry points at.
    links: HashMap<String, String>,
}

impl Legacy {
    /// The blob an archive path names, following symlink entries (skopeo
    /// links `<id>/layer.tar` to `<digest>.tar`) within the archive.
    fn file(&self, entry: &str) -> Option<(Digest, u64)> {
        let mut at = clean_path(entry)?;
        for _ in 0..8 {
            if let Some(f) = self.files.get(&at) {
                return Some(f.clone());
            }
            at = self.links.get(&at)?.clone();
        }
        None
    }
}

/// One image of a legacy manifest.json.
#[derive(serde::Deserialize)]
struct LegacyEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// `a/./b/../c` -> `a/c`; None if it climbs out of the archive's root.
fn clean_path(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// A layer's media type from its first bytes (legacy archives do not say;
/// Docker writes plain tars, other tools may not).
fn sniff_layer(p: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let n = File::open(p)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match &magic[..n] {
        [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER,
    }
}

/// Files of a legacy archive that are not content: v1 metadata and names.
fn legacy_metadata(clean: &str) -> bool {
    matches!(
        clean,
        "oci-layout" | "repositories" | "manifest.json" | "index.json"
    ) || clean.ends_with("/VERSION")
        || clean.ends_with("/json")
}

fn read_blobs(
    path: &Path,
    cs: &crate::store::content::ContentStore,
) -> Result<Found, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut index = None;
    let mut docker_manifest = None;
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    let small = |e: &mut tar::Entry<'_, _>| -> io::Result<Vec<u8>> {
        let mut b = Vec::new();
        e.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut b)?;
        Ok(b)
    };
    for e in ar.entries().map_err(io_err)? {
        let mut e = e.map_err(io_err)?;
        let entry = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let Some(clean) = clean_path(&entry) else {
            continue;
        };
        let kind = e.header().entry_type();
        if kind.is_symlink() {
            let target = e
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let dir = clean.rsplit_once('/').map_or("", |(d, _)| d);
            if let Some(t) = clean_path(&format!("{dir}/{target}")) {
                links.insert(clean, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if clean == "index.json" {
            index = Some(small(&mut e).map_err(io_err)?);
            continue;
        }
        if clean == "manifest.json" {
            docker_manifest = Some(small(&mut e).map_err(io_err)?);
            continue;
        }
        let blob_err = |source| ArchiveError::Blob {
            path: path.to_path_buf(),
            entry: entry.clone(),
            source: Box::new(source),
        };
        let Some(rest) = clean.strip_prefix("blobs/") else {
            // Not in an OCI layout's blobs: a legacy archive's config or
            // layer, stored under the digest it hashes to.
            if !legacy_metadata(&clean) {
                let stored = cs.ingest_computed(&mut e).map_err(blob_err)?;
                files.insert(clean, stored);
            }
            continue;
        };
        let Ok(d) = rest.replacen('/', ":", 1).parse::<Digest>() else {
            continue;
        };
        let size = e.header().size().map_err(io_err)?;
        let Some(mut w) = cs.ingest(&d, size).map_err(blob_err)? else {
            continue;
        };
        w.restart().map_err(blob_err)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = e.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).map_err(blob_err)?;
        }
        w.commit().map_err(blob_err)?;
    }
    match (index, docker_manifest) {
        (Some(i), _) => Ok(Found::Index(i)),
        (None, Some(manifest)) => Ok(Found::Legacy(Legacy {
            manifest,
            files,
            links,
        })),
        (None, None) => Err(ArchiveError::NoIndex {
            path: path.to_path_buf(),
        }),
    }
}

fn write_archive(
    path: &Path,
    cs: &crate::store::content::ContentStore,
    rec: &ImageRecord,
    name: &ImageRef,
) -> Result<(), ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("partial");
    let mut b = tar::Builder::new(File::create(&tmp).map_err(io_err)?);
    let add = |b: &mut tar::Builder<File>, name: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, data)
    };
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;
    let man = cs
        .read(&rec.manifest, MAX_MANIFEST_BYTES)
        .map_err(|_| ArchiveError::Missing {
            path: path.to_path_buf(),
            digest: rec.manifest.clone(),
        })?;
    let man_type = match manifest::parse("", &man) {
        Ok(ManifestKind::Image(m)) => m.media_type,
        _ => media::OCI_MANIFEST.to_owned(),
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": man_type,
            "digest": rec.manifest.to_string(),
            "size": man.len(),
            "annotations": {
                CONTAINERD_NAME: name.to_string(),
                REF_NAME: name.tag().unwrap_or("latest"),
            },
        }],
    });
    add(&mut b, "index.json", index.to_string().as_bytes()).map_err(io_err)?;
    let mut blobs = vec![rec.manifest.clone(), rec.id.clone()];
    blobs.extend(rec.layers.iter().map(|l| l.digest.clone()));
    for d in blobs {
        let p = cs.blob_path(&d);
        let mut f = File::open(&p).map_err(|_| ArchiveError::Missing {
            path: path.to_path_buf(),
            digest: d.clone(),
        })?;
        b.append_file(
            format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()),
            &mut f,
        )
        .map_err(io_err)?;
    }
    b.into_inner().and_then(|f| f.sync_all()).map_err(io_err)?;
    std::fs::rename(&tmp, path).map_err(io_err)
}
