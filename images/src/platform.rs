//! Platforms (`os/arch[/variant]`): the host's, normalisation of the
//! spellings found in the wild, and choosing an index entry for the host.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: &str) -> Platform {
        Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.to_owned(),
            ..Default::default()
        }
    }

    /// The platform this process runs on, in OCI spelling.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "x86" => ("386", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "powerpc64" => ("ppc64le", ""),
            "loongarch64" => ("loong64", ""),
            other => (other, ""),
        };
        Platform::new(std::env::consts::OS, arch, variant).normalized()
    }

    /// Parses `os/arch[/variant]` (as given on a command line).
    pub fn parse(s: &str) -> Option<Platform> {
        let mut it = s.split('/');
        let os = it.next().filter(|s| !s.is_empty())?;
        let arch = it.next().filter(|s| !s.is_empty())?;
        let variant = it.next().unwrap_or("");
        if it.next().is_some() {
            return None;
        }
        Some(Platform::new(os, arch, variant).normalized())
    }

    /// containerd's normalisation: aliases folded, arm64's default variant
    /// dropped, arm's default variant filled in.
    pub fn normalized(mut self) -> Platform {
        self.os = self.os.to_ascii_lowercase();
        let arch = self.architecture.to_ascii_lowercase();
        let (arch, variant) = match (arch.as_str(), self.variant.as_str()) {
            ("i386", v) => ("386", v.to_owned()),
            ("x86_64" | "x86-64" | "amd64", v) => (
                "amd64",
                if v == "v1" {
                    String::new()
                } else {
                    v.to_owned()
                },
            ),
            ("aarch64" | "arm64", v) => (
                "arm64",
                if v == "8" || v == "v8" {
                    String::new()
                } else {
                    v.to_owned()
                },
            ),
            ("armhf", _) => ("arm", "v7".to_owned()),
            ("armel", _) => ("arm", "v6".to_owned()),
            ("arm", "") => ("arm", "v7".to_owned()),
            ("arm", v) if !v.starts_with('v') => ("arm", format!("v{v}")),
            (a, v) => (a, v.to_owned()),
        };
        self.architecture = arch.to_owned();
        self.variant = variant;
        self
    }

    /// How well `candidate` runs on `self` (the host); `None` when it cannot.
    /// Higher is better: an exact variant beats an older compatible one.
    pub fn rank(&self, candidate: &Platform) -> Option<u32> {
        let host = self.clone().normalized();
        let c = candidate.clone().normalized();
        if host.os != c.os || host.architecture != c.architecture {
            return None;
        }
        if host.variant == c.variant {
            return Some(100);
        }
        // Older variants of the same architecture run on newer hosts
        // (arm v7 runs v6 and v5, amd64 v3 runs v2).
        let level = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
        match (level(&host.variant), level(&c.variant)) {
            (Some(h), Some(cv)) if cv < h => Some(50 + cv),
            (None, Some(_)) => None,
            (Some(_), None) => Some(10),
            _ => None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_normalised() {
        let h = Platform::host();
        assert_eq!(h.os, "linux");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(h.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn ranks() {
        let amd = Platform::new("linux", "amd64", "");
        assert_eq!(amd.rank(&Platform::new("linux", "x86_64", "")), Some(100));
        assert_eq!(amd.rank(&Platform::new("linux", "amd64", "v1")), Some(100));
        assert_eq!(amd.rank(&Platform::new("linux", "arm64", "")), None);
        assert_eq!(amd.rank(&Platform::new("windows", "amd64", "")), None);
        assert_eq!(amd.rank(&Platform::new("unknown", "unknown", "")), None);
        assert_eq!(amd.rank(&Platform::new("linux", "amd64", "v3")), None);
        let arm64 = Platform::new("linux", "arm64", "v8");
        assert_eq!(
            arm64.rank(&Platform::new("linux", "aarch64", "")),
            Some(100)
        );
        let arm7 = Platform::new("linux", "arm", "v7");
        assert_eq!(arm7.rank(&Platform::new("linux", "arm", "")), Some(100));
        assert!(arm7.rank(&Platform::new("linux", "arm", "v6")).unwrap() < 100);
        assert_eq!(arm7.rank(&Platform::new("linux", "arm", "v8")), None);
    }

    #[test]
    fn parses() {
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("linux/amd64/v1/x").is_none());
    }
}
