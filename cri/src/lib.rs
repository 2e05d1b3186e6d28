//! berth-cri: the CRI runtime behind `berthd` and `berth-shim`.
//!
//! Only this crate knows protobuf and tonic (in `service/` and `server.rs`);
//! it uses `berth-images` and `berth-runtime` through plain Rust types.
#![forbid(unsafe_code)]

pub mod cni;
pub mod config;
pub mod container;
pub mod deadline;
pub mod error;
pub mod images;
pub mod metrics;
pub mod pinns;
pub mod reserve;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod shim;
pub mod stream;

pub use berth_shim::{logfmt, store};
pub use config::Config;
pub use error::{Error, Result};
