//! One pod's prober: a task per (container instance, probe kind) while
//! that container runs, each probing on its period and publishing a
//! verdict when a threshold of consecutive results is reached. The pod
//! worker owns it: it calls `sync` after each look at the runtime (which
//! starts and stops tasks), reads the verdicts for the status, and asks it
//! to kill containers that failed a liveness or startup probe; the plan
//! then restarts them by the restart policy and crash-loop back-off.
//!
//! Verdicts are keyed by container ID, so a restarted container starts
//! over: not started, not ready. A startup probe gates the others: the
//! liveness and readiness tasks start once it succeeded. The prober never
//! touches a container but to kill it for a failed probe.

mod grpc;
pub mod http;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::api::events::EventOp;
use crate::cri::Cri;
use crate::error::Result;
use crate::pod::{Container, EnvValue, Pod, RestartPolicy};
use crate::pod_worker::{now_ns, short};
use crate::probe::{Handler, Probe, ProbeKind};
use crate::runtime_pod::{ContainerState, RuntimeContainer, RuntimePod};

/// What one run of a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The container answered wrong, or not in time: counts.
    Failure(String),
    /// The probe could not be run (the runtime failed, its port does not
    /// resolve): does not count.
    Error(String),
}

/// A published probe result (upstream's results manager values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure,
}

/// Consecutive outcomes of one probe, and when they cross a threshold.
#[derive(Debug, Clone)]
pub struct Counter {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
}

impl Counter {
    pub fn new(probe: &Probe) -> Self {
        Counter {
            success_threshold: probe.success_threshold.max(1),
            failure_threshold: probe.failure_threshold.max(1),
            last: None,
            run: 0,
        }
    }

    /// Count one outcome; the verdict once this many in a row reach the
    /// threshold (and on every further one of the same), None below it.
    pub fn observe(&mut self, ok: bool) -> Option<Verdict> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let (threshold, verdict) = if ok {
            (self.success_threshold, Verdict::Success)
        } else {
            (self.failure_threshold, Verdict::Failure)
        };
        (self.run >= threshold).then_some(verdict)
    }
}

/// Whether a probe task is done after publishing `v`: a startup probe
/// once it succeeded (the container has started), liveness and startup
/// once they failed (the container is killed; its successor gets new
/// tasks). Readiness goes on for as long as the container runs.
pub fn finished(kind: ProbeKind, v: Verdict) -> bool {
    matches!(
        (kind, v),
        (ProbeKind::Startup, Verdict::Success)
            | (ProbeKind::Liveness | ProbeKind::Startup, Verdict::Failure)
    )
}

/// The verdicts of a pod's probes, by container ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Results(BTreeMap<(String, ProbeKind), Verdict>);

impl Results {
    pub const fn new() -> Self {
        Results(BTreeMap::new())
    }

    pub fn get(&self, id: &str, kind: ProbeKind) -> Option<Verdict> {
        self.0.get(&(id.to_owned(), kind)).copied()
    }

    /// Record `v`; whether that changed anything.
    pub fn set(&mut self, id: &str, kind: ProbeKind, v: Verdict) -> bool {
        self.0.insert((id.to_owned(), kind), v) != Some(v)
    }

    /// Whether running container `id` (of spec `c`) has started: it has no
    /// startup probe, or that succeeded.
    pub fn started(&self, c: &Container, id: &str) -> bool {
        c.probes.startup.is_none() || self.get(id, ProbeKind::Startup) == Some(Verdict::Success)
    }

    /// Whether running container `id` is ready: started, and its readiness
    /// probe (if any) succeeded.
    pub fn ready(&self, c: &Container, id: &str) -> bool {
        self.started(c, id)
            && (c.probes.readiness.is_none()
                || self.get(id, ProbeKind::Readiness) == Some(Verdict::Success))
    }

    fn retain_containers(&mut self, ids: &HashSet<&str>) {
        self.0.retain(|(id, _), _| ids.contains(id.as_str()));
    }
}

