//! cgroups, cgroupfs driver: v1 ("legacy"), v2 ("unified") and hybrid (v1
//! controllers plus an empty cgroup2 beside them, treated as v1).
//!
//! Own code rather than `cgroups-rs`: cgroups-rs scans every hierarchy and
//! creates a directory in each for every `Cgroup::new`, resolves relative
//! paths differently from runc, has no hybrid-aware layout choice of its own
//! and reports errors without the file they concern; the runtime needs the
//! layout detected once, runc's path rules, and the exact file named in
//! every error. What it writes is a list of (file, value) pairs computed by
//! pure functions (`v1::writes`, `v2::writes`), unit-tested without root.
//!
//! Never: follow a cgroup path containing `..`, or remove a cgroup it did not
//! record in the container's state.

pub mod dbus;
pub mod devices;
pub mod systemd;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::spec::Resources;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {what}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Unsupported(String),
    #[error("cgroup: no cgroup file system is mounted under /sys/fs/cgroup")]
    NotMounted,
    /// A call to systemd (the systemd driver) failed.
    #[error(transparent)]
    Systemd(Box<SystemdFailure>),
}

#[derive(Debug, thiserror::Error)]
#[error("systemd: {what} {unit}")]
pub struct SystemdFailure {
    pub what: String,
    pub unit: String,
    #[source]
    pub source: dbus::DbusError,
}

impl CgroupError {
    /// systemd answered with this D-Bus error name.
    pub fn is_systemd_error(&self, name: &str) -> bool {
        matches!(self, CgroupError::Systemd(f) if matches!(&f.source, dbus::DbusError::Remote { name: n, .. } if n == name))
    }
}

pub(crate) fn io_err(
    what: impl Into<String>,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> CgroupError {
    let (what, path) = (what.into(), path.to_path_buf());
    move |source| CgroupError::Io { what, path, source }
}

/// The `pids.max` value (the same file in v1 and v2) for a spec limit:
/// zero or less means no limit.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

/// `rdma.max` lines (the same file in v1 and v2): one per device, a limit
/// left out of the spec is "max". Device names the kernel does not know are
/// refused by it, naming the file.
pub(crate) fn rdma_max(
    r: &std::collections::BTreeMap<String, crate::config::spec::Rdma>,
) -> Vec<String> {
    let lim = |v: Option<u32>| v.map_or("max".to_owned(), |v| v.to_string());
    r.iter()
        .map(|(dev, l)| {
            format!(
                "{dev} hca_handle={} hca_object={}",
                lim(l.hca_handles),
                lim(l.hca_objects)
            )
        })
        .collect()
}

/// A `pids.max` file read back for stats: "max" (no limit) is reported as 0.
pub(crate) fn read_pids_limit(file: &Path) -> u64 {
    read_u64(file)
        .map(|v| if v == u64::MAX { 0 } else { v })
        .unwrap_or(0)
}

const ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Controllers (or `name=...`) bound to it, e.g. ["cpu", "cpuacct"].
    pub controllers: Vec<String>,
    pub mount: PathBuf,
    /// The cgroup path the mount shows as its root (usually "/").
    pub root: String,
}

/// The host's cgroup layout, detected once per command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    Unified(PathBuf),
    /// v1 hierarchies; `hybrid` when a cgroup2 is mounted beside them.
    Legacy {
        hierarchies: Vec<Hierarchy>,
        hybrid: bool,
    },
}

impl Layout {
    pub fn detect() -> Result<Self, CgroupError> {
        let st = nix::sys::statfs::statfs(ROOT).map_err(|e| CgroupError::Io {
            what: "statfs".into(),
            path: ROOT.into(),
            source: e.into(),
        })?;
        if st.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
            return Ok(Self::Unified(ROOT.into()));
        }
        let mi = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
        let (hierarchies, hybrid) = parse_mountinfo(&mi);
        if hierarchies.is_empty() {
            return Err(CgroupError::NotMounted);
        }
        Ok(Self::Legacy {
            hierarchies,
            hybrid,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Unified(_) => "v2",
            Self::Legacy { hybrid: true, .. } => "hybrid",
            Self::Legacy { .. } => "v1",
        }
    }
}

