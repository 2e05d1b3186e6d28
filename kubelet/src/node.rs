//! The Node object: what the host has (read once from /proc, /sys and
//! statvfs into [`HostFacts`]), turned into the Node the kubelet registers
//! and the status it reports. Pure functions, so the conditions' reasons,
//! messages and transition times are unit-tested without an API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::error::{Error, Result};

/// The version berth-kubelet reports: the Kubernetes release whose kubelet
/// behaviour it follows, with berth's own version as the pre-release part.
pub fn kubelet_version() -> String {
    format!("v1.37.0-berth.{}", env!("CARGO_PKG_VERSION"))
}

/// Memory kept back from allocatable: upstream's default hard eviction
/// threshold `memory.available<100Mi`.
pub const EVICTION_MEMORY: i64 = 100 << 20;
/// Share of the root-dir filesystem kept back (`nodefs.available<10%`).
pub const EVICTION_NODEFS_PERCENT: i64 = 10;
/// Below this share of free PIDs the node reports PID pressure.
pub const PID_PRESSURE_PERCENT: i64 = 5;

/// What the host has, as the node status reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    pub cpus: i64,
    pub memory_total: i64,
    pub memory_available: i64,
    pub fs_total: i64,
    pub fs_available: i64,
    pub pid_max: i64,
    pub pids_used: i64,
    pub hugepages: BTreeMap<String, i64>,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub architecture: String,
    pub hostname: String,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A `Key:  123 kB` field of /proc/meminfo, in bytes.
pub fn meminfo_field(text: &str, key: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        let (n, unit) = v.split_once(' ').unwrap_or((v, ""));
        let n: i64 = n.trim().parse().ok()?;
        Some(if unit.trim() == "kB" { n * 1024 } else { n })
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn os_pretty_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_owned())
    })
}

impl HostFacts {
    /// Read the host; `root_dir` is the filesystem ephemeral storage lives on.
    pub fn read(root_dir: &std::path::Path) -> Result<HostFacts> {
        let meminfo =
            std::fs::read_to_string("/proc/meminfo").map_err(|e| Error::io("/proc/meminfo", e))?;
        let vfs = nix::sys::statvfs::statvfs(root_dir)
            .map_err(|e| Error::io(root_dir, std::io::Error::from(e)))?;
        let frag = vfs.fragment_size() as i64;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        let pids_used = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    })
                    .count() as i64
            })
            .unwrap_or(0);
        let mut hugepages = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
            for e in dir.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(kb) = name
                    .strip_prefix("hugepages-")
                    .and_then(|s| s.strip_suffix("kB"))
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    continue;
                };
                let count: i64 =
                    read_trim(&format!("/sys/kernel/mm/hugepages/{name}/nr_hugepages"))
                        .parse()
                        .unwrap_or(0);
                hugepages.insert(hugepage_size_name(kb), count * kb * 1024);
            }
        }
        Ok(HostFacts {
            cpus,
            memory_total: meminfo_field(&meminfo, "MemTotal").unwrap_or(0),
            memory_available: meminfo_field(&meminfo, "MemAvailable").unwrap_or(0),
            fs_total: vfs.blocks() as i64 * frag,
            fs_available: vfs.blocks_available() as i64 * frag,
            pid_max: read_trim("/proc/sys/kernel/pid_max")
                .parse()
                .unwrap_or(32768),
            pids_used,
            hugepages,
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| os_pretty_name(&t))
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read_trim("/etc/machine-id"),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid").to_lowercase(),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            architecture: go_arch(std::env::consts::ARCH).to_owned(),
            hostname: read_trim("/proc/sys/kernel/hostname"),
        })
    }
}

/// `hugepages-2Mi`, `hugepages-1Gi`: the resource name of a page size in kB.
pub fn hugepage_size_name(kb: i64) -> String {
    if kb % (1024 * 1024) == 0 {
        format!("hugepages-{}Gi", kb / (1024 * 1024))
    } else if kb % 1024 == 0 {
        format!("hugepages-{}Mi", kb / 1024)
    } else {
        format!("hugepages-{kb}Ki")
    }
}

/// Go's GOARCH name of a Rust architecture (what `kubernetes.io/arch` holds).
pub fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        o => o,
    }
}

