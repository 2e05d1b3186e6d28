//! Containers through berthd's CRI, as the kubelet and crictl drive them:
//! real images from the test bed's registry, real CNI, berth-runc. Needs
//! root and `hack/testbed.sh up`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Berthd, shims_under};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

type Rt = RuntimeServiceClient<Channel>;

fn busybox() -> String {
    std::env::var("BERTH_BUSYBOX_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/library/busybox:latest".into())
}

fn pod(name: &str, pid: cri::NamespaceMode, logs: &std::path::Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: pid as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run_pod(rt: &mut Rt, config: &cri::PodSandboxConfig) -> String {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .pod_sandbox_id
}

fn container(name: &str, script: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: busybox(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        labels: [("name".to_owned(), name.to_owned())].into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The security context `container()` always sets.
fn security(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("container() sets a security context")
}

async fn create(
    rt: &mut Rt,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    c: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    rt.create_container(cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.into(),
        config: Some(c),
        sandbox_config: Some(pod.clone()),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

async fn start(rt: &mut Rt, id: &str) {
    rt.start_container(cri::StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .unwrap();
}

async fn status(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
}

async fn wait_exited(rt: &mut Rt, id: &str) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(rt, id).await;
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(Instant::now() < deadline, "{id} did not exit: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exec(
    rt: &mut Rt,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    rt.exec_sync(cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        timeout,
    })
    .await
    .map(|r| r.into_inner())
}

async fn pod_ip(rt: &mut Rt, pod_id: &str) -> String {
    common::pod_status(rt, pod_id).await.network.unwrap().ip
}

async fn list(rt: &mut Rt, filter: cri::ContainerFilter) -> Vec<cri::Container> {
    rt.list_containers(cri::ListContainersRequest {
        filter: Some(filter),
    })
    .await
    .unwrap()
    .into_inner()
    .containers
}

fn wait_for_log(path: &std::path::Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in {}: {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A berthd with busybox pulled and one ready pod (private PID namespaces)
/// whose logs go under the berthd's folder.
async fn busybox_pod(salt: u32, name: &str) -> (Berthd, Rt, cri::PodSandboxConfig, String) {
    let b = Berthd::start(salt);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let p = pod(
        name,
        cri::NamespaceMode::Container,
        &b.dir.path().join("logs"),
    );
    let pod_id = run_pod(&mut rt, &p).await;
    (b, rt, p, pod_id)
}

#[tokio::test]
async fn lifecycle_logs_exec_stop_and_exit_reasons() {
    let b = Berthd::start(11);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let logs = b.dir.path().join("logs");
    let p = pod("life", cri::NamespaceMode::Container, &logs);
    let pod_id = run_pod(&mut rt, &p).await;

    let id = create(
        &mut rt,
        &pod_id,
        &p,
        container("main", "echo out; echo err >&2; sleep 300"),
    )
    .await
    .unwrap();
    assert_eq!(
        status(&mut rt, &id).await.state,
        cri::ContainerState::ContainerCreated as i32
    );
    start(&mut rt, &id).await;
    let st = status(&mut rt, &id).await;
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert!(
        st.started_at > 0 && st.image_id.starts_with("sha256:"),
        "{st:?}"
    );
    let log = wait_for_log(&logs.join("life/main.log"), "stderr F err");
    assert!(log.contains(" stdout F out\n"), "{log}");

    let r = exec(
        &mut rt,
        &id,
        &["sh", "-c", "echo a; echo b >&2; exit 3"],
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"a\n"[..], &b"b\n"[..], 3)
    );
    let r = exec(&mut rt, &id, &["cat", "/etc/hostname"], 0)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "life");
    let t0 = Instant::now();
    let err = exec(&mut rt, &id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the timeout was not enforced"
    );
    let r = exec(
        &mut rt,
        &id,
        &["sh", "-c", "ps -o args | grep -c '^[s]leep 30$'"],
        5,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "0",
        "the timed-out exec was not killed"
    );
    let err = exec(&mut rt, &id, &["/no/such/binary"], 5).await;
    assert!(
        err.as_ref().is_err() || err.as_ref().unwrap().exit_code != 0,
        "exec of a missing binary must fail: {err:?}"
    );

    let stats = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let cpu = stats.cpu.unwrap();
    let mem = stats.memory.unwrap();
    assert!(
        cpu.timestamp > 0 && cpu.usage_core_nano_seconds.unwrap().value > 0,
        "{cpu:?}"
    );
    assert!(mem.usage_bytes.unwrap().value > 0, "{mem:?}");
    assert_eq!(stats.attributes.unwrap().id, id);
    // Traffic to the pod, so its interface has something to count.
    let ip = pod_ip(&mut rt, &pod_id).await;
    let ping = std::process::Command::new("busybox")
        .args(["ping", "-c", "2", "-W", "2", &ip])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping {ip}: {ping:?}");
    let pod_stats = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = pod_stats.linux.unwrap();
    assert_eq!(linux.containers.len(), 1);
    assert!(linux.memory.unwrap().usage_bytes.unwrap().value > 0);
    let net = linux.network.expect("pod network stats");
    let eth0 = net.default_interface.clone().expect("default interface");
    assert_eq!(eth0.name, "eth0");
    // Two echo requests of 84 bytes at least came in, two replies went out.
    assert!(eth0.rx_bytes.unwrap().value >= 168, "{eth0:?}");
    assert!(eth0.tx_bytes.unwrap().value >= 168, "{eth0:?}");
    assert!(!net.interfaces.iter().any(|i| i.name == "lo"), "{net:?}");
    // The container's sh and its sleep.
    let procs = linux
        .process
        .expect("process stats")
        .process_count
        .unwrap()
        .value;
    assert!(procs >= 1, "process count {procs}");
    let all = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].attributes.as_ref().unwrap().id, pod_id);

    // sh as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout.
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let st = status(&mut rt, &id).await;
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_str()),
        (cri::ContainerState::ContainerExited as i32, 137, "Error")
    );
    assert!(st.finished_at >= st.started_at);
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .expect("stopping a stopped container is fine");

    let ok = create(&mut rt, &pod_id, &p, container("ok", "exit 0"))
        .await
        .unwrap();
    let bad = create(&mut rt, &pod_id, &p, container("bad", "exit 7"))
        .await
        .unwrap();
    start(&mut rt, &ok).await;
    start(&mut rt, &bad).await;
    let st = wait_exited(&mut rt, &ok).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let st = wait_exited(&mut rt, &bad).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));

    let all = list(&mut rt, cri::ContainerFilter::default()).await;
    assert_eq!(all.len(), 3);
    let labelled = list(
        &mut rt,
        cri::ContainerFilter {
            label_selector: HashMap::from([("name".to_owned(), "ok".to_owned())]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        labelled.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [ok.as_str()]
    );
    let by_prefix = list(
        &mut rt,
        cri::ContainerFilter {
            id: bad[..12].to_owned(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_prefix.len(), 1);

    rt.remove_container(cri::RemoveContainerRequest {
        container_id: ok.clone(),
    })
    .await
    .unwrap();
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: ok.clone(),
    })
    .await
    .expect("removing a removed container is fine");
    assert!(
        !b.dir.path().join("root/bundles").join(&ok).exists(),
        "bundle left behind"
    );
    let err = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: ok.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Removing the pod removes the containers still in it.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    assert!(
        list(&mut rt, cri::ContainerFilter::default())
            .await
            .is_empty()
    );
    let bundles = std::fs::read_dir(b.dir.path().join("root/bundles"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(bundles, 0, "bundles left behind");
}

#[tokio::test]
async fn a_shared_pid_namespace_has_pause_as_pid_1() {
    let b = Berthd::start(12);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let p = pod(
        "shared",
        cri::NamespaceMode::Pod,
        &b.dir.path().join("logs"),
    );
    let pod_id = run_pod(&mut rt, &p).await;
    let mut c1 = container("one", "sleep 300");
    let mut c2 = container("two", "sleep 301");
    for c in [&mut c1, &mut c2] {
        c.linux = None; // the pod's PID namespace (the protobuf default)
    }
    let one = create(&mut rt, &pod_id, &p, c1).await.unwrap();
    let two = create(&mut rt, &pod_id, &p, c2).await.unwrap();
    start(&mut rt, &one).await;
    start(&mut rt, &two).await;
    let r = exec(&mut rt, &one, &["cat", "/proc/1/cmdline"], 5)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim_end_matches('\0'),
        "/pause"
    );
    let r = exec(
        &mut rt,
        &one,
        &["sh", "-c", "ps -o args | grep -c '[s]leep 301'"],
        5,
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).trim(),
        "1",
        "container one must see two's process"
    );
    // Stopping the pod ends every process of its PID namespace.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    for id in [&one, &two] {
        wait_exited(&mut rt, id).await;
    }
}

