//! Security contexts of static pods against a real berthd (root): the
//! pod's identity, groups and fsGroup, the container's overrides,
//! capabilities, read-only root, no_new_privs and seccomp, seen from inside
//! the container; runAsNonRoot refused for an image that runs as root.

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
