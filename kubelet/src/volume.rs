//! Pod volumes and container volume mounts as the kubelet works on them:
//! converted from the API types once and validated, so the volume manager
//! never sees a path that climbs out of its volume or a mode out of range.
//! Volume types berth-kubelet does not implement are refused by name.

use std::path::{Component, Path};

use k8s_openapi::api::core::v1 as api;

/// Where a file of a configMap / secret / downwardAPI / projected volume
/// gets its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// A key of the ConfigMap or Secret the volume (or projection) names.
    Key(String),
    /// A downward API field a volume may hold (as upstream): `metadata.name`,
    /// `metadata.namespace`, `metadata.uid`, `metadata.labels`,
    /// `metadata.annotations`, `metadata.labels['k']`,
    /// `metadata.annotations['k']`.
    Field(String),
    /// A container's resource (`limits.cpu`, `requests.memory`, ...).
    Resource {
        container: String,
        resource: String,
        divisor: Option<String>,
    },
}

/// One file of a volume: its relative path and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub source: FileSource,
    pub path: String,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

/// A part of a projected volume (or a whole configMap / secret /
/// downwardAPI volume, which are projections of one source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Keys of a ConfigMap or Secret; `items` empty: every key, as a file
    /// named by the key.
    Object {
        kind: ObjectKind,
        name: String,
        items: Vec<Item>,
        optional: bool,
    },
    DownwardApi {
        items: Vec<Item>,
    },
    ServiceAccountToken {
        audience: Option<String>,
        expiration_seconds: i64,
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathType {
    /// No check (the empty string).
    Unchecked,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    EmptyDir {
        memory: bool,
        size_limit: Option<i64>,
    },
    HostPath {
        path: String,
        kind: HostPathType,
    },
    /// configMap, secret, downwardAPI and projected volumes: files the
    /// kubelet writes, read-only in the containers.
    Files {
        /// The API's name of the volume type (for paths and messages).
        plugin: &'static str,
        projections: Vec<Projection>,
        default_mode: u32,
        /// Kept in memory (tmpfs): secrets and service account tokens.
        memory: bool,
    },
    /// A type berth-kubelet cannot set up (persistentVolumeClaim, nfs...),
    /// by its API name. As upstream's kubelet does with a volume it has no
    /// plugin for, the pod is not refused: while a container mounts it,
    /// setting it up fails (FailedMount, the containers wait in
    /// ContainerCreating) and is tried again; unmounted, it is ignored.
    Unsupported {
        kind: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: Source,
}

impl Volume {
    /// The folder name of the volume's plugin under the pod's volumes dir
    /// (upstream's names, `kubernetes.io~empty-dir`...).
    pub fn plugin_dir(&self) -> &'static str {
        match &self.source {
            Source::EmptyDir { .. } => "kubernetes.io~empty-dir",
            Source::HostPath { .. } => "kubernetes.io~host-path",
            Source::Files { plugin, .. } => match *plugin {
                "configMap" => "kubernetes.io~configmap",
                "secret" => "kubernetes.io~secret",
                "downwardAPI" => "kubernetes.io~downward-api",
                _ => "kubernetes.io~projected",
            },
            // Never set up, so never a folder.
            Source::Unsupported { .. } => "unsupported",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Private,
    HostToContainer,
    Bidirectional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    pub mount_path: String,
    pub read_only: bool,
    /// A relative path inside the volume (`subPath`), checked to stay inside.
    pub sub_path: Option<String>,
    pub propagation: Propagation,
}

/// A path inside a volume: relative, no `..`, not empty; optionally no
/// leading `..` in its first component (the writer's own entries).
pub fn check_relative(p: &str, what: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err(format!("{what}: must not be empty"));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(format!("{what}: {p:?} must be a relative path"));
    }
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            Component::CurDir => {}
            _ => return Err(format!("{what}: {p:?} must not contain '..'")),
        }
    }
    Ok(())
}

fn check_mode(mode: Option<i32>, what: &str) -> Result<Option<u32>, String> {
    match mode {
        None => Ok(None),
        Some(m) if (0..=0o777).contains(&m) => Ok(Some(m as u32)),
        Some(m) => Err(format!("{what}: {m} is not a file mode (0-0777)")),
    }
}

fn item_path(p: &str, what: &str) -> Result<String, String> {
    check_relative(p, what)?;
    if p.starts_with("..") {
        return Err(format!("{what}: {p:?} must not start with '..'"));
    }
    Ok(p.to_owned())
}

