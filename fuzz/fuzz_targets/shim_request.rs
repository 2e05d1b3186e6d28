//! The shim protocol: whatever arrives on the shim's socket parses into a
//! request or a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<berth_cri::shim::proto::Request>(data);
    let _ = serde_json::from_slice::<berth_cri::shim::proto::Response>(data);
});
