//! berth-shim as berthd uses it, with Debian's runc as the OCI runtime and a
//! busybox bundle: create/start/wait, exit codes, CRI logs, kill, delete,
//! durable exit records, shutdown, attach sessions (pipes and a terminal).
//! Needs root.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use berth_cri::shim::client::call;
use berth_cri::shim::proto::{Request, Response, RuntimeCmd, Status};

/// The OCI runtime the shim drives: runc by default; set
/// BERTH_SHIM_TEST_RUNTIME to run the same tests through berth-runc.
static RUNC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    std::env::var("BERTH_SHIM_TEST_RUNTIME").unwrap_or_else(|_| "/usr/sbin/runc".into())
});

struct Shim {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    ids: Vec<String>,
}

impl Shim {
    fn start() -> Shim {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("shim.sock");
        // BERTH_SHIM_BIN: test another build of the monitor (hack/test.sh
        // runs these tests on the installed lean one too).
        let bin = std::env::var_os("BERTH_SHIM_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_berth-shim").into());
        let mut child = Command::new(bin)
            .arg("--dir")
            .arg(dir.path().join("shim"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("shim.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        Shim {
            child,
            dir,
            socket,
            ids: Vec::new(),
        }
    }

    fn runtime(&self) -> RuntimeCmd {
        RuntimeCmd {
            binary: RUNC.as_str().into(),
            root: self.dir.path().join("runc-root"),
            systemd_cgroup: false,
        }
    }

    /// A busybox bundle running `sh -c script`.
    fn bundle(&self, name: &str, script: &str) -> PathBuf {
        let b = self.dir.path().join(name);
        let rootfs = b.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat", "stty", "tty", "seq"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        assert!(
            Command::new(&*RUNC)
                .arg("spec")
                .current_dir(&b)
                .status()
                .unwrap()
                .success()
        );
        let path = b.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
        spec["linux"]["cgroupsPath"] =
            format!("/berth-shim-test/{}-{name}", std::process::id()).into();
        std::fs::write(&path, spec.to_string()).unwrap();
        b
    }

