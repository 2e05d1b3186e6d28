//! The kubelet's pod user namespace inputs: /etc/subuid and /etc/subgid
//! text and a pod's `userns` mapping file. Any bytes give a range or a
//! mapping, or an error naming what is wrong; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = berth_kubelet::userns::parse_file(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_kubelet::userns::parse_subids(text);
    }
});
