//! cgroup v1 files: which controller file gets which value, and the few
//! operations v1 needs beyond plain writes (cpuset inheritance, freezer).

use std::path::Path;

use super::{CgroupError, CgroupPaths, V1Dir, io_err, kv_file, read_u64, write};
use crate::config::spec::{DeviceCgroup, Resources};

/// Create each hierarchy's directory; cpuset levels get their parent's
/// cpus/mems (a new cpuset cgroup is empty and would refuse tasks).
pub fn create(dirs: &[V1Dir]) -> Result<(), CgroupError> {
    for d in dirs {
        if d.controllers.iter().any(|c| c == "cpuset") {
            create_cpuset(&d.path)?;
        } else {
            std::fs::create_dir_all(&d.path).map_err(io_err("create", &d.path))?;
        }
    }
    Ok(())
}

fn create_cpuset(dir: &Path) -> Result<(), CgroupError> {
    // Every level from the hierarchy's root down gets its parent's values
    // when empty, existing levels included: a level another create just
    // made may not be filled yet (concurrent creates share parents).
    let mut levels = vec![dir.to_path_buf()];
    let mut cur = dir.parent();
    // Up to the nearest ancestor that has cpus set (the root always has).
    while let Some(p) = cur {
        let filled =
            std::fs::read_to_string(p.join("cpuset.cpus")).is_ok_and(|c| !c.trim().is_empty());
        if filled || p == Path::new(super::ROOT) || p.parent().is_none() {
            break;
        }
        levels.push(p.to_path_buf());
        cur = p.parent();
    }
    for level in levels.iter().rev() {
        match std::fs::create_dir(level) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", level)(e)),
        }
        let parent = level.parent().expect("a cgroup dir has a parent");
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = std::fs::read_to_string(level.join(f)).unwrap_or_default();
            if cur.trim().is_empty() {
                let p = std::fs::read_to_string(parent.join(f))
                    .map_err(io_err("read", &parent.join(f)))?;
                write(level, f, p.trim())?;
            }
        }
    }
    Ok(())
}

