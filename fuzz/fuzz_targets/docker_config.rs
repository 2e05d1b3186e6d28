//! imagePullSecrets' Docker configs (`.dockerconfigjson`, `.dockercfg`):
//! any bytes give registry credentials or an error, never a panic; a match
//! is always for the image's own registry host.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = berth_kubelet::pull_secrets::parse(data) {
        for image in ["busybox", "127.0.0.1:5443/a/b:c", "registry.example/x@sha256:00"] {
            if let Some(a) = berth_kubelet::pull_secrets::auth_for(image, &entries) {
                assert_eq!(a.server_address, berth_kubelet::pull_secrets::registry_host(image));
            }
        }
    }
});
