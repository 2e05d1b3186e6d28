//! Security contexts of static pods against a real berthd (root): the
//! pod's identity, groups and fsGroup, the container's overrides,
//! capabilities, read-only root, no_new_privs and seccomp, seen from inside
//! the container; runAsNonRoot refused for an image that runs as root; pod
//! user namespaces (hostUsers: false) seen from inside and from the host,
//! across a kubelet restart; fsGroupChangePolicy; procMount.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn pod_and_container_security_contexts_apply() {
    let node = Node::start(51);
    node.write_manifest(
        "sec.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: sec}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
    fsGroup: 2000
  containers:
  - name: main
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo ID=$(id -u):$(id -g); echo GROUPS=$(id -G); grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; touch /rootfs-write 2>/dev/null && echo ROOT=rw || echo ROOT=ro; echo hi > /data/f && echo DATA=$(stat -c %g /data):$(stat -c %g /data/f); echo done; sleep 3600"]
    securityContext:
      runAsUser: 1001
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {{drop: [ALL]}}
      seccompProfile: {{type: RuntimeDefault}}
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
"#,
            b = busybox()
        ),
    );
    wait_until(
        Duration::from_secs(60),
        "the main container's output",
        || {
            node.container_log("default", &format!("sec-{}", node.node), "main")
                .contains("done")
        },
    );
    let log = node.container_log("default", &format!("sec-{}", node.node), "main");
    assert!(
        log.contains("ID=1001:3000"),
        "container runAsUser over the pod's:\n{log}"
    );
    let groups: Vec<&str> = log
        .lines()
        .find_map(|l| l.strip_prefix("GROUPS="))
        .unwrap()
        .split_whitespace()
        .collect();
    for g in ["3000", "4000", "2000"] {
        assert!(groups.contains(&g), "group {g} missing: {groups:?}");
    }
    assert!(
        log.contains("CapEff:\t0000000000000000"),
        "capabilities dropped:\n{log}"
    );
    assert!(
        log.contains("NoNewPrivs:\t1"),
        "allowPrivilegeEscalation false:\n{log}"
    );
    assert!(
        log.contains("Seccomp:\t2"),
        "RuntimeDefault seccomp:\n{log}"
    );
    assert!(log.contains("ROOT=ro"), "readOnlyRootFilesystem:\n{log}");
    assert!(
        log.contains("DATA=2000:2000"),
        "fsGroup owns the emptyDir:\n{log}"
    );
    // berthd streams container events: the kubelet follows them.
    assert!(
        node.kubelet_log()
            .contains("following the runtime's container events"),
        "evented PLEG is not on against berthd"
    );

    // runAsNonRoot and an image without USER: refused before creating.
    node.write_manifest(
        "nonroot.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: nonroot}}\nspec:\n  securityContext: {{runAsNonRoot: true}}\n  containers:\n  - {{name: nonroot, image: {}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n",
            busybox()
        ),
    );
    let s = node.wait_status("nonroot", 30, "nonroot refused", |s| {
        s["status"]["containerStatuses"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "nonroot"))
            .is_some_and(|c| c["state"]["waiting"]["reason"] == "CreateContainerConfigError")
    });
    let c = s["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nonroot")
        .unwrap()
        .clone();
    assert!(
        c["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("container has runAsNonRoot and image will run as root"),
        "{c}"
    );
    let (_, cs) = node.runtime_objects(&uid(&s)).await;
    assert!(
        !cs.iter()
            .any(|x| x.labels["io.kubernetes.container.name"] == "nonroot"),
        "a refused container was created: {cs:?}"
    );
}

/// A v1 controller's folder, or the v2 one.
fn cgroup_dir(controller: &str, path: &str) -> std::path::PathBuf {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let rel = path.trim_start_matches('/');
    if base.join("cgroup.controllers").exists() {
        base.join(rel)
    } else {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let m = mounts
            .lines()
            .filter(|l| l.contains(" - cgroup "))
            .find(|l| {
                l.rsplit(' ')
                    .next()
                    .unwrap()
                    .split(',')
                    .any(|o| o == controller)
            })
            .and_then(|l| l.split(' ').nth(4))
            .unwrap();
        std::path::Path::new(m).join(rel)
    }
}

