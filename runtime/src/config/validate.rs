//! config.json -> `Config`, checking every value once. Errors name the field
//! the way a JSON path would (`linux.namespaces[2].type`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::model::*;
use super::spec::{self, Spec};
use super::tables::{self, MountOpt};

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: "config.json".into(),
        field: field.into(),
        msg: msg.into(),
    }
}

fn cstring(field: &str, s: &str) -> Result<CString, ConfigError> {
    CString::new(s).map_err(|_| invalid(field, "contains a NUL byte"))
}

/// Normalise an absolute container path lexically ("/a/./b//c/" -> "/a/b/c");
/// `..` is kept for the in-root resolver to clamp.
fn container_path(field: &str, p: &str) -> Result<String, ConfigError> {
    if p.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if p.contains('\0') {
        return Err(invalid(field, "contains a NUL byte"));
    }
    let mut out = String::with_capacity(p.len() + 1);
    for c in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

pub fn validate(bundle: &Path, s: &Spec) -> Result<Config, ConfigError> {
    let bundle = std::path::absolute(bundle).map_err(|e| invalid("bundle", e.to_string()))?;
    let linux = s.linux.clone().unwrap_or_default();

    let root = s.root.as_ref().ok_or_else(|| invalid("root", "missing"))?;
    if root.path.is_empty() {
        return Err(invalid("root.path", "must not be empty"));
    }
    let rootfs = bundle.join(&root.path);
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| invalid("root.path", format!("{}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(invalid(
            "root.path",
            format!("{}: not a directory", rootfs.display()),
        ));
    }
    let propagation = match linux.rootfs_propagation.as_deref().unwrap_or("") {
        "" | "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        other => {
            return Err(invalid(
                "linux.rootfsPropagation",
                format!("unknown propagation {other:?}"),
            ));
        }
    };

    let namespaces = namespaces(&linux.namespaces)?;
    let process = match &s.process {
        Some(p) => validate_process("process", p, "config.json")?,
        None => return Err(invalid("process", "missing")),
    };
    if process.args.is_empty() {
        return Err(invalid("process.args", "must not be empty"));
    }

    if namespaces.is_new(NsKind::User) {
        if linux.uid_mappings.is_empty() {
            return Err(invalid(
                "linux.uidMappings",
                "required with a new user namespace",
            ));
        }
        if linux.gid_mappings.is_empty() {
            return Err(invalid(
                "linux.gidMappings",
                "required with a new user namespace",
            ));
        }
    } else if !linux.uid_mappings.is_empty() || !linux.gid_mappings.is_empty() {
        return Err(invalid(
            "linux.uidMappings",
            "id mappings need a new user namespace in linux.namespaces",
        ));
    }
    let mut time_offsets = Vec::new();
    for (clock, off) in &linux.time_offsets {
        if clock != "monotonic" && clock != "boottime" {
            return Err(invalid(
                format!("linux.timeOffsets.{clock}"),
                "unknown clock (monotonic or boottime)",
            ));
        }
        if !namespaces.is_new(NsKind::Time) {
            return Err(invalid(
                format!("linux.timeOffsets.{clock}"),
                "needs a new time namespace",
            ));
        }
        time_offsets.push((clock.clone(), off.secs, off.nanosecs));
    }

    if s.hostname.as_deref().is_some_and(|h| !h.is_empty()) && !namespaces.has(NsKind::Uts) {
        return Err(invalid("hostname", "needs a private uts namespace"));
    }
    if s.domainname.as_deref().is_some_and(|h| !h.is_empty()) && !namespaces.has(NsKind::Uts) {
        return Err(invalid("domainname", "needs a private uts namespace"));
    }

    // What an `idmap` option without mappings of its own maps through.
    let container_users =
        if let Some((_, p)) = namespaces.join.iter().find(|(k, _)| *k == NsKind::User) {
            Some(IdmapUsers::Joined(p.clone()))
        } else if namespaces.is_new(NsKind::User) {
            Some(IdmapUsers::Maps {
                uid: linux.uid_mappings.clone(),
                gid: linux.gid_mappings.clone(),
            })
        } else {
            None
        };
    let mount_label = match linux.mount_label.as_deref() {
        None | Some("") => None,
        Some(l) => selinux_label("linux.mountLabel", l).map_err(|(f, m)| invalid(f, m))?,
    };
    let mut mounts = Vec::with_capacity(s.mounts.len());
    for (i, m) in s.mounts.iter().enumerate() {
        mounts.push(mount(
            &bundle,
            i,
            m,
            &container_users,
            mount_label.as_deref(),
        )?);
    }
    if !namespaces.is_new(NsKind::Mount) {
        return Err(invalid(
            "linux.namespaces",
            "a new mount namespace is required",
        ));
    }
    check_destinations(&rootfs, &mounts)?;

    let mut devices = Vec::with_capacity(linux.devices.len());
    for (i, d) in linux.devices.iter().enumerate() {
        devices.push(device(i, d)?);
    }

    let resources = linux.resources.clone().unwrap_or_default();
    for (i, h) in resources.hugepage_limits.iter().enumerate() {
        if h.page_size.is_empty() || !h.page_size.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                format!("linux.resources.hugepageLimits[{i}].pageSize"),
                format!("invalid page size {:?}", h.page_size),
            ));
        }
    }
    for k in resources.unified.keys() {
        if k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(invalid(
                format!("linux.resources.unified.{k}"),
                "not a cgroup file name",
            ));
        }
    }
    if let Some(p) = &linux.cgroups_path
        && p.split('/').any(|c| c == "..")
    {
        return Err(invalid("linux.cgroupsPath", "must not contain \"..\""));
    }

    let sysctl = sysctls(&linux.sysctl, &namespaces)?;
    let mut masked_paths = Vec::new();
    for (i, p) in linux.masked_paths.iter().enumerate() {
        masked_paths.push(container_path(&format!("linux.maskedPaths[{i}]"), p)?);
    }
    let mut readonly_paths = Vec::new();
    for (i, p) in linux.readonly_paths.iter().enumerate() {
        readonly_paths.push(container_path(&format!("linux.readonlyPaths[{i}]"), p)?);
    }
    let seccomp = match &linux.seccomp {
        Some(sc) => Some(crate::seccomp::validate(sc).map_err(|(f, m)| invalid(f, m))?),
        None => None,
    };
    let personality = match &linux.personality {
        None => None,
        Some(per) => {
            if !per.flags.is_empty() {
                return Err(invalid(
                    "linux.personality.flags",
                    "personality flags are not supported by berth-runc yet",
                ));
            }
            Some(match per.domain.as_str() {
                "LINUX" => 0u64,
                "LINUX32" => 0x0008,
                d => {
                    return Err(invalid(
                        "linux.personality.domain",
                        format!("unknown domain {d:?}"),
                    ));
                }
            })
        }
    };
    if linux.intel_rdt.is_some() {
        return Err(invalid("linux.intelRdt", "not supported by berth-runc"));
    }
    let hooks = s.hooks.clone().unwrap_or_default();
    for (name, list) in [
        ("prestart", &hooks.prestart),
        ("createRuntime", &hooks.create_runtime),
        ("createContainer", &hooks.create_container),
        ("startContainer", &hooks.start_container),
        ("poststart", &hooks.poststart),
        ("poststop", &hooks.poststop),
    ] {
        for (i, h) in list.iter().enumerate() {
            if !h.path.starts_with('/') {
                return Err(invalid(
                    format!("hooks.{name}[{i}].path"),
                    "must be absolute",
                ));
            }
            if h.timeout.is_some_and(|t| t <= 0) {
                return Err(invalid(
                    format!("hooks.{name}[{i}].timeout"),
                    "must be positive",
                ));
            }
        }
    }

    Ok(Config {
        bundle,
        root: RootConfig {
            path: rootfs,
            readonly: root.readonly,
            propagation,
        },
        process,
        hostname: s.hostname.clone().filter(|h| !h.is_empty()),
        domainname: s.domainname.clone().filter(|h| !h.is_empty()),
        mounts,
        linux: LinuxConfig {
            namespaces,
            uid_mappings: linux.uid_mappings.clone(),
            gid_mappings: linux.gid_mappings.clone(),
            time_offsets,
            devices,
            cgroups_path: linux.cgroups_path.clone().filter(|p| !p.is_empty()),
            resources,
            sysctl,
            masked_paths,
            readonly_paths,
            seccomp,
            personality,
        },
        hooks,
        annotations: s.annotations.clone(),
    })
}

