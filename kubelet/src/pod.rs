//! The pod as the kubelet works on it: converted once from the API's Pod
//! (k8s-openapi) and validated, so the workers never look at wire types.
//! Anything the kubelet cannot run is refused here with an error naming the
//! pod and the field; fields it does not implement yet give warnings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1 as api;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::quantity::Quantity;
use crate::volume::ObjectKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsPolicy {
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub container_port: u16,
    pub host_port: Option<u16>,
    pub host_ip: Option<String>,
    pub protocol: Protocol,
}

/// Requests and limits that the CRI gets, already parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request_milli: Option<i64>,
    pub cpu_limit_milli: Option<i64>,
    pub memory_request: Option<i64>,
    pub memory_limit: Option<i64>,
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A literal, `$(VAR)` references not yet expanded.
    Literal(String),
    /// The downward API: a field of the pod (`metadata.name`, `status.podIP`...).
    Field(PodField),
    /// The downward API: a resource of a container (`limits.memory`...).
    Resource {
        container: Option<String>,
        resource: String,
        divisor: Option<String>,
    },
    /// A key of a ConfigMap or Secret (`configMapKeyRef`, `secretKeyRef`).
    ObjectKey {
        kind: ObjectKind,
        name: String,
        key: String,
        optional: bool,
    },
}

/// `envFrom`: every key of a ConfigMap or Secret, with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFrom {
    pub kind: ObjectKind,
    pub name: String,
    pub prefix: String,
    pub optional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodField {
    Name,
    Namespace,
    Uid,
    NodeName,
    ServiceAccountName,
    PodIp,
    HostIp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub pull_policy: PullPolicy,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub env: Vec<(String, EnvValue)>,
    pub ports: Vec<Port>,
    pub resources: Resources,
    pub termination_message_path: String,
    pub env_from: Vec<EnvFrom>,
    /// Volume mounts (checked against the pod's volumes).
    pub mounts: Vec<crate::volume::Mount>,
    pub probes: crate::probe::Probes,
    pub lifecycle: crate::lifecycle::Lifecycle,
    pub security: crate::security::ContainerSecurity,
    /// A restartable init container (`restartPolicy: Always`): started in
    /// the init sequence, then kept running beside the containers.
    pub sidecar: bool,
    /// Hash of the container's spec: a running container whose hash differs
    /// from its spec's was made from an older spec and is restarted.
    pub hash: String,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: String,
    pub host_network: bool,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// `spec.hostUsers` (default true); false: the pod gets a user
    /// namespace of its own (`userns.rs`).
    pub host_users: bool,
    pub share_process_namespace: bool,
    pub hostname: String,
    pub service_account_name: String,
    pub security: crate::security::PodSecurity,
    /// `spec.enableServiceLinks` (default true).
    pub enable_service_links: bool,
    pub dns_policy: DnsPolicy,
    pub dns_config: Option<api::PodDNSConfig>,
    pub restart_policy: RestartPolicy,
    pub grace_period: Duration,
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub qos: QosClass,
    pub volumes: Vec<crate::volume::Volume>,
    /// Names of the Secrets with registry credentials (`imagePullSecrets`).
    pub image_pull_secrets: Vec<String>,
    /// The API server asked for the pod's deletion: stop it within this
    /// grace period (`metadata.deletionGracePeriodSeconds`).
    pub deletion_grace: Option<Duration>,
    /// The API server's status already says Succeeded or Failed.
    pub terminal: bool,
    /// The API object it came from (metadata and spec for status reports).
    pub source: Arc<api::Pod>,
}

impl Pod {
    /// `namespace/name`, how logs and errors name a pod.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A static pod (from a manifest file), not one of the API server's.
    pub fn is_static(&self) -> bool {
        self.annotations
            .get(crate::manifest::CONFIG_SOURCE)
            .is_some_and(|s| s == "file")
    }

    /// Init and regular containers, init first.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }

    /// The containers that run for the pod's life: the regular ones and
    /// the sidecars (probed, stopped on removal).
    pub fn long_running(&self) -> impl Iterator<Item = &Container> {
        self.containers
            .iter()
            .chain(self.init_containers.iter().filter(|c| c.sidecar))
    }

