//! Pod user namespaces (`spec.hostUsers: false`), as upstream's
//! pkg/kubelet/userns does them: each such pod gets a block of host ids of
//! its own (`userNamespaces.idsPerPod`, 65536 by default) from the node's
//! range, mapped from container id 0, the same block for uids and gids.
//! The node's range is the `kubelet:<first>:<count>` entry of /etc/subuid
//! and /etc/subgid (the same in both), else 65536 ids per pod for maxPods
//! pods from host id 65536.
//!
//! A pod's block is written to `<root-dir>/pods/<uid>/userns` (upstream's
//! file and JSON) before its sandbox is asked for, and every such file is
//! read back at start: a restarted kubelet keeps the running pods'
//! mappings and never hands a block in use to another pod. The block is
//! freed when the pod has been removed. This module never maps host ids
//! below 65536 (the host's own users) and never records two blocks that
//! overlap: a file that would is refused at start, naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The unit of every id range here: one user namespace's worth of ids.
pub const BLOCK: u32 = 1 << 16;
/// The file in a pod's folder that records its mapping (upstream's name).
pub const MAPPINGS_FILE: &str = "userns";
pub const SUBUID: &str = "/etc/subuid";
pub const SUBGID: &str = "/etc/subgid";
/// The user whose subordinate ids are the node's range (upstream's).
const KUBELET_USER: &str = "kubelet";
/// One past the last id.
const ID_SPACE: u64 = 1 << 32;

/// A pod's user namespace: container ids `0..length` are host ids
/// `host_id..host_id + length`, for users and groups alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub host_id: u32,
    pub length: u32,
}

impl Mapping {
    fn start(&self) -> u64 {
        u64::from(self.host_id)
    }

    fn end(&self) -> u64 {
        self.start() + u64::from(self.length)
    }
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host ids {}..{}", self.host_id, self.end())
    }
}

/// The host ids the node hands out to pods: `first..first + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRange {
    pub first: u32,
    pub len: u64,
}

/// The `kubelet:<first>:<count>` entry of a subordinate id file's text
/// (None: there is none). A second entry is refused, as upstream refuses
/// getsubids output of more than one line; other users' lines are theirs.
pub fn parse_subids(text: &str) -> Result<Option<(u32, u64)>, String> {
    let mut found = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            continue;
        };
        if user != KUBELET_USER {
            continue;
        }
        let err = |m: &str| format!("line {}: {line:?}: {m}", i + 1);
        let (first, count) = rest
            .split_once(':')
            .ok_or_else(|| err("not kubelet:<first id>:<count>"))?;
        let first: u32 = first
            .parse()
            .map_err(|_| err("the first id is not a number"))?;
        let count: u64 = count
            .parse()
            .ok()
            .filter(|c| *c <= ID_SPACE)
            .ok_or_else(|| err("the count is not a number of ids"))?;
        if found.is_some() {
            return Err(err("a second entry for kubelet: only one is supported"));
        }
        found = Some((first, count));
    }
    Ok(found)
}

impl NodeRange {
    /// The node's range from the subordinate user and group id files
    /// (their names and texts, None where the file does not exist),
    /// checked as upstream checks it: a first id that is a multiple of
    /// 65536 and not below it, a count that is a multiple of 65536 and
    /// holds `max_pods` blocks of `ids_per_pod`.
    pub fn from_subids(
        (subuid, uid_text): (&str, Option<&str>),
        (subgid, gid_text): (&str, Option<&str>),
        ids_per_pod: u32,
        max_pods: u32,
    ) -> Result<NodeRange, String> {
        let parse = |file: &str, text: Option<&str>| {
            text.map(parse_subids)
                .transpose()
                .map(Option::flatten)
                .map_err(|e| format!("{file}: {e}"))
        };
        let (first, len) = match (parse(subuid, uid_text)?, parse(subgid, gid_text)?) {
            (None, None) => {
                let len = u64::from(ids_per_pod) * u64::from(max_pods);
                if u64::from(BLOCK) + len > ID_SPACE {
                    return Err(format!(
                        "maxPods {max_pods} × idsPerPod {ids_per_pod} ids do not fit in the id space above 65536"
                    ));
                }
                return Ok(NodeRange { first: BLOCK, len });
            }
            (Some(u), Some(g)) if u == g => u,
            (Some(u), Some(g)) => {
                return Err(format!(
                    "{subuid} gives kubelet {}:{} and {subgid} {}:{}: the two ranges must be the same",
                    u.0, u.1, g.0, g.1
                ));
            }
            (u, _) => {
                let (has, lacks) = if u.is_some() {
                    (subuid, subgid)
                } else {
                    (subgid, subuid)
                };
                return Err(format!(
                    "{has} has a kubelet entry and {lacks} has none: both must give the same range"
                ));
            }
        };
        let at = format!("{subuid} and {subgid}: kubelet:{first}:{len}");
        if !first.is_multiple_of(BLOCK) || first < BLOCK {
            return Err(format!(
                "{at}: the first id must be a multiple of {BLOCK} and at least {BLOCK}"
            ));
        }
        if !len.is_multiple_of(u64::from(BLOCK)) || len == 0 {
            return Err(format!("{at}: the count must be a multiple of {BLOCK}"));
        }
        if u64::from(first) + len > ID_SPACE {
            return Err(format!("{at}: the range goes past the last id"));
        }
        if len / u64::from(ids_per_pod) < u64::from(max_pods) {
            return Err(format!(
                "{at}: too few ids for maxPods {max_pods} pods of idsPerPod {ids_per_pod}"
            ));
        }
        Ok(NodeRange { first, len })
    }
}

