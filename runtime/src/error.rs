//! The crate's error: one variant per module's error, each naming the
//! container (or the file) it concerns.

use crate::cgroups::CgroupError;
use crate::config::ConfigError;
use crate::id::IdError;
use crate::process::ProcessError;
use crate::seccomp::compile::SeccompError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("container {id}")]
    Cgroup {
        id: String,
        #[source]
        source: CgroupError,
    },
    #[error("container {id}")]
    Process {
        id: String,
        #[source]
        source: ProcessError,
    },
    #[error("container {id}")]
    Seccomp {
        id: String,
        #[source]
        source: SeccompError,
    },
    /// The container is in the wrong status for the command.
    #[error("container {id}: {msg}")]
    Status { id: String, msg: String },
    #[error("container {id}: {what}")]
    Io {
        id: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub(crate) fn io(
        id: &impl std::fmt::Display,
        what: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let (id, what) = (id.to_string(), what.into());
        move |source| Error::Io { id, what, source }
    }
    pub(crate) fn cgroup(id: &impl std::fmt::Display) -> impl FnOnce(CgroupError) -> Error {
        let id = id.to_string();
        move |source| Error::Cgroup { id, source }
    }
    pub(crate) fn process(id: &impl std::fmt::Display) -> impl FnOnce(ProcessError) -> Error {
        let id = id.to_string();
        move |source| Error::Process { id, source }
    }
    pub(crate) fn status(id: &impl std::fmt::Display, msg: impl Into<String>) -> Error {
        Error::Status {
            id: id.to_string(),
            msg: msg.into(),
        }
    }
}
