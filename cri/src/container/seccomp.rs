//! Seccomp profiles for CRI containers: the built-in `RuntimeDefault`, and
//! `Localhost` profiles read from files. Both come out as the OCI
//! `linux.seccomp` wire type that berth-runc (or runc) compiles.
//!
//! `RuntimeDefault` is an allowlist: a syscall not named fails with EPERM.
//! It allows what ordinary programs need and keeps out what reaches kernel
//! state the container does not own (keyrings, modules, kexec, the clock,
//! mounts and namespaces, file handles that bypass the mount tree, BPF),
//! unless the container holds the capability that already grants that power.
//! In effect it matches the Docker/containerd default. This module only
//! builds profiles: it never loads a filter itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth_runtime::config::spec::{Seccomp, SeccompArg, SeccompSyscall};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile {path}: read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------
// The built-in profile, as a table.

/// When a group of the table applies; all of a group's gates must hold.
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// The container's process holds this capability.
    Cap(&'static str),
    /// The container's process does not hold it.
    NoCap(&'static str),
    /// The host kernel is at least (major, minor).
    Kernel(u32, u32),
    /// The host is one of these (Rust `target_arch` names).
    Arch(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Allow,
    Errno(u32),
}

/// One argument comparison of a conditional rule (OCI semantics: for
/// `SCMP_CMP_MASKED_EQ`, `value` is the mask and `value_two` the datum).
#[derive(Debug, Clone, Copy)]
struct Cond {
    index: u32,
    op: &'static str,
    value: u64,
    value_two: u64,
}

impl Cond {
    const fn eq(index: u32, value: u64) -> Self {
        Cond {
            index,
            op: "SCMP_CMP_EQ",
            value,
            value_two: 0,
        }
    }
    const fn ne(index: u32, value: u64) -> Self {
        Cond {
            index,
            op: "SCMP_CMP_NE",
            value,
            value_two: 0,
        }
    }
    /// `arg & mask == 0`: none of the bits in `mask` set.
    const fn none_of(index: u32, mask: u64) -> Self {
        Cond {
            index,
            op: "SCMP_CMP_MASKED_EQ",
            value: mask,
            value_two: 0,
        }
    }
}

#[derive(Debug)]
struct Group {
    names: &'static [&'static str],
    act: Act,
    /// ANDed; a group with none is unconditional.
    args: &'static [Cond],
    gates: &'static [Gate],
}

const fn allow(names: &'static [&'static str]) -> Group {
    Group {
        names,
        act: Act::Allow,
        args: &[],
        gates: &[],
    }
}

const fn allow_if(gates: &'static [Gate], names: &'static [&'static str]) -> Group {
    Group {
        names,
        act: Act::Allow,
        args: &[],
        gates,
    }
}

const fn allow_when(
    names: &'static [&'static str],
    args: &'static [Cond],
    gates: &'static [Gate],
) -> Group {
    Group {
        names,
        act: Act::Allow,
        args,
        gates,
    }
}

/// Every namespace `clone` could create: without CAP_SYS_ADMIN a container
/// forks and spawns threads, but makes no namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The `clone` argument holding the flags: s390 swaps the first two.
const CLONE_FLAGS_ARG: u32 = if cfg!(target_arch = "s390x") { 1 } else { 0 };

/// `personality` values that only select the Linux ABI (32-bit, the 2.6
/// uname) or query the current one; the others switch off ASLR or emulate
/// other systems.
const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;
const UNAME26: u64 = 0x0002_0000;
const PER_QUERY: u64 = 0xffff_ffff;

/// AF_VSOCK: host/guest sockets that bypass the network namespace.
const AF_VSOCK: u64 = 40;

const ENOSYS: u32 = libc::ENOSYS as u32;

const X86: &[&str] = &["x86_64", "x86"];
const ARM: &[&str] = &["aarch64", "arm"];

