//! The OCI runtime spec (config.json) of a CRI container: the CRI config
//! merged with the image's config, placed in its pod's namespaces.
//!
//! Pure: everything it needs is passed in (the resolved user, the
//! namespace paths, the device numbers), so it is tested without root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_images::config::RunConfig;
use berth_runtime::config::spec::{
    Capabilities, Cpu, Device as OciDevice, DeviceCgroup, HugepageLimit, Linux, Memory,
    Mount as OciMount, Namespace, Process, Resources as OciResources, Root, Spec, User,
};
use berth_runtime::config::tables::{CAPABILITIES, capability};

use super::model::{ContainerSpec, Propagation, Resources, SeccompMode};
use super::seccomp;
use super::user::Resolved;
use crate::sandbox::model::{NsMode, Sandbox};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command: the request has none and the image has no entrypoint or cmd")]
    NoCommand,
    #[error("capability {0:?} is not known")]
    BadCapability(String),
    #[error(transparent)]
    Seccomp(#[from] seccomp::ProfileError),
    #[error("namespace {kind}: {why}")]
    Namespace { kind: &'static str, why: String },
}

/// The capabilities a container gets unless it asks otherwise (the set
/// Docker and containerd give).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

pub const DEFAULT_MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const DEFAULT_READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A host device as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub container_path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub permissions: String,
}

/// Everything the spec is built from.
pub struct Input<'a> {
    pub id: &'a str,
    pub spec: &'a ContainerSpec,
    pub sandbox: &'a Sandbox,
    pub image: &'a RunConfig,
    pub image_name: &'a str,
    pub user: &'a Resolved,
    pub rootfs: &'a Path,
    pub cgroup_path: &'a str,
    /// The pid namespace to join (the pod's pause, or a target container's).
    pub pid_ns: Option<PathBuf>,
    /// Devices of the request (and, for a privileged container, the host's).
    pub devices: Vec<HostDevice>,
    /// The lowest oom_score_adj this process may set (berthd's own).
    pub oom_floor: i64,
    /// Whether the host runs cgroup v2 only (a cgroup namespace then).
    pub cgroup_v2: bool,
    /// The capabilities berthd holds: what "all" means.
    pub all_caps: Vec<String>,
    /// The AppArmor profile, resolved against the host.
    pub apparmor: Option<String>,
}