    /// Convert an API pod. Returns the pod and warnings for the fields that
    /// are accepted but not implemented yet.
    pub fn from_api(pod: api::Pod) -> Result<(Pod, Vec<String>)> {
        let meta = &pod.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let label = format!("{namespace}/{name}");
        let err = |message: String| Error::PodSpec {
            pod: label.clone(),
            message,
        };
        if name.is_empty() {
            return Err(err("metadata.name: required".into()));
        }
        if !crate::flags::is_dns_subdomain(&name) {
            return Err(err(format!(
                "metadata.name: {name:?} is not a valid DNS subdomain"
            )));
        }
        if !crate::flags::is_dns_label(&namespace) {
            return Err(err(format!(
                "metadata.namespace: {namespace:?} is not a valid DNS label"
            )));
        }
        let uid = meta
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| err("metadata.uid: required".into()))?;
        let Some(spec) = pod.spec.as_ref() else {
            return Err(err("spec: required".into()));
        };
        let mut warnings = Vec::new();
        let mut warn = |field: String| {
            warnings.push(format!(
                "pod {label}: {field} is not implemented by berth-kubelet yet, ignored"
            ))
        };

        let restart_policy = match spec.restart_policy.as_deref() {
            None | Some("Always") => RestartPolicy::Always,
            Some("OnFailure") => RestartPolicy::OnFailure,
            Some("Never") => RestartPolicy::Never,
            Some(o) => {
                return Err(err(format!(
                    "spec.restartPolicy: {o:?} is not Always, OnFailure or Never"
                )));
            }
        };
        let dns_policy = match spec.dns_policy.as_deref() {
            None | Some("ClusterFirst") => DnsPolicy::ClusterFirst,
            Some("ClusterFirstWithHostNet") => DnsPolicy::ClusterFirstWithHostNet,
            Some("Default") => DnsPolicy::Default,
            Some("None") => DnsPolicy::None,
            Some(o) => {
                return Err(err(format!(
                    "spec.dnsPolicy: {o:?} is not ClusterFirst, ClusterFirstWithHostNet, Default or None"
                )));
            }
        };
        if dns_policy == DnsPolicy::None && spec.dns_config.is_none() {
            return Err(err("spec.dnsConfig: required when dnsPolicy is None".into()));
        }
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        if grace < 0 {
            return Err(err(format!(
                "spec.terminationGracePeriodSeconds: {grace} is negative"
            )));
        }
        let volumes = crate::volume::volumes(spec).map_err(&err)?;
        let security =
            crate::security::PodSecurity::from_api(spec.security_context.as_ref(), &mut warn)
                .map_err(&err)?;
        for (field, set) in [
            (
                "spec.activeDeadlineSeconds",
                spec.active_deadline_seconds.is_some(),
            ),
            ("spec.hostAliases", spec.host_aliases.is_some()),
            ("spec.runtimeClassName", spec.runtime_class_name.is_some()),
            (
                "spec.ephemeralContainers",
                spec.ephemeral_containers
                    .as_ref()
                    .is_some_and(|v| !v.is_empty()),
            ),
        ] {
            if set {
                warn(field.to_owned());
            }
        }

