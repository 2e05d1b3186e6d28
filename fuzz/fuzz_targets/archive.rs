//! Image archives (`berthd images import`): any bytes as an OCI layout or
//! `docker save` tarball are imported into a fresh store, offline. The
//! importer must answer an error or an image, never panic, and write
//! nothing outside the store.
#![no_main]

use berth_images::{ImageStore, StoreOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let ar = tmp.path().join("in.tar");
    std::fs::write(&ar, data).unwrap();
    let mut o = StoreOptions::new(&tmp.path().join("store"));
    o.sync = false;
    // No registry: a blob the archive lacks must not be fetched.
    o.registry.hosts.dir = None;
    o.registry.attempts = 1;
    let s = ImageStore::open(o).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rt.block_on(s.import_oci_archive(&ar, None));
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["in.tar", "store"], "wrote beside the store");
});