    async fn create(&mut self, name: &str, script: &str) -> String {
        let id = format!("shimtest-{}-{name}", std::process::id());
        let req = Request::Create {
            id: id.clone(),
            bundle: self.bundle(name, script),
            runtime: self.runtime(),
            log_path: Some(self.dir.path().join("logs").join(format!("{name}.log"))),
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        self.ids.push(id.clone());
        assert_eq!(call(&self.socket, &req).await.unwrap(), Response::Ok);
        id
    }

    /// One request on the shim's socket; a transport error fails the test.
    async fn req(&self, r: Request) -> Response {
        call(&self.socket, &r).await.expect("shim request")
    }

    async fn kill(&self, id: &str, signal: i32) -> Response {
        self.req(Request::Kill {
            id: id.into(),
            signal,
            all: false,
        })
        .await
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let root = self.runtime().root;
        for id in &self.ids {
            let _ = Command::new(&*RUNC)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id])
                .output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // runc removed each container's cgroup; remove the parents we named.
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = ctrl.path().join("berth-shim-test");
            let _ = std::fs::remove_dir(parent.join(std::process::id().to_string()));
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn state_of(r: Response) -> berth_cri::shim::proto::ContainerState {
    match r {
        Response::State { state } => state,
        other => panic!("expected a state, got {other:?}"),
    }
}

#[tokio::test]
async fn runs_a_container_records_its_exit_and_writes_cri_logs() {
    let mut s = Shim::start();
    let id = s.create("c1", "echo hello; echo oops >&2; exit 3").await;
    let st = state_of(s.req(Request::State { id: id.clone() }).await);
    assert_eq!(st.status, Status::Created);
    assert!(st.pid > 0);

    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(st.status, Status::Exited);
    assert_eq!(st.exit_code, Some(3));
    assert!(st.finished_at.unwrap() >= st.started_at.unwrap());

    // The exit status is on disk, for a berthd that was down meanwhile.
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            s.dir
                .path()
                .join("shim/containers")
                .join(format!("{id}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rec["exit_code"], 3);

    // The CRI log: both streams, in CRI format. The copy threads may still
    // be draining right after the exit.
    let mut log = String::new();
    for _ in 0..100 {
        log = s.log("c1");
        if log.lines().count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(log.lines().any(|l| l.ends_with(" stdout F hello")), "{log}");
    assert!(log.lines().any(|l| l.ends_with(" stderr F oops")), "{log}");
    let ts = log.lines().next().unwrap().split(' ').next().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 30, "timestamp {ts}");

    // Delete: gone from the shim and from runc.
    assert_eq!(
        s.req(Request::Delete { id: id.clone() }).await,
        Response::Ok
    );
    assert!(matches!(
        s.req(Request::State { id: id.clone() }).await,
        Response::Error { .. }
    ));
    let list = Command::new(&*RUNC)
        .arg("--root")
        .arg(s.runtime().root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&id));
}

#[tokio::test]
async fn kill_stops_a_running_container_and_shutdown_waits_for_none_left() {
    let mut s = Shim::start();
    let id = s.create("c2", "echo up; exec sleep 1000").await;
    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let st = state_of(s.req(Request::State { id: id.clone() }).await);
    assert_eq!(st.status, Status::Running);

    // Delete of a running container is refused; so is Shutdown.
    assert!(matches!(
        s.req(Request::Delete { id: id.clone() }).await,
        Response::Error { .. }
    ));
    assert!(matches!(
        s.req(Request::Shutdown).await,
        Response::Error { .. }
    ));

    assert_eq!(s.kill(&id, 9).await, Response::Ok);
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(st.exit_code, Some(137), "SIGKILL is exit code 128+9");
    // Killing an exited container is fine.
    assert_eq!(s.kill(&id, 9).await, Response::Ok);
    assert_eq!(
        s.req(Request::Delete { id: id.clone() }).await,
        Response::Ok
    );

    assert_eq!(s.req(Request::Shutdown).await, Response::Ok);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "shim exit {status}");
}

#[tokio::test]
async fn runtime_errors_come_back_with_the_runtime_message() {
    let mut s = Shim::start();
    let id = format!("shimtest-{}-bad", std::process::id());
    let bundle = s.bundle("bad", "true");
    std::fs::remove_dir_all(bundle.join("rootfs")).unwrap();
    s.ids.push(id.clone());
    let r = call(
        &s.socket,
        &Request::Create {
            id: id.clone(),
            bundle,
            runtime: s.runtime(),
            log_path: None,
            stdin: false,
            stdin_once: false,
            tty: false,
        },
    )
    .await
    .unwrap();
    match r {
        Response::Error { message, .. } => assert!(message.contains("runc create"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    let bad = s.req(Request::Start { id: "nope".into() }).await;
    assert!(matches!(
        bad,
        Response::Error {
            kind: berth_cri::shim::proto::ErrorKind::NotFound,
            ..
        }
    ));
    let _ = Path::new("/");
}

#[tokio::test]
async fn a_container_without_a_log_file_can_still_write_output() {
    let mut s = Shim::start();
    let id = format!("shimtest-{}-nolog", std::process::id());
    let req = Request::Create {
        id: id.clone(),
        bundle: s.bundle("nolog", "sleep 0.2; echo out; echo err >&2; exit 0"),
        runtime: s.runtime(),
        log_path: None,
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    s.ids.push(id.clone());
    assert_eq!(s.req(req).await, Response::Ok);
    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(
        st.exit_code,
        Some(0),
        "writing to stdout without a log file must not kill it (SIGPIPE is 141)"
    );
}

/// Read attach frames until `want` is in the output of `kind`, or the
/// session ends; what came of that stream.
async fn read_until(sock: &mut tokio::net::UnixStream, kind: u8, want: &str) -> String {
    use berth_cri::shim::proto::frame;
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = String::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        while !out.contains(want) {
            let n = sock.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            while let Some((k, p, used)) = frame::parse(&buf).unwrap() {
                if k == kind {
                    out.push_str(&String::from_utf8_lossy(p));
                }
                buf.drain(..used);
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), read).await;
    out
}

async fn send_frame(sock: &mut tokio::net::UnixStream, kind: u8, payload: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut f = Vec::new();
    berth_cri::shim::proto::frame::encode(&mut f, kind, payload);
    sock.write_all(&f).await.unwrap();
}

fn attach_req(id: &str) -> Request {
    Request::Attach {
        id: id.to_owned(),
        stdin: true,
        stdout: true,
        stderr: true,
    }
}

#[tokio::test]
async fn attach_sessions_share_stdin_get_output_and_drive_a_terminal() {
    use berth_cri::shim::client::attach;
    use berth_cri::shim::proto::frame;
    let mut s = Shim::start();

    // Pipes: stdin stays open from one session to the next (no stdin_once).
    let id = format!("shimtest-{}-att", std::process::id());
    let bundle = s.bundle("att", "read a; echo got:$a; read b; echo got:$b >&2");
    s.ids.push(id.clone());
    let create = Request::Create {
        id: id.clone(),
        bundle,
        runtime: s.runtime(),
        log_path: Some(s.dir.path().join("logs").join("att.log")),
        stdin: true,
        stdin_once: false,
        tty: false,
    };
    assert_eq!(s.req(create).await, Response::Ok);
    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let (r, sock) = attach(&s.socket, &attach_req(&id)).await.unwrap();
    assert_eq!(r, Response::Ok);
    let mut sock = sock.unwrap();
    send_frame(&mut sock, frame::STDIN, b"one\n").await;
    assert!(
        read_until(&mut sock, frame::STDOUT, "got:one")
            .await
            .contains("got:one")
    );
    // The client's input ends, then the client goes: the container's stdin
    // stays open for the next session.
    send_frame(&mut sock, frame::STDIN_CLOSE, b"").await;
    drop(sock);
    let (_, sock) = attach(&s.socket, &attach_req(&id)).await.unwrap();
    let mut sock = sock.unwrap();
    send_frame(&mut sock, frame::STDIN, b"two\n").await;
    assert!(
        read_until(&mut sock, frame::STDERR, "got:two")
            .await
            .contains("got:two")
    );
    // The container exited: the session ends.
    read_until(&mut sock, frame::STDOUT, "never printed").await;
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(st.exit_code, Some(0));
    let log = s.log("att");
    assert!(
        log.lines().any(|l| l.ends_with(" stdout F got:one")),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.ends_with(" stderr F got:two")),
        "{log}"
    );
    let (r, _) = attach(&s.socket, &attach_req(&id)).await.unwrap();
    assert!(
        matches!(
            r,
            Response::Error {
                kind: berth_cri::shim::proto::ErrorKind::FailedPrecondition,
                ..
            }
        ),
        "attach to an exited container: {r:?}"
    );

    // A terminal: the pty master comes over the console socket; resizes
    // reach the container, its output is logged as stdout.
    let id = format!("shimtest-{}-tty", std::process::id());
    let bundle = s.bundle(
        "tty",
        "for i in $(seq 200); do [ \"$(stty size)\" = '5 7' ] && break; sleep 0.05; done; stty size; tty",
    );
    let cfg = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    spec["process"]["terminal"] = true.into();
    std::fs::write(&cfg, spec.to_string()).unwrap();
    s.ids.push(id.clone());
    let create = Request::Create {
        id: id.clone(),
        bundle,
        runtime: s.runtime(),
        log_path: Some(s.dir.path().join("logs").join("tty.log")),
        stdin: true,
        stdin_once: false,
        tty: true,
    };
    assert_eq!(s.req(create).await, Response::Ok);
    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let (_, sock) = attach(&s.socket, &attach_req(&id)).await.unwrap();
    let mut sock = sock.unwrap();
    send_frame(&mut sock, frame::RESIZE, &[0, 7, 0, 5]).await;
    let out = read_until(&mut sock, frame::STDOUT, "/dev/").await;
    assert!(out.contains("5 7"), "{out}");
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(st.exit_code, Some(0));
    let log = s.log("tty");
    assert!(log.lines().any(|l| l.contains(" stdout F 5 7")), "{log}");
}

#[tokio::test]
async fn a_tty_container_whose_terminal_never_comes_is_removed_again() {
    let mut s = Shim::start();
    // Asked for a tty, but the bundle has no terminal: the runtime refuses,
    // or creates the container without ever sending a pty master.
    let id = format!("shimtest-{}-notty", std::process::id());
    let bundle = s.bundle("notty", "sleep 100");
    s.ids.push(id.clone());
    let r = s
        .req(Request::Create {
            id: id.clone(),
            bundle,
            runtime: s.runtime(),
            log_path: None,
            stdin: true,
            stdin_once: false,
            tty: true,
        })
        .await;
    match r {
        // runc refuses a console socket without a terminal; berth-runc
        // creates the container, and the monitor gives up on it.
        Response::Error { message, .. } => assert!(
            message.contains("pty master") || message.contains("console"),
            "{message}"
        ),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(matches!(
        s.req(Request::State { id: id.clone() }).await,
        Response::Error { .. }
    ));
    // The monitor removes what the runtime made (in the background).
    let mut listed = String::new();
    for _ in 0..100 {
        let list = Command::new(&*RUNC)
            .arg("--root")
            .arg(s.runtime().root)
            .args(["list", "-q"])
            .output()
            .unwrap();
        listed = String::from_utf8_lossy(&list.stdout).into_owned();
        if !listed.contains(&id) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the runtime still lists {id}: {listed}");
}

/// berthd killed while it waits on a container (its `Wait` connection
/// gone, the container still running): the monitor must idle, not spin on
/// the hung-up socket, and still answer the next client.
#[tokio::test]
async fn a_waiter_that_goes_away_does_not_make_the_monitor_spin() {
    use tokio::io::AsyncWriteExt;
    let mut s = Shim::start();
    let id = s.create("c9", "exec sleep 1000").await;
    assert_eq!(s.req(Request::Start { id: id.clone() }).await, Response::Ok);
    let mut sock = tokio::net::UnixStream::connect(&s.socket).await.unwrap();
    let mut line = serde_json::to_vec(&Request::Wait { id: id.clone() }).unwrap();
    line.push(b'\n');
    sock.write_all(&line).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(sock);
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(") ").unwrap().1;
        let f: Vec<&str> = rest.split(' ').collect();
        // utime and stime: fields 14 and 15, 12 and 13 after the name.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let before = ticks(s.child.id());
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let used = ticks(s.child.id()) - before;
    // A spinning loop takes a whole core: ~200 ticks in 2 s. An idle
    // monitor takes none.
    assert!(
        used < 20,
        "the monitor used {used} ticks in 2 s with its waiter gone"
    );
    let st = state_of(s.req(Request::State { id: id.clone() }).await);
    assert_eq!(st.status, Status::Running);
    assert_eq!(s.kill(&id, 9).await, Response::Ok);
    let st = state_of(s.req(Request::Wait { id: id.clone() }).await);
    assert_eq!(st.exit_code, Some(137));
    assert_eq!(s.req(Request::Delete { id }).await, Response::Ok);
}
