//! The checker reports the facts tests rely on; run it on the host and
//! compare with what the host says directly.

use std::process::Command;

#[test]
fn checker_reports_own_identity_and_namespaces() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-check"))
        .env("BERTH_PROBE", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    assert_eq!(v["namespaces"]["mnt"], host_mnt.display().to_string());
    assert!(
        v["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "BERTH_PROBE=1")
    );
    assert!(
        v["cap_eff"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
}
