//! CNI network configs (from /etc/cni/net.d, and cached with each ADD) and
//! plugin results: any bytes give a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(net) = berth_cri::cni::NetworkList::from_value(v.clone()) {
            for p in &net.plugins {
                let _ = net.plugin_input(p, Some(&v), &[]);
            }
        }
        let _ = berth_cri::cni::CniResult::parse(&v);
    }
});
