//! OCI image layout archives (`oci-archive`: a tar of `oci-layout`,
//! `index.json`, `blobs/<alg>/<hex>`), for air-gapped nodes.
//!
//! Import streams each blob into the content store (verified like a
//! download: an archive is outside input), then installs every image the
//! index names, for the store's platform. Export writes one image's
//! manifest, config and layers from the content store. `docker save` from
//! Docker 25+ is an OCI layout and imports as such; the legacy format
//! (manifest.json + uncompressed layer.tar folders) is refused clearly.

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
    #[error("archive {path}: no index.json")]
    NoIndex { path: PathBuf },
    #[error(
        "archive {path}: a legacy `docker save` tarball (manifest.json, no index.json); save it with Docker 25 or later (OCI layout) or convert it with skopeo"
    )]
    LegacyDockerSave { path: PathBuf },
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
        let _gc = self.gc_read().await;
        let cs = self.content().clone();
        let p = path.to_path_buf();
        let index = tokio::task::spawn_blocking(move || read_blobs(&p, &cs))
            .await
            .map_err(Error::Join)?
            .map_err(|e| Error::Archive(Box::new(e)))?;
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

fn read_blobs(
    path: &Path,
    cs: &crate::store::content::ContentStore,
) -> Result<Vec<u8>, ArchiveError> {
    let io_err = |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(io_err)?;
    let mut ar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, f));
    let mut index = None;
    let mut docker_manifest = false;
    for e in ar.entries().map_err(io_err)? {
        let mut e = e.map_err(io_err)?;
        let entry = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let clean = entry.trim_start_matches("./");
        if clean == "index.json" {
            let mut b = Vec::new();
            (&mut e)
                .take(MAX_MANIFEST_BYTES + 1)
                .read_to_end(&mut b)
                .map_err(io_err)?;
            index = Some(b);
            continue;
        }
        if clean == "manifest.json" {
            docker_manifest = true;
        }
        let Some(rest) = clean.strip_prefix("blobs/") else {
            continue;
        };
        let Ok(d) = rest.replacen('/', ":", 1).parse::<Digest>() else {
            continue;
        };
        let size = e.header().size().map_err(io_err)?;
        let blob_err = |source| ArchiveError::Blob {
            path: path.to_path_buf(),
            entry: entry.clone(),
            source: Box::new(source),
        };
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
    match index {
        Some(i) => Ok(i),
        None if docker_manifest => Err(ArchiveError::LegacyDockerSave {
            path: path.to_path_buf(),
        }),
        None => Err(ArchiveError::NoIndex {
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
