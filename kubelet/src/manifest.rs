//! Static pod manifests: one Pod per file, YAML or JSON. A manifest becomes
//! a pod of this node: its name gets `-<node>` appended (as upstream's, so
//! static pods of several nodes never collide), its UID is a hash of the
//! file (a changed file is a new pod; the same file is the same pod across
//! kubelet restarts).

use std::path::Path;

use k8s_openapi::api::core::v1 as api;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::pod::Pod;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Parse a manifest's text into a validated pod of node `node`. Returns
/// the pod and warnings about fields that are ignored.
pub fn parse_manifest(path: &Path, text: &str, node: &str) -> Result<(Pod, Vec<String>)> {
    let err = |message: String| Error::Manifest {
        path: path.to_owned(),
        message,
    };
    let doc = crate::config::parse_document(text).map_err(err)?;
    let Value::Object(map) = &doc else {
        return Err(err("not a mapping (want a Pod)".into()));
    };
    match map.get("kind") {
        Some(Value::String(k)) if k == "Pod" => {}
        None => {}
        Some(k) => return Err(err(format!("kind {k}: want \"Pod\""))),
    }
    match map.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => {}
        None => {}
        Some(v) => return Err(err(format!("apiVersion {v}: want \"v1\""))),
    }
    let mut pod: api::Pod = serde_path_to_error::deserialize(doc)
        .map_err(|e| err(format!("{}: {}", e.path(), e.inner())))?;

    let meta = &mut pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(err("metadata.name: required".into()));
    }
    meta.name = Some(format!("{name}-{node}"));
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".into());
    }
    if meta.uid.as_deref().unwrap_or("").is_empty() {
        meta.uid = Some(static_uid(node, path, text));
    }
    let uid = meta.uid.clone().unwrap_or_default();
    let ann = meta.annotations.get_or_insert_default();
    ann.insert(CONFIG_SOURCE.into(), "file".into());
    ann.insert(CONFIG_HASH.into(), uid);
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node.to_owned());
    }
    Pod::from_api(pod).map_err(|e| err(e.to_string()))
}

/// A stable UID for a manifest on a node, UUID-shaped.
pub fn static_uid(node: &str, path: &Path, text: &str) -> String {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(path.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    let x = hex::encode(&h.finalize()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_becomes_a_pod_of_the_node() {
        let p = Path::new("/m/web.yaml");
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: web, image: reg/web:1}]}\n";
        let (pod, _) = parse_manifest(p, text, "node1").unwrap();
        assert_eq!(pod.name, "web-node1");
        assert_eq!(pod.namespace, "default");
        assert_eq!(pod.node_name, "node1");
        assert_eq!(pod.uid.len(), 36);
        assert_eq!(pod.annotations[CONFIG_SOURCE], "file");
        // Same file, same UID; another text, another UID.
        assert_eq!(parse_manifest(p, text, "node1").unwrap().0.uid, pod.uid);
        let other = text.replace("web:1", "web:2");
        assert_ne!(parse_manifest(p, &other, "node1").unwrap().0.uid, pod.uid);
    }

    #[test]
    fn json_manifests() {
        let text = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"kube-system","uid":"fixed"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
        let (pod, _) = parse_manifest(Path::new("/m/a.json"), text, "n").unwrap();
        assert_eq!(pod.namespace, "kube-system");
        assert_eq!(pod.uid, "fixed");
    }

    #[test]
    fn bad_manifests_name_the_file_and_the_problem() {
        let e = |t: &str| {
            parse_manifest(Path::new("/m/x.yaml"), t, "n")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("kind: Deployment\n"),
            "pod manifest /m/x.yaml: kind \"Deployment\": want \"Pod\""
        );
        assert!(e("metadata: {name: a}\nspec: {containers: [{name: c, image: i, ports: [{containerPort: http}]}]}\n")
            .starts_with("pod manifest /m/x.yaml: spec.containers[0].ports[0].containerPort:"));
        assert!(e("metadata: {}\nspec: {containers: []}\n").contains("metadata.name: required"));
        assert!(
            e("metadata: {name: a}\nspec: {containers: []}\n").contains("at least one container")
        );
        assert!(e("[1, 2]\n").contains("not a mapping"));
        assert!(e("metadata: {name: a\n").starts_with("pod manifest /m/x.yaml: "));
    }
}