/// The process's argv: the request's command and args, else the image's
/// entrypoint with the request's args or the image's cmd.
pub fn argv(spec: &ContainerSpec, image: &RunConfig) -> Result<Vec<String>, SpecError> {
    let mut argv = if !spec.command.is_empty() {
        spec.command.clone()
    } else {
        image.entrypoint.clone()
    };
    if !spec.args.is_empty() {
        argv.extend(spec.args.iter().cloned());
    } else if spec.command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    }
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// Image env, then the request's (same keys replaced), PATH if missing,
/// `TERM=xterm` for a tty if missing.
pub fn env(spec: &ContainerSpec, image: &RunConfig, hostname: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(ok, _)| ok == k) {
        Some(e) => e.1 = v.to_owned(),
        None => out.push((k.to_owned(), v.to_owned())),
    };
    if !hostname.is_empty() {
        set("HOSTNAME", hostname);
    }
    for kv in &image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    for (k, v) in &spec.envs {
        set(k, v);
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    // A terminal needs a type to be usable (containerd sets the same).
    if spec.tty && !out.iter().any(|(k, _)| k == "TERM") {
        out.push(("TERM".into(), "xterm".into()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn cap_name(c: &str) -> Result<String, SpecError> {
    capability(c)
        .map(|n| CAPABILITIES[n as usize].to_owned())
        .ok_or_else(|| SpecError::BadCapability(c.to_owned()))
}

/// The capability set: the defaults (all for privileged), `ALL` in add or
/// drop first, then the named ones. "All" is `all`: what berthd itself
/// holds (as containerd does), since a runtime cannot grant more.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    all: &[String],
) -> Result<Vec<String>, SpecError> {
    let all = || all.to_vec();
    if privileged {
        return Ok(all());
    }
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| (*c).to_owned()).collect();
    if add.iter().any(is_all) {
        caps = all();
    }
    if drop.iter().any(is_all) {
        caps.clear();
    }
    for c in add.iter().filter(|c| !is_all(c)) {
        let c = cap_name(c)?;
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    for c in drop.iter().filter(|c| !is_all(c)) {
        let c = cap_name(c)?;
        caps.retain(|x| *x != c);
    }
    Ok(caps)
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> OciMount {
    OciMount {
        destination: dest.into(),
        kind: Some(kind.into()),
        source: Some(source.into()),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        ..Default::default()
    }
}

fn bind(
    dest: &str,
    source: &Path,
    readonly: bool,
    rro: bool,
    propagation: Propagation,
) -> OciMount {
    let mut options = vec!["rbind".to_owned()];
    options.push(
        match propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => "rslave",
            Propagation::Bidirectional => "rshared",
        }
        .into(),
    );
    options.push(if readonly { "ro" } else { "rw" }.into());
    if rro {
        options.push("rro".into());
    }
    OciMount {
        destination: dest.into(),
        kind: Some("bind".into()),
        source: Some(source.display().to_string()),
        options,
        ..Default::default()
    }
}

/// Make the mount points of `mounts` that `rootfs` lacks (a file for a bind
/// of a file, else a folder), resolved inside the rootfs (symlinks cannot
/// lead out). For pods in a user namespace, whose root may not write the
/// image's folders.
pub fn make_mount_points(
    rootfs: &Path,
    mounts: &[OciMount],
) -> Result<(), berth_runtime::rootfs::resolve::ResolveError> {
    use berth_runtime::rootfs::resolve::{Leaf, ResolveError, ensure};
    let root = std::fs::File::open(rootfs).map_err(|source| ResolveError::Io {
        path: rootfs.display().to_string(),
        what: "open the rootfs",
        source,
    })?;
    for m in mounts {
        // The runtime's own file systems make these below themselves.
        let under = |p: &str| m.destination == p || m.destination.starts_with(&format!("{p}/"));
        if under("/proc") || under("/sys") || under("/dev") {
            continue;
        }
        let bind = m.kind.as_deref() == Some("bind")
            || m.options.iter().any(|o| o == "bind" || o == "rbind");
        let leaf = match &m.source {
            Some(s) if bind && Path::new(s).is_file() => Leaf::File,
            _ => Leaf::Dir,
        };
        ensure(std::os::fd::AsFd::as_fd(&root), &m.destination, leaf)?;
    }
    Ok(())
}

fn ns(kind: &str, path: Option<&Path>) -> Namespace {
    Namespace {
        kind: kind.into(),
        path: path.map(|p| p.display().to_string()),
    }
}

fn namespaces(input: &Input) -> Result<Vec<Namespace>, SpecError> {
    let sec = &input.spec.security;
    let sb = input.sandbox;
    let mut out = vec![ns("mount", None)];
    // First: the runtime joins it before the namespaces it owns.
    if let Some(p) = &sb.userns {
        out.insert(0, ns("user", Some(p)));
    }
    match sec.pid {
        NsMode::Node => {}
        NsMode::Container => out.push(ns("pid", None)),
        NsMode::Pod | NsMode::Target => match &input.pid_ns {
            Some(p) => out.push(ns("pid", Some(p))),
            None => {
                return Err(SpecError::Namespace {
                    kind: "pid",
                    why: "the pod's (or target's) pid namespace is not known".into(),
                });
            }
        },
    }
    if sb.spec.network != NsMode::Node {
        let netns = sb.netns.as_deref().ok_or_else(|| SpecError::Namespace {
            kind: "network",
            why: format!("sandbox {} has no network namespace (stopped?)", sb.id),
        })?;
        out.push(ns("network", Some(netns)));
    }
    match (&sb.ipcns, sb.spec.ipc) {
        (_, NsMode::Node) => {}
        (Some(p), _) => out.push(ns("ipc", Some(p))),
        (None, _) => out.push(ns("ipc", None)),
    }
    if let Some(p) = &sb.utsns {
        out.push(ns("uts", Some(p)));
    }
    if input.cgroup_v2 {
        out.push(ns("cgroup", None));
    }
    Ok(out)
}

fn mounts(input: &Input) -> Vec<OciMount> {
    let spec = input.spec;
    let privileged = spec.security.privileged;
    let wanted = |dest: &str| !spec.mounts.iter().any(|m| m.container_path == dest);
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if privileged { "rw" } else { "ro" },
            ],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                if privileged { "rw" } else { "ro" },
            ],
        ),
    ];
    if wanted("/dev/shm") {
        out.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ));
    }
    let files = &input.sandbox.files_dir;
    for (dest, file) in [
        ("/etc/hostname", "hostname"),
        ("/etc/hosts", "hosts"),
        ("/etc/resolv.conf", "resolv.conf"),
    ] {
        let src = files.join(file);
        if wanted(dest) && src.exists() {
            out.push(bind(
                dest,
                &src,
                spec.security.readonly_rootfs,
                false,
                Propagation::Private,
            ));
        }
    }
    // Mounts apply in order: a CRI mount under another wins by coming later.
    let mut cri: Vec<_> = spec.mounts.iter().collect();
    cri.sort_by_key(|m| Path::new(&m.container_path).components().count());
    for m in cri {
        out.push(bind(
            &m.container_path,
            &m.host_path,
            m.readonly,
            m.recursive_readonly,
            m.propagation,
        ));
    }
    out
}

