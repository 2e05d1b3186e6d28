//! On-disk state: the content store (blobs), snapshots (unpacked layers),
//! image records and leases (snapshots kept for their users).

pub mod content;
pub mod images;
pub mod leases;
pub mod snapshot;
