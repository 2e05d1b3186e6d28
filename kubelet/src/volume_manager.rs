//! A pod's volumes on the host: `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`.
//! emptyDir is a folder (a tmpfs for `medium: Memory`); hostPath is the
//! host's path, checked or created per its type; configMap, secret,
//! downwardAPI and projected volumes are files the kubelet writes (secrets
//! and tokens on a tmpfs), replaced atomically when their sources change:
//! the files live in a timestamped folder that the `..data` symlink names,
//! and the visible names are symlinks through `..data`, so a reader sees
//! the old set or the new one, never a mix. `subPath` mounts are opened
//! inside the volume with `openat2(RESOLVE_BENEATH)` and bind-mounted from
//! that fd, so a symlink planted in the volume cannot point them outside.
//! Teardown unmounts everything under the pod's folder before removing
//! anything, and removes nothing across a mount.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1 as api;
use kube::api::{Api, PostParams};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::cri_config::EnvObjects;
use crate::pod::{Container, Pod};
use crate::security::FsGroupChangePolicy;
use crate::volume::{
    FileSource, HostPathType, Item, Mount, ObjectKind, Projection, Propagation, Source, Volume,
};

/// The link that names the current generation of a files volume.
pub const DATA_LINK: &str = "..data";

/// A volume that could not be set up: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupError {
    pub volume: String,
    pub message: String,
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MountVolume.SetUp failed for volume {:?}: {}",
            self.volume, self.message
        )
    }
}

struct CachedToken {
    token: String,
    fetched: Instant,
    ttl: Duration,
}

