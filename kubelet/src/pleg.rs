//! The pod lifecycle event generator, by relisting: every period it lists
//! all sandboxes and containers, and names the pod UIDs whose sandboxes or
//! containers appeared, disappeared or changed state since the last list.
//! It is correct on its own (containerd 1.6 has no GetContainerEvents).
//! Where the runtime streams container events (berthd), `events` names the
//! pod of each event as it comes, so a worker reacts at once rather than
//! at the next relist.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::sync::mpsc;

use crate::cri::Cri;
use crate::runtime_pod::POD_UID;

/// One relist's findings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relist {
    /// Pods whose runtime objects changed.
    pub changed: HashSet<String>,
    /// Every pod UID the runtime has objects of.
    pub present: HashSet<String>,
}

type Fingerprint = BTreeSet<(String, i32)>;

/// Fingerprints by pod UID: each object's id and state.
pub fn fingerprints(
    sandboxes: &[cri::PodSandbox],
    containers: &[cri::Container],
) -> HashMap<String, Fingerprint> {
    let mut out: HashMap<String, Fingerprint> = HashMap::new();
    for s in sandboxes {
        if let Some(uid) = s.labels.get(POD_UID) {
            out.entry(uid.clone())
                .or_default()
                .insert((s.id.clone(), s.state));
        }
    }
    for c in containers {
        if let Some(uid) = c.labels.get(POD_UID) {
            out.entry(uid.clone())
                .or_default()
                .insert((c.id.clone(), 10 + c.state));
        }
    }
    out
}

/// What changed between two relists.
pub fn diff(old: &HashMap<String, Fingerprint>, new: &HashMap<String, Fingerprint>) -> Relist {
    let mut changed: HashSet<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    Relist {
        changed,
        present: new.keys().cloned().collect(),
    }
}

/// Relist every `period` and send each result; stops when the receiver is
/// gone.
pub async fn run(cri: Cri, period: Duration, tx: mpsc::Sender<Relist>) {
    let mut old = HashMap::new();
    let mut failing = false;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let lists = async {
            Ok::<_, crate::Error>((
                cri.list_pod_sandbox(None).await?,
                cri.list_containers(None).await?,
            ))
        };
        match lists.await {
            Ok((sandboxes, containers)) => {
                if failing {
                    tracing::info!("relisting works again");
                    failing = false;
                }
                let new = fingerprints(&sandboxes, &containers);
                let r = diff(&old, &new);
                old = new;
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("relisting the runtime failed (will retry): {e}");
                    failing = true;
                }
            }
        }
    }
}

/// The pod an event is about (the sandbox's metadata, else the labels).
pub fn event_pod(e: &cri::ContainerEventResponse) -> Option<String> {
    e.pod_sandbox_status
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .map(|m| m.uid.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| {
            e.pod_sandbox_status
                .as_ref()
                .and_then(|s| s.labels.get(POD_UID).cloned())
        })
}

/// Follow the runtime's container events and send each event's pod as a
/// change; reconnects after a broken stream, and returns when the runtime
/// has no events (Unimplemented) or the receiver is gone.
pub async fn events(cri: Cri, tx: mpsc::Sender<Relist>) {
    let mut delay = Duration::from_millis(500);
    loop {
        let mut stream = match cri.container_events().await {
            Ok(s) => {
                tracing::info!("following the runtime's container events");
                delay = Duration::from_millis(500);
                s
            }
            Err(e) if e.cri_code() == Some(tonic::Code::Unimplemented) => {
                tracing::info!("the runtime has no container events: relisting only");
                return;
            }
            Err(e) => {
                tracing::debug!("container events: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        while let Ok(Some(ev)) = stream.message().await {
            let Some(uid) = event_pod(&ev) else { continue };
            let r = Relist {
                changed: HashSet::from([uid]),
                present: HashSet::new(),
            };
            if tx.send(r).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(id: &str, uid: &str, state: i32) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.into(),
            state,
            labels: [(POD_UID.to_owned(), uid.to_owned())].into(),
            ..Default::default()
        }
    }

    fn ctr(id: &str, uid: &str, state: i32) -> cri::Container {
        cri::Container {
            id: id.into(),
            state,
            labels: [(POD_UID.to_owned(), uid.to_owned())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn events_name_their_pod() {
        let mut e = cri::ContainerEventResponse {
            pod_sandbox_status: Some(cri::PodSandboxStatus {
                metadata: Some(cri::PodSandboxMetadata {
                    uid: "u1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(event_pod(&e).as_deref(), Some("u1"));
        e.pod_sandbox_status = Some(cri::PodSandboxStatus {
            labels: [(POD_UID.to_owned(), "u2".to_owned())].into(),
            ..Default::default()
        });
        assert_eq!(event_pod(&e).as_deref(), Some("u2"));
        e.pod_sandbox_status = None;
        assert_eq!(event_pod(&e), None);
    }

    #[test]
    fn names_the_pods_that_changed() {
        let a = fingerprints(
            &[sb("s1", "p1", 0), sb("s2", "p2", 0)],
            &[ctr("c1", "p1", 1), ctr("c2", "p2", 1)],
        );
        // Unlabelled objects (not a kubelet's) are ignored.
        let mut other = sb("s9", "", 0);
        other.labels.clear();
        let b = fingerprints(
            &[sb("s1", "p1", 0), sb("s2", "p2", 0), other],
            &[ctr("c1", "p1", 2), ctr("c2", "p2", 1)],
        );
        let r = diff(&a, &b);
        assert_eq!(r.changed, HashSet::from(["p1".to_owned()]));
        assert_eq!(r.present, HashSet::from(["p1".to_owned(), "p2".to_owned()]));
        // A pod gone entirely is a change too.
        let c = fingerprints(&[sb("s1", "p1", 0)], &[ctr("c1", "p1", 2)]);
        assert_eq!(diff(&b, &c).changed, HashSet::from(["p2".to_owned()]));
        assert!(diff(&c, &c).changed.is_empty());
    }
}