/// Refuse mount destinations that climb out of the rootfs through a symlink
/// now, with the field named; init resolves them in-root again (races).
fn check_destinations(rootfs: &Path, mounts: &[MountConfig]) -> Result<(), ConfigError> {
    use std::os::fd::AsFd;
    let root = std::fs::File::open(rootfs)
        .map_err(|e| invalid("root.path", format!("{}: {e}", rootfs.display())))?;
    for m in mounts {
        if let Err(e) = crate::rootfs::resolve::logical_path(root.as_fd(), &m.destination) {
            return Err(invalid(
                format!("mounts[{}].destination", m.index),
                e.to_string(),
            ));
        }
    }
    Ok(())
}

fn namespaces(list: &[spec::Namespace]) -> Result<Namespaces, ConfigError> {
    let mut ns = Namespaces::default();
    for (i, n) in list.iter().enumerate() {
        let field = format!("linux.namespaces[{i}].type");
        let kind = NsKind::parse(&n.kind)
            .ok_or_else(|| invalid(&field, format!("unknown namespace {:?}", n.kind)))?;
        if ns.has(kind) {
            return Err(invalid(
                &field,
                format!("namespace {:?} listed twice", n.kind),
            ));
        }
        match n.path.as_deref().filter(|p| !p.is_empty()) {
            None => ns.new.push(kind),
            Some(p) => {
                let field = format!("linux.namespaces[{i}].path");
                if !p.starts_with('/') {
                    return Err(invalid(field, format!("{p}: must be absolute")));
                }
                std::fs::metadata(p).map_err(|e| invalid(&field, format!("{p}: {e}")))?;
                ns.join.push((kind, PathBuf::from(p)));
            }
        }
    }
    Ok(ns)
}

