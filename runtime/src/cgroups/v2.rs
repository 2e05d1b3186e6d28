//! cgroup v2 (unified) files. Not exercised on this project's hybrid test
//! host; the value conversions are unit-tested.
//!
//! Device rules are an eBPF program on v2 (BPF_CGROUP_DEVICE), built and
//! attached at create by `devices`.

use std::path::Path;

use super::{CgroupError, io_err, kv_file, read_u64, write};
use crate::config::spec::Resources;

/// Create the directory, enabling the controllers it needs in every
/// ancestor's `cgroup.subtree_control` (best effort: a level holding
/// processes cannot delegate, and then the write of a limit will say so).
pub fn create(path: &Path) -> Result<(), CgroupError> {
    let root = Path::new(super::ROOT);
    let rel = path.strip_prefix(root).unwrap_or(path);
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let ctrls = std::fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let enable: Vec<String> = ctrls.split_whitespace().map(|c| format!("+{c}")).collect();
        if !enable.is_empty() {
            let _ = std::fs::write(cur.join("cgroup.subtree_control"), enable.join(" "));
        }
        cur.push(comp);
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &cur)(e)),
        }
    }
    Ok(())
}

/// cpu.weight from cpu.shares, as runc converts ([2, 262144] -> [1, 10000]).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + (shares.saturating_sub(2) * 9999) / 262_142
    }
}

/// io.weight from blkio.weight ([10, 1000] -> [1, 10000]).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + (u64::from(w).saturating_sub(10) * 9999) / 990
}

pub fn writes(r: &Resources) -> Vec<(String, String)> {
    let mut w = Vec::new();
    let mut put = |f: &str, v: String| w.push((f.to_owned(), v));
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|s| *s > 0) {
            put("cpu.weight", shares_to_weight(s).to_string());
        }
        if c.quota.is_some() || c.period.is_some() {
            let q = match c.quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".into(),
            };
            put(
                "cpu.max",
                format!("{q} {}", c.period.filter(|p| *p > 0).unwrap_or(100_000)),
            );
        }
        if let Some(b) = c.burst {
            put("cpu.max.burst", b.to_string());
        }
        if let Some(i) = c.idle {
            put("cpu.idle", i.to_string());
        }
        if let Some(s) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
            put("cpuset.cpus", s.to_owned());
        }
        if let Some(s) = c.mems.as_deref().filter(|s| !s.is_empty()) {
            put("cpuset.mems", s.to_owned());
        }
    }
    if let Some(m) = &r.memory {
        let lim = |v: i64| {
            if v < 0 {
                "max".to_owned()
            } else {
                v.to_string()
            }
        };
        if let Some(l) = m.limit.filter(|l| *l != 0) {
            put("memory.max", lim(l));
        }
        if let Some(s) = m.swap.filter(|s| *s != 0) {
            // OCI swap is memory+swap; v2's memory.swap.max is swap alone.
            let v = match m.limit {
                _ if s < 0 => "max".into(),
                Some(l) if l > 0 => (s - l).max(0).to_string(),
                _ => s.to_string(),
            };
            put("memory.swap.max", v);
        }
        if let Some(r) = m.reservation.filter(|r| *r != 0) {
            put("memory.low", lim(r));
        }
        if m.disable_oom_killer == Some(true) {
            put("memory.oom.group", "0".into());
        }
    }
    if let Some(p) = &r.pids {
        put("pids.max", super::pids_max(p.limit));
    }
    if let Some(b) = &r.block_io {
        if let Some(v) = b.weight {
            put("io.weight", blkio_to_io_weight(v).to_string());
        }
        for d in &b.weight_device {
            if let Some(v) = d.weight {
                put(
                    "io.weight",
                    format!("{}:{} {}", d.major, d.minor, blkio_to_io_weight(v)),
                );
            }
        }
        for (key, list) in [
            ("rbps", &b.throttle_read_bps_device),
            ("wbps", &b.throttle_write_bps_device),
            ("riops", &b.throttle_read_iops_device),
            ("wiops", &b.throttle_write_iops_device),
        ] {
            for d in list {
                put(
                    "io.max",
                    format!("{}:{} {key}={}", d.major, d.minor, d.rate),
                );
            }
        }
    }
    for h in &r.hugepage_limits {
        put(&format!("hugetlb.{}.max", h.page_size), h.limit.to_string());
    }
    for line in super::rdma_max(&r.rdma) {
        put("rdma.max", line);
    }
    for (k, v) in &r.unified {
        put(k, v.clone());
    }
    w
}

