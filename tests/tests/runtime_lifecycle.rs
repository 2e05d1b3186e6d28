//! berth-runc lifecycle, asserted from inside the container (berth-check)
//! and through `state`. Needs root (hack/test.sh runs it as root).

use berth_tests::bundle::{Bundle, cgroup_v2, require_root};

macro_rules! need_root {
    () => {
        if !require_root() {
            return;
        }
    };
}

fn host_ns(n: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{n}"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn container_sees_its_own_namespaces_identity_and_limits() {
    need_root!();
    let mut b = Bundle::new("rt-ident");
    std::fs::create_dir_all(b.rootfs().join("work/sub")).unwrap();
    b.config["hostname"] = "berth-ident".into();
    b.config["process"]["user"] =
        serde_json::json!({"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001]});
    b.config["process"]["cwd"] = "/work/sub".into();
    b.config["process"]["env"] = serde_json::json!(["PATH=/bin", "FOO=bar"]);
    b.config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1234, "soft": 1000}]);
    b.config["process"]["oomScoreAdj"] = 500.into();
    b.config["process"]["capabilities"] = serde_json::json!({
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"]
    });
    let v = b.check();
    for n in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        assert_ne!(
            v["namespaces"][n],
            host_ns(n),
            "{n} namespace is the host's"
        );
    }
    assert_eq!(v["namespaces"]["user"], host_ns("user"));
    assert_eq!(v["pid"], 1);
    assert_eq!(v["hostname"], "berth-ident");
    assert_eq!(v["uid"], "1000\t1000\t1000\t1000");
    assert_eq!(v["gid"], "1001\t1001\t1001\t1001");
    assert_eq!(v["groups"], "2000 2001");
    assert_eq!(v["cwd"], "/work/sub");
    // CAP_CHOWN(0) only in bounding. A non-root uid keeps across exec only
    // its ambient set: CAP_KILL(5); CAP_NET_BIND_SERVICE(10) is dropped.
    assert_eq!(v["cap_bnd"], "0000000000000421");
    assert_eq!(v["cap_eff"], "0000000000000020");
    assert_eq!(v["cap_prm"], "0000000000000020");
    assert_eq!(v["cap_inh"], "0000000000000020");
    assert_eq!(v["cap_amb"], "0000000000000020");
    assert_eq!(v["no_new_privs"], "1");
    assert_eq!(v["oom_score_adj"], "500");
    let limits = v["limits"].as_str().unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        nofile.split_whitespace().collect::<Vec<_>>()[3..5],
        ["1000", "1234"]
    );
    let env: Vec<&str> = v["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(env.contains(&"FOO=bar"), "{env:?}");
    // The rootfs is mounted read-only (the default spec), /proc/sys too.
    let mi = v["mountinfo"].as_str().unwrap();
    let root_line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap();
    assert!(
        root_line.split(' ').nth(5).unwrap().starts_with("ro"),
        "{root_line}"
    );
    let sys_line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/proc/sys"))
        .unwrap();
    assert!(
        sys_line.split(' ').nth(5).unwrap().starts_with("ro"),
        "{sys_line}"
    );
    for masked in ["/proc/keys", "/proc/timer_list", "/sys/firmware"] {
        assert!(
            mi.lines().any(|l| l.split(' ').nth(4) == Some(masked)),
            "{masked} not masked"
        );
    }
}

#[test]
fn run_exits_with_the_container_status() {
    need_root!();
    let mut b = Bundle::new("rt-exit");
    b.set_args(&["sh", "-c", "echo out; exit 3"]);
    let (code, out, _) = b.run();
    assert_eq!(code, 3);
    assert_eq!(out, "out\n");
    assert!(b.state().is_none(), "run without --keep left the container");
    assert!(!b.cgroup_dir("memory").exists());
}