fn read_first(dir: &std::path::Path, files: &[&str]) -> String {
    files
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_cgroups_by_qos_with_their_limits() {
    let node = Node::start(52);
    let b = busybox();
    for (name, res) in [
        ("guaranteed", "{limits: {cpu: 500m, memory: 64Mi}}"),
        ("burstable", "{requests: {cpu: 250m}}"),
        ("besteffort", "{}"),
    ] {
        node.write_manifest(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: {b}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo done; sleep 3600'], resources: {res}}}\n"
            ),
        );
    }
    let root = &node.cgroup_root;
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    for (name, qos, shares, quota, memory) in [
        ("guaranteed", "", 512, "50000", Some(64i64 << 20)),
        ("burstable", "/burstable", 256, "-1", None),
        ("besteffort", "/besteffort", 2, "-1", None),
    ] {
        let s = node.wait_status(name, 60, "Running", |s| phase(s) == "Running");
        let pod_cg = format!("{root}/kubepods{qos}/pod{}", uid(&s));
        wait_until(Duration::from_secs(20), "the container's output", || {
            node.container_log("default", &format!("{name}-{}", node.node), "main")
                .contains("done")
        });
        let cpu = cgroup_dir("cpu", &pod_cg);
        let mem = cgroup_dir("memory", &pod_cg);
        // The container's process is in a cgroup below the pod's (seen from
        // the host: inside, a cgroup namespace may hide the path).
        let busy = std::fs::read_dir(&cpu)
            .unwrap_or_else(|e| panic!("{name}: {}: {e}", cpu.display()))
            .flatten()
            .filter(|e| e.path().is_dir())
            .any(|e| {
                std::fs::read_to_string(e.path().join("cgroup.procs"))
                    .is_ok_and(|p| !p.trim().is_empty())
            });
        assert!(
            busy,
            "{name}: no process in a cgroup below {}",
            cpu.display()
        );
        if v2 {
            let weight = 1 + ((shares - 2) * 9999) / 262_142;
            assert_eq!(
                read_first(&cpu, &["cpu.weight"]),
                weight.to_string(),
                "{name}"
            );
            let q = if quota == "-1" { "max" } else { quota };
            assert_eq!(
                read_first(&cpu, &["cpu.max"]),
                format!("{q} 100000"),
                "{name}"
            );
            let m = memory.map_or("max".to_owned(), |m| m.to_string());
            assert_eq!(read_first(&mem, &["memory.max"]), m, "{name}");
        } else {
            assert_eq!(
                read_first(&cpu, &["cpu.shares"]),
                shares.to_string(),
                "{name}"
            );
            assert_eq!(read_first(&cpu, &["cpu.cfs_quota_us"]), quota, "{name}");
            if let Some(m) = memory {
                assert_eq!(
                    read_first(&mem, &["memory.limit_in_bytes"]),
                    m.to_string(),
                    "{name}"
                );
            }
        }
        node.remove_manifest(&format!("{name}.yaml"));
        wait_until(Duration::from_secs(30), "the pod's cgroup removed", || {
            !cpu.exists() && !mem.exists()
        });
    }
    // The burstable class's shares follow its pods: back to the minimum.
    let burst = cgroup_dir("cpu", &format!("{root}/kubepods/burstable"));
    if !v2 {
        assert_eq!(read_first(&burst, &["cpu.shares"]), "2");
    }
}

