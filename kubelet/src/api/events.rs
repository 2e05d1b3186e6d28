//! Events, as upstream's kubelet posts them (`Pulling`, `Pulled`,
//! `Created`, `Started`, `Killing`, `BackOff`, `Failed`, `FailedMount`...):
//! core/v1 Events from component `kubelet` on this host. A repeat of the
//! same event (object, reason, message) within the aggregation window
//! raises the count of the one already posted instead of making another.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// Repeats within this window are counted on the same Event.
const AGGREGATE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventOp {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// `spec.containers{name}` (or `spec.initContainers{name}`), if about one.
    pub field_path: Option<String>,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The Event object for an op posted for the first time.
pub fn event_object(op: &EventOp, node: &str, now: jiff_now::Now) -> api::Event {
    let t = Time(now.0);
    api::Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", op.pod_name, now.1)),
            namespace: Some(op.namespace.clone()),
            ..Default::default()
        },
        involved_object: api::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(op.pod_name.clone()),
            namespace: Some(op.namespace.clone()),
            uid: Some(op.pod_uid.clone()),
            field_path: op.field_path.clone(),
            ..Default::default()
        },
        reason: Some(op.reason.clone()),
        message: Some(op.message.clone()),
        type_: Some(if op.warning { "Warning" } else { "Normal" }.into()),
        source: Some(api::EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_owned()),
        }),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_owned()),
        event_time: None::<MicroTime>,
        ..Default::default()
    }
}

/// The current time, as the API's timestamp and as nanoseconds (for names).
pub mod jiff_now {
    pub struct Now(pub k8s_openapi::jiff::Timestamp, pub u128);

    pub fn now() -> Now {
        let ts = k8s_openapi::jiff::Timestamp::now();
        let nanos = ts.as_nanosecond().max(0) as u128;
        Now(ts, nanos)
    }
}

struct Posted {
    name: String,
    count: i32,
    at: Instant,
}

/// Post events until the channel closes; failures are logged and dropped
/// (events are best effort, as upstream's).
pub async fn run(client: kube::Client, node: String, mut ops: mpsc::UnboundedReceiver<EventOp>) {
    let mut posted: HashMap<EventOp, Posted> = HashMap::new();
    while let Some(op) = ops.recv().await {
        posted.retain(|_, p| p.at.elapsed() < AGGREGATE);
        let api: Api<api::Event> = Api::namespaced(client.clone(), &op.namespace);
        let r = match posted.get_mut(&op) {
            Some(p) => {
                p.count += 1;
                p.at = Instant::now();
                let patch = serde_json::json!({
                    "count": p.count,
                    "lastTimestamp": Time(k8s_openapi::jiff::Timestamp::now()),
                });
                api.patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let ev = event_object(&op, &node, jiff_now::now());
                let name = ev.metadata.name.clone().unwrap_or_default();
                let r = api.create(&PostParams::default(), &ev).await.map(|_| ());
                if r.is_ok() {
                    posted.insert(
                        op.clone(),
                        Posted {
                            name,
                            count: 1,
                            at: Instant::now(),
                        },
                    );
                }
                r
            }
        };
        if let Err(e) = r {
            tracing::debug!(reason = %op.reason, "posting an event: {e}");
        }
    }
}

impl std::hash::Hash for EventOp {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (&self.pod_uid, &self.field_path, &self.reason, &self.message).hash(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_the_pod_container_and_source() {
        let op = EventOp {
            namespace: "ns".into(),
            pod_name: "web".into(),
            pod_uid: "u1".into(),
            field_path: Some("spec.containers{web}".into()),
            warning: true,
            reason: "BackOff".into(),
            message: "Back-off restarting failed container web".into(),
        };
        let e = event_object(&op, "n1", jiff_now::now());
        assert!(e.metadata.name.unwrap().starts_with("web."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(
            e.involved_object.field_path.as_deref(),
            Some("spec.containers{web}")
        );
        assert_eq!(e.source.unwrap().host.as_deref(), Some("n1"));
        assert_eq!(e.count, Some(1));
    }
}
