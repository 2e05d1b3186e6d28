//! The request head the streaming server and the metrics endpoint read
//! before upgrading or answering: any bytes parse or are refused, and the
//! values lookup never panics.
#![no_main]

use berth_cri::stream::http::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = parse_head(data) {
        assert!(!h.method.is_empty() && !h.path.is_empty());
        for name in ["upgrade", "sec-websocket-protocol", "x-stream-protocol-version"] {
            let _ = h.values(name);
        }
    }
});
