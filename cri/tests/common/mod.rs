//! A berthd under test: its own socket, folders, CNI config and bridge, all
//! removed on drop (also when the test fails).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

pub struct Berthd {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub bridge: String,
    pub subnet_prefix: String,
}

/// A small number unique to this process and salt.
pub fn slot(salt: u32) -> u32 {
    (std::process::id().wrapping_mul(37).wrapping_add(salt * 7)) % 200 + 20
}

impl Berthd {
    /// A berthd with a bridge network of its own (`salt` keeps the bridge
    /// and subnet apart from other tests running at the same time).
    pub fn start(salt: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let n = slot(salt);
        let bridge = format!("bd{}x{n}", std::process::id() % 100_000);
        let subnet_prefix = format!("10.202.{n}.");
        let cni_dir = dir.path().join("net.d");
        std::fs::create_dir(&cni_dir).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": format!("berthd-test-{n}"),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("{subnet_prefix}0/24")}]],
                          "dataDir": dir.path().join("ipam")}},
                // No `loopback`: berthd brings each pod's lo up itself.
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(cni_dir.join("10-test.conflist"), conf.to_string()).unwrap();
        let socket = dir.path().join("berthd.sock");
        let config = dir.path().join("berthd.toml");
        std::fs::write(
            &config,
            format!(
                "socket = {:?}\nroot_dir = {:?}\nstate_dir = {:?}\ncni_conf_dir = {:?}\ncni_bin_dirs = [\"/usr/lib/cni\"]\n",
                socket,
                dir.path().join("root"),
                dir.path().join("state"),
                cni_dir
            ),
        )
        .unwrap();
        let mut b = Berthd {
            child: None,
            dir,
            socket,
            config,
            bridge,
            subnet_prefix,
        };
        b.spawn();
        b
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("--config")
            .arg(&self.config)
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        let sock = self.socket.clone();
        wait_until(
            || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
            "berthd socket",
        );
    }

    /// kill -9, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pull `image` into this berthd's image store with its CLI.
    pub fn pull(&self, image: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .args(["images", "--root"])
            .arg(self.dir.path().join("root/images"))
            .args(["pull", "-q", image])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pull {image} (is the test bed up? hack/testbed.sh up): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket).await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(connect(&self.socket).await)
    }

    /// Restarts berthd with `toml` (top-level keys) added to its config.
    pub fn reconfigure(&mut self, toml: &str) {
        self.kill9();
        let mut cfg = std::fs::read_to_string(&self.config).unwrap();
        cfg.push_str(toml);
        std::fs::write(&self.config, cfg).unwrap();
        // kill -9 left the socket behind; berthd replaces a stale one, but
        // spawn() waits for a connectable socket, so remove it first.
        let _ = std::fs::remove_file(&self.socket);
        self.spawn();
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // Remove every sandbox through berthd itself (CNI DEL, namespaces).
        if self.child.is_some() {
            let sock = self.socket.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = RuntimeServiceClient::new(connect(&sock).await);
                    if let Ok(list) = c
                        .list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest::default())
                        .await
                    {
                        for sb in list.into_inner().items {
                            let _ = c
                                .remove_pod_sandbox(k8s_cri::v1::RemovePodSandboxRequest {
                                    pod_sandbox_id: sb.id,
                                })
                                .await;
                        }
                    }
                })
            })
            .join();
        }
        self.kill9();
        // Shims of ours left behind (a test that failed half way): by pid,
        // only those whose command line names this test's folder.
        for pid in shims_under(self.dir.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let ns = self.state_dir().join("ns");
        if let Ok(rd) = std::fs::read_dir(&ns) {
            for e in rd.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = nix::mount::umount2(&ns, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Pids of live berth-shim processes whose command line names a path under
/// `dir`.
pub fn shims_under(dir: &Path) -> Vec<i32> {
    let want = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
        if !zombie && cmd.contains("berth-shim") && cmd.contains(&want) {
            out.push(pid);
        }
    }
    out
}

pub fn wait_until(f: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_owned();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .expect("connect to berthd")
}

/// Run a command in the namespaces of the given pinned files.
pub fn nsenter(args_ns: &[String], cmd: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(args_ns)
        .args(cmd)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `PodSandboxStatus` of `id`, which must exist.
pub async fn pod_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> k8s_cri::v1::PodSandboxStatus {
    rt.pod_sandbox_status(k8s_cri::v1::PodSandboxStatusRequest {
        pod_sandbox_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}
