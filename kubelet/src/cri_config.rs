//! A pod's CRI requests: the sandbox config and each container's config,
//! built from the validated pod. Pure, so what the runtime is asked for is
//! tested without one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

use crate::pod::{Container, EnvValue, Pod, PodField, Protocol, QosClass};
use crate::runtime_pod::*;
use crate::security::{Effective, ProcMount, Profile, SeLinux};
use crate::userns::Mapping;
use crate::volume::ObjectKind;

/// What the pod's containers are made with, besides the pod.
pub struct Context<'a> {
    pub pod_logs_dir: &'a Path,
    pub dns: cri::DnsConfig,
    pub pod_ip: Option<&'a str>,
    pub host_ip: Option<&'a str>,
    /// The node's memory, for Burstable pods' oom_score_adj.
    pub memory_capacity: i64,
    /// The ConfigMaps and Secrets the container's env names, fetched
    /// (absent: an optional one that does not exist).
    pub objects: EnvObjects,
    /// Service variables (`service_env`): the container's own win.
    pub service_env: Vec<(String, String)>,
    /// `<root-dir>/seccomp`: where Localhost seccomp profiles are.
    pub seccomp_root: PathBuf,
    /// The pod's cgroup (`pod_cgroups`), the sandbox's cgroup parent.
    pub cgroup_parent: Option<String>,
    /// The pod's own user namespace (`hostUsers: false`); None: the host's.
    pub userns: Option<Mapping>,
}

/// upstream's masked and read-only paths (pkg/securitycontext), sent for
/// procMount Default as upstream sends them: containerd masks only what
/// it is sent (berthd masks the same list when sent none).
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The masked and read-only paths of a procMount: upstream's defaults, or
/// none for Unmasked.
fn proc_paths(p: ProcMount) -> (Vec<String>, Vec<String>) {
    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }
    match p {
        ProcMount::Default => (owned(&DEFAULT_MASKED_PATHS), owned(&DEFAULT_READONLY_PATHS)),
        ProcMount::Unmasked => (Vec::new(), Vec::new()),
    }
}

/// The user namespace the sandbox and every container get, as upstream
/// sends it for every pod: the pod's own (POD, one mapping from container
/// id 0, the same for uids and gids) or the host's (NODE).
fn userns_options(m: Option<Mapping>) -> cri::UserNamespace {
    match m {
        None => cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        },
        Some(m) => {
            let ids = vec![cri::IdMapping {
                host_id: m.host_id,
                container_id: 0,
                length: m.length,
            }];
            cri::UserNamespace {
                mode: cri::NamespaceMode::Pod as i32,
                uids: ids.clone(),
                gids: ids,
            }
        }
    }
}

fn profile(p: Option<&Profile>, seccomp_root: Option<&Path>) -> Option<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (t, r) = match p? {
        Profile::RuntimeDefault => (ProfileType::RuntimeDefault, String::new()),
        Profile::Unconfined => (ProfileType::Unconfined, String::new()),
        Profile::Localhost(l) => (
            ProfileType::Localhost,
            match seccomp_root {
                Some(root) => root.join(l).to_string_lossy().into_owned(),
                None => l.clone(),
            },
        ),
    };
    Some(cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: r,
    })
}

/// Seccomp: the profile asked for, else Unconfined (upstream's default
/// without the SeccompDefault setting).
fn seccomp(p: Option<&Profile>, root: &Path) -> Option<cri::SecurityProfile> {
    profile(p, Some(root)).or(Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    }))
}

fn selinux(s: Option<&SeLinux>) -> Option<cri::SeLinuxOption> {
    s.map(|s| cri::SeLinuxOption {
        user: s.user.clone(),
        role: s.role.clone(),
        r#type: s.type_.clone(),
        level: s.level.clone(),
    })
}

fn groups_policy(strict: bool) -> i32 {
    if strict {
        cri::SupplementalGroupsPolicy::Strict as i32
    } else {
        cri::SupplementalGroupsPolicy::Merge as i32
    }
}

/// ConfigMap / Secret data by kind and name, values as text.
pub type EnvObjects = HashMap<(ObjectKind, String), std::collections::BTreeMap<String, String>>;