/// Validate a `process` object (config.json's or `exec --process`'s).
pub fn validate_process(
    at: &str,
    p: &spec::Process,
    file: &str,
) -> Result<ProcessConfig, ConfigError> {
    let inv = |f: String, m: String| ConfigError::Invalid {
        file: file.to_owned(),
        field: f,
        msg: m,
    };
    let mut args = Vec::with_capacity(p.args.len());
    for (i, a) in p.args.iter().enumerate() {
        args.push(cstring(&format!("{at}.args[{i}]"), a)?);
    }
    let mut env = Vec::with_capacity(p.env.len());
    for (i, e) in p.env.iter().enumerate() {
        if !e.contains('=') {
            return Err(inv(
                format!("{at}.env[{i}]"),
                format!("{e:?} is not KEY=VALUE"),
            ));
        }
        env.push(cstring(&format!("{at}.env[{i}]"), e)?);
    }
    let cwd = if p.cwd.is_empty() {
        "/"
    } else {
        p.cwd.as_str()
    };
    if !cwd.starts_with('/') {
        return Err(inv(
            format!("{at}.cwd"),
            format!("{cwd:?} must be an absolute path"),
        ));
    }
    let caps = match &p.capabilities {
        None => None,
        Some(c) => {
            let set = |name: &str, list: &[String]| -> Result<u64, ConfigError> {
                let mut bits = 0u64;
                for (i, n) in list.iter().enumerate() {
                    let cap = tables::capability(n)
                        .filter(|_| n.starts_with("CAP_"))
                        .ok_or_else(|| {
                            inv(
                                format!("{at}.capabilities.{name}[{i}]"),
                                format!("unknown capability {n:?}"),
                            )
                        })?;
                    bits |= 1 << cap;
                }
                Ok(bits)
            };
            Some(CapSets {
                bounding: set("bounding", &c.bounding)?,
                effective: set("effective", &c.effective)?,
                inheritable: set("inheritable", &c.inheritable)?,
                permitted: set("permitted", &c.permitted)?,
                ambient: set("ambient", &c.ambient)?,
            })
        }
    };
    let mut rlimits = Vec::with_capacity(p.rlimits.len());
    let mut seen = BTreeMap::new();
    for (i, r) in p.rlimits.iter().enumerate() {
        let field = format!("{at}.rlimits[{i}].type");
        let resource = tables::rlimit(&r.kind)
            .ok_or_else(|| inv(field.clone(), format!("unknown rlimit {:?}", r.kind)))?;
        if seen.insert(resource, ()).is_some() {
            return Err(inv(field, format!("rlimit {:?} listed twice", r.kind)));
        }
        if r.soft > r.hard {
            return Err(inv(
                format!("{at}.rlimits[{i}].soft"),
                "is greater than hard".into(),
            ));
        }
        rlimits.push(RlimitConfig {
            resource,
            soft: r.soft,
            hard: r.hard,
        });
    }
    if let Some(adj) = p.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(inv(
            format!("{at}.oomScoreAdj"),
            format!("{adj} is outside -1000..1000"),
        ));
    }
    let io_priority = match &p.io_priority {
        None => None,
        Some(io) => {
            let class = match io.class.as_str() {
                "IOPRIO_CLASS_RT" => 1u32,
                "IOPRIO_CLASS_BE" => 2,
                "IOPRIO_CLASS_IDLE" => 3,
                c => {
                    return Err(inv(
                        format!("{at}.ioPriority.class"),
                        format!("unknown class {c:?}"),
                    ));
                }
            };
            if !(0..=7).contains(&io.priority) {
                return Err(inv(
                    format!("{at}.ioPriority.priority"),
                    format!("{} is outside 0..7", io.priority),
                ));
            }
            Some(class << 13 | io.priority as u32)
        }
    };
    let scheduler = p
        .scheduler
        .as_ref()
        .map(|s| scheduler(&format!("{at}.scheduler"), s))
        .transpose()
        .map_err(|(f, m)| inv(f, m))?;
    let apparmor_profile = match p.apparmor_profile.as_deref() {
        None | Some("") => None,
        Some(name) => {
            let f = format!("{at}.apparmorProfile");
            if name.contains(['\0', '\n']) || name.trim() != name {
                return Err(inv(f, format!("{name:?} is not a valid profile name")));
            }
            // Refused rather than run unconfined (what the caller asked
            // for cannot be enforced).
            if !crate::sys::apparmor::enabled() {
                return Err(inv(
                    f,
                    format!("profile {name:?} asked for, but AppArmor is not enabled on this host"),
                ));
            }
            Some(name.to_owned())
        }
    };
    let selinux_label = match p.selinux_label.as_deref() {
        None | Some("") => None,
        Some(l) => selinux_label(&format!("{at}.selinuxLabel"), l).map_err(|(f, m)| inv(f, m))?,
    };
    Ok(ProcessConfig {
        selinux_label,
        args,
        env,
        cwd: container_path(&format!("{at}.cwd"), cwd)?,
        terminal: p.terminal,
        console_size: p.console_size,
        user: UserConfig {
            uid: p.user.uid,
            gid: p.user.gid,
            umask: p.user.umask,
            additional_gids: p.user.additional_gids.clone(),
        },
        caps,
        rlimits,
        no_new_privs: p.no_new_privileges,
        oom_score_adj: p.oom_score_adj,
        io_priority,
        scheduler,
        apparmor_profile,
    })
}

