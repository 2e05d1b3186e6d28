//! The pod cgroup hierarchy by QoS class, as upstream's kubelet makes it
//! with `cgroupsPerQOS` and the cgroupfs driver: `<cgroupRoot>/kubepods`
//! (Guaranteed pods directly under it), `kubepods/burstable`,
//! `kubepods/besteffort`, and one `pod<uid>` per pod carrying the pod's
//! limits; the runtime gets it as the sandbox's cgroup parent and puts the
//! containers below. Works on cgroup v1, v2 and hybrid (v1 controllers, as
//! the runtime uses them). Pure parts (`PodLimits`, paths) are unit tested;
//! the file writes are what the integration test checks.
//!
//! With the systemd driver the levels are slice units systemd owns, named as
//! upstream names them (`kubepods.slice`, `kubepods-burstable.slice`,
//! `kubepods-burstable-pod<uid with _ for ->.slice`), started over D-Bus
//! with the limits as properties; the runtime gets the pod's slice name as
//! the cgroup parent. The same files are then written as with cgroupfs, in
//! the folders systemd made (and, on v1, in the hierarchies it leaves alone).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::pod::{Pod, QosClass};

const PERIOD: i64 = 100_000;
/// The controllers the kubelet sets up in each level (v2 subtree_control).
const V2_CONTROLLERS: [&str; 6] = ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v2 mounted here (alone: pure v2).
    V2(PathBuf),
    /// v1 hierarchies with real controllers: (controllers, mount point).
    V1(Vec<(Vec<String>, PathBuf)>),
}

impl Layout {
    /// From /proc/self/mountinfo text: v1 controllers win (hybrid hosts run
    /// containers on them).
    pub fn parse(mountinfo: &str) -> Option<Layout> {
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let mut halves = line.splitn(2, " - ");
            let (pre, post) = (halves.next()?, halves.next().unwrap_or(""));
            let mount = pre.split(' ').nth(4).unwrap_or("");
            let mut post = post.split(' ');
            let (fstype, _src, opts) = (post.next(), post.next(), post.next().unwrap_or(""));
            match fstype {
                Some("cgroup2") if mount == "/sys/fs/cgroup" => {
                    v2 = Some(PathBuf::from(mount));
                }
                Some("cgroup") => {
                    let ctrls: Vec<String> = opts
                        .split(',')
                        .filter(|o| {
                            matches!(
                                *o,
                                "cpu"
                                    | "cpuacct"
                                    | "cpuset"
                                    | "memory"
                                    | "devices"
                                    | "freezer"
                                    | "net_cls"
                                    | "net_prio"
                                    | "blkio"
                                    | "perf_event"
                                    | "hugetlb"
                                    | "pids"
                                    | "rdma"
                                    | "misc"
                            )
                        })
                        .map(str::to_owned)
                        .collect();
                    if !ctrls.is_empty() {
                        v1.push((ctrls, PathBuf::from(mount)));
                    }
                }
                _ => {}
            }
        }
        if !v1.is_empty() {
            Some(Layout::V1(v1))
        } else {
            v2.map(Layout::V2)
        }
    }

    pub fn detect() -> Option<Layout> {
        Layout::parse(&std::fs::read_to_string("/proc/self/mountinfo").ok()?)
    }
}

/// A pod cgroup's limits, by upstream's rules (ResourceConfigForPod).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: i64,
    /// CFS quota per PERIOD (µs), when every container has a CPU limit.
    pub cpu_quota: Option<i64>,
    /// When every container has a memory limit.
    pub memory: Option<i64>,
}