/// At create: the device filter (the spec's rules, then the default
/// devices and `extra_devices`, as v1 writes them), then every limit.
pub fn apply_create(
    path: &Path,
    r: &Resources,
    extra_devices: &[String],
) -> Result<(), CgroupError> {
    let allowed: Vec<String> = super::v1::DEFAULT_DEVICES
        .iter()
        .map(|s| s.to_string())
        .chain(extra_devices.iter().cloned())
        .collect();
    let policy = super::devices::policy(&r.devices, &allowed)?;
    super::devices::apply(path, &policy)?;
    apply(path, r)
}

/// The limits of `r` (not its device rules: those are fixed at create, as
/// in runc).
pub fn apply(path: &Path, r: &Resources) -> Result<(), CgroupError> {
    for (f, v) in writes(r) {
        write(path, &f, &v)?;
    }
    Ok(())
}

/// Freeze or thaw, waiting on `cgroup.events` (poll POLLPRI) until the
/// kernel reports the new state: a notification, not a polling loop.
pub fn freeze(path: &Path, frozen: bool) -> Result<(), CgroupError> {
    write(path, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    let ev = path.join("cgroup.events");
    let f = std::fs::File::open(&ev).map_err(io_err("open", &ev))?;
    for _ in 0..1000 {
        let s = std::fs::read_to_string(&ev).map_err(io_err("read", &ev))?;
        if s.lines().any(|l| l == want) {
            return Ok(());
        }
        let mut pfd = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&f),
            nix::poll::PollFlags::POLLPRI,
        )];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(100u16));
    }
    Err(CgroupError::Unsupported(format!(
        "{}: freezer did not settle",
        path.display()
    )))
}

pub fn stats(path: &Path) -> serde_json::Value {
    use serde_json::json;
    let cpu = kv_file(&path.join("cpu.stat"));
    let g = |k: &str| cpu.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let ev = kv_file(&path.join("memory.events"));
    json!({
        "cpu": {"usage": {"total": g("usage_usec") * 1000, "kernel": g("system_usec") * 1000,
                          "user": g("user_usec") * 1000},
                "throttling": {"periods": g("nr_periods"), "throttledPeriods": g("nr_throttled"),
                               "throttledTime": g("throttled_usec") * 1000}},
        "memory": {"usage": {"usage": read_u64(&path.join("memory.current")).unwrap_or(0),
                             "limit": read_u64(&path.join("memory.max")).unwrap_or(0),
                             "max": read_u64(&path.join("memory.peak")).unwrap_or(0),
                             "failcnt": ev.get("max").cloned().unwrap_or(0.into())},
                   "swap": {"usage": read_u64(&path.join("memory.swap.current")).unwrap_or(0),
                            "limit": read_u64(&path.join("memory.swap.max")).unwrap_or(0)},
                   "raw": kv_file(&path.join("memory.stat")),
                   "oomKillCount": ev.get("oom_kill").cloned().unwrap_or(0.into())},
        "pids": {"current": read_u64(&path.join("pids.current")).unwrap_or(0),
                 "limit": super::read_pids_limit(&path.join("pids.max"))},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{Cpu, Memory};

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn rdma_limits_are_one_line_per_device() {
        let r: Resources = serde_json::from_str(
            r#"{"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "mlx4_0": {"hcaObjects": 1000}}}"#,
        )
        .unwrap();
        assert_eq!(
            writes(&r),
            [
                (
                    "rdma.max".to_owned(),
                    "mlx4_0 hca_handle=max hca_object=1000".to_owned()
                ),
                (
                    "rdma.max".to_owned(),
                    "mlx5_1 hca_handle=3 hca_object=10000".to_owned()
                ),
            ]
        );
        let v1 = super::super::v1::writes(&r, &[], false);
        assert!(v1.contains(&(
            "rdma",
            "rdma.max".into(),
            "mlx5_1 hca_handle=3 hca_object=10000".into()
        )));
    }

    #[test]
    fn swap_is_converted_to_swap_only() {
        let r = Resources {
            memory: Some(Memory {
                limit: Some(100),
                swap: Some(300),
                ..Default::default()
            }),
            cpu: Some(Cpu {
                quota: Some(-1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let w = writes(&r);
        assert!(w.contains(&("memory.swap.max".into(), "200".into())));
        assert!(w.contains(&("cpu.max".into(), "max 100000".into())));
    }
}
