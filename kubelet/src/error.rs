//! The crate's one error enum. Every variant names the object it concerns
//! (a file, a pod, a container, a CRI call).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubelet config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("pod manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("pod {pod}: {message}")]
    PodSpec { pod: String, message: String },
    #[error("container runtime endpoint {endpoint}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("CRI {call} ({object}): {code:?}: {message}")]
    Cri {
        call: &'static str,
        object: String,
        code: tonic::Code,
        message: String,
    },
    /// The node's pod user namespace setup (id ranges, recorded blocks).
    #[error("pod user namespaces: {0}")]
    UserNamespaces(String),
    #[error("API server: {what}: {message}")]
    Api { what: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The gRPC code of a failed CRI call, if that is what this is.
    pub fn cri_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Cri { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