        if spec.containers.is_empty() {
            return Err(err(
                "spec.containers: at least one container is required".into()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut convert = |list: &[api::Container],
                           field: &str,
                           warn: &mut dyn FnMut(String)|
         -> Result<Vec<Container>> {
            let mut out = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let at = format!("{field}[{i}]");
                if !seen.insert(c.name.clone()) {
                    return Err(err(format!("{at}.name: {:?} is used twice", c.name)));
                }
                let mut cc = convert_container(c, &at, warn).map_err(&err)?;
                cc.mounts = crate::volume::mounts(c, &volumes, &at).map_err(&err)?;
                out.push(cc);
            }
            Ok(out)
        };
        let mut init_containers = convert(
            spec.init_containers.as_deref().unwrap_or_default(),
            "spec.initContainers",
            &mut warn,
        )?;
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            match c.restart_policy.as_deref() {
                None => {}
                Some("Always") => init_containers[i].sidecar = true,
                Some(other) => {
                    return Err(err(format!(
                        "spec.initContainers[{i}].restartPolicy: {other:?} is not supported (only Always)"
                    )));
                }
            }
        }
        if let Some((i, c)) = spec
            .containers
            .iter()
            .enumerate()
            .find(|(_, c)| c.restart_policy.is_some())
        {
            return Err(err(format!(
                "spec.containers[{i}].restartPolicy: {:?} is not supported for regular containers",
                c.restart_policy.as_deref().unwrap_or_default()
            )));
        }
        // Probes and postStart/preStop are for sidecars, not the init
        // containers that run to completion.
        if let Some((i, (kind, _))) = init_containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.sidecar)
            .find_map(|(i, c)| c.probes.iter().next().map(|p| (i, p)))
        {
            return Err(err(format!(
                "spec.initContainers[{i}].{}: may not be set for init containers",
                kind.field()
            )));
        }
        let containers = convert(&spec.containers, "spec.containers", &mut warn)?;
        let qos = qos_class(
            init_containers
                .iter()
                .chain(containers.iter())
                .map(|c| &c.resources),
        );
        let hostname = spec
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| {
                name.chars()
                    .take(63)
                    .collect::<String>()
                    .trim_end_matches(['-', '.'])
                    .to_owned()
            });
        let pod_out = Pod {
            uid,
            name,
            namespace,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            host_network: spec.host_network.unwrap_or(false),
            host_pid: spec.host_pid.unwrap_or(false),
            host_ipc: spec.host_ipc.unwrap_or(false),
            host_users: spec.host_users.unwrap_or(true),
            share_process_namespace: spec.share_process_namespace.unwrap_or(false),
            hostname,
            service_account_name: spec.service_account_name.clone().unwrap_or_default(),
            enable_service_links: spec.enable_service_links.unwrap_or(true),
            security,
            dns_policy,
            dns_config: spec.dns_config.clone(),
            restart_policy,
            grace_period: Duration::from_secs(grace as u64),
            init_containers,
            containers,
            qos,
            volumes,
            image_pull_secrets: spec
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
            deletion_grace: meta.deletion_timestamp.as_ref().map(|_| {
                Duration::from_secs(
                    meta.deletion_grace_period_seconds.unwrap_or(grace).max(0) as u64
                )
            }),
            terminal: matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ),
            source: Arc::new(pod),
        };
        Ok((pod_out, warnings))
    }
}

fn convert_container(
    c: &api::Container,
    at: &str,
    warn: &mut dyn FnMut(String),
) -> std::result::Result<Container, String> {
    if !crate::flags::is_dns_label(&c.name) {
        return Err(format!("{at}.name: {:?} is not a valid DNS label", c.name));
    }
    let image = c.image.clone().unwrap_or_default();
    if image.trim().is_empty() {
        return Err(format!("{at}.image: required"));
    }
    let pull_policy = match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        Some("Never") => PullPolicy::Never,
        None => default_pull_policy(&image),
        Some(o) => {
            return Err(format!(
                "{at}.imagePullPolicy: {o:?} is not Always, IfNotPresent or Never"
            ));
        }
    };
    let mut env = Vec::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.name.is_empty() {
            return Err(format!("{at}.env[{i}].name: required"));
        }
        let value = match (&e.value, &e.value_from) {
            (_, Some(from)) => {
                env_source(from).map_err(|m| format!("{at}.env[{i}] ({}): {m}", e.name))?
            }
            (v, None) => EnvValue::Literal(v.clone().unwrap_or_default()),
        };
        env.push((e.name.clone(), value));
    }
    let mut env_from = Vec::new();
    for (i, f) in c.env_from.iter().flatten().enumerate() {
        let (kind, name, optional) = match (&f.config_map_ref, &f.secret_ref) {
            (Some(r), None) => (ObjectKind::ConfigMap, r.name.clone(), r.optional),
            (None, Some(r)) => (ObjectKind::Secret, r.name.clone(), r.optional),
            _ => {
                return Err(format!(
                    "{at}.envFrom[{i}]: exactly one of configMapRef and secretRef"
                ));
            }
        };
        env_from.push(EnvFrom {
            kind,
            name,
            prefix: f.prefix.clone().unwrap_or_default(),
            optional: optional.unwrap_or(false),
        });
    }
    let mut ports = Vec::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let port = |v: i32, what: &str| -> std::result::Result<u16, String> {
            u16::try_from(v)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{at}.ports[{i}].{what}: {v} is not a port (1-65535)"))
        };
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(o) => {
                return Err(format!(
                    "{at}.ports[{i}].protocol: {o:?} is not TCP, UDP or SCTP"
                ));
            }
        };
        let host_port = match p.host_port {
            None | Some(0) => None,
            Some(h) => Some(port(h, "hostPort")?),
        };
        if let Some(ip) = &p.host_ip
            && !ip.is_empty()
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(format!(
                "{at}.ports[{i}].hostIP: {ip:?} is not an IP address"
            ));
        }
        ports.push(Port {
            container_port: port(p.container_port, "containerPort")?,
            host_port,
            host_ip: p.host_ip.clone().filter(|s| !s.is_empty()),
            protocol,
        });
    }
    let resources = resources(c.resources.as_ref(), at)?;
    let probes = crate::probe::Probes::from_api(c, at)?;
    let lifecycle = crate::lifecycle::Lifecycle::from_api(c, at)?;
    let security =
        crate::security::ContainerSecurity::from_api(c.security_context.as_ref(), at, &mut |f| {
            warn(f)
        })?;
    for (field, set) in [
        (
            "lifecycle.stopSignal",
            c.lifecycle
                .as_ref()
                .is_some_and(|l| l.stop_signal.is_some()),
        ),
        ("tty", c.tty == Some(true)),
        ("stdin", c.stdin == Some(true)),
    ] {
        if set {
            warn(format!("{at}.{field}"));
        }
    }
    let spec_json = serde_json::to_vec(c).unwrap_or_default();
    let hash = hex::encode(&Sha256::digest(&spec_json)[..8]);
    Ok(Container {
        name: c.name.clone(),
        image,
        pull_policy,
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        env,
        ports,
        resources,
        termination_message_path: c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
        mounts: Vec::new(),
        env_from,
        probes,
        lifecycle,
        security,
        sidecar: false,
        hash,
    })
}

