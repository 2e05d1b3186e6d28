//! Mirror pods: the API server's read-only copies of this node's static
//! pods, so `kubectl get pods` shows them and their status. One per static
//! pod, annotated `kubernetes.io/config.mirror: <config hash>` and owned by
//! the Node (NodeRestriction requires both); a mirror whose hash is not a
//! current static pod's (the manifest changed or went away) is deleted,
//! and a deleted mirror of a running static pod is made again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::sync::watch;

use super::{is_already_exists, is_not_found};
use crate::manifest::{CONFIG_HASH, CONFIG_MIRROR};
use crate::pod::Pod;

/// How often mirrors are checked without a change of the static pods.
pub const RESYNC: Duration = Duration::from_secs(10);

/// The mirror pod of a static pod.
pub fn mirror_of(pod: &Pod, node_name: &str, node_uid: &str) -> api::Pod {
    let mut m = (*pod.source).clone();
    m.status = None;
    let meta = &mut m.metadata;
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.name = Some(pod.name.clone());
    meta.namespace = Some(pod.namespace.clone());
    let hash = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH).cloned())
        .unwrap_or_else(|| pod.uid.clone());
    meta.annotations
        .get_or_insert_default()
        .insert(CONFIG_MIRROR.into(), hash);
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.to_owned(),
        uid: node_uid.to_owned(),
        controller: Some(true),
        ..Default::default()
    }]);
    if let Some(spec) = m.spec.as_mut() {
        spec.node_name = Some(node_name.to_owned());
    }
    m
}

fn mirror_hash(p: &api::Pod) -> Option<&str> {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_MIRROR))
        .map(String::as_str)
}

/// Keep the mirrors in line with the static pods until the task is aborted.
pub async fn run(
    client: kube::Client,
    node_name: String,
    node_uid: String,
    mut statics: watch::Receiver<Vec<Arc<Pod>>>,
) {
    loop {
        let pods = statics.borrow_and_update().clone();
        if let Err(e) = reconcile(&client, &node_name, &node_uid, &pods).await {
            tracing::warn!("mirror pods: {e}");
        }
        tokio::select! {
            r = statics.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

async fn reconcile(
    client: &kube::Client,
    node_name: &str,
    node_uid: &str,
    statics: &[Arc<Pod>],
) -> kube::Result<()> {
    let all: Api<api::Pod> = Api::all(client.clone());
    let listed = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await?;
    let mut mirrors: HashMap<(String, String), api::Pod> = listed
        .items
        .into_iter()
        .filter(|p| mirror_hash(p).is_some())
        .map(|p| {
            (
                (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                ),
                p,
            )
        })
        .collect();
    for pod in statics {
        let key = (pod.namespace.clone(), pod.name.clone());
        let want = mirror_of(pod, node_name, node_uid);
        let api: Api<api::Pod> = Api::namespaced(client.clone(), &pod.namespace);
        match mirrors.remove(&key) {
            Some(m)
                if mirror_hash(&m) == mirror_hash(&want)
                    && m.metadata.deletion_timestamp.is_none() => {}
            Some(m) => {
                // Outdated: delete now, create on the next round.
                delete(&api, &m).await?;
            }
            None => match api.create(&PostParams::default(), &want).await {
                Ok(_) => tracing::info!(pod = %pod.full_name(), "mirror pod created"),
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(e),
            },
        }
    }
    for (_, m) in mirrors {
        let api: Api<api::Pod> = Api::namespaced(
            client.clone(),
            m.metadata.namespace.as_deref().unwrap_or("default"),
        );
        delete(&api, &m).await?;
    }
    Ok(())
}

async fn delete(api: &Api<api::Pod>, m: &api::Pod) -> kube::Result<()> {
    let name = m.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: m.metadata.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {
            tracing::info!(pod = %name, "mirror pod deleted");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_pod_carries_hash_owner_and_node() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: busybox}]\n";
        let (pod, _) =
            crate::manifest::parse_manifest(std::path::Path::new("/m/web.yaml"), text, "n1")
                .unwrap();
        let m = mirror_of(&pod, "n1", "node-uid");
        assert_eq!(m.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(mirror_hash(&m), Some(pod.uid.as_str()));
        let o = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.uid.as_str()),
            ("Node", "n1", "node-uid")
        );
        assert_eq!(m.spec.unwrap().node_name.as_deref(), Some("n1"));
    }
}
