//! The pod lifecycle event generator, by relisting: every period it lists
//! all sandboxes and containers, and names the pod UIDs whose sandboxes or
//! containers appeared, disappeared or changed state since the last list.
//! It is correct on its own (containerd 1.6 has no GetContainerEvents).

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