/// A `resourceFieldRef` value of a container (downward API): its limit or
/// request, the node's capacity for an unset limit, divided by `divisor`
/// and rounded up, as upstream.
pub fn resource_field(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    memory_capacity: i64,
) -> std::result::Result<String, String> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let r = &c.resources;
    let div = |default: &str| -> std::result::Result<Quantity, String> {
        Quantity::parse(divisor.unwrap_or(default))
            .map_err(|e| format!("resourceFieldRef {resource}: divisor: {e}"))
    };
    let ceil = |n: i64, d: i64| if d <= 0 { n } else { (n + d - 1) / d };
    match resource {
        "limits.cpu" | "requests.cpu" => {
            let milli = if resource == "limits.cpu" {
                r.cpu_limit_milli.unwrap_or(cpus * 1000)
            } else {
                r.cpu_request_milli.unwrap_or(0)
            };
            Ok(ceil(milli, div("1")?.milli()).to_string())
        }
        "limits.memory" | "requests.memory" => {
            let bytes = if resource == "limits.memory" {
                r.memory_limit.unwrap_or(memory_capacity)
            } else {
                r.memory_request.unwrap_or(0)
            };
            Ok(ceil(bytes, div("1")?.value()).to_string())
        }
        o => Err(format!("resourceFieldRef: resource {o:?} is not supported")),
    }
}

fn env_source(from: &api::EnvVarSource) -> std::result::Result<EnvValue, String> {
    if let Some(r) = &from.config_map_key_ref {
        return Ok(EnvValue::ObjectKey {
            kind: ObjectKind::ConfigMap,
            name: r.name.clone(),
            key: r.key.clone(),
            optional: r.optional.unwrap_or(false),
        });
    }
    if let Some(r) = &from.secret_key_ref {
        return Ok(EnvValue::ObjectKey {
            kind: ObjectKind::Secret,
            name: r.name.clone(),
            key: r.key.clone(),
            optional: r.optional.unwrap_or(false),
        });
    }
    if let Some(r) = &from.resource_field_ref {
        if !matches!(
            r.resource.as_str(),
            "limits.cpu" | "requests.cpu" | "limits.memory" | "requests.memory"
        ) {
            return Err(format!(
                "valueFrom.resourceFieldRef.resource {:?} is not supported by berth-kubelet",
                r.resource
            ));
        }
        return Ok(EnvValue::Resource {
            container: r.container_name.clone().filter(|c| !c.is_empty()),
            resource: r.resource.clone(),
            divisor: r.divisor.as_ref().map(|d| d.0.clone()),
        });
    }
    if let Some(f) = &from.field_ref {
        return Ok(EnvValue::Field(match f.field_path.as_str() {
            "metadata.name" => PodField::Name,
            "metadata.namespace" => PodField::Namespace,
            "metadata.uid" => PodField::Uid,
            "spec.nodeName" => PodField::NodeName,
            "spec.serviceAccountName" => PodField::ServiceAccountName,
            "status.podIP" => PodField::PodIp,
            "status.hostIP" => PodField::HostIp,
            o => {
                return Err(format!(
                    "valueFrom.fieldRef.fieldPath {o:?} is not supported by berth-kubelet yet"
                ));
            }
        }));
    }
    if from.file_key_ref.is_some() {
        return Err("valueFrom.fileKeyRef is not supported by berth-kubelet yet".into());
    }
    Err("valueFrom: names no source".into())
}