/// Which pod has which block. Pure: the files are `UserNamespaces`'.
#[derive(Debug)]
pub struct Allocator {
    range: NodeRange,
    ids_per_pod: u32,
    /// Every recorded block by its first host id, with its pod's UID.
    blocks: BTreeMap<u64, (Mapping, String)>,
    by_pod: HashMap<String, Mapping>,
}

impl Allocator {
    pub fn new(range: NodeRange, ids_per_pod: u32) -> Self {
        Allocator {
            range,
            ids_per_pod,
            blocks: BTreeMap::new(),
            by_pod: HashMap::new(),
        }
    }

    pub fn get(&self, pod: &str) -> Option<Mapping> {
        self.by_pod.get(pod).copied()
    }

    /// The pods that have a block.
    pub fn pods(&self) -> impl Iterator<Item = &str> {
        self.by_pod.keys().map(String::as_str)
    }

    /// The pod whose block shares ids with `m`, if any. Blocks never
    /// overlap, so the last one starting before `m` ends is the only
    /// candidate.
    fn overlapping(&self, m: Mapping) -> Option<&str> {
        self.blocks
            .range(..m.end())
            .next_back()
            .filter(|(_, (b, _))| b.end() > m.start())
            .map(|(_, (_, pod))| pod.as_str())
    }

    fn insert(&mut self, pod: &str, m: Mapping) {
        self.blocks.insert(m.start(), (m, pod.to_owned()));
        self.by_pod.insert(pod.to_owned(), m);
    }

    /// Record a block read back from a pod's file. A block outside the
    /// node's range (the range or idsPerPod changed since) is kept for its
    /// pod: it was handed out, and the pod runs with it.
    pub fn record(&mut self, pod: &str, m: Mapping) -> Result<(), String> {
        if let Some(have) = self.get(pod) {
            return if have == m {
                Ok(())
            } else {
                Err(format!("pod {pod} already has {have}, not {m}"))
            };
        }
        if m.host_id < BLOCK {
            return Err(format!("{m}: host ids below {BLOCK} are the host's own"));
        }
        if m.length == 0 || !m.length.is_multiple_of(BLOCK) || m.end() > ID_SPACE {
            return Err(format!(
                "host id {} with length {} is not a range of whole blocks of {BLOCK}",
                m.host_id, m.length
            ));
        }
        if let Some(other) = self.overlapping(m) {
            return Err(format!("{m} overlap the block of pod {other}"));
        }
        self.insert(pod, m);
        Ok(())
    }

    /// The pod's block: the one it has, else the first free one.
    pub fn allocate(&mut self, pod: &str) -> Result<Mapping, String> {
        if let Some(m) = self.get(pod) {
            return Ok(m);
        }
        let slots = self.range.len / u64::from(self.ids_per_pod);
        for slot in 0..slots {
            let start = u64::from(self.range.first) + slot * u64::from(self.ids_per_pod);
            let m = Mapping {
                host_id: start as u32,
                length: self.ids_per_pod,
            };
            if self.overlapping(m).is_none() {
                self.insert(pod, m);
                return Ok(m);
            }
        }
        Err(format!(
            "no free block of {} ids left in host ids {}..{} ({} pods have one)",
            self.ids_per_pod,
            self.range.first,
            u64::from(self.range.first) + self.range.len,
            self.by_pod.len()
        ))
    }

