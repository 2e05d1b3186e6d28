//! KubeletConfiguration files (YAML or JSON): any text gives settings or an
//! error naming the file and field; Go durations never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = berth_kubelet::config::parse_config(std::path::Path::new("fuzz.yaml"), text);
        let _ = berth_kubelet::duration::parse_go_duration(text);
    }
});
