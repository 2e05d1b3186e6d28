//! berth-cri: the CRI runtime behind `berthd` and `berth-shim`.
//!
//! Only this crate knows protobuf and tonic; it uses `berth-images` and
//! `berth-runtime` through plain Rust types.
#![forbid(unsafe_code)]

pub mod logfmt;
