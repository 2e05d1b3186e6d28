//! Container IDs: parsed once at the CLI edge, so the rest of the runtime can
//! use them as directory names without re-checking.

use std::fmt;

/// Why a string is not a valid container ID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("container id is empty")]
    Empty,
    #[error("container id {0:?} is longer than 1024 bytes")]
    TooLong(String),
    #[error("container id {0:?} has a character outside [A-Za-z0-9_+.-] or starts with '.'")]
    BadChar(String),
}

/// A container ID as runc accepts it: `^[\w+-\.]+$`, and never `.` or `..`,
/// so it is always a single safe path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > 1024 {
            return Err(IdError::TooLong(s.to_owned()));
        }
        let ok = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
        if !ok || s.starts_with('.') {
            return Err(IdError::BadChar(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_style_ids() {
        for id in ["abc", "a-b_c.d+e", "0123456789abcdef"] {
            assert_eq!(ContainerId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn rejects_path_like_ids() {
        assert_eq!(ContainerId::parse(""), Err(IdError::Empty));
        for id in [".", "..", "../x", "a/b", "a b", ".hidden", "a\0b"] {
            assert!(ContainerId::parse(id).is_err(), "{id:?} accepted");
        }
    }
}
