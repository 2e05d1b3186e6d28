//! SCMP_ACT_NOTIFY: berth-runc hands the notify fd, with the container
//! process state, to the seccomp agent at `listenerPath`; the agent (this
//! test) answers the container's syscalls. Checked from the container's
//! side (what its `mkdir` got) and from the agent's (the state it was
//! sent, one connection per process). Needs root.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;

use berth_tests::bundle::{Bundle, require_root};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};

/// An errno no mkdir would return by itself.
const AGENT_ERRNO: i32 = libc::ENOTUNIQ;

/// What one connection brought: the state JSON and the syscalls answered.
struct Seen {
    state: serde_json::Value,
    syscalls: Vec<String>,
}

/// Accept connections on `sock`; per connection, read the state and the
/// fd, then answer notifications until the process is gone: the first
/// `mkdir` fails with AGENT_ERRNO, every later one goes ahead (CONTINUE).
fn agent(listener: UnixListener, tx: mpsc::Sender<Seen>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut space = nix::cmsg_space!([RawFd; 1]);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .expect("recvmsg from berth-runc");
            let n = msg.bytes;
            let mut fd: Option<OwnedFd> = None;
            for c in msg.cmsgs().unwrap() {
                if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the kernel installed these fds for this
                    // message; we are their only owner.
                    fd = fds.first().map(|f| unsafe { OwnedFd::from_raw_fd(*f) });
                }
            }
            let state: serde_json::Value =
                serde_json::from_slice(&buf[..n]).expect("state message is JSON");
            let fd = fd.expect("the message carries the notify fd");
            let mut syscalls = Vec::new();
            // receive fails once the filtered process is gone.
            while let Ok(req) = ScmpNotifReq::receive(fd.as_raw_fd()) {
                let name = req.data.syscall.get_name().unwrap_or_default();
                let resp = if syscalls.is_empty() {
                    ScmpNotifResp::new_error(req.id, -AGENT_ERRNO, ScmpNotifRespFlags::empty())
                } else {
                    ScmpNotifResp::new_val(req.id, 0, ScmpNotifRespFlags::CONTINUE)
                };
                syscalls.push(name);
                let _ = resp.respond(fd.as_raw_fd());
            }
            let _ = tx.send(Seen { state, syscalls });
        });
    }
}

fn notify_profile(listener: &std::path::Path) -> serde_json::Value {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener,
        "listenerMetadata": "berth-test-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn agent_gets_the_fd_and_answers_the_containers_syscalls() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("notify");
    let sock = b.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || agent(listener, tx));
    b.config["linux"]["seccomp"] = notify_profile(&sock);
    b.config["annotations"] = serde_json::json!({"org.example/test": "notify"});
    b.config["root"]["readonly"] = false.into();
    b.set_args(&[
        "sh",
        "-c",
        "mkdir /tmp/first; echo first=$?; mkdir /tmp/second; echo second=$?; ls -d /tmp/second",
    ]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "run failed: {err}");
    assert!(
        out.contains("first=1"),
        "the agent's refusal did not reach mkdir: {out} {err}"
    );
    assert!(
        err.contains(&errno_text(AGENT_ERRNO)),
        "mkdir did not report the agent's errno: {err}"
    );
    assert!(
        out.contains("second=0") && out.contains("/tmp/second"),
        "{out} {err}"
    );
    assert!(!b.rootfs().join("tmp/first").exists());
    assert!(b.rootfs().join("tmp/second").is_dir());

    let seen = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the agent was sent a connection");
    let s = &seen.state;
    assert_eq!(s["fds"], serde_json::json!(["seccompFd"]), "{s}");
    assert_eq!(s["metadata"], "berth-test-metadata", "{s}");
    assert_eq!(s["state"]["id"], b.id.as_str(), "{s}");
    assert_eq!(s["state"]["status"], "creating", "{s}");
    assert_eq!(s["state"]["bundle"], b.dir.to_str().unwrap(), "{s}");
    assert_eq!(
        s["state"]["annotations"]["org.example/test"], "notify",
        "{s}"
    );
    assert!(s["pid"].as_i64().unwrap() > 1);
    assert_eq!(s["pid"], s["state"]["pid"], "{s}");
    assert_eq!(seen.syscalls.len(), 2, "{:?}", seen.syscalls);
    assert!(
        seen.syscalls.iter().all(|n| n.starts_with("mkdir")),
        "{:?}",
        seen.syscalls
    );
}

#[test]
fn exec_hands_its_own_fd_to_the_agent() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("notify-exec");
    let sock = b.dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || agent(listener, tx));
    b.config["linux"]["seccomp"] = notify_profile(&sock);
    b.set_args(&["sleep", "60"]);
    let (ok, err) = b.runc_bg(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    // The init's connection lasts as long as the init, so the first report
    // is the exec'd process's, sent when it exits.
    let o = b.runc(&["exec", &b.id, "mkdir", "/tmp/by-exec"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&errno_text(AGENT_ERRNO)), "{stderr}");
    let seen = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the exec'd process's fd reached the agent");
    let s = &seen.state;
    let init_pid = b.state().unwrap()["pid"].as_i64().unwrap();
    assert_eq!(s["state"]["status"], "running", "{s}");
    assert_eq!(s["state"]["pid"].as_i64(), Some(init_pid), "{s}");
    assert_ne!(
        s["pid"].as_i64(),
        Some(init_pid),
        "the exec'd process is not the init: {s}"
    );
    assert_eq!(seen.syscalls.len(), 1, "{:?}", seen.syscalls);
}

#[test]
fn unreachable_agent_fails_create_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("notify-noagent");
    let sock = b.dir.join("nobody-listens.sock");
    b.config["linux"]["seccomp"] = notify_profile(&sock);
    b.set_args(&["true"]);
    let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(!ok);
    assert!(
        err.contains("notify fd") && err.contains(sock.to_str().unwrap()),
        "error does not name the agent: {err}"
    );
    assert!(!b.state_root.join(&b.id).exists(), "state dir left behind");
    assert!(!b.cgroup_dir("memory").exists(), "cgroup left behind");
}

#[test]
fn notify_on_everything_or_on_sendmsg_is_refused_by_name() {
    if !require_root() {
        return;
    }
    for (profile, field) in [
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"}),
            "linux.seccomp.defaultAction",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock",
                "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath",
        ),
    ] {
        let mut b = Bundle::new("notify-bad");
        b.config["linux"]["seccomp"] = profile;
        b.write_config();
        let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
        assert!(!ok);
        assert!(err.contains(&format!("config.json: {field}")), "{err}");
        assert!(!b.state_root.join(&b.id).exists(), "state dir left behind");
    }
}