/// An SELinux context from the config: refused when malformed; None (not
/// applied) on a host without SELinux, as runc and crun do: callers set
/// labels whether or not the host enforces them, and the OCI validation
/// suite expects containers with labels to run on such hosts.
pub fn selinux_label(field: &str, l: &str) -> Result<Option<String>, (String, String)> {
    if !crate::sys::selinux::valid_label(l) {
        return Err((
            field.to_owned(),
            format!("{l:?} is not an SELinux context (user:role:type[:level])"),
        ));
    }
    if !crate::sys::selinux::enabled() {
        crate::log::debug(&format!(
            "{field}: SELinux is not enabled on this host, label {l:?} not applied"
        ));
        return Ok(None);
    }
    Ok(Some(l.to_owned()))
}

/// `process.scheduler`, checked as sched_setattr(2) would, with the field
/// that is wrong.
fn scheduler(at: &str, s: &spec::Scheduler) -> Result<SchedAttr, (String, String)> {
    let policy = tables::sched_policy(&s.policy).ok_or_else(|| {
        (
            format!("{at}.policy"),
            format!("unknown policy {:?}", s.policy),
        )
    })?;
    let mut flags = 0;
    for (i, f) in s.flags.iter().enumerate() {
        flags |= tables::sched_flag(f)
            .ok_or_else(|| (format!("{at}.flags[{i}]"), format!("unknown flag {f:?}")))?;
    }
    if !(-20..=19).contains(&s.nice) {
        return Err((
            format!("{at}.nice"),
            format!("{} is outside -20..19", s.nice),
        ));
    }
    let realtime = matches!(s.policy.as_str(), "SCHED_FIFO" | "SCHED_RR");
    if realtime && !(1..=99).contains(&s.priority) {
        return Err((
            format!("{at}.priority"),
            format!("{} is outside 1..99 for {}", s.priority, s.policy),
        ));
    }
    if !realtime && s.priority != 0 {
        return Err((
            format!("{at}.priority"),
            format!(
                "must be 0 for {} (only SCHED_FIFO and SCHED_RR have one)",
                s.policy
            ),
        ));
    }
    if s.policy != "SCHED_DEADLINE" && (s.runtime | s.deadline | s.period) != 0 {
        return Err((
            format!("{at}.runtime"),
            format!(
                "runtime, deadline and period are for SCHED_DEADLINE, not {}",
                s.policy
            ),
        ));
    }
    Ok(SchedAttr {
        policy,
        flags,
        nice: s.nice,
        priority: s.priority as u32,
        runtime: s.runtime,
        deadline: s.deadline,
        period: s.period,
    })
}