fn systemctl_show(unit: &str, props: &str) -> String {
    let o = std::process::Command::new("systemctl")
        .args(["show", "-p", props, unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs systemd as PID 1: the vm-systemd tiers run it (hack/vm.sh --init systemd)"]
async fn with_the_systemd_driver_pods_are_slices_and_containers_scopes() {
    assert!(
        std::path::Path::new("/run/systemd/system").is_dir(),
        "systemd is not the init here"
    );
    let node = Node::start_systemd(53);
    let b = busybox();
    node.write_manifest(
        "sd.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sd}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: {b}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo done; sleep 3600'], resources: {{requests: {{cpu: 250m}}, limits: {{memory: 64Mi}}}}}}\n"
        ),
    );
    let s = node.wait_status("sd", 90, "Running", |s| phase(s) == "Running");
    let uid = uid(&s);
    // Upstream's names: the UID's dashes become underscores.
    let slice = format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let props = systemctl_show(&slice, "ActiveState,Slice");
    assert!(props.contains("ActiveState=active"), "{slice}: {props}");
    assert!(
        props.contains("Slice=kubepods-burstable.slice"),
        "{slice}: {props}"
    );
    // The container is a scope in the pod's slice, made by berth-runc.
    let (_, containers) = node.runtime_objects(&uid).await;
    let id = &containers.first().expect("the pod's container").id;
    let scope = format!("cri-berth-{id}.scope");
    let props = systemctl_show(&scope, "ActiveState,Slice");
    assert!(props.contains("ActiveState=active"), "{scope}: {props}");
    assert!(
        props.contains(&format!("Slice={slice}")),
        "{scope}: {props}"
    );
    // The pod's limits in its slice's files: 250m is 256 shares, and
    // every container has a memory limit.
    let path = format!("/kubepods.slice/kubepods-burstable.slice/{slice}");
    let cpu = cgroup_dir("cpu", &path);
    let mem = cgroup_dir("memory", &path);
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(read_first(&cpu, &["cpu.weight"]), "10");
        assert_eq!(read_first(&mem, &["memory.max"]), "67108864");
    } else {
        assert_eq!(read_first(&cpu, &["cpu.shares"]), "256");
        assert_eq!(read_first(&mem, &["memory.limit_in_bytes"]), "67108864");
    }
    node.remove_manifest("sd.yaml");
    wait_until(Duration::from_secs(60), "the pod's slice stopped", || {
        !systemctl_show(&slice, "ActiveState").contains("ActiveState=active")
    });
    assert!(!cpu.exists(), "{} left", cpu.display());
    assert!(
        !systemctl_show(&scope, "ActiveState").contains("ActiveState=active"),
        "the container's scope outlived its pod"
    );
}

/// Root in a pod's user namespace is nobody to the host: it must be able
/// to walk to berthd's folders under the node's (0700) temporary folder.
fn open_for_user_namespaces(node: &Node) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(node.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
}

/// A static pod with `hostUsers: false` whose container reports its uid
/// and its user and group id maps.
fn userns_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  hostUsers: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo UID=$(id -u); sed 's/^/UIDMAP /' /proc/self/uid_map; sed 's/^/GIDMAP /' /proc/self/gid_map; echo done; sleep 3600"]
"#,
        b = busybox()
    )
}