    pub fn release(&mut self, pod: &str) -> Option<Mapping> {
        let m = self.by_pod.remove(pod)?;
        self.blocks.remove(&m.start());
        Some(m)
    }
}

/// One mapping as upstream's file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdMapping {
    host_id: u32,
    container_id: u32,
    length: u32,
}

/// `<pod dir>/userns`, upstream's JSON.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MappingsFile {
    uid_mappings: Vec<IdMapping>,
    gid_mappings: Vec<IdMapping>,
}

/// A mappings file's text to the pod's mapping, with upstream's checks:
/// one uid mapping, the same gid mapping, from container id 0.
pub fn parse_file(text: &[u8]) -> Result<Mapping, String> {
    let f: MappingsFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let [u] = f.uid_mappings[..] else {
        return Err(format!(
            "uidMappings: exactly one mapping is supported, got {}",
            f.uid_mappings.len()
        ));
    };
    if f.gid_mappings[..] != [u] {
        return Err("gidMappings: must be the same as uidMappings".into());
    }
    if u.container_id != 0 {
        return Err(format!(
            "uidMappings[0].containerId: {}: container id 0 must be mapped",
            u.container_id
        ));
    }
    Ok(Mapping {
        host_id: u.host_id,
        length: u.length,
    })
}

pub fn file_text(m: Mapping) -> Vec<u8> {
    let one = IdMapping {
        host_id: m.host_id,
        container_id: 0,
        length: m.length,
    };
    let f = MappingsFile {
        uid_mappings: vec![one],
        gid_mappings: vec![one],
    };
    serde_json::to_vec(&f).expect("mappings serialize")
}

/// Why a pod cannot have its own user namespace because of its spec (the
/// API server refuses these; static pods and older servers may not).
pub fn check_spec(host_network: bool, host_pid: bool, host_ipc: bool) -> Result<(), String> {
    for (field, set) in [
        ("hostNetwork", host_network),
        ("hostPID", host_pid),
        ("hostIPC", host_ipc),
    ] {
        if set {
            return Err(format!(
                "spec.{field}: may not be true when spec.hostUsers is false"
            ));
        }
    }
    Ok(())
}

/// Whether the runtime can make pod user namespaces: its default handler
/// (berth-kubelet has no RuntimeClasses) says so in CRI Status, as
/// upstream asks it.
pub fn check_runtime(handlers: &[k8s_cri::v1::RuntimeHandler]) -> Result<(), String> {
    match handlers.iter().find(|h| h.name.is_empty()) {
        Some(h) if h.features.as_ref().is_some_and(|f| f.user_namespaces) => Ok(()),
        Some(_) => Err("the runtime's default handler does not support user namespaces".into()),
        None => Err("the runtime does not report its default handler's features (CRI Status runtime_handlers): user namespaces are not known to be supported".into()),
    }
}

