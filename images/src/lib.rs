//! berth-images: references, registry client, content store, layer unpack,
//! snapshots and image metadata. It knows nothing of CRI or Kubernetes.
//!
//! Invariants (what every module may rely on):
//! - Outside input (references, manifests, configs, challenges, hosts.toml,
//!   layer tars) is parsed into validated types at the edge (`reference`,
//!   `manifest`, `config`, `registry::auth`, `registry::hosts`); nothing
//!   downstream re-parses strings.
//! - A blob at `<root>/blobs/<alg>/<hex>` has been verified (size and
//!   digest); partial downloads live only in `<root>/ingest/` (`store::content`).
//! - A snapshot at `<root>/snapshots/<chain hex>/` is complete and its
//!   parent chain was committed first; temp snapshots are renamed into place
//!   whole (`store::snapshot`).
//! - No layer path is ever resolved against the host: `unpack::safe` opens
//!   parents with `openat2(RESOLVE_IN_ROOT)` and acts on single names with
//!   `*at` calls that do not follow symlinks.
//! - Image records and leases are written atomically; GC keeps everything
//!   a record references and every snapshot a lease names (`store::images`,
//!   `store::leases`, `gc`).
//! - Blocking I/O, hashing, decompression and tar run on the blocking pool;
//!   the async side only moves bytes (`pull`).
#![forbid(unsafe_code)]

pub mod archive;
pub mod cli;
pub mod config;
pub mod digest;
pub mod gc;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod rootfs_copy;
pub mod store;
pub mod unpack;

pub use cli::cli_main;
pub use digest::{Digest, DigestError};
pub use platform::Platform;
pub use pull::{Error, ImageStore, Progress, StoreOptions};
pub use reference::{ImageRef, ReferenceError};
pub use store::images::ImageRecord;
pub use store::leases::Lease;
