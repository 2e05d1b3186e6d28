//! Localhost seccomp profiles (Docker/containerd or OCI JSON) from a node
//! file: any bytes give a profile or an error naming the field, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(&path, data).unwrap();
    let caps = ["CAP_SYS_ADMIN".to_owned(), "CAP_KILL".to_owned()];
    let _ = berth_cri::container::seccomp::localhost_with_caps(&path, &caps);
    let _ = berth_cri::container::seccomp::localhost(&path);
});
