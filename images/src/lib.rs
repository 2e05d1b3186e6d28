//! berth-images: references, registry client, content store, layer unpack,
//! snapshots and image metadata. It knows nothing of CRI or Kubernetes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod digest;
pub mod manifest;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
pub mod unpack;

pub use cli::cli_main;
pub use digest::{Digest, DigestError};
pub use platform::Platform;
pub use pull::{Error, ImageStore, Progress, StoreOptions};
pub use reference::{ImageRef, ReferenceError};