/// The volumes of one pod; owned by its worker.
pub struct VolumeManager {
    pod_dir: PathBuf,
    client: Option<kube::Client>,
    memory_capacity: i64,
    tokens: HashMap<(String, String), CachedToken>,
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl VolumeManager {
    pub fn new(pod_dir: PathBuf, client: Option<kube::Client>, memory_capacity: i64) -> Self {
        VolumeManager {
            pod_dir,
            client,
            memory_capacity,
            tokens: HashMap::new(),
        }
    }

    fn volume_dir(&self, v: &Volume) -> PathBuf {
        self.pod_dir
            .join("volumes")
            .join(v.plugin_dir())
            .join(&v.name)
    }

    /// Set up (or refresh) every volume of the pod; returns each volume's
    /// host path. Idempotent: files are rewritten only when they changed.
    pub async fn setup(&mut self, pod: &Pod) -> Result<HashMap<String, PathBuf>, SetupError> {
        let mut out = HashMap::new();
        for v in &pod.volumes {
            let err = |message: String| SetupError {
                volume: v.name.clone(),
                message,
            };
            let path = match &v.source {
                Source::EmptyDir { memory, size_limit } => {
                    let dir = self.volume_dir(v);
                    ensure_dir(&dir, 0o777).map_err(err)?;
                    if *memory {
                        let size = size_limit.unwrap_or(self.memory_capacity);
                        ensure_tmpfs(&dir, Some(size), 0o777).map_err(err)?;
                    }
                    // Given to fsGroup at every sync (upstream: once, at
                    // setup); OnRootMismatch spares the walk once the
                    // root is right. The files volumes below are always
                    // walked, as upstream walks them whatever the policy.
                    if let Some(g) = pod.security.fs_group {
                        let policy = pod.security.fs_group_change_policy;
                        if policy == FsGroupChangePolicy::Always || !root_owned(&dir, g, false) {
                            set_ownership(&dir, g, false).map_err(err)?;
                        }
                    }
                    dir
                }
                Source::HostPath { path, kind } => {
                    check_host_path(Path::new(path), kind).map_err(err)?;
                    PathBuf::from(path)
                }
                Source::Unsupported { kind } => {
                    let mounted = pod
                        .all_containers()
                        .any(|c| c.mounts.iter().any(|m| m.volume == v.name));
                    if !mounted {
                        continue;
                    }
                    return Err(err(format!(
                        "volume type {kind:?} is not supported by berth-kubelet"
                    )));
                }
                Source::Files {
                    projections,
                    default_mode,
                    memory,
                    ..
                } => {
                    let dir = self.volume_dir(v);
                    ensure_dir(&dir, 0o755).map_err(err)?;
                    if *memory {
                        ensure_tmpfs(&dir, None, 0o755).map_err(err)?;
                    }
                    let files = self
                        .files(pod, &v.name, projections, *default_mode)
                        .await
                        .map_err(err)?;
                    if write_files(&dir, &files).map_err(err)? {
                        tracing::info!(pod = %pod.full_name(), volume = %v.name, files = files.len(), "volume files written");
                    }
                    if let Some(g) = pod.security.fs_group {
                        set_ownership(&dir, g, true).map_err(err)?;
                    }
                    dir
                }
            };
            out.insert(v.name.clone(), path);
        }
        Ok(out)
    }

    /// The files of a configMap / secret / downwardAPI / projected volume.
    async fn files(
        &mut self,
        pod: &Pod,
        volume: &str,
        projections: &[Projection],
        default_mode: u32,
    ) -> Result<BTreeMap<String, (Vec<u8>, u32)>, String> {
        let mut files = BTreeMap::new();
        for p in projections {
            match p {
                Projection::Object {
                    kind,
                    name,
                    items,
                    optional,
                } => {
                    let Some(data) = self.object_data(pod, kind, name, *optional).await? else {
                        continue;
                    };
                    if items.is_empty() {
                        for (k, v) in data {
                            if crate::volume::check_relative(&k, "key").is_ok()
                                && !k.starts_with("..")
                            {
                                files.insert(k, (v, default_mode));
                            }
                        }
                    } else {
                        for it in items {
                            let FileSource::Key(key) = &it.source else {
                                continue;
                            };
                            match data.get(key) {
                                Some(v) => {
                                    files.insert(
                                        it.path.clone(),
                                        (v.clone(), it.mode.unwrap_or(default_mode)),
                                    );
                                }
                                None if *optional => {}
                                None => {
                                    return Err(format!(
                                        "{} {:?} has no key {key:?}",
                                        kind.as_str(),
                                        name
                                    ));
                                }
                            }
                        }
                    }
                }
                Projection::DownwardApi { items } => {
                    for it in items {
                        let v = downward_value(pod, it, self.memory_capacity)?;
                        files.insert(
                            it.path.clone(),
                            (v.into_bytes(), it.mode.unwrap_or(default_mode)),
                        );
                    }
                }
                Projection::ServiceAccountToken {
                    audience,
                    expiration_seconds,
                    path,
                } => {
                    let token = self
                        .token(pod, volume, path, audience.as_deref(), *expiration_seconds)
                        .await?;
                    files.insert(path.clone(), (token.into_bytes(), default_mode));
                }
            }
        }
        Ok(files)
    }

    fn client(&self, what: &str) -> Result<&kube::Client, String> {
        self.client
            .as_ref()
            .ok_or_else(|| format!("{what} needs an API server (berth-kubelet runs standalone)"))
    }

    async fn object_data(
        &self,
        pod: &Pod,
        kind: &ObjectKind,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let what = format!("{} {name:?}", kind.as_str());
        let client = self.client(&what)?.clone();
        let r = match kind {
            ObjectKind::ConfigMap => Api::<api::ConfigMap>::namespaced(client, &pod.namespace)
                .get_opt(name)
                .await
                .map(|o| {
                    o.map(|cm| {
                        let mut m: BTreeMap<String, Vec<u8>> = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        m.extend(
                            cm.binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0)),
                        );
                        m
                    })
                }),
            ObjectKind::Secret => Api::<api::Secret>::namespaced(client, &pod.namespace)
                .get_opt(name)
                .await
                .map(|o| {
                    o.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect()
                    })
                }),
        };
        match r {
            Ok(Some(d)) => Ok(Some(d)),
            Ok(None) if optional => Ok(None),
            Ok(None) => Err(format!("{what} not found")),
            Err(e) => Err(io(format!("getting {what}"), e)),
        }
    }

    /// The ConfigMaps and Secrets a container's env and envFrom name, as
    /// text. A missing object or key that is not optional is an error with
    /// upstream's wording.
    pub async fn env_objects(&self, pod: &Pod, c: &Container) -> Result<EnvObjects, String> {
        use crate::pod::EnvValue;
        let mut out = EnvObjects::new();
        let mut wanted: Vec<(ObjectKind, String, Option<String>, bool)> = c
            .env_from
            .iter()
            .map(|f| (f.kind.clone(), f.name.clone(), None, f.optional))
            .collect();
        for (_, v) in &c.env {
            if let EnvValue::ObjectKey {
                kind,
                name,
                key,
                optional,
            } = v
            {
                wanted.push((kind.clone(), name.clone(), Some(key.clone()), *optional));
            }
        }
        for (kind, name, key, optional) in wanted {
            let k = (kind.clone(), name.clone());
            if !out.contains_key(&k) {
                match self.object_data(pod, &kind, &name, true).await? {
                    Some(d) => {
                        let text = d
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                            .collect();
                        out.insert(k.clone(), text);
                    }
                    None if optional => continue,
                    None => return Err(format!("{} {name:?} not found", kind.as_str())),
                }
            }
            if let Some(key) = key
                && !optional
                && !out.get(&k).is_some_and(|d| d.contains_key(&key))
            {
                let kind_name = match kind {
                    ObjectKind::ConfigMap => "ConfigMap",
                    ObjectKind::Secret => "Secret",
                };
                return Err(format!(
                    "couldn't find key {key} in {kind_name} {}/{name}",
                    pod.namespace
                ));
            }
        }
        Ok(out)
    }

    /// Registry credentials for `image` from the pod's imagePullSecrets
    /// (a Secret that is missing or not a Docker config is skipped with a
    /// warning, as upstream).
    pub async fn pull_auth(&self, pod: &Pod, image: &str) -> Option<cri::AuthConfig> {
        let mut entries = Vec::new();
        for name in &pod.image_pull_secrets {
            let Ok(client) = self.client("imagePullSecrets") else {
                break;
            };
            let api: Api<api::Secret> = Api::namespaced(client.clone(), &pod.namespace);
            let secret = match api.get_opt(name).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    tracing::warn!(pod = %pod.full_name(), secret = %name, "image pull secret not found");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(pod = %pod.full_name(), secret = %name, "image pull secret: {e}");
                    continue;
                }
            };
            let data = secret.data.unwrap_or_default();
            let Some(raw) = data
                .get(".dockerconfigjson")
                .or_else(|| data.get(".dockercfg"))
            else {
                tracing::warn!(pod = %pod.full_name(), secret = %name, "image pull secret has no .dockerconfigjson");
                continue;
            };
            match crate::pull_secrets::parse(&raw.0) {
                Ok(e) => entries.extend(e),
                Err(e) => {
                    tracing::warn!(pod = %pod.full_name(), secret = %name, "image pull secret: {e}")
                }
            }
        }
        crate::pull_secrets::auth_for(image, &entries)
    }

    /// A bound service account token, fetched again after 80% of its life.
    async fn token(
        &mut self,
        pod: &Pod,
        volume: &str,
        path: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String> {
        let key = (volume.to_owned(), path.to_owned());
        if let Some(t) = self.tokens.get(&key)
            && t.fetched.elapsed() < t.ttl * 4 / 5
        {
            return Ok(t.token.clone());
        }
        let sa = if pod.service_account_name.is_empty() {
            "default"
        } else {
            pod.service_account_name.as_str()
        };
        let client = self.client("a service account token")?.clone();
        let api: Api<api::ServiceAccount> = Api::namespaced(client, &pod.namespace);
        let req = TokenRequest {
            metadata: Default::default(),
            spec: Some(TokenRequestSpec {
                audiences: Some(audience.map(|a| vec![a.to_owned()]).unwrap_or_default()),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name.clone()),
                    uid: Some(pod.uid.clone()),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let resp: TokenRequest = api
            .create_subresource("token", sa, &PostParams::default(), &req)
            .await
            .map_err(|e| io(format!("requesting a token for service account {sa:?}"), e))?;
        let token = resp.status.and_then(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(format!(
                "the token request for service account {sa:?} returned no token"
            ));
        }
        self.tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                fetched: Instant::now(),
                ttl: Duration::from_secs(expiration_seconds.max(600) as u64),
            },
        );
        Ok(token)
    }

    /// The CRI mounts of a container; `subPath` mounts are bind-mounted
    /// from an fd opened beneath the volume.
    pub fn container_mounts(
        &self,
        c: &Container,
        paths: &HashMap<String, PathBuf>,
        pod: &Pod,
    ) -> Result<Vec<cri::Mount>, String> {
        let mut out = Vec::new();
        for (i, m) in c.mounts.iter().enumerate() {
            let Some(base) = paths.get(&m.volume) else {
                return Err(format!("volume {:?} is not set up", m.volume));
            };
            let host_path = match &m.sub_path {
                None => base.clone(),
                Some(sub) => {
                    let create = pod
                        .volumes
                        .iter()
                        .find(|v| v.name == m.volume)
                        .is_some_and(|v| {
                            matches!(v.source, Source::EmptyDir { .. } | Source::HostPath { .. })
                        });
                    let target = self
                        .pod_dir
                        .join("volume-subpaths")
                        .join(&m.volume)
                        .join(&c.name)
                        .join(i.to_string());
                    bind_sub_path(base, sub, &target, create)
                        .map_err(|e| format!("subPath {sub:?} of volume {:?}: {e}", m.volume))?;
                    target
                }
            };
            out.push(cri_mount(m, &host_path));
        }
        Ok(out)
    }

    /// Unmount and remove every volume of the pod (its folder stays).
    pub fn teardown(&self) -> Result<(), String> {
        unmount_under(&self.pod_dir)?;
        for d in ["volume-subpaths", "volumes"] {
            let p = self.pod_dir.join(d);
            match std::fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(p.display(), e)),
            }
        }
        Ok(())
    }
}

