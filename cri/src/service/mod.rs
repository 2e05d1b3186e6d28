//! The CRI gRPC services. The only place (with `server.rs`) that knows the
//! protobuf types; everything below takes plain Rust types.

pub mod convert;
pub mod convert_container;
pub mod image;
pub mod pod_metrics;
pub mod runtime;
