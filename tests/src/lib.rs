//! Helpers shared by the end-to-end tests: where the test bed and the built
//! binaries are. Every test takes its paths from here so that many isolated
//! runs can share one machine.
#![forbid(unsafe_code)]

pub mod bundle;

use std::path::PathBuf;

/// The workspace root (the folder holding `hack/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `_output/`, where the test bed keeps binaries, images and state.
pub fn output_dir() -> PathBuf {
    std::env::var_os("BERTH_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("_output"))
}

/// A name unique to this process and call site, for parallel-safe resources.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_differ() {
        assert_ne!(super::unique_name("t"), super::unique_name("t"));
    }
}
