//! berthd as crictl and the kubelet see it: a CRI server on a unix socket.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect, wait_until};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

struct Berthd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
    cni_dir: PathBuf,
}

impl Berthd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berthd.sock");
        let cni_dir = dir.path().join("net.d");
        std::fs::create_dir(&cni_dir).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .args(["--config", "/dev/null"])
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--cni-conf-dir")
            .arg(&cni_dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn berthd");
        let b = Berthd {
            child,
            socket,
            _dir: dir,
            cni_dir,
        };
        wait_until(|| b.socket.exists(), "berthd socket");
        b
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: the pid is our own live child; kill has no memory effects.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "berthd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn version_status_and_runtime_config() {
    let mut b = Berthd::start();
    let mut rt = RuntimeServiceClient::new(connect(&b.socket).await);

    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");

    let cond = |s: &cri::StatusResponse, t: &str| {
        s.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == t)
            .cloned()
            .unwrap()
    };
    let s = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert!(cond(&s, "RuntimeReady").status);
    let net = cond(&s, "NetworkReady");
    assert!(!net.status, "NetworkReady without any CNI config");
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(
        net.message.contains("no CNI network config"),
        "{}",
        net.message
    );
    assert!(s.info["config"].contains("berthd.sock"));

    std::fs::write(b.cni_dir.join("10-test.conflist"), "{}").unwrap();
    let s = rt
        .status(cri::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        cond(&s, "NetworkReady").status,
        "NetworkReady once a conflist exists"
    );

    let c = rt
        .runtime_config(cri::RuntimeConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );

    // Every call is served; a request without a location names it.
    let err = rt
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("location"), "{}", err.message());

    let st = b.sigterm();
    assert_eq!(st.code(), Some(0), "berthd exit status {st}");
    assert!(!b.socket.exists(), "socket left behind after SIGTERM");
}

#[test]
fn refuses_a_socket_another_berthd_serves() {
    let b = Berthd::start();
    let out = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .args(["--config", "/dev/null", "--socket"])
        .arg(&b.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another berthd is serving it"), "{err}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("berthd.toml");
    std::fs::write(&cfg, "cni_conf_dirr = \"/x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cni_conf_dirr") && err.contains("berthd.toml"),
        "{err}"
    );
}

#[test]
fn berthd_images_cli_pulls_lists_and_removes() {
    let image = std::env::var("BERTH_BUSYBOX_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/library/busybox:latest".into());
    let dir = tempfile::tempdir().unwrap();
    let images = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("images")
            .arg("--root")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let pull = images(&["pull", &image]);
    assert!(
        pull.status.success(),
        "berthd images pull {image} failed (is the test bed up? sudo hack/testbed.sh up): {}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let list = String::from_utf8_lossy(&images(&["list"]).stdout).into_owned();
    assert!(list.contains(&image), "{list}");
    assert!(images(&["rm", &image]).status.success());
    let list = String::from_utf8_lossy(&images(&["list"]).stdout).into_owned();
    assert!(!list.contains(&image), "{list}");
    let bad = images(&["pull", "UPPER/case"]);
    assert!(!bad.status.success());
    assert!(
        !String::from_utf8_lossy(&bad.stderr).is_empty(),
        "a bad reference must say what is wrong"
    );
}