/// One write: (controller, file, value).
pub type Write = (&'static str, String, String);

/// The devices the container always gets (runc's defaults): mknod of any,
/// null, zero, full, tty, random, urandom, the pty master and slaves.
pub(crate) const DEFAULT_DEVICES: [&str; 10] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

pub fn device_rule(d: &DeviceCgroup) -> String {
    let n = |v: Option<i64>| {
        v.filter(|v| *v >= 0)
            .map_or("*".to_owned(), |v| v.to_string())
    };
    let kind = d.kind.as_deref().filter(|k| !k.is_empty()).unwrap_or("a");
    if kind == "a" {
        return "a".into();
    }
    let access = d
        .access
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    format!("{kind} {}:{} {access}", n(d.major), n(d.minor))
}

/// The writes that apply `r`, in the order the kernel needs them.
/// `extra_devices` are the `linux.devices` nodes (allowed after the rules).
pub fn writes(r: &Resources, extra_devices: &[String], with_defaults: bool) -> Vec<Write> {
    let mut w: Vec<Write> = Vec::new();
    let mut put = |c: &'static str, f: &str, v: String| w.push((c, f.to_owned(), v));
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|s| *s > 0) {
            put("cpu", "cpu.shares", s.to_string());
        }
        if let Some(p) = c.period.filter(|p| *p > 0) {
            put("cpu", "cpu.cfs_period_us", p.to_string());
        }
        if let Some(q) = c.quota.filter(|q| *q != 0) {
            put("cpu", "cpu.cfs_quota_us", q.to_string());
        }
        if let Some(b) = c.burst {
            put("cpu", "cpu.cfs_burst_us", b.to_string());
        }
        if let Some(p) = c.realtime_period.filter(|p| *p > 0) {
            put("cpu", "cpu.rt_period_us", p.to_string());
        }
        if let Some(rt) = c.realtime_runtime.filter(|r| *r != 0) {
            put("cpu", "cpu.rt_runtime_us", rt.to_string());
        }
        if let Some(i) = c.idle {
            put("cpu", "cpu.idle", i.to_string());
        }
        if let Some(s) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
            put("cpuset", "cpuset.cpus", s.to_owned());
        }
        if let Some(s) = c.mems.as_deref().filter(|s| !s.is_empty()) {
            put("cpuset", "cpuset.mems", s.to_owned());
        }
    }
    if let Some(m) = &r.memory {
        if let Some(l) = m.limit.filter(|l| *l != 0) {
            put("memory", "memory.limit_in_bytes", l.to_string());
        }
        if let Some(s) = m.swap.filter(|s| *s != 0) {
            put("memory", "memory.memsw.limit_in_bytes", s.to_string());
        }
        if let Some(r) = m.reservation.filter(|r| *r != 0) {
            put("memory", "memory.soft_limit_in_bytes", r.to_string());
        }
        if let Some(s) = m.swappiness.filter(|s| *s <= 100) {
            put("memory", "memory.swappiness", s.to_string());
        }
        if m.disable_oom_killer == Some(true) {
            put("memory", "memory.oom_control", "1".into());
        }
    }
    if let Some(p) = &r.pids {
        put("pids", "pids.max", super::pids_max(p.limit));
    }
    if let Some(b) = &r.block_io {
        if let Some(v) = b.weight {
            put("blkio", "blkio.weight", v.to_string());
        }
        if let Some(v) = b.leaf_weight {
            put("blkio", "blkio.leaf_weight", v.to_string());
        }
        for d in &b.weight_device {
            if let Some(v) = d.weight {
                put(
                    "blkio",
                    "blkio.weight_device",
                    format!("{}:{} {v}", d.major, d.minor),
                );
            }
            if let Some(v) = d.leaf_weight {
                put(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{}:{} {v}", d.major, d.minor),
                );
            }
        }
        for (file, list) in [
            (
                "blkio.throttle.read_bps_device",
                &b.throttle_read_bps_device,
            ),
            (
                "blkio.throttle.write_bps_device",
                &b.throttle_write_bps_device,
            ),
            (
                "blkio.throttle.read_iops_device",
                &b.throttle_read_iops_device,
            ),
            (
                "blkio.throttle.write_iops_device",
                &b.throttle_write_iops_device,
            ),
        ] {
            for d in list {
                put("blkio", file, format!("{}:{} {}", d.major, d.minor, d.rate));
            }
        }
    }
    for h in &r.hugepage_limits {
        put(
            "hugetlb",
            &format!("hugetlb.{}.limit_in_bytes", h.page_size),
            h.limit.to_string(),
        );
    }
    for line in super::rdma_max(&r.rdma) {
        put("rdma", "rdma.max", line);
    }
    if let Some(n) = &r.network {
        if let Some(c) = n.class_id {
            put("net_cls", "net_cls.classid", c.to_string());
        }
        for p in &n.priorities {
            put(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name, p.priority),
            );
        }
    }
    for d in &r.devices {
        let f = if d.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        put("devices", f, device_rule(d));
    }
    if with_defaults {
        for d in DEFAULT_DEVICES
            .iter()
            .map(|s| s.to_string())
            .chain(extra_devices.iter().cloned())
        {
            put("devices", "devices.allow", d);
        }
    }
    w
}

pub fn apply(dirs: &[V1Dir], r: &Resources) -> Result<(), CgroupError> {
    apply_writes(dirs, r, &[], true)
}

pub fn apply_writes(
    dirs: &[V1Dir],
    r: &Resources,
    extra_devices: &[String],
    with_defaults: bool,
) -> Result<(), CgroupError> {
    if !r.unified.is_empty() {
        return Err(CgroupError::Unsupported(
            "linux.resources.unified needs cgroup v2 (this host uses v1 controllers)".into(),
        ));
    }
    let dir = |c: &str| dirs.iter().find(|d| d.controllers.iter().any(|x| x == c));
    let list = writes(r, extra_devices, with_defaults);
    let mut i = 0;
    while i < list.len() {
        let (c, f, v) = &list[i];
        let d = match dir(c) {
            Some(d) => d,
            None => {
                return Err(CgroupError::Unsupported(format!(
                    "controller {c} is not mounted"
                )));
            }
        };
        // Raising memory above memsw (or lowering memsw below memory) fails
        // in one order and works in the other: try the other on EINVAL.
        if f == "memory.limit_in_bytes"
            && list
                .get(i + 1)
                .is_some_and(|(_, f2, _)| f2 == "memory.memsw.limit_in_bytes")
        {
            let (_, f2, v2) = &list[i + 1];
            if write(&d.path, f, v).is_err() {
                write(&d.path, f2, v2)?;
                write(&d.path, f, v)?;
            } else {
                write(&d.path, f2, v2)?;
            }
            i += 2;
            continue;
        }
        write(&d.path, f, v)?;
        i += 1;
    }
    Ok(())
}