#[tokio::test]
async fn security_context_mounts_env_and_workdir_apply() {
    let (b, mut rt, p, pod_id) = busybox_pod(13, "sec").await;
    let host = b.dir.path().join("hostdata");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("file"), "from-host").unwrap();
    let mut c = container("sec", "sleep 300");
    c.working_dir = "/tmp".into();
    c.envs = vec![cri::KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: host.display().to_string(),
        readonly: true,
        ..Default::default()
    }];
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.run_as_user = Some(cri::Int64Value { value: 1234 });
    sc.run_as_group = Some(cri::Int64Value { value: 5678 });
    sc.supplemental_groups = vec![42];
    sc.readonly_rootfs = true;
    sc.capabilities = Some(cri::Capability {
        drop_capabilities: vec!["ALL".into()],
        add_capabilities: vec!["NET_BIND_SERVICE".into()],
        ..Default::default()
    });
    let id = create(&mut rt, &pod_id, &p, c).await.unwrap();
    start(&mut rt, &id).await;
    let out = |r: cri::ExecSyncResponse| String::from_utf8_lossy(&r.stdout).trim().to_owned();
    let id_out = out(exec(&mut rt, &id, &["id"], 5).await.unwrap());
    assert!(id_out.starts_with("uid=1234 gid=5678"), "{id_out}");
    assert!(
        id_out.contains("42"),
        "supplemental group missing: {id_out}"
    );
    assert_eq!(out(exec(&mut rt, &id, &["pwd"], 5).await.unwrap()), "/tmp");
    assert_eq!(
        out(exec(&mut rt, &id, &["sh", "-c", "echo $FOO"], 5)
            .await
            .unwrap()),
        "bar"
    );
    assert_eq!(
        out(exec(&mut rt, &id, &["cat", "/data/file"], 5).await.unwrap()),
        "from-host"
    );
    let w = exec(&mut rt, &id, &["sh", "-c", "echo x > /data/new"], 5)
        .await
        .unwrap();
    assert_ne!(w.exit_code, 0, "a readonly mount was writable");
    let w = exec(&mut rt, &id, &["touch", "/rootfile"], 5)
        .await
        .unwrap();
    assert_ne!(w.exit_code, 0, "a readonly rootfs was writable");
    let caps = out(exec(
        &mut rt,
        &id,
        &["sh", "-c", "grep CapBnd /proc/self/status"],
        5,
    )
    .await
    .unwrap());
    assert!(
        caps.ends_with("0000000000000400"),
        "only NET_BIND_SERVICE in the bounding set: {caps}"
    );
}

