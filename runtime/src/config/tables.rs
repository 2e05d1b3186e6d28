//! Name tables the config uses: capabilities, rlimits, mount options.

/// Capability names by number (linux/capability.h), up to CAP_LAST_CAP 40.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Capability number from its name (`CAP_SYS_ADMIN`; case-insensitive, the
/// `CAP_` prefix optional as in `exec --cap`).
pub fn capability(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    CAPABILITIES
        .iter()
        .position(|c| *c == full)
        .map(|p| p as u32)
}

/// RLIMIT_* resource number from its name.
pub fn rlimit(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// What one mount option means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOpt {
    /// Set these MS_* flags.
    Set(u64),
    /// Clear these MS_* flags.
    Clear(u64),
    /// A propagation change, applied after the mount.
    Propagation(u64),
    /// Recursive attribute via mount_setattr: (set, clear).
    Attr(u64, u64),
    /// Idmapped mount: `idmap`, or `ridmap` (submounts too).
    Idmap { recursive: bool },
    /// Accepted and ignored (e.g. `tmpcopyup` is a runc extension).
    Ignored,
}

const MS_RDONLY: u64 = libc::MS_RDONLY;
const MS_NOSUID: u64 = libc::MS_NOSUID;
const MS_NODEV: u64 = libc::MS_NODEV;
const MS_NOEXEC: u64 = libc::MS_NOEXEC;
const MS_NOATIME: u64 = libc::MS_NOATIME;
const MS_NODIRATIME: u64 = libc::MS_NODIRATIME;
const MS_RELATIME: u64 = libc::MS_RELATIME;
const MS_STRICTATIME: u64 = libc::MS_STRICTATIME;
const MS_REC: u64 = libc::MS_REC;

// linux/mount.h MOUNT_ATTR_*.
pub const ATTR_RDONLY: u64 = 0x1;
pub const ATTR_NOSUID: u64 = 0x2;
pub const ATTR_NODEV: u64 = 0x4;
pub const ATTR_NOEXEC: u64 = 0x8;
pub const ATTR_ATIME_MASK: u64 = 0x70;
pub const ATTR_RELATIME: u64 = 0x0;
pub const ATTR_NOATIME: u64 = 0x10;
pub const ATTR_STRICTATIME: u64 = 0x20;
pub const ATTR_NODIRATIME: u64 = 0x80;
pub const ATTR_NOSYMFOLLOW: u64 = 0x200000;

pub fn mount_option(opt: &str) -> Option<MountOpt> {
    use MountOpt::*;
    Some(match opt {
        "ro" => Set(MS_RDONLY),
        "rw" => Clear(MS_RDONLY),
        "nosuid" => Set(MS_NOSUID),
        "suid" => Clear(MS_NOSUID),
        "nodev" => Set(MS_NODEV),
        "dev" => Clear(MS_NODEV),
        "noexec" => Set(MS_NOEXEC),
        "exec" => Clear(MS_NOEXEC),
        "sync" => Set(libc::MS_SYNCHRONOUS),
        "async" => Clear(libc::MS_SYNCHRONOUS),
        "dirsync" => Set(libc::MS_DIRSYNC),
        "remount" => Set(libc::MS_REMOUNT),
        "mand" => Set(libc::MS_MANDLOCK),
        "nomand" => Clear(libc::MS_MANDLOCK),
        "atime" => Clear(MS_NOATIME),
        "noatime" => Set(MS_NOATIME),
        "diratime" => Clear(MS_NODIRATIME),
        "nodiratime" => Set(MS_NODIRATIME),
        "relatime" => Set(MS_RELATIME),
        "norelatime" => Clear(MS_RELATIME),
        "strictatime" => Set(MS_STRICTATIME),
        "nostrictatime" => Clear(MS_STRICTATIME),
        "bind" => Set(libc::MS_BIND),
        "rbind" => Set(libc::MS_BIND | MS_REC),
        "silent" => Set(libc::MS_SILENT),
        "loud" => Clear(libc::MS_SILENT),
        "private" => Propagation(libc::MS_PRIVATE),
        "rprivate" => Propagation(libc::MS_PRIVATE | MS_REC),
        "shared" => Propagation(libc::MS_SHARED),
        "rshared" => Propagation(libc::MS_SHARED | MS_REC),
        "slave" => Propagation(libc::MS_SLAVE),
        "rslave" => Propagation(libc::MS_SLAVE | MS_REC),
        "unbindable" => Propagation(libc::MS_UNBINDABLE),
        "runbindable" => Propagation(libc::MS_UNBINDABLE | MS_REC),
        "rro" => Attr(ATTR_RDONLY, 0),
        "rrw" => Attr(0, ATTR_RDONLY),
        "rnosuid" => Attr(ATTR_NOSUID, 0),
        "rsuid" => Attr(0, ATTR_NOSUID),
        "rnodev" => Attr(ATTR_NODEV, 0),
        "rdev" => Attr(0, ATTR_NODEV),
        "rnoexec" => Attr(ATTR_NOEXEC, 0),
        "rexec" => Attr(0, ATTR_NOEXEC),
        "rnodiratime" => Attr(ATTR_NODIRATIME, 0),
        "rdiratime" => Attr(0, ATTR_NODIRATIME),
        "rrelatime" => Attr(ATTR_RELATIME, ATTR_ATIME_MASK),
        "rnorelatime" => Attr(0, ATTR_ATIME_MASK),
        "rnoatime" => Attr(ATTR_NOATIME, ATTR_ATIME_MASK),
        "ratime" => Attr(0, ATTR_ATIME_MASK),
        "rstrictatime" => Attr(ATTR_STRICTATIME, ATTR_ATIME_MASK),
        "rnostrictatime" => Attr(0, ATTR_ATIME_MASK),
        "rnosymfollow" => Attr(ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => Attr(0, ATTR_NOSYMFOLLOW),
        "idmap" => Idmap { recursive: false },
        "ridmap" => Idmap { recursive: true },
        "tmpcopyup" => Ignored,
        _ => return None,
    })
}

/// All option names `mount_option` knows, for `features`.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
    "tmpcopyup",
];

/// Scheduling policy number (linux/sched.h) from its OCI name.
pub fn sched_policy(name: &str) -> Option<u32> {
    Some(match name {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_ISO" => 4,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        _ => return None,
    })
}

/// `sched_attr.sched_flags` bit from its OCI name.
pub fn sched_flag(name: &str) -> Option<u64> {
    Some(match name {
        "SCHED_FLAG_RESET_ON_FORK" => 0x01,
        "SCHED_FLAG_RECLAIM" => 0x02,
        "SCHED_FLAG_DL_OVERRUN" => 0x04,
        "SCHED_FLAG_KEEP_POLICY" => 0x08,
        "SCHED_FLAG_KEEP_PARAMS" => 0x10,
        "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
        "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_round_trip() {
        assert_eq!(capability("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability("sys_admin"), Some(21));
        assert_eq!(capability("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(capability("CAP_FOO"), None);
    }

    #[test]
    fn mount_options_classify() {
        assert_eq!(mount_option("ro"), Some(MountOpt::Set(libc::MS_RDONLY)));
        assert_eq!(
            mount_option("rslave"),
            Some(MountOpt::Propagation(libc::MS_SLAVE | libc::MS_REC))
        );
        assert_eq!(mount_option("size=65536k"), None);
    }
}
