//! Validated domain types: what the rest of the runtime works on. Built once
//! by `config::validate`; every value here has been checked.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;

use super::spec::{ConsoleSize, Hooks, IdMapping, Resources};
use crate::seccomp::Profile;

/// A whole validated bundle configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    pub root: RootConfig,
    pub process: ProcessConfig,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountConfig>,
    pub linux: LinuxConfig,
    pub hooks: Hooks,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct RootConfig {
    /// Absolute, canonical path of the rootfs on the host.
    pub path: PathBuf,
    pub readonly: bool,
    /// Propagation applied recursively to `/` in the new mount namespace.
    pub propagation: u64,
}

#[derive(Debug, Clone)]
pub struct LinuxConfig {
    pub namespaces: Namespaces,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    /// (clock name, seconds, nanoseconds) for /proc/self/timens_offsets.
    pub time_offsets: Vec<(String, i64, u32)>,
    pub devices: Vec<DeviceNode>,
    pub cgroups_path: Option<String>,
    pub resources: Resources,
    pub sysctl: Vec<(String, String)>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<Profile>,
    /// personality(2) domain (PER_LINUX or PER_LINUX32).
    pub personality: Option<u64>,
}

/// The process to run (from `process` in config.json, or `exec --process`).
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// Absolute path inside the container.
    pub cwd: String,
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
    pub user: UserConfig,
    /// None: keep the capabilities the process has (all of root's).
    pub caps: Option<CapSets>,
    pub rlimits: Vec<RlimitConfig>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    /// ioprio_set(2) value (class << 13 | priority).
    pub io_priority: Option<u32>,
    /// sched_setattr(2) attributes.
    pub scheduler: Option<SchedAttr>,
    /// AppArmor profile the process changes to at exec.
    pub apparmor_profile: Option<String>,
    /// SELinux context for the process (`process.selinuxLabel`).
    pub selinux_label: Option<String>,
}

/// `struct sched_attr` fields (linux/sched/types.h), already validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

impl ProcessConfig {
    /// The PATH the process's environment names, or the default one.
    pub fn path_var(&self) -> &str {
        self.env
            .iter()
            .find_map(|e| e.to_str().ok()?.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    }
}

#[derive(Debug, Clone, Default)]
pub struct UserConfig {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
}

/// Capability sets as bit masks (bit n = capability number n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct RlimitConfig {
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NsKind {
    User,
    Cgroup,
    Ipc,
    Uts,
    Net,
    Pid,
    Mount,
    Time,
}

impl NsKind {
    pub const ALL: [NsKind; 8] = [
        NsKind::User,
        NsKind::Cgroup,
        NsKind::Ipc,
        NsKind::Uts,
        NsKind::Net,
        NsKind::Pid,
        NsKind::Mount,
        NsKind::Time,
    ];

    /// The name config.json uses.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pid" => Self::Pid,
            "network" => Self::Net,
            "mount" => Self::Mount,
            "ipc" => Self::Ipc,
            "uts" => Self::Uts,
            "user" => Self::User,
            "cgroup" => Self::Cgroup,
            "time" => Self::Time,
            _ => return None,
        })
    }

    pub fn spec_name(self) -> &'static str {
        match self {
            Self::Pid => "pid",
            Self::Net => "network",
            Self::Mount => "mount",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::Time => "time",
        }
    }

    /// The name under /proc/<pid>/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::Pid => "pid",
            Self::Net => "net",
            Self::Mount => "mnt",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::Time => "time",
        }
    }

    pub fn clone_flag(self) -> u64 {
        (match self {
            Self::Pid => libc::CLONE_NEWPID,
            Self::Net => libc::CLONE_NEWNET,
            Self::Mount => libc::CLONE_NEWNS,
            Self::Ipc => libc::CLONE_NEWIPC,
            Self::Uts => libc::CLONE_NEWUTS,
            Self::User => libc::CLONE_NEWUSER,
            Self::Cgroup => libc::CLONE_NEWCGROUP,
            Self::Time => 0x80, // CLONE_NEWTIME
        }) as u64
    }
}

/// Which namespaces the container gets: new ones, and existing ones joined by
/// path. A kind appears at most once in either list.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    pub new: Vec<NsKind>,
    pub join: Vec<(NsKind, PathBuf)>,
}

impl Namespaces {
    pub fn is_new(&self, k: NsKind) -> bool {
        self.new.contains(&k)
    }
    pub fn is_joined(&self, k: NsKind) -> bool {
        self.join.iter().any(|(j, _)| *j == k)
    }
    /// Private namespace of this kind, new or joined.
    pub fn has(&self, k: NsKind) -> bool {
        self.is_new(k) || self.is_joined(k)
    }
}

/// One entry of `mounts`, with options split into flags and data.
#[derive(Debug, Clone)]
pub struct MountConfig {
    /// Index in `mounts`, for error messages.
    pub index: usize,
    /// Absolute path inside the container.
    pub destination: String,
    pub kind: MountKind,
    /// MS_* flags for mount(2) (without propagation flags).
    pub flags: u64,
    /// MS_SHARED/MS_SLAVE/... (possibly | MS_REC), applied in order after mounting.
    pub propagation: Vec<u64>,
    /// Comma-joined options the kernel gets as data.
    pub data: String,
    /// Recursive attributes for mount_setattr(2): (set, clear).
    pub attr_set: u64,
    pub attr_clr: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// Bind mount of a host path (absolute), idmapped when `idmap` is set.
    Bind {
        source: PathBuf,
        recursive: bool,
        idmap: Option<Idmap>,
    },
    /// `cgroup`/`cgroup2`: the container's own cgroups.
    Cgroup,
    /// Any other file system (proc, sysfs, tmpfs, devpts, mqueue, ...).
    Fs { fstype: String, source: String },
}

/// An idmapped bind mount: the ids of the source file system are shown
/// through a user namespace's mappings (MOUNT_ATTR_IDMAP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idmap {
    pub users: IdmapUsers,
    /// `ridmap`: submounts are idmapped too.
    pub recursive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdmapUsers {
    /// The mount's own `uidMappings`/`gidMappings`, or the container's.
    Maps {
        uid: Vec<super::spec::IdMapping>,
        gid: Vec<super::spec::IdMapping>,
    },
    /// The user namespace the container joins.
    Joined(PathBuf),
}

#[derive(Debug, Clone)]
pub struct DeviceNode {
    /// Absolute path inside the container.
    pub path: String,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}
