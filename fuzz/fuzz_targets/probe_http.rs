//! The HTTP probe's response head parser: whatever a container answers
//! gives a status and headers, "need more bytes", or an error; never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = berth_kubelet::prober::http::parse_head(data);
});
