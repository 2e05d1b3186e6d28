//! berth-shim, the per-pod monitor: berthd's client. The protocol, the log
//! copying and the monitor's own logic live in the `berth-shim` crate.

pub mod client;
pub use berth_shim::{logger, proto, server};
