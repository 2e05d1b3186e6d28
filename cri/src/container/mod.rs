//! CRI containers: the OCI spec built from the CRI config and the image
//! (`spec`, `user`, `seccomp`), the overlay rootfs from the images crate,
//! and the lifecycle through the pod's berth-shim.
//!
//! berthd keeps a durable record per container (`<root>/containers/`); the
//! live state (created, running, exited, exit code, times) is the shim's,
//! asked for on every status, so it is right after a berthd restart.
//! Never touches a sandbox's namespaces or network: those are
//! `sandbox::SandboxManager`'s.

pub mod apparmor;
pub mod checkpoint;
pub mod exec;
mod idmapped;
pub mod model;
pub mod seccomp;
pub mod spec;
pub mod stats;
pub mod user;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_images::ImageStore;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::reserve::Names;
use crate::sandbox::model::{NsMode, Sandbox, SandboxState};
use crate::sandbox::{SandboxManager, error_chain, new_id, now_ns};
use crate::shim::client::call;
use crate::shim::proto::{self, ErrorKind, Request, Response, RuntimeCmd};
use crate::store::JsonStore;
use model::{Container, ContainerSpec, ProcessUser, State, Status};

/// Filters of `ListContainers`.
#[derive(Debug, Default, Clone)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub sandbox_id: Option<String>,
    pub state: Option<State>,
    pub labels: BTreeMap<String, String>,
}

pub struct ContainerManager {
    config: Arc<Config>,
    sandboxes: Arc<SandboxManager>,
    images: Arc<ImageStore>,
    store: JsonStore<Container>,
    /// Bundles: `<root>/containers/<id>/` (config.json, upper, work, rootfs).
    bundles: PathBuf,
    containers: Mutex<BTreeMap<String, Container>>,
    names: Names,
    /// Lifecycle events for `GetContainerEvents` subscribers.
    events: tokio::sync::broadcast::Sender<Event>,
    /// Writable-layer usage by container: when it was measured, bytes,
    /// inodes. A stats call walks a layer at most once per
    /// [`LAYER_USAGE_TTL`] (the kubelet asks every few seconds).
    layer_usage: Arc<Mutex<HashMap<String, LayerUsage>>>,
}

/// A writable layer's usage: when it was measured, bytes, inodes.
type LayerUsage = (Instant, u64, u64);

/// How long a writable layer's measured usage is reported before the layer
/// is walked again (cAdvisor refreshes its disk usage on the same order).
const LAYER_USAGE_TTL: Duration = Duration::from_secs(10);

/// A container's lifecycle step, as `GetContainerEvents` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub container_id: String,
    pub sandbox_id: String,
    pub kind: EventKind,
    /// Nanoseconds since the epoch.
    pub at: i64,
}

/// Events a slow subscriber may fall behind by before it misses some (it is
/// told, and a kubelet relists then).
const EVENT_BACKLOG: usize = 1024;

/// A shim error response as berthd's error.
fn shim_error(kind: ErrorKind, message: String) -> Error {
    match kind {
        ErrorKind::NotFound => Error::NotFound {
            kind: "container",
            id: message,
        },
        ErrorKind::AlreadyExists | ErrorKind::FailedPrecondition => {
            Error::FailedPrecondition(message)
        }
        ErrorKind::BadRequest => Error::InvalidArgument(message),
        ErrorKind::Runtime => Error::Runtime(message),
    }
}

async fn shim_call(socket: &Path, req: &Request) -> Result<Response> {
    match call(socket, req).await? {
        Response::Error { kind, message } => Err(shim_error(kind, message)),
        r => Ok(r),
    }
}

