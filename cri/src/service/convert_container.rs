//! CRI container wire types <-> berthd's container types. Every request is
//! validated here; errors name the field.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use k8s_cri::v1 as cri;

use super::convert::{invalid, ns_mode, sorted};
use crate::container::ContainerFilter;
use crate::container::model::{
    AppArmorMode, Container, ContainerMeta, ContainerSpec, Device, Mount, Propagation, Resources,
    RunAs, SeccompMode, Security, State, Status,
};
use crate::container::stats::Usage;
use crate::error::{Error, Result};

/// An absolute container path without `..`.
fn container_path(p: &str, field: &str) -> Result<String> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(format!(
            "container config: {field}: {p:?} is not an absolute path without '..'"
        )));
    }
    Ok(p.to_owned())
}

/// A host path for a bind mount: symlinks resolved (as containerd does, so
/// the mount is of what the path names now), created as a folder when
/// missing.
fn host_path(p: &str, field: &str) -> Result<PathBuf> {
    if !Path::new(p).is_absolute() {
        return Err(invalid(format!(
            "container config: {field}: {p:?} is not an absolute path"
        )));
    }
    match std::fs::canonicalize(p) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling symlink is an error, not a folder to create.
            if std::fs::symlink_metadata(p).is_ok() {
                return Err(invalid(format!(
                    "container config: {field}: {p:?} is a symlink to nothing"
                )));
            }
            std::fs::create_dir_all(p)
                .map_err(|e| invalid(format!("container config: {field}: create {p:?}: {e}")))?;
            std::fs::canonicalize(p)
                .map_err(|e| invalid(format!("container config: {field}: {p:?}: {e}")))
        }
        Err(e) => Err(invalid(format!("container config: {field}: {p:?}: {e}"))),
    }
}

/// The structured `apparmor` field wins over the older `apparmor_profile`
/// string ("runtime/default", "unconfined", "localhost/<name>"), as the
/// kubelet fills both.
fn apparmor(p: Option<cri::SecurityProfile>, old: &str) -> Result<AppArmorMode> {
    const FIELD: &str = "container config: linux.security_context";
    let local = |name: &str, f: &str| {
        let name = name.strip_prefix("localhost/").unwrap_or(name);
        if name.is_empty() || name.contains(['\0', '\n']) || name.trim() != name {
            return Err(invalid(format!(
                "{FIELD}.{f}: {name:?} is not a profile name"
            )));
        }
        Ok(AppArmorMode::Localhost(name.to_owned()))
    };
    if let Some(p) = p {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(AppArmorMode::RuntimeDefault)
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => Ok(AppArmorMode::Unconfined),
            Ok(cri::security_profile::ProfileType::Localhost) => {
                local(&p.localhost_ref, "apparmor.localhost_ref")
            }
            Err(_) => Err(invalid(format!(
                "{FIELD}.apparmor.profile_type: unknown {}",
                p.profile_type
            ))),
        };
    }
    match old {
        "" => Ok(AppArmorMode::Unset),
        "runtime/default" => Ok(AppArmorMode::RuntimeDefault),
        "unconfined" => Ok(AppArmorMode::Unconfined),
        n if n.starts_with("localhost/") => local(n, "apparmor_profile"),
        n => Err(invalid(format!(
            "{FIELD}.apparmor_profile: {n:?} is not runtime/default, unconfined or localhost/<name>"
        ))),
    }
}