impl PodLimits {
    pub fn of(pod: &Pod) -> PodLimits {
        let long: Vec<_> = pod.long_running().map(|c| &c.resources).collect();
        // Requests: the long-running containers' sum, or the largest init
        // container's if that is more (they run one at a time, first).
        let sum = |f: &dyn Fn(&crate::pod::Resources) -> Option<i64>| -> i64 {
            long.iter().map(|r| f(r).unwrap_or(0)).sum()
        };
        let max_init = |f: &dyn Fn(&crate::pod::Resources) -> Option<i64>| -> i64 {
            pod.init_containers
                .iter()
                .filter(|c| !c.sidecar)
                .map(|c| f(&c.resources).unwrap_or(0))
                .max()
                .unwrap_or(0)
        };
        let cpu_req = sum(&|r| r.cpu_request_milli).max(max_init(&|r| r.cpu_request_milli));
        let cpu_lim = sum(&|r| r.cpu_limit_milli).max(max_init(&|r| r.cpu_limit_milli));
        let mem_lim = sum(&|r| r.memory_limit).max(max_init(&|r| r.memory_limit));
        let all = |f: &dyn Fn(&crate::pod::Resources) -> bool| {
            pod.all_containers().all(|c| f(&c.resources))
        };
        let cpu_declared = all(&|r| r.cpu_limit_milli.is_some());
        let mem_declared = all(&|r| r.memory_limit.is_some());
        match pod.qos {
            QosClass::BestEffort => PodLimits {
                cpu_shares: 2,
                cpu_quota: None,
                memory: None,
            },
            _ => PodLimits {
                cpu_shares: crate::cri_config::cpu_shares(Some(cpu_req)),
                cpu_quota: cpu_declared.then(|| (cpu_lim * PERIOD / 1000).max(1000)),
                memory: mem_declared.then_some(mem_lim),
            },
        }
    }
}

/// `<root>/kubepods[/burstable|/besteffort]` for a QoS class.
pub fn qos_path(root: &str, qos: QosClass) -> String {
    let base = format!("{}/kubepods", root.trim_end_matches('/'));
    match qos {
        QosClass::Guaranteed => base,
        QosClass::Burstable => format!("{base}/burstable"),
        QosClass::BestEffort => format!("{base}/besteffort"),
    }
}

/// The pod's cgroup, as given to the runtime as the cgroup parent.
pub fn pod_path(root: &str, qos: QosClass, uid: &str) -> String {
    format!("{}/pod{uid}", qos_path(root, qos))
}

/// The QoS level's slice (systemd driver), as upstream names it.
pub fn qos_slice(qos: QosClass) -> &'static str {
    match qos {
        QosClass::Guaranteed => "kubepods.slice",
        QosClass::Burstable => "kubepods-burstable.slice",
        QosClass::BestEffort => "kubepods-besteffort.slice",
    }
}

/// The pod's slice (systemd driver): a '-' in a slice name is a level, so
/// the UID's become '_', as upstream writes them.
pub fn pod_slice(qos: QosClass, uid: &str) -> String {
    format!(
        "{}-pod{}.slice",
        qos_slice(qos).trim_end_matches(".slice"),
        uid.replace('-', "_")
    )
}

/// A level's limits as slice properties (systemd rounds CPU quota to 10 ms:
/// rounded up, and the cgroup files get the exact value after).
fn slice_properties(l: PodLimits, v2: bool) -> Vec<(String, berth_runtime::cgroups::dbus::Value)> {
    use berth_runtime::cgroups::dbus::Value;
    let quota = l.cpu_quota.map_or(u64::MAX, |q| {
        ((q.max(0) as u64) * 1_000_000 / PERIOD as u64).next_multiple_of(10_000)
    });
    let memory = l.memory.map_or(u64::MAX, |m| m.max(0) as u64);
    let (cpu, mem) = if v2 {
        (("CPUWeight", weight(l.cpu_shares) as u64), "MemoryMax")
    } else {
        (("CPUShares", l.cpu_shares as u64), "MemoryLimit")
    };
    vec![
        (cpu.0.into(), Value::U64(cpu.1)),
        ("CPUQuotaPerSecUSec".into(), Value::U64(quota)),
        (mem.into(), Value::U64(memory)),
    ]
}