/// Whether a name is a valid environment variable name (upstream's rule:
/// no `=`, printable, not empty).
fn valid_env_name(n: &str) -> bool {
    !n.is_empty() && !n.contains('=') && n.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// `<podLogsDir>/<namespace>_<name>_<uid>`, upstream's layout.
pub fn pod_log_dir(logs: &Path, pod: &Pod) -> PathBuf {
    logs.join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    l.insert(POD_NAME.into(), pod.name.clone());
    l.insert(POD_NAMESPACE.into(), pod.namespace.clone());
    l.insert(POD_UID.into(), pod.uid.clone());
    l
}

fn protocol(p: Protocol) -> i32 {
    match p {
        Protocol::Tcp => cri::Protocol::Tcp as i32,
        Protocol::Udp => cri::Protocol::Udp as i32,
        Protocol::Sctp => cri::Protocol::Sctp as i32,
    }
}

pub fn sandbox_config(pod: &Pod, attempt: u32, ctx: &Context) -> cri::PodSandboxConfig {
    let sec = &pod.security;
    let ns_mode = |host: bool| {
        if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    let pid = if pod.host_pid {
        cri::NamespaceMode::Node as i32
    } else if pod.share_process_namespace {
        cri::NamespaceMode::Pod as i32
    } else {
        cri::NamespaceMode::Container as i32
    };
    let port_mappings = pod
        .all_containers()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            Some(cri::PortMapping {
                protocol: protocol(p.protocol),
                container_port: i32::from(p.container_port),
                host_port: i32::from(p.host_port?),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let mut annotations: HashMap<String, String> = pod
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(GRACE_PERIOD.into(), pod.grace_period.as_secs().to_string());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            namespace: pod.namespace.clone(),
            attempt,
        }),
        hostname: if pod.host_network {
            String::new()
        } else {
            pod.hostname.clone()
        },
        log_directory: pod_log_dir(ctx.pod_logs_dir, pod)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(ctx.dns.clone()),
        port_mappings,
        labels: pod_labels(pod),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: ns_mode(pod.host_network),
                    pid,
                    ipc: ns_mode(pod.host_ipc),
                    userns_options: Some(userns_options(ctx.userns)),
                    ..Default::default()
                }),
                selinux_options: selinux(sec.common.selinux.as_ref()),
                run_as_user: sec
                    .common
                    .run_as_user
                    .map(|value| cri::Int64Value { value }),
                run_as_group: sec
                    .common
                    .run_as_group
                    .map(|value| cri::Int64Value { value }),
                supplemental_groups: Effective::of(sec, &Default::default()).supplemental_groups,
                supplemental_groups_policy: groups_policy(sec.strict_groups),
                privileged: pod.all_containers().any(|c| c.security.privileged),
                seccomp: seccomp(sec.common.seccomp.as_ref(), &ctx.seccomp_root),
                apparmor: profile(sec.common.apparmor.as_ref(), None),
                ..Default::default()
            }),
            sysctls: sec.sysctls.iter().cloned().collect(),
            cgroup_parent: ctx.cgroup_parent.clone().unwrap_or_default(),
            ..Default::default()
        }),
        windows: None,
    }
}

/// CPU shares from a request: 1024 per core, at least 2 (the kernel's
/// minimum), 2 when nothing is asked for.
pub fn cpu_shares(milli: Option<i64>) -> i64 {
    match milli {
        None | Some(0) => 2,
        Some(m) => (m * 1024 / 1000).max(2),
    }
}

/// oom_score_adj by QoS: Guaranteed pods last to be killed, BestEffort
/// first, Burstable in between by how much of the node they ask for.
pub fn oom_score_adj(qos: QosClass, memory_request: Option<i64>, capacity: i64) -> i64 {
    match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let req = memory_request.unwrap_or(0);
            let adj = 1000 - (1000 * i128::from(req) / i128::from(capacity.max(1))) as i64;
            adj.clamp(2, 999)
        }
    }
}

pub fn linux_resources(pod: &Pod, c: &Container, capacity: i64) -> cri::LinuxContainerResources {
    let r = &c.resources;
    let (period, quota) = match r.cpu_limit_milli {
        Some(m) => (100_000, (m * 100).max(1000)),
        None => (0, 0),
    };
    cri::LinuxContainerResources {
        cpu_period: period,
        cpu_quota: quota,
        cpu_shares: cpu_shares(r.cpu_request_milli),
        memory_limit_in_bytes: r.memory_limit.unwrap_or(0),
        oom_score_adj: oom_score_adj(pod.qos, r.memory_request, capacity),
        ..Default::default()
    }
}