fn mount(
    bundle: &Path,
    i: usize,
    m: &spec::Mount,
    container_users: &Option<IdmapUsers>,
    mount_label: Option<&str>,
) -> Result<MountConfig, ConfigError> {
    let destination = container_path(&format!("mounts[{i}].destination"), &m.destination)?;
    let mut flags = 0u64;
    let mut propagation = Vec::new();
    let mut data = Vec::new();
    let (mut attr_set, mut attr_clr) = (0u64, 0u64);
    let mut idmap_opt: Option<(usize, bool)> = None;
    for (j, o) in m.options.iter().enumerate() {
        match tables::mount_option(o) {
            Some(MountOpt::Set(f)) => flags |= f,
            Some(MountOpt::Clear(f)) => flags &= !f,
            Some(MountOpt::Propagation(p)) => propagation.push(p),
            Some(MountOpt::Attr(s, c)) => {
                attr_set = (attr_set & !c) | s;
                attr_clr |= c;
            }
            Some(MountOpt::Idmap { recursive }) => idmap_opt = Some((j, recursive)),
            Some(MountOpt::Ignored) => {}
            None => data.push(o.as_str()),
        }
    }
    let fstype = m.kind.as_deref().unwrap_or("");
    let is_bind = fstype == "bind" || flags & libc::MS_BIND != 0;
    let idmap = idmap_of(i, m, idmap_opt, container_users)?;
    if idmap.is_some() && !is_bind {
        return Err(invalid(
            format!("mounts[{i}].type"),
            "idmapped mounts are bind mounts only",
        ));
    }
    let kind = if is_bind {
        let src = m
            .source
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid(format!("mounts[{i}].source"), "a bind mount needs a source"))?;
        let source = bundle.join(src);
        std::fs::metadata(&source).map_err(|e| {
            invalid(
                format!("mounts[{i}].source"),
                format!("{}: {e}", source.display()),
            )
        })?;
        flags |= libc::MS_BIND;
        MountKind::Bind {
            source,
            recursive: flags & libc::MS_REC != 0,
            idmap,
        }
    } else if fstype == "cgroup" || fstype == "cgroup2" {
        MountKind::Cgroup
    } else if fstype.is_empty() {
        return Err(invalid(
            format!("mounts[{i}].type"),
            "missing (and not a bind mount)",
        ));
    } else {
        MountKind::Fs {
            fstype: fstype.to_owned(),
            source: m.source.clone().unwrap_or_else(|| fstype.to_owned()),
        }
    };
    let data = labelled(data.join(","), &kind, mount_label);
    Ok(MountConfig {
        index: i,
        destination,
        kind,
        flags,
        propagation,
        data,
        attr_set,
        attr_clr,
    })
}

/// linux.mountLabel labels the file systems the runtime makes (tmpfs,
/// devpts, mqueue...) through their `context=` option; not proc/sysfs nor
/// binds, as runc does.
fn labelled(mut data: String, kind: &MountKind, label: Option<&str>) -> String {
    if let (Some(l), MountKind::Fs { fstype, .. }) = (label, kind)
        && fstype != "proc"
        && fstype != "sysfs"
    {
        if !data.is_empty() {
            data.push(',');
        }
        data.push_str(&format!("context=\"{l}\""));
    }
    data
}