/// v2 weight from v1 shares (the runtimes' conversion).
fn weight(shares: i64) -> i64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

pub struct PodCgroups {
    layout: Layout,
    root: String,
    /// The systemd driver: levels are slices systemd owns.
    systemd: bool,
    /// CPU requests (millicores) of the Burstable pods, by UID: the
    /// burstable cgroup's shares are their sum.
    burstable: Mutex<BTreeMap<String, i64>>,
}

impl PodCgroups {
    pub fn new(layout: Layout, root: &str, systemd: bool) -> PodCgroups {
        PodCgroups {
            layout,
            systemd,
            root: if root.is_empty() {
                "/".into()
            } else {
                root.to_owned()
            },
            burstable: Mutex::new(BTreeMap::new()),
        }
    }

    /// The directories of cgroup `path` (one per v1 hierarchy, or one).
    fn dirs(&self, path: &str) -> Vec<(Vec<String>, PathBuf)> {
        let rel = path.trim_start_matches('/');
        match &self.layout {
            Layout::V2(m) => vec![(vec![], m.join(rel))],
            Layout::V1(hs) => hs.iter().map(|(c, m)| (c.clone(), m.join(rel))).collect(),
        }
    }

    /// Make `path` (and its parents below the root) in every hierarchy.
    fn make(&self, path: &str) -> Result<(), String> {
        let levels: Vec<&str> = path.trim_matches('/').split('/').collect();
        for i in 1..=levels.len() {
            let sub = format!("/{}", levels[..i].join("/"));
            for (ctrls, dir) in self.dirs(&sub) {
                if dir.exists() {
                    continue;
                }
                if let Layout::V2(_) = self.layout {
                    enable_controllers(dir.parent().expect("below the mount"))?;
                }
                std::fs::create_dir(&dir)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| format!("create cgroup {}: {e}", dir.display()))?;
                // A v1 cpuset folder starts empty: it must hold its parent's
                // cpus and mems before anything can join below it.
                if ctrls.iter().any(|c| c == "cpuset") {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let v = std::fs::read_to_string(dir.parent().unwrap().join(f))
                            .map_err(|e| format!("read {f}: {e}"))?;
                        write(&dir.join(f), v.trim())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A QoS level's cgroup: its path, or (systemd) its slice.
    fn qos_name(&self, qos: QosClass) -> String {
        if self.systemd {
            qos_slice(qos).into()
        } else {
            qos_path(&self.root, qos)
        }
    }

    /// The pod's cgroup as the runtime gets it as the cgroup parent: a path,
    /// or (systemd) a slice name.
    pub fn pod_parent(&self, qos: QosClass, uid: &str) -> String {
        if self.systemd {
            pod_slice(qos, uid)
        } else {
            pod_path(&self.root, qos, uid)
        }
    }

    /// Make cgroup `name` with limits `l`: with systemd, the slice first.
    fn apply(&self, name: &str, l: PodLimits) -> Result<(), String> {
        let path = if self.systemd {
            let v2 = matches!(self.layout, Layout::V2(_));
            berth_runtime::cgroups::systemd::Systemd::connect()
                .and_then(|mut sd| sd.ensure_slice(name, slice_properties(l, v2), v2))
                .map_err(|e| berth_runtime::process::chain(&e))?;
            berth_runtime::cgroups::slice_path(name)
        } else {
            name.to_owned()
        };
        self.make(&path)?;
        self.set(&path, l)
    }

    fn set(&self, path: &str, l: PodLimits) -> Result<(), String> {
        for (ctrls, dir) in self.dirs(path) {
            match &self.layout {
                Layout::V2(_) => {
                    write(&dir.join("cpu.weight"), &weight(l.cpu_shares).to_string())?;
                    let quota = l.cpu_quota.map_or("max".to_owned(), |q| q.to_string());
                    write(&dir.join("cpu.max"), &format!("{quota} {PERIOD}"))?;
                    let mem = l.memory.map_or("max".to_owned(), |m| m.to_string());
                    write(&dir.join("memory.max"), &mem)?;
                }
                Layout::V1(_) => {
                    if ctrls.iter().any(|c| c == "cpu") {
                        write(&dir.join("cpu.shares"), &l.cpu_shares.to_string())?;
                        write(&dir.join("cpu.cfs_period_us"), &PERIOD.to_string())?;
                        write(
                            &dir.join("cpu.cfs_quota_us"),
                            &l.cpu_quota.unwrap_or(-1).to_string(),
                        )?;
                    }
                    if ctrls.iter().any(|c| c == "memory") {
                        write(
                            &dir.join("memory.limit_in_bytes"),
                            &l.memory.unwrap_or(-1).to_string(),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The node level: kubepods (the node's CPUs as shares), burstable and
    /// besteffort (2 shares).
    pub fn ensure_qos(&self, cpu_millis: i64) -> Result<(), String> {
        let none = |cpu_shares| PodLimits {
            cpu_shares,
            cpu_quota: None,
            memory: None,
        };
        let top = self.qos_name(QosClass::Guaranteed);
        self.apply(&top, none(crate::cri_config::cpu_shares(Some(cpu_millis))))?;
        self.apply(&self.qos_name(QosClass::BestEffort), none(2))?;
        self.update_burstable()
    }

    fn update_burstable(&self) -> Result<(), String> {
        let sum: i64 = self
            .burstable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum();
        let p = self.qos_name(QosClass::Burstable);
        self.apply(
            &p,
            PodLimits {
                cpu_shares: crate::cri_config::cpu_shares(Some(sum)),
                cpu_quota: None,
                memory: None,
            },
        )
    }

    /// Make the pod's cgroup with its limits; returns the path for the
    /// sandbox's cgroup parent.
    pub fn ensure_pod(&self, pod: &Pod) -> Result<String, String> {
        let path = self.pod_parent(pod.qos, &pod.uid);
        self.apply(&path, PodLimits::of(pod))?;
        if pod.qos == QosClass::Burstable {
            let milli = pod
                .long_running()
                .filter_map(|c| c.resources.cpu_request_milli)
                .sum();
            self.burstable
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(pod.uid.clone(), milli);
            self.update_burstable()?;
        }
        Ok(path)
    }

    /// Remove pod `uid`'s cgroup (whatever its class), what is left below
    /// it first. Missing is fine.
    pub fn remove_pod(&self, uid: &str) -> Result<(), String> {
        let mut sd = match self.systemd {
            true => Some(
                berth_runtime::cgroups::systemd::Systemd::connect()
                    .map_err(|e| berth_runtime::process::chain(&e))?,
            ),
            false => None,
        };
        for q in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            let path = if let Some(sd) = &mut sd {
                let slice = pod_slice(q, uid);
                // Gone already unless the pod ran in this class.
                sd.stop(&slice)
                    .map_err(|e| berth_runtime::process::chain(&e))?;
                berth_runtime::cgroups::slice_path(&slice)
            } else {
                pod_path(&self.root, q, uid)
            };
            for (_, dir) in self.dirs(&path) {
                remove_tree(&dir)?;
            }
        }
        let was = self
            .burstable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        if was.is_some() {
            self.update_burstable()?;
        }
        Ok(())
    }
}

fn write(p: &Path, v: &str) -> Result<(), String> {
    std::fs::write(p, v).map_err(|e| format!("write {v:?} to {}: {e}", p.display()))
}

/// v2: make the controllers the kubelet sets available to `dir`'s children.
fn enable_controllers(dir: &Path) -> Result<(), String> {
    let have = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let want: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| have.split_whitespace().any(|h| h == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if want.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &want.join(" "))
}

/// rmdir the tree at `dir`, children first (cgroup folders hold only
/// kernel files, which go with their folder).
fn remove_tree(dir: &Path) -> Result<(), String> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("read {}: {e}", dir.display())),
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("remove cgroup {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::pod;

    #[test]
    fn systemd_slices_are_named_as_upstream_names_them() {
        assert_eq!(qos_slice(QosClass::Guaranteed), "kubepods.slice");
        assert_eq!(
            pod_slice(QosClass::Burstable, "8dbd8c66-1d95-4b6a"),
            "kubepods-burstable-pod8dbd8c66_1d95_4b6a.slice"
        );
        assert_eq!(
            pod_slice(QosClass::Guaranteed, "u1"),
            "kubepods-podu1.slice"
        );
        let pc = PodCgroups::new(Layout::V2("/sys/fs/cgroup".into()), "/", true);
        assert_eq!(
            pc.pod_parent(QosClass::BestEffort, "a-b"),
            "kubepods-besteffort-poda_b.slice"
        );
        assert_eq!(
            berth_runtime::cgroups::slice_path(&pc.pod_parent(QosClass::BestEffort, "a-b")),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poda_b.slice"
        );
        // Limits as properties: 256 shares is weight 10, no quota or memory
        // limit is infinity, and quota rounds up to 10 ms.
        let l = PodLimits {
            cpu_shares: 256,
            cpu_quota: Some(12_345),
            memory: None,
        };
        let p = slice_properties(l, true);
        use berth_runtime::cgroups::dbus::Value;
        assert_eq!(p[0], ("CPUWeight".into(), Value::U64(10)));
        assert_eq!(p[1], ("CPUQuotaPerSecUSec".into(), Value::U64(130_000)));
        assert_eq!(p[2], ("MemoryMax".into(), Value::U64(u64::MAX)));
        assert_eq!(
            slice_properties(l, false)[0],
            ("CPUShares".into(), Value::U64(256))
        );
    }

    #[test]
    fn layouts_from_mountinfo() {
        let hybrid = "30 25 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n\
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
34 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            Layout::parse(hybrid),
            Some(Layout::V1(vec![
                (
                    vec!["cpu".into(), "cpuacct".into()],
                    "/sys/fs/cgroup/cpu,cpuacct".into()
                ),
                (vec!["memory".into()], "/sys/fs/cgroup/memory".into()),
            ]))
        );
        let v2 = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(Layout::parse(v2), Some(Layout::V2("/sys/fs/cgroup".into())));
    }

    #[test]
    fn pod_limits_by_qos_as_upstream() {
        let g = pod(
            "",
            "{name: a, image: b, resources: {limits: {cpu: 500m, memory: 64Mi}}}, {name: c, image: b, resources: {limits: {cpu: 250m, memory: 32Mi}}}",
        );
        assert_eq!(g.qos, QosClass::Guaranteed);
        assert_eq!(
            PodLimits::of(&g),
            PodLimits {
                cpu_shares: 768,
                cpu_quota: Some(75_000),
                memory: Some(96 << 20)
            }
        );
        // Burstable with one container lacking limits: shares only.
        let b = pod(
            "",
            "{name: a, image: b, resources: {requests: {cpu: 100m}, limits: {cpu: 200m}}}, {name: c, image: b}",
        );
        assert_eq!(b.qos, QosClass::Burstable);
        assert_eq!(
            PodLimits::of(&b),
            PodLimits {
                cpu_shares: 102,
                cpu_quota: None,
                memory: None
            }
        );
        let be = pod("", "{name: a, image: b}");
        assert_eq!(PodLimits::of(&be).cpu_shares, 2);
        assert_eq!(pod_path("/", QosClass::Guaranteed, "u1"), "/kubepods/podu1");
        assert_eq!(
            pod_path("/x/", QosClass::Burstable, "u1"),
            "/x/kubepods/burstable/podu1"
        );
        assert_eq!(weight(2), 1);
        assert_eq!(weight(1024), 39);
    }
}