/// The `RuntimeDefault` table. Names the host's libseccomp does not know
/// (other arches' calls, newer kernels' calls) are skipped by the compiler,
/// so the table lists every arch's spelling. Kept out of rustfmt: one
/// name a line would spread the table over 400 lines.
#[rustfmt::skip]
const TABLE: &[Group] = &[
    // Processes and threads: life cycle, identity, scheduling of oneself.
    allow(&[
        "exit", "exit_group", "fork", "vfork", "execve", "execveat", "wait4", "waitid",
        "waitpid", "kill", "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid",
        "setpgid", "getpgrp", "getsid", "setsid", "set_tid_address", "set_robust_list",
        "get_robust_list", "rseq", "restart_syscall", "prctl", "capget", "capset",
        "getpriority", "setpriority", "pidfd_open", "pidfd_send_signal", "process_mrelease",
        "membarrier", "getcpu", "ioprio_get", "ioprio_set", "set_thread_area",
        "get_thread_area",
    ]),
    allow(&[
        "futex", "futex_time64", "futex_waitv", "futex_wait", "futex_wake", "futex_requeue",
    ]),
    allow(&[
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getattr",
        "sched_setattr", "sched_getparam", "sched_setparam", "sched_getscheduler",
        "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
        "sched_rr_get_interval", "sched_rr_get_interval_time64",
    ]),
    // Credentials: the kernel checks CAP_SETUID/CAP_SETGID itself.
    allow(&[
        "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid",
        "getegid32", "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups",
        "getgroups32", "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32",
        "setregid", "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32",
        "setgroups", "setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
    ]),
    // Signals.
    allow(&[
        "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
        "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
        "sigaltstack", "sigreturn", "sigprocmask", "signalfd", "signalfd4", "pause", "alarm",
    ]),
    // Memory of oneself. memfd_secret and the pkeys only narrow access.
    allow(&[
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync",
        "mlock", "mlock2", "mlockall", "munlock", "munlockall", "remap_file_pages",
        "memfd_create", "memfd_secret", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "map_shadow_stack",
    ]),
    // Files and descriptors, inside the container's mount tree.
    allow(&[
        "open", "openat", "openat2", "creat", "close", "close_range", "read", "write", "readv",
        "writev", "pread64", "pwrite64", "preadv", "preadv2", "pwritev", "pwritev2", "lseek",
        "_llseek", "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "ioctl", "fsync",
        "fdatasync", "sync", "syncfs", "sync_file_range", "fallocate", "fadvise64",
        "fadvise64_64", "readahead", "truncate", "truncate64", "ftruncate", "ftruncate64",
        "copy_file_range", "sendfile", "sendfile64", "splice", "tee", "vmsplice",
        "cachestat",
    ]),
    allow(&[
        "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "fstatat64", "newfstatat",
        "statx", "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat",
        "faccessat2", "getdents", "getdents64", "readlink", "readlinkat", "getcwd", "chdir",
        "fchdir", "umask",
    ]),
    allow(&[
        "mkdir", "mkdirat", "mknod", "mknodat", "rmdir", "rename", "renameat", "renameat2",
        "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "chmod", "fchmod",
        "fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32", "lchown",
        "lchown32", "fchownat", "utime", "utimes", "utimensat", "utimensat_time64",
        "futimesat",
    ]),
    allow(&[
        "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
        "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr",
        "fremovexattr",
    ]),
    // A handle is only a name; opening by handle is what bypasses the
    // mount tree (gated below).
    allow(&["name_to_handle_at"]),
    // Waiting on descriptors, and the descriptor kinds made for it.
    allow(&[
        "select", "_newselect", "pselect6", "pselect6_time64", "poll", "ppoll",
        "ppoll_time64", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
        "epoll_wait", "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
        "pipe", "pipe2", "inotify_init", "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "fanotify_mark", "timerfd_create", "timerfd_settime",
        "timerfd_settime64", "timerfd_gettime", "timerfd_gettime64",
    ]),
    // Linux AIO. io_uring is left out: its own path through the kernel has
    // been a steady source of escapes, and the kernel's seccomp filter does
    // not see the operations it runs.
    allow(&[
        "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
        "io_pgetevents_time64",
    ]),
    // Clocks and timers; adjtimex and clock_adjtime only read without
    // CAP_SYS_TIME.
    allow(&[
        "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
        "clock_nanosleep", "clock_nanosleep_time64", "nanosleep", "gettimeofday", "time",
        "times", "adjtimex", "clock_adjtime", "clock_adjtime64", "getitimer", "setitimer",
        "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_gettime64", "timer_settime", "timer_settime64",
    ]),
    // Limits and facts about the system.
    allow(&[
        "getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getrusage", "sysinfo", "uname",
        "getrandom",
    ]),
    // System V and POSIX IPC: namespaced by the pod's IPC namespace.
    allow(&[
        "ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop",
        "semtimedop", "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget", "mq_open",
        "mq_unlink", "mq_notify", "mq_getsetattr", "mq_timedsend", "mq_timedsend_time64",
        "mq_timedreceive", "mq_timedreceive_time64",
    ]),
    // Sockets (creating one is conditional, below).
    allow(&[
        "socketpair", "socketcall", "bind", "connect", "listen", "accept", "accept4",
        "getsockname", "getpeername", "getsockopt", "setsockopt", "send", "sendto", "sendmsg",
        "sendmmsg", "recv", "recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "shutdown",
    ]),
    // Sandboxing oneself further.
    allow(&[
        "seccomp", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    ]),
    // Architecture-specific thread and cache calls.
    allow_if(&[Gate::Arch(&["x86_64"])], &["arch_prctl"]),
    allow_if(&[Gate::Arch(X86)], &["modify_ldt"]),
    allow_if(
        &[Gate::Arch(ARM)],
        &[
            "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
            "cacheflush", "set_tls",
        ],
    ),
    allow_if(
        &[Gate::Arch(&["s390x"])],
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
    ),
    allow_if(&[Gate::Arch(&["riscv64"])], &["riscv_flush_icache"]),
    allow_if(
        &[Gate::Arch(&["powerpc64"])],
        &["sync_file_range2", "swapcontext"],
    ),
    // Any socket but vsock, which reaches the host past the network
    // namespace.
    allow_when(&["socket"], &[Cond::ne(0, AF_VSOCK)], &[]),
    // personality: only the Linux ABIs, and the query.
    allow_when(&["personality"], &[Cond::eq(0, PER_LINUX)], &[]),
    allow_when(&["personality"], &[Cond::eq(0, PER_LINUX32)], &[]),
    allow_when(&["personality"], &[Cond::eq(0, UNAME26)], &[]),
    allow_when(&["personality"], &[Cond::eq(0, UNAME26 | PER_LINUX32)], &[]),
    allow_when(&["personality"], &[Cond::eq(0, PER_QUERY)], &[]),
    // Since 4.8 a tracer cannot skip the tracee's seccomp filter, so
    // tracing one's own children is safe; the kernel's ptrace rules still
    // apply.
    allow_if(
        &[Gate::Kernel(4, 8)],
        &["ptrace", "process_vm_readv", "process_vm_writev"],
    ),
    // fork and threads, but no namespaces, without CAP_SYS_ADMIN.
    allow_when(
        &["clone"],
        &[Cond::none_of(CLONE_FLAGS_ARG, CLONE_NAMESPACE_FLAGS)],
        &[Gate::NoCap("CAP_SYS_ADMIN")],
    ),
    // clone3 passes its flags in memory, where a filter cannot look: say
    // "not implemented" so libc falls back to clone, which is checked.
    Group {
        names: &["clone3"],
        act: Act::Errno(ENOSYS),
        args: &[],
        gates: &[Gate::NoCap("CAP_SYS_ADMIN")],
    },
    // What a capability already grants, its syscalls may do.
    allow_if(&[Gate::Cap("CAP_DAC_READ_SEARCH")], &["open_by_handle_at"]),
    allow_if(
        &[Gate::Cap("CAP_SYS_ADMIN")],
        &[
            "clone", "clone3", "unshare", "setns", "mount", "umount", "umount2",
            "mount_setattr", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount",
            "fspick", "quotactl", "quotactl_fd", "sethostname", "setdomainname", "syslog",
            "bpf", "perf_event_open", "fanotify_init", "lookup_dcookie",
        ],
    ),
    allow_if(
        &[Gate::Cap("CAP_SYS_PTRACE")],
        &[
            "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
            "pidfd_getfd",
        ],
    ),
    allow_if(
        &[Gate::Cap("CAP_SYS_MODULE")],
        &["init_module", "finit_module", "delete_module"],
    ),
    allow_if(&[Gate::Cap("CAP_SYS_BOOT")], &["reboot"]),
    allow_if(
        &[Gate::Cap("CAP_SYS_TIME")],
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    allow_if(
        &[Gate::Cap("CAP_SYS_NICE")],
        &["get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind"],
    ),
    allow_if(&[Gate::Cap("CAP_SYS_RAWIO")], &["iopl", "ioperm"]),
    allow_if(&[Gate::Cap("CAP_SYS_CHROOT")], &["chroot"]),
    allow_if(&[Gate::Cap("CAP_SYS_PACCT")], &["acct"]),
    allow_if(&[Gate::Cap("CAP_SYS_TTY_CONFIG")], &["vhangup"]),
    allow_if(&[Gate::Cap("CAP_SYSLOG")], &["syslog"]),
    allow_if(&[Gate::Cap("CAP_BPF")], &["bpf"]),
    allow_if(&[Gate::Cap("CAP_PERFMON")], &["perf_event_open"]),
    // CAP_SYS_RESOURCE gates no syscall of its own: the kernel checks it in
    // setrlimit/prlimit64, which everyone may call.
];

/// The host facts the table depends on.
#[derive(Debug, Clone)]
struct Host {
    /// Rust `target_arch` spelling.
    arch: &'static str,
    /// (major, minor); None when unknown (kernel-gated groups are left out).
    kernel: Option<(u32, u32)>,
}

impl Host {
    fn current() -> Self {
        Host {
            arch: std::env::consts::ARCH,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|r| parse_kernel(&r)),
        }
    }

    /// The seccomp architectures a container on this host may use: the
    /// native one and the compat ABIs the kernel runs beside it.
    fn seccomp_arches(&self) -> Vec<String> {
        let arches: &[&str] = match self.arch {
            "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
            "riscv64" => &["SCMP_ARCH_RISCV64"],
            "powerpc64" => &["SCMP_ARCH_PPC64LE"],
            "x86" => &["SCMP_ARCH_X86"],
            "arm" => &["SCMP_ARCH_ARM"],
            // Unlisted: libseccomp uses the native arch alone.
            _ => &[],
        };
        arches.iter().map(|a| (*a).to_owned()).collect()
    }

    /// The Go spelling docker profiles use in `includes.arches`.
    fn go_arch(&self) -> &'static str {
        match self.arch {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            other => other,
        }
    }
}