fn cri_mount(m: &Mount, host_path: &Path) -> cri::Mount {
    cri::Mount {
        container_path: m.mount_path.clone(),
        host_path: host_path.to_string_lossy().into_owned(),
        readonly: m.read_only,
        propagation: match m.propagation {
            Propagation::Private => cri::MountPropagation::PropagationPrivate,
            Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
            Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
        } as i32,
        ..Default::default()
    }
}

fn ensure_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir.display(), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(dir.display(), e))?;
    }
    Ok(())
}

/// Whether `dir` is a mount point (its device differs from its parent's).
/// Whether `dir` is a mount point. Read from mountinfo, not by comparing
/// devices: a bind mount from the same filesystem has its parent's device.
fn is_mount_point(dir: &Path) -> Result<bool, String> {
    Ok(mount_points()?.iter().any(|p| Path::new(p) == dir))
}

/// Every mount point of this mount namespace, once per mount (a path
/// mounted over twice is listed twice).
fn mount_points() -> Result<Vec<String>, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io("/proc/self/mountinfo", e))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect())
}

fn ensure_tmpfs(dir: &Path, size: Option<i64>, mode: u32) -> Result<(), String> {
    if is_mount_point(dir)? {
        return Ok(());
    }
    let mut data = format!("mode={mode:o}");
    if let Some(s) = size.filter(|s| *s > 0) {
        data.push_str(&format!(",size={s}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| io(format!("mounting a tmpfs on {}", dir.display()), e))
}

/// Check (or create) a hostPath per its type, as upstream's kubelet does.
pub fn check_host_path(p: &Path, kind: &HostPathType) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(p);
    let is =
        |f: &dyn Fn(&std::fs::FileType) -> bool| meta.as_ref().is_ok_and(|m| f(&m.file_type()));
    let fail = |want: &str| {
        Err(format!(
            "hostPath type check failed: {} is not a {want}",
            p.display()
        ))
    };
    match kind {
        HostPathType::Unchecked => Ok(()),
        HostPathType::DirectoryOrCreate => {
            if meta.is_err() {
                std::fs::create_dir_all(p).map_err(|e| io(p.display(), e))?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| io(p.display(), e))?;
                return Ok(());
            }
            if is(&|t| t.is_dir()) {
                Ok(())
            } else {
                fail("directory")
            }
        }
        HostPathType::Directory => {
            if is(&|t| t.is_dir()) {
                Ok(())
            } else {
                fail("directory")
            }
        }
        HostPathType::FileOrCreate => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .open(p)
                    .map_err(|e| io(p.display(), e))?;
                return Ok(());
            }
            if is(&|t| t.is_file()) {
                Ok(())
            } else {
                fail("file")
            }
        }
        HostPathType::File => {
            if is(&|t| t.is_file()) {
                Ok(())
            } else {
                fail("file")
            }
        }
        HostPathType::Socket => {
            if is(&|t| t.is_socket()) {
                Ok(())
            } else {
                fail("socket")
            }
        }
        HostPathType::CharDevice => {
            if is(&|t| t.is_char_device()) {
                Ok(())
            } else {
                fail("character device")
            }
        }
        HostPathType::BlockDevice => {
            if is(&|t| t.is_block_device()) {
                Ok(())
            } else {
                fail("block device")
            }
        }
    }
}

