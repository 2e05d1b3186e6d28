//! Container resource usage for `ContainerStats` / `ListContainerStats`:
//! CPU and memory from the container's cgroup (v2 files, else the v1
//! cpuacct and memory hierarchies), the writable layer from its overlay
//! upper folder. Reads only; a missing cgroup (a container not started yet,
//! or gone) reads as zero with the time of the reading.

use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub cpu_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// CFS bandwidth: periods elapsed, periods throttled, time throttled.
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_ns: u64,
    pub memory_usage: u64,
    /// Usage minus inactive file pages (what the kubelet evicts on).
    pub working_set: u64,
    pub rss: u64,
    /// Page cache.
    pub cache: u64,
    pub swap: u64,
    pub mapped_file: u64,
    /// Highest usage seen (v1 `max_usage_in_bytes`, v2 `memory.peak`).
    pub max_usage: u64,
    /// Times the limit was hit (v1 `failcnt`, v2 `max` events).
    pub failcnt: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Processes the kernel's OOM killer killed in the cgroup.
    pub oom_kills: u64,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
    /// Tasks in the cgroup (`pids.current`): threads.
    pub pids: u64,
    /// Processes (`cgroup.procs` entries).
    pub processes: u64,
    /// Pressure stall totals, where the cgroup has them (v2 with PSI).
    pub pressure: Option<Pressure>,
}

/// Stall time totals of one resource, microseconds: `some` (at least one
/// task waited) and `full` (no task could run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stall {
    pub some_us: u64,
    pub full_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub cpu: Stall,
    pub memory: Stall,
    pub io: Stall,
}

