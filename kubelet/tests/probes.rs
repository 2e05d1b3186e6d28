//! Container probes against a real berthd (root): readiness gates `ready`
//! and the pod's Ready condition, a failing liveness probe restarts the
//! container, a startup probe holds `started` and restarts a container
//! that never starts, a tcpSocket probe on a closed port is not ready.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn container<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["status"]["containerStatuses"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn condition(s: &Value, type_: &str) -> String {
    s["status"]["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn running(c: &Value) -> bool {
    c["state"]["running"].is_object()
}

/// Wait until the kubelet's log contains `text`.
fn wait_log(node: &Node, secs: u64, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !node.kubelet_log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in the kubelet log after {secs}s:\n{}",
            node.kubelet_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readiness_http_probes_gate_ready() {
    let node = Node::start(11);
    let web = web_image();
    for (name, path) in [("notready", "/missing"), ("ready", "/")] {
        node.write_manifest(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {web}\n    imagePullPolicy: IfNotPresent\n    ports: [{{name: http, containerPort: 80}}]\n    readinessProbe: {{httpGet: {{port: http, path: {path}, httpHeaders: [{{name: X-Test, value: probes}}]}}, periodSeconds: 1}}\n"
            ),
        );
    }
    let t0 = Instant::now();
    let s = node.wait_status("ready", 120, "ready", |s| {
        container(s, "web")["ready"] == true && condition(s, "Ready") == "True"
    });
    eprintln!("manifest -> ready: {:?}", t0.elapsed());
    assert_eq!(condition(&s, "ContainersReady"), "True");
    assert_eq!(container(&s, "web")["started"], true);

    let s = node.wait_status("notready", 120, "Running", |s| {
        phase(s) == "Running" && running(container(s, "web"))
    });
    assert_eq!(container(&s, "web")["started"], true);
    // The probe fails every second: still not ready several periods later.
    wait_log(
        &node,
        60,
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    );
    std::thread::sleep(Duration::from_secs(4));
    let s = node.status("notready").unwrap();
    let c = container(&s, "web");
    assert!(running(c), "{c}");
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(c["restartCount"], 0, "{c}");
    assert_eq!(phase(&s), "Running");
    assert_eq!(condition(&s, "Ready"), "False");
    assert_eq!(condition(&s, "ContainersReady"), "False");
}

#[test]
fn failing_liveness_probe_restarts_the_container() {
    let node = Node::start(12);
    // Healthy for 4 s, then not: each new instance starts healthy again.
    node.write_manifest(
        "live.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: live}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 600']\n    livenessProbe: {{exec: {{command: [cat, /tmp/healthy]}}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 2}}\n",
            busybox()
        ),
    );
    let s = node.wait_status("live", 120, "running", |s| running(container(s, "main")));
    let first_id = container(&s, "main")["containerID"].clone();
    let t0 = Instant::now();
    let s = node.wait_status("live", 120, "restarted", |s| {
        container(s, "main")["restartCount"].as_i64() >= Some(1)
    });
    eprintln!("running -> restarted by liveness: {:?}", t0.elapsed());
    let c = container(&s, "main");
    let last = &c["lastState"]["terminated"];
    assert!(last.is_object(), "{c}");
    assert_eq!(last["containerID"], first_id, "{c}");
    // sh as PID 1 ignores SIGTERM: killed at the end of the grace period.
    assert_eq!(last["exitCode"], 137, "{c}");
    let log = node.kubelet_log();
    assert!(
        log.contains("Liveness probe failed: cat: can't open '/tmp/healthy'"),
        "{log}"
    );
    assert!(
        log.contains("Container main failed liveness probe, will be restarted"),
        "{log}"
    );
    // The new instance runs (and is probed afresh: healthy at first).
    let s = node.wait_status("live", 60, "running again", |s| {
        let c = container(s, "main");
        running(c) && c["containerID"] != first_id
    });
    assert_eq!(phase(&s), "Running");
    assert_eq!(container(&s, "main")["ready"], true);
}

