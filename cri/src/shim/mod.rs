//! berth-shim, the per-pod monitor: protocol, log copying, the server side
//! (in the shim process) and the client berthd uses.

pub mod client;
pub mod logger;
pub mod proto;
pub mod server;