fn security(s: Option<cri::LinuxContainerSecurityContext>) -> Result<Security> {
    let s = s.unwrap_or_default();
    let caps = s.capabilities.unwrap_or_default();
    let opts = s.namespace_options.unwrap_or_default();
    let field = "linux.security_context";
    let id = |v: Option<cri::Int64Value>, f: &str| -> Result<Option<u32>> {
        v.map(|v| {
            u32::try_from(v.value).map_err(|_| {
                invalid(format!(
                    "container config: {field}.{f}: {} is out of range",
                    v.value
                ))
            })
        })
        .transpose()
    };
    if s.run_as_group.is_some() && s.run_as_user.is_none() && s.run_as_username.is_empty() {
        return Err(invalid(format!(
            "container config: {field}.run_as_group: set without run_as_user or run_as_username"
        )));
    }
    let run_as = match (
        id(s.run_as_user, "run_as_user")?,
        s.run_as_username.as_str(),
    ) {
        (Some(uid), _) => RunAs::Uid(uid),
        (None, "") => RunAs::Image,
        (None, name) => RunAs::Name(name.to_owned()),
    };
    let seccomp = match s.seccomp {
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => SeccompMode::RuntimeDefault,
            Ok(cri::security_profile::ProfileType::Unconfined) => SeccompMode::Unconfined,
            Ok(cri::security_profile::ProfileType::Localhost) => {
                if !Path::new(&p.localhost_ref).is_absolute() {
                    return Err(invalid(format!(
                        "container config: {field}.seccomp.localhost_ref: {:?} is not an absolute path",
                        p.localhost_ref
                    )));
                }
                SeccompMode::Localhost(p.localhost_ref.into())
            }
            Err(_) => {
                return Err(invalid(format!(
                    "container config: {field}.seccomp.profile_type: unknown {}",
                    p.profile_type
                )));
            }
        },
        None => SeccompMode::Unconfined,
    };
    // The kubelet still fills the deprecated string beside the structured
    // field; older clients fill only it.
    #[allow(deprecated)]
    let apparmor = apparmor(s.apparmor, &s.apparmor_profile)?;
    let mut supplemental_groups = Vec::new();
    for (i, g) in s.supplemental_groups.iter().enumerate() {
        supplemental_groups.push(u32::try_from(*g).map_err(|_| {
            invalid(format!(
                "container config: {field}.supplemental_groups[{i}]: {g} is out of range"
            ))
        })?);
    }
    Ok(Security {
        privileged: s.privileged,
        add_caps: caps.add_capabilities,
        drop_caps: caps.drop_capabilities,
        readonly_rootfs: s.readonly_rootfs,
        run_as,
        run_as_group: id(s.run_as_group, "run_as_group")?,
        supplemental_groups,
        strict_groups: s.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32,
        no_new_privs: s.no_new_privs,
        masked_paths: (!s.masked_paths.is_empty()).then_some(s.masked_paths),
        readonly_paths: (!s.readonly_paths.is_empty()).then_some(s.readonly_paths),
        seccomp,
        apparmor,
        pid: ns_mode(
            opts.pid,
            "container config: linux.security_context.namespace_options.pid",
        )?,
        ipc: ns_mode(
            opts.ipc,
            "container config: linux.security_context.namespace_options.ipc",
        )?,
        network: ns_mode(
            opts.network,
            "container config: linux.security_context.namespace_options.network",
        )?,
        target_id: opts.target_id,
    })
}

/// CRI resources (create and update carry the same message).
pub fn resources(r: Option<cri::LinuxContainerResources>) -> Resources {
    let r = r.unwrap_or_default();
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit: r.memory_limit_in_bytes,
        memory_swap_limit: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepages: r
            .hugepage_limits
            .into_iter()
            .map(|h| (h.page_size, h.limit))
            .collect(),
        unified: sorted(r.unified),
    }
}