fn key_items(items: &Option<Vec<api::KeyToPath>>, at: &str) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    for (i, it) in items.iter().flatten().enumerate() {
        if it.key.is_empty() {
            return Err(format!("{at}.items[{i}].key: required"));
        }
        out.push(Item {
            source: FileSource::Key(it.key.clone()),
            path: item_path(&it.path, &format!("{at}.items[{i}].path"))?,
            mode: check_mode(it.mode, &format!("{at}.items[{i}].mode"))?,
        });
    }
    Ok(out)
}

const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

/// Whether a downward API field path is one the kubelet fills in.
pub fn known_field(f: &str) -> bool {
    FIELDS.contains(&f)
        || ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .any(|p| f.starts_with(p) && f.ends_with("']") && f.len() > p.len() + 2)
}

fn downward_items(
    items: &Option<Vec<api::DownwardAPIVolumeFile>>,
    at: &str,
) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    for (i, it) in items.iter().flatten().enumerate() {
        let w = format!("{at}.items[{i}]");
        let source = match (&it.field_ref, &it.resource_field_ref) {
            (Some(f), None) => {
                if !known_field(&f.field_path) {
                    return Err(format!(
                        "{w}.fieldRef.fieldPath: {:?} is not supported",
                        f.field_path
                    ));
                }
                FileSource::Field(f.field_path.clone())
            }
            (None, Some(r)) => FileSource::Resource {
                container: r.container_name.clone().unwrap_or_default(),
                resource: r.resource.clone(),
                divisor: r.divisor.as_ref().map(|d| d.0.clone()),
            },
            _ => return Err(format!("{w}: exactly one of fieldRef and resourceFieldRef")),
        };
        out.push(Item {
            source,
            path: item_path(&it.path, &format!("{w}.path"))?,
            mode: check_mode(it.mode, &format!("{w}.mode"))?,
        });
    }
    Ok(out)
}

/// Convert a pod's `spec.volumes`.
pub fn volumes(spec: &api::PodSpec) -> Result<Vec<Volume>, String> {
    let mut out: Vec<Volume> = Vec::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if !crate::flags::is_dns_label(&v.name) {
            return Err(format!("{at}.name: {:?} is not a valid DNS label", v.name));
        }
        if out.iter().any(|o| o.name == v.name) {
            return Err(format!("{at}.name: {:?} is a duplicate", v.name));
        }
        let mode = |m: Option<i32>, w: &str| {
            check_mode(m, &format!("{at}.{w}.defaultMode")).map(|m| m.unwrap_or(0o644))
        };
        let source = if let Some(e) = &v.empty_dir {
            let size_limit = e
                .size_limit
                .as_ref()
                .map(|q| {
                    crate::quantity::Quantity::parse(&q.0)
                        .map(crate::quantity::Quantity::value)
                        .map_err(|e| format!("{at}.emptyDir.sizeLimit: {e}"))
                })
                .transpose()?;
            let memory = match e.medium.as_deref() {
                None | Some("") => false,
                Some("Memory") => true,
                Some(o) => {
                    return Err(format!(
                        "{at}.emptyDir.medium: {o:?} is not \"\" or \"Memory\""
                    ));
                }
            };
            Source::EmptyDir { memory, size_limit }
        } else if let Some(h) = &v.host_path {
            if !h.path.starts_with('/') {
                return Err(format!("{at}.hostPath.path: {:?} must be absolute", h.path));
            }
            let kind = match h.type_.as_deref() {
                None | Some("") => HostPathType::Unchecked,
                Some("DirectoryOrCreate") => HostPathType::DirectoryOrCreate,
                Some("Directory") => HostPathType::Directory,
                Some("FileOrCreate") => HostPathType::FileOrCreate,
                Some("File") => HostPathType::File,
                Some("Socket") => HostPathType::Socket,
                Some("CharDevice") => HostPathType::CharDevice,
                Some("BlockDevice") => HostPathType::BlockDevice,
                Some(o) => return Err(format!("{at}.hostPath.type: {o:?} is not a hostPath type")),
            };
            Source::HostPath {
                path: h.path.clone(),
                kind,
            }
        } else if let Some(c) = &v.config_map {
            Source::Files {
                plugin: "configMap",
                projections: vec![Projection::Object {
                    kind: ObjectKind::ConfigMap,
                    name: c.name.clone(),
                    items: key_items(&c.items, &format!("{at}.configMap"))?,
                    optional: c.optional.unwrap_or(false),
                }],
                default_mode: mode(c.default_mode, "configMap")?,
                memory: false,
            }
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(format!("{at}.secret.secretName: required"));
            }
            Source::Files {
                plugin: "secret",
                projections: vec![Projection::Object {
                    kind: ObjectKind::Secret,
                    name,
                    items: key_items(&s.items, &format!("{at}.secret"))?,
                    optional: s.optional.unwrap_or(false),
                }],
                default_mode: mode(s.default_mode, "secret")?,
                memory: true,
            }
        } else if let Some(d) = &v.downward_api {
            Source::Files {
                plugin: "downwardAPI",
                projections: vec![Projection::DownwardApi {
                    items: downward_items(&d.items, &format!("{at}.downwardAPI"))?,
                }],
                default_mode: mode(d.default_mode, "downwardAPI")?,
                memory: false,
            }
        } else if let Some(p) = &v.projected {
            let mut projections = Vec::new();
            let mut memory = false;
            for (j, s) in p.sources.iter().flatten().enumerate() {
                let w = format!("{at}.projected.sources[{j}]");
                if let Some(c) = &s.config_map {
                    projections.push(Projection::Object {
                        kind: ObjectKind::ConfigMap,
                        name: c.name.clone(),
                        items: key_items(&c.items, &format!("{w}.configMap"))?,
                        optional: c.optional.unwrap_or(false),
                    });
                } else if let Some(sec) = &s.secret {
                    memory = true;
                    projections.push(Projection::Object {
                        kind: ObjectKind::Secret,
                        name: sec.name.clone(),
                        items: key_items(&sec.items, &format!("{w}.secret"))?,
                        optional: sec.optional.unwrap_or(false),
                    });
                } else if let Some(d) = &s.downward_api {
                    projections.push(Projection::DownwardApi {
                        items: downward_items(&d.items, &format!("{w}.downwardAPI"))?,
                    });
                } else if let Some(t) = &s.service_account_token {
                    memory = true;
                    let exp = t.expiration_seconds.unwrap_or(3607);
                    if exp < 600 {
                        return Err(format!(
                            "{w}.serviceAccountToken.expirationSeconds: {exp} is less than 600"
                        ));
                    }
                    projections.push(Projection::ServiceAccountToken {
                        audience: t.audience.clone().filter(|a| !a.is_empty()),
                        expiration_seconds: exp,
                        path: item_path(&t.path, &format!("{w}.serviceAccountToken.path"))?,
                    });
                } else {
                    return Err(format!(
                        "{w}: only configMap, secret, downwardAPI and serviceAccountToken projections are supported by berth-kubelet"
                    ));
                }
            }
            Source::Files {
                plugin: "projected",
                projections,
                default_mode: mode(p.default_mode, "projected")?,
                memory,
            }
        } else {
            let kind = serde_json::to_value(v)
                .ok()
                .and_then(|j| {
                    j.as_object()
                        .and_then(|m| m.keys().find(|k| *k != "name").cloned())
                })
                .unwrap_or_else(|| "unknown".into());
            Source::Unsupported { kind }
        };
        out.push(Volume {
            name: v.name.clone(),
            source,
        });
    }
    Ok(out)
}

