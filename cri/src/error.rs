//! berth-cri's error type and its one mapping to gRPC status codes.

use std::path::PathBuf;

use berth_images::registry::RegistryError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config {path}: read")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    ConfigParse { path: PathBuf, message: String },
    #[error("socket {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("socket {path}: another berthd is serving it")]
    SocketInUse { path: PathBuf },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} name {name:?} is reserved for {holder}")]
    NameReserved {
        kind: &'static str,
        name: String,
        holder: String,
    },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("sandbox {id}: network")]
    Network {
        id: String,
        #[source]
        source: Box<crate::cni::CniError>,
    },
    #[error("sandbox {id}: namespace")]
    Namespace {
        id: String,
        #[source]
        source: crate::pinns::NetnsError,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}")]
    Images {
        what: String,
        #[source]
        source: Box<berth_images::Error>,
    },
    /// The OCI runtime (through the pod's monitor) refused or failed.
    #[error("{0}")]
    Runtime(String),
    #[error("pod monitor")]
    Shim(#[from] crate::shim::client::ClientError),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("invalid image reference")]
    Reference(#[source] berth_images::ReferenceError),
    #[error(transparent)]
    Stream(#[from] crate::stream::StreamError),
    #[error("serving CRI: {0}")]
    Serve(String),
    #[error("{0}: aborted while in flight")]
    Aborted(String),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        // Chain the sources into the message: callers see one line.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        match e {
            Error::InvalidArgument(_) | Error::ConfigParse { .. } => {
                tonic::Status::invalid_argument(msg)
            }
            Error::SocketInUse { .. } | Error::NameReserved { .. } => {
                tonic::Status::already_exists(msg)
            }
            Error::NotFound { .. } => tonic::Status::not_found(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Aborted(_) => tonic::Status::aborted(msg),
            Error::Runtime(_) => tonic::Status::unknown(msg),
            Error::Shim(_) => tonic::Status::unavailable(msg),
            Error::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(msg),
            Error::Reference(_) => tonic::Status::invalid_argument(msg),
            Error::Images { source, .. } => match *source {
                berth_images::Error::NotFound(_) => tonic::Status::not_found(msg),
                berth_images::Error::Registry { ref source, .. } => match **source {
                    RegistryError::Unauthorized { .. } => tonic::Status::unauthenticated(msg),
                    RegistryError::NotFound { .. } => tonic::Status::not_found(msg),
                    _ => tonic::Status::unknown(msg),
                },
                _ => tonic::Status::unknown(msg),
            },
            Error::ConfigRead { .. }
            | Error::Socket { .. }
            | Error::Network { .. }
            | Error::Namespace { .. }
            | Error::Store(_)
            | Error::Io { .. }
            | Error::Stream(_)
            | Error::Serve(_) => tonic::Status::internal(msg),
        }
    }
}
