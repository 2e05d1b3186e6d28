//! Pod sandboxes: network (netns + CNI), IPC and UTS namespaces pinned as
//! files, the pod's /etc files, and a durable record. No pause process: the
//! pinned namespaces outlive any container (a pause is needed only for a
//! shared PID namespace).
//!
//! Name reservation: one sandbox per pod identity. A retry of a request that
//! is still running waits for it and gets its result; a retry after it
//! finished gets the same sandbox back; the work itself runs on its own task,
//! so a caller that gives up does not leave it half done.

pub mod files;
pub mod model;
pub mod monitor;
pub mod pause;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cni::{Attachment, Cni};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pinns::{NsKind, PinnedNs};
use crate::reserve::Names;
use crate::store::JsonStore;
use model::{NsMode, Sandbox, SandboxSpec, SandboxState, ShimRef};

#[derive(Default)]
struct Inner {
    sandboxes: BTreeMap<String, Sandbox>,
}

pub struct SandboxManager {
    config: Config,
    cni: Cni,
    shim_binary: PathBuf,
    /// Shim sockets (a short path: see `monitor::socket_path`).
    socket_dir: PathBuf,
    ns_dir: PathBuf,
    sandboxes_dir: PathBuf,
    store: JsonStore<Sandbox>,
    inner: Mutex<Inner>,
    names: Names,
    /// Serializes stop/remove so two of them never tear down one sandbox at
    /// once.
    teardown: tokio::sync::Mutex<()>,
}

/// Filters of `ListPodSandbox`.
#[derive(Debug, Default, Clone)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    pub labels: BTreeMap<String, String>,
}

