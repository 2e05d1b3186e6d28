//! An OCI bundle's config.json: parse and validate against an empty rootfs.
//! Bad input must end in a ConfigError, never a panic or a write outside the
//! temporary bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static BUNDLE: LazyLock<tempfile::TempDir> = LazyLock::new(|| {
    let d = tempfile::tempdir().expect("temp bundle");
    std::fs::create_dir(d.path().join("rootfs")).expect("rootfs");
    d
});

fuzz_target!(|data: &[u8]| {
    use berth_runtime::config::{parse_json, spec::Spec, validate};
    if let Ok(spec) = parse_json::<Spec>("config.json", data) {
        let _ = validate(BUNDLE.path(), &spec);
    }
});
