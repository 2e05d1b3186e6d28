//! cgroup limits, read from inside the container (its /sys/fs/cgroup shows
//! its own cgroup) and from the host; update; removal on delete. Needs root.
//! Each check knows both layouts: v1/hybrid (the project's test host) and
//! v2 alone (hack/vm.sh --cgroup v2).

use berth_tests::bundle::{Bundle, cgroup_v2, require_root};

#[test]
fn limits_are_applied_and_visible_inside() {
    require_root();
    let mut b = Bundle::new("cg-limits");
    b.config["linux"]["resources"] = serde_json::json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 67108864, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 42}
    });
    // v2: reservation is memory.low, shares 512 is weight 20 (runc's
    // conversion), quota/period is cpu.max.
    let (script, want, own_root) = if cgroup_v2() {
        (
            "cd /sys/fs/cgroup && cat memory.max memory.low cpu.weight cpu.max pids.max && cat /proc/self/cgroup",
            ["67108864", "33554432", "20", "50000 100000", "42"],
            "0::/",
        )
    } else {
        (
            "cd /sys/fs/cgroup && cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us pids/pids.max && cat /proc/self/cgroup | grep memory",
            ["67108864", "33554432", "512", "50000", "42"],
            ":memory:/",
        )
    };
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..5], want, "{out}");
    // cgroup namespace: the container's own cgroup is its root.
    assert!(lines[5].ends_with(own_root), "{out}");
}

#[test]
fn devices_cgroup_denies_unlisted_devices() {
    require_root();
    // /dev/kmsg (c 1:11) exists on every kernel and root may write it, so
    // whether a fresh node of it opens depends on the device rules alone.
    let script = "echo x > /dev/null && echo null-ok; busybox mknod /tmp/kmsg c 1 11; echo mknod=$?; echo berth-device-test > /tmp/kmsg; echo kmsg=$?";
    let run = |rules: serde_json::Value| {
        let mut b = Bundle::new("cg-dev");
        b.config["root"]["readonly"] = false.into();
        // mknod needs CAP_MKNOD; the device rules decide the rest.
        for set in ["bounding", "effective", "permitted"] {
            let caps = b.config["process"]["capabilities"][set]
                .as_array_mut()
                .expect("capability set");
            caps.push("CAP_MKNOD".into());
        }
        b.config["linux"]["resources"] = serde_json::json!({ "devices": rules });
        b.set_args(&["sh", "-c", script]);
        let (code, out, err) = b.run();
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains("null-ok"),
            "the default devices must stay usable: {out}"
        );
        out
    };
    let denied = run(serde_json::json!([{"allow": false, "access": "rwm"}]));
    assert!(
        denied.contains("kmsg=1"),
        "a device outside the rules opened: {denied}"
    );
    let allowed = run(serde_json::json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"}
    ]));
    assert!(
        allowed.contains("kmsg=0"),
        "an allowed device did not open: {allowed}"
    );
}

