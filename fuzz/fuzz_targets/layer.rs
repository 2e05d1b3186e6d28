//! Layer application: any byte stream (as tar, gzip or zstd) is applied
//! into a fresh snapshot folder; nothing may appear outside it and the
//! unpacker must not panic.
#![no_main]

use berth_images::manifest::Compression;
use berth_images::unpack::{Limits, apply_layer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sel, body) = data.split_first().unwrap_or((&0, &[]));
    let compression = match sel % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snap");
    let host = tmp.path().join("host");
    std::fs::create_dir(&snap).unwrap();
    std::fs::create_dir(&host).unwrap();
    let limits = Limits {
        max_entries: 10_000,
        max_bytes: 64 << 20,
    };
    let _ = apply_layer(&snap, body, compression, limits);
    assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0, "wrote outside the snapshot");
    let siblings = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(siblings, 2, "created a sibling of the snapshot");
});
