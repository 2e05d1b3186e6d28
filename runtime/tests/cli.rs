//! berth-runc's CLI without root: spec, features, argument errors. (Also
//! makes `cargo test --workspace` build the binary the root tests drive.)

use std::process::Command;

fn runc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-runc"))
}

#[test]
fn spec_writes_a_config_that_refuses_to_be_overwritten() {
    let dir = std::env::temp_dir().join(format!("berth-cli-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ok = runc()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"][0], "sh");
    assert_eq!(v["root"]["path"], "rootfs");
    let again = runc()
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn features_lists_namespaces_and_seccomp() {
    let o = runc().arg("features").output().unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "time")
    );
    assert_eq!(v["linux"]["seccomp"]["enabled"], true);
}

#[test]
fn missing_container_and_bad_id_are_errors_that_say_so() {
    let root = std::env::temp_dir().join(format!("berth-cli-root-{}", std::process::id()));
    let o = runc()
        .arg("--root")
        .arg(&root)
        .args(["state", "nope"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("container nope does not exist"));
    let o = runc()
        .arg("--root")
        .arg(&root)
        .args(["state", "../x"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = runc()
        .arg("--root")
        .arg(&root)
        .args(["kill", "x", "NOSIG"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown signal"));
}