#[test]
fn create_start_kill_delete_walks_the_states() {
    need_root!();
    let mut b = Bundle::new("rt-life");
    b.set_args(&["sleep", "1000"]);
    let pid_file = b.dir.join("init.pid");
    let (ok, err) = b.runc_bg(&[
        "create",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    assert!(ok, "{err}");
    let st = b.state().unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // created: the init waits, the process has not been exec'd yet, and
    // the init runs from a copy of the runtime that cannot be written
    // (CVE-2019-5736): a read-only mount, or a sealed memfd.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_ne!(comm.trim(), "sleep");
    let exe_path = format!("/proc/{pid}/exe");
    let exe = std::fs::read_link(&exe_path).unwrap();
    let ro = rustix::fs::statvfs(exe_path.as_str())
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    assert!(
        ro || exe.to_string_lossy().starts_with("/memfd:berth-runc"),
        "the init's binary {exe:?} is writable"
    );
    let w = std::fs::OpenOptions::new().write(true).open(&exe_path);
    assert!(w.is_err(), "opened the init's binary for writing");
    let l = b.runc(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    assert_eq!(list[0]["status"], "created");

    assert!(b.runc(&["start", &b.id]).status.success());
    assert_eq!(b.status().as_deref(), Some("running"));
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let again = b.runc(&["start", &b.id]);
    assert!(!again.status.success());

    let del = b.runc(&["delete", &b.id]);
    assert!(!del.status.success());
    assert!(String::from_utf8_lossy(&del.stderr).contains("not stopped"));

    assert!(b.runc(&["kill", &b.id, "KILL"]).status.success());
    for _ in 0..200 {
        if b.status().as_deref() == Some("stopped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let st = b.state().unwrap();
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pid"], 0);
    let k = b.runc(&["kill", &b.id, "TERM"]);
    assert!(!k.status.success(), "kill of a stopped container succeeded");
    assert!(b.runc(&["delete", &b.id]).status.success());
    assert!(b.state().is_none());
    assert!(!b.state_root.join(&b.id).exists());
    assert!(!b.cgroup_dir("memory").exists());
}

#[test]
fn delete_force_stops_a_running_container_and_pause_freezes_it() {
    need_root!();
    let mut b = Bundle::new("rt-force");
    b.set_args(&["sleep", "1000"]);
    let (ok, err) = b.runc_bg(&[
        "run",
        "--detach",
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id,
    ]);
    assert!(ok, "{err}");
    assert_eq!(b.status().as_deref(), Some("running"));
    assert!(b.runc(&["pause", &b.id]).status.success());
    assert_eq!(b.status().as_deref(), Some("paused"));
    let (file, want) = if cgroup_v2() {
        ("cgroup.freeze", "1")
    } else {
        ("freezer.state", "FROZEN")
    };
    let frozen = std::fs::read_to_string(b.cgroup_dir("freezer").join(file)).unwrap();
    assert_eq!(frozen.trim(), want);
    assert!(b.runc(&["resume", &b.id]).status.success());
    assert_eq!(b.status().as_deref(), Some("running"));
    let ps = b.runc(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids, [b.state().unwrap()["pid"].as_i64().unwrap()]);
    let o = b.runc(&["delete", "--force", &b.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(b.state().is_none());
    assert!(!b.cgroup_dir("memory").exists());
    assert!(!b.cgroup_dir("freezer").exists());
}

#[test]
fn seccomp_profile_denies_listed_syscalls() {
    need_root!();
    let mut b = Bundle::new("rt-seccomp");
    b.config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.config["root"]["readonly"] = false.into();
    b.set_args(&[
        "sh",
        "-c",
        "mkdir /tmp/x; echo rc=$?; grep Seccomp: /proc/self/status",
    ]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // The compiled program is cached under the state root.
    let cache = b.state_root.join(".cache/seccomp");
    assert_eq!(std::fs::read_dir(cache).unwrap().count(), 1);
}

#[test]
fn hooks_get_state_on_stdin() {
    need_root!();
    let mut b = Bundle::new("rt-hooks");
    let out = b.dir.join("hook.out");
    let hook = |name: &str| serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", out.display())]});
    b.config["hooks"] = serde_json::json!({
        "prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")], "poststop": [hook("poststop")]
    });
    b.set_args(&["true"]);
    let (code, _, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    let kinds: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        kinds,
        ["prestart", "createRuntime", "poststart", "poststop"]
    );
    assert!(text.contains(&format!("\"id\":\"{}\"", b.id)), "{text}");
}

#[test]
fn user_namespace_maps_root() {
    need_root!();
    let mut b = Bundle::new("rt-userns");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    b.config["linux"]["uidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    b.config["linux"]["gidMappings"] =
        serde_json::json!([{"containerID": 0, "hostID": 0, "size": 65536}]);
    let v = b.check();
    assert_ne!(v["namespaces"]["user"], host_ns("user"));
    assert_eq!(v["uid"], "0\t0\t0\t0");
}

#[test]
fn io_priority_and_personality_apply() {
    need_root!();
    let mut b = Bundle::new("rt-ioprio");
    b.config["process"]["ioPriority"] =
        serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    b.config["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    b.set_args(&["sh", "-c", "busybox ionice -p $$; busybox uname -m"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("best-effort: prio 6"), "{out}");
    assert!(out.contains("i686"), "{out}");
}

#[test]
fn scheduler_policy_and_nice_apply() {
    need_root!();
    let mut b = Bundle::new("rt-sched");
    b.config["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_BATCH", "nice": 7});
    // Field 19 of /proc/self/stat is the nice value; field 41 the policy
    // (SCHED_BATCH = 3).
    b.set_args(&["sh", "-c", "busybox cut -d' ' -f19,41 /proc/self/stat"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "7 3",
        "nice and policy of the container process"
    );
    // SCHED_IDLE (5). Real-time policies are not tried: with the v1 cpu
    // controller a new cgroup has no real-time budget (cpu.rt_runtime_us
    // 0), and the kernel refuses them there, for runc as for us.
    b.config["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_IDLE"});
    b.write_config();
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "0 5", "SCHED_IDLE applied");
}

#[test]
fn invalid_scheduler_is_refused_naming_the_field() {
    need_root!();
    let mut b = Bundle::new("rt-sched-bad");
    for (sched, field) in [
        (
            serde_json::json!({"policy": "SCHED_BOGUS"}),
            "process.scheduler.policy",
        ),
        (
            serde_json::json!({"policy": "SCHED_OTHER", "priority": 5}),
            "process.scheduler.priority",
        ),
        (
            serde_json::json!({"policy": "SCHED_OTHER", "nice": 40}),
            "process.scheduler.nice",
        ),
        (
            serde_json::json!({"policy": "SCHED_RR", "priority": 1, "flags": ["X"]}),
            "process.scheduler.flags[0]",
        ),
    ] {
        b.config["process"]["scheduler"] = sched;
        b.write_config();
        let (code, _, err) = b.run();
        assert_ne!(code, 0);
        assert!(err.contains(field), "{field} not named: {err}");
        assert!(b.state().is_none(), "a refused container left state");
    }
}

/// A profile loaded for one test and removed after it.
struct AppArmorProfile(String);

impl AppArmorProfile {
    fn load(name: &str, rules: &str) -> Self {
        let text = format!("profile {name} flags=(attach_disconnected) {{\n{rules}\n}}\n");
        let mut child = std::process::Command::new("apparmor_parser")
            .args(["-r", "-K"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("AppArmor is on: apparmor_parser (Debian apparmor) must be installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "apparmor_parser refused {text}"
        );
        Self(name.to_owned())
    }
}

impl Drop for AppArmorProfile {
    fn drop(&mut self) {
        let text = format!("profile {} {{\n}}\n", self.0);
        if let Ok(mut c) = std::process::Command::new("apparmor_parser")
            .arg("-R")
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            use std::io::Write;
            let _ = c.stdin.take().unwrap().write_all(text.as_bytes());
            let _ = c.wait();
        }
    }
}

fn apparmor_enabled() -> bool {
    std::fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.starts_with(b"Y"))
}

#[test]
fn apparmor_profile_confines_or_is_refused_without_apparmor() {
    need_root!();
    let mut b = Bundle::new("rt-aa");
    let name = format!("berth-test-{}", b.id);
    b.config["process"]["apparmorProfile"] = name.clone().into();
    b.set_args(&[
        "sh",
        "-c",
        "cat /proc/self/attr/current; echo x > /tmp/denied && echo wrote",
    ]);
    if !apparmor_enabled() {
        // This host cannot enforce it: refused, not run unconfined.
        let (code, out, err) = b.run();
        assert_ne!(code, 0, "ran without AppArmor: {out}");
        assert!(
            err.contains("process.apparmorProfile") && err.contains("AppArmor is not enabled"),
            "{err}"
        );
        assert!(b.state().is_none(), "a refused container left state");
        return;
    }
    let _p = AppArmorProfile::load(
        &name,
        "  file,\n  capability,\n  network,\n  signal,\n  deny /tmp/** w,",
    );
    let (code, out, err) = b.run();
    assert_ne!(code, 0, "the denied write succeeded: {out}");
    assert!(
        out.contains(&format!("{name} (enforce)")),
        "not confined: {out}"
    );
    assert!(!out.contains("wrote"), "{out}");
    assert!(
        err.contains("denied") || err.contains("Permission"),
        "{err}"
    );
    // An exec'd process gets the container's profile, or the one named.
    b.set_args(&["sleep", "30"]);
    let (ok, err) = b.runc_bg(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    let o = b.runc(&["exec", &b.id, "cat", "/proc/self/attr/current"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains(&name), "{o:?}");
    let o = b.runc(&[
        "exec",
        "--apparmor",
        "unconfined",
        &b.id,
        "cat",
        "/proc/self/attr/current",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "unconfined",
        "{o:?}"
    );
    let o = b.runc(&["delete", "--force", &b.id]);
    assert!(o.status.success(), "{o:?}");
}

/// Accept one connection on `path` and receive the fd sent on it.
fn receive_one_fd(path: &std::path::Path) -> std::thread::JoinHandle<std::os::fd::OwnedFd> {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let (s, _) = l.accept().unwrap();
        berth_runtime::sys::recv_fd(s.as_fd()).unwrap()
    })
}

/// The pid a pidfd refers to, from its fdinfo.
fn pidfd_pid(fd: &std::os::fd::OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Pid:")?.trim().parse().ok())
        .expect("a pidfd's fdinfo has Pid:")
}

#[test]
fn pidfd_socket_receives_the_init_and_exec_processes() {
    need_root!();
    let mut b = Bundle::new("rt-pidfd");
    b.set_args(&["sleep", "30"]);
    let sock = b.dir.join("pidfd.sock");
    let rx = receive_one_fd(&sock);
    let (ok, err) = b.runc_bg(&[
        "create",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id,
    ]);
    assert!(ok, "{err}");
    let fd = rx.join().unwrap();
    let pid = b.state().unwrap()["pid"].as_i64().unwrap() as i32;
    assert_eq!(pidfd_pid(&fd), pid, "the pidfd is not the init's");
    assert!(b.runc(&["start", &b.id]).status.success());

    let sock2 = b.dir.join("pidfd2.sock");
    let rx = receive_one_fd(&sock2);
    let pid_file = b.dir.join("exec.pid");
    let (ok, err) = b.runc_bg(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--pidfd-socket",
        sock2.to_str().unwrap(),
        &b.id,
        "sleep",
        "30",
    ]);
    assert!(ok, "{err}");
    let fd = rx.join().unwrap();
    let exec_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        pidfd_pid(&fd),
        exec_pid,
        "the pidfd is not the exec'd process's"
    );

    // A socket nobody listens on: refused before anything starts.
    let o = b.runc(&[
        "exec",
        "--pidfd-socket",
        b.dir.join("nobody.sock").to_str().unwrap(),
        &b.id,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--pidfd-socket"),
        "{o:?}"
    );
    assert!(b.runc(&["delete", "--force", &b.id]).status.success());
}
