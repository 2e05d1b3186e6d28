//! The streaming server's WebSocket framing: whatever a client sends after
//! the upgrade parses into frames or a clean error, never a panic or an
//! allocation past the message cap.
#![no_main]

use berth_cri::stream::ws::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = parse(rest) {
        assert!(used > 0 && used <= rest.len());
        assert!(frame.payload.len() < used);
        rest = &rest[used..];
    }
});