/// Validate a `CreateContainerRequest`'s config.
pub fn container_spec(c: Option<cri::ContainerConfig>) -> Result<ContainerSpec> {
    let c = c.ok_or_else(|| invalid("container config: missing".into()))?;
    let m = c
        .metadata
        .ok_or_else(|| invalid("container config: metadata: missing".into()))?;
    if m.name.is_empty() {
        return Err(invalid("container config: metadata.name: empty".into()));
    }
    let image = c.image.map(|i| i.image).unwrap_or_default();
    if image.is_empty() {
        return Err(invalid("container config: image.image: empty".into()));
    }
    let mut mounts = Vec::new();
    for (i, mnt) in c.mounts.into_iter().enumerate() {
        let field = format!("mounts[{i}]");
        if mnt.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Err(Error::FailedPrecondition(format!(
                "container config: {field}: image volumes are not supported"
            )));
        }
        if mnt.recursive_read_only && !mnt.readonly {
            return Err(invalid(format!(
                "container config: {field}.recursive_read_only: needs readonly"
            )));
        }
        if mnt.recursive_read_only
            && mnt.propagation != cri::MountPropagation::PropagationPrivate as i32
        {
            return Err(invalid(format!(
                "container config: {field}.recursive_read_only: needs private propagation"
            )));
        }
        let propagation = match cri::MountPropagation::try_from(mnt.propagation) {
            Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
            Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
            Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
            Err(_) => {
                return Err(invalid(format!(
                    "container config: {field}.propagation: unknown {}",
                    mnt.propagation
                )));
            }
        };
        mounts.push(Mount {
            container_path: container_path(
                &mnt.container_path,
                &format!("{field}.container_path"),
            )?,
            host_path: host_path(&mnt.host_path, &format!("{field}.host_path"))?,
            readonly: mnt.readonly,
            propagation,
            recursive_readonly: mnt.recursive_read_only,
        });
    }
    let mut devices = Vec::new();
    for (i, d) in c.devices.into_iter().enumerate() {
        if !d
            .permissions
            .chars()
            .all(|ch| matches!(ch, 'r' | 'w' | 'm'))
        {
            return Err(invalid(format!(
                "container config: devices[{i}].permissions: {:?} is not some of \"rwm\"",
                d.permissions
            )));
        }
        devices.push(Device {
            container_path: container_path(
                &d.container_path,
                &format!("devices[{i}].container_path"),
            )?,
            host_path: d.host_path.into(),
            permissions: d.permissions,
        });
    }
    let mut envs = Vec::new();
    for (i, kv) in c.envs.into_iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(invalid(format!(
                "container config: envs[{i}].key: {:?} is not a variable name",
                kv.key
            )));
        }
        envs.push((kv.key, kv.value));
    }
    let linux = c.linux.unwrap_or_default();
    Ok(ContainerSpec {
        meta: ContainerMeta {
            name: m.name,
            attempt: m.attempt,
        },
        image,
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs,
        mounts,
        devices,
        labels: sorted(c.labels),
        annotations: sorted(c.annotations),
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources: resources(linux.resources),
        security: security(linux.security_context)?,
    })
}

fn state_wire(s: State) -> i32 {
    (match s {
        State::Created => cri::ContainerState::ContainerCreated,
        State::Running => cri::ContainerState::ContainerRunning,
        State::Exited => cri::ContainerState::ContainerExited,
        State::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

fn meta_wire(c: &Container) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: c.spec.meta.name.clone(),
        attempt: c.spec.meta.attempt,
    }
}

fn image_wire(c: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: c.spec.image.clone(),
        ..Default::default()
    }
}

pub fn container_item(c: &Container, st: &Status) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: Some(meta_wire(c)),
        image: Some(image_wire(c)),
        image_ref: c.image_ref.clone(),
        state: state_wire(st.state),
        created_at: c.created_at,
        labels: c.spec.labels.clone().into_iter().collect(),
        annotations: c.spec.annotations.clone().into_iter().collect(),
        image_id: c.image_id.clone(),
    }
}

pub fn container_status(c: &Container, st: &Status) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(meta_wire(c)),
        state: state_wire(st.state),
        created_at: c.created_at,
        started_at: st.started_at,
        finished_at: st.finished_at,
        exit_code: st.exit_code,
        image: Some(image_wire(c)),
        image_ref: c.image_ref.clone(),
        reason: st.reason.clone(),
        message: st.message.clone(),
        labels: c.spec.labels.clone().into_iter().collect(),
        annotations: c.spec.annotations.clone().into_iter().collect(),
        mounts: c
            .spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.display().to_string(),
                readonly: m.readonly,
                recursive_read_only: m.recursive_readonly,
                propagation: (match m.propagation {
                    Propagation::Private => cri::MountPropagation::PropagationPrivate,
                    Propagation::HostToContainer => {
                        cri::MountPropagation::PropagationHostToContainer
                    }
                    Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
                }) as i32,
                ..Default::default()
            })
            .collect(),
        log_path: c
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: None,
        image_id: c.image_id.clone(),
        user: c.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u.groups.iter().map(|g| i64::from(*g)).collect(),
            }),
        }),
    }
}