/// Parse a `*.pressure` file: `some avg10=.. avg60=.. avg300=.. total=N`
/// and the same for `full` (absent for cpu on older kernels).
pub fn parse_pressure(text: &str) -> Option<Stall> {
    let mut st = Stall::default();
    let mut seen = false;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let kind = f.next()?;
        let Some(total) = f.find_map(|kv| kv.strip_prefix("total=")?.parse::<u64>().ok()) else {
            continue;
        };
        match kind {
            "some" => st.some_us = total,
            "full" => st.full_us = total,
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(st)
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parse `/proc/net/dev` (two header lines, then `name: 8 receive and 8
/// transmit counters`); loopback is left out, as the kubelet does.
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            (n.len() >= 16 && name != "lo").then(|| Interface {
                name: name.to_owned(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_dropped: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_dropped: n[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace pinned at `netns`, read from a
/// short-lived thread that enters it (berthd's own threads never move).
pub fn netns_interfaces(netns: &Path) -> std::io::Result<Vec<Interface>> {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&netns)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // thread-self: /proc/self/net is the main thread's namespace.
        std::fs::read_to_string("/proc/thread-self/net/dev").map(|t| parse_net_dev(&t))
    })
    .join()
    .map_err(|_| std::io::Error::other("netns reader thread panicked"))?
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A `key value` file (cpu.stat, memory.stat, memory.events), read once.
fn keyed(p: &Path) -> HashMap<String, u64> {
    let Ok(text) = std::fs::read_to_string(p) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Entries of a `cgroup.procs` file.
fn count_lines(p: &Path) -> u64 {
    std::fs::read_to_string(p).map_or(0, |t| t.lines().count() as u64)
}

/// The cgroup usage of `cgroup_path` (a cgroupfs path) under `root`
/// (`/sys/fs/cgroup`, or a test folder laid out the same way). Each file
/// is read once.
pub fn cgroup_usage(root: &Path, cgroup_path: &str) -> Usage {
    let path = berth_runtime::cgroups::cgroupfs_path(cgroup_path);
    let rel = path.trim_start_matches('/');
    let v2 = root.join(rel);
    if v2.join("cgroup.controllers").exists() || v2.join("memory.current").exists() {
        return cgroup2_usage(&v2);
    }
    let mut u = Usage::default();
    for cpu in ["cpuacct", "cpu,cpuacct", "cpu"] {
        let d = root.join(cpu).join(rel);
        if let Some(ns) = read_u64(&d.join("cpuacct.usage")) {
            u.cpu_ns = ns;
            // USER_HZ ticks: 100 per second on every Linux ABI.
            let ticks = keyed(&d.join("cpuacct.stat"));
            u.cpu_user_ns = ticks.get("user").copied().unwrap_or(0) * 10_000_000;
            u.cpu_system_ns = ticks.get("system").copied().unwrap_or(0) * 10_000_000;
            break;
        }
    }
    for cpu in ["cpu", "cpu,cpuacct"] {
        let stat = keyed(&root.join(cpu).join(rel).join("cpu.stat"));
        if !stat.is_empty() {
            u.cfs_periods = stat.get("nr_periods").copied().unwrap_or(0);
            u.cfs_throttled_periods = stat.get("nr_throttled").copied().unwrap_or(0);
            u.cfs_throttled_ns = stat.get("throttled_time").copied().unwrap_or(0);
            break;
        }
    }
    let mem = root.join("memory").join(rel);
    u.memory_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
    let stat = keyed(&mem.join("memory.stat"));
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    u.working_set = u.memory_usage.saturating_sub(get("total_inactive_file"));
    u.rss = get("total_rss");
    u.cache = get("total_cache");
    u.swap = get("total_swap");
    u.mapped_file = get("total_mapped_file");
    u.page_faults = get("total_pgfault");
    u.major_page_faults = get("total_pgmajfault");
    u.max_usage = read_u64(&mem.join("memory.max_usage_in_bytes")).unwrap_or(0);
    u.failcnt = read_u64(&mem.join("memory.failcnt")).unwrap_or(0);
    u.oom_kills = keyed(&mem.join("memory.oom_control"))
        .get("oom_kill")
        .copied()
        .unwrap_or(0);
    let pids = root.join("pids").join(rel);
    u.pids = read_u64(&pids.join("pids.current")).unwrap_or(0);
    u.processes = count_lines(&pids.join("cgroup.procs"));
    u
}

fn cgroup2_usage(dir: &Path) -> Usage {
    let cpu = keyed(&dir.join("cpu.stat"));
    let c = |k: &str| cpu.get(k).copied().unwrap_or(0);
    let mem = keyed(&dir.join("memory.stat"));
    let m = |k: &str| mem.get(k).copied().unwrap_or(0);
    let events = keyed(&dir.join("memory.events"));
    let memory_usage = read_u64(&dir.join("memory.current")).unwrap_or(0);
    let stall = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|t| parse_pressure(&t))
    };
    let pressure = match (
        stall("cpu.pressure"),
        stall("memory.pressure"),
        stall("io.pressure"),
    ) {
        (None, None, None) => None,
        (cpu, memory, io) => Some(Pressure {
            cpu: cpu.unwrap_or_default(),
            memory: memory.unwrap_or_default(),
            io: io.unwrap_or_default(),
        }),
    };
    Usage {
        cpu_ns: c("usage_usec") * 1000,
        cpu_user_ns: c("user_usec") * 1000,
        cpu_system_ns: c("system_usec") * 1000,
        cfs_periods: c("nr_periods"),
        cfs_throttled_periods: c("nr_throttled"),
        cfs_throttled_ns: c("throttled_usec") * 1000,
        memory_usage,
        working_set: memory_usage.saturating_sub(m("inactive_file")),
        rss: m("anon"),
        cache: m("file"),
        swap: read_u64(&dir.join("memory.swap.current")).unwrap_or(0),
        mapped_file: m("file_mapped"),
        max_usage: read_u64(&dir.join("memory.peak")).unwrap_or(0),
        failcnt: events.get("max").copied().unwrap_or(0),
        page_faults: m("pgfault"),
        major_page_faults: m("pgmajfault"),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
        processes: count_lines(&dir.join("cgroup.procs")),
        pressure,
        ..Usage::default()
    }
}

/// Bytes and inodes under `dir` (the overlay upper folder), without
/// following symlinks or leaving the filesystem.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = top.dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() && md.dev() == dev {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parses_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    1206      15    1    0    0     0          0         0      796       8    2    0    0     0       0          0
";
        assert_eq!(
            parse_net_dev(text),
            [Interface {
                name: "eth0".into(),
                rx_bytes: 1206,
                rx_packets: 15,
                rx_errors: 1,
                rx_dropped: 0,
                tx_bytes: 796,
                tx_packets: 8,
                tx_errors: 2,
                tx_dropped: 0,
            }]
        );
        assert!(
            parse_net_dev("x\ny\neth0: 1 2 3\n").is_empty(),
            "short lines are skipped"
        );
    }

    #[test]
    fn reads_v1_and_v2_layouts() {
        let d = tempfile::tempdir().unwrap();
        let v2 = d.path().join("v2/pod/c");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("cgroup.controllers"), "cpu memory").unwrap();
        std::fs::write(
            v2.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\nthrottled_usec 30\n",
        )
        .unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(v2.join("cgroup.procs"), "10\n11\n").unwrap();
        std::fs::write(
            v2.join("cpu.pressure"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=77\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
        )
        .unwrap();
        std::fs::write(v2.join("memory.current"), "10000\n").unwrap();
        std::fs::write(
            v2.join("memory.stat"),
            "anon 4000\nfile 6000\ninactive_file 2500\npgfault 7\npgmajfault 1\n",
        )
        .unwrap();
        let u = cgroup_usage(&d.path().join("v2"), "/pod/c");
        assert_eq!(
            (u.cpu_ns, u.memory_usage, u.working_set, u.rss),
            (1_500_000, 10000, 7500, 4000)
        );
        assert_eq!((u.page_faults, u.major_page_faults), (7, 1));
        assert_eq!((u.cpu_user_ns, u.cpu_system_ns), (1_000_000, 500_000));
        assert_eq!(
            (u.cfs_periods, u.cfs_throttled_periods, u.cfs_throttled_ns),
            (4, 2, 30_000)
        );
        assert_eq!(
            (u.cache, u.failcnt, u.oom_kills, u.processes),
            (6000, 3, 1, 2)
        );
        let p = u.pressure.expect("cpu.pressure is there");
        assert_eq!(
            p.cpu,
            Stall {
                some_us: 77,
                full_us: 5
            }
        );
        assert_eq!(p.memory, Stall::default(), "a missing file reads as zero");

        let v1 = d.path().join("v1");
        std::fs::create_dir_all(v1.join("cpuacct/pod/c")).unwrap();
        std::fs::create_dir_all(v1.join("memory/pod/c")).unwrap();
        std::fs::write(v1.join("cpuacct/pod/c/cpuacct.usage"), "123456\n").unwrap();
        std::fs::write(v1.join("memory/pod/c/memory.usage_in_bytes"), "9000\n").unwrap();
        std::fs::write(
            v1.join("memory/pod/c/memory.stat"),
            "cache 1\ntotal_cache 2000\ntotal_rss 3000\ntotal_inactive_file 1000\ntotal_pgfault 5\ntotal_pgmajfault 0\n",
        )
        .unwrap();
        std::fs::write(v1.join("cpuacct/pod/c/cpuacct.stat"), "user 3\nsystem 1\n").unwrap();
        std::fs::write(
            v1.join("memory/pod/c/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let u = cgroup_usage(&v1, "/pod/c");
        assert_eq!(
            (u.cpu_ns, u.memory_usage, u.working_set, u.rss),
            (123456, 9000, 8000, 3000)
        );
        assert_eq!((u.cpu_user_ns, u.cpu_system_ns), (30_000_000, 10_000_000));
        assert_eq!((u.cache, u.oom_kills), (2000, 2));
        assert_eq!(u.pressure, None, "v1 has no per-cgroup pressure");
        assert_eq!(cgroup_usage(&v1, "/none"), Usage::default());
    }

    #[test]
    fn pressure_files_parse() {
        let some_only = "some avg10=1.00 avg60=0.50 avg300=0.10 total=1234\n";
        assert_eq!(
            parse_pressure(some_only),
            Some(Stall {
                some_us: 1234,
                full_us: 0
            })
        );
        assert_eq!(parse_pressure(""), None);
        assert_eq!(parse_pressure("garbage\n"), None);
    }

    #[test]
    fn counts_the_upper_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), vec![1u8; 10000]).unwrap();
        let (bytes, inodes) = dir_usage(d.path());
        assert_eq!(inodes, 2);
        assert!(bytes >= 10000, "{bytes}");
    }
}