fn resources(
    r: Option<&api::ResourceRequirements>,
    at: &str,
) -> std::result::Result<Resources, String> {
    let Some(r) = r else {
        return Ok(Resources::default());
    };
    let get =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         which: &str,
         key: &str| {
            m.as_ref()
                .and_then(|m| m.get(key))
                .map(|q| {
                    let v = Quantity::parse(&q.0)
                        .map_err(|e| format!("{at}.resources.{which}.{key}: {e}"))?;
                    if v.is_negative() {
                        return Err(format!(
                            "{at}.resources.{which}.{key}: {:?} is negative",
                            q.0
                        ));
                    }
                    Ok(v)
                })
                .transpose()
        };
    let cpu_limit = get(&r.limits, "limits", "cpu")?;
    let mem_limit = get(&r.limits, "limits", "memory")?;
    // As the API server defaults: a request left out is the limit.
    let cpu_request = get(&r.requests, "requests", "cpu")?.or(cpu_limit);
    let mem_request = get(&r.requests, "requests", "memory")?.or(mem_limit);
    if let (Some(req), Some(lim)) = (cpu_request, cpu_limit)
        && req > lim
    {
        return Err(format!("{at}.resources.requests.cpu: more than the limit"));
    }
    if let (Some(req), Some(lim)) = (mem_request, mem_limit)
        && req > lim
    {
        return Err(format!(
            "{at}.resources.requests.memory: more than the limit"
        ));
    }
    Ok(Resources {
        cpu_request_milli: cpu_request.map(Quantity::milli),
        cpu_limit_milli: cpu_limit.map(Quantity::milli),
        memory_request: mem_request.map(Quantity::value),
        memory_limit: mem_limit.map(Quantity::value),
    })
}

/// Always for `:latest` or no tag, IfNotPresent otherwise (upstream's default).
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