/// The idmapping of mount `i`: its own mappings (both needed), or with only
/// an `idmap`/`ridmap` option, the container's user namespace (as runc).
fn idmap_of(
    i: usize,
    m: &spec::Mount,
    option: Option<(usize, bool)>,
    container_users: &Option<IdmapUsers>,
) -> Result<Option<Idmap>, ConfigError> {
    let recursive = option.is_some_and(|(_, r)| r);
    let users = match (m.uid_mappings.is_empty(), m.gid_mappings.is_empty()) {
        (false, false) => IdmapUsers::Maps {
            uid: m.uid_mappings.clone(),
            gid: m.gid_mappings.clone(),
        },
        (false, true) => {
            return Err(invalid(
                format!("mounts[{i}].gidMappings"),
                "required with uidMappings",
            ));
        }
        (true, false) => {
            return Err(invalid(
                format!("mounts[{i}].uidMappings"),
                "required with gidMappings",
            ));
        }
        (true, true) => match (option, container_users) {
            (None, _) => return Ok(None),
            (Some(_), Some(u)) => u.clone(),
            (Some((j, _)), None) => {
                return Err(invalid(
                    format!("mounts[{i}].options[{j}]"),
                    "idmap needs uidMappings and gidMappings, or a user namespace to take them from",
                ));
            }
        },
    };
    if let IdmapUsers::Maps { uid, gid } = &users {
        for (what, maps) in [("uidMappings", uid), ("gidMappings", gid)] {
            if let Some(k) = maps.iter().position(|x| x.size == 0) {
                return Err(invalid(
                    format!("mounts[{i}].{what}[{k}].size"),
                    "must not be 0",
                ));
            }
        }
    }
    Ok(Some(Idmap { users, recursive }))
}

fn device(i: usize, d: &spec::Device) -> Result<DeviceNode, ConfigError> {
    let kind = match d.kind.as_str() {
        "c" | "u" => libc::S_IFCHR,
        "b" => libc::S_IFBLK,
        "p" => libc::S_IFIFO,
        other => {
            return Err(invalid(
                format!("linux.devices[{i}].type"),
                format!("unknown device type {other:?}"),
            ));
        }
    };
    let path = container_path(&format!("linux.devices[{i}].path"), &d.path)?;
    if path == "/dev" || path.split('/').any(|c| c == "..") {
        return Err(invalid(
            format!("linux.devices[{i}].path"),
            format!("{path:?} is not a device path"),
        ));
    }
    if kind != libc::S_IFIFO && (d.major < 0 || d.minor < 0) {
        return Err(invalid(
            format!("linux.devices[{i}].major"),
            "must not be negative",
        ));
    }
    Ok(DeviceNode {
        path,
        kind,
        major: d.major as u64,
        minor: d.minor as u64,
        mode: d.file_mode.unwrap_or(0o666) & 0o7777,
        uid: d.uid.unwrap_or(0),
        gid: d.gid.unwrap_or(0),
    })
}

