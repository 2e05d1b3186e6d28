//! cgroup limits, read from inside the container (its /sys/fs/cgroup shows
//! its own cgroup) and from the host; update; removal on delete. Needs root;
//! written for the v1/hybrid layout of the project's test host.

use berth_tests::bundle::{Bundle, is_root};

fn v1_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn limits_are_applied_and_visible_inside() {
    if !is_root() || !v1_host() {
        return;
    }
    let mut b = Bundle::new("cg-limits");
    b.config["linux"]["resources"] = serde_json::json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 67108864, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 42}
    });
    b.set_args(&["sh", "-c", "cd /sys/fs/cgroup && cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes cpu/cpu.shares cpu/cpu.cfs_quota_us pids/pids.max && cat /proc/self/cgroup | grep memory"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["67108864", "33554432", "512", "50000", "42"],
        "{out}"
    );
    // cgroup namespace: the container's own cgroup is its root.
    assert!(lines[5].ends_with(":memory:/"), "{out}");
}

#[test]
fn devices_cgroup_denies_unlisted_devices() {
    if !is_root() || !v1_host() {
        return;
    }
    let mut b = Bundle::new("cg-dev");
    b.config["root"]["readonly"] = false.into();
    b.config["linux"]["resources"] =
        serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]});
    // The default devices stay usable; a new node of another device does not.
    b.set_args(&["sh", "-c", "echo x > /dev/null && echo null-ok; busybox mknod /tmp/sda b 8 0 && cat /tmp/sda > /dev/null; echo sda=$?"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("sda=1"), "{out}");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    if !is_root() || !v1_host() {
        return;
    }
    let mut b = Bundle::new("cg-update");
    b.config["linux"]["resources"] =
        serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 10}});
    b.set_args(&["sleep", "1000"]);
    let (ok, err) = b.runc_bg(&["run", "-d", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(ok, "{err}");
    let o = b.runc(&["update", "--memory", "32m", "--pids-limit", "20", &b.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mem =
        std::fs::read_to_string(b.cgroup_dir("memory").join("memory.limit_in_bytes")).unwrap();
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
