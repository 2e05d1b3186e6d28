//! berthd.toml: any text gives a config or an error naming the problem.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = toml::from_str::<berth_cri::Config>(text) {
            let _ = cfg.validate();
        }
    }
});