#[test]
fn update_changes_limits_of_a_running_container() {
    require_root();
    let v2 = cgroup_v2();
    let mut b = Bundle::new("cg-update");
    b.config["linux"]["resources"] =
        serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 10}});
    b.set_args(&["sleep", "1000"]);
    let (ok, err) = b.runc_bg(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    let o = b.runc(&["update", "--memory", "32m", "--pids-limit", "20", &b.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mem_file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let mem = std::fs::read_to_string(b.cgroup_dir("memory").join(mem_file)).unwrap();
    assert_eq!(mem.trim(), (32 << 20).to_string());
    let res = b.dir.join("res.json");
    std::fs::write(&res, r#"{"pids": {"limit": 30}}"#).unwrap();
    assert!(
        b.runc(&["update", "-r", res.to_str().unwrap(), &b.id])
            .status
            .success()
    );
    let pids = std::fs::read_to_string(b.cgroup_dir("pids").join("pids.max")).unwrap();
    assert_eq!(pids.trim(), "30");
    let ev = b.runc(&["events", "--stats", &b.id]);
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["data"]["pids"]["limit"], 30);
    assert_eq!(v["data"]["pids"]["current"], 1);
    assert!(b.runc(&["delete", "--force", &b.id]).status.success());
    assert!(!b.cgroup_dir("memory").exists());
    assert!(!b.cgroup_dir("pids").exists());
}

#[test]
fn memory_limit_oom_kills_and_the_cgroup_counts_it() {
    require_root();
    let mut b = Bundle::new("cg-oom");
    b.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 33554432}});
    // tail keeps the "line" of /dev/zero in memory, which has no newline.
    b.set_args(&["sh", "-c", "tail /dev/zero"]);
    let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    // Read the count before delete removes the cgroup: what a CRI runtime
    // reports as OOMKilled.
    let (file, key) = if cgroup_v2() {
        ("memory.events", "oom_kill ")
    } else {
        ("memory.oom_control", "oom_kill ")
    };
    let events = b.cgroup_dir("memory").join(file);
    assert!(b.runc(&["start", &b.id]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while b.status().as_deref() != Some("stopped") {
        assert!(
            std::time::Instant::now() < deadline,
            "not killed within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kills: u64 = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .expect("oom_kill line");
    assert!(kills >= 1, "{}: oom_kill {kills}", events.display());
    assert!(b.runc(&["delete", &b.id]).status.success());
    assert!(!b.cgroup_dir("memory").exists(), "cgroup left after delete");
}

/// A soft-RoCE RDMA device on a dummy link of its own, removed on drop;
/// None where the kernel cannot make one (no rdma_rxe module).
struct SoftRoce {
    link: String,
    dev: String,
}

impl SoftRoce {
    fn new() -> Option<SoftRoce> {
        let run = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !run(&["modprobe", "rdma_rxe"]) {
            return None;
        }
        let n = std::process::id() % 100_000;
        let s = SoftRoce {
            link: format!("brd{n}"),
            dev: format!("rxe_b{n}"),
        };
        let made = run(&["ip", "link", "add", &s.link, "type", "dummy"])
            && run(&["ip", "link", "set", &s.link, "up"])
            && run(&[
                "rdma", "link", "add", &s.dev, "type", "rxe", "netdev", &s.link,
            ]);
        made.then_some(s)
    }
}

impl Drop for SoftRoce {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rdma")
            .args(["link", "delete", &self.dev])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.link])
            .status();
    }
}

#[test]
fn rdma_limits_apply_where_the_kernel_has_the_controller() {
    require_root();
    let controller = if cgroup_v2() {
        std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "rdma"))
    } else {
        std::path::Path::new("/sys/fs/cgroup/rdma").is_dir()
    };
    let roce = controller.then(SoftRoce::new).flatten();
    let dev = roce.as_ref().map_or("mlx5_9".to_owned(), |r| r.dev.clone());
    let mut b = Bundle::new("cg-rdma");
    b.config["linux"]["resources"] =
        serde_json::json!({"rdma": {dev.clone(): {"hcaHandles": 3, "hcaObjects": 100}}});
    let script = if cgroup_v2() {
        "cat /sys/fs/cgroup/rdma.max"
    } else {
        "cat /sys/fs/cgroup/rdma/rdma.max"
    };
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run();
    match (controller, &roce) {
        // The limit, read from inside the container.
        (true, Some(_)) => {
            assert_eq!(code, 0, "{err}");
            assert_eq!(out.trim(), format!("{dev} hca_handle=3 hca_object=100"));
        }
        // A device the kernel does not have: refused naming the file.
        (true, None) => {
            assert_ne!(code, 0);
            assert!(err.contains("rdma.max"), "{err}");
        }
        // No rdma controller (this project's host): refused naming it.
        (false, _) => {
            assert_ne!(code, 0);
            assert!(err.contains("rdma"), "{err}");
        }
    }
    if code != 0 {
        assert!(
            !b.state_root.join(&b.id).exists(),
            "a refused create left its state"
        );
    }
}