/// A taint from `--register-with-taints` (`key[=value]:Effect`).
pub fn parse_taint(s: &str) -> std::result::Result<api::Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?}: want key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "taint {s:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (kv, None),
    };
    if crate::flags::parse_labels(&format!("{key}={}", value.as_deref().unwrap_or(""))).is_err() {
        return Err(format!(
            "taint {s:?}: {key:?}={value:?} is not a valid key and value"
        ));
    }
    Ok(api::Taint {
        key: key.to_owned(),
        value,
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// What the kubelet knows when it builds the Node.
pub struct NodeInput<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub taints: &'a [api::Taint],
    pub node_ip: Option<&'a str>,
    pub max_pods: u32,
    /// `<runtime name>://<runtime version>` from CRI Version.
    pub runtime_version: &'a str,
    pub facts: &'a HostFacts,
}

fn qty(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// The Node to register: metadata (labels, taints) and the first status.
pub fn node_object(input: &NodeInput, health: &Health, now: Time) -> api::Node {
    let facts = input.facts;
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), input.name.to_owned()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "beta.kubernetes.io/arch".to_owned(),
            facts.architecture.clone(),
        ),
    ]);
    labels.extend(input.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    api::Node {
        metadata: ObjectMeta {
            name: Some(input.name.to_owned()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(api::NodeSpec {
            taints: (!input.taints.is_empty()).then(|| input.taints.to_vec()),
            ..Default::default()
        }),
        status: Some(node_status(input, health, now, None)),
    }
}

fn resources(facts: &HostFacts, max_pods: u32, allocatable: bool) -> BTreeMap<String, Quantity> {
    let (memory, storage) = if allocatable {
        (
            (facts.memory_total - EVICTION_MEMORY).max(0),
            facts.fs_total - facts.fs_total * EVICTION_NODEFS_PERCENT / 100,
        )
    } else {
        (facts.memory_total, facts.fs_total)
    };
    let mut m = BTreeMap::from([
        ("cpu".to_owned(), qty(facts.cpus.to_string())),
        ("memory".to_owned(), qty(format!("{}Ki", memory / 1024))),
        ("ephemeral-storage".to_owned(), qty(storage.to_string())),
        ("pods".to_owned(), qty(max_pods.to_string())),
    ]);
    for (name, bytes) in &facts.hugepages {
        m.insert(name.clone(), qty(bytes.to_string()));
    }
    m
}

/// The node's health as the conditions report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `None`: ready; `Some(why)`: not ready, and why (the runtime's words).
    pub not_ready: Option<String>,
    pub memory_pressure: bool,
    pub disk_pressure: bool,
    pub pid_pressure: bool,
}

impl Health {
    /// Pressure from the host facts; readiness from the CRI `Status`.
    pub fn new(facts: &HostFacts, runtime: std::result::Result<(), String>) -> Health {
        Health {
            not_ready: runtime.err(),
            memory_pressure: facts.memory_available < EVICTION_MEMORY,
            disk_pressure: facts.fs_total > 0
                && facts.fs_available * 100 < facts.fs_total * EVICTION_NODEFS_PERCENT,
            pid_pressure: facts.pid_max > 0
                && (facts.pid_max - facts.pids_used) * 100 < facts.pid_max * PID_PRESSURE_PERCENT,
        }
    }
}

/// Why the runtime is not ready, from a CRI `Status` response (upstream's
/// wording), or `Ok` when RuntimeReady and NetworkReady are both true.
pub fn runtime_readiness(status: &k8s_cri::v1::RuntimeStatus) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    for want in ["RuntimeReady", "NetworkReady"] {
        match status.conditions.iter().find(|c| c.r#type == want) {
            Some(c) if c.status => {}
            Some(c) => problems.push(format!(
                "{want}=false reason:{} message:{}",
                c.reason, c.message
            )),
            None => problems.push(format!("{want} missing from the runtime's status")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "container runtime not ready: {}",
            problems.join(", ")
        ))
    }
}

