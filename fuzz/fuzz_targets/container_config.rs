//! CreateContainer's config as it arrives from a CRI client: any protobuf
//! bytes either decode and validate into a container spec or fail with an
//! error, never a panic. Host paths are resolved against the real
//! filesystem, so only relative-looking junk and /tmp paths are tried.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(mut c) = k8s_cri::v1::ContainerConfig::decode(data) else {
        return;
    };
    // Validation creates missing host folders (as containerd does): keep
    // the fuzzer's paths inside a scratch folder.
    let dir = tempfile::tempdir().unwrap();
    for m in &mut c.mounts {
        let rel = m.host_path.trim_start_matches('/').replace("..", "_");
        m.host_path = dir.path().join(rel).display().to_string();
    }
    let _ = berth_cri::service::convert_container::container_spec(Some(c));
});