/// A downward API file's content.
pub fn downward_value(pod: &Pod, it: &Item, memory_capacity: i64) -> Result<String, String> {
    let map_lines = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let subscript = |f: &str, prefix: &str| {
        f.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_owned)
    };
    match &it.source {
        FileSource::Field(f) => Ok(match f.as_str() {
            "metadata.name" => pod.name.clone(),
            "metadata.namespace" => pod.namespace.clone(),
            "metadata.uid" => pod.uid.clone(),
            "metadata.labels" => map_lines(&pod.labels),
            "metadata.annotations" => map_lines(&pod.annotations),
            f => {
                if let Some(k) = subscript(f, "metadata.labels['") {
                    pod.labels.get(&k).cloned().unwrap_or_default()
                } else if let Some(k) = subscript(f, "metadata.annotations['") {
                    pod.annotations.get(&k).cloned().unwrap_or_default()
                } else {
                    return Err(format!(
                        "downward API field {f:?} is not available in volumes"
                    ));
                }
            }
        }),
        FileSource::Resource {
            container,
            resource,
            divisor,
        } => {
            let c = pod
                .all_containers()
                .find(|c| c.name == *container || container.is_empty())
                .ok_or_else(|| format!("resourceFieldRef: no container {container:?}"))?;
            crate::pod::resource_field(c, resource, divisor.as_deref(), memory_capacity)
        }
        FileSource::Key(_) => Err("a key item in a downwardAPI projection".into()),
    }
}