/// The `info` map of a verbose status: berthd's record as JSON, with the
/// pid as crictl's `inspect` shows it.
pub fn container_info(c: &Container, st: &Status) -> HashMap<String, String> {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    v["pid"] = st.pid.into();
    HashMap::from([("info".to_owned(), v.to_string())])
}

pub fn stats_filter(f: Option<cri::ContainerStatsFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        state: None,
        labels: sorted(f.label_selector),
    }
}

pub fn container_stats(c: &Container, u: &Usage) -> cri::ContainerStats {
    let v = |value| Some(cri::UInt64Value { value });
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(meta_wire(c)),
            labels: c.spec.labels.clone().into_iter().collect(),
            annotations: c.spec.annotations.clone().into_iter().collect(),
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: u.timestamp,
            usage_core_nano_seconds: v(u.cpu_ns),
            usage_nano_cores: None,
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: u.timestamp,
            working_set_bytes: v(u.working_set),
            available_bytes: None,
            usage_bytes: v(u.memory_usage),
            rss_bytes: v(u.rss),
            page_faults: v(u.page_faults),
            major_page_faults: v(u.major_page_faults),
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: u.timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: c.bundle.join("upper").display().to_string(),
            }),
            used_bytes: v(u.writable_bytes),
            inodes_used: v(u.writable_inodes),
        }),
        swap: None,
    }
}

/// A pod's stats: its containers' and their sum (the pod's own cgroup may
/// be the kubelet's parent of several pods' containers, or none).
pub fn pod_sandbox_stats(
    sb: &crate::sandbox::model::Sandbox,
    containers: &[(Container, Usage)],
    interfaces: Option<&[crate::container::stats::Interface]>,
    timestamp: i64,
) -> cri::PodSandboxStats {
    let wire = |i: &crate::container::stats::Interface| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: Some(cri::UInt64Value { value: i.rx_bytes }),
        rx_errors: Some(cri::UInt64Value { value: i.rx_errors }),
        tx_bytes: Some(cri::UInt64Value { value: i.tx_bytes }),
        tx_errors: Some(cri::UInt64Value { value: i.tx_errors }),
    };
    // The kubelet's default interface is eth0 (CNI's usual name).
    let network = interfaces.map(|ifs| cri::NetworkUsage {
        timestamp,
        default_interface: ifs
            .iter()
            .find(|i| i.name == "eth0")
            .or_else(|| ifs.first())
            .map(wire),
        interfaces: ifs.iter().map(wire).collect(),
    });
    let sum = |f: fn(&Usage) -> u64| containers.iter().map(|(_, u)| f(u)).sum::<u64>();
    let v = |value| Some(cri::UInt64Value { value });
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: sb.id.clone(),
            metadata: Some(super::convert::meta_wire(&sb.spec.meta)),
            labels: sb.spec.labels.clone().into_iter().collect(),
            annotations: sb.spec.annotations.clone().into_iter().collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp,
                usage_core_nano_seconds: v(sum(|u| u.cpu_ns)),
                usage_nano_cores: None,
            }),
            memory: Some(cri::MemoryUsage {
                timestamp,
                working_set_bytes: v(sum(|u| u.working_set)),
                available_bytes: None,
                usage_bytes: v(sum(|u| u.memory_usage)),
                rss_bytes: v(sum(|u| u.rss)),
                page_faults: v(sum(|u| u.page_faults)),
                major_page_faults: v(sum(|u| u.major_page_faults)),
            }),
            network,
            process: Some(cri::ProcessUsage {
                timestamp,
                process_count: v(sum(|u| u.pids)),
            }),
            containers: containers
                .iter()
                .map(|(c, u)| container_stats(c, u))
                .collect(),
        }),
        windows: None,
    }
}

