//! Volumes of static pods against a real berthd (root): emptyDir shared by
//! an init container and the main one, emptyDir in memory (a tmpfs),
//! hostPath created by type, downwardAPI files, a subPath, a subPath that
//! a symlink in the volume points outside (refused), and teardown (no
//! mount left under the kubelet's folder once the pod is gone).

mod common;

use std::time::Duration;

use common::*;

fn container_log(node: &Node, pod: &str, container: &str) -> String {
    node.container_log("default", &format!("{pod}-{}", node.node), container)
}

fn mounts_under(dir: &std::path::Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&d))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_dir_host_path_downward_api_and_sub_path() {
    let node = Node::start(31);
    let host_dir = node.dir.path().join("host-data/made");
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: vols, labels: {{app: vols, tier: test}}}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: {bb}
    command: [sh, -c, "echo hello-from-init > /data/hello && mkdir -p /data/sub && echo in-sub > /data/sub/file"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: main
    image: {bb}
    command: [sh, -c, "cat /data/hello; cat /only-sub/file; grep ' /mem ' /proc/mounts; cat /info/labels; echo; cat /info/name; echo; cat /info/mem; echo; echo from-container > /host/out; echo done; sleep 3600"]
    resources: {{limits: {{memory: 64Mi}}}}
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: data, mountPath: /only-sub, subPath: sub}}
    - {{name: mem, mountPath: /mem}}
    - {{name: info, mountPath: /info}}
    - {{name: host, mountPath: /host}}
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: mem, resourceFieldRef: {{containerName: main, resource: limits.memory, divisor: 1Mi}}}}
  - {{name: host, hostPath: {{path: {host}, type: DirectoryOrCreate}}}}
"#,
        bb = busybox(),
        host = host_dir.display()
    );
    node.write_manifest("vols.yaml", &manifest);
    let s = node.wait_status("vols", 90, "Running", |s| phase(s) == "Running");
    let pod_uid = uid(&s);
    wait_until(
        Duration::from_secs(30),
        "the main container's output",
        || container_log(&node, "vols", "main").contains("done"),
    );
    let log = container_log(&node, "vols", "main");
    assert!(
        log.contains("hello-from-init"),
        "emptyDir shared with the init container:\n{log}"
    );
    assert!(log.contains("in-sub"), "subPath mount:\n{log}");
    assert!(
        log.contains("tmpfs /mem tmpfs"),
        "medium Memory is a tmpfs:\n{log}"
    );
    assert!(
        log.contains("size=8192k"),
        "sizeLimit is the tmpfs size:\n{log}"
    );
    assert!(
        log.contains("app=\"vols\"") && log.contains("tier=\"test\""),
        "labels file:\n{log}"
    );
    assert!(
        log.contains(&format!("vols-{}", node.node)),
        "name file:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.trim() == "64"),
        "limits.memory in Mi:\n{log}"
    );
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out")).unwrap(),
        "from-container\n"
    );
    let pod_dir = node.dir.path().join("kubelet/pods").join(&pod_uid);
    assert!(
        !mounts_under(&pod_dir).is_empty(),
        "tmpfs and subPath mounts under the pod folder"
    );

    node.remove_manifest("vols.yaml");
    wait_until(Duration::from_secs(60), "the pod's folder removed", || {
        !pod_dir.exists()
    });
    assert_eq!(
        mounts_under(&pod_dir),
        Vec::<String>::new(),
        "a mount was left behind"
    );
    assert!(
        host_dir.join("out").exists(),
        "teardown must not touch the hostPath"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sub_path_through_a_symlink_out_of_the_volume_is_refused() {
    let node = Node::start(32);
    let secret = node.dir.path().join("outside-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("key"), "must-not-leak").unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: escape}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: plant
    image: {bb}
    command: [sh, -c, "ln -s {secret} /data/link"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: main
    image: {bb}
    command: [sh, -c, "cat /leak/key; sleep 3600"]
    volumeMounts: [{{name: data, mountPath: /leak, subPath: link}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
"#,
        bb = busybox(),
        secret = secret.display()
    );
    node.write_manifest("escape.yaml", &manifest);
    let s = node.wait_status("escape", 90, "main waiting with the subPath error", |s| {
        s["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    });
    let msg = s["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("subPath \"link\"") && msg.contains("outside the volume"),
        "{msg}"
    );
    assert!(!container_log(&node, "escape", "main").contains("must-not-leak"));
}
