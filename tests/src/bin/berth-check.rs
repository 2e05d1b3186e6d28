//! berth-check: runs inside a container and reports what the container sees
//! (identity, capabilities, namespaces, cgroups, mounts, limits) as JSON on
//! stdout, so tests assert from the inside. Built statically.
//!
//! `berth-check syscalls` instead tries the syscalls a seccomp profile
//! decides on and reports, per probe, 0 or the errno it failed with.

use std::fs;

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("syscalls") {
        println!("{}", syscalls::probe_all());
        return;
    }
    let status = read("/proc/self/status");
    let mut ns = serde_json::Map::new();
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        let target = fs::read_link(format!("/proc/self/ns/{n}")).map(|p| p.display().to_string());
        ns.insert(n.into(), target.unwrap_or_default().into());
    }
    let report = serde_json::json!({
        "pid": std::process::id(),
        "uid": status_field(&status, "Uid:"),
        "gid": status_field(&status, "Gid:"),
        "groups": status_field(&status, "Groups:"),
        "cap_inh": status_field(&status, "CapInh:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "cap_amb": status_field(&status, "CapAmb:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "seccomp": status_field(&status, "Seccomp:"),
        "hostname": read("/proc/sys/kernel/hostname").trim(),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "namespaces": ns,
        "cgroup": read("/proc/self/cgroup"),
        "mountinfo": read("/proc/self/mountinfo"),
        "limits": read("/proc/self/limits"),
        "oom_score_adj": read("/proc/self/oom_score_adj").trim(),
        "env": std::env::vars().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    println!("{report}");
}

/// Syscall probes for the seccomp tests. Each probe that could change this
/// process (namespaces, personality, mounts) runs in a forked child, which
/// exits with the errno (0 on success) for the parent to read.
mod syscalls {
    use std::io::{Read, Write};

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }

    /// 0 when `r` is not negative, else errno.
    fn result(r: libc::c_long) -> i32 {
        if r < 0 { errno() } else { 0 }
    }

    /// Run `f` in a forked child; its result is the child's exit code.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: fork in a single-threaded program; the child only makes
        // raw syscalls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return -errno();
        }
        if pid == 0 {
            let code = f();
            // SAFETY: ends the child without running the parent's atexit
            // handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) };
        }
        wait_code(pid)
    }

    fn wait_code(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            return -errno();
        }
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1000 - libc::WTERMSIG(status)
        }
    }

    /// A raw fork-like syscall (`clone`, `clone3`): the child exits 0 at
    /// once; 0 when it ran, else errno.
    fn spawn(r: libc::c_long) -> i32 {
        if r < 0 {
            return errno();
        }
        if r == 0 {
            // SAFETY: the child of a raw clone without CLONE_VM owns a copy
            // of our memory; it leaves at once.
            unsafe { libc::_exit(0) };
        }
        wait_code(r as libc::pid_t)
    }

    fn clone(flags: libc::c_int) -> i32 {
        in_child(|| {
            // SAFETY: clone without CLONE_VM and a null stack behaves like
            // fork; the child leaves in `spawn`.
            spawn(unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (flags | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            })
        })
    }

    fn clone3() -> i32 {
        in_child(|| {
            // struct clone_args, version 0: flags, pidfd, child_tid,
            // parent_tid, exit_signal, stack, stack_size, tls.
            let mut args = [0u64; 8];
            args[4] = libc::SIGCHLD as u64;
            // SAFETY: `args` is a valid clone_args of the size passed; no
            // CLONE_VM, so the child runs on a copy of our memory.
            spawn(unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_mut_ptr(),
                    std::mem::size_of_val(&args),
                )
            })
        })
    }

    fn file_io() -> i32 {
        let path = "/tmp/berth-check-io";
        let res = std::fs::File::create(path)
            .and_then(|mut f| f.write_all(b"berth"))
            .and_then(|_| {
                let mut s = String::new();
                std::fs::File::open(path)?.read_to_string(&mut s)?;
                let _ = std::fs::remove_file(path);
                Ok(s)
            });
        match res {
            Ok(s) if s == "berth" => 0,
            Ok(_) => -1,
            Err(e) => e.raw_os_error().unwrap_or(-1),
        }
    }

    pub fn probe_all() -> serde_json::Value {
        const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
        const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;
        const BPF_MAP_CREATE: libc::c_long = 0;
        const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0040000;
        let mut r = serde_json::Map::new();
        let mut put = |k: &str, v: i32| {
            r.insert(k.into(), v.into());
        };
        put("file_io", file_io());
        put("fork", in_child(|| 0));
        put("clone", clone(0));
        put("clone_newuser", clone(libc::CLONE_NEWUSER));
        put("clone_newns", clone(libc::CLONE_NEWNS));
        put("clone3", clone3());
        // SAFETY (all probes below): raw syscalls with scalar or null
        // arguments, or pointers to live local C strings.
        let unshare = |flags| {
            in_child(|| {
                // SAFETY: see above; in a child, so this process keeps its
                // namespaces.
                result(unsafe { libc::unshare(flags) } as _)
            })
        };
        put("unshare_user", unshare(libc::CLONE_NEWUSER));
        put("unshare_mount", unshare(libc::CLONE_NEWNS));
        put(
            "mount_tmpfs",
            in_child(|| {
                // SAFETY: see above; in a new mount namespace when allowed,
                // so the container's tree is left alone.
                unsafe { libc::unshare(libc::CLONE_NEWNS) };
                // SAFETY: see above; all pointers are static C strings or
                // null.
                result(unsafe {
                    libc::mount(
                        c"berth".as_ptr(),
                        c"/tmp".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                } as _)
            }),
        );
        put(
            "keyctl",
            in_child(|| {
                // SAFETY: see above.
                result(unsafe {
                    libc::syscall(
                        libc::SYS_keyctl,
                        KEYCTL_GET_KEYRING_ID,
                        KEY_SPEC_PROCESS_KEYRING,
                        1 as libc::c_long,
                    )
                })
            }),
        );
        put(
            "add_key",
            in_child(|| {
                // SAFETY: see above.
                result(unsafe {
                    libc::syscall(
                        libc::SYS_add_key,
                        c"user".as_ptr(),
                        c"berth-check".as_ptr(),
                        c"x".as_ptr(),
                        1usize,
                        KEY_SPEC_PROCESS_KEYRING,
                    )
                })
            }),
        );
        put(
            "bpf",
            // SAFETY: see above; a null attr with size 0.
            result(unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, 0usize, 0usize) }),
        );
        put(
            "personality_query",
            // SAFETY: see above; the query changes nothing.
            result(unsafe { libc::personality(0xffff_ffff) } as _),
        );
        put(
            "personality_no_aslr",
            in_child(|| {
                // SAFETY: see above; in a child, so this process keeps its
                // personality.
                result(unsafe { libc::personality(ADDR_NO_RANDOMIZE) } as _)
            }),
        );
        let socket = |domain| {
            // SAFETY: see above; the descriptor is closed at once.
            let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) };
            if fd < 0 {
                return errno();
            }
            // SAFETY: closes the descriptor just made.
            unsafe { libc::close(fd) };
            0
        };
        put("socket_unix", socket(libc::AF_UNIX));
        put("socket_vsock", socket(libc::AF_VSOCK));
        put(
            "ptrace_traceme",
            in_child(|| {
                // SAFETY: see above.
                result(unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) })
            }),
        );
        put(
            "chroot",
            // SAFETY: see above; in a child, so this process keeps its root.
            in_child(|| result(unsafe { libc::chroot(c"/tmp".as_ptr()) } as _)),
        );
        serde_json::Value::Object(r)
    }
}
