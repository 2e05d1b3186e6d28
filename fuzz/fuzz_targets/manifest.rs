//! Manifests, indexes, image configs, references and auth challenges:
//! every parser of registry input must return an error, never panic.
#![no_main]

use berth_images::manifest::{self, ManifestKind};
use berth_images::{ImageRef, Platform};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 6] = [
    "",
    manifest::media::OCI_MANIFEST,
    manifest::media::OCI_INDEX,
    manifest::media::DOCKER_MANIFEST,
    manifest::media::DOCKER_LIST,
    "application/json",
];

fuzz_target!(|data: &[u8]| {
    let (sel, body) = data.split_first().unwrap_or((&0, &[]));
    let ct = TYPES[*sel as usize % TYPES.len()];
    if let Ok(ManifestKind::Index(ix)) = manifest::parse(ct, body) {
        let _ = ix.select(&Platform::host());
    }
    let _ = berth_images::config::ImageConfig::parse(body).map(|c| c.chain_ids());
    if let Ok(s) = std::str::from_utf8(body) {
        if let Ok(r) = ImageRef::parse(s) {
            // A parsed reference prints back to one that parses the same.
            assert_eq!(ImageRef::parse(&r.to_string()).unwrap(), r);
            let _ = r.familiar();
        }
        let _ = berth_images::registry::auth::parse_challenges(s);
        let _ = Platform::parse(s);
    }
});
