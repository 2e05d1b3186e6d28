//! Lifecycle hooks of static pods against a real berthd (root): postStart
//! runs once the container has started and before the kubelet goes on,
//! preStop runs before the stop when the pod goes away, and a failing
//! postStart (exec or httpGet) kills the container, which is restarted.
//! Sidecars (restartable init containers) start in the init sequence,
//! restart alone and stop after the containers. What the containers did
//! is read from a hostPath the test owns.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn post_start_and_pre_stop_run_around_the_container() {
    let node = Node::start(41);
    let data = node.dir.path().join("hook-data");
    std::fs::create_dir_all(&data).unwrap();
    node.write_manifest(
        "hooks.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: main
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo main-started >> /data/trail; trap 'echo got-term >> /data/trail; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo post-start >> /data/trail"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo pre-stop >> /data/trail"]}}}}
  volumes:
  - {{name: data, hostPath: {{path: {data}, type: Directory}}}}
"#,
            b = busybox(),
            data = data.display()
        ),
    );
    let s = node.wait_status("hooks", 60, "Running", |s| phase(s) == "Running");
    let trail = || std::fs::read_to_string(data.join("trail")).unwrap_or_default();
    wait_until(
        std::time::Duration::from_secs(10),
        "postStart's line",
        || trail().contains("post-start"),
    );
    assert_eq!(s["status"]["containerStatuses"][0]["restartCount"], 0);
    assert!(
        !trail().contains("pre-stop"),
        "preStop ran early: {}",
        trail()
    );

    node.remove_manifest("hooks.yaml");
    let pod_dir = node.dir.path().join("kubelet/pods").join(uid(&s));
    wait_until(
        std::time::Duration::from_secs(30),
        "the pod removed",
        || !pod_dir.exists(),
    );
    let t = trail();
    let lines: Vec<&str> = t.lines().collect();
    let at = |w: &str| {
        lines
            .iter()
            .position(|l| *l == w)
            .unwrap_or_else(|| panic!("no {w:?} in {lines:?}"))
    };
    // preStop ran, then the stop signal reached the container.
    assert!(at("pre-stop") < at("got-term"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_post_start_kills_and_restarts_the_container() {
    let node = Node::start(42);
    let b = busybox();
    // exec that fails, and httpGet to a port nothing listens on.
    node.write_manifest(
        "badhooks.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: badhooks}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: exec
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 3600"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo hook-says-no; exit 3"]}}}}
  - name: http
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 3600"]
    lifecycle:
      postStart: {{httpGet: {{path: /ready, port: 9}}}}
"#
        ),
    );
    let s = node.wait_status("badhooks", 90, "both restarted", |s| {
        let cs = s["status"]["containerStatuses"].as_array();
        cs.is_some_and(|cs| {
            cs.len() == 2 && cs.iter().all(|c| c["restartCount"].as_i64() >= Some(1))
        })
    });
    for c in s["status"]["containerStatuses"].as_array().unwrap() {
        // Killed after the hook: the last instance ended by a signal.
        let last = &c["lastState"]["terminated"];
        assert!(last.is_object(), "{c}");
        assert_ne!(last["exitCode"], 0, "{c}");
        assert_eq!(c["ready"], false, "{c}");
    }
    let log = node.kubelet_log();
    assert!(
        log.contains("Exec lifecycle hook")
            && log.contains("exited with 3")
            && log.contains("hook-says-no"),
        "the exec hook's failure is not in the kubelet's log"
    );
    assert!(
        log.contains("HTTP lifecycle hook (/ready)"),
        "the httpGet hook's failure is not in the kubelet's log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecars_start_first_restart_alone_and_stop_last() {
    let node = Node::start(43);
    let data = node.dir.path().join("sidecar-data");
    std::fs::create_dir_all(&data).unwrap();
    node.write_manifest(
        "sidecar.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: sidecar}}
spec:
  terminationGracePeriodSeconds: 10
  restartPolicy: Never
  initContainers:
  - name: side
    image: {b}
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: [sh, -c, "echo side-up >> /data/trail; if [ ! -f /data/crashed ]; then touch /data/crashed; sleep 4; exit 1; fi; trap 'echo side-term >> /data/trail; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  - name: check
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "grep -q side-up /data/trail && echo checked >> /data/trail"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: main
    image: {b}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap 'echo main-term >> /data/trail; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - {{name: data, hostPath: {{path: {data}, type: Directory}}}}
"#,
            b = busybox(),
            data = data.display()
        ),
    );
    // The sidecar crashes once while the container runs: it alone restarts,
    // though the pod's policy is Never.
    let s = node.wait_status("sidecar", 90, "the sidecar restarted", |s| {
        phase(s) == "Running"
            && s["status"]["initContainerStatuses"][0]["restartCount"].as_i64() >= Some(1)
            && s["status"]["initContainerStatuses"][0]["state"]["running"].is_object()
    });
    let st = &s["status"];
    assert_eq!(
        st["initContainerStatuses"][1]["state"]["terminated"]["exitCode"], 0,
        "{st}"
    );
    assert_eq!(st["containerStatuses"][0]["restartCount"], 0, "{st}");
    assert!(
        st["containerStatuses"][0]["state"]["running"].is_object(),
        "{st}"
    );
    assert_eq!(st["initContainerStatuses"][0]["started"], true, "{st}");
    let trail = || std::fs::read_to_string(data.join("trail")).unwrap_or_default();
    assert!(trail().starts_with("side-up\nchecked\n"), "{}", trail());

    node.remove_manifest("sidecar.yaml");
    let pod_dir = node.dir.path().join("kubelet/pods").join(uid(&s));
    wait_until(
        std::time::Duration::from_secs(40),
        "the pod removed",
        || !pod_dir.exists(),
    );
    let t = trail();
    let lines: Vec<&str> = t.lines().collect();
    let at = |w: &str| {
        lines
            .iter()
            .position(|l| *l == w)
            .unwrap_or_else(|| panic!("no {w:?} in {lines:?}"))
    };
    assert!(
        at("main-term") < at("side-term"),
        "the sidecar stopped first: {lines:?}"
    );
}