/// v1 hierarchies and whether a cgroup2 is mounted, from mountinfo text.
pub fn parse_mountinfo(mi: &str) -> (Vec<Hierarchy>, bool) {
    let mut out = Vec::new();
    let mut hybrid = false;
    for line in mi.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        match post[0] {
            "cgroup2" => hybrid = true,
            "cgroup" => {
                let controllers: Vec<String> = post[2]
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                        ) && !o.starts_with("release_agent=")
                    })
                    .map(str::to_owned)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                let mount = PathBuf::from(unescape(pre[4]));
                if out.iter().any(|h: &Hierarchy| h.controllers == controllers) {
                    continue; // the same hierarchy mounted twice
                }
                out.push(Hierarchy {
                    controllers,
                    mount,
                    root: unescape(pre[3]),
                });
            }
            _ => {}
        }
    }
    (out, hybrid)
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The container's cgroup directories, recorded in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version")]
pub enum CgroupPaths {
    #[serde(rename = "v1")]
    V1 { dirs: Vec<V1Dir> },
    #[serde(rename = "v2")]
    V2 { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Dir {
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

impl CgroupPaths {
    /// Where the container's cgroup is, by runc's rules: an absolute
    /// `cgroupsPath` is from the hierarchy's root, a relative one (and the
    /// default, the container id) from the runtime's own cgroup.
    pub fn plan(
        layout: &Layout,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Self, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(io_err("read", Path::new("/proc/self/cgroup")))?;
        Ok(Self::plan_with(layout, cgroups_path, id, &own))
    }

    pub fn plan_with(layout: &Layout, cgroups_path: Option<&str>, id: &str, own: &str) -> Self {
        let wanted = cgroups_path.unwrap_or(id);
        // systemd-style "slice:prefix:name" under --systemd-cgroup: the
        // cgroupfs driver places it the way systemd would name it.
        let wanted = systemd_style(wanted).unwrap_or_else(|| wanted.to_owned());
        let resolve = |own_path: &str| -> String {
            let joined = if wanted.starts_with('/') {
                wanted.clone()
            } else {
                format!("{}/{}", own_path.trim_end_matches('/'), wanted)
            };
            clean(&joined)
        };
        match layout {
            Layout::Unified(root) => {
                let own_path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("/");
                Self::V2 {
                    path: join_under(root, &resolve(own_path)),
                }
            }
            Layout::Legacy { hierarchies, .. } => {
                let mut dirs = Vec::with_capacity(hierarchies.len());
                for h in hierarchies {
                    let own_path = own
                        .lines()
                        .filter_map(|l| {
                            let mut it = l.splitn(3, ':');
                            let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
                            let ctrls: Vec<&str> = ctrls.split(',').collect();
                            (h.controllers.iter().all(|c| ctrls.contains(&c.as_str())))
                                .then_some(path)
                        })
                        .next()
                        .unwrap_or("/");
                    let cg = resolve(own_path);
                    let rel = cg.strip_prefix(h.root.trim_end_matches('/')).unwrap_or(&cg);
                    dirs.push(V1Dir {
                        controllers: h.controllers.clone(),
                        path: join_under(&h.mount, rel),
                    });
                }
                Self::V1 { dirs }
            }
        }
    }

    pub fn create(&self) -> Result<(), CgroupError> {
        match self {
            Self::V1 { dirs } => v1::create(dirs),
            Self::V2 { path } => v2::create(path),
        }
    }

    pub fn apply(&self, r: &Resources) -> Result<(), CgroupError> {
        match self {
            Self::V1 { dirs } => v1::apply(dirs, r),
            Self::V2 { path } => v2::apply(path, r),
        }
    }

    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let s = pid.to_string();
        for d in self.dirs() {
            let f = d.join("cgroup.procs");
            std::fs::write(&f, &s).map_err(io_err(format!("add pid {pid}"), &f))?;
        }
        Ok(())
    }

    fn dirs(&self) -> Vec<&Path> {
        match self {
            Self::V1 { dirs } => dirs.iter().map(|d| d.path.as_path()).collect(),
            Self::V2 { path } => vec![path.as_path()],
        }
    }

    /// The directory for a controller (v1) or the one directory (v2).
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        match self {
            Self::V1 { dirs } => dirs
                .iter()
                .find(|d| d.controllers.iter().any(|c| c == controller))
                .map(|d| d.path.as_path()),
            Self::V2 { path } => Some(path),
        }
    }

    /// Pids in the container's cgroup (and its children).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = match self {
            Self::V1 { .. } => self
                .dir_of("pids")
                .or_else(|| self.dir_of("freezer"))
                .or_else(|| self.dirs().first().copied()),
            Self::V2 { path } => Some(path.as_path()),
        };
        let mut out = Vec::new();
        if let Some(d) = dir {
            collect_pids(d, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Remove the container's directories (children first). Missing is fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for d in self.dirs() {
            remove_tree(d)?;
        }
        Ok(())
    }

    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match self {
            Self::V1 { .. } => {
                let d = self.dir_of("freezer").ok_or_else(|| {
                    CgroupError::Unsupported("the freezer controller is not mounted".into())
                })?;
                v1::freeze(d, frozen)
            }
            Self::V2 { path } => v2::freeze(path, frozen),
        }
    }

    pub fn stats(&self) -> serde_json::Value {
        match self {
            Self::V1 { .. } => v1::stats(self),
            Self::V2 { path } => v2::stats(path),
        }
    }
}

