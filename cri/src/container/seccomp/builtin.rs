//! The built-in `RuntimeDefault` profile: a table of syscall groups, each
//! allowed (or answered with an errno) when its gates hold for the
//! container's capabilities and the host.

use std::collections::BTreeSet;

use berth_runtime::config::spec::{Seccomp, SeccompArg, SeccompSyscall};

use super::{Host, normalize_cap};

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

fn gate_holds(g: &Gate, caps: &BTreeSet<String>, host: &Host) -> bool {
    match g {
        Gate::Cap(c) => caps.contains(*c),
        Gate::NoCap(c) => !caps.contains(*c),
        Gate::Kernel(maj, min) => host.kernel.is_some_and(|k| k >= (*maj, *min)),
        Gate::Arch(a) => a.contains(&host.arch),
    }
}

/// `RuntimeDefault` for a process with `caps` on `host`: one rule for all
/// the plain allows, then the conditional and errno rules.
pub(super) fn build_default(caps: &[String], host: &Host) -> Seccomp {
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
}
