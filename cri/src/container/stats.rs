//! Container resource usage for `ContainerStats` / `ListContainerStats`:
//! CPU and memory from the container's cgroup (v2 files, else the v1
//! cpuacct and memory hierarchies), the writable layer from its overlay
//! upper folder. Reads only; a missing cgroup (a container not started yet,
//! or gone) reads as zero with the time of the reading.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub cpu_ns: u64,
    pub memory_usage: u64,
    /// Usage minus inactive file pages (what the kubelet evicts on).
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
    /// Tasks in the cgroup (`pids.current`).
    pub pids: u64,
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
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
                rx_errors: n[2],
                tx_bytes: n[8],
                tx_errors: n[10],
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

/// `key value` lines (cpu.stat, memory.stat).
fn keyed(p: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(p)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The cgroup usage of `cgroup_path` (a cgroupfs path) under `root`
/// (`/sys/fs/cgroup`, or a test folder laid out the same way).
pub fn cgroup_usage(root: &Path, cgroup_path: &str) -> Usage {
    let rel = cgroup_path.trim_start_matches('/');
    let mut u = Usage::default();
    let v2 = root.join(rel);
    if v2.join("cgroup.controllers").exists() || v2.join("memory.current").exists() {
        u.cpu_ns = keyed(&v2.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
        u.memory_usage = read_u64(&v2.join("memory.current")).unwrap_or(0);
        let stat = v2.join("memory.stat");
        let inactive = keyed(&stat, "inactive_file").unwrap_or(0);
        u.working_set = u.memory_usage.saturating_sub(inactive);
        u.rss = keyed(&stat, "anon").unwrap_or(0);
        u.page_faults = keyed(&stat, "pgfault").unwrap_or(0);
        u.major_page_faults = keyed(&stat, "pgmajfault").unwrap_or(0);
        u.pids = read_u64(&v2.join("pids.current")).unwrap_or(0);
        return u;
    }
    for cpu in ["cpuacct", "cpu,cpuacct", "cpu"] {
        if let Some(ns) = read_u64(&root.join(cpu).join(rel).join("cpuacct.usage")) {
            u.cpu_ns = ns;
            break;
        }
    }
    let mem = root.join("memory").join(rel);
    u.memory_usage = read_u64(&mem.join("memory.usage_in_bytes")).unwrap_or(0);
    let stat = mem.join("memory.stat");
    let inactive = keyed(&stat, "total_inactive_file").unwrap_or(0);
    u.working_set = u.memory_usage.saturating_sub(inactive);
    u.rss = keyed(&stat, "total_rss").unwrap_or(0);
    u.page_faults = keyed(&stat, "total_pgfault").unwrap_or(0);
    u.major_page_faults = keyed(&stat, "total_pgmajfault").unwrap_or(0);
    u.pids = read_u64(&root.join("pids").join(rel).join("pids.current")).unwrap_or(0);
    u
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
                rx_errors: 1,
                tx_bytes: 796,
                tx_errors: 2,
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
        std::fs::write(v2.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
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

        let v1 = d.path().join("v1");
        std::fs::create_dir_all(v1.join("cpuacct/pod/c")).unwrap();
        std::fs::create_dir_all(v1.join("memory/pod/c")).unwrap();
        std::fs::write(v1.join("cpuacct/pod/c/cpuacct.usage"), "123456\n").unwrap();
        std::fs::write(v1.join("memory/pod/c/memory.usage_in_bytes"), "9000\n").unwrap();
        std::fs::write(
            v1.join("memory/pod/c/memory.stat"),
            "cache 1\ntotal_rss 3000\ntotal_inactive_file 1000\ntotal_pgfault 5\ntotal_pgmajfault 0\n",
        )
        .unwrap();
        let u = cgroup_usage(&v1, "/pod/c");
        assert_eq!(
            (u.cpu_ns, u.memory_usage, u.working_set, u.rss),
            (123456, 9000, 8000, 3000)
        );
        assert_eq!(cgroup_usage(&v1, "/none"), Usage::default());
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