#[test]
fn startup_probe_holds_started_and_restarts_what_never_starts() {
    let node = Node::start(13);
    let b = busybox();
    node.write_manifest(
        "never.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: never}}\nspec:\n  terminationGracePeriodSeconds: 30\n  containers:\n  - name: main\n    image: {b}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '600']\n    startupProbe: {{exec: {{command: [cat, /tmp/started]}}, periodSeconds: 1, failureThreshold: 4, terminationGracePeriodSeconds: 1}}\n    readinessProbe: {{exec: {{command: ['true']}}, periodSeconds: 1}}\n    livenessProbe: {{exec: {{command: ['false']}}, periodSeconds: 1, failureThreshold: 1}}\n"
        ),
    );
    node.write_manifest(
        "starts.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: starts}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {b}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'sleep 8; touch /tmp/started; sleep 600']\n    startupProbe: {{exec: {{command: [cat, /tmp/started]}}, periodSeconds: 1, failureThreshold: 30}}\n"
        ),
    );
    // Running but not started, so not ready (its readiness probe would
    // succeed, and its failing liveness probe does not run yet).
    let s = node.wait_status("never", 120, "running", |s| running(container(s, "main")));
    let c = container(&s, "main");
    assert_eq!(
        (&c["started"], &c["ready"]),
        (&false.into(), &false.into()),
        "{c}"
    );
    let first_id = c["containerID"].clone();
    // The one that starts after 8 s has not started yet either.
    let s = node.wait_status("starts", 120, "running", |s| running(container(s, "main")));
    let c = container(&s, "main");
    assert_eq!(
        (&c["started"], &c["ready"]),
        (&false.into(), &false.into()),
        "{c}"
    );
    let started_at = Instant::now();
    let t0 = Instant::now();
    let s = node.wait_status("never", 120, "restarted", |s| {
        container(s, "main")["restartCount"].as_i64() >= Some(1)
    });
    let took = t0.elapsed();
    eprintln!("running -> restarted by the startup probe: {took:?}");
    // 4 failures a second apart, and a 1 s grace period (not the pod's 30 s).
    assert!(took < Duration::from_secs(25), "{took:?}");
    let c = container(&s, "main");
    assert_eq!(c["lastState"]["terminated"]["containerID"], first_id, "{c}");
    let log = node.kubelet_log();
    assert!(
        log.contains("Container main failed startup probe, will be restarted"),
        "{log}"
    );
    assert!(
        !log.contains("failed liveness probe"),
        "liveness ran before startup succeeded:\n{log}"
    );
    // The one that starts: started after ~8 s, then ready.
    let s = node.wait_status("starts", 60, "started", |s| {
        container(s, "main")["started"] == true
    });
    eprintln!("starts: running -> started: {:?}", started_at.elapsed());
    assert_eq!(container(&s, "main")["ready"], true);
    assert_eq!(condition(&s, "Ready"), "True");
    assert_eq!(container(&s, "main")["restartCount"], 0);
}

#[test]
fn tcp_readiness_probe_on_a_closed_port_is_not_ready() {
    let node = Node::start(14);
    node.write_manifest(
        "tcp.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: tcp}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {}\n    imagePullPolicy: IfNotPresent\n    readinessProbe: {{tcpSocket: {{port: 80}}, periodSeconds: 1}}\n  - name: closed\n    image: {}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '600']\n    readinessProbe: {{tcpSocket: {{port: 81}}, periodSeconds: 1, failureThreshold: 1}}\n",
            web_image(),
            busybox()
        ),
    );
    let s = node.wait_status("tcp", 120, "web ready", |s| {
        container(s, "web")["ready"] == true && running(container(s, "closed"))
    });
    assert_eq!(phase(&s), "Running");
    wait_log(&node, 60, "Readiness probe failed: dial tcp ");
    std::thread::sleep(Duration::from_secs(3));
    let s = node.status("tcp").unwrap();
    let c = container(&s, "closed");
    assert!(running(c), "{c}");
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(c["started"], true, "{c}");
    assert_eq!(container(&s, "web")["ready"], true);
    assert_eq!(condition(&s, "Ready"), "False");
    assert_eq!(condition(&s, "ContainersReady"), "False");
    assert!(
        node.kubelet_log().contains(":81: Connection refused"),
        "{}",
        node.kubelet_log()
    );
}
