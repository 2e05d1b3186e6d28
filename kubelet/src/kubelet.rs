//! The kubelet's main loop: the sources (static pod files, and in API
//! server mode the pods bound to the node) say which pods should exist, one worker per pod UID makes it so, the PLEG
//! wakes the workers whose pods changed in the runtime, and pods the
//! runtime has that no source wants (their manifest went away while the
//! kubelet was down) are terminated once the sources have been read.
//! Stopping the kubelet leaves the pods running; the next start adopts
//! them by their CRI labels.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::api::node_agent::{self, NodeConfig};
use crate::api::status::StatusOp;

use crate::config::Settings;
use crate::cri::Cri;
use crate::dns::parse_resolv_conf;
use crate::error::{Error, Result};
use crate::pod::Pod;
use crate::pod_worker::{self, Desired, Shared, WorkerHandle};
use crate::runtime_pod::RuntimePod;

/// How often the PLEG relists (upstream's default).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// Run until `shutdown` completes.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let cri = Cri::new(
        &settings.runtime_endpoint,
        &settings.image_endpoint,
        settings.runtime_request_timeout,
    )?;
    tokio::pin!(shutdown);
    // Wait for the runtime (it may start after the kubelet).
    let version = loop {
        match cri.version().await {
            Ok(v) => break v,
            Err(e) => {
                tracing::warn!("waiting for the container runtime: {e}");
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let pods_dir = settings.root_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|e| Error::io(&pods_dir, e))?;
    // Before any worker: the blocks running pods hold are known first.
    let userns = crate::userns::UserNamespaces::load(
        &pods_dir,
        settings.userns_ids_per_pod,
        settings.max_pods,
    )?;
    let host_resolv = match &settings.dns.resolv_conf {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => parse_resolv_conf(&t),
            Err(e) => {
                tracing::warn!(path = %p.display(), "resolvConf unreadable, pods get no host DNS: {e}");
                Default::default()
            }
        },
        None => Default::default(),
    };
    // API server mode: register the node before taking any pod.
    let api = match &settings.kubeconfig {
        Some(k) => {
            let client = crate::api::client(k).await?;
            let cfg = Arc::new(NodeConfig {
                name: settings.node_name.clone(),
                labels: settings.node_labels.clone(),
                taints: settings.register_with_taints.clone(),
                node_ip: settings
                    .node_ip
                    .map(|ip| ip.to_string())
                    .or_else(detect_host_ip),
                max_pods: settings.max_pods,
                runtime_version: format!("{}://{}", version.runtime_name, version.runtime_version),
                root_dir: settings.root_dir.clone(),
                status_update_frequency: settings.node_status_update_frequency,
                status_report_frequency: settings.node_status_report_frequency,
                lease_duration: settings.node_lease_duration,
            });
            let node = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                n = node_agent::register(&client, &cfg, &cri) => n,
            };
            Some((client, cfg, node))
        }
        None => None,
    };
    let (status_tx, status_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let services = api
        .as_ref()
        .map(|(client, _, _)| crate::api::services::reflect(client.clone()));
    let shared = Arc::new(Shared {
        runtime_name: version.runtime_name.clone(),
        host_ip: settings
            .node_ip
            .map(|ip| ip.to_string())
            .or_else(detect_host_ip),
        memory_capacity: memory_capacity(),
        host_resolv,
        cri: cri.clone(),
        api_status: api.as_ref().map(|_| status_tx.clone()),
        api_client: api.as_ref().map(|(c, _, _)| c.clone()),
        events: api.as_ref().map(|_| events_tx.clone()),
        services: services.as_ref().map(|(store, _)| store.clone()),
        pod_cgroups: pod_cgroups(&settings),
        userns,
        settings,
    });

    let mut tasks = tokio::task::JoinSet::new();
    if let Some((_, reflect)) = services {
        tasks.spawn(reflect);
    }
    let (file_tx, mut file_rx) = mpsc::channel::<Vec<Arc<Pod>>>(4);
    let (api_tx, mut api_rx) = mpsc::channel::<Vec<Arc<Pod>>>(4);
    let (statics_tx, statics_rx) = watch::channel(Vec::<Arc<Pod>>::new());
    let has_file = shared.settings.static_pod_path.is_some();
    if let Some(dir) = &shared.settings.static_pod_path {
        tasks.spawn(crate::static_pods::watch(
            dir.clone(),
            shared.settings.node_name.clone(),
            shared.settings.file_check_frequency,
            file_tx,
        ));
    }
    let has_api = api.is_some();
    if let Some((client, cfg, node)) = api {
        let node_uid = node.metadata.uid.clone().unwrap_or_default();
        let (ready_tx, _) = watch::channel(false);
        tasks.spawn(node_agent::renew_lease(
            client.clone(),
            cfg.clone(),
            Some(node_uid.clone()),
        ));
        tasks.spawn(node_agent::post_status(
            client.clone(),
            cfg.clone(),
            cri.clone(),
            node,
            ready_tx,
        ));
        tasks.spawn(crate::api::pods::watch(
            client.clone(),
            cfg.name.clone(),
            api_tx,
            status_tx,
            events_tx.clone(),
        ));
        tasks.spawn(crate::api::status::run(client.clone(), status_rx));
        tasks.spawn(crate::api::events::run(
            client.clone(),
            cfg.name.clone(),
            events_rx,
        ));
        tasks.spawn(crate::api::mirror::run(
            client,
            cfg.name.clone(),
            node_uid,
            statics_rx,
        ));
    } else {
        drop(status_tx);
        drop(events_tx);
    }
    tracing::info!(
        node = %shared.settings.node_name,
        runtime = %format!("{} {}", version.runtime_name, version.runtime_version),
        endpoint = %shared.settings.runtime_endpoint,
        static_pod_path = ?shared.settings.static_pod_path,
        api_server = has_api,
        "berth-kubelet started"
    );
    let (pleg_tx, mut pleg_rx) = mpsc::channel(4);
    tasks.spawn(crate::pleg::events(cri.clone(), pleg_tx.clone()));
    tasks.spawn(crate::pleg::run(cri.clone(), RELIST_PERIOD, pleg_tx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();

    let mut sources = Sources {
        file: (!has_file).then(Vec::new),
        api: (!has_api).then(Vec::new),
    };
    let mut desired: HashMap<String, Arc<Pod>> = HashMap::new();
    // Pods the API server wants deleted, by UID, until they leave the source.
    let mut deleting: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut deleted: HashSet<String> = HashSet::new();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    loop {
        let update = tokio::select! {
            _ = &mut shutdown => break,
            Some(pods) = file_rx.recv() => {
                let _ = statics_tx.send(pods.clone());
                sources.file = Some(pods);
                true
            }
            Some(pods) = api_rx.recv() => {
                sources.api = Some(pods);
                true
            }
            Some(relist) = pleg_rx.recv() => {
                for uid in &relist.changed {
                    if let Some(w) = workers.get(uid) {
                        w.wake.notify_one();
                    }
                }
                if sources.ready() {
                    let orphans: Vec<String> = relist.present.iter().filter(|u| !workers.contains_key(*u) && !desired.contains_key(*u) && !deleting.contains_key(*u)).cloned().collect();
                    for uid in &orphans {
                        let grace = orphan_grace(&cri, uid).await;
                        tracing::info!(pod_uid = %uid, "the runtime has a pod no source wants: terminating it");
                        workers.insert(uid.clone(), pod_worker::spawn(shared.clone(), uid.clone(), Desired::Terminate(grace), done_tx.clone()));
                    }
                    // Blocks of pods nobody has any more (a removal cut
                    // short before its folder went).
                    shared.userns.release_unknown(|u| workers.contains_key(u) || desired.contains_key(u) || deleting.contains_key(u) || relist.present.contains(u));
                }
                false
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                if let Some(pod) = deleting.get(&uid) {
                    deleted.insert(uid.clone());
                    if let Some(tx) = &shared.api_status {
                        let _ = tx.send(StatusOp::Delete { namespace: pod.namespace.clone(), name: pod.name.clone(), uid: uid.clone() });
                    }
                } else if let Some(pod) = desired.get(&uid) {
                    // Removed and added back while it was terminating.
                    workers.insert(uid.clone(), pod_worker::spawn(shared.clone(), uid, Desired::Run(pod.clone()), done_tx.clone()));
                }
                false
            }
        };
        if !update || !sources.ready() {
            continue;
        }
        let (run, del) = sources.split();
        for (uid, pod) in &run {
            match desired.get(uid) {
                Some(old) if old.source.spec == pod.source.spec => continue,
                Some(_) => {
                    tracing::info!(pod = %pod.full_name(), uid = %uid, "pod updated");
                    if let Some(w) = workers.get(uid) {
                        let _ = w.desired.send(Desired::Run(pod.clone()));
                    }
                    continue;
                }
                None => {}
            }
            match workers.get(uid) {
                Some(w) => {
                    let _ = w.desired.send(Desired::Run(pod.clone()));
                }
                // Finished before (the API says so) and nothing runs it:
                // leave what the runtime has for logs, run nothing.
                None if pod.terminal => {}
                None => {
                    tracing::info!(pod = %pod.full_name(), uid = %uid, "pod added");
                    workers.insert(
                        uid.clone(),
                        pod_worker::spawn(
                            shared.clone(),
                            uid.clone(),
                            Desired::Run(pod.clone()),
                            done_tx.clone(),
                        ),
                    );
                }
            }
        }
        for (uid, pod) in &desired {
            if !run.contains_key(uid) && !del.contains_key(uid) {
                tracing::info!(pod = %pod.full_name(), uid = %uid, "pod removed");
                if let Some(w) = workers.get(uid) {
                    let _ = w.desired.send(Desired::Terminate(pod.grace_period));
                }
            }
        }
        for (uid, pod) in &del {
            if deleting.contains_key(uid) || deleted.contains(uid) {
                continue;
            }
            let grace = pod.deletion_grace.unwrap_or(pod.grace_period);
            tracing::info!(pod = %pod.full_name(), uid = %uid, grace = ?grace, "pod deleted in the API server: terminating it");
            match workers.get(uid) {
                Some(w) => {
                    let _ = w.desired.send(Desired::Terminate(grace));
                }
                None => {
                    workers.insert(
                        uid.clone(),
                        pod_worker::spawn(
                            shared.clone(),
                            uid.clone(),
                            Desired::Terminate(grace),
                            done_tx.clone(),
                        ),
                    );
                }
            }
            deleting.insert(uid.clone(), pod.clone());
        }
        deleting.retain(|uid, _| del.contains_key(uid));
        deleted.retain(|uid| del.contains_key(uid));
        desired = run;
    }
    tracing::info!(
        pods = workers.len(),
        "berth-kubelet stopping; pods keep running"
    );
    for (_, w) in workers.drain() {
        w.task.abort();
    }
    tasks.abort_all();
    Ok(())
}

/// The latest pod set of each source; `None` until the source has spoken
/// (a source that is not configured counts as an empty one).
struct Sources {
    file: Option<Vec<Arc<Pod>>>,
    api: Option<Vec<Arc<Pod>>>,
}

type PodMap = HashMap<String, Arc<Pod>>;

impl Sources {
    /// Every source has been read once: pods the runtime has that none
    /// wants can be terminated.
    fn ready(&self) -> bool {
        self.file.is_some() && self.api.is_some()
    }

    /// The pods to run and the pods the API server wants deleted.
    fn split(&self) -> (PodMap, PodMap) {
        let mut run = HashMap::new();
        let mut del = HashMap::new();
        for p in self.file.iter().chain(self.api.iter()).flatten() {
            let m = if p.deletion_grace.is_some() {
                &mut del
            } else {
                &mut run
            };
            m.insert(p.uid.clone(), p.clone());
        }
        (run, del)
    }
}

/// An orphan's grace period: what its containers were made with.
async fn orphan_grace(cri: &Cri, uid: &str) -> Duration {
    let secs = RuntimePod::fetch(cri, uid)
        .await
        .ok()
        .and_then(|rt| rt.containers.iter().filter_map(|c| c.grace_period).max())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn memory_capacity() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(1 << 30)
}

/// The address the host would use to reach the outside (no packet is sent).
fn detect_host_ip() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// The pod cgroup hierarchy, made at start (None: cgroupsPerQOS is off, or
/// it cannot be made here, which is logged).
fn pod_cgroups(settings: &Settings) -> Option<crate::pod_cgroups::PodCgroups> {
    if !settings.cgroups_per_qos {
        return None;
    }
    let Some(layout) = crate::pod_cgroups::Layout::detect() else {
        tracing::warn!("no cgroup hierarchy found: pods get no pod cgroups");
        return None;
    };
    let pc = crate::pod_cgroups::PodCgroups::new(
        layout,
        &settings.cgroup_root,
        settings.cgroup_driver_systemd,
    );
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    match pc.ensure_qos(cpus * 1000) {
        Ok(()) => Some(pc),
        Err(e) => {
            tracing::warn!(
                "making the QoS cgroups under {}: {e}; pods get no pod cgroups",
                settings.cgroup_root
            );
            None
        }
    }
}