/// The running instance of each of the pod's containers in its current
/// sandbox, with its spec.
fn running<'a>(
    pod: &'a Pod,
    rt: &'a RuntimePod,
) -> impl Iterator<Item = (&'a Container, &'a RuntimeContainer, i64)> + 'a {
    let sb = rt.current_sandbox().map(|s| s.id.as_str()).unwrap_or("");
    pod.long_running().filter_map(move |c| {
        let inst = rt.latest_in(&c.name, sb)?;
        match inst.state {
            ContainerState::Running { started_at } => Some((c, inst, started_at)),
            _ => None,
        }
    })
}

/// Where events about container `c` point.
fn field_path(c: &Container) -> String {
    if c.sidecar {
        format!("spec.initContainers{{{}}}", c.name)
    } else {
        format!("spec.containers{{{}}}", c.name)
    }
}

/// The probe tasks there should be: per running container, its startup
/// probe until that has a verdict; its liveness and readiness probes once
/// it has started (liveness until it failed).
pub fn wanted<'a>(
    pod: &'a Pod,
    rt: &'a RuntimePod,
    results: &Results,
) -> Vec<(&'a Container, &'a RuntimeContainer, i64, ProbeKind)> {
    let mut out = Vec::new();
    for (c, inst, started_at) in running(pod, rt) {
        let started = results.started(c, &inst.id);
        for (kind, _) in c.probes.iter() {
            let want = match kind {
                ProbeKind::Startup => results.get(&inst.id, kind).is_none(),
                ProbeKind::Liveness => {
                    started && results.get(&inst.id, kind) != Some(Verdict::Failure)
                }
                ProbeKind::Readiness => started,
            };
            if want {
                out.push((c, inst, started_at, kind));
            }
        }
    }
    out
}

/// A running container that failed its liveness or startup probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub id: String,
    pub name: String,
    pub kind: ProbeKind,
    /// The kill's grace period: the probe's, else the pod's.
    pub grace: Duration,
}

/// The pod's running containers to kill for a failed probe.
pub fn unhealthy(pod: &Pod, rt: &RuntimePod, results: &Results) -> Vec<Unhealthy> {
    let mut out = Vec::new();
    for (c, inst, _) in running(pod, rt) {
        for kind in [ProbeKind::Startup, ProbeKind::Liveness] {
            if let Some(p) = c.probes.get(kind)
                && results.get(&inst.id, kind) == Some(Verdict::Failure)
            {
                out.push(Unhealthy {
                    id: inst.id.clone(),
                    name: c.name.clone(),
                    kind,
                    grace: p.termination_grace.unwrap_or(pod.grace_period),
                });
                break;
            }
        }
    }
    out
}

/// What the probe tasks share with the prober.
struct Shared {
    cri: Cri,
    results: Mutex<Results>,
    /// The pod worker's: a changed verdict makes it sync.
    wake: Arc<Notify>,
    /// API server mode: `Unhealthy` and `Killing` events go here.
    events: Option<mpsc::UnboundedSender<EventOp>>,
}

impl Shared {
    fn publish(&self, id: &str, kind: ProbeKind, v: Verdict) {
        let changed = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(id, kind, v);
        if changed {
            self.wake.notify_one();
        }
    }
}

