//! exec into a running container, the console socket, and parity with runc
//! on the same bundle. Needs root.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use berth_tests::bundle::{Bundle, cgroup_v2, require_root};

#[test]
fn exec_joins_namespaces_and_cgroup_and_returns_status() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("ex-join");
    b.config["hostname"] = "exec-host".into();
    b.set_args(&["sleep", "1000"]);
    let (ok, err) = b.runc_bg(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    let init = b.state().unwrap()["pid"].as_i64().unwrap();
    let o = b.runc(&[
        "exec",
        "--env",
        "EXTRA=1",
        "--user",
        "1000:1000",
        &b.id,
        "/berth-check",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for n in ["mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        let init_ns = std::fs::read_link(format!("/proc/{init}/ns/{n}")).unwrap();
        assert_eq!(v["namespaces"][n], init_ns.display().to_string(), "{n}");
    }
    assert_eq!(v["hostname"], "exec-host");
    assert_eq!(v["uid"], "1000\t1000\t1000\t1000");
    assert!(v["env"].as_array().unwrap().iter().any(|e| e == "EXTRA=1"));
    // In its cgroup namespace the container's own cgroup is the root.
    let own_root = if cgroup_v2() { "0::/\n" } else { ":memory:/\n" };
    assert!(
        v["cgroup"].as_str().unwrap().contains(own_root),
        "{}",
        v["cgroup"]
    );
    let code = b.runc(&["exec", &b.id, "sh", "-c", "exit 5"]).status.code();
    assert_eq!(code, Some(5));
    let ps = b.runc(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i64> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids, [init], "exec'd processes left behind");
    // --process JSON
    let pj = b.dir.join("process.json");
    std::fs::write(&pj, r#"{"args": ["sh", "-c", "echo from-json $X"], "env": ["X=y", "PATH=/bin"], "cwd": "/tmp"}"#).unwrap();
    let o = b.runc(&["exec", "--process", pj.to_str().unwrap(), &b.id]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "from-json y\n");
}

#[test]
fn terminal_master_is_sent_over_the_console_socket() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("ex-tty");
    b.config["process"]["terminal"] = true.into();
    b.set_args(&["sh", "-c", "tty; echo hi-from-tty"]);
    let sock = b.dir.join("console.sock");
    // A console-socket receiver: takes the pty master, prints what it reads.
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
_, fds, _, _ = socket.recv_fds(c, 16, 1)
out = b""
while True:
    try:
        d = os.read(fds[0], 4096)
    except OSError:
        break
    if not d:
        break
    out += d
print(out.decode(errors="replace"), flush=True)
"#;
    let mut rx = Command::new("python3")
        .args(["-c", script, sock.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rx.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let (ok, err) = b.runc_bg(&[
        "run",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.dir.to_str().unwrap(),
        &b.id,
    ]);
    assert!(ok, "{err}");
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let _ = rx.wait();
    let text = rest.join("\n");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("hi-from-tty"), "{text}");
}

/// runc and berth-runc on the same bundle report the same identity,
/// capabilities, limits and hostname to the process.
#[test]
fn same_view_as_runc() {
    require_root();
    assert!(
        std::path::Path::new("/usr/sbin/runc").exists(),
        "the parity test needs Debian's runc: sudo hack/testbed.sh up"
    );
    let mut b = Bundle::new("ex-parity");
    b.config["process"]["user"] = serde_json::json!({"uid": 0, "gid": 0, "additionalGids": [10]});
    b.config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}]);
    let ours = b.check();
    b.runtime = "/usr/sbin/runc".into();
    b.id = format!("{}-runc", b.id);
    b.config["linux"]["cgroupsPath"] = format!("/berth-test/{}", b.id).into();
    let theirs = b.check();
    for k in [
        "uid",
        "gid",
        "groups",
        "cap_inh",
        "cap_prm",
        "cap_eff",
        "cap_bnd",
        "cap_amb",
        "no_new_privs",
        "hostname",
        "cwd",
        "pid",
    ] {
        assert_eq!(ours[k], theirs[k], "{k} differs from runc");
    }
    let lim = |v: &serde_json::Value| v["limits"].as_str().unwrap().to_owned();
    assert_eq!(lim(&ours), lim(&theirs));
    let mounts = |v: &serde_json::Value| {
        let mut m: Vec<String> = v["mountinfo"]
            .as_str()
            .unwrap()
            .lines()
            .map(|l| l.split(' ').nth(4).unwrap().to_owned())
            .collect();
        m.sort();
        m.dedup();
        m
    };
    let (om, tm) = (mounts(&ours), mounts(&theirs));
    for m in &tm {
        assert!(om.contains(m), "runc mounts {m}, berth-runc does not");
    }
}
