//! The shim protocol: whatever arrives on the shim's socket parses into a
//! request or a clean error, and a stream of attach frames splits into
//! whole frames or a clean error, never reading past what it was given.
#![no_main]

use berth_cri::shim::proto::frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<berth_cri::shim::proto::Request>(data);
    let _ = serde_json::from_slice::<berth_cri::shim::proto::Response>(data);
    let mut rest = data;
    while let Ok(Some((kind, payload, used))) = frame::parse(rest) {
        assert!(kind <= frame::RESIZE);
        assert!(payload.len() <= frame::MAX_PAYLOAD);
        assert_eq!(used, frame::HEADER + payload.len());
        if kind == frame::RESIZE {
            let _ = frame::parse_resize(payload);
        }
        rest = &rest[used..];
    }
});