pub struct Prober {
    shared: Arc<Shared>,
    host_ip: Option<String>,
    tasks: HashMap<(String, ProbeKind), JoinHandle<()>>,
    /// Containers killed for a failed probe: they count as failed whatever
    /// their exit code (upstream restarts them unless the policy is Never).
    killed: BTreeSet<String>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Prober {
    /// `wake` is notified when a verdict changes; `host_ip` is the pod IP
    /// of host-network pods.
    pub fn new(
        cri: Cri,
        wake: Arc<Notify>,
        host_ip: Option<String>,
        events: Option<mpsc::UnboundedSender<EventOp>>,
    ) -> Self {
        Prober {
            shared: Arc::new(Shared {
                cri,
                results: Mutex::new(Results::new()),
                wake,
                events,
            }),
            host_ip,
            tasks: HashMap::new(),
            killed: BTreeSet::new(),
        }
    }

    /// The current verdicts.
    pub fn results(&self) -> Results {
        self.shared
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Containers this prober killed (still known to the runtime).
    pub fn killed(&self) -> &BTreeSet<String> {
        &self.killed
    }

    /// Start the probe tasks `rt`'s running containers want, stop the
    /// others, forget the verdicts of containers that no longer run.
    pub fn sync(&mut self, pod: &Pod, rt: &RuntimePod) {
        let running_ids: HashSet<&str> = rt
            .containers
            .iter()
            .filter(|c| c.is_running())
            .map(|c| c.id.as_str())
            .collect();
        let results = {
            let mut r = self
                .shared
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            r.retain_containers(&running_ids);
            r.clone()
        };
        self.killed
            .retain(|id| rt.containers.iter().any(|c| &c.id == id));
        let want = wanted(pod, rt, &results);
        let keys: HashSet<(String, ProbeKind)> = want
            .iter()
            .map(|(_, inst, _, kind)| (inst.id.clone(), *kind))
            .collect();
        self.tasks.retain(|k, h| {
            let keep = keys.contains(k);
            if !keep {
                h.abort();
            }
            keep
        });
        let pod_ip = if pod.host_network {
            self.host_ip.clone()
        } else {
            rt.current_sandbox().and_then(|s| s.ip.clone())
        };
        for (c, inst, started_at, kind) in want {
            let key = (inst.id.clone(), kind);
            if self.tasks.get(&key).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let Some(probe) = c.probes.get(kind) else {
                continue;
            };
            let job = Job {
                event: EventOp {
                    namespace: pod.namespace.clone(),
                    pod_name: pod.name.clone(),
                    pod_uid: pod.uid.clone(),
                    field_path: Some(field_path(c)),
                    warning: true,
                    reason: "Unhealthy".into(),
                    message: String::new(),
                },
                pod: pod.full_name(),
                container: c.name.clone(),
                id: inst.id.clone(),
                kind,
                probe: probe.clone(),
                command: exec_command(c, probe),
                pod_ip: pod_ip.clone(),
                started_at,
            };
            tracing::debug!(pod = %job.pod, container = %c.name, id = %short(&inst.id), probe = kind.lower(), "starting probe");
            self.tasks
                .insert(key, tokio::spawn(job.run(self.shared.clone())));
        }
    }

    /// IDs of the running containers whose startup probe has not succeeded.
    pub fn startup_pending(&self, pod: &Pod, rt: &RuntimePod) -> BTreeSet<String> {
        let results = self.results();
        running(pod, rt)
            .filter(|(c, inst, _)| !results.started(c, &inst.id))
            .map(|(_, inst, _)| inst.id.clone())
            .collect()
    }

    /// Kill the running containers whose liveness or startup probe failed
    /// (each within the probe's grace period, else the pod's). Whether it
    /// killed any: the caller then looks at the runtime again.
    pub async fn kill_unhealthy(&mut self, pod: &Pod, rt: &RuntimePod) -> Result<bool> {
        let list = unhealthy(pod, rt, &self.results());
        for u in &list {
            let path = pod
                .long_running()
                .find(|c| c.name == u.name)
                .map(field_path)
                .unwrap_or_default();
            let will = if pod.restart_policy == RestartPolicy::Never {
                ""
            } else {
                ", will be restarted"
            };
            tracing::info!(pod = %pod.full_name(), container = %u.name, id = %short(&u.id), grace = ?u.grace,
                "Killing: Container {} failed {} probe{will}", u.name, u.kind.lower());
            if let Some(tx) = &self.shared.events {
                let _ = tx.send(EventOp {
                    namespace: pod.namespace.clone(),
                    pod_name: pod.name.clone(),
                    pod_uid: pod.uid.clone(),
                    field_path: Some(path.clone()),
                    warning: false,
                    reason: "Killing".into(),
                    message: format!("Container {} failed {} probe{will}", u.name, u.kind.lower()),
                });
            }
            for kind in ProbeKind::ALL {
                if let Some(h) = self.tasks.remove(&(u.id.clone(), kind)) {
                    h.abort();
                }
            }
            let hook = pod
                .long_running()
                .find(|c| c.name == u.name)
                .and_then(|c| c.lifecycle.pre_stop.as_ref());
            let ip = rt.current_sandbox().and_then(|s| s.ip.clone());
            let (stopped, failed) = crate::lifecycle::stop(
                &self.shared.cri,
                pod,
                &u.name,
                &u.id,
                hook,
                ip.as_deref(),
                u.grace,
            )
            .await;
            if let (Some(msg), Some(tx)) = (failed, &self.shared.events) {
                let _ = tx.send(EventOp {
                    namespace: pod.namespace.clone(),
                    pod_name: pod.name.clone(),
                    pod_uid: pod.uid.clone(),
                    field_path: Some(path.clone()),
                    warning: true,
                    reason: "FailedPreStopHook".into(),
                    message: msg,
                });
            }
            stopped?;
            self.killed.insert(u.id.clone());
        }
        Ok(!list.is_empty())
    }

    /// Stop every probe (the pod is terminating).
    pub fn stop(&mut self) {
        for (_, h) in self.tasks.drain() {
            h.abort();
        }
    }
}

/// An exec probe's command with `$(VAR)` references to the container's
/// literal environment variables expanded (as upstream does).
fn exec_command(c: &Container, probe: &Probe) -> Vec<String> {
    let Handler::Exec { command } = &probe.handler else {
        return Vec::new();
    };
    let lookup = |n: &str| {
        c.env.iter().rev().find_map(|(k, v)| match v {
            EnvValue::Literal(s) if k == n => Some(s.clone()),
            _ => None,
        })
    };
    command
        .iter()
        .map(|s| crate::pod::expand(s, &lookup))
        .collect()
}

/// One probe of one container instance.
struct Job {
    /// The `Unhealthy` event of this probe (message filled per failure).
    event: EventOp,
    pod: String,
    container: String,
    id: String,
    kind: ProbeKind,
    probe: Probe,
    /// Exec probes: the command, expanded.
    command: Vec<String>,
    pod_ip: Option<String>,
    /// When the container started (ns since the epoch).
    started_at: i64,
}

impl Job {
    async fn run(self, shared: Arc<Shared>) {
        let up = Duration::from_nanos(now_ns().saturating_sub(self.started_at).max(0) as u64);
        if let Some(wait) = self.probe.initial_delay.checked_sub(up) {
            tokio::time::sleep(wait).await;
        }
        let mut counter = Counter::new(&self.probe);
        let mut ticker = tokio::time::interval(self.probe.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let ok = match self.once(&shared.cri).await {
                Outcome::Success => {
                    tracing::trace!(pod = %self.pod, container = %self.container, probe = self.kind.lower(), "probe succeeded");
                    true
                }
                Outcome::Failure(msg) => {
                    self.unhealthy(&shared, &format!("failed: {msg}"));
                    false
                }
                // As upstream's: an event, and no result (it does not count).
                Outcome::Error(msg) => {
                    self.unhealthy(
                        &shared,
                        &format!("errored and resulted in unknown state: {msg}"),
                    );
                    continue;
                }
            };
            if let Some(v) = counter.observe(ok) {
                shared.publish(&self.id, self.kind, v);
                if finished(self.kind, v) {
                    return;
                }
            }
        }
    }

    /// Log and post this probe's `Unhealthy` event: "<Kind> probe <what>".
    fn unhealthy(&self, shared: &Shared, what: &str) {
        let message = format!("{} probe {what}", self.kind.title());
        tracing::warn!(pod = %self.pod, container = %self.container, id = %short(&self.id), "Unhealthy: {message}");
        if let Some(tx) = &shared.events {
            let _ = tx.send(EventOp {
                message,
                ..self.event.clone()
            });
        }
    }

    /// Run the probe once, within its timeout.
    async fn once(&self, cri: &Cri) -> Outcome {
        let t = self.probe.timeout;
        let target = |host: &Option<String>| {
            host.clone()
                .or_else(|| self.pod_ip.clone())
                .ok_or_else(|| Outcome::Error("the pod has no IP address".into()))
        };
        match &self.probe.handler {
            Handler::Exec { .. } => exec(cri, &self.id, &self.command, t).await,
            Handler::HttpGet(get) => match target(&get.host) {
                Ok(host) => http::probe(&host, get, t).await,
                Err(e) => e,
            },
            Handler::TcpSocket { host, port } => match target(host) {
                Ok(host) => tcp(&host, *port, t).await,
                Err(e) => e,
            },
            Handler::Grpc { port, service } => match target(&None) {
                Ok(host) => grpc::probe(&host, *port, service, t).await,
                Err(e) => e,
            },
            Handler::Unresolved(e) => Outcome::Error(e.clone()),
        }
    }
}

/// Output of a failed command, as the failure's message (10 KiB at most).
fn command_output(stdout: &[u8], stderr: &[u8], cmd: &[String], code: i32) -> String {
    let mut out = String::from_utf8_lossy(stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(stderr));
    let mut out = out.trim().to_owned();
    if out.len() > 10 * 1024 {
        let mut end = 10 * 1024;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    if out.is_empty() {
        format!("command {cmd:?} exited with {code}")
    } else {
        out
    }
}

async fn exec(cri: &Cri, id: &str, cmd: &[String], timeout: Duration) -> Outcome {
    match cri.exec_sync(id, cmd.to_vec(), timeout).await {
        Ok(r) if r.exit_code == 0 => Outcome::Success,
        Ok(r) => Outcome::Failure(command_output(&r.stdout, &r.stderr, cmd, r.exit_code)),
        Err(e) if e.cri_code() == Some(tonic::Code::DeadlineExceeded) => Outcome::Failure(format!(
            "command {cmd:?} timed out after {}s",
            timeout.as_secs()
        )),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// `host:port`, an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{S, ctr, exited, pod, sandbox};

    fn probe(yaml: &str) -> Probe {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let c: k8s_openapi::api::core::v1::Container =
            serde_json::from_value(serde_json::json!({"name": "a", "livenessProbe": v})).unwrap();
        Probe::from_api(
            c.liveness_probe.as_ref().unwrap(),
            ProbeKind::Readiness,
            &c,
            "p",
        )
        .unwrap()
    }

    #[test]
    fn thresholds_count_consecutive_outcomes() {
        let mut c = Counter::new(&probe(
            "{tcpSocket: {port: 1}, successThreshold: 2, failureThreshold: 3}",
        ));
        let seen: Vec<_> = [
            true, false, false, true, false, false, false, false, true, true,
        ]
        .into_iter()
        .map(|ok| c.observe(ok))
        .collect();
        use Verdict::*;
        assert_eq!(
            seen,
            [
                None,
                None,
                None,
                None,
                None,
                None,
                Some(Failure),
                Some(Failure),
                None,
                Some(Success)
            ]
        );
        // Defaults: one success, three failures.
        let mut c = Counter::new(&probe("{tcpSocket: {port: 1}}"));
        assert_eq!(c.observe(true), Some(Success));
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), None);
        assert_eq!(c.observe(false), Some(Failure));
    }

    #[test]
    fn tasks_end_on_the_verdicts_that_settle_them() {
        use ProbeKind::*;
        use Verdict::*;
        assert!(finished(Startup, Success));
        assert!(finished(Startup, Failure));
        assert!(finished(Liveness, Failure));
        assert!(!finished(Liveness, Success));
        assert!(!finished(Readiness, Failure));
        assert!(!finished(Readiness, Success));
    }

    fn running_at(t: i64) -> ContainerState {
        ContainerState::Running { started_at: t }
    }

    #[test]
    fn startup_gates_liveness_and_readiness() {
        let p = pod(
            "",
            "{name: a, image: b, startupProbe: {exec: {command: [x]}}, livenessProbe: {tcpSocket: {port: 80}}, readinessProbe: {tcpSocket: {port: 80}}}, {name: c, image: b}",
        );
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, S)],
            vec![
                ctr(&p, "a", "sb", 0, 2 * S, running_at(2 * S)),
                ctr(&p, "c", "sb", 0, 2 * S, running_at(2 * S)),
            ],
        );
        let kinds = |r: &Results| {
            wanted(&p, &rt, r)
                .iter()
                .map(|(c, i, t, k)| (c.name.as_str(), i.id.as_str(), *t, *k))
                .collect::<Vec<_>>()
        };
        let mut r = Results::new();
        assert_eq!(kinds(&r), [("a", "a-0", 2 * S, ProbeKind::Startup)]);
        let (a, c) = (&p.containers[0], &p.containers[1]);
        assert!(!r.started(a, "a-0") && !r.ready(a, "a-0"));
        // A container without probes is started and ready when it runs.
        assert!(r.started(c, "c-0") && r.ready(c, "c-0"));
        assert!(r.set("a-0", ProbeKind::Startup, Verdict::Success));
        assert!(!r.set("a-0", ProbeKind::Startup, Verdict::Success));
        assert_eq!(
            kinds(&r),
            [
                ("a", "a-0", 2 * S, ProbeKind::Liveness),
                ("a", "a-0", 2 * S, ProbeKind::Readiness)
            ]
        );
        assert!(r.started(a, "a-0") && !r.ready(a, "a-0"));
        r.set("a-0", ProbeKind::Readiness, Verdict::Success);
        assert!(r.ready(a, "a-0"));
        // Another instance of the container starts over.
        assert!(!r.started(a, "a-1") && !r.ready(a, "a-1"));
        assert!(unhealthy(&p, &rt, &r).is_empty());
        // A failed liveness probe: no more liveness task, a kill.
        r.set("a-0", ProbeKind::Liveness, Verdict::Failure);
        assert_eq!(kinds(&r), [("a", "a-0", 2 * S, ProbeKind::Readiness)]);
        assert_eq!(
            unhealthy(&p, &rt, &r),
            [Unhealthy {
                id: "a-0".into(),
                name: "a".into(),
                kind: ProbeKind::Liveness,
                grace: Duration::from_secs(30)
            }]
        );
    }

    #[test]
    fn failed_startup_kills_with_the_probes_grace_and_exited_containers_are_not_probed() {
        let p = pod(
            "terminationGracePeriodSeconds: 7,",
            "{name: a, image: b, startupProbe: {exec: {command: [x]}, terminationGracePeriodSeconds: 2}}",
        );
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, S)],
            vec![ctr(&p, "a", "sb", 0, 2 * S, running_at(2 * S))],
        );
        let mut r = Results::new();
        r.set("a-0", ProbeKind::Startup, Verdict::Failure);
        assert!(wanted(&p, &rt, &r).is_empty());
        let u = unhealthy(&p, &rt, &r);
        assert_eq!(
            (u[0].kind, u[0].grace),
            (ProbeKind::Startup, Duration::from_secs(2))
        );
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, S)],
            vec![ctr(&p, "a", "sb", 0, 2 * S, exited(137, 2 * S, 9 * S))],
        );
        assert!(wanted(&p, &rt, &Results::new()).is_empty());
        assert!(unhealthy(&p, &rt, &r).is_empty());
    }

    #[test]
    fn exec_commands_expand_literal_variables() {
        let p = pod(
            "",
            "{name: a, image: b, env: [{name: F, value: /tmp/ok}, {name: P, valueFrom: {fieldRef: {fieldPath: metadata.name}}}], livenessProbe: {exec: {command: [cat, '$(F)', '$(P)']}}}",
        );
        let c = &p.containers[0];
        assert_eq!(
            exec_command(c, c.probes.liveness.as_ref().unwrap()),
            ["cat", "/tmp/ok", "$(P)"]
        );
        assert_eq!(
            command_output(b"", b"", &["false".into()], 1),
            "command [\"false\"] exited with 1"
        );
        assert_eq!(command_output(b"out\n", b"err\n", &[], 1), "out\nerr");
    }

    #[tokio::test]
    async fn tcp_probes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(
            tcp("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Success
        );
        drop(l);
        match tcp("127.0.0.1", port, Duration::from_secs(1)).await {
            Outcome::Failure(m) => assert!(
                m.starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
                "{m}"
            ),
            o => panic!("{o:?}"),
        }
        assert_eq!(host_port("::1", 80), "[::1]:80");
    }
}