#[tokio::test]
async fn invalid_requests_get_the_right_code_and_leave_nothing() {
    let (b, mut rt, p, pod_id) = busybox_pod(14, "bad").await;

    let err = create(&mut rt, "0123456789abcdef", &p, container("x", "true"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let mut c = container("noimage", "true");
    c.image = Some(cri::ImageSpec {
        image: "127.0.0.1:5000/never/pulled:1".into(),
        ..Default::default()
    });
    let err = create(&mut rt, &pod_id, &p, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().contains("never/pulled"), "{}", err.message());
    let dangling = b.dir.path().join("dangling");
    std::os::unix::fs::symlink(b.dir.path().join("nothing"), &dangling).unwrap();
    let mut c = container("link", "true");
    c.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: dangling.display().to_string(),
        ..Default::default()
    }];
    let err = create(&mut rt, &pod_id, &p, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("mounts[0].host_path"),
        "{}",
        err.message()
    );
    let mut c = container("nometa", "true");
    c.metadata = None;
    let err = create(&mut rt, &pod_id, &p, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let mut c = container("nouser", "true");
    security(&mut c).run_as_username = "nosuchuser".into();
    let err = create(&mut rt, &pod_id, &p, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("nosuchuser"), "{}", err.message());
    // A profile the kernel does not have (or a host without AppArmor):
    // refused, not run unconfined.
    let mut c = container("noprofile", "true");
    security(&mut c).apparmor = Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Localhost as i32,
        localhost_ref: "localhost/berth-test-not-loaded".into(),
    });
    let err = create(&mut rt, &pod_id, &p, c).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("\"berth-test-not-loaded\""),
        "{}",
        err.message()
    );

    for (what, r) in [
        (
            "start",
            rt.start_container(cri::StartContainerRequest {
                container_id: "feed".into(),
            })
            .await
            .map(|_| ()),
        ),
        (
            "status",
            rt.container_status(cri::ContainerStatusRequest {
                container_id: "feed".into(),
                verbose: false,
            })
            .await
            .map(|_| ()),
        ),
    ] {
        assert_eq!(
            r.unwrap_err().code(),
            tonic::Code::NotFound,
            "{what} of an unknown container"
        );
    }
    rt.stop_container(cri::StopContainerRequest {
        container_id: "feed".into(),
        timeout: 0,
    })
    .await
    .expect("stopping an unknown container succeeds, as the CRI asks");
    assert!(
        list(&mut rt, cri::ContainerFilter::default())
            .await
            .is_empty(),
        "a failed create left a container"
    );
    let bundles = std::fs::read_dir(b.dir.path().join("root/bundles"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(bundles, 0, "a failed create left a bundle");
    // The name of a failed create is free again.
    let id = create(&mut rt, &pod_id, &p, container("nouser", "true"))
        .await
        .unwrap();
    assert_eq!(id.len(), 64);
}

#[tokio::test]
async fn concurrent_retries_of_a_create_get_one_container() {
    let (b, mut rt, p, pod_id) = busybox_pod(15, "retry").await;
    let c = container("same", "sleep 300");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let mut rt = b.runtime().await;
        let (pod_id, p, c) = (pod_id.clone(), p.clone(), c.clone());
        handles.push(tokio::spawn(async move {
            create(&mut rt, &pod_id, &p, c).await
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap().unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "retries made several containers: {ids:?}");
    let mut other = c.clone();
    other.command = vec!["sleep".into(), "1".into()];
    let err = create(&mut rt, &pod_id, &p, other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
}

#[tokio::test]
async fn kill_9_of_berthd_loses_no_container_and_no_log_line() {
    let mut b = Berthd::start(16);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let logs = b.dir.path().join("logs");
    let mut running = Vec::new();
    for i in 0..10 {
        let p = pod(&format!("k{i}"), cri::NamespaceMode::Container, &logs);
        let pod_id = run_pod(&mut rt, &p).await;
        let id = create(
            &mut rt,
            &pod_id,
            &p,
            container(
                "tick",
                "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.05; done",
            ),
        )
        .await
        .unwrap();
        start(&mut rt, &id).await;
        running.push((id, logs.join(format!("k{i}/tick.log"))));
    }
    let before: Vec<i32> = {
        let mut v = Vec::new();
        for (id, _) in &running {
            v.push(status(&mut rt, id).await.pid_or_started());
        }
        v
    };
    drop(rt);
    b.kill9();
    std::thread::sleep(Duration::from_millis(700));
    b.spawn();
    let mut rt = b.runtime().await;
    for ((id, log), started) in running.iter().zip(&before) {
        let st = status(&mut rt, id).await;
        assert_eq!(
            st.state,
            cri::ContainerState::ContainerRunning as i32,
            "{id} after restart: {st:?}"
        );
        assert_eq!(st.pid_or_started(), *started, "{id} was restarted");
        let n_before = std::fs::read_to_string(log).unwrap().lines().count();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(log).unwrap().lines().count() <= n_before {
            assert!(Instant::now() < deadline, "logs stopped flowing for {id}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(log).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(
                line.ends_with(&format!(" stdout F line-{n}")),
                "{}: line {n} lost or out of order: {line}",
                log.display()
            );
        }
    }
}

/// A stable identity of a container's run: its start time.
trait StartedAt {
    fn pid_or_started(&self) -> i32;
}

impl StartedAt for cri::ContainerStatus {
    fn pid_or_started(&self) -> i32 {
        (self.started_at % 1_000_000_007) as i32
    }
}

#[tokio::test]
async fn a_container_keeps_its_image_layers_through_remove_image() {
    let b = Berthd::start(17);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let mut img = b.images().await;
    let p = pod(
        "lease",
        cri::NamespaceMode::Container,
        &b.dir.path().join("logs"),
    );
    let pod_id = run_pod(&mut rt, &p).await;
    let id = create(&mut rt, &pod_id, &p, container("c", "sleep 300"))
        .await
        .unwrap();
    img.remove_image(cri::RemoveImageRequest {
        image: Some(cri::ImageSpec {
            image: busybox(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    start(&mut rt, &id).await;
    let r = exec(&mut rt, &id, &["sh", "-c", "ls /bin | wc -l"], 5)
        .await
        .unwrap();
    let n: u32 = String::from_utf8_lossy(&r.stdout).trim().parse().unwrap();
    assert!(
        n > 10,
        "the image's layers went with RemoveImage: {n} files in /bin"
    );
}

#[tokio::test]
async fn a_bidirectional_mount_carries_container_mounts_back_to_the_host() {
    let (b, mut rt, p, pod_id) = busybox_pod(18, "prop").await;
    // A shared mount on the host, as the kubelet's pods folder is.
    let host = b.dir.path().join("shared");
    std::fs::create_dir_all(host.join("inner")).unwrap();
    let h = host.display().to_string();
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .status()
            .unwrap()
    };
    assert!(sh(&format!("mount --bind {h} {h} && mount --make-rshared {h}")).success());
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .args(["-R", "-l", &self.0])
                .status();
        }
    }
    let _guard = Unmount(h.clone());
    let mut c = container("prop", "sleep 300");
    c.mounts = vec![cri::Mount {
        container_path: "/shared".into(),
        host_path: h.clone(),
        propagation: cri::MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    security(&mut c).privileged = true;
    let id = create(&mut rt, &pod_id, &p, c).await.unwrap();
    start(&mut rt, &id).await;
    let r = exec(
        &mut rt,
        &id,
        &[
            "sh",
            "-c",
            "mount -t tmpfs from-container /shared/inner && touch /shared/inner/made-inside",
        ],
        5,
    )
    .await
    .unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        host.join("inner/made-inside").exists(),
        "the container's mount did not reach the host"
    );
    // And nothing else of the container's leaked: its rootfs mounts stay
    // in its own namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundles = b.dir.path().join("root/bundles").display().to_string();
    let leaked: Vec<_> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&bundles) && mp.contains("/rootfs/"))
        .collect();
    assert!(
        leaked.is_empty(),
        "container mounts leaked to the host: {leaked:?}"
    );
}

#[tokio::test]
async fn update_container_resources_changes_the_live_limits() {
    let (_b, mut rt, p, pod_id) = busybox_pod(19, "upd").await;
    let id = create(&mut rt, &pod_id, &p, container("upd", "sleep 300"))
        .await
        .unwrap();
    start(&mut rt, &id).await;
    let limit = 96 * 1024 * 1024;
    rt.update_container_resources(cri::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            cpu_shares: 512,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    // The container's cgroup (berthd's default parent /berth), v1 or v2.
    let v1 = format!("/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes");
    let v2 = format!("/sys/fs/cgroup/berth/{id}/memory.max");
    let got = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .expect("the container's memory cgroup");
    assert_eq!(got.trim(), limit.to_string());
    let err = rt
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: "feed".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// The next event of `stream`, within 20 s.
async fn next_event(
    stream: &mut tonic::Streaming<cri::ContainerEventResponse>,
) -> cri::ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("no event within 20 s")
        .expect("event stream failed")
        .expect("event stream ended")
}

#[tokio::test]
async fn container_events_follow_the_lifecycle_and_survive_a_restart() {
    use cri::ContainerEventType as E;
    let (mut b, mut rt, p, pod_id) = busybox_pod(20, "events").await;
    let mut events = rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let kind = |e: &cri::ContainerEventResponse| E::try_from(e.container_event_type).unwrap();

    // Stopped by StopContainer.
    let id = create(&mut rt, &pod_id, &p, container("long", "sleep 300"))
        .await
        .unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(
        (kind(&e), e.container_id.as_str()),
        (E::ContainerCreatedEvent, id.as_str())
    );
    assert_eq!(e.pod_sandbox_status.as_ref().unwrap().id, pod_id);
    assert!(e.containers_statuses.iter().any(|s| s.id == id), "{e:?}");
    start(&mut rt, &id).await;
    let e = next_event(&mut events).await;
    assert_eq!(
        (kind(&e), e.container_id.as_str()),
        (E::ContainerStartedEvent, id.as_str())
    );
    let running = e.containers_statuses.iter().find(|s| s.id == id).unwrap();
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32);
    rt.stop_container(cri::StopContainerRequest {
        container_id: id.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(
        (kind(&e), e.container_id.as_str()),
        (E::ContainerStoppedEvent, id.as_str())
    );
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let e = next_event(&mut events).await;
    assert_eq!(
        (kind(&e), e.container_id.as_str()),
        (E::ContainerDeletedEvent, id.as_str())
    );
    assert!(!e.containers_statuses.iter().any(|s| s.id == id), "{e:?}");

    // A container that exits on its own, after berthd was killed and
    // restarted while it ran: its end is still reported, with its code.
    let id = create(&mut rt, &pod_id, &p, container("short", "sleep 3; exit 3"))
        .await
        .unwrap();
    start(&mut rt, &id).await;
    drop(events);
    b.kill9();
    b.spawn();
    let mut rt = b.runtime().await;
    let mut events = rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let e = next_event(&mut events).await;
    assert_eq!(
        (kind(&e), e.container_id.as_str()),
        (E::ContainerStoppedEvent, id.as_str())
    );
    let st = e.containers_statuses.iter().find(|s| s.id == id).unwrap();
    assert_eq!(st.exit_code, 3, "{st:?}");
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
}

/// Processes whose cgroup path names `needle`.
fn pids_in_cgroups_naming(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            std::fs::read_to_string(e.path().join("cgroup"))
                .ok()?
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

#[tokio::test]
async fn after_a_reboot_pods_are_not_ready_ips_released_and_containers_exited() {
    let (mut b, mut rt, p, pod_id) = busybox_pod(21, "reboot").await;
    let id = create(&mut rt, &pod_id, &p, container("long", "sleep 300"))
        .await
        .unwrap();
    start(&mut rt, &id).await;
    let ip = pod_ip(&mut rt, &pod_id).await;
    drop(rt);
    // What a reboot takes away: berthd, the monitors, the containers, every
    // mount, and the state folder (/run); root_dir (/var/lib) stays.
    b.kill9();
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    shims_under(b.dir.path()).into_iter().for_each(kill);
    common::wait_until(|| shims_under(b.dir.path()).is_empty(), "the shims to die");
    pids_in_cgroups_naming(&id).into_iter().for_each(kill);
    common::wait_until(
        || pids_in_cgroups_naming(&id).is_empty(),
        "the container to die",
    );
    let under = b.dir.path().to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .filter(|m| m.starts_with(&under))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    std::fs::remove_dir_all(b.state_dir()).unwrap();

    b.spawn();
    let mut rt = b.runtime().await;
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxNotready as i32);
    // CNI DEL ran at start: host-local holds the IP no more.
    let held: Vec<String> = std::fs::read_dir(b.dir.path().join("ipam"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!held.contains(&ip), "IP {ip} still allocated: {held:?}");
    let st = status(&mut rt, &id).await;
    assert_eq!(
        (st.state, st.exit_code, st.reason.as_str()),
        (cri::ContainerState::ContainerExited as i32, 255, "Unknown"),
        "{st:?}"
    );
    // The kubelet's clean-up works on what is left.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await
    .unwrap();
    assert!(
        list(&mut rt, cri::ContainerFilter::default())
            .await
            .is_empty()
    );
    // The container's cgroup, which no runtime state names any more.
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .flat_map(|h| walk_dirs(&h.path(), 3))
        .filter(|d| d.to_string_lossy().contains(&id))
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}

/// Folders under `dir`, `depth` levels down at most.
fn walk_dirs(dir: &std::path::Path, depth: u32) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if depth == 0 {
        return out;
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(e.path());
            out.extend(walk_dirs(&e.path(), depth - 1));
        }
    }
    out
}

/// A container that keeps /dev/zero's one "line" in memory (tail) under a
/// 32 MiB limit, started and waited for: (its id, its exited status).
async fn run_memory_hog(
    rt: &mut Rt,
    pod_id: &str,
    p: &cri::PodSandboxConfig,
) -> (String, cri::ContainerStatus) {
    let mut c = container("hog", "tail /dev/zero");
    c.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let id = create(rt, pod_id, p, c).await.unwrap();
    start(rt, &id).await;
    let st = wait_exited(rt, &id).await;
    (id, st)
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let (_b, mut rt, p, pod_id) = busybox_pod(22, "oom").await;
    let (_, st) = run_memory_hog(&mut rt, &pod_id, &p).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );
    // (A SIGKILL from StopContainer gives 137 with reason Error: see
    // lifecycle_logs_exec_stop_and_exit_reasons.)
}

#[tokio::test]
#[ignore = "needs systemd as PID 1: the vm-systemd tiers run it (hack/vm.sh --init systemd)"]
async fn under_the_systemd_driver_an_oom_kill_is_still_reported() {
    assert!(
        std::path::Path::new("/run/systemd/system").is_dir(),
        "systemd is not the init here"
    );
    let mut b = Berthd::start(23);
    b.reconfigure("cgroup_driver = \"systemd\"\n");
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let p = pod(
        "oomsd",
        cri::NamespaceMode::Container,
        &b.dir.path().join("logs"),
    );
    let pod_id = run_pod(&mut rt, &p).await;
    let (id, st) = run_memory_hog(&mut rt, &pod_id, &p).await;
    // systemd stops the emptied scope and removes its cgroup: what the
    // status says cannot have come from the cgroup's counters.
    let unit = format!("cri-berth-{id}.scope");
    common::wait_until(
        || {
            let o = std::process::Command::new("systemctl")
                .args(["show", "-p", "ActiveState", &unit])
                .output()
                .unwrap();
            !String::from_utf8_lossy(&o.stdout).contains("=active")
        },
        "the container's scope stopped",
    );
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );
    let again = status(&mut rt, &id).await;
    assert_eq!(again.reason, "OOMKilled", "{again:?}");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id,
    })
    .await
    .unwrap();
}

/// `GET path` on `addr`: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn metrics_endpoint_counts_calls_and_holds_pods_and_containers() {
    let (mut b, rt, ..) = busybox_pod(23, "metrics").await;
    drop(rt);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    b.reconfigure(&format!("metrics_address = {addr:?}\n"));
    let mut rt = b.runtime().await;
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    let p = pod(
        "metrics",
        cri::NamespaceMode::Container,
        &b.dir.path().join("logs"),
    );
    let id = create(&mut rt, &pods[0].id, &p, container("m", "sleep 300"))
        .await
        .unwrap();
    start(&mut rt, &id).await;
    let err = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "feed".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Pulls through the CRI: the web image's layers are fetched, then
    // found in the store by a second pull.
    let web = std::env::var("BERTH_WEB_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/berth/web:latest".into());
    for _ in 0..2 {
        b.images()
            .await
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: web.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let (status_line, body) = http_get(&addr, "/metrics");
    assert!(status_line.contains(" 200 "), "{status_line}");
    let value = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in:\n{body}"))
    };
    assert!(value("berth_image_pull_bytes_total") > 0, "{body}");
    assert!(
        value("berth_image_pull_layers_total{source=\"fetched\"}") >= 1,
        "{body}"
    );
    assert!(
        value("berth_image_pull_layers_total{source=\"cached\"}") >= 1,
        "{body}"
    );
    for want in [
        "berth_cri_requests_total{method=\"CreateContainer\"} 1\n",
        "berth_cri_requests_total{method=\"ContainerStatus\"} 1\n",
        "berth_cri_request_errors_total{method=\"ContainerStatus\"} 1\n",
        "berth_cri_request_errors_total{method=\"StartContainer\"} 0\n",
        "berth_cri_request_duration_seconds_count{method=\"StartContainer\"} 1\n",
        "berth_pod_sandboxes{state=\"ready\"} 1\n",
        "berth_containers{state=\"running\"} 1\n",
    ] {
        assert!(body.contains(want), "{want:?} not in:\n{body}");
    }
    let (status_line, _) = http_get(&addr, "/other");
    assert!(status_line.contains(" 404 "), "{status_line}");
}

/// The metric `name` of `ms` whose labels include all of `labels`, by the
/// descriptor's keys.
fn metric_value(
    descs: &[cri::MetricDescriptor],
    ms: &[cri::Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<u64> {
    let d = descs.iter().find(|d| d.name == name)?;
    ms.iter()
        .filter(|m| m.name == name)
        .find(|m| {
            labels.iter().all(|(k, v)| {
                d.label_keys
                    .iter()
                    .position(|key| key == k)
                    .is_some_and(|i| m.label_values.get(i).map(String::as_str) == Some(*v))
            })
        })
        .map(|m| m.value.as_ref().map_or(0, |v| v.value))
}

#[tokio::test]
async fn pod_sandbox_metrics_report_each_running_container_and_the_pod_network() {
    let (_b, mut rt, p, pod_id) = busybox_pod(24, "podmetrics").await;
    // Burns a few seconds of CPU, then waits on a sleeping child (two
    // processes).
    let burn = "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; sleep 300 & wait";
    let busy = create(&mut rt, &pod_id, &p, container("busy", burn))
        .await
        .unwrap();
    start(&mut rt, &busy).await;
    let idle = create(&mut rt, &pod_id, &p, container("idle", "sleep 300"))
        .await
        .unwrap();
    start(&mut rt, &idle).await;
    let exited = create(&mut rt, &pod_id, &p, container("done", "true"))
        .await
        .unwrap();
    start(&mut rt, &exited).await;

    let descs = rt
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    assert!(descs.len() >= 30, "{descs:?}");

    // Until the loop has burnt its second and ended (slow machines take
    // longer).
    let deadline = Instant::now() + Duration::from_secs(60);
    let pm = loop {
        let all = rt
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .pod_metrics;
        let pm = all
            .into_iter()
            .find(|m| m.pod_sandbox_id == pod_id)
            .expect("the pod has metrics");
        let cpu = pm
            .container_metrics
            .iter()
            .find(|c| c.container_id == busy)
            .and_then(|c| {
                metric_value(
                    &descs,
                    &c.metrics,
                    "container_cpu_usage_seconds_total",
                    &[("cpu", "total")],
                )
            });
        // The loop is over once the shell has its sleeping child.
        let procs = pm
            .container_metrics
            .iter()
            .find(|c| c.container_id == busy)
            .and_then(|c| metric_value(&descs, &c.metrics, "container_processes", &[]));
        if (cpu.is_some_and(|s| s >= 1) && procs == Some(2)) || Instant::now() > deadline {
            break pm;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // Every sample is described and carries one value per key.
    let all = pm
        .metrics
        .iter()
        .chain(pm.container_metrics.iter().flat_map(|c| &c.metrics));
    for m in all {
        let d = descs.iter().find(|d| d.name == m.name);
        let d = d.unwrap_or_else(|| panic!("{} is not described", m.name));
        assert_eq!(m.label_values.len(), d.label_keys.len(), "{m:?}");
    }
    // Running containers only: the exited one is not there.
    let mut ids: Vec<&str> = pm
        .container_metrics
        .iter()
        .map(|c| c.container_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![busy.as_str(), idle.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);

    let of = |id: &str| {
        &pm.container_metrics
            .iter()
            .find(|c| c.container_id == id)
            .unwrap()
            .metrics
    };
    let busy_m = of(&busy);
    let who = [
        ("container", "busy"),
        ("namespace", "default"),
        ("pod", "podmetrics"),
    ];
    let get = |name: &str| metric_value(&descs, busy_m, name, &who);
    assert!(
        get("container_cpu_usage_seconds_total").is_some_and(|s| s >= 1),
        "the busy loop's CPU: {busy_m:?}"
    );
    assert!(
        get("container_memory_working_set_bytes").is_some_and(|b| b > 0),
        "{busy_m:?}"
    );
    assert!(
        get("container_memory_usage_bytes").is_some_and(|b| b > 0),
        "{busy_m:?}"
    );
    // The shell and its sleeping child.
    assert_eq!(get("container_processes"), Some(2), "{busy_m:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = get("container_start_time_seconds").unwrap();
    assert!(
        now - 120 < started && started <= now,
        "started {started}, now {now}"
    );
    // Pressure stall totals: cgroup v2 with PSI only (the v2 VM tier runs
    // this test; this host's containers are in v1 hierarchies).
    let psi = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && std::path::Path::new("/proc/pressure/cpu").exists();
    let waiting = get("container_pressure_cpu_waiting_seconds_total");
    let io_stall = get("container_pressure_io_stalled_seconds_total");
    if psi {
        assert!(waiting.is_some() && io_stall.is_some(), "{busy_m:?}");
    } else {
        assert_eq!((waiting, io_stall), (None, None), "no PSI here");
    }
    let idle_cpu = metric_value(&descs, of(&idle), "container_cpu_usage_seconds_total", &[]);
    assert_eq!(idle_cpu, Some(0), "sleep burns no whole second");

    // The pod's network, at pod level: eth0 has seen the CNI's traffic
    // (at least the bridge's router solicitations or our ARP), loopback
    // is left out as cAdvisor does.
    let pod_labels = [
        ("container", "POD"),
        ("id", pod_id.as_str()),
        ("pod", "podmetrics"),
    ];
    let eth0 = [pod_labels.as_slice(), &[("interface", "eth0")]].concat();
    assert!(
        metric_value(
            &descs,
            &pm.metrics,
            "container_network_receive_bytes_total",
            &eth0
        )
        .is_some(),
        "{:?}",
        pm.metrics
    );
    let lo = [pod_labels.as_slice(), &[("interface", "lo")]].concat();
    assert_eq!(
        metric_value(
            &descs,
            &pm.metrics,
            "container_network_receive_bytes_total",
            &lo
        ),
        None
    );
}

#[tokio::test]
async fn checkpoint_writes_an_archive_or_says_why_not_and_the_container_runs_on() {
    let (b, mut rt, p, pod_id) = busybox_pod(25, "ckpt").await;
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done";
    let id = create(&mut rt, &pod_id, &p, container("c", script))
        .await
        .unwrap();
    start(&mut rt, &id).await;
    let loc = b.dir.path().join("ckpt.tar");
    let req = |container_id: &str, location: &str| cri::CheckpointContainerRequest {
        container_id: container_id.into(),
        location: location.into(),
        timeout: 0,
    };
    let e = rt
        .checkpoint_container(req("feed", loc.to_str().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = rt
        .checkpoint_container(req(&id, "rel.tar"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("location"), "{e:?}");

    let r = rt
        .checkpoint_container(req(&id, loc.to_str().unwrap()))
        .await;
    // CRIU works where the kernel lets it (the v2 VM's Debian kernel); this
    // host's kernel is newer than Debian's criu understands.
    let criu_works = std::process::Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success());
    if criu_works {
        r.unwrap();
        let mut names = Vec::new();
        let mut diff = Vec::new();
        for e in tar::Archive::new(std::fs::File::open(&loc).unwrap())
            .entries()
            .unwrap()
        {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            if name == "rootfs-diff.tar" {
                std::io::Read::read_to_end(&mut e, &mut diff).unwrap();
            }
            names.push(name);
        }
        for want in [
            "checkpoint/inventory.img",
            "config.dump",
            "spec.dump",
            "rootfs-diff.tar",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
        let diff_names: Vec<String> = tar::Archive::new(diff.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            diff_names.iter().any(|n| n.ends_with("tmp/count")),
            "the writable layer's file: {diff_names:?}"
        );
    } else {
        let e = r.unwrap_err();
        assert!(e.message().contains("criu"), "{e:?}");
        assert!(!loc.exists(), "no archive after a failed dump");
    }
    // Either way the container runs on, and nothing is left behind.
    assert_eq!(
        status(&mut rt, &id).await.state,
        cri::ContainerState::ContainerRunning as i32
    );
    let left = std::fs::read_dir(b.state_dir().join("checkpoints"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "work folders left");
    let partial = loc.with_extension("berth-partial");
    assert!(!partial.exists());
}

/// A pod in a user namespace of its own (CRI userns mode POD): root inside
/// is the first id of the range, the pod's namespaces belong to it (sysfs
/// mounts in the container), the status says so, and the requests the CRI
/// defines as errors are refused, leaving no sandbox.
#[tokio::test]
async fn a_pod_user_namespace_maps_root_to_its_range() {
    let b = Berthd::start(18);
    b.pull(&busybox());
    let mut rt = b.runtime().await;
    let logs = b.dir.path().join("logs");
    let range = |container_id, host_id, length| cri::IdMapping {
        container_id,
        host_id,
        length,
    };
    let with_userns = |name: &str, mode: cri::NamespaceMode, maps: Vec<cri::IdMapping>| {
        let mut p = pod(name, cri::NamespaceMode::Pod, &logs);
        let opts = p
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut())
            .unwrap();
        opts.userns_options = Some(cri::UserNamespace {
            mode: mode as i32,
            uids: maps.clone(),
            gids: maps,
        });
        p
    };
    let p = with_userns(
        "userns",
        cri::NamespaceMode::Pod,
        vec![range(0, 200_000, 65_536)],
    );
    let pod_id = run_pod(&mut rt, &p).await;
    let st = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let u = st
        .linux
        .and_then(|l| l.namespaces)
        .and_then(|n| n.options)
        .and_then(|o| o.userns_options)
        .expect("the status names the user namespace");
    assert_eq!(u.mode, cri::NamespaceMode::Pod as i32);
    assert_eq!(u.uids, vec![range(0, 200_000, 65_536)]);

    // In the pod's pid namespace (with its pause) and a container's own.
    for (name, pid_mode) in [
        ("shared", None),
        ("own", Some(cri::NamespaceMode::Container)),
    ] {
        let mut c = container(
            name,
            "cat /proc/self/uid_map /proc/self/gid_map; echo uid=$(id -u); ls /sys/class/net; echo lo=$(cat /sys/class/net/lo/flags); echo owner=$(stat -c %u:%g /etc/passwd); mkdir /etc/made && echo rootfs=rw:$(stat -c %u /etc/made) || echo rootfs=ro; echo done; sleep 300",
        );
        match pid_mode {
            None => c.linux = None,
            Some(m) => {
                security(&mut c).namespace_options.as_mut().unwrap().pid = m as i32;
            }
        }
        let id = create(&mut rt, &pod_id, &p, c).await.unwrap();
        start(&mut rt, &id).await;
        let out = wait_for_log(&logs.join("userns").join(format!("{name}.log")), "done");
        let maps: Vec<Vec<&str>> = out
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .map(|l| l.split_whitespace().collect())
            .filter(|f: &Vec<&str>| f.len() == 3)
            .collect();
        assert_eq!(maps, vec![vec!["0", "200000", "65536"]; 2], "{name}: {out}");
        assert!(out.contains("uid=0"), "{name}: {out}");
        // The image's root-owned files are the pod root's (idmapped
        // layers), and it can write where the image's root could.
        assert!(out.contains("owner=0:0"), "{name}: {out}");
        assert!(out.contains("rootfs=rw:0"), "{name}: {out}");
        assert!(
            out.contains("eth0"),
            "{name}: sysfs shows no pod network: {out}"
        );
        // lo is up (IFF_UP | IFF_LOOPBACK), with no `loopback` plugin.
        assert!(out.contains("lo=0x9"), "{name}: lo is not up: {out}");
    }

    // Refused, each naming what is wrong, with no sandbox left.
    let before = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    for (name, mode, maps, want) in [
        (
            "ux1",
            cri::NamespaceMode::Container,
            vec![],
            "userns_options.mode",
        ),
        (
            "ux2",
            cri::NamespaceMode::Target,
            vec![],
            "userns_options.mode",
        ),
        (
            "ux3",
            cri::NamespaceMode::Pod,
            vec![range(0, 1000, 100_000), range(0, 2000, 100_000)],
            "exactly one mapping",
        ),
        (
            "ux4",
            cri::NamespaceMode::Pod,
            vec![range(1, 1000, 100_000)],
            "container id 0",
        ),
        (
            "ux5",
            cri::NamespaceMode::Pod,
            vec![range(0, u32::MAX, 2)],
            "not a range",
        ),
    ] {
        let e = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(with_userns(name, mode, maps)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(e.message().contains(want), "{name}: {}", e.message());
    }
    let after = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    assert_eq!(before, after);

    // A state folder the pod's root cannot walk to is named, not run into.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let e = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(with_userns(
                "ux6",
                cri::NamespaceMode::Pod,
                vec![range(0, 300_000, 65_536)],
            )),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    std::fs::set_permissions(b.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&b.dir.path().display().to_string()),
        "{}",
        e.message()
    );

    // Removing the pod unpins its user namespace.
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    })
    .await
    .unwrap();
    let pinned: Vec<_> = std::fs::read_dir(b.state_dir().join("ns"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pinned.is_empty(), "namespaces left pinned: {pinned:?}");
}
