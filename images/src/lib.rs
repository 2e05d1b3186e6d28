//! berth-images: references, registry client, content store, layer unpack,
//! snapshots and image metadata. It knows nothing of CRI or Kubernetes.
#![forbid(unsafe_code)]

pub mod digest;

pub use digest::{Digest, DigestError};
