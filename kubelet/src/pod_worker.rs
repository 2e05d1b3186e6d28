//! One worker per pod UID: a task that brings the runtime in line with the
//! pod's spec (the plan in `plan.rs`), reports its status, and on removal
//! terminates it (containers stopped within the grace period, then the
//! sandbox stopped and removed). Workers wake on changes the PLEG saw, on
//! spec changes, when a back-off ends, and every syncFrequency.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use k8s_openapi::api::core::v1 as api;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::backoff::BackOff;
use crate::config::Settings;
use crate::cri::Cri;
use crate::cri_config::{self, Context};
use crate::dns::{ResolvConf, pod_dns};
use crate::error::{Error, Result};
use crate::plan::{self, BackOffUpdate, Phase, Waiting, backoff_key};
use crate::pod::{Container, Pod, PullPolicy};
use crate::prober::Prober;
use crate::runtime_pod::{ContainerState, RuntimePod};
use crate::status::{StatusInput, pod_status};
use crate::volume_manager::VolumeManager;

/// What the kubelet and its runtime share with every worker.
pub struct Shared {
    pub cri: Cri,
    pub settings: Settings,
    pub runtime_name: String,
    pub host_ip: Option<String>,
    pub memory_capacity: i64,
    pub host_resolv: ResolvConf,
    /// API server mode: the client (volumes read ConfigMaps, Secrets and
    /// service account tokens through it).
    pub api_client: Option<kube::Client>,
    /// API server mode: where events go.
    pub events: Option<mpsc::UnboundedSender<crate::api::events::EventOp>>,
    /// API server mode: where pod statuses go.
    pub api_status: Option<mpsc::UnboundedSender<crate::api::status::StatusOp>>,
    /// Pod cgroups by QoS (None: cgroupsPerQOS off, or no cgroups here).
    pub pod_cgroups: Option<crate::pod_cgroups::PodCgroups>,
    /// API server mode: every Service, for the service variables.
    pub services: Option<kube::runtime::reflector::Store<api::Service>>,
    /// The pods' user namespaces (`hostUsers: false`).
    pub userns: crate::userns::UserNamespaces,
}

impl Shared {
    /// `<root-dir>/pods/<uid>`: the pod's folder (its status file).
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.settings.root_dir.join("pods").join(uid)
    }
}

#[derive(Debug, Clone)]
pub enum Desired {
    Run(Arc<Pod>),
    /// Stop everything of the pod within this grace period and remove it.
    Terminate(Duration),
}

pub struct WorkerHandle {
    pub desired: watch::Sender<Desired>,
    pub wake: Arc<Notify>,
    pub task: JoinHandle<()>,
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Start the worker of pod `uid`; it sends `uid` on `done` when it has
/// terminated the pod and exited.
pub fn spawn(
    shared: Arc<Shared>,
    uid: String,
    desired: Desired,
    done: mpsc::UnboundedSender<String>,
) -> WorkerHandle {
    let (tx, rx) = watch::channel(desired);
    let wake = Arc::new(Notify::new());
    let volumes = VolumeManager::new(
        shared.pod_dir(&uid),
        shared.api_client.clone(),
        shared.memory_capacity,
    );
    let prober = Prober::new(
        shared.cri.clone(),
        wake.clone(),
        shared.host_ip.clone(),
        shared.events.clone(),
    );
    let w = Worker {
        volumes,
        volume_paths: HashMap::new(),
        shared,
        uid: uid.clone(),
        backoff: BackOff::default(),
        pull_backoff: BackOff::default(),
        pull_failed_at: HashMap::new(),
        problems: BTreeMap::new(),
        last_status: None,
        last_phase: None,
        prober,
        last_pod: None,
    };
    let task = tokio::spawn(w.run(rx, wake.clone(), done));
    WorkerHandle {
        desired: tx,
        wake,
        task,
    }
}

struct Worker {
    shared: Arc<Shared>,
    volumes: VolumeManager,
    /// Each volume's host path, from the last successful setup.
    volume_paths: HashMap<String, PathBuf>,
    uid: String,
    backoff: BackOff,
    pull_backoff: BackOff,
    pull_failed_at: HashMap<String, i64>,
    /// Why containers wait besides back-off (image pulls, create errors).
    problems: BTreeMap<String, Waiting>,
    last_status: Option<api::PodStatus>,
    last_phase: Option<Phase>,
    /// The pod's probes; stopped with the worker.
    prober: Prober,
    /// The last spec synced: termination runs its preStop hooks.
    last_pod: Option<Arc<Pod>>,
}

/// Resolves once the desired state turns to Terminate (a sync in flight,
/// such as a postStart hook that never returns, is then abandoned).
async fn until_terminate(rx: &mut watch::Receiver<Desired>) {
    loop {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if matches!(*rx.borrow(), Desired::Terminate(_)) {
            return;
        }
    }
}

impl Worker {
    /// Post an event about the pod (or one of its containers).
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let Some(tx) = &self.shared.events else {
            return;
        };
        let field_path = container.map(|n| {
            if pod.init_containers.iter().any(|c| c.name == n) {
                format!("spec.initContainers{{{n}}}")
            } else {
                format!("spec.containers{{{n}}}")
            }
        });
        let _ = tx.send(crate::api::events::EventOp {
            namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            field_path,
            warning,
            reason: reason.into(),
            message,
        });
    }

