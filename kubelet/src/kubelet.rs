//! The kubelet's main loop in standalone mode: the static pod source says
//! which pods should exist, one worker per pod UID makes it so, the PLEG
//! wakes the workers whose pods changed in the runtime, and pods the
//! runtime has that no source wants (their manifest went away while the
//! kubelet was down) are terminated once the sources have been read.
//! Stopping the kubelet leaves the pods running; the next start adopts
//! them by their CRI labels.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

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
    tracing::info!(
        node = %settings.node_name,
        runtime = %format!("{} {}", version.runtime_name, version.runtime_version),
        endpoint = %settings.runtime_endpoint,
        static_pod_path = ?settings.static_pod_path,
        "berth-kubelet started (standalone)"
    );
    let pods_dir = settings.root_dir.join("pods");
    std::fs::create_dir_all(&pods_dir).map_err(|e| Error::io(&pods_dir, e))?;
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
    let shared = Arc::new(Shared {
        runtime_name: version.runtime_name.clone(),
        host_ip: settings
            .node_ip
            .map(|ip| ip.to_string())
            .or_else(detect_host_ip),
        memory_capacity: memory_capacity(),
        host_resolv,
        cri: cri.clone(),
        settings,
    });

    let (src_tx, mut src_rx) = mpsc::channel::<Vec<Arc<Pod>>>(4);
    let mut tasks = tokio::task::JoinSet::new();
    match &shared.settings.static_pod_path {
        Some(dir) => {
            tasks.spawn(crate::static_pods::watch(
                dir.clone(),
                shared.settings.node_name.clone(),
                shared.settings.file_check_frequency,
                src_tx,
            ));
        }
        None => {
            let _ = src_tx.send(Vec::new()).await;
        }
    }
    let (pleg_tx, mut pleg_rx) = mpsc::channel(4);
    tasks.spawn(crate::pleg::run(cri.clone(), RELIST_PERIOD, pleg_tx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();

    let mut desired: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut sources_ready = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(pods) = src_rx.recv() => {
                sources_ready = true;
                let new: HashMap<String, Arc<Pod>> = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
                for (uid, pod) in &new {
                    if desired.contains_key(uid) {
                        continue;
                    }
                    tracing::info!(pod = %pod.full_name(), uid = %uid, "pod added");
                    match workers.get(uid) {
                        Some(w) => { let _ = w.desired.send(Desired::Run(pod.clone())); }
                        None => { workers.insert(uid.clone(), pod_worker::spawn(shared.clone(), uid.clone(), Desired::Run(pod.clone()), done_tx.clone())); }
                    }
                }
                for (uid, pod) in &desired {
                    if !new.contains_key(uid) {
                        tracing::info!(pod = %pod.full_name(), uid = %uid, "pod removed");
                        if let Some(w) = workers.get(uid) {
                            let _ = w.desired.send(Desired::Terminate(pod.grace_period));
                        }
                    }
                }
                desired = new;
            }
            Some(relist) = pleg_rx.recv() => {
                for uid in &relist.changed {
                    if let Some(w) = workers.get(uid) {
                        w.wake.notify_one();
                    }
                }
                if sources_ready {
                    let orphans: Vec<String> = relist.present.iter().filter(|u| !workers.contains_key(*u) && !desired.contains_key(*u)).cloned().collect();
                    for uid in &orphans {
                        let grace = orphan_grace(&cri, uid).await;
                        tracing::info!(pod_uid = %uid, "the runtime has a pod no source wants: terminating it");
                        workers.insert(uid.clone(), pod_worker::spawn(shared.clone(), uid.clone(), Desired::Terminate(grace), done_tx.clone()));
                    }
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
                if let Some(pod) = desired.get(&uid) {
                    // Removed and added back while it was terminating.
                    workers.insert(uid.clone(), pod_worker::spawn(shared.clone(), uid, Desired::Run(pod.clone()), done_tx.clone()));
                }
            }
        }
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