/// Convert a container's `volumeMounts` against the pod's volumes.
pub fn mounts(c: &api::Container, vols: &[Volume], at: &str) -> Result<Vec<Mount>, String> {
    let mut out: Vec<Mount> = Vec::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let w = format!("{at}.volumeMounts[{i}]");
        let Some(vol) = vols.iter().find(|v| v.name == m.name) else {
            return Err(format!("{w}.name: {:?} is not a volume of the pod", m.name));
        };
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "{w}.mountPath: {:?} must be absolute",
                m.mount_path
            ));
        }
        if out.iter().any(|o| o.mount_path == m.mount_path) {
            return Err(format!(
                "{w}.mountPath: {:?} is mounted twice",
                m.mount_path
            ));
        }
        if m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(format!("{w}.subPathExpr: not supported by berth-kubelet"));
        }
        let sub_path = match m.sub_path.as_deref() {
            None | Some("") => None,
            Some(s) => {
                check_relative(s, &format!("{w}.subPath"))?;
                Some(s.to_owned())
            }
        };
        let propagation = match m.mount_propagation.as_deref() {
            None | Some("None") => Propagation::Private,
            Some("HostToContainer") => Propagation::HostToContainer,
            Some("Bidirectional") => Propagation::Bidirectional,
            Some(o) => {
                return Err(format!(
                    "{w}.mountPropagation: {o:?} is not None, HostToContainer or Bidirectional"
                ));
            }
        };
        // Files the kubelet writes are read-only in containers, as upstream.
        let read_only = m.read_only.unwrap_or(false) || matches!(vol.source, Source::Files { .. });
        out.push(Mount {
            volume: m.name.clone(),
            mount_path: m.mount_path.clone(),
            read_only,
            sub_path,
            propagation,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> api::PodSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn converts_every_supported_type() {
        let s = spec(
            "containers: [{name: c, image: i, volumeMounts: [{name: cache, mountPath: /cache}, {name: cfg, mountPath: /etc/cfg, subPath: app.conf}]}]\n\
             volumes:\n\
             - {name: cache, emptyDir: {medium: Memory, sizeLimit: 64Mi}}\n\
             - {name: host, hostPath: {path: /var/log, type: Directory}}\n\
             - {name: cfg, configMap: {name: app, items: [{key: a, path: app.conf, mode: 256}]}}\n\
             - {name: sec, secret: {secretName: creds, optional: true}}\n\
             - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}\n\
             - name: api\n  projected:\n    sources:\n    - serviceAccountToken: {path: token, expirationSeconds: 3607}\n    - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}\n    - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}\n",
        );
        let v = volumes(&s).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(
            v[0].source,
            Source::EmptyDir {
                memory: true,
                size_limit: Some(64 << 20)
            }
        );
        assert_eq!(
            v[1].source,
            Source::HostPath {
                path: "/var/log".into(),
                kind: HostPathType::Directory
            }
        );
        match &v[2].source {
            Source::Files {
                projections,
                default_mode,
                memory,
                ..
            } => {
                assert_eq!(*default_mode, 0o644);
                assert!(!memory);
                assert_eq!(
                    projections[0],
                    Projection::Object {
                        kind: ObjectKind::ConfigMap,
                        name: "app".into(),
                        items: vec![Item {
                            source: FileSource::Key("a".into()),
                            path: "app.conf".into(),
                            mode: Some(0o400)
                        }],
                        optional: false,
                    }
                );
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(&v[3].source, Source::Files { memory: true, .. }));
        assert_eq!(v[5].plugin_dir(), "kubernetes.io~projected");
        let m = mounts(&s.containers[0], &v, "spec.containers[0]").unwrap();
        assert!(!m[0].read_only);
        assert!(m[1].read_only, "configMap mounts are read-only");
        assert_eq!(m[1].sub_path.as_deref(), Some("app.conf"));
    }

    #[test]
    fn refuses_escapes_bad_modes_and_unknown_types() {
        let e = volumes(&spec("containers: []\nvolumes: [{name: c, configMap: {name: x, items: [{key: a, path: ../../etc/passwd}]}}]")).unwrap_err();
        assert!(
            e.contains("spec.volumes[0].configMap.items[0].path") && e.contains(".."),
            "{e}"
        );
        let e = volumes(&spec("containers: []\nvolumes: [{name: c, configMap: {name: x, items: [{key: a, path: /abs}]}}]")).unwrap_err();
        assert!(e.contains("relative"), "{e}");
        let e = volumes(&spec(
            "containers: []\nvolumes: [{name: c, secret: {secretName: x, defaultMode: 4095}}]",
        ))
        .unwrap_err();
        assert!(e.contains("defaultMode") && e.contains("file mode"), "{e}");
        // Not refused: kept by its type, for the volume manager to fail.
        let v = volumes(&spec(
            "containers: []\nvolumes: [{name: data, persistentVolumeClaim: {claimName: x}}]",
        ))
        .unwrap();
        assert_eq!(
            v[0].source,
            Source::Unsupported {
                kind: "persistentVolumeClaim".into()
            }
        );
        let e = volumes(&spec(
            "containers: []\nvolumes: [{name: h, hostPath: {path: rel}}]",
        ))
        .unwrap_err();
        assert!(e.contains("must be absolute"), "{e}");
        let e = volumes(&spec("containers: []\nvolumes: [{name: d, downwardAPI: {items: [{path: x, fieldRef: {fieldPath: status.phase}}]}}]")).unwrap_err();
        assert!(e.contains("status.phase"), "{e}");
    }

    #[test]
    fn refuses_bad_mounts() {
        let s = spec(
            "containers: [{name: c, image: i, volumeMounts: [{name: nope, mountPath: /x}]}]\nvolumes: [{name: d, emptyDir: {}}]",
        );
        let v = volumes(&s).unwrap();
        let e = mounts(&s.containers[0], &v, "spec.containers[0]").unwrap_err();
        assert!(e.contains("\"nope\" is not a volume"), "{e}");
        let s = spec(
            "containers: [{name: c, image: i, volumeMounts: [{name: d, mountPath: /x, subPath: ../up}]}]\nvolumes: [{name: d, emptyDir: {}}]",
        );
        let e = mounts(&s.containers[0], &v, "spec.containers[0]").unwrap_err();
        assert!(e.contains("subPath") && e.contains(".."), "{e}");
    }

    #[test]
    fn downward_fields() {
        assert!(known_field("metadata.labels['app']"));
        assert!(known_field("metadata.uid"));
        assert!(!known_field("status.podIP"), "env only, as upstream");
        assert!(!known_field("metadata.labels['']"));
        assert!(!known_field("spec.containers"));
    }
}