fn condition(
    kind: &str,
    bad: bool,
    (ok_reason, ok_message): (&str, &str),
    (bad_reason, bad_message): (&str, &str),
    now: &Time,
    previous: Option<&api::NodeStatus>,
    true_is_good: bool,
) -> api::NodeCondition {
    let status = if bad != true_is_good { "True" } else { "False" };
    let (reason, message) = if bad {
        (bad_reason, bad_message)
    } else {
        (ok_reason, ok_message)
    };
    let transition = previous
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    api::NodeCondition {
        type_: kind.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

/// The node status: capacity, allocatable, conditions (transition times
/// kept from `previous` while a condition's status holds), addresses and
/// node info.
pub fn node_status(
    input: &NodeInput,
    health: &Health,
    now: Time,
    previous: Option<&api::NodeStatus>,
) -> api::NodeStatus {
    let facts = input.facts;
    let not_ready_msg = health.not_ready.clone().unwrap_or_default();
    let conditions = vec![
        condition(
            "MemoryPressure",
            health.memory_pressure,
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            &now,
            previous,
            false,
        ),
        condition(
            "DiskPressure",
            health.disk_pressure,
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            &now,
            previous,
            false,
        ),
        condition(
            "PIDPressure",
            health.pid_pressure,
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            &now,
            previous,
            false,
        ),
        condition(
            "Ready",
            health.not_ready.is_some(),
            ("KubeletReady", "kubelet is posting ready status"),
            ("KubeletNotReady", &not_ready_msg),
            &now,
            previous,
            true,
        ),
    ];
    let mut addresses = Vec::new();
    if let Some(ip) = input.node_ip {
        addresses.push(api::NodeAddress {
            type_: "InternalIP".into(),
            address: ip.to_owned(),
        });
    }
    addresses.push(api::NodeAddress {
        type_: "Hostname".into(),
        address: input.name.to_owned(),
    });
    api::NodeStatus {
        capacity: Some(resources(facts, input.max_pods, false)),
        allocatable: Some(resources(facts, input.max_pods, true)),
        conditions: Some(conditions),
        addresses: Some(addresses),
        daemon_endpoints: Some(api::NodeDaemonEndpoints {
            kubelet_endpoint: Some(api::DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(api::NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: input.runtime_version.to_owned(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: kubelet_version(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.system_uuid.clone(),
            running_in_user_namespace: None,
            swap: None,
        }),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times: a change
/// is reported at once, sameness only every report period.
pub fn status_changed(a: &api::NodeStatus, b: &api::NodeStatus) -> bool {
    let strip = |s: &api::NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_total: 8 << 30,
            memory_available: 4 << 30,
            fs_total: 100 << 30,
            fs_available: 50 << 30,
            pid_max: 32768,
            pids_used: 200,
            architecture: "amd64".into(),
            ..Default::default()
        }
    }

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn input<'a>(f: &'a HostFacts, labels: &'a BTreeMap<String, String>) -> NodeInput<'a> {
        NodeInput {
            name: "n1",
            labels,
            taints: &[],
            node_ip: Some("10.0.0.5"),
            max_pods: 110,
            runtime_version: "berth://0.1.0",
            facts: f,
        }
    }

    fn cond<'a>(s: &'a api::NodeStatus, kind: &str) -> &'a api::NodeCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn capacity_and_allocatable() {
        let f = facts();
        let labels = BTreeMap::new();
        let h = Health::new(&f, Ok(()));
        let s = node_status(&input(&f, &labels), &h, t(1), None);
        let cap = s.capacity.unwrap();
        let alloc = s.allocatable.unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "8388608Ki");
        assert_eq!(alloc["memory"].0, format!("{}Ki", (8 << 20) - 100 * 1024));
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(
            alloc["ephemeral-storage"].0,
            ((100i64 << 30) * 9 / 10).to_string()
        );
        assert_eq!(s.addresses.unwrap()[0].address, "10.0.0.5");
    }

    #[test]
    fn ready_follows_the_runtime_and_keeps_transition_times() {
        let f = facts();
        let labels = BTreeMap::new();
        let ready = Health::new(&f, Ok(()));
        let s1 = node_status(&input(&f, &labels), &ready, t(10), None);
        assert_eq!(cond(&s1, "Ready").status, "True");
        assert_eq!(cond(&s1, "Ready").reason.as_deref(), Some("KubeletReady"));
        assert_eq!(cond(&s1, "MemoryPressure").status, "False");
        let s2 = node_status(&input(&f, &labels), &ready, t(20), Some(&s1));
        assert_eq!(cond(&s2, "Ready").last_transition_time, Some(t(10)));
        assert_eq!(cond(&s2, "Ready").last_heartbeat_time, Some(t(20)));
        assert!(!status_changed(&s1, &s2), "only heartbeats moved");
        let down = Health::new(
            &f,
            Err("container runtime not ready: RuntimeReady=false".into()),
        );
        let s3 = node_status(&input(&f, &labels), &down, t(30), Some(&s2));
        let r = cond(&s3, "Ready");
        assert_eq!(r.status, "False");
        assert_eq!(r.reason.as_deref(), Some("KubeletNotReady"));
        assert!(r.message.as_deref().unwrap().contains("RuntimeReady=false"));
        assert_eq!(r.last_transition_time, Some(t(30)));
        assert!(status_changed(&s2, &s3));
    }

    #[test]
    fn pressure_from_facts() {
        let mut f = facts();
        f.memory_available = 50 << 20;
        f.fs_available = 5 << 30;
        f.pids_used = 32000;
        let h = Health::new(&f, Ok(()));
        assert!(h.memory_pressure && h.disk_pressure && h.pid_pressure);
        let labels = BTreeMap::new();
        let s = node_status(&input(&f, &labels), &h, t(1), None);
        assert_eq!(cond(&s, "MemoryPressure").status, "True");
        assert_eq!(
            cond(&s, "DiskPressure").reason.as_deref(),
            Some("KubeletHasDiskPressure")
        );
    }

    #[test]
    fn runtime_readiness_names_the_failing_condition() {
        use k8s_cri::v1::{RuntimeCondition, RuntimeStatus};
        let c = |t: &str, s: bool| RuntimeCondition {
            r#type: t.into(),
            status: s,
            reason: if s { "".into() } else { "NoCNIConfig".into() },
            message: if s {
                "".into()
            } else {
                "no network config".into()
            },
        };
        let ok = RuntimeStatus {
            conditions: vec![c("RuntimeReady", true), c("NetworkReady", true)],
        };
        assert_eq!(runtime_readiness(&ok), Ok(()));
        let bad = RuntimeStatus {
            conditions: vec![c("RuntimeReady", true), c("NetworkReady", false)],
        };
        let e = runtime_readiness(&bad).unwrap_err();
        assert!(
            e.contains("NetworkReady=false reason:NoCNIConfig message:no network config"),
            "{e}"
        );
    }

    #[test]
    fn node_object_labels_and_taints() {
        let f = facts();
        let labels = BTreeMap::from([("role".to_owned(), "edge".to_owned())]);
        let taints = [parse_taint("dedicated=edge:NoSchedule").unwrap()];
        let mut i = input(&f, &labels);
        i.taints = &taints;
        let n = node_object(&i, &Health::new(&f, Ok(())), t(1));
        let l = n.metadata.labels.unwrap();
        assert_eq!(l["kubernetes.io/hostname"], "n1");
        assert_eq!(l["kubernetes.io/arch"], "amd64");
        assert_eq!(l["role"], "edge");
        let t0 = &n.spec.unwrap().taints.unwrap()[0];
        assert_eq!(
            (t0.key.as_str(), t0.value.as_deref(), t0.effect.as_str()),
            ("dedicated", Some("edge"), "NoSchedule")
        );
    }

    #[test]
    fn taint_parsing_errors() {
        assert!(
            parse_taint("a=b")
                .unwrap_err()
                .contains("want key[=value]:Effect")
        );
        assert!(parse_taint("a=b:Sometimes").unwrap_err().contains("effect"));
        assert!(parse_taint("-a:NoExecute").is_err());
        let t = parse_taint("gpu:NoExecute").unwrap();
        assert_eq!(t.value, None);
    }

    #[test]
    fn host_file_parsers() {
        let m = "MemTotal:       16314580 kB\nMemAvailable:    1000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_field(m, "MemTotal"), Some(16314580 * 1024));
        assert_eq!(meminfo_field(m, "MemAvailable"), Some(1000 * 1024));
        assert_eq!(meminfo_field(m, "Mem"), None);
        assert_eq!(
            os_pretty_name("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(hugepage_size_name(2048), "hugepages-2Mi");
        assert_eq!(hugepage_size_name(1048576), "hugepages-1Gi");
    }
}
