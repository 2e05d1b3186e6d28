//! `config.json`: parsing (with field paths in errors) and validation into
//! the domain types the runtime works on. Nothing here touches the system
//! beyond reading the bundle (stat of rootfs, bind sources, namespace paths).

pub mod default;
pub mod model;
pub mod spec;
pub mod tables;
mod validate;

use std::path::{Path, PathBuf};

pub use model::*;
pub use validate::{selinux_label, validate, validate_process};

/// Why a config could not be used. Every variant names the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: read")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {field}: {msg}")]
    Parse {
        file: String,
        field: String,
        msg: String,
    },
    #[error("{file}: {field}: {msg}")]
    Invalid {
        file: String,
        field: String,
        msg: String,
    },
}

/// Parse JSON into `T`, naming the field on error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    file: &str,
    bytes: &[u8],
) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // serde_json appends " at line L column C"; keep it: it helps find
        // the spot in a large file.
        ConfigError::Parse {
            file: file.to_owned(),
            field: if field == "." {
                "(document)".into()
            } else {
                field
            },
            msg: inner.to_string(),
        }
    })
}

/// Load and validate `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Config, ConfigError> {
    let file = bundle.join("config.json");
    let bytes = std::fs::read(&file).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    let spec: spec::Spec = parse_json("config.json", &bytes)?;
    validate(bundle, &spec)
}