/// The container's environment: the downward API filled in, `$(VAR)`
/// references to earlier variables (or service variables) expanded, in the
/// spec's order; then the service variables the container does not set.
pub fn env(pod: &Pod, c: &Container, ctx: &Context) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for f in &c.env_from {
        let Some(data) = ctx.objects.get(&(f.kind.clone(), f.name.clone())) else {
            continue;
        };
        for (k, v) in data {
            let name = format!("{}{k}", f.prefix);
            if valid_env_name(&name) {
                out.retain(|(n, _)| *n != name);
                out.push((name, v.clone()));
            }
        }
    }
    for (name, v) in &c.env {
        let value = match v {
            EnvValue::Literal(s) => {
                let lookup = |n: &str| {
                    out.iter()
                        .rev()
                        .chain(ctx.service_env.iter())
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                };
                crate::pod::expand(s, &lookup)
            }
            EnvValue::Field(f) => match f {
                PodField::Name => pod.name.clone(),
                PodField::Namespace => pod.namespace.clone(),
                PodField::Uid => pod.uid.clone(),
                PodField::NodeName => pod.node_name.clone(),
                PodField::ServiceAccountName => pod.service_account_name.clone(),
                PodField::PodIp => ctx.pod_ip.unwrap_or_default().to_owned(),
                PodField::HostIp => ctx.host_ip.unwrap_or_default().to_owned(),
            },
            EnvValue::Resource {
                container,
                resource,
                divisor,
            } => {
                let target = container
                    .as_ref()
                    .and_then(|n| pod.all_containers().find(|x| x.name == *n))
                    .unwrap_or(c);
                crate::pod::resource_field(
                    target,
                    resource,
                    divisor.as_deref(),
                    ctx.memory_capacity,
                )
                .unwrap_or_default()
            }
            EnvValue::ObjectKey {
                kind,
                name: obj,
                key,
                ..
            } => {
                match ctx
                    .objects
                    .get(&(kind.clone(), obj.clone()))
                    .and_then(|d| d.get(key))
                {
                    Some(v) => v.clone(),
                    // Optional and missing: no variable, as upstream.
                    None => continue,
                }
            }
        };
        out.retain(|(k, _)| k != name);
        out.push((name.clone(), value));
    }
    for (k, v) in &ctx.service_env {
        if !out.iter().any(|(n, _)| n == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    out
}

pub fn container_config(
    pod: &Pod,
    c: &Container,
    restart_count: u32,
    ctx: &Context,
    mounts: Vec<cri::Mount>,
) -> cri::ContainerConfig {
    let e = Effective::of(&pod.security, &c.security);
    let envs = env(pod, c, ctx);
    let lookup = |n: &str| envs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let expand_all = |v: &[String]| {
        v.iter()
            .map(|s| crate::pod::expand(s, &lookup))
            .collect::<Vec<_>>()
    };
    let mut labels = pod_labels(pod);
    labels.retain(|k, _| k.starts_with("io.kubernetes."));
    labels.insert(CONTAINER_NAME.into(), c.name.clone());
    let ports: Vec<serde_json::Value> = c
        .ports
        .iter()
        .map(|p| serde_json::json!({"containerPort": p.container_port, "protocol": match p.protocol { Protocol::Tcp => "TCP", Protocol::Udp => "UDP", Protocol::Sctp => "SCTP" }}))
        .collect();
    let mut annotations = HashMap::from([
        (CONTAINER_HASH.to_owned(), c.hash.clone()),
        (RESTART_COUNT.to_owned(), restart_count.to_string()),
        (
            TERMINATION_MESSAGE_PATH.to_owned(),
            c.termination_message_path.clone(),
        ),
        (
            GRACE_PERIOD.to_owned(),
            pod.grace_period.as_secs().to_string(),
        ),
    ]);
    if !ports.is_empty() {
        annotations.insert(
            CONTAINER_PORTS.into(),
            serde_json::Value::Array(ports).to_string(),
        );
    }
    let pid = if pod.host_pid {
        cri::NamespaceMode::Node as i32
    } else if pod.share_process_namespace {
        cri::NamespaceMode::Pod as i32
    } else {
        cri::NamespaceMode::Container as i32
    };
    let ns = |host: bool| {
        if host {
            cri::NamespaceMode::Node as i32
        } else {
            cri::NamespaceMode::Pod as i32
        }
    };
    let (masked_paths, readonly_paths) = proc_paths(e.container.proc_mount);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: restart_count,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone(),
            user_specified_image: c.image.clone(),
            ..Default::default()
        }),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: envs
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        labels,
        annotations,
        log_path: format!("{}/{restart_count}.log", c.name),
        mounts,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(pod, c, ctx.memory_capacity)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: ns(pod.host_network),
                    pid,
                    ipc: ns(pod.host_ipc),
                    userns_options: Some(userns_options(ctx.userns)),
                    ..Default::default()
                }),
                capabilities: (!e.container.add_caps.is_empty()
                    || !e.container.drop_caps.is_empty())
                .then(|| cri::Capability {
                    add_capabilities: e.container.add_caps.clone(),
                    drop_capabilities: e.container.drop_caps.clone(),
                    ..Default::default()
                }),
                privileged: e.container.privileged,
                selinux_options: selinux(e.common.selinux.as_ref()),
                run_as_user: e.common.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: e.common.run_as_group.map(|value| cri::Int64Value { value }),
                readonly_rootfs: e.container.readonly_rootfs,
                supplemental_groups: e.supplemental_groups.clone(),
                supplemental_groups_policy: groups_policy(e.strict_groups),
                no_new_privs: e.no_new_privs(),
                seccomp: seccomp(e.common.seccomp.as_ref(), &ctx.seccomp_root),
                apparmor: profile(e.common.apparmor.as_ref(), None),
                masked_paths,
                readonly_paths,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::pod;

    fn ctx() -> Context<'static> {
        Context {
            pod_logs_dir: Path::new("/var/log/pods"),
            dns: cri::DnsConfig::default(),
            pod_ip: Some("10.0.0.5"),
            host_ip: Some("192.0.2.1"),
            memory_capacity: 1 << 30,
            objects: Default::default(),
            service_env: Vec::new(),
            seccomp_root: PathBuf::from("/var/lib/kubelet/seccomp"),
            cgroup_parent: None,
            userns: None,
        }
    }

    fn ns_of_sandbox(s: &cri::PodSandboxConfig) -> cri::NamespaceOption {
        s.linux
            .clone()
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap()
    }

    fn sec_of(c: &cri::ContainerConfig) -> cri::LinuxContainerSecurityContext {
        c.linux.clone().unwrap().security_context.unwrap()
    }

    #[test]
    fn a_user_namespace_goes_to_the_sandbox_and_every_container() {
        let p = pod(
            "hostUsers: false,",
            "{name: a, image: b}, {name: c, image: d}",
        );
        let mut x = ctx();
        x.userns = Some(Mapping {
            host_id: 196608,
            length: 65536,
        });
        let want = cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![cri::IdMapping {
                host_id: 196608,
                container_id: 0,
                length: 65536,
            }],
            gids: vec![cri::IdMapping {
                host_id: 196608,
                container_id: 0,
                length: 65536,
            }],
        };
        let s = sandbox_config(&p, 0, &x);
        assert_eq!(ns_of_sandbox(&s).userns_options.as_ref(), Some(&want));
        for c in &p.containers {
            let cc = container_config(&p, c, 0, &x, Vec::new());
            assert_eq!(
                sec_of(&cc).namespace_options.unwrap().userns_options,
                Some(want.clone()),
                "{}",
                c.name
            );
        }
        // Without one: the node's, as upstream says it.
        let p = pod("", "{name: a, image: b}");
        let s = sandbox_config(&p, 0, &ctx());
        let u = ns_of_sandbox(&s).userns_options.unwrap();
        assert_eq!(u.mode, cri::NamespaceMode::Node as i32);
        assert!(u.uids.is_empty() && u.gids.is_empty());
    }

    #[test]
    fn proc_mount_sets_the_masked_and_readonly_paths() {
        let p = pod(
            "",
            "{name: d, image: b}, {name: u, image: b, securityContext: {procMount: Unmasked}}",
        );
        let d = sec_of(&container_config(
            &p,
            &p.containers[0],
            0,
            &ctx(),
            Vec::new(),
        ));
        assert_eq!(d.masked_paths, DEFAULT_MASKED_PATHS);
        assert!(d.masked_paths.iter().any(|m| m == "/proc/kcore"));
        assert_eq!(d.readonly_paths, DEFAULT_READONLY_PATHS);
        let u = sec_of(&container_config(
            &p,
            &p.containers[1],
            0,
            &ctx(),
            Vec::new(),
        ));
        assert!(u.masked_paths.is_empty() && u.readonly_paths.is_empty());
    }

    #[test]
    fn sandbox_config_has_labels_ports_and_namespaces() {
        let p = pod(
            "hostNetwork: false,",
            "{name: web, image: w, ports: [{containerPort: 80, hostPort: 18080, hostIP: 127.0.0.1}, {containerPort: 81}]}",
        );
        let s = sandbox_config(&p, 2, &ctx());
        assert_eq!(s.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(s.labels[POD_UID], "u1");
        assert_eq!(s.labels[POD_NAME], "p");
        assert_eq!(s.log_directory, "/var/log/pods/default_p_u1");
        assert_eq!(
            s.port_mappings,
            [cri::PortMapping {
                protocol: 0,
                container_port: 80,
                host_port: 18080,
                host_ip: "127.0.0.1".into()
            }]
        );
        assert_eq!(s.hostname, "p");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!((ns.network, ns.pid, ns.ipc), (0, 1, 0));
        let h = sandbox_config(&pod("hostNetwork: true,", "{name: a, image: b}"), 0, &ctx());
        assert_eq!(
            h.linux
                .unwrap()
                .security_context
                .unwrap()
                .namespace_options
                .unwrap()
                .network,
            cri::NamespaceMode::Node as i32
        );
    }

    #[test]
    fn container_config_from_the_spec() {
        let p = pod(
            "",
            "{name: app, image: img:1, command: [sh, -c], args: ['echo $(GREETING) $(POD)'], workingDir: /srv, env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: GREETING, value: hi-$(POD)}, {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}], resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}}",
        );
        let c = container_config(&p, &p.containers[0], 3, &ctx(), Vec::new());
        assert_eq!(c.metadata.as_ref().unwrap().attempt, 3);
        assert_eq!(c.command, ["sh", "-c"]);
        assert_eq!(c.args, ["echo hi-p p"]);
        assert_eq!(c.working_dir, "/srv");
        let env: Vec<_> = c
            .envs
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            env,
            [("POD", "p"), ("GREETING", "hi-p"), ("IP", "10.0.0.5")]
        );
        assert_eq!(c.log_path, "app/3.log");
        assert_eq!(c.labels[CONTAINER_NAME], "app");
        assert_eq!(c.annotations[RESTART_COUNT], "3");
        let r = c.linux.unwrap().resources.unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (256, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        // Burstable, asking for 1/16 of the node.
        assert_eq!(r.oom_score_adj, 1000 - 62);
    }

    #[test]
    fn resources_by_qos() {
        assert_eq!(cpu_shares(None), 2);
        assert_eq!(cpu_shares(Some(1)), 2);
        assert_eq!(cpu_shares(Some(1000)), 1024);
        assert_eq!(oom_score_adj(QosClass::Guaranteed, Some(1), 100), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, None, 100), 1000);
        assert_eq!(oom_score_adj(QosClass::Burstable, Some(100), 100), 2);
        assert_eq!(oom_score_adj(QosClass::Burstable, None, 100), 999);
        let p = pod("", "{name: a, image: b}");
        let r = linux_resources(&p, &p.containers[0], 1 << 30);
        assert_eq!(
            (r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj),
            (0, 0, 1000)
        );
    }

    #[test]
    fn env_from_objects_keys_and_resources() {
        let p = pod(
            "",
            "{name: c, image: i, resources: {limits: {memory: 128Mi}}, envFrom: [{configMapRef: {name: cm}, prefix: CM_}, {secretRef: {name: missing, optional: true}}], env: [{name: FROM_SECRET, valueFrom: {secretKeyRef: {name: s, key: password}}}, {name: OPT, valueFrom: {configMapKeyRef: {name: cm, key: nope, optional: true}}}, {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}, {name: CM_a, value: overridden}]}",
        );
        let mut c = ctx();
        c.objects.insert(
            (ObjectKind::ConfigMap, "cm".into()),
            [
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
                ("bad=key".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        c.objects.insert(
            (ObjectKind::Secret, "s".into()),
            [("password".to_owned(), "hunter2".to_owned())].into(),
        );
        let e: HashMap<String, String> = env(&p, &p.containers[0], &c).into_iter().collect();
        assert_eq!(e["CM_b"], "2");
        assert_eq!(e["CM_a"], "overridden", "env wins over envFrom");
        assert!(!e.contains_key("CM_bad=key"), "invalid names are skipped");
        assert_eq!(e["FROM_SECRET"], "hunter2");
        assert!(
            !e.contains_key("OPT"),
            "an optional missing key sets nothing"
        );
        assert_eq!(e["MEM"], "128");
    }
}