/// Nanoseconds since the epoch (CRI timestamps).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// A new 64-hex-digit id, as containerd and CRI-O make them.
pub fn new_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom is readable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl SandboxManager {
    /// Open the store, load every record, and mark sandboxes whose pinned
    /// network namespace is gone (a reboot) NotReady, releasing their IPs.
    pub async fn open(config: &Config) -> Result<Arc<Self>> {
        let cni = Cni {
            conf_dir: config.cni_conf_dir.clone(),
            bin_dirs: config.cni_bin_dirs.clone(),
            cache_dir: config.root_dir.join("cni-cache"),
            timeout: Duration::from_secs(60),
        };
        let store = JsonStore::open(config.root_dir.join("sandboxes"))?;
        let (records, bad) = store.load_all();
        for e in bad {
            tracing::warn!(error = %e, "skipping unreadable sandbox record");
        }
        let mgr = Arc::new(SandboxManager {
            config: config.clone(),
            cni,
            shim_binary: monitor::resolve_binary(&config.shim_path),
            socket_dir: config.state_dir.join("s"),
            ns_dir: config.state_dir.join("ns"),
            sandboxes_dir: config.state_dir.join("sandboxes"),
            store,
            inner: Mutex::new(Inner::default()),
            names: Names::new("sandbox"),
            teardown: tokio::sync::Mutex::new(()),
        });
        for (_, mut sb) in records {
            let netns_gone = sb.netns.as_ref().is_some_and(|p| !p.exists());
            let shim_gone = match &sb.shim {
                Some(s) => !monitor::alive(&s.socket).await,
                None => false,
            };
            if (netns_gone || shim_gone) && sb.state == SandboxState::Ready {
                tracing::info!(sandbox_id = %sb.id, netns_gone, shim_gone, "sandbox lost its namespace or monitor (reboot?): marking NotReady");
                if sb.network_attached
                    && let Err(e) = mgr.cni.del(&mgr.attachment(&sb)).await
                {
                    tracing::warn!(sandbox_id = %sb.id, error = %e, "CNI DEL after reboot");
                }
                sb.state = SandboxState::NotReady;
                sb.network_attached = false;
                sb.netns = None;
                mgr.store.put(&sb.id, &sb)?;
            }
            mgr.names.hold(&sb.spec.meta.key(), &sb.id);
            mgr.inner
                .lock()
                .expect("sandbox lock")
                .sandboxes
                .insert(sb.id.clone(), sb);
        }
        Ok(mgr)
    }

    fn attachment(&self, sb: &Sandbox) -> Attachment {
        Attachment {
            container_id: sb.id.clone(),
            netns: sb
                .netns
                .clone()
                .unwrap_or_else(|| self.ns_dir.join(format!("{}-net", sb.id))),
            ifname: "eth0".into(),
            pod_namespace: sb.spec.meta.namespace.clone(),
            pod_name: sb.spec.meta.name.clone(),
            pod_uid: sb.spec.meta.uid.clone(),
            port_mappings: sb.spec.port_mappings.clone(),
        }
    }

    /// `RunPodSandbox`: the sandbox's id.
    pub async fn run(self: &Arc<Self>, spec: SandboxSpec) -> Result<String> {
        let key = spec.meta.key();
        let same = {
            let spec = spec.clone();
            move |id: &str| {
                self.inner
                    .lock()
                    .expect("sandbox lock")
                    .sandboxes
                    .get(id)
                    .is_some_and(|sb| sb.spec == spec)
            }
        };
        let mgr = Arc::clone(self);
        let work = async move {
            let sb = mgr.create(spec).await?;
            mgr.inner
                .lock()
                .expect("sandbox lock")
                .sandboxes
                .insert(sb.id.clone(), sb.clone());
            Ok(sb.id)
        };
        self.names.run(&key, same, work).await
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Sandbox> {
        if spec.network == NsMode::Target || spec.ipc == NsMode::Target {
            return Err(Error::InvalidArgument(format!(
                "sandbox {}: namespace mode TARGET is only valid for containers",
                spec.meta.key()
            )));
        }
        let id = new_id();
        let mut sb = Sandbox {
            id: id.clone(),
            files_dir: self.sandboxes_dir.join(&id),
            spec,
            created_at: now_ns(),
            state: SandboxState::Ready,
            netns: None,
            ipcns: None,
            utsns: None,
            userns: None,
            ips: Vec::new(),
            network_attached: false,
            shim: None,
            pause: None,
        };
        match self.setup(&mut sb).await {
            Ok(()) => {
                tracing::info!(sandbox_id = %id, pod = %sb.spec.meta.key(), ip = ?sb.ips.first(), "sandbox ready");
                Ok(sb)
            }
            Err(e) => {
                self.release(&mut sb).await;
                let _ = self.store.remove(&id);
                Err(e)
            }
        }
    }

    async fn setup(&self, sb: &mut Sandbox) -> Result<()> {
        let id = sb.id.clone();
        let pin_err = |source| Error::Namespace {
            id: id.clone(),
            source,
        };
        if let Some(u) = sb.spec.userns {
            // Root in the pod's user namespace is nobody to the host: it
            // must be able to walk to the bundles and pod files.
            for d in [&self.config.state_dir, &self.config.root_dir] {
                if let Some(closed) = unsearchable_ancestor(d) {
                    return Err(Error::FailedPrecondition(format!(
                        "sandbox {id}: a pod user namespace needs every folder above {} searchable by others (o+x), and {} is not",
                        d.display(),
                        closed.display()
                    )));
                }
            }
            // The pod's own user namespace owns its network, UTS and IPC
            // namespaces (validation refused host ones with it).
            let mut kinds = vec![NsKind::Uts, NsKind::Net];
            if sb.spec.ipc == NsMode::Pod {
                kinds.push(NsKind::Ipc);
            }
            let pins = crate::pinns::pin_userns(
                &self.ns_dir,
                &id,
                (u.uids.host_id, u.uids.length),
                (u.gids.host_id, u.gids.length),
                &kinds,
                Some(&files::hostname(&sb.spec)),
                &monitor::resolve_binary(&self.config.pause_path),
            )
            .map_err(pin_err)?;
            sb.userns = Some(pins.user.path().to_owned());
            for (k, p) in pins.owned {
                let slot = match k {
                    NsKind::Uts => &mut sb.utsns,
                    NsKind::Net => &mut sb.netns,
                    NsKind::Ipc => &mut sb.ipcns,
                };
                *slot = Some(p.path().to_owned());
            }
        } else if sb.spec.network != NsMode::Node {
            let hostname = files::hostname(&sb.spec);
            sb.utsns = Some(
                PinnedNs::pin(
                    &self.ns_dir,
                    &format!("{id}-uts"),
                    NsKind::Uts,
                    Some(&hostname),
                )
                .map_err(pin_err)?
                .path()
                .to_owned(),
            );
            sb.netns = Some(
                PinnedNs::pin(&self.ns_dir, &format!("{id}-net"), NsKind::Net, None)
                    .map_err(pin_err)?
                    .path()
                    .to_owned(),
            );
        }
        if sb.spec.ipc == NsMode::Pod && sb.ipcns.is_none() {
            sb.ipcns = Some(
                PinnedNs::pin(&self.ns_dir, &format!("{id}-ipc"), NsKind::Ipc, None)
                    .map_err(pin_err)?
                    .path()
                    .to_owned(),
            );
        }
        // Record before attaching, so a crash mid-ADD is cleaned up later.
        let t = std::time::Instant::now();
        self.store.put(&id, sb)?;
        tracing::debug!(sandbox_id = %id, took = ?t.elapsed(), "run: recorded");
        // The network (CNI ADD: the bridge plugin's iptables calls make it
        // the slowest step) and the pod's monitor (and pause) need only the
        // pinned namespaces, not each other: both run at once, and the
        // sandbox is ready when both are.
        let snapshot = sb.clone();
        let network = async {
            snapshot.netns.as_ref()?;
            let t = std::time::Instant::now();
            let r = self.cni.add(&self.attachment(&snapshot)).await;
            tracing::debug!(sandbox_id = %id, took = ?t.elapsed(), "run: network added");
            Some(r)
        };
        let socket = monitor::socket_path(&self.socket_dir, &id);
        let monitor = async {
            let t = std::time::Instant::now();
            let shim = monitor::spawn(&self.shim_binary, &snapshot.files_dir.join("shim"), &socket)
                .await
                .map(|pid| ShimRef {
                    pid,
                    socket: socket.clone(),
                })?;
            let pause = if snapshot.spec.pid == NsMode::Pod {
                Some(self.start_pause(&snapshot, &socket).await)
            } else {
                None
            };
            tracing::debug!(sandbox_id = %id, took = ?t.elapsed(), "run: monitor started");
            Ok::<_, Error>((shim, pause))
        };
        let (network, monitor) = tokio::join!(network, monitor);
        // Keep whatever started, so a failure of the other half releases it.
        let mut first_error = None;
        match monitor {
            Ok((shim, pause)) => {
                sb.shim = Some(shim);
                match pause {
                    Some(Ok(pid)) => sb.pause = Some(pid),
                    Some(Err(e)) => first_error = Some(e),
                    None => {}
                }
            }
            Err(e) => first_error = Some(e),
        }
        match network {
            Some(Ok(result)) => {
                sb.network_attached = true;
                sb.ips = result.ips.iter().map(|ip| ip.address.to_string()).collect();
            }
            Some(Err(source)) => {
                first_error.get_or_insert(Error::Network {
                    id: id.clone(),
                    source: Box::new(source),
                });
            }
            None => {}
        }
        let t = std::time::Instant::now();
        self.store.put(&id, sb)?;
        tracing::debug!(sandbox_id = %id, took = ?t.elapsed(), "run: recorded again");
        if let Some(e) = first_error {
            return Err(e);
        }
        files::write_all(&sb.files_dir, &sb.spec, sb.ips.first().map(String::as_str)).map_err(
            |source| Error::Io {
                what: "sandbox files",
                path: sb.files_dir.clone(),
                source,
            },
        )?;
        Ok(())
    }

    /// The pause process of a pod-wide PID namespace, under the monitor.
    async fn start_pause(&self, sb: &Sandbox, socket: &Path) -> Result<i32> {
        let runtime = monitor::runtime_cmd(&self.config, &sb.spec.runtime_handler)?;
        let cgroup = monitor::cgroup_path(&self.config, &sb.spec.cgroup_parent, &sb.id);
        let binary = monitor::resolve_binary(&self.config.pause_path);
        pause::start(sb, socket, &binary, runtime, &cgroup).await
    }

    /// Release the network (CNI DEL) and its namespace. Best effort for
    /// cleanup after a failure; errors are logged.
    async fn release(&self, sb: &mut Sandbox) {
        if let (Some(_), Some(shim)) = (sb.pause, &sb.shim) {
            pause::stop(sb, &shim.socket, true).await;
        }
        if let Some(shim) = sb.shim.take() {
            monitor::shutdown(shim.pid, &shim.socket).await;
        }
        if let Err(e) = self.release_network(sb).await {
            tracing::warn!(sandbox_id = %sb.id, error = %error_chain(&e), "releasing network");
        }
        // The record goes with this sandbox, so nothing would retry the DEL:
        // the namespace goes too, also when the DEL failed (a broken
        // config's DEL fails as its ADD did, with nothing attached).
        for p in [
            sb.netns.take(),
            sb.ipcns.take(),
            sb.utsns.take(),
            sb.userns.take(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = PinnedNs::at(p).remove();
        }
        let _ = std::fs::remove_dir_all(&sb.files_dir);
    }

    async fn release_network(&self, sb: &mut Sandbox) -> Result<()> {
        if sb.network_attached || sb.netns.is_some() {
            self.cni
                .del(&self.attachment(sb))
                .await
                .map_err(|source| Error::Network {
                    id: sb.id.clone(),
                    source: Box::new(source),
                })?;
            sb.network_attached = false;
        }
        if let Some(p) = sb.netns.take() {
            PinnedNs::at(p)
                .remove()
                .map_err(|source| Error::Namespace {
                    id: sb.id.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Resolve a full id or a unique prefix.
    pub fn resolve(&self, id: &str) -> Result<String> {
        let inner = self.inner.lock().expect("sandbox lock");
        crate::reserve::resolve_id(&inner.sandboxes, id, "sandbox")
    }

    /// The sandbox an id (or unique prefix) names; `None` if there is none,
    /// which stop and remove treat as already done.
    fn existing(&self, id: &str) -> Result<Option<Sandbox>> {
        match self.resolve(id) {
            Ok(id) => Ok(self.get(&id)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `StopPodSandbox`: release the network; idempotent, and a sandbox that
    /// does not exist is already stopped.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let _guard = self.teardown.lock().await;
        let Some(mut sb) = self.existing(id)? else {
            return Ok(());
        };
        let id = sb.id.clone();
        if !sb.can_stop() {
            return Ok(());
        }
        if let (Some(_), Some(shim)) = (sb.pause, &sb.shim) {
            pause::stop(&sb, &shim.socket, false).await;
        }
        self.release_network(&mut sb).await?;
        sb.state = SandboxState::NotReady;
        self.store.put(&id, &sb)?;
        self.inner
            .lock()
            .expect("sandbox lock")
            .sandboxes
            .insert(id.clone(), sb);
        tracing::info!(sandbox_id = %id, "sandbox stopped");
        Ok(())
    }

    /// `RemovePodSandbox`: stop, then remove everything; idempotent.
    pub async fn remove(&self, id: &str) -> Result<()> {
        self.stop(id).await?;
        let _guard = self.teardown.lock().await;
        let Some(mut sb) = self.existing(id)? else {
            return Ok(());
        };
        let id = sb.id.clone();
        self.release(&mut sb).await;
        self.store.remove(&id)?;
        self.inner
            .lock()
            .expect("sandbox lock")
            .sandboxes
            .remove(&id);
        self.names.release(&sb.spec.meta.key(), &id);
        tracing::info!(sandbox_id = %id, "sandbox removed");
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Sandbox> {
        self.inner
            .lock()
            .expect("sandbox lock")
            .sandboxes
            .get(id)
            .cloned()
    }

    pub fn status(&self, id: &str) -> Result<Sandbox> {
        let id = self.resolve(id)?;
        self.get(&id).ok_or(Error::NotFound {
            kind: "sandbox",
            id,
        })
    }

    pub fn list(&self, f: &SandboxFilter) -> Vec<Sandbox> {
        let inner = self.inner.lock().expect("sandbox lock");
        inner
            .sandboxes
            .values()
            .filter(|sb| {
                f.id.as_ref()
                    .is_none_or(|id| sb.id.starts_with(id.as_str()))
            })
            .filter(|sb| f.state.is_none_or(|s| sb.state == s))
            .filter(|sb| {
                f.labels
                    .iter()
                    .all(|(k, v)| sb.spec.labels.get(k) == Some(v))
            })
            .cloned()
            .collect()
    }
}

/// An error with its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// The first folder of `dir` and its ancestors that others may not search
/// (mode o+x missing); None when all of them may be.
fn unsearchable_ancestor(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}