/// "6.1.0-18-amd64" → (6, 1).
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `CAP_SYS_ADMIN`, whatever spelling CRI or the image config used
/// (`sys_admin`, `SYS_ADMIN`).
fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

fn gate_holds(g: &Gate, caps: &BTreeSet<String>, host: &Host) -> bool {
    match g {
        Gate::Cap(c) => caps.contains(*c),
        Gate::NoCap(c) => !caps.contains(*c),
        Gate::Kernel(maj, min) => host.kernel.is_some_and(|k| k >= (*maj, *min)),
        Gate::Arch(a) => a.contains(&host.arch),
    }
}

/// The built-in `RuntimeDefault` profile for a container whose process has
/// the capabilities `caps` (e.g. `CAP_SYS_ADMIN` widens it).
pub fn runtime_default(caps: &[String]) -> Seccomp {
    build_default(caps, &Host::current())
}

fn build_default(caps: &[String], host: &Host) -> Seccomp {
    let caps: BTreeSet<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let groups: Vec<&Group> = TABLE
        .iter()
        .filter(|g| g.gates.iter().all(|gate| gate_holds(gate, &caps, host)))
        .collect();
    // One rule for everything allowed outright, then the conditional and
    // errno rules; a conditional allow is dropped for a name already
    // allowed outright (it would add nothing).
    let plain: BTreeSet<&str> = groups
        .iter()
        .filter(|g| g.act == Act::Allow && g.args.is_empty())
        .flat_map(|g| g.names.iter().copied())
        .collect();
    let mut syscalls = vec![SeccompSyscall {
        names: plain.iter().map(|n| (*n).to_owned()).collect(),
        action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    }];
    for g in groups
        .iter()
        .filter(|g| !(g.act == Act::Allow && g.args.is_empty()))
    {
        let names: Vec<String> = g
            .names
            .iter()
            .filter(|n| !plain.contains(**n))
            .map(|n| (*n).to_owned())
            .collect();
        if names.is_empty() {
            continue;
        }
        let (action, errno_ret) = match g.act {
            Act::Allow => ("SCMP_ACT_ALLOW", None),
            Act::Errno(e) => ("SCMP_ACT_ERRNO", Some(e)),
        };
        syscalls.push(SeccompSyscall {
            names,
            action: action.into(),
            errno_ret,
            args: g
                .args
                .iter()
                .map(|c| SeccompArg {
                    index: c.index,
                    value: c.value,
                    value_two: c.value_two,
                    op: c.op.into(),
                })
                .collect(),
        });
    }
    Seccomp {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: host.seccomp_arches(),
        syscalls,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Localhost profiles.

/// A profile file: the docker/containerd profile format, of which plain OCI
/// `linux.seccomp` JSON is a subset. Unknown fields are ignored, as docker
/// and containerd do.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<FileSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSyscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    #[serde(default)]
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<FileArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    #[serde(default)]
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    arches: Option<Vec<String>>,
    caps: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// A `Localhost` profile from a file, for a container holding no
/// capabilities beyond what the file's rules name: rules that a
/// capability includes are left out. Prefer `localhost_with_caps`.
pub fn localhost(path: &Path) -> Result<Seccomp, ProfileError> {
    localhost_with_caps(path, &[])
}

/// A `Localhost` profile from a file in the docker/containerd format or
/// plain OCI `linux.seccomp` JSON; `includes`/`excludes` are resolved for
/// a container with `caps` on this host.
pub fn localhost_with_caps(path: &Path, caps: &[String]) -> Result<Seccomp, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    convert(&bytes, caps, &Host::current()).map_err(|(field, message)| ProfileError::Parse {
        path: path.to_owned(),
        field,
        message,
    })
}

type FieldError = (String, String);

fn convert(bytes: &[u8], caps: &[String], host: &Host) -> Result<Seccomp, FieldError> {
    use berth_runtime::seccomp::{ARCHES, Action, FLAGS, Op};

    let file: ProfileFile =
        berth_runtime::config::parse_json("profile", bytes).map_err(|e| match e {
            berth_runtime::config::ConfigError::Parse { field, msg, .. }
            | berth_runtime::config::ConfigError::Invalid { field, msg, .. } => (field, msg),
            other => ("(document)".into(), other.to_string()),
        })?;
    let err = |field: String, message: String| Err((field, message));

    if file.default_action.is_empty() {
        return err("defaultAction".into(), "required".into());
    }
    if Action::parse(&file.default_action, file.default_errno_ret).is_none() {
        return err(
            "defaultAction".into(),
            format!("unknown action {:?}", file.default_action),
        );
    }
    let check_arch = |field: String, a: &str| {
        if ARCHES.contains(&a) {
            Ok(())
        } else {
            Err((field, format!("unknown architecture {a:?}")))
        }
    };
    let architectures = file.architectures.unwrap_or_default();
    let arch_map = file.arch_map.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return err(
            "archMap".into(),
            "architectures and archMap are both set; use one".into(),
        );
    }
    for (i, a) in architectures.iter().enumerate() {
        check_arch(format!("architectures[{i}]"), a)?;
    }
    let native = host.seccomp_arches().into_iter().next();
    let mut arches = architectures;
    for (i, m) in arch_map.iter().enumerate() {
        check_arch(format!("archMap[{i}].architecture"), &m.architecture)?;
        let subs = m.sub_architectures.as_deref().unwrap_or_default();
        for (j, s) in subs.iter().enumerate() {
            check_arch(format!("archMap[{i}].subArchitectures[{j}]"), s)?;
        }
        if native.as_deref() == Some(m.architecture.as_str()) {
            arches.push(m.architecture.clone());
            arches.extend(subs.iter().cloned());
        }
    }
    let flags = file.flags.unwrap_or_default();
    for (i, f) in flags.iter().enumerate() {
        if !FLAGS.contains(&f.as_str()) {
            return err(format!("flags[{i}]"), format!("unknown flag {f:?}"));
        }
    }

    let caps: BTreeSet<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let mut syscalls = Vec::new();
    for (i, sc) in file.syscalls.unwrap_or_default().into_iter().enumerate() {
        let at = |f: &str| format!("syscalls[{i}].{f}");
        let names = match (sc.name, sc.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return err(at("name"), "name and names are both set; use one".into());
            }
            (Some(n), _) => vec![n],
            (None, Some(n)) if !n.is_empty() => n,
            _ => return err(at("names"), "no syscall named".into()),
        };
        if sc.action.is_empty() {
            return err(at("action"), "required".into());
        }
        let Some(action) = Action::parse(&sc.action, sc.errno_ret) else {
            return err(at("action"), format!("unknown action {:?}", sc.action));
        };
        if sc.errno_ret.is_some() && !matches!(action, Action::Errno(_) | Action::Trace(_)) {
            return err(
                at("errnoRet"),
                format!(
                    "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {}",
                    sc.action
                ),
            );
        }
        let mut args = Vec::new();
        for (j, a) in sc.args.unwrap_or_default().into_iter().enumerate() {
            if Op::parse(&a.op).is_none() {
                return err(
                    at(&format!("args[{j}].op")),
                    format!("unknown operator {:?}", a.op),
                );
            }
            if a.index > 5 {
                return err(
                    at(&format!("args[{j}].index")),
                    format!("{} is not a syscall argument index (0-5)", a.index),
                );
            }
            args.push(SeccompArg {
                index: a.index,
                value: a.value,
                value_two: a.value_two,
                op: a.op,
            });
        }
        let include =
            applies(&sc.includes, &sc.excludes, &caps, host).map_err(|(f, m)| (at(&f), m))?;
        if include {
            syscalls.push(SeccompSyscall {
                names,
                action: sc.action,
                errno_ret: sc.errno_ret,
                args,
            });
        }
    }
    let seccomp = Seccomp {
        default_action: file.default_action,
        default_errno_ret: file.default_errno_ret,
        architectures: arches,
        flags,
        listener_path: file.listener_path,
        listener_metadata: file.listener_metadata,
        syscalls,
    };
    // What is left to check (SCMP_ACT_NOTIFY needs a listener) is checked
    // by the runtime's own validation, the same berth-runc applies.
    berth_runtime::seccomp::validate(&seccomp).map_err(|(field, message)| {
        let field = field
            .strip_prefix("linux.seccomp.")
            .unwrap_or(&field)
            .to_owned();
        (field, message)
    })?;
    Ok(seccomp)
}