/// Guaranteed: every container has CPU and memory limits equal to its
/// requests. BestEffort: nobody asks for anything. Burstable: the rest.
pub fn qos_class<'a>(resources: impl Iterator<Item = &'a Resources>) -> QosClass {
    let mut any = false;
    let mut all_guaranteed = true;
    for r in resources {
        if r.cpu_request_milli.is_some()
            || r.cpu_limit_milli.is_some()
            || r.memory_request.is_some()
            || r.memory_limit.is_some()
        {
            any = true;
        }
        let g = r.cpu_limit_milli.is_some()
            && r.memory_limit.is_some()
            && r.cpu_request_milli == r.cpu_limit_milli
            && r.memory_request == r.memory_limit;
        all_guaranteed &= g;
    }
    match (any, all_guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// Expand `$(VAR)` references with `vars` as the API documents it: `$$`
/// is a literal `$`, an unknown variable stays as written.
pub fn expand(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(')
            && let Some(end) = a.find(')')
        {
            let name = &a[..end];
            match vars(name) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &a[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Result<(Pod, Vec<String>)> {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        Pod::from_api(serde_json::from_value(v).unwrap())
    }

    const WEB: &str = "metadata: {name: web, uid: u1}\nspec:\n  containers:\n  - name: web\n    image: reg/web:1\n";

    #[test]
    fn converts_a_plain_pod() {
        let (p, w) = pod(WEB).unwrap();
        assert_eq!(p.namespace, "default");
        assert_eq!(p.restart_policy, RestartPolicy::Always);
        assert_eq!(p.grace_period, Duration::from_secs(30));
        assert_eq!(p.containers[0].pull_policy, PullPolicy::IfNotPresent);
        assert_eq!(p.qos, QosClass::BestEffort);
        assert_eq!(p.hostname, "web");
        assert!(w.is_empty());
    }

    #[test]
    fn errors_name_the_pod_and_field() {
        let e = |y: &str| pod(y).unwrap_err().to_string();
        assert_eq!(
            e("metadata: {name: p, uid: u}\nspec: {containers: []}\n"),
            "pod default/p: spec.containers: at least one container is required"
        );
        assert!(
            e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a}]}\n")
                .contains("spec.containers[0].image: required")
        );
        assert!(e("metadata: {name: p, uid: u}\nspec: {restartPolicy: Sometimes, containers: [{name: a, image: b}]}\n").contains("spec.restartPolicy"));
        assert!(e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, ports: [{containerPort: 70000}]}]}\n")
            .contains("spec.containers[0].ports[0].containerPort: 70000"));
        assert!(e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b}, {name: a, image: c}]}\n")
            .contains("spec.containers[1].name: \"a\" is used twice"));
        assert!(e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, resources: {limits: {memory: 1MB}}}]}\n")
            .contains("spec.containers[0].resources.limits.memory"));
        assert!(e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, env: [{name: X, valueFrom: {resourceFieldRef: {resource: limits.nvidia.com/gpu}}}]}]}\n")
            .contains("resourceFieldRef.resource \"limits.nvidia.com/gpu\" is not supported"));
        assert!(e("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, envFrom: [{prefix: X}]}]}\n")
            .contains("spec.containers[0].envFrom[0]: exactly one of configMapRef and secretRef"));
        assert!(
            e("metadata: {name: Bad_Name, uid: u}\nspec: {containers: [{name: a, image: b}]}\n")
                .contains("metadata.name")
        );
        assert_eq!(
            e(
                "metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, livenessProbe: {httpGet: {port: 80, scheme: FTP}}}]}\n"
            ),
            "pod default/p: spec.containers[0].livenessProbe.httpGet.scheme: \"FTP\" is not HTTP or HTTPS"
        );
        assert!(e("metadata: {name: p, uid: u}\nspec: {initContainers: [{name: i, image: b, readinessProbe: {tcpSocket: {port: 80}}}], containers: [{name: a, image: b}]}\n")
            .contains("spec.initContainers[0].readinessProbe: may not be set for init containers"));
    }

    #[test]
    fn warns_about_unimplemented_fields() {
        let (_, w) = pod("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, livenessProbe: {tcpSocket: {port: 80}}, lifecycle: {preStop: {exec: {command: [x]}}, stopSignal: SIGUSR1}}]}\n").unwrap();
        assert_eq!(
            w,
            [
                "pod default/p: spec.containers[0].lifecycle.stopSignal is not implemented by berth-kubelet yet, ignored"
            ]
        );
    }

    #[test]
    fn qos_classes() {
        let g = Resources {
            cpu_request_milli: Some(100),
            cpu_limit_milli: Some(100),
            memory_request: Some(1),
            memory_limit: Some(1),
        };
        let b = Resources {
            memory_request: Some(1),
            ..Default::default()
        };
        let none = Resources::default();
        assert_eq!(qos_class([g].iter()), QosClass::Guaranteed);
        assert_eq!(qos_class([g, b].iter()), QosClass::Burstable);
        assert_eq!(qos_class([g, none].iter()), QosClass::Burstable);
        assert_eq!(qos_class([none].iter()), QosClass::BestEffort);
        // Limits alone: requests default to them.
        let (p, _) = pod("metadata: {name: p, uid: u}\nspec: {containers: [{name: a, image: b, resources: {limits: {cpu: 500m, memory: 64Mi}}}]}\n").unwrap();
        assert_eq!(p.qos, QosClass::Guaranteed);
        assert_eq!(p.containers[0].resources.cpu_request_milli, Some(500));
    }

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("busybox"), PullPolicy::Always);
        assert_eq!(
            default_pull_policy("127.0.0.1:5000/busybox:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            default_pull_policy("127.0.0.1:5000/busybox"),
            PullPolicy::Always
        );
        assert_eq!(
            default_pull_policy("busybox:1.36"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            default_pull_policy("busybox@sha256:abc"),
            PullPolicy::IfNotPresent
        );
    }

    #[test]
    fn expands_variables() {
        let vars = |n: &str| (n == "A").then(|| "x".to_owned());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
        assert_eq!(expand("$(A", &vars), "$(A");
    }
}
