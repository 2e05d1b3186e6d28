//! The berthd <-> berth-shim protocol: one JSON request per line on the
//! shim's unix socket, one JSON response line back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the shim runs a container's OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeCmd {
    /// The runtime binary (berth-runc, runc, crun).
    pub binary: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `<runtime> create` the bundle, with stdout/stderr into the CRI log.
    Create {
        id: String,
        bundle: PathBuf,
        runtime: RuntimeCmd,
        log_path: Option<PathBuf>,
    },
    Start {
        id: String,
    },
    Kill {
        id: String,
        signal: i32,
        all: bool,
    },
    /// Forget an exited (or never started) container and `<runtime> delete` it.
    Delete {
        id: String,
    },
    /// One container's state; `Wait` blocks until it has exited.
    State {
        id: String,
    },
    Wait {
        id: String,
    },
    /// Every container the shim knows.
    List,
    /// Reopen a container's log file (after the kubelet rotated it).
    ReopenLog {
        id: String,
    },
    /// Exit once no container is left.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: Status,
    pub pid: i32,
    /// Exit code; 128 + signal for a signalled process.
    pub exit_code: Option<i32>,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub bundle: PathBuf,
    pub runtime: RuntimeCmd,
    pub log_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    State { state: ContainerState },
    List { containers: Vec<ContainerState> },
    Error { kind: ErrorKind, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Runtime,
    BadRequest,
}
