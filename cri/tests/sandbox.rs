//! Pod sandboxes through berthd's CRI, as the kubelet and crictl drive them,
//! with Debian's CNI plugins. Needs root.

mod common;

use common::{Berthd, nsenter, shims_under};
use k8s_cri::v1 as cri;

fn pod(name: &str, uid: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: [("app".to_owned(), name.to_owned())].into(),
        linux: Some(linux(cri::NamespaceOption {
            pid: cri::NamespaceMode::Container as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// As the kubelet sends it: explicit namespace modes (the protobuf default
/// for PID is POD, a pod-wide PID namespace).
fn linux(ns: cri::NamespaceOption) -> cri::LinuxPodSandboxConfig {
    cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(ns),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn run_req(c: cri::PodSandboxConfig) -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(c),
        runtime_handler: String::new(),
    }
}

use common::pod_status as status;

/// The sandboxes berthd lists.
async fn sandboxes(
    rt: &mut cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
) -> Vec<cri::PodSandbox> {
    rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items
}

/// The names in `dir` (none when it does not exist).
fn entries(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect()
}

#[tokio::test]
async fn sandbox_lifecycle_with_network_and_namespaces() {
    let b = Berthd::start(1);
    let mut rt = b.runtime().await;

    let id = rt
        .run_pod_sandbox(run_req(pod("web", "uid-1")))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(id.len(), 64);
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = st.network.unwrap().ip;
    assert!(
        ip.starts_with(&b.subnet_prefix),
        "pod IP {ip} not from the CNI subnet"
    );

    // The pinned namespaces: eth0 carries the IP; the UTS one has the hostname.
    let ns = b.state_dir().join("ns");
    let net = format!("--net={}", ns.join(format!("{id}-net")).display());
    assert!(
        nsenter(
            std::slice::from_ref(&net),
            &["ip", "-4", "-o", "addr", "show", "eth0"]
        )
        .contains(&ip)
    );
    // lo is up, with no `loopback` plugin in the chain.
    let lo = nsenter(
        std::slice::from_ref(&net),
        &["ip", "-o", "link", "show", "lo"],
    );
    assert!(
        lo.contains(",UP,") || lo.contains(",UP>"),
        "lo is not up: {lo}"
    );
    let uts = format!("--uts={}", ns.join(format!("{id}-uts")).display());
    assert_eq!(nsenter(&[uts], &["hostname"]), "web-host");
    assert!(ns.join(format!("{id}-ipc")).exists());
    let files = b.state_dir().join("sandboxes").join(&id);
    let resolv = std::fs::read_to_string(files.join("resolv.conf")).unwrap();
    assert!(
        resolv.contains("nameserver 10.96.0.10") && resolv.contains("options ndots:5"),
        "{resolv}"
    );
    assert!(
        std::fs::read_to_string(files.join("hosts"))
            .unwrap()
            .contains(&format!("{ip}\tweb-host"))
    );

    // One monitor per sandbox.
    assert_eq!(
        shims_under(b.dir.path()).len(),
        1,
        "no berth-shim for the sandbox"
    );

    // A retried RunPodSandbox gets the same sandbox; a different pod under the
    // same name is refused, naming the holder.
    let again = rt
        .run_pod_sandbox(run_req(pod("web", "uid-1")))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(again, id);
    let mut other = pod("web", "uid-1");
    other.labels.insert("v".into(), "2".into());
    let err = rt.run_pod_sandbox(run_req(other)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains(&id), "{}", err.message());

    // List with filters.
    let list = |f: cri::PodSandboxFilter| cri::ListPodSandboxRequest { filter: Some(f) };
    let items = rt
        .list_pod_sandbox(list(cri::PodSandboxFilter {
            id: id[..12].into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 1);
    let sel = [("app".to_owned(), "nope".to_owned())].into();
    let items = rt
        .list_pod_sandbox(list(cri::PodSandboxFilter {
            label_selector: sel,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(items.is_empty());

    // Stop: NotReady, IP released, netns gone; stop is idempotent, also for
    // an unknown id.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        status(&mut rt, &id).await.state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    assert!(
        !ns.join(format!("{id}-net")).exists(),
        "netns left after stop"
    );
    let ipam: Vec<_> = std::fs::read_dir(b.dir.path().join("ipam"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!ipam.contains(&ip), "IP {ip} not released: {ipam:?}");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: "f".repeat(64),
    })
    .await
    .unwrap();

    // Remove: gone everywhere; idempotent; status of it is NotFound.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    let err = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(!files.exists());
    assert!(
        std::fs::read_dir(&ns).unwrap().next().is_none(),
        "pinned namespaces left behind"
    );
}

#[tokio::test]
async fn sandboxes_survive_a_berthd_kill() {
    let mut b = Berthd::start(2);
    let mut rt = b.runtime().await;
    let id = rt
        .run_pod_sandbox(run_req(pod("db", "uid-2")))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let ip = status(&mut rt, &id).await.network.unwrap().ip;
    drop(rt);
    let shims = shims_under(b.dir.path());
    b.kill9();
    assert_eq!(
        shims_under(b.dir.path()),
        shims,
        "the shim died with berthd"
    );
    b.spawn();
    let mut rt = b.runtime().await;
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(st.network.unwrap().ip, ip);
    // The retry after a restart still gets the same sandbox.
    let again = rt
        .run_pod_sandbox(run_req(pod("db", "uid-2")))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(again, id);
}

#[tokio::test]
async fn host_network_pod_has_no_netns_and_the_host_name() {
    let b = Berthd::start(3);
    let mut rt = b.runtime().await;
    let mut c = pod("hostnet", "uid-3");
    c.linux = Some(linux(cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ..Default::default()
    }));
    let id = rt
        .run_pod_sandbox(run_req(c))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let st = status(&mut rt, &id).await;
    assert_eq!(
        st.network.unwrap().ip,
        "",
        "host-network pods get no pod IP from CNI"
    );
    assert!(!b.state_dir().join("ns").join(format!("{id}-net")).exists());
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let hostname_file = b.state_dir().join("sandboxes").join(&id).join("hostname");
    assert_eq!(std::fs::read_to_string(hostname_file).unwrap().trim(), host);
}

#[tokio::test]
async fn invalid_and_unsupported_requests_leave_nothing() {
    let b = Berthd::start(4);
    let mut rt = b.runtime().await;
    let mut bad = pod("bad", "uid-4");
    bad.metadata.as_mut().unwrap().namespace.clear();
    let err = rt.run_pod_sandbox(run_req(bad)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("metadata.namespace"),
        "{}",
        err.message()
    );

    let mut target_net = pod("target", "uid-5");
    target_net.linux = Some(linux(cri::NamespaceOption {
        network: cri::NamespaceMode::Target as i32,
        pid: cri::NamespaceMode::Container as i32,
        ..Default::default()
    }));
    let err = rt.run_pod_sandbox(run_req(target_net)).await.unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::InvalidArgument,
        "{}",
        err.message()
    );
    assert!(err.message().contains("TARGET"), "{}", err.message());

    let items = sandboxes(&mut rt).await;
    assert!(
        items.is_empty(),
        "a failed RunPodSandbox left a sandbox: {items:?}"
    );
    let ns = entries(&b.state_dir().join("ns"));
    assert!(ns.is_empty(), "namespaces left behind: {ns:?}");
}

#[tokio::test]
async fn concurrent_retries_share_one_sandbox() {
    let b = Berthd::start(5);
    let mut a = b.runtime().await;
    let mut c = b.runtime().await;
    let (x, y) = tokio::join!(
        a.run_pod_sandbox(run_req(pod("twin", "uid-6"))),
        c.run_pod_sandbox(run_req(pod("twin", "uid-6")))
    );
    let (x, y) = (
        x.unwrap().into_inner().pod_sandbox_id,
        y.unwrap().into_inner().pod_sandbox_id,
    );
    assert_eq!(x, y, "two requests for one pod made two sandboxes");
    let items = a
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), 1);
}

#[tokio::test]
async fn a_sandbox_whose_monitor_died_is_not_ready_after_restart() {
    let mut b = Berthd::start(6);
    let mut rt = b.runtime().await;
    let id = rt
        .run_pod_sandbox(run_req(pod("lost", "uid-7")))
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    drop(rt);
    b.kill9();
    for pid in shims_under(b.dir.path()) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    common::wait_until(|| shims_under(b.dir.path()).is_empty(), "the shim to die");
    b.spawn();
    let mut rt = b.runtime().await;
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    // Its IP was released; removing it still works.
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}

/// The network and the monitor (with the pause process of a pod-wide PID
/// namespace) start at the same time: when the network fails, the error
/// names the plugin and the monitor, the pause, the namespaces and the
/// record are all gone.
#[tokio::test]
async fn a_failed_network_undoes_the_monitor_and_pause_started_beside_it() {
    let b = Berthd::start(7);
    // A subnet host-local cannot use: the bridge plugin's ADD fails.
    let conf = b.dir.path().join("net.d/10-test.conflist");
    let text = std::fs::read_to_string(&conf).unwrap();
    let broken = text.replace(&format!("{}0/24", b.subnet_prefix), "10.201.0.0/33");
    assert_ne!(text, broken, "the test's conflist has the subnet");
    std::fs::write(&conf, broken).unwrap();
    let mut rt = b.runtime().await;
    let mut p = pod("nonet", "uid-8");
    p.linux = Some(linux(cri::NamespaceOption {
        pid: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }));
    let err = rt.run_pod_sandbox(run_req(p)).await.unwrap_err();
    assert!(
        err.message().contains("bridge"),
        "the error names the failing plugin: {}",
        err.message()
    );
    let items = sandboxes(&mut rt).await;
    assert!(items.is_empty(), "a failed RunPodSandbox left {items:?}");
    assert!(
        shims_under(b.dir.path()).is_empty(),
        "the monitor started beside the failed network was left running"
    );
    let pauses: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.starts_with("/pause") && c.contains(&*b.dir.path().to_string_lossy()))
        .collect();
    assert!(pauses.is_empty(), "pause left running: {pauses:?}");
    let ns = entries(&b.state_dir().join("ns"));
    assert!(ns.is_empty(), "namespaces left behind: {ns:?}\n{}", b.log());
    let folders = entries(&b.state_dir().join("sandboxes"));
    assert!(
        folders.is_empty(),
        "sandbox folders left behind: {folders:?}"
    );
}