/// Freeze or thaw; waits until the freezer reports the new state (v1 has no
/// notification for it, so this re-reads with a growing delay, bounded).
pub fn freeze(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let mut delay = std::time::Duration::from_micros(100);
    for _ in 0..20 {
        write(dir, "freezer.state", want)?;
        let p = dir.join("freezer.state");
        let s = std::fs::read_to_string(&p).map_err(io_err("read", &p))?;
        if s.trim() == want {
            return Ok(());
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(std::time::Duration::from_millis(100));
    }
    Err(CgroupError::Unsupported(format!(
        "{}: did not reach {want}",
        dir.display()
    )))
}

pub fn oom_kill_count(p: &CgroupPaths) -> u64 {
    p.dir_of("memory")
        .map(|d| kv_file(&d.join("memory.oom_control")))
        .and_then(|m| m.get("oom_kill").and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

/// runc's `events --stats` data for v1.
pub fn stats(p: &CgroupPaths) -> serde_json::Value {
    use serde_json::json;
    let mut data = json!({});
    if let Some(d) = p.dir_of("cpuacct") {
        let percpu: Vec<u64> = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        let st = kv_file(&d.join("cpuacct.stat"));
        // cpuacct.stat is in USER_HZ ticks (100/s); runc reports ns.
        let ns = |k: &str| st.get(k).and_then(|v| v.as_u64()).unwrap_or(0) * 10_000_000;
        data["cpu"] = json!({"usage": {
            "total": read_u64(&d.join("cpuacct.usage")).unwrap_or(0),
            "percpu": percpu, "kernel": ns("system"), "user": ns("user")}});
    }
    if let Some(d) = p.dir_of("cpu") {
        let st = kv_file(&d.join("cpu.stat"));
        let g = |k: &str| st.get(k).cloned().unwrap_or(0.into());
        data["cpu"]["throttling"] = json!({"periods": g("nr_periods"),
            "throttledPeriods": g("nr_throttled"), "throttledTime": g("throttled_time")});
    }
    if let Some(d) = p.dir_of("memory") {
        let entry = |prefix: &str| {
            json!({
                "limit": read_u64(&d.join(format!("{prefix}limit_in_bytes"))).unwrap_or(0),
                "usage": read_u64(&d.join(format!("{prefix}usage_in_bytes"))).unwrap_or(0),
                "max": read_u64(&d.join(format!("{prefix}max_usage_in_bytes"))).unwrap_or(0),
                "failcnt": read_u64(&d.join(format!("{prefix}failcnt"))).unwrap_or(0),
            })
        };
        data["memory"] = json!({
            "usage": entry("memory."), "swap": entry("memory.memsw."),
            "kernel": entry("memory.kmem."), "kernelTCP": entry("memory.kmem.tcp."),
            "raw": kv_file(&d.join("memory.stat")),
            "oomKillCount": oom_kill_count(p),
        });
    }
    if let Some(d) = p.dir_of("pids") {
        data["pids"] = json!({"current": read_u64(&d.join("pids.current")).unwrap_or(0),
            "limit": super::read_pids_limit(&d.join("pids.max"))});
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{Cpu, Memory, Pids};

    #[test]
    fn resources_map_to_v1_files_in_order() {
        let r = Resources {
            cpu: Some(Cpu {
                shares: Some(512),
                quota: Some(50000),
                period: Some(100000),
                ..Default::default()
            }),
            memory: Some(Memory {
                limit: Some(1 << 26),
                swap: Some(1 << 27),
                ..Default::default()
            }),
            pids: Some(Pids { limit: 0 }),
            devices: vec![DeviceCgroup {
                allow: false,
                access: Some("rwm".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let w = writes(&r, &[], false);
        let files: Vec<&str> = w.iter().map(|(_, f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "cpu.shares",
                "cpu.cfs_period_us",
                "cpu.cfs_quota_us",
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "pids.max",
                "devices.deny"
            ]
        );
        assert_eq!(w[5].2, "max");
        assert_eq!(w[6].2, "a");
    }

    #[test]
    fn device_rules_format() {
        let d = DeviceCgroup {
            allow: true,
            kind: Some("c".into()),
            major: Some(1),
            minor: None,
            access: Some("rw".into()),
        };
        assert_eq!(device_rule(&d), "c 1:* rw");
    }
}
