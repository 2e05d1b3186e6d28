//! berth-shim: the per-pod monitor's logic (`server`, `logger`), the
//! berthd <-> monitor protocol (`proto`), the CRI log format (`logfmt`) and
//! the durable JSON records both berthd and the monitor keep (`store`).
//!
//! The `berth-shim` binary (built from berth-cri, so berthd's tests find it
//! next to berthd) runs [`server::Shim`]. It links only this crate and its
//! few dependencies: one monitor runs per pod, and every page of code it maps
//! counts in the node's memory per pod.
#![forbid(unsafe_code)]

pub mod cli;
pub mod logfmt;
pub mod logger;
pub mod proto;
pub mod server;
pub mod store;
