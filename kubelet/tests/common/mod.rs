//! A node under test: a real berthd (own socket, folders, CNI bridge) and a
//! real berth-kubelet in standalone mode with its own static pod folder.
//! Everything is removed on drop, also when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};

pub const NODE: &str = "test-node";

pub fn busybox() -> String {
    std::env::var("BERTH_BUSYBOX_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/library/busybox:latest".into())
}

pub fn web_image() -> String {
    format!(
        "{}/berth/web:latest",
        std::env::var("BERTH_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
    )
}

/// berthd next to the kubelet binary (same target folder).
fn berthd_bin() -> PathBuf {
    let k = Path::new(env!("CARGO_BIN_EXE_berth-kubelet"));
    let b = k.with_file_name("berthd");
    assert!(
        b.exists() && k.with_file_name("berth-shim").exists(),
        "{} or berth-shim missing: build them first (cargo build --release -p berth-cri)",
        b.display()
    );
    b
}

/// A test node's cgroupRoot: unique per process and node.
pub fn cgroup_root(salt: u32) -> String {
    format!("/berth-kl-{}-{}", std::process::id(), slot(salt))
}

/// Remove cgroup `root` (a test node's) in every hierarchy, children first.
pub fn remove_cgroup_root(root: &str) {
    if root == "/" {
        // A systemd-driver node: its QoS slices, and every pod slice and
        // container scope below them, go with kubepods.slice.
        let _ = Command::new("systemctl")
            .args(["stop", "kubepods.slice"])
            .status();
        return;
    }
    fn rm(d: &Path) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(d);
    }
    let rel = root.trim_start_matches('/');
    assert!(
        rel.starts_with("berth-kl-"),
        "not a test cgroup root: {root}"
    );
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(rel)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(rd.flatten().map(|e| e.path().join(rel)));
    }
    // Killed containers leave their cgroups a moment later.
    for _ in 0..50 {
        dirs.iter().for_each(|d| rm(d));
        if dirs.iter().all(|d| !d.exists()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn slot(salt: u32) -> u32 {
    (std::process::id().wrapping_mul(31).wrapping_add(salt * 11)) % 200 + 20
}

/// A node run by upstream's kubelet (the test bed's `kubelet`).
pub struct Upstream {
    /// Where its API (exec, attach, port-forward, logs, metrics) listens.
    pub port: u16,
    /// A portless bridge of this node's own holding its node IP (upstream
    /// refuses a loopback one); removed on drop.
    link: String,
    pub ip: String,
    /// Its environment.
    env: Vec<(String, String)>,
}

pub struct Node {
    pub dir: tempfile::TempDir,
    pub berthd: Option<Child>,
    pub kubelet: Option<Child>,
    pub socket: PathBuf,
    pub manifests: PathBuf,
    pub bridge: String,
    /// The node name; pods are `<name>-<node>`.
    pub node: String,
    /// The runtime is a shared one (the test bed's containerd): only this
    /// node's pods are removed at the end.
    shared_runtime: bool,
    kubelet_runs: u32,
    /// API server mode: the node's kubeconfig, and extra kubelet flags.
    pub kubeconfig: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// The kubelet is upstream's.
    pub upstream: Option<Upstream>,
    /// This node's cgroupRoot (`/berth-kl-<pid>-<slot>`): its pod cgroups,
    /// removed on drop.
    pub cgroup_root: String,
}

impl Node {
    pub fn start(salt: u32) -> Node {
        Self::start_with(salt, NODE.into(), None, Vec::new(), None, "")
    }

    /// A standalone node whose berthd and kubelet both use the systemd
    /// cgroup driver (needs systemd as PID 1; kubepods.slice is the root).
    pub fn start_systemd(salt: u32) -> Node {
        Self::start_with(
            salt,
            NODE.into(),
            None,
            Vec::new(),
            None,
            "cgroup_driver = \"systemd\"\n",
        )
    }

    /// A node that joins the test bed's API server (`BERTH_KUBECONFIG` is
    /// the admin's) as `api-<pid>-<slot>`, with its own node credentials.
    pub fn start_joined(salt: u32, extra_args: &[&str]) -> Node {
        let name = format!("api-{}-{}", std::process::id(), slot(salt));
        let kc = node_kubeconfig(&name);
        Self::start_with(
            salt,
            name,
            Some(kc),
            extra_args.iter().map(|s| s.to_string()).collect(),
            None,
            "",
        )
    }

    /// Upstream's kubelet on this node's berthd (with `berthd_toml` added
    /// to berthd's config), joined as `up-<pid>-<slot>`: what berthd serves
    /// a kubelet, checked against the reference kubelet. Its node IP and
    /// API address is 10.205.<slot>.1 on a portless bridge of its own
    /// (upstream refuses a loopback node IP; this kernel has no dummy
    /// links), where the API server reaches it.
    ///
    /// `trusted_ca` (a PEM file) is the kubelet's only trust root for the
    /// streaming server's certificate (`SSL_CERT_FILE`): upstream's kubelet
    /// verifies it when it proxies exec and attach.
    pub fn start_upstream_joined(salt: u32, berthd_toml: &str, trusted_ca: Option<&Path>) -> Node {
        let n = slot(salt);
        let name = format!("up-{}-{n}", std::process::id());
        let link = format!("bu{}x{n}", std::process::id() % 100_000);
        let ip = format!("10.205.{n}.1");
        for args in [
            vec!["link", "add", link.as_str(), "type", "bridge"],
            vec!["addr", "add", &format!("{ip}/32"), "dev", &link],
            vec!["link", "set", &link, "up"],
        ] {
            let st = Command::new("ip").args(&args).status().unwrap();
            if !st.success() {
                let _ = Command::new("ip").args(["link", "del", &link]).status();
                panic!("ip {args:?} failed");
            }
        }
        let kc = node_kubeconfig(&name);
        let upstream = Upstream {
            port: 23000 + n as u16,
            link,
            ip,
            env: trusted_ca
                .map(|ca| vec![("SSL_CERT_FILE".to_owned(), ca.display().to_string())])
                .unwrap_or_default(),
        };
        Self::start_with(
            salt,
            name,
            Some(kc),
            Vec::new(),
            Some(upstream),
            berthd_toml,
        )
    }

    fn start_with(
        salt: u32,
        node_name: String,
        kubeconfig: Option<PathBuf>,
        extra_args: Vec<String>,
        upstream: Option<Upstream>,
        berthd_toml: &str,
    ) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let n = slot(salt);
        let bridge = format!("bk{}x{n}", std::process::id() % 100_000);
        let net = dir.path().join("net.d");
        std::fs::create_dir(&net).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0", "name": format!("kubelet-test-{n}"),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("10.204.{n}.0/24")}]],
                          "dataDir": dir.path().join("ipam")}},
                // No `loopback`: berthd brings each pod's lo up itself.
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(net.join("10-test.conflist"), conf.to_string()).unwrap();
        let socket = dir.path().join("berthd.sock");
        // The TLS registry's CA (hack/testbed.sh env), so pulls with
        // credentials can be tested.
        let registry_certs = std::env::var("BERTH_REGISTRY_CERT_DIR")
            .ok()
            .and_then(|d| {
                Path::new(&d)
                    .parent()
                    .map(|p| format!("registry_config_path = {:?}\n", p))
            })
            .unwrap_or_default();
        std::fs::write(
            dir.path().join("berthd.toml"),
            format!(
                "socket = {:?}\nroot_dir = {:?}\nstate_dir = {:?}\ncni_conf_dir = {:?}\ncni_bin_dirs = [\"/usr/lib/cni\", \"/opt/cni/bin\"]\n{registry_certs}{berthd_toml}",
                socket,
                dir.path().join("root"),
                dir.path().join("state"),
                net
            ),
        )
        .unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        // berthd's driver decides the kubelet's, as on a real node.
        let systemd = berthd_toml.contains("cgroup_driver = \"systemd\"");
        let root = if systemd {
            "/".to_owned()
        } else {
            cgroup_root(salt)
        };
        std::fs::write(
            dir.path().join("kubelet.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: {}\npodLogsDir: {}\nsyncFrequency: 10s\ncgroupRoot: {root}\ncgroupDriver: {}\n",
                manifests.display(),
                dir.path().join("logs").display(),
                if systemd { "systemd" } else { "cgroupfs" }
            ),
        )
        .unwrap();
        let mut node = Node {
            dir,
            berthd: None,
            kubelet: None,
            socket,
            manifests,
            bridge,
            node: node_name,
            shared_runtime: false,
            kubelet_runs: 0,
            kubeconfig,
            extra_args,
            upstream,
            cgroup_root: root,
        };
        node.start_berthd();
        node.start_kubelet();
        node
    }

    /// Start berthd (its log appended to `berthd.log`) and wait for its socket.
    pub fn start_berthd(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .unwrap();
        let _ = std::fs::remove_file(&self.socket);
        let berthd = Command::new(berthd_bin())
            .arg("--config")
            .arg(self.dir.path().join("berthd.toml"))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.berthd = Some(berthd);
        let sock = self.socket.clone();
        wait_until(Duration::from_secs(15), "berthd socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// SIGKILL berthd (containers and their monitors keep running).
    pub fn kill_berthd(&mut self) {
        if let Some(mut c) = self.berthd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A kubelet on the test bed's containerd (`BERTH_CONTAINERD_ENDPOINT`),
    /// or None when it does not run. The node name is unique to this test.
    pub fn on_containerd(salt: u32) -> Option<Node> {
        Self::on_containerd_with(salt, None)
    }

    /// A kubelet on the test bed's containerd that joins the test bed's API
    /// server (the tier brings containerd up: its absence fails the test).
    pub fn on_containerd_joined(salt: u32) -> Node {
        let name = format!("ctrd-{}-{}", std::process::id(), slot(salt));
        let kc = node_kubeconfig(&name);
        Self::on_containerd_with(salt, Some(kc))
            .expect("the test bed's containerd runs (hack/testbed.sh containerd up)")
    }

    fn on_containerd_with(salt: u32, kubeconfig: Option<PathBuf>) -> Option<Node> {
        let endpoint = std::env::var("BERTH_CONTAINERD_ENDPOINT").ok()?;
        let socket = PathBuf::from(endpoint.strip_prefix("unix://")?);
        std::os::unix::net::UnixStream::connect(&socket).ok()?;
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        std::fs::write(
            dir.path().join("kubelet.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: {}\npodLogsDir: {}\ncgroupRoot: {}\n",
                manifests.display(),
                dir.path().join("logs").display(),
                cgroup_root(salt)
            ),
        )
        .unwrap();
        let mut node = Node {
            dir,
            berthd: None,
            kubelet: None,
            socket,
            manifests,
            bridge: String::new(),
            node: format!("ctrd-{}-{}", std::process::id(), slot(salt)),
            shared_runtime: true,
            kubelet_runs: 0,
            kubeconfig,
            extra_args: Vec::new(),
            upstream: None,
            cgroup_root: cgroup_root(salt),
        };
        node.start_kubelet();
        Some(node)
    }

    pub fn start_kubelet(&mut self) {
        self.kubelet_runs += 1;
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("kubelet-{}.log", self.kubelet_runs)),
        )
        .unwrap();
        if self.upstream.is_some() {
            return self.start_upstream_kubelet(log);
        }
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth-kubelet"));
        if let Some(kc) = &self.kubeconfig {
            cmd.arg("--kubeconfig").arg(kc);
        }
        let child = cmd
            .args(&self.extra_args)
            .arg("--config")
            .arg(self.dir.path().join("kubelet.yaml"))
            .arg("--root-dir")
            .arg(self.dir.path().join("kubelet"))
            .arg(format!(
                "--container-runtime-endpoint=unix://{}",
                self.socket.display()
            ))
            .arg(format!("--hostname-override={}", self.node))
            .env("NO_COLOR", "1")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.kubelet = Some(child);
    }

    /// Upstream's kubelet, configured as on a node without systemd or
    /// cgroup v2 (the test bed's host): no QoS cgroups, no swap check, its
    /// API open to the API server's client certificate (anonymous, always
    /// allowed: the test bed's loopback only), pod and container stats
    /// from the CRI.
    fn start_upstream_kubelet(&mut self, log: std::fs::File) {
        let bin = std::env::var("BERTH_UPSTREAM_KUBELET").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../_output/bin/kubelet").into()
        });
        let d = self.dir.path();
        let Upstream { port, ip, env, .. } = self.upstream.as_ref().expect("an upstream node");
        std::fs::write(
            d.join("upstream-kubelet.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
address: {ip}
port: {port}
readOnlyPort: 0
healthzPort: 0
containerRuntimeEndpoint: unix://{}
podLogsDir: {}
serializeImagePulls: false
localStorageCapacityIsolation: false
featureGates: {{PodAndContainerStatsFromCRI: true}}
",
                self.socket.display(),
                d.join("logs").display()
            ),
        )
        .unwrap();
        let kc = self.kubeconfig.as_ref().expect("upstream's kubelet joins");
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(kc)
            .arg("--config")
            .arg(d.join("upstream-kubelet.yaml"))
            .arg("--root-dir")
            .arg(d.join("kubelet"))
            .arg("--cert-dir")
            .arg(d.join("pki"))
            .arg(format!("--node-ip={ip}"))
            .arg(format!("--hostname-override={}", self.node))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("run upstream's kubelet (BERTH_UPSTREAM_KUBELET, default _output/bin/kubelet)");
        self.kubelet = Some(child);
    }

    /// SIGTERM the kubelet and wait for it (pods keep running).
    pub fn stop_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("berth-kubelet did not stop on SIGTERM within 10 s");
        }
    }

    /// The log of the kubelet's `i`th run (from 1).
    pub fn kubelet_run_log(&self, i: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("kubelet-{i}.log")))
            .unwrap_or_default()
    }

    /// All kubelet logs so far.
    pub fn kubelet_log(&self) -> String {
        (1..=self.kubelet_runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("kubelet-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    pub fn write_manifest(&self, file: &str, text: &str) {
        // Written aside and renamed in, as a careful admin would.
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// The status file of static pod `name` (the kubelet appends the node name).
    pub fn status(&self, name: &str) -> Option<Value> {
        let full = format!("{name}-{}", self.node);
        let rd = std::fs::read_dir(self.dir.path().join("kubelet/pods")).ok()?;
        for e in rd.flatten() {
            let Ok(text) = std::fs::read(e.path().join("status.json")) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&text) else {
                continue;
            };
            if v["metadata"]["name"] == full.as_str() {
                return Some(v);
            }
        }
        None
    }

    /// Wait until pod `name`'s status satisfies `f`; returns that status.
    pub fn wait_status(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.status(name)
                && f(&s)
            {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for pod {name}: {what}\nlast status: {}\nkubelet log:\n{}",
                    self.status(name)
                        .map(|s| serde_json::to_string_pretty(&s["status"]).unwrap())
                        .unwrap_or_default(),
                    self.kubelet_log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A container's CRI log (first run), without the CRI prefixes.
    pub fn container_log(&self, ns: &str, pod: &str, container: &str) -> String {
        let Ok(rd) = std::fs::read_dir(self.dir.path().join("logs")) else {
            return String::new();
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{ns}_{pod}_")) {
                let text = std::fs::read_to_string(e.path().join(container).join("0.log"))
                    .unwrap_or_default();
                return text
                    .lines()
                    .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
        }
        String::new()
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket).await)
    }

    /// The runtime's sandboxes and containers of pod `uid` (by its label).
    pub async fn runtime_objects(&self, uid: &str) -> (Vec<cri::PodSandbox>, Vec<cri::Container>) {
        let mut rt = self.runtime().await;
        let sel: std::collections::HashMap<String, String> =
            [("io.kubernetes.pod.uid".to_owned(), uid.to_owned())].into();
        let sbs = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: sel.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        let cs = rt
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: sel,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .containers;
        (sbs, cs)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.kubeconfig.is_some() {
            // The node's API objects: its pods, its Lease, the Node.
            let _ = kubectl(&[
                "delete",
                "pods",
                "--all-namespaces",
                "--force",
                "--grace-period=0",
                "--field-selector",
                &format!("spec.nodeName={}", self.node),
            ]);
            let _ = kubectl(&[
                "-n",
                "kube-node-lease",
                "delete",
                "lease",
                &self.node,
                "--ignore-not-found",
            ]);
            let _ = kubectl(&["delete", "node", &self.node, "--ignore-not-found"]);
        }
        if std::thread::panicking() {
            eprintln!("--- kubelet log ---\n{}", self.kubelet_log());
            eprintln!(
                "--- berthd log ---\n{}",
                std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
            );
        }
        // Every sandbox (of this node, on a shared runtime) through the
        // runtime itself (CNI DEL, namespaces).
        if self.berthd.is_some() || self.shared_runtime {
            let sock = self.socket.clone();
            let suffix = format!("-{}", self.node);
            let shared = self.shared_runtime;
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = RuntimeServiceClient::new(connect(&sock).await);
                    if let Ok(list) = c
                        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
                        .await
                    {
                        for sb in list.into_inner().items {
                            let ours = sb
                                .labels
                                .get("io.kubernetes.pod.name")
                                .is_some_and(|n| n.ends_with(&suffix));
                            if shared && !ours {
                                continue;
                            }
                            let _ = c
                                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                                    pod_sandbox_id: sb.id.clone(),
                                })
                                .await;
                            let _ = c
                                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                                    pod_sandbox_id: sb.id,
                                })
                                .await;
                        }
                    }
                })
            })
            .join();
        }
        if self.shared_runtime {
            unmount_under(self.dir.path());
            remove_cgroup_root(&self.cgroup_root);
            return;
        }
        if let Some(mut c) = self.berthd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
        if let Some(Upstream { link, .. }) = &self.upstream {
            let _ = Command::new("ip").args(["link", "del", link]).status();
        }
        unmount_under(self.dir.path());
        remove_cgroup_root(&self.cgroup_root);
    }
}