/// Write `files` into `dir` atomically (the `..data` swap); returns whether
/// anything changed.
pub fn write_files(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<bool, String> {
    let data = dir.join(DATA_LINK);
    if let Ok(current) = std::fs::read_link(&data)
        && same_files(&dir.join(&current), files)
    {
        return Ok(false);
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let gen_dir = dir.join(&stamp);
    std::fs::create_dir(&gen_dir).map_err(|e| io(gen_dir.display(), e))?;
    std::fs::set_permissions(&gen_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io(gen_dir.display(), e))?;
    for (rel, (content, mode)) in files {
        let p = gen_dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent.display(), e))?;
        }
        std::fs::write(&p, content).map_err(|e| io(p.display(), e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| io(p.display(), e))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(|e| io(tmp_link.display(), e))?;
    let old = std::fs::read_link(&data).ok();
    std::fs::rename(&tmp_link, &data).map_err(|e| io(data.display(), e))?;
    // The visible names: one symlink per top-level entry, through ..data.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|k| Path::new(k).components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for t in &tops {
        let link = dir.join(t);
        if std::fs::read_link(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(t), &link)
                .map_err(|e| io(link.display(), e))?;
        }
    }
    for e in std::fs::read_dir(dir)
        .map_err(|e| io(dir.display(), e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_files(gen_dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let mut n = 0;
    let mut stack = vec![gen_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            n += 1;
            let Ok(rel) = p.strip_prefix(gen_dir) else {
                return false;
            };
            let Some((content, mode)) = files.get(&*rel.to_string_lossy()) else {
                return false;
            };
            let ok = std::fs::read(&p).is_ok_and(|c| c == *content)
                && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == *mode);
            if !ok {
                return false;
            }
        }
    }
    n == files.len()
}

