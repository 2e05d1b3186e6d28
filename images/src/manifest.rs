//! Manifests and indexes (OCI and Docker schema2), parsed from registry
//! bytes into validated domain types, and platform selection.
//!
//! Everything here is outside input: sizes are capped before parsing,
//! every digest is parsed, media types are checked against the kind of
//! document that refers to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const OCI_LAYER_ND: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    pub const OCI_LAYER_ND_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    pub const OCI_LAYER_ND_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// What a manifest request accepts, best first.
    pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json;q=0.9, \
        */*;q=0.5";
}

/// Largest manifest or index read into memory (containerd uses the same).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config read into memory.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
const MAX_LAYERS: usize = 1000;
const MAX_INDEX_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {0} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("manifest is not valid JSON for {kind}")]
    Json {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error(
        "Docker schema1 manifests are deprecated and not supported; push the image again with a current client"
    )]
    Schema1,
    #[error("manifest says media type {inner:?} but was served as {outer:?}")]
    MediaTypeMismatch { outer: String, inner: String },
    #[error("unsupported schemaVersion {0}")]
    SchemaVersion(u32),
    #[error("descriptor {digest} has media type {media_type:?}, not allowed as {role}")]
    DescriptorType {
        digest: Digest,
        media_type: String,
        role: &'static str,
    },
    #[error("manifest has {0} layers, more than the {MAX_LAYERS} allowed")]
    TooManyLayers(usize),
    #[error("index has {0} entries, more than the {MAX_INDEX_ENTRIES} allowed")]
    TooManyEntries(usize),
    #[error("no manifest in the index matches platform {wanted}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        wanted: String,
        available: Vec<String>,
    },
    #[error("image config has {config} diff_ids but the manifest has {manifest} layers")]
    LayerCount { config: usize, manifest: usize },
    #[error("image config rootfs type is {0:?}, want \"layers\"")]
    RootfsType(String),
}

/// A content descriptor, validated: the digest parsed, the size known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// How a layer's bytes are compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        use media::*;
        match media_type {
            OCI_LAYER | OCI_LAYER_ND => Some(Compression::None),
            OCI_LAYER_GZIP | OCI_LAYER_ND_GZIP | DOCKER_LAYER | DOCKER_FOREIGN_LAYER => {
                Some(Compression::Gzip)
            }
            OCI_LAYER_ZSTD | OCI_LAYER_ND_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// An image manifest: one config and its layers, in application order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The compression of layer `i` (validated at parse time).
    pub fn compression(&self, i: usize) -> Compression {
        Compression::of_layer(&self.layers[i].media_type).unwrap_or(Compression::Gzip)
    }
}

/// An index or manifest list: per-platform manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest endpoint returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    Image(Box<Manifest>),
    Index(Index),
}

#[derive(Deserialize)]
struct RawDoc {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Parses a manifest or index. `content_type` is what the registry said
/// (may be empty, as in an OCI layout, where the document's own
/// `mediaType` or its shape decides).
pub fn parse(content_type: &str, bytes: &[u8]) -> Result<ManifestKind, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(bytes.len() as u64));
    }
    let outer = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if outer == media::DOCKER_SCHEMA1 || outer == media::DOCKER_SCHEMA1_SIGNED {
        return Err(ManifestError::Schema1);
    }
    let raw: RawDoc = serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        kind: "a manifest or index",
        source,
    })?;
    if raw.schema_version == 1 {
        return Err(ManifestError::Schema1);
    }
    if raw.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(raw.schema_version));
    }
    let generic = |t: &str| t.is_empty() || t == "application/json" || t == "text/plain";
    let inner = raw.media_type.clone();
    if !generic(&outer) && !inner.is_empty() && inner != outer {
        return Err(ManifestError::MediaTypeMismatch { outer, inner });
    }
    let effective = if !inner.is_empty() {
        inner
    } else if !generic(&outer) {
        outer
    } else if raw.manifests.is_some() {
        media::OCI_INDEX.to_owned()
    } else {
        media::OCI_MANIFEST.to_owned()
    };
    match effective.as_str() {
        media::OCI_INDEX | media::DOCKER_LIST => {
            let manifests = raw.manifests.unwrap_or_default();
            if manifests.len() > MAX_INDEX_ENTRIES {
                return Err(ManifestError::TooManyEntries(manifests.len()));
            }
            for d in &manifests {
                // Unknown entries (attestations, artifacts) are kept and
                // skipped by platform selection; only nested documents
                // must be manifest types.
                if d.media_type.is_empty() {
                    return Err(ManifestError::DescriptorType {
                        digest: d.digest.clone(),
                        media_type: d.media_type.clone(),
                        role: "an index entry",
                    });
                }
            }
            Ok(ManifestKind::Index(Index {
                media_type: effective,
                manifests,
            }))
        }
        media::OCI_MANIFEST | media::DOCKER_MANIFEST => {
            let config = raw.config.ok_or_else(|| ManifestError::Json {
                kind: "an image manifest",
                source: serde::de::Error::missing_field("config"),
            })?;
            let layers = raw.layers.unwrap_or_default();
            if layers.len() > MAX_LAYERS {
                return Err(ManifestError::TooManyLayers(layers.len()));
            }
            let config_ok = matches!(
                config.media_type.as_str(),
                media::OCI_CONFIG | media::DOCKER_CONFIG
            );
            if !config_ok {
                return Err(ManifestError::DescriptorType {
                    digest: config.digest.clone(),
                    media_type: config.media_type.clone(),
                    role: "an image config",
                });
            }
            if config.size > MAX_CONFIG_BYTES {
                return Err(ManifestError::DescriptorType {
                    digest: config.digest.clone(),
                    media_type: format!("{} ({} bytes, too large)", config.media_type, config.size),
                    role: "an image config",
                });
            }
            for l in &layers {
                if Compression::of_layer(&l.media_type).is_none() {
                    return Err(ManifestError::DescriptorType {
                        digest: l.digest.clone(),
                        media_type: l.media_type.clone(),
                        role: "a layer",
                    });
                }
            }
            Ok(ManifestKind::Image(Box::new(Manifest {
                media_type: effective,
                config,
                layers,
                annotations: raw.annotations,
            })))
        }
        other => Err(ManifestError::UnsupportedMediaType(other.to_owned())),
    }
}

impl Index {
    /// The best manifest for `want`, or an error listing what there is.
    pub fn select(&self, want: &Platform) -> Result<&Descriptor, ManifestError> {
        let is_manifest = |d: &Descriptor| {
            matches!(
                d.media_type.as_str(),
                media::OCI_MANIFEST | media::DOCKER_MANIFEST
            )
        };
        self.manifests
            .iter()
            .enumerate()
            .filter(|(_, d)| is_manifest(d))
            .filter_map(|(i, d)| {
                let p = d.platform.as_ref()?;
                want.rank(p).map(|r| (r, std::cmp::Reverse(i), d))
            })
            .max_by_key(|(r, i, _)| (*r, *i))
            .map(|(_, _, d)| d)
            .ok_or_else(|| ManifestError::NoMatchingPlatform {
                wanted: want.to_string(),
                available: self
                    .manifests
                    .iter()
                    .filter(|d| is_manifest(d))
                    .map(|d| {
                        d.platform
                            .as_ref()
                            .map_or_else(|| "(no platform)".to_owned(), |p| p.to_string())
                    })
                    .collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn oci_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":10}},
            "layers":[{{"mediaType":"{}","digest":"{}","size":20}},{{"mediaType":"{}","digest":"{}","size":30}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            d('a'),
            media::OCI_LAYER_GZIP,
            d('b'),
            media::OCI_LAYER_ZSTD,
            d('c')
        )
    }

    fn index(entries: &[(&str, &str, &str, char)]) -> String {
        let m: Vec<String> = entries
            .iter()
            .map(|(os, arch, var, c)| {
                format!(
                    r#"{{"mediaType":"{}","digest":"{}","size":1,"platform":{{"os":"{os}","architecture":"{arch}","variant":"{var}"}}}}"#,
                    media::OCI_MANIFEST,
                    d(*c)
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{}]}}"#,
            media::OCI_INDEX,
            m.join(",")
        )
    }

    #[test]
    fn parses_oci_manifest() {
        let ManifestKind::Image(m) = parse(media::OCI_MANIFEST, oci_manifest().as_bytes()).unwrap()
        else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.compression(0), Compression::Gzip);
        assert_eq!(m.compression(1), Compression::Zstd);
        assert_eq!(m.config.size, 10);
        // No content type (OCI layout): the document's mediaType decides.
        assert!(matches!(
            parse("", oci_manifest().as_bytes()).unwrap(),
            ManifestKind::Image(_)
        ));
    }

    #[test]
    fn parses_docker_schema2() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":5}},"layers":[{{"mediaType":"{}","digest":"{}","size":7}}]}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            d('1'),
            media::DOCKER_LAYER,
            d('2')
        );
        assert!(matches!(
            parse(media::DOCKER_MANIFEST, doc.as_bytes()).unwrap(),
            ManifestKind::Image(_)
        ));
    }

    #[test]
    fn rejects_bad_documents() {
        let m = oci_manifest();
        // Served as an index but says manifest.
        assert!(matches!(
            parse(media::OCI_INDEX, m.as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        // Negative size, bad digest, missing config, unknown layer type.
        for bad in [
            m.replace("\"size\":10", "\"size\":-1"),
            m.replace(&d('b'), "sha256:../../etc"),
            m.replace(media::OCI_LAYER_ZSTD, "application/x-evil"),
            m.replace(media::OCI_CONFIG, "application/octet-stream"),
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#.to_owned(),
            r#"{"schemaVersion":3}"#.to_owned(),
            "[]".to_owned(),
        ] {
            assert!(parse(media::OCI_MANIFEST, bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(matches!(
            parse(media::DOCKER_SCHEMA1_SIGNED, b"{}"),
            Err(ManifestError::Schema1)
        ));
        let huge = vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize];
        assert!(matches!(
            parse(media::OCI_MANIFEST, &huge),
            Err(ManifestError::TooLarge(_))
        ));
    }

    #[test]
    fn selects_platform() {
        let doc = index(&[
            ("linux", "arm64", "v8", '1'),
            ("linux", "amd64", "", '2'),
            ("unknown", "unknown", "", '3'),
            ("linux", "arm", "v6", '4'),
            ("linux", "arm", "v7", '5'),
        ]);
        let ManifestKind::Index(ix) = parse(media::OCI_INDEX, doc.as_bytes()).unwrap() else {
            panic!()
        };
        let amd = ix.select(&Platform::new("linux", "amd64", "")).unwrap();
        assert_eq!(amd.digest.to_string(), d('2'));
        let arm64 = ix.select(&Platform::new("linux", "arm64", "")).unwrap();
        assert_eq!(arm64.digest.to_string(), d('1'));
        let arm7 = ix.select(&Platform::new("linux", "arm", "v7")).unwrap();
        assert_eq!(arm7.digest.to_string(), d('5'));
        let err = ix
            .select(&Platform::new("linux", "s390x", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(
            err.contains("linux/amd64") && err.contains("linux/arm/v6"),
            "{err}"
        );
    }
}