/// Whether the freezer says the cgroup is frozen.
pub fn is_frozen(p: &CgroupPaths) -> bool {
    match p {
        CgroupPaths::V1 { .. } => p
            .dir_of("freezer")
            .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
            .is_some_and(|s| s.trim() == "FROZEN"),
        CgroupPaths::V2 { path } => {
            std::fs::read_to_string(path.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }
    }
}

fn systemd_style(p: &str) -> Option<String> {
    // "system.slice:berth:id" -> "/system.slice/berth-id.scope"
    let mut parts = p.split(':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || slice.contains('/') {
        return None;
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    Some(format!(
        "{}/{}",
        slice_path(slice),
        scope_unit(prefix, name)
    ))
}

/// The scope unit systemd names for a container: `<prefix>-<name>.scope`.
pub(crate) fn scope_unit(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    }
}

/// A runtime's `cgroupsPath` as a path from the hierarchy's root: a
/// systemd "slice:prefix:name" becomes the scope's folder, where systemd
/// (or the cgroupfs driver) puts it; anything else is returned as it is.
pub fn cgroupfs_path(cgroups_path: &str) -> String {
    systemd_style(cgroups_path).unwrap_or_else(|| cgroups_path.to_owned())
}

/// Where systemd puts a slice: "a-b-c.slice" lives in
/// "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root ("").
pub fn slice_path(slice: &str) -> String {
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    if stem == "-" {
        return String::new();
    }
    let mut path = String::new();
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        path.push('/');
        path.push_str(&acc);
        path.push_str(".slice");
    }
    path
}

/// Lexically clean an absolute cgroup path (no `.`, `..` already rejected).
fn clean(p: &str) -> String {
    let mut out = String::new();
    for c in p
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
    {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn join_under(mount: &Path, cg: &str) -> PathBuf {
    let rel = cg.trim_start_matches('/');
    if rel.is_empty() {
        mount.to_path_buf()
    } else {
        mount.join(rel)
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let f = dir.join("cgroup.procs");
    let s = match std::fs::read_to_string(&f) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read", &f)(e)),
    };
    out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("read dir", dir)(e)),
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    // The kernel may take a moment to drop an exiting task from the cgroup;
    // EBUSY then is transient. Bounded: ~1 s in total.
    let mut delay = std::time::Duration::from_micros(200);
    for _ in 0..12 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) => return Err(io_err("remove", dir)(e)),
        }
    }
    std::fs::remove_dir(dir).map_err(io_err("remove", dir))
}

/// Write `value` to `dir/file`, naming both on error.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(io_err(format!("write {value:?}"), &p))
}

pub(crate) fn read_u64(p: &Path) -> Option<u64> {
    let s = std::fs::read_to_string(p).ok()?;
    let s = s.trim();
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// "key value" lines (memory.stat, cpu.stat, ...) as a JSON object.
pub(crate) fn kv_file(p: &Path) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Ok(s) = std::fs::read_to_string(p) {
        for l in s.lines() {
            if let Some((k, v)) = l.split_once(' ')
                && let Ok(n) = v.trim().parse::<u64>()
            {
                m.insert(k.to_owned(), n.into());
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn mountinfo_finds_v1_hierarchies_and_hybrid() {
        let (h, hybrid) = parse_mountinfo(MI);
        assert!(hybrid);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[2].controllers, ["name=systemd"]);
    }

    #[test]
    fn paths_follow_runc_rules() {
        let (hierarchies, _) = parse_mountinfo(MI);
        let layout = Layout::Legacy {
            hierarchies,
            hybrid: true,
        };
        let own = "4:memory:/user/me\n3:cpu,cpuacct:/\n1:name=systemd:/s\n0::/";
        let p = CgroupPaths::plan_with(&layout, None, "c1", own);
        assert_eq!(
            p.dir_of("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/user/me/c1")
        );
        assert_eq!(
            p.dir_of("cpu").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct/c1")
        );
        let p = CgroupPaths::plan_with(&layout, Some("/a/b"), "c1", own);
        assert_eq!(
            p.dir_of("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
        let u = Layout::Unified("/sys/fs/cgroup".into());
        let p = CgroupPaths::plan_with(&u, Some("system.slice:berth:c1"), "c1", own);
        assert_eq!(
            p,
            CgroupPaths::V2 {
                path: "/sys/fs/cgroup/system.slice/berth-c1.scope".into()
            }
        );
    }
}