fn open_beneath(dir: &OwnedFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// Bind-mount `base/sub` onto `target`, resolving `sub` beneath `base`
/// (symlinks that leave it fail); missing folders are made when `create`.
fn bind_sub_path(base: &Path, sub: &str, target: &Path, create: bool) -> Result<(), String> {
    if is_mount_point(target)? {
        return Ok(());
    }
    let base_fd: OwnedFd = std::fs::File::open(base)
        .map_err(|e| io(base.display(), e))?
        .into();
    let rel = Path::new(sub);
    let fd = match open_beneath(&base_fd, rel, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) if create => {
            // Make each missing folder beneath the volume, one at a time.
            let mut cur = base_fd;
            for comp in rel.components() {
                let name = comp.as_os_str();
                match nix::sys::stat::mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(io(sub, e)),
                }
                cur = open_beneath(&cur, Path::new(name), OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| io(sub, e))?;
            }
            cur
        }
        Err(nix::errno::Errno::EXDEV) => return Err("resolves outside the volume".into()),
        Err(e) => return Err(io(sub, e)),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io(sub, e))?;
    let is_dir = (st.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFDIR;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent.display(), e))?;
    }
    if is_dir {
        ensure_dir(target, 0o755)?;
    } else if !target.exists() {
        std::fs::write(target, b"").map_err(|e| io(target.display(), e))?;
    }
    let src = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(src.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| io(format!("bind-mounting onto {}", target.display()), e))
}

/// Unmount every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) -> Result<(), String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mount_points()?
        .into_iter()
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    // Deepest first; a path mounted over several times is unmounted as
    // many times.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        match nix::mount::umount2(Path::new(&p), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(io(format!("unmounting {p}"), e)),
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// fsGroupChangePolicy OnRootMismatch: whether the volume's root already
/// is what `set_ownership` makes it (upstream's requiresPermissionChange):
/// a folder of group `gid`, setgid, with the group's read, write (unless
/// `readonly`) and search bits. Anything unreadable counts as a mismatch.
fn root_owned(dir: &Path, gid: i64, readonly: bool) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::metadata(dir) else {
        return false;
    };
    let want = (if readonly { 0o440 } else { 0o660 }) | 0o110;
    md.is_dir() && i64::from(md.gid()) == gid && md.mode() & want == want && md.mode() & 0o2000 != 0
}

