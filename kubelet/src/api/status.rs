//! The status manager: pod statuses the workers compute go to the API
//! server (a static pod's to its mirror pod), the latest one per pod, with
//! retries while the API server is away; pods the kubelet rejects are
//! marked Failed; pods whose deletion the kubelet has carried out are
//! deleted from the API (grace 0, on the pod's UID only).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1 as api;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::mpsc;

use super::is_not_found;

#[derive(Debug, Clone)]
pub enum StatusOp {
    /// The pod's current status; a static pod's goes to its mirror pod.
    Status {
        namespace: String,
        name: String,
        uid: String,
        mirror: bool,
        status: Box<api::PodStatus>,
    },
    /// The kubelet will not run this pod: phase Failed with the reason.
    Reject {
        namespace: String,
        name: String,
        uid: String,
        message: String,
    },
    /// The pod's containers and sandboxes are gone: finish its deletion.
    Delete {
        namespace: String,
        name: String,
        uid: String,
    },
}

impl StatusOp {
    fn uid(&self) -> &str {
        match self {
            StatusOp::Status { uid, .. }
            | StatusOp::Reject { uid, .. }
            | StatusOp::Delete { uid, .. } => uid,
        }
    }
}

/// The reason of a rejected pod's status and event.
pub const REJECTED: &str = "UnsupportedPodSpec";

/// The status patch of a pod: the status with `qosClass` left out (the API
/// server sets it once and refuses changes), and for a pod of the API the
/// UID, which makes the patch fail on a pod of the same name recreated
/// meanwhile.
pub fn status_patch(uid: Option<&str>, status: &api::PodStatus) -> serde_json::Value {
    let mut status = status.clone();
    status.qos_class = None;
    match uid {
        Some(uid) => serde_json::json!({"metadata": {"uid": uid}, "status": status}),
        None => serde_json::json!({ "status": status }),
    }
}

/// Tries of one op before it is dropped (about five minutes of back-off):
/// a mirror pod that never comes, an API server that refuses the status.
const MAX_TRIES: u32 = 40;

/// Send ops to the API server until the channel closes.
pub async fn run(client: kube::Client, mut ops: mpsc::UnboundedReceiver<StatusOp>) {
    let mut pending: HashMap<String, StatusOp> = HashMap::new();
    let mut tries: HashMap<String, u32> = HashMap::new();
    let mut retry_in = Duration::from_millis(500);
    loop {
        let mut closed = false;
        let op = if pending.is_empty() {
            match ops.recv().await {
                Some(op) => Some(op),
                None => return,
            }
        } else {
            match tokio::time::timeout(retry_in, ops.recv()).await {
                Ok(Some(op)) => Some(op),
                Ok(None) => {
                    closed = true;
                    None
                }
                Err(_) => {
                    // Nothing new: retry what is pending.
                    retry_in = (retry_in * 2).min(Duration::from_secs(10));
                    None
                }
            }
        };
        if let Some(op) = op {
            queue(&mut pending, op);
            // Take whatever else is queued before calling the API.
            while let Ok(op) = ops.try_recv() {
                queue(&mut pending, op);
            }
        }
        let mut failed = false;
        let keys: Vec<String> = pending.keys().cloned().collect();
        for uid in keys {
            let Some(op) = pending.get(&uid) else {
                continue;
            };
            match apply(&client, op).await {
                Ok(()) => {
                    pending.remove(&uid);
                    tries.remove(&uid);
                }
                Err(e) => {
                    let n = tries.entry(uid.clone()).or_default();
                    *n += 1;
                    if *n >= MAX_TRIES {
                        tracing::warn!(pod_uid = %uid, "pod status to the API server, giving up after {n} tries: {e}");
                        pending.remove(&uid);
                        tries.remove(&uid);
                    } else {
                        tracing::warn!(pod_uid = %uid, "pod status to the API server: {e}");
                        failed = true;
                    }
                }
            }
        }
        if !failed {
            retry_in = Duration::from_millis(500);
        }
        if closed {
            return;
        }
    }
}

/// Keep the newest op per pod; a deletion supersedes any status.
fn queue(pending: &mut HashMap<String, StatusOp>, op: StatusOp) {
    let uid = op.uid().to_owned();
    if !matches!(pending.get(&uid), Some(StatusOp::Delete { .. })) {
        pending.insert(uid, op);
    }
}

/// One op. A pod that is gone from the API needs nothing more: Ok.
async fn apply(client: &kube::Client, op: &StatusOp) -> kube::Result<()> {
    let r = match op {
        StatusOp::Status {
            namespace,
            name,
            uid,
            mirror,
            status,
        } => {
            let api: Api<api::Pod> = Api::namespaced(client.clone(), namespace);
            // A mirror pod's UID is the API server's own, not the static pod's.
            let uid = (!mirror).then_some(uid.as_str());
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(uid, status)),
            )
            .await
            .map(|_| ())
        }
        StatusOp::Reject {
            namespace,
            name,
            uid,
            message,
        } => {
            let api: Api<api::Pod> = Api::namespaced(client.clone(), namespace);
            let status = api::PodStatus {
                phase: Some("Failed".into()),
                reason: Some(REJECTED.into()),
                message: Some(message.clone()),
                ..Default::default()
            };
            api.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(status_patch(Some(uid), &status)),
            )
            .await
            .map(|_| ())
        }
        StatusOp::Delete {
            namespace,
            name,
            uid,
        } => {
            let api: Api<api::Pod> = Api::namespaced(client.clone(), namespace);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            let r = api.delete(name, &dp).await.map(|_| ());
            if r.is_ok() {
                tracing::info!(pod = %format!("{namespace}/{name}"), "pod deleted from the API server");
            }
            r
        }
    };
    match r {
        // A mirror pod may not be made yet: try again.
        Err(e) if is_not_found(&e) && matches!(op, StatusOp::Status { mirror: true, .. }) => Err(e),
        Err(e) if is_not_found(&e) => Ok(()),
        // The UID precondition failed: a new pod of the same name.
        Err(kube::Error::Api(s))
            if s.code == 409 || (s.code == 422 && s.message.contains("uid")) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_patch_leaves_qos_out_and_guards_the_uid() {
        let s = api::PodStatus {
            phase: Some("Running".into()),
            qos_class: Some("BestEffort".into()),
            ..Default::default()
        };
        let p = status_patch(Some("u1"), &s);
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["status"]["phase"], "Running");
        assert!(p["status"].get("qosClass").is_none());
        let m = status_patch(None, &s);
        assert!(m.get("metadata").is_none());
    }
}