/// The node's allocator and the pods' files.
pub struct UserNamespaces {
    pods_dir: PathBuf,
    allocator: Mutex<Allocator>,
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl UserNamespaces {
    /// The node's range (/etc/subuid, /etc/subgid) and every pod's
    /// recorded block under `pods_dir` (`<root-dir>/pods`).
    pub fn load(pods_dir: &Path, ids_per_pod: u32, max_pods: u32) -> Result<Self> {
        Self::load_with(
            pods_dir,
            [Path::new(SUBUID), Path::new(SUBGID)],
            ids_per_pod,
            max_pods,
        )
    }

    /// `load` with other subordinate id files (tests).
    pub fn load_with(
        pods_dir: &Path,
        [subuid, subgid]: [&Path; 2],
        ids_per_pod: u32,
        max_pods: u32,
    ) -> Result<Self> {
        let (uid_name, gid_name) = (subuid.display().to_string(), subgid.display().to_string());
        let range = NodeRange::from_subids(
            (&uid_name, read_optional(subuid)?.as_deref()),
            (&gid_name, read_optional(subgid)?.as_deref()),
            ids_per_pod,
            max_pods,
        )
        .map_err(Error::UserNamespaces)?;
        let mut allocator = Allocator::new(range, ids_per_pod);
        let entries = match std::fs::read_dir(pods_dir) {
            Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
        .map_err(|e| Error::io(pods_dir, e))?;
        for e in entries {
            let file = e.path().join(MAPPINGS_FILE);
            let text = match std::fs::read(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&file, e)),
            };
            let pod = e.file_name().to_string_lossy().into_owned();
            parse_file(&text)
                .and_then(|m| allocator.record(&pod, m))
                .map_err(|e| Error::UserNamespaces(format!("{}: {e}", file.display())))?;
        }
        tracing::info!(
            first_id = range.first,
            ids = range.len,
            ids_per_pod,
            pods = allocator.by_pod.len(),
            "pod user namespaces"
        );
        Ok(UserNamespaces {
            pods_dir: pods_dir.to_owned(),
            allocator: Mutex::new(allocator),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, pod: &str) -> Option<Mapping> {
        self.lock().get(pod)
    }

    /// The pod's block; a new one is written to the pod's folder (and the
    /// folder synced) before it is returned.
    pub fn get_or_create(&self, pod: &str) -> Result<Mapping, String> {
        let mut a = self.lock();
        if let Some(m) = a.get(pod) {
            return Ok(m);
        }
        let m = a.allocate(pod)?;
        let dir = self.pods_dir.join(pod);
        let written =
            crate::pod_worker::write_atomic(&dir, MAPPINGS_FILE, &file_text(m)).and_then(|()| {
                std::fs::File::open(&dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(&dir, e))
            });
        if let Err(e) = written {
            a.release(pod);
            return Err(format!("recording the pod's user namespace: {e}"));
        }
        tracing::info!(pod_uid = %pod, host_id = m.host_id, length = m.length, "user namespace allocated");
        Ok(m)
    }

    /// Free the pod's block and remove its file.
    pub fn release(&self, pod: &str) {
        let mut a = self.lock();
        if let Some(m) = a.release(pod) {
            let _ = std::fs::remove_file(self.pods_dir.join(pod).join(MAPPINGS_FILE));
            tracing::info!(pod_uid = %pod, host_id = m.host_id, "user namespace released");
        }
    }

    /// Free the blocks of pods for which `known` is false (no source wants
    /// them, the runtime has nothing of them: their removal was cut short).
    pub fn release_unknown(&self, known: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .lock()
            .pods()
            .filter(|p| !known(p))
            .map(str::to_owned)
            .collect();
        for pod in gone {
            self.release(&pod);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = BLOCK;

    #[test]
    fn subid_files_give_the_kubelet_entry() {
        assert_eq!(
            parse_subids("root:100000:65536\n\nkubelet:131072:6553600\n").unwrap(),
            Some((131072, 6553600))
        );
        assert_eq!(parse_subids("alice:100000:65536\n").unwrap(), None);
        assert_eq!(parse_subids("").unwrap(), None);
        let e = parse_subids("kubelet:65536:65536\nkubelet:131072:65536\n").unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("only one"), "{e}");
        let e = parse_subids("kubelet:x:65536\n").unwrap_err();
        assert!(e.contains("first id"), "{e}");
        let e = parse_subids("kubelet:65536\n").unwrap_err();
        assert!(e.contains("not kubelet:<first id>:<count>"), "{e}");
        let e = parse_subids("kubelet:65536:5000000000\n").unwrap_err();
        assert!(e.contains("count"), "{e}");
    }

    #[test]
    fn the_node_range_is_checked_as_upstream() {
        // No entry anywhere: 65536 per pod for maxPods pods from 65536.
        let r = |u: Option<&str>, g: Option<&str>, ids: u32, pods: u32| {
            NodeRange::from_subids((SUBUID, u), (SUBGID, g), ids, pods)
        };
        assert_eq!(
            r(None, None, B, 110).unwrap(),
            NodeRange {
                first: B,
                len: u64::from(B) * 110
            }
        );
        assert_eq!(
            r(Some("root:1:2\n"), None, 2 * B, 3).unwrap().len,
            u64::from(B) * 6
        );
        let k = "kubelet:131072:655360\n";
        assert_eq!(
            r(Some(k), Some(k), B, 10).unwrap(),
            NodeRange {
                first: 131072,
                len: 655360
            }
        );
        let bad = |u: Option<&str>, g: Option<&str>, pods: u32| r(u, g, B, pods).unwrap_err();
        let e = bad(Some(k), None, 10);
        assert!(e.contains("/etc/subgid has none"), "{e}");
        let e = bad(Some("root:1:1\n"), Some(k), 10);
        assert!(e.contains("/etc/subgid has a kubelet entry"), "{e}");
        let e = bad(Some(k), Some("kubelet:196608:655360\n"), 10);
        assert!(e.contains("must be the same"), "{e}");
        for (entry, want) in [
            ("kubelet:100000:655360\n", "multiple of 65536"),
            ("kubelet:0:655360\n", "at least 65536"),
            ("kubelet:65536:100000\n", "count must be a multiple"),
            ("kubelet:4294901760:131072\n", "past the last id"),
        ] {
            let e = bad(Some(entry), Some(entry), 1);
            assert!(e.contains(want), "{entry}: {e}");
        }
        let e = bad(Some(k), Some(k), 11);
        assert!(e.contains("too few ids for maxPods 11"), "{e}");
        let e = r(None, None, B, 70000).unwrap_err();
        assert!(e.contains("maxPods 70000"), "{e}");
    }

    fn alloc(pods: u64) -> Allocator {
        Allocator::new(
            NodeRange {
                first: B,
                len: u64::from(B) * pods,
            },
            B,
        )
    }

    #[test]
    fn blocks_are_allocated_freed_and_exhausted() {
        let mut a = alloc(3);
        let m1 = a.allocate("p1").unwrap();
        assert_eq!(
            m1,
            Mapping {
                host_id: B,
                length: B
            }
        );
        assert_eq!(a.allocate("p1").unwrap(), m1, "a pod keeps its block");
        let m2 = a.allocate("p2").unwrap();
        let m3 = a.allocate("p3").unwrap();
        assert_eq!((m2.host_id, m3.host_id), (2 * B, 3 * B));
        let e = a.allocate("p4").unwrap_err();
        assert!(e.contains("no free block") && e.contains("3 pods"), "{e}");
        assert_eq!(a.release("p2"), Some(m2));
        assert_eq!(a.release("p2"), None);
        assert_eq!(a.allocate("p4").unwrap(), m2, "the freed block is reused");
        assert_eq!(a.get("p2"), None);
    }

    #[test]
    fn larger_blocks_per_pod() {
        let mut a = Allocator::new(
            NodeRange {
                first: B,
                len: u64::from(B) * 4,
            },
            2 * B,
        );
        assert_eq!(a.allocate("a").unwrap().host_id, B);
        assert_eq!(a.allocate("b").unwrap().host_id, 3 * B);
        assert!(a.allocate("c").is_err());
    }

    #[test]
    fn recorded_blocks_are_kept_and_never_reused() {
        let mut a = alloc(4);
        a.record(
            "old",
            Mapping {
                host_id: 2 * B,
                length: B,
            },
        )
        .unwrap();
        // Outside today's range (the range shrank): kept for its pod.
        a.record(
            "far",
            Mapping {
                host_id: 100 * B,
                length: B,
            },
        )
        .unwrap();
        assert_eq!(a.allocate("n1").unwrap().host_id, B);
        assert_eq!(a.allocate("n2").unwrap().host_id, 3 * B);
        // Recording the same block for its pod again is a no-op.
        a.record(
            "old",
            Mapping {
                host_id: 2 * B,
                length: B,
            },
        )
        .unwrap();
    }

    #[test]
    fn overlapping_or_bad_records_are_refused() {
        let mut a = alloc(4);
        a.record(
            "p1",
            Mapping {
                host_id: 2 * B,
                length: 2 * B,
            },
        )
        .unwrap();
        for (pod, host_id, length, want) in [
            ("p2", 3 * B, B, "overlap the block of pod p1"),
            ("p2", B, 2 * B, "overlap the block of pod p1"),
            ("p1", B, B, "already has"),
            ("p2", 0, B, "the host's own"),
            ("p2", 5 * B, 1000, "whole blocks"),
            ("p2", u32::MAX - B + 1, 2 * B, "whole blocks"),
        ] {
            let e = a.record(pod, Mapping { host_id, length }).unwrap_err();
            assert!(e.contains(want), "{pod} {host_id} {length}: {e}");
        }
        // The block just after p1's is free.
        a.record(
            "p3",
            Mapping {
                host_id: 4 * B,
                length: B,
            },
        )
        .unwrap();
        assert_eq!(a.allocate("p4").unwrap().host_id, B);
        assert!(a.allocate("p5").is_err());
    }

    #[test]
    fn the_file_is_upstreams_json() {
        let m = Mapping {
            host_id: 196608,
            length: B,
        };
        let text = file_text(m);
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            r#"{"uidMappings":[{"hostId":196608,"containerId":0,"length":65536}],"gidMappings":[{"hostId":196608,"containerId":0,"length":65536}]}"#
        );
        assert_eq!(parse_file(&text).unwrap(), m);
        for (text, want) in [
            (r#"{"uidMappings":[],"gidMappings":[]}"#, "exactly one"),
            (
                r#"{"uidMappings":[{"hostId":65536,"containerId":0,"length":65536}],"gidMappings":[{"hostId":131072,"containerId":0,"length":65536}]}"#,
                "the same as uidMappings",
            ),
            (
                r#"{"uidMappings":[{"hostId":65536,"containerId":1,"length":65536}],"gidMappings":[{"hostId":65536,"containerId":1,"length":65536}]}"#,
                "container id 0",
            ),
            ("{", "EOF"),
        ] {
            let e = parse_file(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn host_namespaces_are_refused_with_a_user_namespace() {
        assert!(check_spec(false, false, false).is_ok());
        assert_eq!(
            check_spec(true, false, false).unwrap_err(),
            "spec.hostNetwork: may not be true when spec.hostUsers is false"
        );
        assert!(
            check_spec(false, true, false)
                .unwrap_err()
                .contains("hostPID")
        );
        assert!(
            check_spec(false, false, true)
                .unwrap_err()
                .contains("hostIPC")
        );
    }

    #[test]
    fn the_runtime_must_say_it_can() {
        use k8s_cri::v1::{RuntimeHandler, RuntimeHandlerFeatures};
        let h = |name: &str, userns: Option<bool>| RuntimeHandler {
            name: name.into(),
            features: userns.map(|u| RuntimeHandlerFeatures {
                user_namespaces: u,
                recursive_read_only_mounts: true,
            }),
        };
        assert!(check_runtime(&[h("kata", Some(false)), h("", Some(true))]).is_ok());
        let e = check_runtime(&[h("", Some(false)), h("kata", Some(true))]).unwrap_err();
        assert!(e.contains("does not support user namespaces"), "{e}");
        assert!(check_runtime(&[h("", None)]).is_err());
        let e = check_runtime(&[]).unwrap_err();
        assert!(e.contains("runtime_handlers"), "{e}");
    }

    #[test]
    fn the_manager_reloads_and_refuses_overlaps() {
        let d = tempfile::tempdir().unwrap();
        let pods = &d.path().join("pods");
        let ids = d.path().join("subid");
        std::fs::write(&ids, "kubelet:131072:655360\n").unwrap();
        let load = || UserNamespaces::load_with(pods, [&ids, &ids], B, 10);
        // Writes its files, and a second manager (a restarted kubelet)
        // knows them.
        let a = load().unwrap();
        let m1 = a.get_or_create("u1").unwrap();
        let m2 = a.get_or_create("u2").unwrap();
        assert_eq!((m1.host_id, m2.host_id), (2 * B, 3 * B));
        let text = std::fs::read(pods.join("u1").join(MAPPINGS_FILE)).unwrap();
        assert_eq!(parse_file(&text).unwrap(), m1);
        let b = load().unwrap();
        assert_eq!(b.get("u1"), Some(m1));
        assert_eq!(b.get_or_create("u3").unwrap().host_id, 4 * B);
        b.release("u1");
        assert!(!pods.join("u1").join(MAPPINGS_FILE).exists());
        b.release_unknown(|p| p == "u2");
        assert_eq!((b.get("u2"), b.get("u3")), (Some(m2), None));
        // A copy of u2's file for another pod: the two overlap.
        std::fs::create_dir(pods.join("u9")).unwrap();
        std::fs::write(pods.join("u9").join(MAPPINGS_FILE), file_text(m2)).unwrap();
        let e = load().err().unwrap().to_string();
        assert!(e.contains("overlap the block of pod"), "{e}");
        std::fs::write(pods.join("u9").join(MAPPINGS_FILE), "nonsense").unwrap();
        let e = load().err().unwrap().to_string();
        assert!(e.contains("u9/userns"), "{e}");
        // Subordinate id files that disagree stop the start.
        let other = d.path().join("subgid");
        std::fs::write(&other, "kubelet:196608:655360\n").unwrap();
        let e = UserNamespaces::load_with(pods, [&ids, &other], B, 10)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("must be the same"), "{e}");
    }
}