/// fsGroup: everything under `dir` belongs to group `gid`, group-readable
/// (and writable unless `readonly`), folders setgid so new files inherit
/// the group, as upstream's SetVolumeOwnership. Symlinks (the `..data`
/// swap) are not followed.
fn set_ownership(dir: &Path, gid: i64, readonly: bool) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let gid = u32::try_from(gid).map_err(|_| format!("fsGroup {gid} is not a valid group"))?;
    let mask = if readonly { 0o440 } else { 0o660 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if md.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&p, None, Some(gid))
            .map_err(|e| format!("chown {} to group {gid}: {e}", p.display()))?;
        let mut mode = md.permissions().mode() | mask;
        if md.is_dir() {
            mode |= 0o2000 | 0o110;
            for e in std::fs::read_dir(&p).map_err(|e| format!("{}: {e}", p.display()))? {
                stack.push(e.map_err(|e| format!("{}: {e}", p.display()))?.path());
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| format!("chmod {}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str, u32)]) -> BTreeMap<String, (Vec<u8>, u32)> {
        pairs
            .iter()
            .map(|(k, v, m)| (k.to_string(), (v.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[tokio::test]
    async fn an_unsupported_volume_fails_setup_only_while_mounted() {
        use crate::plan::tests::pod;
        let d = tempfile::tempdir().unwrap();
        let mut vm = VolumeManager::new(d.path().to_owned(), None, 1 << 30);
        let unused = pod(
            "volumes: [{name: data, nfs: {server: s, path: /x}}, {name: e, emptyDir: {}}],",
            "{name: c, image: i, volumeMounts: [{name: e, mountPath: /e}]}",
        );
        let paths = vm.setup(&unused).await.unwrap();
        assert!(paths.contains_key("e") && !paths.contains_key("data"));
        let used = pod(
            "volumes: [{name: data, nfs: {server: s, path: /x}}],",
            "{name: c, image: i, volumeMounts: [{name: data, mountPath: /data}]}",
        );
        assert_eq!(
            vm.setup(&used).await.unwrap_err().to_string(),
            "MountVolume.SetUp failed for volume \"data\": volume type \"nfs\" is not supported by berth-kubelet"
        );
        assert!(!d.path().join("volumes/unsupported").exists());
    }

    #[test]
    fn on_root_mismatch_looks_at_the_root_only() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("v");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        let gid = i64::from(nix::unistd::getegid().as_raw());
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!root_owned(&root, gid, false), "no setgid, no group write");
        set_ownership(&root, gid, false).unwrap();
        assert_eq!(
            std::fs::metadata(&root).unwrap().mode() & 0o7777,
            0o2775,
            "setgid and group rw"
        );
        assert!(root_owned(&root, gid, false));
        assert!(root_owned(&root, gid, true));
        assert!(!root_owned(&root, gid + 1, false), "another group");
        assert!(!root_owned(&root.join("f"), gid, false), "not a folder");
        assert!(!root_owned(&d.path().join("nothing"), gid, false));
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o2755)).unwrap();
        assert!(!root_owned(&root, gid, false), "group write missing");
        assert!(
            root_owned(&root, gid, true),
            "read-only volumes need no write"
        );
    }

    #[test]
    fn atomic_writer_swaps_generations() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        assert!(write_files(dir, &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("sub/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // Same content: nothing written.
        assert!(!write_files(dir, &files(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap());
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), first);
        // New content: a new generation; the old one and the dropped name go.
        assert!(write_files(dir, &files(&[("a", "3", 0o644)])).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(!dir.join("sub").exists());
        assert!(!dir.join(&first).exists());
        let entries: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "{entries:?}");
    }

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().unwrap();
        let newdir = d.path().join("x/y");
        check_host_path(&newdir, &HostPathType::DirectoryOrCreate).unwrap();
        assert!(newdir.is_dir());
        let f = d.path().join("f");
        check_host_path(&f, &HostPathType::FileOrCreate).unwrap();
        assert!(f.is_file());
        let e = check_host_path(&f, &HostPathType::Directory).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = check_host_path(&d.path().join("missing"), &HostPathType::File).unwrap_err();
        assert!(e.contains("is not a file"), "{e}");
        check_host_path(Path::new("/dev/null"), &HostPathType::CharDevice).unwrap();
        check_host_path(&d.path().join("missing"), &HostPathType::Unchecked).unwrap();
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
