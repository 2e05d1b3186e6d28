//! The Node and its Lease: register the node (or adopt the Node object of
//! an earlier run), then post its status every nodeStatusUpdateFrequency
//! when it changed and every nodeStatusReportFrequency regardless, and
//! renew the Lease in `kube-node-lease` every quarter of its duration.
//! Readiness follows the CRI runtime's `Status`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;

use super::{Retry, api_err, is_already_exists, is_not_found};
use crate::cri::Cri;
use crate::error::Result;
use crate::node::{
    Health, HostFacts, NodeInput, node_object, node_status, runtime_readiness, status_changed,
};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Bound on one API call of these loops.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// What the node agent needs to know.
pub struct NodeConfig {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<api::Taint>,
    pub node_ip: Option<String>,
    pub max_pods: u32,
    pub runtime_version: String,
    pub root_dir: std::path::PathBuf,
    pub status_update_frequency: Duration,
    pub status_report_frequency: Duration,
    pub lease_duration: Duration,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn health(cri: &Cri, facts: &HostFacts) -> Health {
    let runtime = match cri.status().await {
        Ok(s) => match s.status {
            Some(st) => runtime_readiness(&st),
            None => Err("container runtime status check may not have completed yet".into()),
        },
        Err(e) => Err(format!("container runtime is down: {e}")),
    };
    Health::new(facts, runtime)
}

impl NodeConfig {
    fn input<'a>(&'a self, facts: &'a HostFacts) -> NodeInput<'a> {
        NodeInput {
            name: &self.name,
            labels: &self.labels,
            taints: &self.taints,
            node_ip: self.node_ip.as_deref(),
            max_pods: self.max_pods,
            runtime_version: &self.runtime_version,
            facts,
        }
    }
}

/// Register the node; retries until the API server takes it. Returns the
/// Node as the API server has it (its UID owns the Lease and mirror pods).
pub async fn register(client: &kube::Client, cfg: &NodeConfig, cri: &Cri) -> api::Node {
    let nodes: Api<api::Node> = Api::all(client.clone());
    let mut retry = Retry::default();
    loop {
        match try_register(&nodes, cfg, cri).await {
            Ok(n) => return n,
            Err(e) => {
                tracing::warn!(node = %cfg.name, "registering the node: {e}");
                retry.wait().await;
            }
        }
    }
}

async fn try_register(nodes: &Api<api::Node>, cfg: &NodeConfig, cri: &Cri) -> Result<api::Node> {
    let facts = HostFacts::read(&cfg.root_dir)?;
    let h = health(cri, &facts).await;
    let node = node_object(&cfg.input(&facts), &h, now());
    let what = format!("register node {}", cfg.name);
    match timeout(nodes.create(&PostParams::default(), &node)).await {
        Ok(n) => {
            tracing::info!(node = %cfg.name, "node registered");
            Ok(n)
        }
        Err(e) if is_already_exists(&e) => {
            // An earlier run's Node: make its labels and taints ours again,
            // as upstream's kubelet reconciles them on start.
            let patch = serde_json::json!({
                "metadata": {"labels": node.metadata.labels},
                "spec": {"taints": node.spec.as_ref().and_then(|s| s.taints.clone())},
            });
            let n = timeout(nodes.patch(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch)))
                .await
                .map_err(api_err(&what))?;
            tracing::info!(node = %cfg.name, "node was registered before: adopted it");
            Ok(n)
        }
        Err(e) => Err(api_err(what)(e)),
    }
}

async fn timeout<T>(f: impl std::future::Future<Output = kube::Result<T>>) -> kube::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service("API call timed out".into())),
    }
}

/// Post the node status until the task is aborted. `ready` gets whether
/// the node last reported itself Ready.
pub async fn post_status(
    client: kube::Client,
    cfg: Arc<NodeConfig>,
    cri: Cri,
    node: api::Node,
    ready: watch::Sender<bool>,
) {
    let nodes: Api<api::Node> = Api::all(client.clone());
    let mut last = node.status.clone();
    let mut reported = Instant::now();
    let mut tick = tokio::time::interval(cfg.status_update_frequency);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let facts = match HostFacts::read(&cfg.root_dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("reading the host for the node status: {e}");
                continue;
            }
        };
        let h = health(&cri, &facts).await;
        let status = node_status(&cfg.input(&facts), &h, now(), last.as_ref());
        let changed = last.as_ref().is_none_or(|l| status_changed(l, &status));
        if !changed && reported.elapsed() < cfg.status_report_frequency {
            continue;
        }
        let patch = serde_json::json!({ "status": status });
        match timeout(nodes.patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
        {
            Ok(_) => {
                if changed {
                    tracing::info!(node = %cfg.name, ready = h.not_ready.is_none(), reason = ?h.not_ready, "node status updated");
                }
                let _ = ready.send(h.not_ready.is_none());
                last = Some(status);
                reported = Instant::now();
            }
            Err(e) if is_not_found(&e) => {
                // Deleted by someone: register again, as upstream does on restart.
                tracing::warn!(node = %cfg.name, "the Node object is gone: registering again");
                let n = register(&client, &cfg, &cri).await;
                last = n.status;
            }
            Err(e) => tracing::warn!(node = %cfg.name, "posting the node status: {e}"),
        }
    }
}

/// The node's Lease, renewed every quarter of its duration (10 s of 40 s),
/// until the task is aborted.
pub async fn renew_lease(client: kube::Client, cfg: Arc<NodeConfig>, node_uid: Option<String>) {
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let period = cfg.lease_duration / 4;
    let mut retry = Retry::default();
    loop {
        match renew_once(&leases, &cfg, node_uid.as_deref()).await {
            Ok(()) => {
                retry.reset();
                tokio::time::sleep(period).await;
            }
            Err(e) => {
                tracing::warn!(node = %cfg.name, "renewing the node lease: {e}");
                retry.wait().await;
            }
        }
    }
}

async fn renew_once(
    leases: &Api<Lease>,
    cfg: &NodeConfig,
    node_uid: Option<&str>,
) -> kube::Result<()> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(cfg.name.clone()),
        lease_duration_seconds: Some(cfg.lease_duration.as_secs() as i32),
        renew_time: Some(now),
        ..Default::default()
    };
    match timeout(leases.get_opt(&cfg.name)).await? {
        Some(mut l) => {
            l.spec = Some(spec);
            timeout(leases.replace(&cfg.name, &PostParams::default(), &l)).await?;
        }
        None => {
            let owner = node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: cfg.name.clone(),
                    uid: uid.to_owned(),
                    ..Default::default()
                }]
            });
            let l = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: owner,
                    ..Default::default()
                },
                spec: Some(spec),
            };
            match timeout(leases.create(&PostParams::default(), &l)).await {
                Ok(_) => {}
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