/// The OCI cgroup resources (no device rules) of CRI resources: at
/// creation, and for `UpdateContainerResources`.
pub fn cgroup_resources(r: &Resources) -> OciResources {
    let pos = |v: i64| (v > 0).then_some(v);
    let mut out = OciResources::default();
    let cpu = Cpu {
        shares: pos(r.cpu_shares).map(|v| v as u64),
        quota: pos(r.cpu_quota),
        period: pos(r.cpu_period).map(|v| v as u64),
        cpus: (!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()),
        mems: (!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()),
        ..Default::default()
    };
    if cpu != Cpu::default() {
        out.cpu = Some(cpu);
    }
    if r.memory_limit > 0 {
        out.memory = Some(Memory {
            limit: Some(r.memory_limit),
            swap: pos(r.memory_swap_limit),
            ..Default::default()
        });
    }
    // As containerd: a kubelet sends hugetlb limits for every page size the
    // node has; without the hugetlb controller they cannot be set and the
    // OCI runtime (runc, berth-runc) would refuse the container.
    out.hugepage_limits = r
        .hugepages
        .iter()
        .filter(|_| hugetlb_controller())
        .map(|(page_size, limit)| HugepageLimit {
            page_size: page_size.clone(),
            limit: *limit,
        })
        .collect();
    out.unified = r.unified.clone();
    out
}

/// Whether this host has the hugetlb cgroup controller: a v1 hierarchy
/// with it, or a v2 root that lists it. Read once.
pub fn hugetlb_controller() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let v1 = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
            t.lines().any(|l| {
                l.split_once(" - ").is_some_and(|(_, tail)| {
                    let f: Vec<&str> = tail.split(' ').collect();
                    f.first() == Some(&"cgroup")
                        && f.get(2)
                            .is_some_and(|o| o.split(',').any(|x| x == "hugetlb"))
                })
            })
        });
        v1 || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|t| t.split_whitespace().any(|c| c == "hugetlb"))
    })
}

fn resources(input: &Input) -> OciResources {
    let mut out = cgroup_resources(&input.spec.resources);
    // Deny every device, then allow the defaults the runtime creates and
    // the requested ones.
    out.devices.push(DeviceCgroup {
        allow: input.spec.security.privileged,
        access: Some("rwm".into()),
        ..Default::default()
    });
    for d in &input.devices {
        out.devices.push(DeviceCgroup {
            allow: true,
            kind: Some(d.kind.to_string()),
            major: Some(d.major),
            minor: Some(d.minor),
            access: Some(d.permissions.clone()),
        });
    }
    out
}

