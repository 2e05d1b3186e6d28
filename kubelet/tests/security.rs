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
