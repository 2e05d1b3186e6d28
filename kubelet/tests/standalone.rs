//! berth-kubelet in standalone mode against a real berthd (root): static
//! pods come up, crash-loop with back-off, run to completion, go away with
//! their manifest, and survive a kubelet restart untouched.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn web_pod(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: web\n    image: {}\n    imagePullPolicy: IfNotPresent\n    env: [{{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]\n    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}\n    ports: [{{containerPort: 80, hostPort: {port}, hostIP: 127.0.0.1}}]\n",
        web_image()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn static_pod_runs_answers_and_goes_away_with_its_manifest() {
    let node = Node::start(1);
    let port = 21000 + slot(1) as u16;
    node.write_manifest("web.yaml", &web_pod("web", port));
    // A broken manifest next to it is reported by name and skipped.
    node.write_manifest("broken.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers:\n  - {name: c, image: x, ports: [{containerPort: 70000}]}\n");
    let started = Instant::now();
    let s = node.wait_status("web", 60, "Running and ready", |s| {
        phase(s) == "Running" && s["status"]["containerStatuses"][0]["ready"] == true
    });
    eprintln!("manifest -> Running: {:?}", started.elapsed());
    assert_eq!(s["status"]["qosClass"], "Guaranteed");
    assert!(
        s["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.204."),
        "{}",
        s["status"]
    );
    let cs = &s["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["containerID"].as_str().unwrap().starts_with("berth://"));
    assert!(cs["imageID"].as_str().unwrap().contains("sha256:"), "{cs}");
    // The web server answers on the host port.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Some(b) = http_get(port) {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "nothing answers on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("berth-web-ok"), "{body}");
    // The runtime has it with upstream's labels and the limits as resources.
    let uid = uid(&s);
    let (sbs, cs) = node.runtime_objects(&uid).await;
    assert_eq!((sbs.len(), cs.len()), (1, 1));
    assert_eq!(
        sbs[0].labels["io.kubernetes.pod.name"],
        format!("web-{}", node.node)
    );
    assert_eq!(sbs[0].labels["app"], "web");
    assert_eq!(cs[0].labels["io.kubernetes.container.name"], "web");
    let log = node.kubelet_log();
    assert!(
        log.contains("broken.yaml: pod default/broken-test-node: spec.containers[0].ports[0].containerPort: 70000 is not a port"),
        "the broken manifest is not reported by name:\n{log}"
    );

    // Removing the manifest stops and removes the pod.
    let t = Instant::now();
    node.remove_manifest("web.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sbs, cs) = node.runtime_objects(&uid).await;
        if sbs.is_empty() && cs.is_empty() && node.status("web").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod still there 30 s after its manifest went: {sbs:?} {cs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("manifest removed -> pod gone: {:?}", t.elapsed());
    assert!(http_get(port).is_none(), "the host port still answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_container_restarts_with_back_off() {
    let node = Node::start(2);
    node.write_manifest(
        "crash.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: crash}}\nspec:\n  terminationGracePeriodSeconds: 1\n  initContainers:\n  - {{name: init, image: {b}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 0']}}\n  containers:\n  - {{name: crash, image: {b}, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 3']}}\n",
            b = busybox()
        ),
    );
    let t0 = Instant::now();
    let s = node.wait_status("crash", 60, "restartCount 2", |s| {
        s["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2)
    });
    let took = t0.elapsed();
    // Restart 1 is at once, restart 2 waits 10 s: no hot loop.
    assert!(
        took >= Duration::from_secs(9),
        "restartCount reached 2 after {took:?}: no back-off"
    );
    assert_eq!(phase(&s), "Running");
    assert_eq!(
        s["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    let s = node.wait_status("crash", 30, "CrashLoopBackOff", |s| {
        s["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let cs = &s["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert!(
        cs["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .starts_with("back-off 20s restarting failed container=crash"),
        "{cs}"
    );
    assert_eq!(cs["ready"], false);
    // Back-off doubles: the third restart comes 20 s after the second.
    let at2 = Instant::now();
    node.wait_status("crash", 40, "restartCount 3", |s| {
        s["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(3)
    });
    assert!(
        at2.elapsed() >= Duration::from_secs(5),
        "third restart after {:?}",
        at2.elapsed()
    );
    // Old instances are collected: the current and the previous one stay.
    let (_, cs) = node.runtime_objects(&uid(&s)).await;
    assert!(
        cs.iter()
            .filter(|c| c.labels["io.kubernetes.container.name"] == "crash")
            .count()
            <= 2,
        "{cs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_run_to_completion_by_restart_policy() {
    let node = Node::start(3);
    let b = busybox();
    for (name, policy, code) in [
        ("done", "Never", 0),
        ("fails", "Never", 4),
        ("retry-done", "OnFailure", 0),
    ] {
        node.write_manifest(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {policy}\n  containers:\n  - {{name: main, image: {b}, imagePullPolicy: IfNotPresent, workingDir: /tmp, command: [sh, -c], args: ['test \"$(pwd)\" = /tmp && test \"$GREETING\" = hi-{name} && exit {code}'], env: [{{name: NAME, value: {name}}}, {{name: GREETING, value: 'hi-$(NAME)'}}]}}\n"
            ),
        );
    }
    let s = node.wait_status("done", 60, "Succeeded", |s| phase(s) == "Succeeded");
    assert_eq!(
        s["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    let s = node.wait_status("fails", 60, "Failed", |s| phase(s) == "Failed");
    assert_eq!(
        s["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        4
    );
    assert_eq!(s["status"]["containerStatuses"][0]["restartCount"], 0);
    node.wait_status("retry-done", 60, "Succeeded", |s| phase(s) == "Succeeded");
    // Finished pods' sandboxes are stopped, and they stay finished.
    let uid = uid(&node.status("fails").unwrap());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sbs, cs) = node.runtime_objects(&uid).await;
    assert!(
        sbs.iter()
            .all(|s| s.state == k8s_cri::v1::PodSandboxState::SandboxNotready as i32),
        "{sbs:?}"
    );
    assert_eq!(cs.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_restart_adopts_running_pods_and_cleans_removed_ones() {
    let mut node = Node::start(4);
    let port = 22000 + slot(4) as u16;
    node.write_manifest("web.yaml", &web_pod("web", port));
    node.write_manifest("gone.yaml", &web_pod("gone", port + 1));
    let web = node.wait_status("web", 60, "Running", |s| phase(s) == "Running");
    let gone = node.wait_status("gone", 60, "Running", |s| phase(s) == "Running");
    let (sbs_before, cs_before) = node.runtime_objects(&uid(&web)).await;

    node.stop_kubelet();
    // While it is down: one manifest goes away.
    node.remove_manifest("gone.yaml");
    node.start_kubelet();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sbs, cs) = node.runtime_objects(&uid(&gone)).await;
        if sbs.is_empty() && cs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed pod was not cleaned up after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several relists and syncs later, the running pod is untouched.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sbs_after, cs_after) = node.runtime_objects(&uid(&web)).await;
    assert_eq!(
        sbs_after.iter().map(|s| &s.id).collect::<Vec<_>>(),
        sbs_before.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    assert_eq!(
        cs_after
            .iter()
            .map(|c| (&c.id, c.state))
            .collect::<Vec<_>>(),
        cs_before
            .iter()
            .map(|c| (&c.id, c.state))
            .collect::<Vec<_>>()
    );
    let s = node.status("web").unwrap();
    assert_eq!(phase(&s), "Running");
    assert_eq!(s["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(s["status"]["startTime"], web["status"]["startTime"]);
    assert!(http_get(port).is_some_and(|b| b.contains("berth-web-ok")));
    let second_run = node.kubelet_run_log(2);
    assert!(
        !second_run.contains("Created container") && !second_run.contains("sandbox ready"),
        "the restarted kubelet created something:\n{second_run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_pod_on_containerd() {
    let Some(node) = Node::on_containerd(5) else {
        eprintln!(
            "skipped: the test bed's containerd does not run (hack/testbed.sh containerd up)"
        );
        return;
    };
    let port = 23000 + slot(5) as u16;
    node.write_manifest("web.yaml", &web_pod("web", port));
    let s = node.wait_status("web", 60, "Running", |s| phase(s) == "Running");
    let cs = &s["status"]["containerStatuses"][0];
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{cs}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(port).is_some_and(|b| b.contains("berth-web-ok")) {
        assert!(
            Instant::now() < deadline,
            "nothing answers on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let uid = uid(&s);
    node.remove_manifest("web.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sbs, cs) = node.runtime_objects(&uid).await;
        if sbs.is_empty() && cs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod still on containerd 30 s after its manifest went"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
