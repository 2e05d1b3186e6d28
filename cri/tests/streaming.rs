//! The streaming server (`Exec`, `PortForward`) driven the way users drive
//! it: crictl, which speaks SPDY/3.1 through client-go. Needs root,
//! `hack/testbed.sh up` (registry with busybox and the web image) and a
//! crictl binary (`BERTH_CRICTL`, default `_output/bin/crictl`).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Berthd;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

fn busybox() -> String {
    std::env::var("BERTH_BUSYBOX_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/library/busybox:latest".into())
}

const WEB: &str = "127.0.0.1:5000/berth/web:latest";

fn crictl_path() -> std::path::PathBuf {
    std::env::var_os("BERTH_CRICTL").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../_output/bin/crictl"),
        Into::into,
    )
}

fn crictl(b: &Berthd) -> Command {
    let mut c = Command::new(crictl_path());
    c.arg("--runtime-endpoint")
        .arg(format!("unix://{}", b.socket.display()))
        .args(["--timeout", "20s"]);
    c
}

fn pod(b: &Berthd) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "streaming".into(),
            uid: "uid-streaming".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "streaming".into(),
        log_directory: b.dir.path().join("logs").display().to_string(),
        ..Default::default()
    }
}

fn container(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

async fn run(
    rt: &mut Rt,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> String {
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(c),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    id
}

/// Run `cmd` off the async workers; (exit code, stdout, stderr).
async fn output(mut cmd: Command, stdin: Option<&'static [u8]>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run crictl (set BERTH_CRICTL)");
        if let Some(input) = stdin {
            let mut i = child.stdin.take().unwrap();
            i.write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// GET / on 127.0.0.1:`port`, retried until `deadline`.
fn http_get(port: u16, deadline: Instant) -> String {
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        })();
        match attempt {
            Ok(body) if !body.is_empty() => return body,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "GET through port-forward: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A pod with a sleeping busybox `sh` container and the `web` container:
/// the runtime client, the pod id and sh's id.
async fn sh_and_web(b: &Berthd) -> (Rt, String, String) {
    let mut rt = b.runtime().await;
    let config = pod(b);
    let pod_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let sh = run(
        &mut rt,
        &pod_id,
        &config,
        container("sh", &busybox(), &["sleep", "3600"]),
    )
    .await;
    run(&mut rt, &pod_id, &config, container("web", WEB, &[])).await;
    (rt, pod_id, sh)
}

/// The streaming URL of an `Exec` of `true` in `id`.
async fn exec_url(rt: &mut Rt, id: &str) -> String {
    rt.exec(cri::ExecRequest {
        container_id: id.into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .url
}

#[tokio::test]
async fn exec_and_port_forward_through_crictl() {
    let b = Berthd::start(41);
    b.pull(&busybox());
    b.pull(WEB);
    let (mut rt, pod_id, sh) = sh_and_web(&b).await;

    // The URL names the server and a token; it is single use.
    let url = exec_url(&mut rt, &sh).await;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
        "{url}"
    );
    let bad = rt
        .exec(cri::ExecRequest {
            container_id: sh.clone(),
            cmd: vec![],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");

    // Non-tty: stdout, stderr and the exit code come back apart.
    let mut c = crictl(&b);
    c.args(["exec", &sh, "echo", "hi"]);
    let (code, out, err) = output(c, None).await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "stderr: {err}");
    let mut c = crictl(&b);
    c.args(["exec", &sh, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    let (code, out, err) = output(c, None).await;
    // crictl exits 1 and names the command's code (client-go's
    // CodeExitError, decoded from the v4 status).
    assert_ne!(code, 0, "stdout: {out} stderr: {err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert_eq!(out, "out\n");
    assert!(err.contains("err"), "{err}");

    // stdin, closed by the client at EOF.
    let mut c = crictl(&b);
    c.args(["exec", "-i", &sh, "sh", "-c", "cat; echo done"]);
    let (code, out, err) = output(c, Some(b"piped-in\n")).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "piped-in\ndone\n"),
        "stderr: {err}"
    );

    // tty: a pty from the runtime's console socket, sized by the client.
    let mut c = Command::new("script");
    c.args(["-qec"])
        .arg(format!(
            "stty cols 91 rows 17; {} --runtime-endpoint unix://{} exec -it {sh} sh -c 'tty; stty size'",
            crictl_path().display(),
            b.socket.display()
        ))
        .arg("/dev/null");
    let (code, out, err) = output(c, None).await;
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("17 91"), "{out}");

    // Port-forward to the web container's port 80 in the pod's netns.
    let local = 18000 + common::slot(41) as u16;
    let mut c = crictl(&b);
    c.args(["port-forward", &pod_id, &format!("{local}:80")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut pf = c.spawn().unwrap();
    let body = tokio::task::spawn_blocking(move || {
        http_get(local, Instant::now() + Duration::from_secs(20))
    })
    .await
    .unwrap();
    // A second connection over the same forward.
    let again = tokio::task::spawn_blocking(move || {
        http_get(local, Instant::now() + Duration::from_secs(10))
    })
    .await
    .unwrap();
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("berth-web-ok"), "{body}");
    assert!(again.contains("berth-web-ok"), "{again}");
}

/// berthd's log and every monitor's, for a failure message.
fn diag(b: &Berthd) -> String {
    let mut out = b.log();
    let mut stack = vec![b.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("rootfs") {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "shim.log") {
                out += &format!("\n--- {}\n", p.display());
                out += &std::fs::read_to_string(&p).unwrap_or_default();
            }
        }
    }
    out
}

/// Wait until the container's monitor reports it exited.
async fn wait_exited(rt: &mut Rt, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return;
        }
        assert!(Instant::now() < deadline, "container {id} did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn attach_through_crictl() {
    let b = Berthd::start(42);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let mut config = pod(&b);
    config.metadata.as_mut().unwrap().name = "attach".into();
    config.metadata.as_mut().unwrap().uid = "uid-attach".into();
    let pod_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let logs = b.dir.path().join("logs");

    // stdin kept open across sessions: the container reads one line the
    // attached client sends, answers on stdout and stderr, and exits, which
    // ends the session.
    let mut c = container(
        "reader",
        &busybox(),
        &["sh", "-c", "read line; echo got:$line; echo to-stderr >&2"],
    );
    c.stdin = true;
    let reader = run(&mut rt, &pod_id, &config, c).await;
    let url = rt
        .attach(cri::AttachRequest {
            container_id: reader.clone(),
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.contains("/attach/"), "{url}");
    let mut a = crictl(&b);
    a.args(["attach", "-i", &reader]);
    let (code, out, err) = output(a, Some(b"hello\n")).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "got:hello\n"),
        "stderr: {err}\n{}",
        diag(&b)
    );
    assert!(err.contains("to-stderr"), "{err}");
    wait_exited(&mut rt, &reader).await;
    // What went through the session is in the CRI log too.
    let log = std::fs::read_to_string(logs.join("reader.log")).unwrap();
    assert!(log.contains(" stdout F got:hello\n"), "{log}");
    assert!(log.contains(" stderr F to-stderr\n"), "{log}");

    // stdin_once: the container's stdin closes when the first session's
    // input ends, so `cat` sees EOF and the container finishes.
    let mut c = container("once", &busybox(), &["sh", "-c", "cat; echo eof-seen"]);
    c.stdin = true;
    c.stdin_once = true;
    let once = run(&mut rt, &pod_id, &config, c).await;
    let mut a = crictl(&b);
    a.args(["attach", "-i", &once]);
    let (code, out, err) = output(a, Some(b"one\ntwo\n")).await;
    assert_eq!(
        (code, out.as_str()),
        (0, "one\ntwo\neof-seen\n"),
        "stderr: {err}"
    );
    wait_exited(&mut rt, &once).await;

    // tty: the raw terminal, sized by the client. The container waits until
    // the attached client's size arrives, then reports it.
    let mut c = container(
        "tty",
        &busybox(),
        &[
            "sh",
            "-c",
            "for i in $(seq 200); do [ \"$(stty size)\" = '17 91' ] && break; sleep 0.05; done; stty size; tty; echo term=$TERM",
        ],
    );
    c.stdin = true;
    c.tty = true;
    let tty = run(&mut rt, &pod_id, &config, c).await;
    let mut a = Command::new("script");
    a.args(["-qec"])
        .arg(format!(
            "stty cols 91 rows 17; {} --runtime-endpoint unix://{} attach -it {tty}",
            crictl_path().display(),
            b.socket.display()
        ))
        .arg("/dev/null");
    let (code, out, err) = output(a, None).await;
    assert_eq!(code, 0, "stdout: {out} stderr: {err}");
    assert!(out.contains("17 91"), "{out}");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert!(out.contains("term=xterm"), "{out}");
    wait_exited(&mut rt, &tty).await;
    // A terminal's output is logged as stdout.
    let log = std::fs::read_to_string(logs.join("tty.log")).unwrap();
    // (Input the client sent is echoed by the terminal, so the line may
    // start with it.)
    assert!(
        log.lines()
            .any(|l| l.contains(" stdout F ") && l.ends_with("17 91")),
        "{log}"
    );

    // Nothing to attach to once it exited, or when it does not exist.
    let gone = rt
        .attach(cri::AttachRequest {
            container_id: reader.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::FailedPrecondition, "{gone:?}");
    let unknown = rt
        .attach(cri::AttachRequest {
            container_id: "no-such-container".into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
}

#[tokio::test]
async fn an_idle_streaming_connection_is_closed_a_busy_one_is_not() {
    let mut b = Berthd::start(43);
    b.pull(&busybox());
    b.reconfigure("stream_idle_timeout = \"2s\"\n");
    let mut rt = b.runtime().await;
    let config = pod(&b);
    let pod_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let sh = run(
        &mut rt,
        &pod_id,
        &config,
        container("sh", &busybox(), &["sleep", "3600"]),
    )
    .await;
    // Output every second: never 2 s quiet, so it runs to its end.
    let mut c = crictl(&b);
    c.args([
        "exec",
        &sh,
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo $i; sleep 1; done",
    ]);
    let (code, out, err) = output(c, None).await;
    assert_eq!((code, out.as_str()), (0, "1\n2\n3\n4\n"), "{err}");
    // Silent for 30 s: the server closes the connection after 2.
    let start = Instant::now();
    let mut c = crictl(&b);
    c.args(["exec", &sh, "sleep", "30"]);
    let _ = output(c, None).await;
    // (client-go takes the closed connection as the end of the session: no
    // status arrives, so crictl's exit code says nothing here.)
    let lasted = start.elapsed();
    assert!(
        lasted >= Duration::from_secs(2) && lasted < Duration::from_secs(15),
        "an idle session lasted {lasted:?}"
    );
}

/// A self-signed certificate for 127.0.0.1 (openssl's CLI): (cert, key).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("stream.crt"), dir.join("stream.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=berthd-streaming"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test]
async fn exec_and_port_forward_over_tls() {
    let mut b = Berthd::start(44);
    b.pull(&busybox());
    b.pull(WEB);
    let (cert, key) = self_signed(b.dir.path());
    b.reconfigure(&format!(
        "stream_tls_cert_file = {cert:?}\nstream_tls_key_file = {key:?}\n"
    ));
    let (mut rt, pod_id, sh) = sh_and_web(&b).await;

    let url = exec_url(&mut rt, &sh).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut s = std::net::TcpStream::connect(&authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /exec/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // crictl (client-go's SPDY executor) over TLS, verifying the server
    // against its certificate (crictl wants a client pair with a CA; the
    // server asks for none): output and exit code.
    let mut c = crictl(&b);
    c.arg("exec")
        .arg("--tls-ca")
        .arg(&cert)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args([&sh, "sh", "-c", "echo over-tls; exit 3"]);
    let (code, out, err) = output(c, None).await;
    // crictl 1.36 exits 1 and names the command's exit code.
    assert_eq!(
        (code, out.as_str()),
        (1, "over-tls\n"),
        "stderr: {err}\n{}",
        diag(&b)
    );
    assert!(err.contains("exit code 3"), "{err}");

    // Port-forward over TLS to the web container (crictl without a CA
    // does not verify, as the kubelet's proxy).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut pf = crictl(&b)
        .args(["port-forward", &pod_id, &format!("{port}:80")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = tokio::task::spawn_blocking(move || {
        http_get(port, Instant::now() + Duration::from_secs(30))
    })
    .await
    .unwrap();
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(body.contains("berth-web-ok"), "{body}");
}