    async fn run(
        mut self,
        mut rx: watch::Receiver<Desired>,
        wake: Arc<Notify>,
        done: mpsc::UnboundedSender<String>,
    ) {
        loop {
            let desired = rx.borrow_and_update().clone();
            match desired {
                Desired::Run(pod) => {
                    self.last_pod = Some(pod.clone());
                    let synced = tokio::select! {
                        r = self.sync(&pod) => r,
                        _ = until_terminate(&mut rx) => continue,
                    };
                    let next = match synced {
                        Ok(next) => next,
                        Err(e) => {
                            tracing::warn!(pod = %pod.full_name(), "sync failed: {e}");
                            Some(Duration::from_secs(2))
                        }
                    };
                    let sleep = next
                        .unwrap_or(self.shared.settings.sync_frequency)
                        .min(self.shared.settings.sync_frequency);
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { return },
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(sleep) => {}
                    }
                }
                Desired::Terminate(grace) => {
                    let mut delay = Duration::from_secs(1);
                    while let Err(e) = self.terminate(grace).await {
                        tracing::warn!(pod_uid = %self.uid, "terminating failed, retrying in {delay:?}: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                    let _ = done.send(self.uid.clone());
                    return;
                }
            }
        }
    }

    fn context<'a>(&'a self, pod: &Pod, pod_ip: Option<&'a str>) -> Context<'a> {
        let s = &self.shared;
        Context {
            pod_logs_dir: &s.settings.pod_logs_dir,
            dns: pod_dns(pod, &s.settings.dns, &s.host_resolv),
            pod_ip,
            host_ip: s.host_ip.as_deref(),
            memory_capacity: s.memory_capacity,
            objects: Default::default(),
            service_env: Vec::new(),
            seccomp_root: s.settings.root_dir.join("seccomp"),
            cgroup_parent: s
                .pod_cgroups
                .as_ref()
                .map(|pc| pc.pod_parent(pod.qos, &pod.uid)),
            userns: (!pod.host_users).then(|| s.userns.get(&pod.uid)).flatten(),
        }
    }

    /// The pod's own user namespace before its sandbox or containers are
    /// made (None: it uses the host's), allocated on first use. Refused,
    /// with why, when the spec asks for host namespaces with it, the
    /// runtime cannot make one (checked for a new sandbox) or no block of
    /// ids is left.
    async fn user_namespace(
        &self,
        pod: &Pod,
        new_sandbox: bool,
    ) -> std::result::Result<Option<crate::userns::Mapping>, String> {
        if pod.host_users {
            return Ok(None);
        }
        crate::userns::check_spec(pod.host_network, pod.host_pid, pod.host_ipc)?;
        if new_sandbox {
            let status = self.shared.cri.status().await.map_err(|e| e.to_string())?;
            crate::userns::check_runtime(&status.runtime_handlers)?;
        }
        self.shared.userns.get_or_create(&pod.uid).map(Some)
    }

    /// One sync: returns when to sync again at the latest.
    async fn sync(&mut self, pod: &Pod) -> Result<Option<Duration>> {
        let cri = self.shared.cri.clone();
        let mut rt = RuntimePod::fetch(&cri, &pod.uid).await?;
        if self.prober.kill_unhealthy(pod, &rt).await? {
            rt = RuntimePod::fetch(&cri, &pod.uid).await?;
        }
        rt.probe_killed = self.prober.killed().clone();
        rt.startup_pending = self.prober.startup_pending(pod, &rt);
        let now = now_ns();
        let plan = plan::plan(pod, &rt, &self.backoff, now);
        let mut wake_in = plan.wake_in;
        for (name, w) in &plan.waiting {
            if w.reason == "CrashLoopBackOff" {
                self.event(
                    pod,
                    Some(name),
                    true,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {name} in pod {}",
                        pod.name
                    ),
                );
            }
        }

        // Volumes before the sandbox and containers (and refreshed on every
        // sync while the pod runs, so changed ConfigMaps and Secrets and
        // expiring tokens reach the files).
        let mut plan = plan;
        if pod.volumes.is_empty() {
            self.volume_paths.clear();
        } else if plan.create_sandbox.is_some()
            || !plan.start.is_empty()
            || rt.current_sandbox().is_some_and(|s| s.ready)
        {
            match self.volumes.setup(pod).await {
                Ok(p) => {
                    self.problems.retain(|_, w| w.reason != "ContainerCreating");
                    self.volume_paths = p;
                }
                Err(e) => {
                    tracing::warn!(pod = %pod.full_name(), "{e}");
                    self.event(pod, None, true, "FailedMount", e.to_string());
                    for c in pod.all_containers() {
                        self.problems.insert(
                            c.name.clone(),
                            Waiting {
                                reason: "ContainerCreating".into(),
                                message: e.to_string(),
                            },
                        );
                    }
                    plan.create_sandbox = None;
                    plan.start.clear();
                    wake_in = Some(
                        wake_in.map_or(Duration::from_secs(5), |w| w.min(Duration::from_secs(5))),
                    );
                }
            }
        }
        if (plan.create_sandbox.is_some() || !plan.start.is_empty())
            && let Err(e) = self
                .user_namespace(pod, plan.create_sandbox.is_some())
                .await
        {
            // As upstream's createPodSandbox failures: an event, and the
            // containers wait in ContainerCreating.
            let message = format!("Failed to create pod sandbox: {e}");
            tracing::warn!(pod = %pod.full_name(), "FailedCreatePodSandBox: {message}");
            self.event(pod, None, true, "FailedCreatePodSandBox", message.clone());
            for c in pod.all_containers() {
                self.problems.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: message.clone(),
                    },
                );
            }
            plan.create_sandbox = None;
            plan.start.clear();
            wake_in =
                Some(wake_in.map_or(Duration::from_secs(10), |w| w.min(Duration::from_secs(10))));
        }
        let acted = plan.create_sandbox.is_some()
            || !plan.kill.is_empty()
            || !plan.start.is_empty()
            || !plan.stop_sandboxes.is_empty();
        for id in &plan.stop_sandboxes {
            tracing::info!(pod = %pod.full_name(), sandbox = %short(id), "stopping sandbox");
            cri.stop_pod_sandbox(id).await?;
        }
        for k in &plan.kill {
            tracing::info!(pod = %pod.full_name(), container = %k.name, id = %short(&k.id), "Killing: {}", k.reason);
            self.event(
                pod,
                Some(&k.name),
                false,
                "Killing",
                format!("Stopping container {}", k.name),
            );
            let hook = if k.remove {
                None // created, never started
            } else {
                pod.all_containers()
                    .find(|c| c.name == k.name)
                    .and_then(|c| c.lifecycle.pre_stop.as_ref())
            };
            let ip = rt.current_sandbox().and_then(|s| s.ip.clone());
            let (stopped, failed) = crate::lifecycle::stop(
                &cri,
                pod,
                &k.name,
                &k.id,
                hook,
                ip.as_deref(),
                pod.grace_period,
            )
            .await;
            if let Some(msg) = failed {
                self.event(pod, Some(&k.name), true, "FailedPreStopHook", msg);
            }
            stopped?;
            if k.remove {
                cri.remove_container(&k.id).await?;
            }
        }
        let mut sandbox = rt
            .current_sandbox()
            .filter(|s| s.ready)
            .map(|s| (s.id.clone(), s.ip.clone()));
        let mut sandbox_attempt = rt.current_sandbox().map(|s| s.attempt).unwrap_or(0);
        if let Some(attempt) = plan.create_sandbox {
            if let Some(pc) = &self.shared.pod_cgroups {
                pc.ensure_pod(pod).map_err(|e| {
                    Error::io(self.shared.pod_dir(&pod.uid), std::io::Error::other(e))
                })?;
            }
            let ctx = self.context(pod, None);
            let config = cri_config::sandbox_config(pod, attempt, &ctx);
            let log_dir = cri_config::pod_log_dir(&self.shared.settings.pod_logs_dir, pod);
            std::fs::create_dir_all(&log_dir).map_err(|e| Error::io(&log_dir, e))?;
            let started = Instant::now();
            let id = cri.run_pod_sandbox(config).await?;
            let ip = cri
                .pod_sandbox_status(&id)
                .await?
                .network
                .map(|n| n.ip)
                .filter(|ip| !ip.is_empty());
            tracing::info!(pod = %pod.full_name(), sandbox = %short(&id), ip = ?ip, attempt, took = ?started.elapsed(), "sandbox ready");
            sandbox = Some((id, ip));
            sandbox_attempt = attempt;
        }
        if let Some((sb_id, ip)) = &sandbox {
            let sandbox_config =
                cri_config::sandbox_config(pod, sandbox_attempt, &self.context(pod, None));
            for s in &plan.start {
                let c = if s.init {
                    &pod.init_containers[s.index]
                } else {
                    &pod.containers[s.index]
                };
                let key = backoff_key(pod, &c.name, &c.hash);
                match s.backoff {
                    BackOffUpdate::None => {}
                    BackOffUpdate::Next => self.backoff.next(&key, now),
                    BackOffUpdate::ResetThenNext => {
                        self.backoff.reset(&key);
                        self.backoff.next(&key, now);
                    }
                }
                match self
                    .start_container(
                        pod,
                        c,
                        s.restart_count,
                        sb_id,
                        ip.as_deref(),
                        &sandbox_config,
                    )
                    .await
                {
                    Ok(()) => {
                        self.problems.remove(&c.name);
                    }
                    Err((waiting, wait)) => {
                        tracing::warn!(pod = %pod.full_name(), container = %c.name, "{}: {}", waiting.reason, waiting.message);
                        let (reason, message) = match waiting.reason.as_str() {
                            // Its FailedPostStartHook event is out already.
                            "PostStartHookError" => ("", String::new()),
                            "ImagePullBackOff" => ("BackOff", waiting.message.clone()),
                            "ErrImageNeverPull" => ("ErrImageNeverPull", waiting.message.clone()),
                            // Their own events are out already.
                            r @ ("InvalidImageName" | "ImageInspectError" | "ErrImagePull") => {
                                ("Failed", format!("Error: {r}"))
                            }
                            _ => ("Failed", format!("Error: {}", waiting.message)),
                        };
                        if !reason.is_empty() {
                            self.event(pod, Some(&c.name), true, reason, message);
                        }
                        self.problems.insert(c.name.clone(), waiting);
                        if let Some(w) = wait {
                            wake_in = Some(wake_in.map_or(w, |x| x.min(w)));
                        }
                    }
                }
            }
        }
        let mut rt = if acted {
            RuntimePod::fetch(&cri, &pod.uid).await?
        } else {
            rt
        };
        rt.probe_killed = self.prober.killed().clone();
        rt.startup_pending = self.prober.startup_pending(pod, &rt);
        self.prober.sync(pod, &rt);
        self.collect_garbage(&rt).await;
        self.report(pod, &rt, &plan.waiting);
        Ok(wake_in)
    }

    /// Pull (per policy), create and start one container. An error is the
    /// container's waiting reason and when to try again.
    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        restart_count: u32,
        sandbox_id: &str,
        pod_ip: Option<&str>,
        sandbox_config: &k8s_cri::v1::PodSandboxConfig,
    ) -> std::result::Result<(), (Waiting, Option<Duration>)> {
        let cri = self.shared.cri.clone();
        let w = |reason: &str, message: String| Waiting {
            reason: reason.into(),
            message,
        };
        // Image: a reference that does not parse is upstream's
        // InvalidImageName, tried again at each sync, never pulled.
        if let Err(e) = berth_images::reference::ImageRef::parse_named(&c.image) {
            let msg = format!(
                "Failed to apply default image tag {:?}: couldn't parse image name {:?}: {e}",
                c.image, c.image
            );
            self.event(pod, Some(&c.name), true, "InspectFailed", msg.clone());
            return Err((w("InvalidImageName", msg), Some(Duration::from_secs(10))));
        }
        let present = match c.pull_policy {
            PullPolicy::Always => false,
            _ => match cri.image_status(&c.image).await {
                Ok(image) => image.is_some(),
                Err(e) => {
                    let msg = format!("Failed to inspect image {:?}: {e}", c.image);
                    self.event(pod, Some(&c.name), true, "InspectFailed", msg.clone());
                    return Err((w("ImageInspectError", msg), Some(Duration::from_secs(2))));
                }
            },
        };
        if present {
            self.event(
                pod,
                Some(&c.name),
                false,
                "Pulled",
                format!("Container image {:?} already present on machine", c.image),
            );
        }
        if !present {
            if c.pull_policy == PullPolicy::Never {
                return Err((
                    w(
                        "ErrImageNeverPull",
                        format!(
                            "Container image {:?} is not present with pull policy of Never",
                            c.image
                        ),
                    ),
                    None,
                ));
            }
            let now = now_ns();
            if let Some(failed) = self.pull_failed_at.get(&c.image)
                && let Some(left) = self.pull_backoff.remaining(&c.image, *failed, now)
            {
                return Err((
                    w(
                        "ImagePullBackOff",
                        format!("Back-off pulling image {:?}", c.image),
                    ),
                    Some(left),
                ));
            }
            tracing::info!(pod = %pod.full_name(), container = %c.name, image = %c.image, "Pulling image");
            self.event(
                pod,
                Some(&c.name),
                false,
                "Pulling",
                format!("Pulling image {:?}", c.image),
            );
            let started = Instant::now();
            let auth = self.volumes.pull_auth(pod, &c.image).await;
            match cri
                .pull_image(&c.image, auth, Some(sandbox_config.clone()))
                .await
            {
                Ok(r) => {
                    self.pull_failed_at.remove(&c.image);
                    self.pull_backoff.reset(&c.image);
                    tracing::info!(pod = %pod.full_name(), image = %c.image, image_ref = %r, took = ?started.elapsed(), "Pulled image");
                    self.event(
                        pod,
                        Some(&c.name),
                        false,
                        "Pulled",
                        format!(
                            "Successfully pulled image {:?} in {:?}",
                            c.image,
                            started.elapsed()
                        ),
                    );
                }
                Err(e) => {
                    self.pull_backoff.next(&c.image, now);
                    self.pull_failed_at.insert(c.image.clone(), now_ns());
                    // As upstream: this event, then "Error: ErrImagePull".
                    let msg = format!("Failed to pull image {:?}: {e}", c.image);
                    self.event(pod, Some(&c.name), true, "Failed", msg.clone());
                    return Err((
                        w("ErrImagePull", msg),
                        Some(self.pull_backoff.delay(&c.image)),
                    ));
                }
            }
        }
        let effective = crate::security::Effective::of(&pod.security, &c.security);
        if effective.common.run_as_non_root == Some(true) && effective.common.run_as_user.is_none()
        {
            let image = cri.image_status(&c.image).await.map_err(|e| {
                (
                    w("CreateContainerConfigError", e.to_string()),
                    Some(Duration::from_secs(10)),
                )
            })?;
            let uid = image.as_ref().and_then(|i| i.uid.as_ref()).map(|u| u.value);
            let user = image.map(|i| i.username).unwrap_or_default();
            crate::security::verify_non_root(&effective, uid, &user, &pod.full_name(), &c.name)
                .map_err(|e| {
                    (
                        w("CreateContainerConfigError", e),
                        Some(Duration::from_secs(10)),
                    )
                })?;
        } else {
            crate::security::verify_non_root(&effective, None, "", &pod.full_name(), &c.name)
                .map_err(|e| {
                    (
                        w("CreateContainerConfigError", e),
                        Some(Duration::from_secs(10)),
                    )
                })?;
        }
        let mounts = self
            .volumes
            .container_mounts(c, &self.volume_paths, pod)
            .map_err(|e| {
                (
                    w("CreateContainerConfigError", e),
                    Some(Duration::from_secs(10)),
                )
            })?;
        let objects = self.volumes.env_objects(pod, c).await.map_err(|e| {
            (
                w("CreateContainerConfigError", e),
                Some(Duration::from_secs(10)),
            )
        })?;
        let mut ctx = self.context(pod, pod_ip);
        ctx.objects = objects;
        if let Some(store) = &self.shared.services {
            // As upstream: no variables from a list not read yet.
            if store.wait_until_ready().now_or_never().is_none() {
                return Err((
                    w(
                        "CreateContainerConfigError",
                        "services have not yet been read at least once, cannot construct envvars"
                            .into(),
                    ),
                    Some(Duration::from_secs(1)),
                ));
            }
            let all = store.state();
            ctx.service_env = crate::service_env::service_env(
                all.iter().map(|s| s.as_ref()),
                &pod.namespace,
                pod.enable_service_links,
            );
        }
        let config = cri_config::container_config(pod, c, restart_count, &ctx, mounts);
        let id = cri
            .create_container(sandbox_id, config, sandbox_config.clone())
            .await
            .map_err(|e| {
                (
                    w("CreateContainerError", e.to_string()),
                    Some(Duration::from_secs(10)),
                )
            })?;
        tracing::info!(pod = %pod.full_name(), container = %c.name, id = %short(&id), restart_count, "Created container");
        self.event(
            pod,
            Some(&c.name),
            false,
            "Created",
            format!("Created container: {}", c.name),
        );
        cri.start_container(&id).await.map_err(|e| {
            (
                w("RunContainerError", e.to_string()),
                Some(Duration::from_secs(10)),
            )
        })?;
        tracing::info!(pod = %pod.full_name(), container = %c.name, id = %short(&id), "Started container");
        self.event(
            pod,
            Some(&c.name),
            false,
            "Started",
            format!("Started container {}", c.name),
        );
        if let Some(h) = &c.lifecycle.post_start
            && let Err(msg) = crate::lifecycle::run(&cri, pod, &c.name, &id, h, pod_ip).await
        {
            tracing::warn!(pod = %pod.full_name(), container = %c.name, "{msg}");
            self.event(pod, Some(&c.name), true, "FailedPostStartHook", msg.clone());
            self.event(
                pod,
                Some(&c.name),
                false,
                "Killing",
                "FailedPostStartHook".to_owned(),
            );
            let (stopped, failed) = crate::lifecycle::stop(
                &cri,
                pod,
                &c.name,
                &id,
                c.lifecycle.pre_stop.as_ref(),
                pod_ip,
                pod.grace_period,
            )
            .await;
            if let Some(m) = failed {
                self.event(pod, Some(&c.name), true, "FailedPreStopHook", m);
            }
            if let Err(e) = stopped {
                tracing::warn!(pod = %pod.full_name(), container = %c.name, "stopping after the failed postStart hook: {e}");
            }
            return Err((w("PostStartHookError", msg), None));
        }
        Ok(())
    }

    /// Keep the newest two instances of each container (the current one
    /// and the one its lastState describes); remove older exited ones and
    /// dead sandboxes that have no containers left.
    async fn collect_garbage(&self, rt: &RuntimePod) {
        let cri = &self.shared.cri;
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut removed = std::collections::HashSet::new();
        for c in &rt.containers {
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if *n > 2 && matches!(c.state, ContainerState::Exited { .. }) {
                match cri.remove_container(&c.id).await {
                    Ok(()) => {
                        removed.insert(c.id.clone());
                    }
                    Err(e) => tracing::debug!(container = %short(&c.id), "garbage collection: {e}"),
                }
            }
        }
        for s in rt.sandboxes.iter().skip(1).filter(|s| !s.ready) {
            if rt
                .containers
                .iter()
                .all(|c| c.sandbox_id != s.id || removed.contains(&c.id))
                && let Err(e) = cri.remove_pod_sandbox(&s.id).await
            {
                tracing::debug!(sandbox = %short(&s.id), "garbage collection: {e}");
            }
        }
    }

    /// Compute the status; write it to `<root-dir>/pods/<uid>/status.json`
    /// (the Pod with its status) when it changed, and log phase changes.
    fn report(&mut self, pod: &Pod, rt: &RuntimePod, waiting: &BTreeMap<String, Waiting>) {
        let mut all = waiting.clone();
        for (k, v) in &self.problems {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let probes = self.prober.results();
        let input = StatusInput {
            probes: &probes,
            waiting: &all,
            runtime_name: &self.shared.runtime_name,
            host_ip: self.shared.host_ip.as_deref(),
            now_ns: now_ns(),
            // After a kubelet restart, the API's status is the previous
            // one: condition times are kept and an unchanged pod is not
            // patched.
            previous: self.last_status.as_ref().or(pod.source.status.as_ref()),
        };
        let status = pod_status(pod, rt, &input);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        // After a kubelet restart, a status the API already has is not
        // patched again.
        let api_has_it = self.last_status.is_none()
            && pod
                .source
                .status
                .as_ref()
                .is_some_and(|api| same_reported(api, &status));
        let phase = plan::phase(pod, rt);
        if self.last_phase != Some(phase) {
            tracing::info!(pod = %pod.full_name(), uid = %pod.uid, phase = phase.as_str(), "pod phase");
            self.last_phase = Some(phase);
        }
        if let Some(tx) = self.shared.api_status.as_ref().filter(|_| !api_has_it) {
            let _ = tx.send(crate::api::status::StatusOp::Status {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                mirror: pod.is_static(),
                status: Box::new(status.clone()),
            });
        }
        let mut obj = (*pod.source).clone();
        obj.status = Some(status.clone());
        let value = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": obj.metadata, "spec": obj.spec, "status": obj.status,
        });
        let dir = self.shared.pod_dir(&pod.uid);
        if let Err(e) = write_atomic(
            &dir,
            "status.json",
            &serde_json::to_vec_pretty(&value).unwrap_or_default(),
        ) {
            tracing::warn!(pod = %pod.full_name(), "writing the status: {e}");
        }
        self.last_status = Some(status);
    }

    /// Stop the pod's containers (all at once, each within `grace`), then
    /// stop and remove its sandboxes, its status and its logs.
    async fn terminate(&mut self, grace: Duration) -> Result<()> {
        self.prober.stop();
        let cri = self.shared.cri.clone();
        let rt = RuntimePod::fetch(&cri, &self.uid).await?;
        let ip = rt.current_sandbox().and_then(|s| s.ip.clone());
        // The regular containers all at once, then the sidecars one by one
        // in reverse order (as upstream), all within the one grace period.
        let sidecars: Vec<&str> = self
            .last_pod
            .iter()
            .flat_map(|p| p.init_containers.iter().filter(|c| c.sidecar))
            .map(|c| c.name.as_str())
            .rev()
            .collect();
        let running: Vec<_> = rt.containers.iter().filter(|c| c.is_running()).collect();
        let mut waves: Vec<Vec<_>> = vec![
            running
                .iter()
                .filter(|c| !sidecars.contains(&c.name.as_str()))
                .copied()
                .collect(),
        ];
        for name in &sidecars {
            waves.push(
                running
                    .iter()
                    .filter(|c| c.name == *name)
                    .copied()
                    .collect(),
            );
        }
        let deadline = Instant::now() + grace;
        for wave in waves {
            let grace = deadline
                .saturating_duration_since(Instant::now())
                .max(crate::lifecycle::MIN_GRACE_AFTER_PRE_STOP);
            let mut stops = tokio::task::JoinSet::new();
            for c in wave {
                tracing::info!(pod_uid = %self.uid, container = %c.name, id = %short(&c.id), grace = ?grace, "Killing: pod removed");
                let (cri, id, name, ip) = (cri.clone(), c.id.clone(), c.name.clone(), ip.clone());
                let pod = self.last_pod.clone();
                stops.spawn(async move {
                    let Some(pod) = pod else {
                        // Not synced since the kubelet started: no spec, no hook.
                        return (None, None, cri.stop_container(&id, grace).await);
                    };
                    let hook = pod
                        .all_containers()
                        .find(|c| c.name == name)
                        .and_then(|c| c.lifecycle.pre_stop.clone());
                    let (r, failed) = crate::lifecycle::stop(
                        &cri,
                        &pod,
                        &name,
                        &id,
                        hook.as_ref(),
                        ip.as_deref(),
                        grace,
                    )
                    .await;
                    (Some((pod, name)), failed, r)
                });
            }
            while let Some(r) = stops.join_next().await {
                match r {
                    Ok((who, failed, r)) => {
                        if let (Some((pod, name)), Some(msg)) = (who, failed) {
                            self.event(&pod, Some(&name), true, "FailedPreStopHook", msg);
                        }
                        r?
                    }
                    Err(e) => tracing::warn!(pod_uid = %self.uid, "stop task: {e}"),
                }
            }
        }
        for s in &rt.sandboxes {
            cri.stop_pod_sandbox(&s.id).await?;
            cri.remove_pod_sandbox(&s.id).await?;
        }
        // Nothing of the pod runs: its ids may go to another pod.
        self.shared.userns.release(&self.uid);
        if let Some(pc) = &self.shared.pod_cgroups
            && let Err(e) = pc.remove_pod(&self.uid)
        {
            tracing::warn!(pod_uid = %self.uid, "removing the pod's cgroup: {e}");
        }
        let dir = self.shared.pod_dir(&self.uid);
        // Volumes unmounted before anything under the pod's folder goes.
        self.volumes
            .teardown()
            .map_err(|e| Error::io(&dir, std::io::Error::other(e)))?;
        // The log folder is named by the pod; the status file knows it.
        if let Ok(text) = std::fs::read(dir.join("status.json"))
            && let Ok(p) = serde_json::from_slice::<api::Pod>(&text)
        {
            let (ns, name) = (
                p.metadata.namespace.unwrap_or_default(),
                p.metadata.name.unwrap_or_default(),
            );
            let logs = self
                .shared
                .settings
                .pod_logs_dir
                .join(format!("{ns}_{name}_{}", self.uid));
            let _ = std::fs::remove_dir_all(logs);
        }
        let _ = std::fs::remove_dir_all(&dir);
        tracing::info!(pod_uid = %self.uid, sandboxes = rt.sandboxes.len(), containers = rt.containers.len(), "pod terminated and removed");
        Ok(())
    }
}

/// Whether the API's status already says what `ours` says (the API server
/// owns qosClass; only the fields the kubelet reports are compared).
fn same_reported(api: &api::PodStatus, ours: &api::PodStatus) -> bool {
    let mut a = api.clone();
    a.qos_class = ours.qos_class.clone();
    a == *ours
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

/// Write `dir/name` atomically (temp file, fsync, rename).
pub fn write_atomic(dir: &std::path::Path, name: &str, data: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    let dst = dir.join(name);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
}