/// The numbers of the log line that starts with `tag`.
fn numbers(log: &str, tag: &str) -> Vec<u64> {
    log.lines()
        .find_map(|l| l.strip_prefix(tag))
        .unwrap_or_else(|| panic!("no {tag} line in:\n{log}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Wait for pod `name`'s container output; returns the first host id its
/// user namespace maps container id 0 to, after checking the maps.
fn block_of(node: &Node, name: &str) -> u64 {
    let pod = format!("{name}-{}", node.node);
    wait_until(Duration::from_secs(60), &format!("{name}'s output"), || {
        node.container_log("default", &pod, "main").contains("done")
    });
    let log = node.container_log("default", &pod, "main");
    assert!(log.contains("UID=0"), "{name}: root inside:\n{log}");
    let uids = numbers(&log, "UIDMAP");
    assert_eq!(numbers(&log, "GIDMAP"), uids, "{name}: the same gid map");
    assert_eq!((uids[0], uids[2]), (0, 65536), "{name}: {uids:?}");
    let start = uids[1];
    assert!(
        start >= 65536 && start.is_multiple_of(65536),
        "{name}: block at {start}"
    );
    start
}

/// `<root-dir>/pods/<uid>/userns`, the kubelet's record of the pod's block.
fn userns_file(node: &Node, uid: &str) -> std::path::PathBuf {
    node.dir
        .path()
        .join("kubelet/pods")
        .join(uid)
        .join("userns")
}

/// The host pid of the pod's running container (berthd's verbose status).
async fn container_pid(node: &Node, uid: &str) -> i32 {
    let (_, cs) = node.runtime_objects(uid).await;
    let c = cs
        .iter()
        .find(|c| c.state == k8s_cri::v1::ContainerState::ContainerRunning as i32)
        .expect("a running container");
    let st = node
        .runtime()
        .await
        .container_status(k8s_cri::v1::ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    info["pid"].as_i64().expect("a pid in the info") as i32
}

#[tokio::test(flavor = "multi_thread")]
async fn host_users_false_gives_each_pod_its_own_id_block() {
    let mut node = Node::start(54);
    open_for_user_namespaces(&node);
    node.write_manifest("un1.yaml", &userns_pod("un1"));
    let start1 = block_of(&node, "un1");
    node.write_manifest("un2.yaml", &userns_pod("un2"));
    let start2 = block_of(&node, "un2");
    assert!(
        start1.abs_diff(start2) >= 65536,
        "overlapping blocks {start1} and {start2}"
    );
    let uid1 = uid(&node.wait_status("un1", 30, "Running", |s| phase(s) == "Running"));
    let uid2 = uid(&node.wait_status("un2", 30, "Running", |s| phase(s) == "Running"));

    // The host sees the container's root as the block's first id.
    let pid = container_pid(&node, &uid1).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for (field, want) in [("Uid:", start1), ("Gid:", start1)] {
        let ids = numbers(&status, field);
        assert!(
            ids.iter().all(|i| *i == want),
            "{field} {ids:?}, want {want}"
        );
    }
    // upstream's file, naming the same block.
    let text1 = std::fs::read(userns_file(&node, &uid1)).unwrap();
    let text2 = std::fs::read(userns_file(&node, &uid2)).unwrap();
    let f: serde_json::Value = serde_json::from_slice(&text1).unwrap();
    assert_eq!(
        f,
        serde_json::json!({
            "uidMappings": [{"hostId": start1, "containerId": 0, "length": 65536}],
            "gidMappings": [{"hostId": start1, "containerId": 0, "length": 65536}],
        })
    );

    // A restarted kubelet adopts the pods as they are, and gives a new pod
    // a block none of them has.
    let before1 = node.runtime_objects(&uid1).await;
    let before2 = node.runtime_objects(&uid2).await;
    node.stop_kubelet();
    node.start_kubelet();
    node.write_manifest("un3.yaml", &userns_pod("un3"));
    let start3 = block_of(&node, "un3");
    assert!(
        start3.abs_diff(start1) >= 65536 && start3.abs_diff(start2) >= 65536,
        "un3 got {start3}, in use: {start1}, {start2}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (uid, before) in [(&uid1, before1), (&uid2, before2)] {
        let after = node.runtime_objects(uid).await;
        let ids = |(sbs, cs): &(Vec<k8s_cri::v1::PodSandbox>, Vec<k8s_cri::v1::Container>)| {
            (
                sbs.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
                cs.iter()
                    .map(|c| (c.id.clone(), c.state))
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(ids(&after), ids(&before), "pod {uid} changed");
    }
    assert_eq!(std::fs::read(userns_file(&node, &uid1)).unwrap(), text1);
    assert_eq!(std::fs::read(userns_file(&node, &uid2)).unwrap(), text2);
    let second_run = node.kubelet_run_log(2);
    assert!(
        !second_run
            .lines()
            .any(|l| l.contains("Created container") && !l.contains("un3-")),
        "the restarted kubelet created a container of an adopted pod:\n{second_run}"
    );

    // A removed pod's block is freed and given to the next pod.
    node.remove_manifest("un1.yaml");
    wait_until(Duration::from_secs(30), "un1's folder removed", || {
        !userns_file(&node, &uid1).exists()
    });
    node.write_manifest("un4.yaml", &userns_pod("un4"));
    assert_eq!(
        block_of(&node, "un4"),
        start1,
        "the freed block (the lowest) goes to the next pod"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn host_users_false_with_host_network_is_refused() {
    let node = Node::start(55);
    let b = busybox();
    node.write_manifest(
        "unnet.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: unnet}}\nspec:\n  hostUsers: false\n  hostNetwork: true\n  containers:\n  - {{name: main, image: {b}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
        ),
    );
    node.write_manifest(
        "plain.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: plain}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: {b}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
        ),
    );
    let s = node.wait_status("unnet", 30, "refused", |s| {
        s["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.hostNetwork"))
    });
    let w = &s["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(w["reason"], "ContainerCreating", "{w}");
    assert_eq!(
        w["message"],
        "Failed to create pod sandbox: spec.hostNetwork: may not be true when spec.hostUsers is false"
    );
    assert_eq!(phase(&s), "Pending");
    // The other pod runs.
    node.wait_status("plain", 60, "Running", |s| phase(s) == "Running");
    let (sbs, cs) = node.runtime_objects(&uid(&s)).await;
    assert!(
        sbs.is_empty() && cs.is_empty(),
        "the runtime got {sbs:?} {cs:?}"
    );
    assert!(!userns_file(&node, &uid(&s)).exists(), "a block was given");
    assert!(node.kubelet_log().contains("FailedCreatePodSandBox"));
}

/// An emptyDir's folder on the host.
fn empty_dir(node: &Node, uid: &str, volume: &str) -> std::path::PathBuf {
    node.dir
        .path()
        .join("kubelet/pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(volume)
}

fn gid_of(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .gid()
}

#[tokio::test(flavor = "multi_thread")]
async fn fs_group_change_policy_on_root_mismatch_skips_a_volume_that_is_right() {
    let node = Node::start(56);
    let b = busybox();
    for (name, policy) in [("always", "Always"), ("onroot", "OnRootMismatch")] {
        node.write_manifest(
            &format!("{name}.yaml"),
            &format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 2000, fsGroupChangePolicy: {policy}}}
  containers:
  - name: main
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /data/f && chgrp 1234 /data/f && echo done; sleep 3600"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
"#
            ),
        );
    }
    let mut dirs = Vec::new();
    for name in ["always", "onroot"] {
        wait_until(Duration::from_secs(60), &format!("{name}'s output"), || {
            node.container_log("default", &format!("{name}-{}", node.node), "main")
                .contains("done")
        });
        let s = node.wait_status(name, 30, "Running", |s| phase(s) == "Running");
        let dir = empty_dir(&node, &uid(&s), "data");
        // Both were given to fsGroup when they were set up.
        assert_eq!(gid_of(&dir), 2000, "{name}");
        dirs.push(dir);
    }
    let (always, onroot) = (&dirs[0], &dirs[1]);
    // Always: the next sync (syncFrequency 10s) walks the volume again.
    wait_until(Duration::from_secs(30), "always's file re-chowned", || {
        gid_of(&always.join("f")) == 2000
    });
    // OnRootMismatch: a root that is right is not walked, sync after sync.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(gid_of(&onroot.join("f")), 1234, "onroot's file re-chowned");
    // A root that is not right is: the whole volume again.
    std::os::unix::fs::chown(onroot, None, Some(0)).unwrap();
    wait_until(Duration::from_secs(30), "onroot walked again", || {
        gid_of(onroot) == 2000 && gid_of(&onroot.join("f")) == 2000
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn proc_mount_unmasked_leaves_proc_unmasked() {
    let node = Node::start(57);
    open_for_user_namespaces(&node);
    let b = busybox();
    // How many mounts are at two of berthd's default masked paths (this
    // kernel has no /proc/kcore) and one of its read-only ones.
    let script = r#"for p in /proc/keys /proc/timer_list /proc/sys; do echo "MOUNTS $p $(awk -v p=$p '$5 == p' /proc/self/mountinfo | wc -l)"; done; echo done; sleep 3600"#;
    let container = |name: &str, proc_mount: &str| {
        format!(
            "  - name: {name}\n    image: {b}\n    imagePullPolicy: IfNotPresent\n    securityContext: {{procMount: {proc_mount}}}\n    command: [sh, -c, {script:?}]\n"
        )
    };
    // Unmasked goes with a user namespace (the API server says so).
    node.write_manifest(
        "proc.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: proc}}\nspec:\n  hostUsers: false\n  terminationGracePeriodSeconds: 1\n  containers:\n{}{}",
            container("unmasked", "Unmasked"),
            container("default", "Default")
        ),
    );
    let pod = format!("proc-{}", node.node);
    let mounts = |container: &str| {
        wait_until(
            Duration::from_secs(60),
            &format!("{container}'s output"),
            || {
                node.container_log("default", &pod, container)
                    .contains("done")
            },
        );
        let log = node.container_log("default", &pod, container);
        ["/proc/keys", "/proc/timer_list", "/proc/sys"].map(|p| {
            numbers(&log, &format!("MOUNTS {p} "))
                .first()
                .copied()
                .unwrap_or_else(|| panic!("{container}: no count for {p}:\n{log}"))
        })
    };
    assert_eq!(
        mounts("default"),
        [1, 1, 1],
        "Default: masked and read-only paths are mounts"
    );
    assert_eq!(
        mounts("unmasked"),
        [0, 0, 0],
        "Unmasked: nothing over /proc"
    );
}
