//! The API pod source: a watch on the pods bound to this node
//! (`spec.nodeName=<node>`), kept as a full set and sent to the kubelet's
//! main loop after every change. Mirror pods (the API's copies of this
//! node's static pods) are not pods to run. A pod berth-kubelet cannot run
//! is rejected once, as upstream's kubelet rejects a pod at admission: its
//! status says Failed with the reason, and a Warning event of that reason
//! says why.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1 as api;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use super::events::EventOp;
use super::status::{REJECTED, StatusOp};
use crate::manifest::CONFIG_MIRROR;
use crate::pod::Pod;

/// Watch the node's pods until the task is aborted.
pub async fn watch(
    client: kube::Client,
    node: String,
    out: mpsc::Sender<Vec<Arc<Pod>>>,
    status: mpsc::UnboundedSender<StatusOp>,
    events: mpsc::UnboundedSender<EventOp>,
) {
    let pods: Api<api::Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut store: BTreeMap<String, api::Pod> = BTreeMap::new();
    let mut init: Option<BTreeMap<String, api::Pod>> = None;
    let mut converted: HashMap<String, (String, Arc<Pod>)> = HashMap::new();
    let mut rejected: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("watching the node's pods: {e}");
                continue;
            }
        };
        match ev {
            Event::Init => {
                init = Some(BTreeMap::new());
                continue;
            }
            Event::InitApply(p) => {
                if let Some(m) = init.as_mut() {
                    m.insert(uid_of(&p), p);
                }
                continue;
            }
            Event::InitDone => {
                store = init.take().unwrap_or_default();
            }
            Event::Apply(p) => {
                store.insert(uid_of(&p), p);
            }
            Event::Delete(p) => {
                store.remove(&uid_of(&p));
            }
        }
        let mut set = Vec::new();
        for (uid, p) in &store {
            if is_mirror(p) || uid.is_empty() {
                continue;
            }
            let rv = p.metadata.resource_version.clone().unwrap_or_default();
            if let Some((seen, pod)) = converted.get(uid)
                && *seen == rv
            {
                set.push(pod.clone());
                continue;
            }
            match Pod::from_api(p.clone()) {
                Ok((pod, warnings)) => {
                    for w in warnings {
                        tracing::warn!("{w}");
                    }
                    let pod = Arc::new(pod);
                    converted.insert(uid.clone(), (rv, pod.clone()));
                    set.push(pod);
                }
                Err(e) => {
                    if rejected.insert(uid.clone()) && !is_terminal(p) {
                        tracing::warn!(pod_uid = %uid, "rejecting pod: {e}");
                        let namespace = p.metadata.namespace.clone().unwrap_or_default();
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let _ = events.send(EventOp {
                            namespace: namespace.clone(),
                            pod_name: name.clone(),
                            pod_uid: uid.clone(),
                            field_path: None,
                            warning: true,
                            reason: REJECTED.into(),
                            message: e.to_string(),
                        });
                        let _ = status.send(StatusOp::Reject {
                            namespace,
                            name,
                            uid: uid.clone(),
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        converted.retain(|uid, _| store.contains_key(uid));
        rejected.retain(|uid| store.contains_key(uid));
        if out.send(set).await.is_err() {
            return;
        }
    }
}

fn uid_of(p: &api::Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// Whether a pod is the API's mirror of a static pod.
pub fn is_mirror(p: &api::Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// Whether the API already says the pod is finished.
pub fn is_terminal(p: &api::Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}