/// Whether a docker-format rule applies to a container with `caps` on
/// `host`: every `includes` condition holds (all its caps held) and no
/// `excludes` condition does (any of its caps held excludes).
fn applies(
    inc: &Filter,
    exc: &Filter,
    caps: &BTreeSet<String>,
    host: &Host,
) -> Result<bool, FieldError> {
    let kernel_at_least = |field: &str, v: &str| -> Result<bool, FieldError> {
        let want = parse_kernel(v).ok_or_else(|| {
            (
                field.to_owned(),
                format!("{v:?} is not a kernel version (4.8)"),
            )
        })?;
        Ok(host.kernel.is_some_and(|k| k >= want))
    };
    let arch = host.go_arch();
    let held = |c: &String| caps.contains(&normalize_cap(c));
    if exc
        .arches
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x == arch))
    {
        return Ok(false);
    }
    if exc.caps.as_ref().is_some_and(|c| c.iter().any(held)) {
        return Ok(false);
    }
    if let Some(v) = &exc.min_kernel
        && kernel_at_least("excludes.minKernel", v)?
    {
        return Ok(false);
    }
    if inc
        .arches
        .as_ref()
        .is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == arch))
    {
        return Ok(false);
    }
    if inc.caps.as_ref().is_some_and(|c| !c.iter().all(held)) {
        return Ok(false);
    }
    if let Some(v) = &inc.min_kernel
        && !kernel_at_least("includes.minKernel", v)?
    {
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: Host = Host {
        arch: "x86_64",
        kernel: Some((6, 1)),
    };

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The runtime's default caps (runc's `spec`).
    fn default_caps() -> Vec<String> {
        caps(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    }

    /// Names allowed whatever the arguments.
    fn allowed(s: &Seccomp) -> BTreeSet<String> {
        s.syscalls
            .iter()
            .filter(|r| r.action == "SCMP_ACT_ALLOW" && r.args.is_empty())
            .flat_map(|r| r.names.iter().cloned())
            .collect()
    }

    fn rules_for<'a>(s: &'a Seccomp, name: &str) -> Vec<&'a SeccompSyscall> {
        s.syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_is_an_eperm_allowlist_for_the_host_arches() {
        let p = build_default(&default_caps(), &AMD64);
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.default_errno_ret, Some(libc::EPERM as u32));
        assert_eq!(
            p.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        let arm = Host {
            arch: "aarch64",
            kernel: Some((6, 1)),
        };
        let p = build_default(&default_caps(), &arm);
        assert_eq!(p.architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
        assert!(allowed(&p).contains("set_tls"));
        assert!(!allowed(&p).contains("arch_prctl"));
        // The runtime's own validation accepts it.
        berth_runtime::seccomp::validate(&p).unwrap();
    }

    #[test]
    fn default_allows_ordinary_programs() {
        let p = build_default(&default_caps(), &AMD64);
        let a = allowed(&p);
        for n in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "exit_group",
            "wait4",
            "mmap",
            "futex",
            "rt_sigaction",
            "arch_prctl",
            "epoll_pwait",
            "accept4",
            "getrandom",
            "setuid",
            "chown",
            "fork",
            "ptrace",
            "statx",
        ] {
            assert!(a.contains(n), "{n} not allowed");
        }
        // Allowed only with some arguments.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].action, "SCMP_ACT_ALLOW");
        assert_eq!(clone[0].args.len(), 1);
        let arg = &clone[0].args[0];
        assert_eq!(
            (arg.index, arg.op.as_str(), arg.value, arg.value_two),
            (0, "SCMP_CMP_MASKED_EQ", 0x7e02_0000, 0)
        );
        let pers: Vec<u64> = rules_for(&p, "personality")
            .iter()
            .map(|r| r.args[0].value)
            .collect();
        assert_eq!(pers, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        let socket = rules_for(&p, "socket");
        assert_eq!(socket[0].args[0].op, "SCMP_CMP_NE");
        assert_eq!(socket[0].args[0].value, 40);
    }

    #[test]
    fn default_denies_what_reaches_past_the_container() {
        let p = build_default(&default_caps(), &AMD64);
        for n in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "init_module",
            "reboot",
            "settimeofday",
            "clock_settime",
            "swapon",
            "pivot_root",
            "chroot",
            "syslog",
            "perf_event_open",
            "userfaultfd",
            "io_uring_setup",
            "acct",
            "iopl",
            "kcmp",
            "process_madvise",
            "pidfd_getfd",
            "personality",
            "clone3",
            "fsopen",
            "move_mount",
        ] {
            assert!(
                rules_for(&p, n)
                    .iter()
                    .all(|r| r.action != "SCMP_ACT_ALLOW" || !r.args.is_empty()),
                "{n} allowed without caps"
            );
        }
        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action, "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0].errno_ret, Some(libc::ENOSYS as u32));
    }

    #[test]
    fn capabilities_widen_the_default() {
        let mut c = default_caps();
        c.push("CAP_SYS_ADMIN".into());
        let p = build_default(&c, &AMD64);
        let a = allowed(&p);
        for n in [
            "mount", "umount2", "unshare", "setns", "clone", "clone3", "bpf", "syslog",
        ] {
            assert!(a.contains(n), "{n} not allowed with CAP_SYS_ADMIN");
        }
        // No conditional clone nor ENOSYS clone3 left beside the plain allows.
        assert_eq!(rules_for(&p, "clone").len(), 1);
        assert_eq!(rules_for(&p, "clone3").len(), 1);
        assert!(!a.contains("keyctl"));

        for (cap, calls) in [
            (
                "CAP_SYS_PTRACE",
                &["kcmp", "pidfd_getfd", "process_madvise"][..],
            ),
            (
                "CAP_SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("CAP_SYS_BOOT", &["reboot"]),
            ("CAP_SYS_TIME", &["settimeofday", "clock_settime"]),
            ("CAP_SYS_NICE", &["mbind", "set_mempolicy"]),
            ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
            ("CAP_SYS_CHROOT", &["chroot"]),
            ("CAP_SYS_PACCT", &["acct"]),
            ("CAP_SYSLOG", &["syslog"]),
            ("CAP_BPF", &["bpf"]),
            ("CAP_PERFMON", &["perf_event_open"]),
            ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
            ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
        ] {
            let without = allowed(&build_default(&default_caps(), &AMD64));
            // Lowercase and unprefixed spellings count too.
            let short = cap.trim_start_matches("CAP_").to_ascii_lowercase();
            let with = allowed(&build_default(&caps(&[&short]), &AMD64));
            for n in calls {
                assert!(!without.contains(*n), "{n} allowed without {cap}");
                assert!(with.contains(*n), "{n} not allowed with {cap}");
            }
            assert!(!with.contains("mount"), "{cap} allows mount");
        }
    }

    #[test]
    fn ptrace_needs_a_kernel_whose_seccomp_it_cannot_skip() {
        let old = Host {
            arch: "x86_64",
            kernel: Some((4, 4)),
        };
        assert!(!allowed(&build_default(&default_caps(), &old)).contains("ptrace"));
        assert!(allowed(&build_default(&caps(&["CAP_SYS_PTRACE"]), &old)).contains("ptrace"));
        assert_eq!(parse_kernel("6.18.44-fc-v782\n"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("garbage"), None);
    }

    #[test]
    fn default_names_are_unique_and_counted() {
        let p = build_default(&default_caps(), &AMD64);
        let mut seen = BTreeSet::new();
        for r in p.syscalls.iter().filter(|r| r.args.is_empty()) {
            for n in &r.names {
                assert!(seen.insert(n.clone()), "{n} listed twice");
            }
        }
        // A guard against an edit emptying or doubling the table.
        let n = allowed(&p).len();
        assert!((300..420).contains(&n), "{n} plain allows");
    }

    fn parse(json: serde_json::Value, caps: &[String]) -> Result<Seccomp, FieldError> {
        convert(json.to_string().as_bytes(), caps, &AMD64)
    }

    #[test]
    fn localhost_reads_plain_oci_json() {
        let p = parse(
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                              "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]}]
            }),
            &[],
        )
        .unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ALLOW");
        assert_eq!(p.architectures, ["SCMP_ARCH_X86_64"]);
        assert_eq!(p.syscalls.len(), 1);
        assert_eq!(p.syscalls[0].errno_ret, Some(13));
        assert_eq!(p.syscalls[0].args[0].value, 448);
    }

    #[test]
    fn localhost_reads_the_docker_format() {
        let file = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
                 "comment": "", "includes": {}, "excludes": {}},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["arm64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "4.8"}},
                {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "9.0"}}
            ]
        });
        let names = |p: &Seccomp| -> Vec<String> {
            p.syscalls.iter().flat_map(|r| r.names.clone()).collect()
        };
        let p = parse(file.clone(), &[]).unwrap();
        assert_eq!(p.default_errno_ret, Some(1));
        assert_eq!(
            p.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert_eq!(
            names(&p),
            ["read", "write", "getpid", "clone", "arch_prctl", "ptrace"]
        );
        let p = parse(file, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        assert_eq!(
            names(&p),
            ["read", "write", "getpid", "mount", "arch_prctl", "ptrace"]
        );
    }

    #[test]
    fn localhost_errors_name_the_field() {
        let bad = |json: serde_json::Value, field: &str, says: &str| {
            let (f, m) = parse(json.clone(), &[]).expect_err(&json.to_string());
            assert_eq!(f, field, "{m}");
            assert!(m.contains(says), "{f}: {m}");
        };
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                             {"names": ["b"], "action": "SCMP_ACT_EXPLODE"}]}),
            "syscalls[1].action",
            "unknown action \"SCMP_ACT_EXPLODE\"",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "defaultAction",
            "unknown action",
        );
        bad(
            serde_json::json!({"syscalls": []}),
            "defaultAction",
            "required",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_VAX"]}),
            "architectures[0]",
            "unknown architecture",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}),
            "archMap",
            "both",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}),
            "syscalls[0].args[0].op",
            "unknown operator",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "syscalls[0].args[0].index",
            "0-5",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}),
            "syscalls[0].names",
            "no syscall",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "syscalls[0].errnoRet",
            "only SCMP_ACT_ERRNO",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW",
                              "includes": {"minKernel": "new"}}]}),
            "syscalls[0].includes.minKernel",
            "not a kernel version",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}),
            "syscalls[0].names",
            "expected a sequence",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "listenerPath",
            "required",
        );
    }

    #[test]
    fn localhost_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("profile.json");
        std::fs::write(&f, "{\"defaultAction\": \"SCMP_ACT_ALLOW\",").unwrap();
        let e = localhost(&f).unwrap_err().to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        let e = localhost(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json: read"), "{e}");
        std::fs::write(
            &f,
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
            .to_string(),
        )
        .unwrap();
        assert_eq!(localhost(&f).unwrap().syscalls[0].names, ["read"]);
    }

    #[test]
    fn localhost_roundtrips_the_default_profile() {
        let p = build_default(&default_caps(), &AMD64);
        let back = parse(serde_json::to_value(&p).unwrap(), &[]).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&p).unwrap()
        );
    }
}
