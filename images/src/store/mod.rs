//! On-disk state: the content store (blobs), snapshots (unpacked layers)
//! and image records.

pub mod content;
pub mod images;
pub mod snapshot;
