//! Bad bundles fail with a message naming the config field, and leave no
//! state dir, cgroup or mount behind. Needs root.

use berth_tests::bundle::{Bundle, require_root};

fn fails_cleanly(b: &Bundle, field: &str) {
    let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!("config.json: {field}")),
        "message does not name {field}: {err}"
    );
    assert!(!b.state_root.join(&b.id).exists(), "state dir left behind");
    for c in ["memory", "cpu", "pids", "freezer"] {
        assert!(!b.cgroup_dir(c).exists(), "{c} cgroup left behind");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(b.dir.to_str().unwrap()),
        "mount left behind"
    );
}

#[test]
fn unknown_namespace_is_named() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-ns");
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "foo"}));
    b.write_config();
    fails_cleanly(&b, "linux.namespaces[6].type: unknown namespace \"foo\"");
}

#[test]
fn missing_rootfs_is_named() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-root");
    b.config["root"]["path"] = "nowhere".into();
    b.write_config();
    fails_cleanly(&b, "root.path");
}

#[test]
fn mount_target_escaping_through_symlink_is_named() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-escape");
    std::os::unix::fs::symlink("../../../../../..", b.rootfs().join("escape")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
        {"destination": "/escape/tmp/berth-evil", "type": "tmpfs", "source": "tmpfs"}));
    b.write_config();
    fails_cleanly(&b, "mounts[7].destination");
    assert!(!std::path::Path::new("/tmp/berth-evil").exists());
}

#[test]
fn invalid_seccomp_action_is_named() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-seccomp");
    b.config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]
    });
    b.write_config();
    fails_cleanly(&b, "linux.seccomp.syscalls[0].action");
}

#[test]
fn wrong_json_type_is_named() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-type");
    b.config["process"]["user"]["uid"] = "root".into();
    b.write_config();
    fails_cleanly(&b, "process.user.uid");
}

#[test]
fn failing_init_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-exec");
    b.set_args(&["/no/such/binary"]);
    let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
    assert!(!ok);
    assert!(err.contains("/no/such/binary"), "{err}");
    assert!(!b.state_root.join(&b.id).exists());
    assert!(!b.cgroup_dir("memory").exists());
}

#[test]
fn selinux_labels_are_refused_when_malformed_and_ignored_without_selinux() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("cfg-selinux-shape");
    b.config["process"]["selinuxLabel"] = "container_t".into();
    b.write_config();
    fails_cleanly(
        &b,
        "process.selinuxLabel: \"container_t\" is not an SELinux context",
    );
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        // Where SELinux runs, labels are applied: not what this checks.
        return;
    }
    // Without SELinux, well-formed labels are not applied and the container
    // runs, as with runc (the OCI validation suite relies on it).
    let mut b = Bundle::new("cfg-selinux");
    b.config["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0".into();
    b.config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2".into();
    b.set_args(&["true"]);
    let (code, _, err) = b.run();
    assert_eq!(code, 0, "{err}");
}