/// Build the container's config.json.
pub fn build(input: &Input) -> Result<Spec, SpecError> {
    let spec = input.spec;
    let sec = &spec.security;
    let caps = capabilities(
        sec.privileged,
        &sec.add_caps,
        &sec.drop_caps,
        &input.all_caps,
    )?;
    let seccomp = if sec.privileged {
        None
    } else {
        match &sec.seccomp {
            SeccompMode::Unconfined => None,
            SeccompMode::RuntimeDefault => Some(seccomp::runtime_default(&caps)),
            SeccompMode::Localhost(p) => Some(seccomp::localhost_with_caps(p, &caps)?),
        }
    };
    let hostname = if input.sandbox.spec.network == NsMode::Node {
        String::new()
    } else {
        crate::sandbox::files::hostname(&input.sandbox.spec)
    };
    let cwd = [spec.working_dir.as_str(), input.image.working_dir.as_str()]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or("/")
        .to_owned();
    let process = Process {
        // The runtime makes the pty and sends its master to the monitor
        // (`--console-socket`).
        terminal: spec.tty,
        user: User {
            uid: input.user.uid,
            gid: input.user.gid,
            umask: None,
            additional_gids: input.user.additional_gids.clone(),
        },
        args: argv(spec, input.image)?,
        env: env(spec, input.image, &hostname),
        cwd,
        capabilities: Some(Capabilities {
            bounding: caps.clone(),
            effective: caps.clone(),
            permitted: caps,
            ..Default::default()
        }),
        no_new_privileges: sec.no_new_privs,
        apparmor_profile: input.apparmor.clone(),
        oom_score_adj: (spec.resources.oom_score_adj != 0 || input.oom_floor > 0).then(|| {
            spec.resources
                .oom_score_adj
                .max(input.oom_floor)
                .clamp(-1000, 1000) as i32
        }),
        ..Default::default()
    };
    // Both lists empty in a pod user namespace: the kubelet's procMount
    // Unmasked (it sends its defaults otherwise, and the API allows
    // Unmasked only with hostUsers: false), which containerd and CRI-O read
    // as nothing masked. Elsewhere an empty list gets berthd's defaults, so
    // a client that sends none (crictl) still gets a masked /proc.
    let unmasked = input.sandbox.userns.is_some()
        && sec.masked_paths.is_none()
        && sec.readonly_paths.is_none();
    let (masked, readonly) = if sec.privileged || unmasked {
        (Vec::new(), Vec::new())
    } else {
        let or_default = |v: &Option<Vec<String>>, d: &[&str]| {
            v.clone()
                .unwrap_or_else(|| d.iter().map(|s| (*s).to_owned()).collect())
        };
        (
            or_default(&sec.masked_paths, &DEFAULT_MASKED),
            or_default(&sec.readonly_paths, &DEFAULT_READONLY),
        )
    };
    let devices = input
        .devices
        .iter()
        .map(|d| OciDevice {
            kind: d.kind.to_string(),
            path: d.container_path.clone(),
            major: d.major,
            minor: d.minor,
            file_mode: Some(d.mode & 0o7777),
            uid: Some(0),
            gid: Some(0),
        })
        .collect();
    let mut annotations: BTreeMap<String, String> = spec.annotations.clone();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", spec.meta.name.as_str()),
        ("io.kubernetes.cri.sandbox-id", input.sandbox.id.as_str()),
        (
            "io.kubernetes.cri.sandbox-name",
            input.sandbox.spec.meta.name.as_str(),
        ),
        (
            "io.kubernetes.cri.sandbox-namespace",
            input.sandbox.spec.meta.namespace.as_str(),
        ),
        (
            "io.kubernetes.cri.sandbox-uid",
            input.sandbox.spec.meta.uid.as_str(),
        ),
        ("io.kubernetes.cri.image-name", input.image_name),
    ] {
        annotations.insert(k.into(), v.into());
    }
    Ok(Spec {
        oci_version: berth_runtime::OCI_VERSION.into(),
        process: Some(process),
        root: Some(Root {
            path: input.rootfs.display().to_string(),
            readonly: sec.readonly_rootfs,
        }),
        hostname: None,
        domainname: None,
        mounts: mounts(input),
        hooks: None,
        annotations,
        linux: Some(Linux {
            namespaces: namespaces(input)?,
            devices,
            cgroups_path: Some(input.cgroup_path.to_owned()),
            resources: Some(resources(input)),
            // A bidirectional mount needs the container's root shared, or
            // its mounts cannot travel back to the host (as containerd).
            rootfs_propagation: Some(
                if spec
                    .mounts
                    .iter()
                    .any(|m| m.propagation == Propagation::Bidirectional)
                {
                    "rshared"
                } else {
                    "rslave"
                }
                .into(),
            ),
            seccomp,
            sysctl: input.sandbox.spec.sysctls.clone(),
            masked_paths: masked,
            readonly_paths: readonly,
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::model::{ContainerMeta, Mount, Resources, Security};

    fn cspec() -> ContainerSpec {
        ContainerSpec {
            meta: ContainerMeta {
                name: "c".into(),
                attempt: 0,
            },
            image: "busybox".into(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            envs: vec![("A".into(), "from-cri".into())],
            mounts: vec![],
            devices: vec![],
            labels: Default::default(),
            annotations: Default::default(),
            log_path: String::new(),
            stdin: false,
            stdin_once: false,
            tty: false,
            resources: Resources::default(),
            security: Security {
                pid: NsMode::Container,
                ..Default::default()
            },
        }
    }

    fn image() -> RunConfig {
        RunConfig {
            env: vec!["A=img".into(), "B=img".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            working_dir: "/work".into(),
            ..Default::default()
        }
    }

    #[test]
    fn argv_merges_like_docker() {
        let mut s = cspec();
        assert_eq!(argv(&s, &image()).unwrap(), ["/entry", "default"]);
        s.args = vec!["x".into()];
        assert_eq!(argv(&s, &image()).unwrap(), ["/entry", "x"]);
        s.command = vec!["/bin/sh".into()];
        assert_eq!(argv(&s, &image()).unwrap(), ["/bin/sh", "x"]);
        s.args.clear();
        assert_eq!(argv(&s, &image()).unwrap(), ["/bin/sh"]);
        assert!(matches!(
            argv(&cspec(), &RunConfig::default()),
            Err(SpecError::NoCommand)
        ));
    }

    #[test]
    fn env_lets_the_request_win_and_adds_path() {
        let e = env(&cspec(), &image(), "pod");
        assert_eq!(e[0], format!("PATH={DEFAULT_PATH}"));
        assert!(e.contains(&"A=from-cri".to_owned()));
        assert!(e.contains(&"B=img".to_owned()));
        assert!(e.contains(&"HOSTNAME=pod".to_owned()));
    }

    #[test]
    fn capabilities_follow_add_and_drop() {
        let every: Vec<String> = CAPABILITIES.iter().map(|c| (*c).to_owned()).collect();
        let capabilities = |p, a: &[String], d: &[String]| capabilities(p, a, d, &every);
        let c = capabilities(false, &[], &[]).unwrap();
        assert_eq!(c.len(), DEFAULT_CAPS.len());
        let c = capabilities(false, &["sys_admin".into()], &["KILL".into()]).unwrap();
        assert!(c.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(!c.contains(&"CAP_KILL".to_owned()));
        let c = capabilities(false, &["NET_ADMIN".into()], &["ALL".into()]).unwrap();
        assert_eq!(c, ["CAP_NET_ADMIN"]);
        assert_eq!(capabilities(false, &["ALL".into()], &[]).unwrap().len(), 41);
        assert_eq!(capabilities(true, &[], &["ALL".into()]).unwrap().len(), 41);
        assert!(matches!(
            capabilities(false, &["CAP_FLY".into()], &[]),
            Err(SpecError::BadCapability(_))
        ));
    }

    #[test]
    fn cri_mounts_come_after_their_parents_with_their_propagation() {
        let mut s = cspec();
        s.mounts = vec![
            Mount {
                container_path: "/data/sub".into(),
                host_path: "/tmp/b".into(),
                readonly: true,
                propagation: Propagation::HostToContainer,
                recursive_readonly: false,
            },
            Mount {
                container_path: "/data".into(),
                host_path: "/tmp/a".into(),
                readonly: false,
                propagation: Propagation::Private,
                recursive_readonly: false,
            },
        ];
        let sb: Sandbox = serde_json::from_value(serde_json::json!({
            "id": "sb", "created_at": 0, "state": "Ready",
            "netns": "/run/x/net", "ipcns": null, "utsns": null, "ips": [],
            "files_dir": "/nonexistent", "network_attached": true,
            "spec": {"meta": {"name": "p", "uid": "u", "namespace": "n", "attempt": 0},
                "hostname": "", "log_directory": "", "dns": null, "port_mappings": [],
                "labels": {}, "annotations": {}, "cgroup_parent": "", "sysctls": {},
                "network": "pod", "pid": "container", "ipc": "container", "runtime_handler": ""}
        }))
        .unwrap();
        let user = Resolved {
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            name: None,
        };
        let img = image();
        let input = Input {
            id: "c1",
            spec: &s,
            sandbox: &sb,
            image: &img,
            image_name: "busybox",
            user: &user,
            rootfs: Path::new("/r"),
            cgroup_path: "/berth/c1",
            pid_ns: None,
            devices: vec![],
            oom_floor: 0,
            cgroup_v2: false,
            all_caps: vec![],
            apparmor: None,
        };
        let spec = build(&input).unwrap();
        let dests: Vec<_> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
        let data = dests.iter().position(|d| *d == "/data").unwrap();
        let sub = dests.iter().position(|d| *d == "/data/sub").unwrap();
        assert!(data < sub, "{dests:?}");
        assert_eq!(spec.mounts[sub].options, ["rbind", "rslave", "ro"]);
        let linux = spec.linux.unwrap();
        let kinds: Vec<_> = linux
            .namespaces
            .iter()
            .map(|n| (n.kind.as_str(), n.path.as_deref()))
            .collect();
        assert!(kinds.contains(&("network", Some("/run/x/net"))));
        assert!(kinds.contains(&("pid", None)));
        assert_eq!(linux.masked_paths.len(), DEFAULT_MASKED.len());
        assert_eq!(spec.process.unwrap().cwd, "/work");
        // In a pod user namespace, no lists at all is procMount Unmasked.
        let mut in_userns = sb.clone();
        in_userns.userns = Some("/run/x/user".into());
        let linux = build(&Input {
            sandbox: &in_userns,
            ..input
        })
        .unwrap()
        .linux
        .unwrap();
        assert!(linux.masked_paths.is_empty() && linux.readonly_paths.is_empty());
    }
}