/// Unmount every mount below `dir`, deepest first: network namespaces
/// berthd pinned, and the tmpfs and subPath mounts of the volumes of a
/// kubelet that was killed before it could tear them down.
fn unmount_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(Path::new(&p), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Pids of live berth-shim processes whose command line names `dir`.
fn shims_under(dir: &Path) -> Vec<i32> {
    let want = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default())
                .into_owned();
        if cmd.contains("berth-shim") && cmd.contains(&want) {
            out.push(pid);
        }
    }
    out
}

/// A kubeconfig for node `name` (the test bed's node credentials).
pub fn node_kubeconfig(name: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../hack/testbed/controlplane.sh"
        ))
        .args(["kubeconfig-node", name])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "controlplane.sh kubeconfig-node {name} failed"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// kubectl as the test bed's admin; returns stdout, or stderr as the error.
pub fn kubectl(args: &[&str]) -> Result<String, String> {
    kubectl_in(args, None)
}

/// The test bed's kubectl binary.
pub fn kubectl_bin() -> String {
    std::env::var("BERTH_KUBECTL")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../_output/bin/kubectl").into())
}

/// A kubectl command as the test bed's admin, to spawn (long-running
/// `logs -f`, `port-forward`, `attach`).
pub fn kubectl_cmd(args: &[&str]) -> Command {
    let kc = std::env::var("BERTH_KUBECONFIG")
        .expect("BERTH_KUBECONFIG: run through hack/test.sh's kubelet-apiserver tier");
    let mut c = Command::new(kubectl_bin());
    c.arg("--kubeconfig").arg(kc).args(args);
    c
}

/// kubectl with `stdin` fed to it (`apply -f -`).
pub fn kubectl_in(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = kubectl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// An API object as JSON, or None when it does not exist.
pub fn api_get(args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    match kubectl(&a) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(e) if e.contains("NotFound") || e.contains("not found") => None,
        Err(e) => panic!("kubectl {a:?}: {e}"),
    }
}

/// Wait until `get` yields an object satisfying `f` (None: absent); returns it.
pub fn wait_api(
    secs: u64,
    what: &str,
    get: impl Fn() -> Option<Value>,
    f: impl Fn(Option<&Value>) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = get();
        if f(v.as_ref()) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}; last: {}",
            v.map(|v| serde_json::to_string_pretty(&v).unwrap())
                .unwrap_or("absent".into())
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn wait_until(timeout: Duration, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
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

/// GET http://127.0.0.1:port/ and return the body (plain HTTP/1.0).
pub fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

pub fn phase(s: &Value) -> &str {
    s["status"]["phase"].as_str().unwrap_or("")
}

pub fn uid(s: &Value) -> String {
    s["metadata"]["uid"].as_str().unwrap().to_owned()
}
