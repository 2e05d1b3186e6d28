//! Seccomp profiles for CRI containers: the built-in `RuntimeDefault`, and
//! `Localhost` profiles read from files. Both come out as the OCI
//! `linux.seccomp` wire type that berth-runc (or runc) compiles.
//!
//! `RuntimeDefault` is an allowlist: a syscall not named fails with EPERM.
//! It allows what ordinary programs need and keeps out what reaches kernel
//! state the container does not own (keyrings, modules, kexec, the clock,
//! mounts and namespaces, file handles that bypass the mount tree, BPF),
//! unless the container holds the capability that already grants that power.
//! In effect it matches the Docker/containerd default. This module only
//! builds profiles: it never loads a filter itself.
//!
//! `builtin` holds the `RuntimeDefault` table, `file` the profile file
//! format; the host facts both depend on live here.

mod builtin;
mod file;

use std::path::{Path, PathBuf};

use berth_runtime::config::spec::Seccomp;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("seccomp profile {path}: read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path}: {field}: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The built-in `RuntimeDefault` profile for a container whose process has
/// the capabilities `caps` (its bounding set; e.g. `CAP_SYS_ADMIN` widens
/// it to mounts and namespaces), for this host's arches and kernel.
pub fn runtime_default(caps: &[String]) -> Seccomp {
    builtin::build_default(caps, &Host::current())
}

/// A `Localhost` profile from a file, resolved for a container holding no
/// capabilities: rules a capability includes are left out, rules it
/// excludes stay (the narrower reading). `localhost_with_caps` resolves
/// them for the container's real capabilities.
pub fn localhost(path: &Path) -> Result<Seccomp, ProfileError> {
    localhost_with_caps(path, &[])
}

/// A `Localhost` profile from a file in the docker/containerd format or
/// plain OCI `linux.seccomp` JSON; `includes`/`excludes` are resolved for
/// a container with `caps` on this host.
pub fn localhost_with_caps(path: &Path, caps: &[String]) -> Result<Seccomp, ProfileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileError::Read {
        path: path.to_owned(),
        source,
    })?;
    file::convert(&bytes, caps, &Host::current()).map_err(|(field, message)| ProfileError::Parse {
        path: path.to_owned(),
        field,
        message,
    })
}

/// The host facts the table depends on.
#[derive(Debug, Clone)]
struct Host {
    /// Rust `target_arch` spelling.
    arch: &'static str,
    /// (major, minor); None when unknown (kernel-gated groups are left out).
    kernel: Option<(u32, u32)>,
}

impl Host {
    fn current() -> Self {
        Host {
            arch: std::env::consts::ARCH,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .and_then(|r| parse_kernel(&r)),
        }
    }

    /// The seccomp architectures a container on this host may use: the
    /// native one and the compat ABIs the kernel runs beside it.
    fn seccomp_arches(&self) -> Vec<String> {
        let arches: &[&str] = match self.arch {
            "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
            "riscv64" => &["SCMP_ARCH_RISCV64"],
            "powerpc64" => &["SCMP_ARCH_PPC64LE"],
            "x86" => &["SCMP_ARCH_X86"],
            "arm" => &["SCMP_ARCH_ARM"],
            // Unlisted: libseccomp uses the native arch alone.
            _ => &[],
        };
        arches.iter().map(|a| (*a).to_owned()).collect()
    }

    /// The Go spelling docker profiles use in `includes.arches`.
    fn go_arch(&self) -> &'static str {
        match self.arch {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            other => other,
        }
    }
}

/// "6.1.0-18-amd64" → (6, 1).
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `CAP_SYS_ADMIN`, whatever spelling CRI or the image config used
/// (`sys_admin`, `SYS_ADMIN`).
fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("profile.json");
        std::fs::write(&f, "{\"defaultAction\": \"SCMP_ACT_ALLOW\",").unwrap();
        let e = localhost(&f).unwrap_err().to_string();
        assert!(e.contains(&f.display().to_string()), "{e}");
        let e = localhost(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json: read"), "{e}");
        std::fs::write(
            &f,
            serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})
            .to_string(),
        )
        .unwrap();
        assert_eq!(localhost(&f).unwrap().syscalls[0].names, ["read"]);
    }

    #[test]
    fn kernel_releases_and_cap_spellings() {
        assert_eq!(parse_kernel("6.18.44-fc-v782\n"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("garbage"), None);
        assert_eq!(normalize_cap("sys_admin"), "CAP_SYS_ADMIN");
        assert_eq!(normalize_cap("CAP_BPF"), "CAP_BPF");
    }
}