pub fn container_filter(f: Option<cri::ContainerFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        state: f
            .state
            .map(|s| match cri::ContainerState::try_from(s.state) {
                Ok(cri::ContainerState::ContainerCreated) => State::Created,
                Ok(cri::ContainerState::ContainerRunning) => State::Running,
                Ok(cri::ContainerState::ContainerExited) => State::Exited,
                _ => State::Unknown,
            }),
        labels: sorted(f.label_selector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::model::NsMode;

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 1,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_the_pods_namespaces_and_the_image_user() {
        let s = container_spec(Some(config())).unwrap();
        assert_eq!(s.meta.attempt, 1);
        assert_eq!(s.security.pid, NsMode::Pod);
        assert_eq!(s.security.run_as, RunAs::Image);
        assert_eq!(s.security.seccomp, SeccompMode::Unconfined);
    }

    #[test]
    #[allow(deprecated)]
    fn apparmor_prefers_the_structured_field_and_strips_localhost() {
        let with = |sc: cri::LinuxContainerSecurityContext| {
            let mut c = config();
            c.linux = Some(cri::LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            });
            container_spec(Some(c)).map(|s| s.security.apparmor)
        };
        let profile = |t: cri::security_profile::ProfileType, r: &str| {
            Some(cri::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            })
        };
        use cri::security_profile::ProfileType as T;
        assert_eq!(with(Default::default()).unwrap(), AppArmorMode::Unset);
        let both = cri::LinuxContainerSecurityContext {
            apparmor_profile: "localhost/old".into(),
            apparmor: profile(T::Localhost, "localhost/new"),
            ..Default::default()
        };
        assert_eq!(with(both).unwrap(), AppArmorMode::Localhost("new".into()));
        for (old, want) in [
            ("runtime/default", AppArmorMode::RuntimeDefault),
            ("unconfined", AppArmorMode::Unconfined),
            ("localhost/p1", AppArmorMode::Localhost("p1".into())),
        ] {
            let sc = cri::LinuxContainerSecurityContext {
                apparmor_profile: old.into(),
                ..Default::default()
            };
            assert_eq!(with(sc).unwrap(), want, "{old}");
        }
        let e = with(cri::LinuxContainerSecurityContext {
            apparmor_profile: "p1".into(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("apparmor_profile"), "{e}");
        let e = with(cri::LinuxContainerSecurityContext {
            apparmor: profile(T::Localhost, "localhost/"),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("apparmor.localhost_ref"), "{e}");
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let err = |c: cri::ContainerConfig| container_spec(Some(c)).unwrap_err().to_string();
        let mut c = config();
        c.image = None;
        assert!(err(c).contains("image.image: empty"));
        let mut c = config();
        c.mounts = vec![cri::Mount {
            container_path: "../etc".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        }];
        assert!(err(c).contains("mounts[0].container_path"));
        let mut c = config();
        c.mounts = vec![cri::Mount {
            container_path: "/x".into(),
            host_path: "relative".into(),
            ..Default::default()
        }];
        assert!(err(c).contains("mounts[0].host_path"));
        let mut c = config();
        c.envs = vec![cri::KeyValue {
            key: "A=B".into(),
            value: String::new(),
        }];
        assert!(err(c).contains("envs[0].key"));
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: -1 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(err(c).contains("run_as_user: -1 is out of range"));
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_group: Some(cri::Int64Value { value: 5 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(err(c).contains("run_as_group: set without run_as_user"));
        assert!(
            container_spec(None)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }

    #[test]
    fn host_paths_resolve_symlinks_and_refuse_dangling_ones() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(d.path().join("gone"), d.path().join("dangling")).unwrap();
        let p = |name: &str| d.path().join(name).display().to_string();
        assert_eq!(
            host_path(&p("link"), "m").unwrap(),
            real.canonicalize().unwrap()
        );
        assert!(
            host_path(&p("dangling"), "m")
                .unwrap_err()
                .to_string()
                .contains("symlink to nothing")
        );
        assert!(
            host_path(&p("new/dir"), "m").unwrap().is_dir(),
            "missing folders are created"
        );
    }
}