fn sysctls(
    map: &BTreeMap<String, String>,
    ns: &Namespaces,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let field = format!("linux.sysctl.{k}");
        if k.is_empty()
            || k.contains('/') && k.contains('.')
            || k.split(['.', '/']).any(|c| c.is_empty() || c == "..")
        {
            return Err(invalid(field, "not a sysctl name"));
        }
        let key = k.replace('/', ".");
        let ipc = matches!(
            key.as_str(),
            "kernel.msgmax"
                | "kernel.msgmnb"
                | "kernel.msgmni"
                | "kernel.sem"
                | "kernel.shmall"
                | "kernel.shmmax"
                | "kernel.shmmni"
                | "kernel.shm_rmid_forced"
        ) || key.starts_with("fs.mqueue.");
        let needs = if ipc {
            Some(NsKind::Ipc)
        } else if key.starts_with("net.") {
            Some(NsKind::Net)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            Some(NsKind::Uts)
        } else {
            None
        };
        match needs {
            Some(k) if !ns.has(k) => {
                return Err(invalid(
                    field,
                    format!("needs a private {} namespace", k.spec_name()),
                ));
            }
            Some(_) => {}
            None => return Err(invalid(field, "not a namespaced sysctl")),
        }
        out.push((key, v.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_goes_to_made_file_systems_only() {
        let fs = |t: &str| MountKind::Fs {
            fstype: t.into(),
            source: t.into(),
        };
        let l = Some("system_u:object_r:container_file_t:s0");
        assert_eq!(
            labelled("mode=755".into(), &fs("tmpfs"), l),
            "mode=755,context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(
            labelled(String::new(), &fs("devpts"), l),
            "context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(labelled(String::new(), &fs("proc"), l), "");
        assert_eq!(labelled(String::new(), &fs("sysfs"), l), "");
        let bind = MountKind::Bind {
            source: "/x".into(),
            recursive: false,
            idmap: None,
        };
        assert_eq!(labelled("x".into(), &bind, l), "x");
        assert_eq!(labelled("x".into(), &fs("tmpfs"), None), "x");
    }

    fn bundle_with(json: serde_json::Value) -> (tempdir::Dir, Result<Config, ConfigError>) {
        let d = tempdir::Dir::new();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let spec: Spec = serde_json::from_value(json).unwrap();
        let r = validate(d.path(), &spec);
        (d, r)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "berth-cfg-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/true"], "cwd": "/"},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        })
    }

    fn err(json: serde_json::Value) -> String {
        bundle_with(json).1.unwrap_err().to_string()
    }

    #[test]
    fn default_spec_validates() {
        let d = tempdir::Dir::new();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        let spec: Spec = serde_json::from_value(super::super::default::spec(false)).unwrap();
        let c = validate(d.path(), &spec).unwrap();
        assert!(c.linux.namespaces.is_new(NsKind::Pid));
        assert_eq!(c.process.args[0].to_str().unwrap(), "sh");
        assert!(c.process.caps.unwrap().bounding & (1 << 21) == 0);
    }

    #[test]
    fn unknown_namespace_names_field() {
        let mut j = base();
        j["linux"]["namespaces"] =
            serde_json::json!([{"type":"pid"},{"type":"mount"},{"type":"foo"}]);
        assert_eq!(
            err(j),
            r#"config.json: linux.namespaces[2].type: unknown namespace "foo""#
        );
    }

    #[test]
    fn missing_rootfs_names_field() {
        let mut j = base();
        j["root"]["path"] = "nope".into();
        assert!(err(j).starts_with("config.json: root.path: "));
    }

    #[test]
    fn bad_seccomp_action_names_field() {
        let mut j = base();
        j["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]
        });
        assert_eq!(
            err(j),
            r#"config.json: linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_BOGUS""#
        );
    }

    #[test]
    fn caps_rlimits_and_sysctls_are_checked() {
        let mut j = base();
        j["process"]["capabilities"] = serde_json::json!({"bounding": ["CAP_KILL", "CAP_NOPE"]});
        assert!(err(j).contains("process.capabilities.bounding[1]: unknown capability"));
        let mut j = base();
        j["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_FOO", "hard": 1, "soft": 1}]);
        assert!(err(j).contains("process.rlimits[0].type: unknown rlimit"));
        let mut j = base();
        j["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        assert!(
            err(j).contains("linux.sysctl.net.ipv4.ip_forward: needs a private network namespace")
        );
    }

    #[test]
    fn io_priority_personality_and_scheduler() {
        let mut j = base();
        j["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
        j["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
        let c = bundle_with(j).1.unwrap();
        assert_eq!(c.process.io_priority, Some(2 << 13 | 4));
        assert_eq!(c.linux.personality, Some(8));
        let mut j = base();
        j["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_RR", "priority": 3, "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
        let s = bundle_with(j).1.unwrap().process.scheduler.unwrap();
        assert_eq!((s.policy, s.priority, s.flags), (2, 3, 1));
        let mut j = base();
        j["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_FIFO"});
        assert_eq!(
            err(j),
            "config.json: process.scheduler.priority: 0 is outside 1..99 for SCHED_FIFO"
        );
        let mut j = base();
        j["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "deadline": 1000});
        assert!(err(j).starts_with("config.json: process.scheduler.runtime: runtime, deadline"));
        let mut j = base();
        j["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_X"});
        assert!(err(j).starts_with("config.json: process.ioPriority.class: unknown class"));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = super::super::parse_json::<Spec>(
            "config.json",
            br#"{"process": {"user": {"uid": "root"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("config.json: process.user.uid: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn mount_options_split() {
        let mut j = base();
        j["mounts"] = serde_json::json!([
            {"destination": "/tmp/", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "size=64k", "rslave", "rro"]}
        ]);
        let c = bundle_with(j).1.unwrap();
        let m = &c.mounts[0];
        assert_eq!(m.destination, "/tmp");
        assert_eq!(m.flags, libc::MS_NOSUID);
        assert_eq!(m.data, "size=64k");
        assert_eq!(m.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(m.attr_set, tables::ATTR_RDONLY);
    }
}
