//! On-disk state: the content store (blobs) and snapshots (unpacked layers).

pub mod content;