/// The oom-kill count of a container's cgroup (v2 `memory.events`, or v1
/// `memory.oom_control`), while the cgroup exists: for a monitor that did
/// not watch (it could not, or an older one); the monitor's own record is
/// what survives a cgroup removed at exit (the systemd driver's scopes).
fn oom_kills(cgroup_path: &str) -> u64 {
    let path = berth_runtime::cgroups::cgroupfs_path(cgroup_path);
    let rel = path.trim_start_matches('/');
    let files = [
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
        (
            format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
            "oom_kill ",
        ),
    ];
    for (f, key) in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

/// rmdir the container's cgroup folder in every hierarchy where it is still
/// there and empty (a live one is busy, and stays).
fn remove_empty_cgroup(cgroup_path: &str) {
    let path = berth_runtime::cgroups::cgroupfs_path(cgroup_path);
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(h.path().join(rel));
    }
    for d in dirs {
        if d.is_dir() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

fn pod_down(sb: Option<&Sandbox>) -> bool {
    sb.is_none_or(|sb| sb.state != SandboxState::Ready)
}

/// The live status from the monitor's answer. `pod_down`: the pod is not
/// ready (stopped, or found without its namespace or monitor after a
/// restart), so a container its monitor cannot tell about is not running:
/// exited, code 255, reason Unknown, as containerd reports containers lost
/// with a reboot.
fn status_of(c: &Container, st: Option<&proto::ContainerState>, pod_down: bool) -> Status {
    let Some(st) = st else {
        if pod_down {
            return Status {
                state: State::Exited,
                pid: 0,
                started_at: 0,
                finished_at: 0,
                exit_code: 255,
                reason: "Unknown".into(),
                message: "the pod's monitor is gone (a reboot, or it was killed): the exit status is unknown".into(),
            };
        }
        return Status {
            state: State::Unknown,
            pid: 0,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: "Unknown".into(),
            message: "the pod's monitor does not know this container".into(),
        };
    };
    let state = match st.status {
        proto::Status::Created => State::Created,
        proto::Status::Running => State::Running,
        proto::Status::Exited => State::Exited,
    };
    let exit_code = st.exit_code.unwrap_or(0);
    let reason = match state {
        State::Exited if st.oom_killed || oom_kills(&c.cgroup_path) > 0 => "OOMKilled",
        State::Exited if exit_code == 0 => "Completed",
        State::Exited => "Error",
        _ => "",
    };
    Status {
        state,
        pid: st.pid,
        started_at: st.started_at.unwrap_or(0),
        finished_at: st.finished_at.unwrap_or(0),
        exit_code,
        reason: reason.into(),
        message: String::new(),
    }
}

impl ContainerManager {
    /// Open the store and load every record.
    pub fn open(
        config: Arc<Config>,
        sandboxes: Arc<SandboxManager>,
        images: Arc<ImageStore>,
    ) -> Result<Arc<Self>> {
        let store = JsonStore::open(config.root_dir.join("containers"))?;
        let (records, bad) = store.load_all();
        for e in bad {
            tracing::warn!(error = %e, "skipping unreadable container record");
        }
        let mgr = ContainerManager {
            bundles: config.root_dir.join("bundles"),
            config,
            sandboxes,
            images,
            store,
            containers: Mutex::default(),
            names: Names::new("container"),
            events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
            layer_usage: Arc::default(),
        };
        for (_, mut c) in records {
            if c.user.is_none() {
                c.user = ProcessUser::from_bundle(&c.bundle);
            }
            if let Some(sb) = mgr.sandboxes.get(&c.sandbox_id) {
                mgr.names.hold(&name_key(&c.spec, &sb), &c.id);
            }
            mgr.containers
                .lock()
                .expect("containers lock")
                .insert(c.id.clone(), c);
        }
        Ok(Arc::new(mgr))
    }

    fn runtime_cmd(&self, handler: &str) -> Result<RuntimeCmd> {
        crate::sandbox::monitor::runtime_cmd(&self.config, handler)
    }

    fn shim_socket(sb: &Sandbox) -> Result<PathBuf> {
        sb.shim.as_ref().map(|s| s.socket.clone()).ok_or_else(|| {
            Error::FailedPrecondition(format!("sandbox {} has no running monitor", sb.id))
        })
    }

    /// Resolve a full id or a unique prefix.
    pub fn resolve(&self, id: &str) -> Result<String> {
        let map = self.containers.lock().expect("containers lock");
        crate::reserve::resolve_id(&map, id, "container")
    }

    pub fn get(&self, id: &str) -> Result<Container> {
        let id = self.resolve(id)?;
        self.containers
            .lock()
            .expect("containers lock")
            .get(&id)
            .cloned()
            .ok_or(Error::NotFound {
                kind: "container",
                id,
            })
    }

    /// `CreateContainer`: the new container's id. A retry of a request in
    /// flight gets that request's container.
    pub async fn create(self: &Arc<Self>, sandbox_id: &str, spec: ContainerSpec) -> Result<String> {
        let sb = self.sandboxes.status(sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {} is not ready",
                sb.id
            )));
        }
        let key = name_key(&spec, &sb);
        let same = {
            let (spec, sandbox_id) = (spec.clone(), sb.id.clone());
            move |id: &str| {
                self.containers
                    .lock()
                    .expect("containers lock")
                    .get(id)
                    .is_some_and(|c| c.spec == spec && c.sandbox_id == sandbox_id)
            }
        };
        let mgr = Arc::clone(self);
        self.names
            .run(&key, same, async move { mgr.create_new(sb, spec).await })
            .await
    }

    async fn create_new(&self, sb: Sandbox, spec: ContainerSpec) -> Result<String> {
        let image = self
            .images
            .get(&spec.image)
            .map_err(|e| Error::Images {
                what: format!("image {}", spec.image),
                source: Box::new(e),
            })?
            .ok_or_else(|| Error::NotFound {
                kind: "image",
                id: spec.image.clone(),
            })?;
        let id = new_id();
        let bundle = self.bundles.join(&id);
        let runtime = self.runtime_cmd(&sb.spec.runtime_handler)?;
        let cgroup_path = self.cgroup_path(&sb, &id);
        let log_path = (!sb.spec.log_directory.is_empty() && !spec.log_path.is_empty())
            .then(|| Path::new(&sb.spec.log_directory).join(&spec.log_path));
        let stop_signal = match image.config.run.stop_signal.as_str() {
            "" => libc::SIGTERM,
            s => berth_runtime::signal::parse(s).unwrap_or(libc::SIGTERM),
        };
        let c = Container {
            id: id.clone(),
            sandbox_id: sb.id.clone(),
            image_id: image.id.to_string(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.to_string()),
            spec,
            created_at: now_ns(),
            bundle: bundle.clone(),
            log_path: log_path.clone(),
            runtime_handler: sb.spec.runtime_handler.clone(),
            stop_signal,
            cgroup_path,
            user: None,
        };
        // Recorded first: a crash from here on leaves a record that status
        // reports and remove cleans up, never an orphan.
        let t = std::time::Instant::now();
        self.store.put(&id, &c)?;
        tracing::debug!(container_id = %id, took = ?t.elapsed(), "create: recorded");
        let result = self.prepare_and_create(&sb, &c, &image, runtime).await;
        let mut c = c;
        match result {
            Ok(user) => c.user = Some(user),
            Err(e) => {
                tracing::warn!(container_id = %id, error = %error_chain(&e), "create failed; cleaning up");
                self.cleanup(&c).await;
                let _ = self.store.remove(&id);
                return Err(e);
            }
        }
        self.containers
            .lock()
            .expect("containers lock")
            .insert(id.clone(), c);
        tracing::info!(container_id = %id, sandbox_id = %sb.id, "container created");
        self.emit(&id, &sb.id, EventKind::Created);
        Ok(id)
    }

    fn cgroup_path(&self, sb: &Sandbox, id: &str) -> String {
        crate::sandbox::monitor::cgroup_path(&self.config, &sb.spec.cgroup_parent, id)
    }

    async fn prepare_and_create(
        &self,
        sb: &Sandbox,
        c: &Container,
        image: &berth_images::store::images::ImageRecord,
        runtime: RuntimeCmd,
    ) -> Result<ProcessUser> {
        let spec = &c.spec;
        let apparmor = apparmor::resolve(&spec.security.apparmor, spec.security.privileged)
            .map_err(|e| Error::InvalidArgument(format!("container {}: {e}", c.id)))?;
        if let Some(p) = &c.log_path
            && let Some(dir) = p.parent()
        {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: "container log folder",
                path: dir.to_owned(),
                source,
            })?;
        }
        // Each step's time, for BERTHD_LOG=berth_cri=debug.
        let mut t = std::time::Instant::now();
        let mut step = |what: &str| {
            tracing::debug!(container_id = %c.id, took = ?t.elapsed(), "create: {what}");
            t = std::time::Instant::now();
        };
        // The lease keeps the image's snapshots through RemoveImage + GC for
        // as long as this container exists.
        self.images
            .lease(&c.id, image)
            .await
            .map_err(|e| Error::Images {
                what: format!("container {}: lease image {}", c.id, c.spec.image),
                source: Box::new(e),
            })?;
        step("leased");
        let lowerdirs = self.images.lowerdirs(image);
        let bundle = c.bundle.clone();
        // In a pod user namespace: the layers idmapped to the pod's range.
        let userns = sb
            .userns
            .clone()
            .zip(sb.spec.userns.map(|u| (u.uids.host_id, u.gids.host_id)));
        let id = c.id.clone();
        let rootfs = tokio::task::spawn_blocking(move || match userns {
            None => berth_images::rootfs::prepare(&bundle, &lowerdirs),
            Some((ns, root)) => idmapped::prepare(&bundle, &lowerdirs, &ns, root).or_else(|e| {
                // Where the kernel or the snapshots' file system cannot
                // idmap, the layers as they are: the pod's root reads them
                // (as the overflow ids) but does not own them.
                tracing::warn!(container = %id, error = %error_chain(&e),
                    "idmapped rootfs failed; the rootfs is not idmapped");
                berth_images::rootfs::prepare(&bundle, &lowerdirs)
            }),
        })
        .await
        .map_err(|e| Error::Aborted(format!("rootfs task: {e}")))?
        .map_err(|e| Error::Runtime(format!("container {}: {}", c.id, error_chain(&e))))?;
        step("rootfs mounted");
        let user = user::resolve(
            &rootfs.rootfs,
            &image.config.run.user,
            &spec.security.run_as,
            spec.security.run_as_group,
            &spec.security.supplemental_groups,
            spec.security.strict_groups,
        )
        .map_err(|e| Error::InvalidArgument(format!("container {}: {}", c.id, error_chain(&e))))?;
        let devices = host_devices(spec)?;
        let pid_ns = self.pid_namespace(sb, spec).await?;
        let oci = spec::build(&spec::Input {
            id: &c.id,
            spec,
            sandbox: sb,
            image: &image.config.run,
            image_name: &c.spec.image,
            user: &user,
            rootfs: &rootfs.rootfs,
            cgroup_path: &c.cgroup_path,
            pid_ns,
            devices,
            oom_floor: own_oom_score_adj(),
            cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            all_caps: own_capabilities(),
            apparmor,
        })
        .map_err(|e| match e {
            spec::SpecError::Namespace { .. } => {
                Error::FailedPrecondition(format!("container {}: {}", c.id, error_chain(&e)))
            }
            _ => Error::InvalidArgument(format!("container {}: {}", c.id, error_chain(&e))),
        })?;
        if sb.userns.is_some() {
            // Root in the pod's user namespace may not own the rootfs (where
            // the layers could not be idmapped) nor the folders above a
            // mount point: the mount points the image lacks are made here,
            // by the host's root, inside the rootfs only.
            let (root, mounts) = (rootfs.rootfs.clone(), oci.mounts.clone());
            tokio::task::spawn_blocking(move || spec::make_mount_points(&root, &mounts))
                .await
                .map_err(|e| Error::Aborted(format!("mount point task: {e}")))?
                .map_err(|e| {
                    Error::InvalidArgument(format!("container {}: {}", c.id, error_chain(&e)))
                })?;
        }
        let json = serde_json::to_vec_pretty(&oci).expect("specs serialize");
        let cfg = c.bundle.join("config.json");
        std::fs::write(&cfg, json).map_err(|source| Error::Io {
            what: "config.json",
            path: cfg.clone(),
            source,
        })?;
        step("spec written");
        let socket = Self::shim_socket(sb)?;
        shim_call(
            &socket,
            &Request::Create {
                id: c.id.clone(),
                bundle: c.bundle.clone(),
                runtime,
                log_path: c.log_path.clone(),
                stdin: c.spec.stdin,
                stdin_once: c.spec.stdin_once,
                tty: c.spec.tty,
            },
        )
        .await?;
        step("runtime created");
        Ok(ProcessUser::new(user.uid, user.gid, &user.additional_gids))
    }

    /// The pid namespace a container joins: the pod's (its pause process)
    /// or a target container's.
    async fn pid_namespace(&self, sb: &Sandbox, spec: &ContainerSpec) -> Result<Option<PathBuf>> {
        match spec.security.pid {
            NsMode::Pod => {
                let pid = sb.pause_pid().ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "sandbox {} has no pause process for a pod-wide pid namespace",
                        sb.id
                    ))
                })?;
                Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))))
            }
            NsMode::Target => {
                let target = self.get(&spec.security.target_id)?;
                let (_, st) = self.status(&target.id).await?;
                if st.state != State::Running {
                    return Err(Error::FailedPrecondition(format!(
                        "target container {} is not running",
                        target.id
                    )));
                }
                Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", st.pid))))
            }
            NsMode::Container | NsMode::Node => Ok(None),
        }
    }

    /// Undo what create did: the runtime's container, the rootfs, the bundle.
    async fn cleanup(&self, c: &Container) {
        if let Some(sb) = self.sandboxes.get(&c.sandbox_id)
            && let Ok(socket) = Self::shim_socket(&sb)
            && let Err(e) = shim_call(&socket, &Request::Delete { id: c.id.clone() }).await
        {
            tracing::warn!(container_id = %c.id, error = %error_chain(&e), "monitor delete");
        }
        // The runtime removes the cgroup at delete; one it no longer knows
        // (its state went with a reboot or a crash) leaves it behind.
        remove_empty_cgroup(&c.cgroup_path);
        let bundle = c.bundle.clone();
        let removed =
            tokio::task::spawn_blocking(move || berth_images::rootfs::remove(&bundle)).await;
        match removed {
            Ok(Ok(())) => {
                if let Err(e) = self.images.release(&c.id).await {
                    tracing::warn!(container_id = %c.id, error = %error_chain(&e), "releasing image lease");
                }
            }
            // The lease stays while the rootfs may still be mounted.
            Ok(Err(e)) => {
                tracing::warn!(container_id = %c.id, error = %error_chain(&e), "removing rootfs")
            }
            Err(e) => tracing::warn!(container_id = %c.id, error = %e, "removing rootfs"),
        }
    }

    /// `StartContainer`.
    pub async fn start(&self, id: &str) -> Result<()> {
        let c = self.get(id)?;
        let sb = self.sandbox_of(&c)?;
        shim_call(
            &Self::shim_socket(&sb)?,
            &Request::Start { id: c.id.clone() },
        )
        .await?;
        tracing::info!(container_id = %c.id, "container started");
        self.emit(&c.id, &c.sandbox_id, EventKind::Started);
        self.watch_exit(Self::shim_socket(&sb)?, &c);
        Ok(())
    }

    /// Subscribe to lifecycle events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, container_id: &str, sandbox_id: &str, kind: EventKind) {
        // No subscriber is not an error.
        let _ = self.events.send(Event {
            container_id: container_id.to_owned(),
            sandbox_id: sandbox_id.to_owned(),
            kind,
            at: now_ns(),
        });
    }

    /// Report `Stopped` when the container exits, however it exits (its own
    /// end, StopContainer, an OOM kill): the monitor's `Wait` answers then.
    fn watch_exit(&self, socket: PathBuf, c: &Container) {
        let (tx, id, sandbox_id) = (self.events.clone(), c.id.clone(), c.sandbox_id.clone());
        tokio::spawn(async move {
            // An error means the monitor went away with its pod: the pod's
            // teardown reports what it removes.
            if let Ok(Response::State { .. }) =
                call(&socket, &Request::Wait { id: id.clone() }).await
            {
                let _ = tx.send(Event {
                    container_id: id,
                    sandbox_id,
                    kind: EventKind::Stopped,
                    at: now_ns(),
                });
            }
        });
    }

    /// After a restart: watch every container still running, so its exit is
    /// reported as if berthd had never been away.
    pub async fn watch_running(&self) {
        for (c, st) in self.list(&ContainerFilter::default()).await {
            if st.state == State::Running
                && let Some(sb) = self.sandboxes.get(&c.sandbox_id)
                && let Ok(socket) = Self::shim_socket(&sb)
            {
                self.watch_exit(socket, &c);
            }
        }
    }

    fn sandbox_of(&self, c: &Container) -> Result<Sandbox> {
        self.sandboxes
            .get(&c.sandbox_id)
            .ok_or_else(|| Error::NotFound {
                kind: "sandbox",
                id: c.sandbox_id.clone(),
            })
    }

    /// The record and the live status of a container.
    pub async fn status(&self, id: &str) -> Result<(Container, Status)> {
        let c = self.get(id)?;
        let sb = self.sandboxes.get(&c.sandbox_id);
        let st = match sb.as_ref().and_then(|sb| sb.shim.as_ref()) {
            Some(shim) => match call(&shim.socket, &Request::State { id: c.id.clone() }).await {
                Ok(Response::State { state }) => Some(state),
                _ => None,
            },
            None => None,
        };
        let status = status_of(&c, st.as_ref(), pod_down(sb.as_ref()));
        Ok((c, status))
    }

    /// The records `f` selects by id prefix, pod and labels (not by state,
    /// which only the monitors know).
    fn select(&self, f: &ContainerFilter) -> Vec<Container> {
        let sandbox_filter = match &f.sandbox_id {
            Some(s) => match self.sandboxes.resolve(s) {
                Ok(id) => Some(id),
                Err(_) => return Vec::new(),
            },
            None => None,
        };
        self.containers
            .lock()
            .expect("containers lock")
            .values()
            .filter(|c| f.id.as_ref().is_none_or(|id| c.id.starts_with(id.as_str())))
            .filter(|c| sandbox_filter.as_ref().is_none_or(|s| c.sandbox_id == *s))
            .filter(|c| {
                f.labels
                    .iter()
                    .all(|(k, v)| c.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect()
    }

    /// `ListContainers`: one monitor call per pod.
    pub async fn list(&self, f: &ContainerFilter) -> Vec<(Container, Status)> {
        let picked = self.select(f);
        let mut by_pod: BTreeMap<String, Vec<Container>> = BTreeMap::new();
        for c in picked {
            by_pod.entry(c.sandbox_id.clone()).or_default().push(c);
        }
        let mut out = Vec::new();
        for (sandbox_id, cs) in by_pod {
            let sb = self.sandboxes.get(&sandbox_id);
            let down = pod_down(sb.as_ref());
            let states = match sb.and_then(|sb| sb.shim) {
                Some(shim) => match call(&shim.socket, &Request::List).await {
                    Ok(Response::List { containers }) => containers,
                    _ => Vec::new(),
                },
                None => Vec::new(),
            };
            for c in cs {
                let st = states.iter().find(|s| s.id == c.id);
                let status = status_of(&c, st, down);
                if f.state.is_none_or(|s| s == status.state) {
                    out.push((c, status));
                }
            }
        }
        out.sort_by_key(|(c, _)| c.created_at);
        out
    }

    /// `StopContainer`: the stop signal, then SIGKILL after `timeout`.
    /// Stopping a stopped or unknown container is fine.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let (c, st) = match self.status(id).await {
            Ok(x) => x,
            // Nothing to stop: the CRI asks for success (a kubelet retrying a
            // stop must not fail on a container removed meanwhile).
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if !matches!(st.state, State::Running | State::Created) {
            return Ok(());
        }
        let sb = self.sandbox_of(&c)?;
        let socket = Self::shim_socket(&sb)?;
        let wait = || {
            let socket = socket.clone();
            let id = c.id.clone();
            async move { shim_call(&socket, &Request::Wait { id }).await }
        };
        if !timeout.is_zero() && st.state == State::Running {
            shim_call(
                &socket,
                &Request::Kill {
                    id: c.id.clone(),
                    signal: c.stop_signal,
                    all: false,
                },
            )
            .await?;
            if tokio::time::timeout(timeout, wait()).await.is_ok() {
                tracing::info!(container_id = %c.id, "container stopped");
                return Ok(());
            }
            tracing::info!(container_id = %c.id, ?timeout, "stop signal not heeded; killing");
        }
        self.kill_and_wait(&socket, &c.id).await?;
        tracing::info!(container_id = %c.id, "container stopped");
        Ok(())
    }

    async fn kill_and_wait(&self, socket: &Path, id: &str) -> Result<()> {
        shim_call(
            socket,
            &Request::Kill {
                id: id.to_owned(),
                signal: libc::SIGKILL,
                all: true,
            },
        )
        .await?;
        match tokio::time::timeout(
            Duration::from_secs(30),
            shim_call(socket, &Request::Wait { id: id.to_owned() }),
        )
        .await
        {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "container {id}: still running 30 s after SIGKILL"
            ))),
        }
    }

    /// `RemoveContainer`: kill it if it runs, then remove everything;
    /// removing a removed container is fine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let c = match self.get(id) {
            Ok(c) => c,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let (_, st) = self.status(&c.id).await?;
        if let (State::Running | State::Created, Some(sb)) =
            (st.state, self.sandboxes.get(&c.sandbox_id))
        {
            self.kill_and_wait(&Self::shim_socket(&sb)?, &c.id).await?;
        }
        self.cleanup(&c).await;
        self.store.remove(&c.id)?;
        self.containers
            .lock()
            .expect("containers lock")
            .remove(&c.id);
        self.layer_usage
            .lock()
            .expect("layer usage lock")
            .remove(&c.id);
        if let Some(sb) = self.sandboxes.get(&c.sandbox_id) {
            self.names.release(&name_key(&c.spec, &sb), &c.id);
        }
        tracing::info!(container_id = %c.id, "container removed");
        self.emit(&c.id, &c.sandbox_id, EventKind::Deleted);
        Ok(())
    }

    /// The containers of a pod.
    pub fn of_sandbox(&self, sandbox_id: &str) -> Vec<Container> {
        self.containers
            .lock()
            .expect("containers lock")
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .cloned()
            .collect()
    }

    /// `ReopenContainerLog`.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let (c, st) = self.status(id).await?;
        if st.state != State::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let sb = self.sandbox_of(&c)?;
        shim_call(&Self::shim_socket(&sb)?, &Request::ReopenLog { id: c.id }).await?;
        Ok(())
    }

    /// Resource usage of the containers `f` selects (created and exited
    /// ones too, as containerd answers).
    pub async fn stats(&self, f: &ContainerFilter) -> Vec<(Container, stats::Usage)> {
        // Stats filters carry no state: the records suffice, no monitor calls.
        self.usage(self.select(f)).await
    }

    /// Resource usage of `picked`, read off the blocking pool.
    pub async fn usage(&self, picked: Vec<Container>) -> Vec<(Container, stats::Usage)> {
        let layers = Arc::clone(&self.layer_usage);
        tokio::task::spawn_blocking(move || {
            picked
                .into_iter()
                .map(|c| {
                    let mut u = stats::cgroup_usage(Path::new("/sys/fs/cgroup"), &c.cgroup_path);
                    let cached = layers
                        .lock()
                        .expect("layer usage lock")
                        .get(&c.id)
                        .filter(|(at, ..)| at.elapsed() < LAYER_USAGE_TTL)
                        .map(|&(_, b, i)| (b, i));
                    (u.writable_bytes, u.writable_inodes) = cached.unwrap_or_else(|| {
                        let (b, i) = stats::dir_usage(&c.bundle.join("upper"));
                        layers
                            .lock()
                            .expect("layer usage lock")
                            .insert(c.id.clone(), (Instant::now(), b, i));
                        (b, i)
                    });
                    u.timestamp = now_ns();
                    (c, u)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// `CheckpointContainer`: `<runtime> checkpoint --leave-running` into a
    /// work folder under the state folder (removed after), then the archive
    /// at `location`. A runtime that cannot dump (no CRIU, a kernel CRIU
    /// refuses) fails with its reason and leaves nothing.
    pub async fn checkpoint(&self, id: &str, location: &str, timeout: Duration) -> Result<()> {
        let location = checkpoint::validate_location(location)?;
        let (c, st) = self.status(id).await?;
        if st.state != State::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let runtime = self.runtime_cmd(&c.runtime_handler)?;
        let work =
            self.config
                .state_dir
                .join("checkpoints")
                .join(format!("{}-{}", c.id, &new_id()[..8]));
        std::fs::create_dir_all(&work).map_err(|source| Error::Io {
            what: "checkpoint work folder",
            path: work.clone(),
            source,
        })?;
        let result = self
            .checkpoint_into(&c, &runtime, &work, &location, timeout)
            .await;
        let _ = std::fs::remove_dir_all(&work);
        result
    }

    async fn checkpoint_into(
        &self,
        c: &Container,
        runtime: &RuntimeCmd,
        work: &Path,
        location: &Path,
        timeout: Duration,
    ) -> Result<()> {
        let mut cmd = tokio::process::Command::new(&runtime.binary);
        cmd.args(runtime.global_args())
            .arg("checkpoint")
            .arg("--image-path")
            .arg(work.join("checkpoint"))
            .arg("--work-path")
            .arg(work.join("criu"))
            .args(["--leave-running", "--file-locks", "--tcp-established"])
            .arg(&c.id)
            .kill_on_drop(true);
        let out = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(r) => r.map_err(|source| Error::Io {
                what: "run runtime checkpoint",
                path: runtime.binary.clone(),
                source,
            })?,
            Err(_) => {
                return Err(Error::DeadlineExceeded(format!(
                    "checkpoint container {}: not done in {timeout:?}",
                    c.id
                )));
            }
        };
        if !out.status.success() {
            return Err(Error::Runtime(format!(
                "checkpoint container {}: {}",
                c.id,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let record = serde_json::to_vec_pretty(c).expect("the record serializes");
        let (work, spec, upper, loc) = (
            work.to_owned(),
            c.bundle.join("config.json"),
            c.bundle.join("upper"),
            location.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            checkpoint::write_archive(&work, &record, &spec, &upper, &loc)
        })
        .await
        .map_err(|e| Error::Runtime(format!("checkpoint archive task: {e}")))?
        .map_err(|source| Error::Io {
            what: "checkpoint archive",
            path: location.to_owned(),
            source,
        })?;
        tracing::info!(container_id = %c.id, location = %location.display(), "container checkpointed");
        Ok(())
    }

    /// `UpdateContainerResources`: the new limits through `<runtime>
    /// update`, then in the record (a later status reports them).
    pub async fn update(&self, id: &str, resources: model::Resources) -> Result<()> {
        let (c, st) = self.status(id).await?;
        if !matches!(st.state, State::Created | State::Running) {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        let runtime = self.runtime_cmd(&c.runtime_handler)?;
        let file = c.bundle.join("update.json");
        let json = serde_json::to_vec(&spec::cgroup_resources(&resources)).expect("serializes");
        std::fs::write(&file, json).map_err(|source| Error::Io {
            what: "resources file",
            path: file.clone(),
            source,
        })?;
        let out = tokio::process::Command::new(&runtime.binary)
            .args(runtime.global_args())
            .arg("update")
            .arg("--resources")
            .arg(&file)
            .arg(&c.id)
            .output()
            .await
            .map_err(|source| Error::Io {
                what: "run runtime update",
                path: runtime.binary.clone(),
                source,
            })?;
        let _ = std::fs::remove_file(&file);
        if !out.status.success() {
            return Err(Error::Runtime(format!(
                "container {}: update: {}",
                c.id,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let mut updated = c.clone();
        updated.spec.resources = resources;
        self.store.put(&c.id, &updated)?;
        self.containers
            .lock()
            .expect("containers lock")
            .insert(c.id.clone(), updated);
        tracing::info!(container_id = %c.id, "container resources updated");
        Ok(())
    }

    /// How to run the OCI runtime for a container (for exec).
    pub fn runtime_for(&self, c: &Container) -> Result<RuntimeCmd> {
        self.runtime_cmd(&c.runtime_handler)
    }

    /// The socket of the monitor that holds `c`'s stdio (for attach).
    pub fn monitor_socket(&self, c: &Container) -> Result<PathBuf> {
        let sb = self
            .sandboxes
            .get(&c.sandbox_id)
            .ok_or_else(|| Error::NotFound {
                kind: "pod sandbox",
                id: c.sandbox_id.clone(),
            })?;
        Self::shim_socket(&sb)
    }
}

/// The reservation key (as containerd names containers).
fn name_key(spec: &ContainerSpec, sb: &Sandbox) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        spec.meta.name,
        sb.spec.meta.name,
        sb.spec.meta.namespace,
        sb.spec.meta.uid,
        spec.meta.attempt
    )
}

/// berthd's own oom_score_adj: a container cannot go below it without
/// CAP_SYS_RESOURCE, so lower requests are raised to it rather than fail.
fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The capabilities berthd's process holds (`CapEff`), by name.
fn own_capabilities() -> Vec<String> {
    use berth_runtime::config::tables::CAPABILITIES;
    let mask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1u64 << i) != 0)
        .map(|(_, c)| (*c).to_owned())
        .collect()
}

/// The request's devices, with their numbers from the host.
fn host_devices(spec: &ContainerSpec) -> Result<Vec<spec::HostDevice>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for d in &spec.devices {
        let md = std::fs::metadata(&d.host_path).map_err(|e| {
            Error::InvalidArgument(format!(
                "device {}: host path {}: {e}",
                d.container_path,
                d.host_path.display()
            ))
        })?;
        let kind = if md.file_type().is_char_device() {
            'c'
        } else if md.file_type().is_block_device() {
            'b'
        } else {
            return Err(Error::InvalidArgument(format!(
                "device {}: host path {} is not a device",
                d.container_path,
                d.host_path.display()
            )));
        };
        let rdev = md.rdev();
        out.push(spec::HostDevice {
            container_path: d.container_path.clone(),
            kind,
            major: libc::major(rdev) as i64,
            minor: libc::minor(rdev) as i64,
            mode: md.mode(),
            permissions: if d.permissions.is_empty() {
                "rwm".into()
            } else {
                d.permissions.clone()
            },
        });
    }
    Ok(out)
}
