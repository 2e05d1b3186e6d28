//! Compiling a profile to BPF with libseccomp, once: the program is cached
//! under `<root>/.cache/seccomp/<sha256 of the profile>.bpf`, so later
//! containers with the same profile skip libseccomp entirely. Loading is a
//! raw seccomp(2) of the cached program.

use std::io::{Read, Seek};
use std::os::fd::AsFd;
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use sha2::Digest;

use super::{Action, Op, Profile};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: compile the profile")]
    Compile(#[source] libseccomp::error::SeccompError),
    #[error("seccomp: {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A compiled filter, ready to load.
#[derive(Debug, Clone)]
pub struct Filter {
    bpf: Vec<u8>,
    flags: u64,
    /// Where the notify fd goes, when the profile has SCMP_ACT_NOTIFY.
    listener: Option<super::Listener>,
}

const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
const FLAG_LOG: u64 = 1 << 1;
const FLAG_SPEC_ALLOW: u64 = 1 << 2;
const FLAG_NEW_LISTENER: u64 = 1 << 3;
const FLAG_WAIT_KILLABLE_RECV: u64 = 1 << 5;

impl Filter {
    /// Load the filter on the calling thread. With SCMP_ACT_NOTIFY in the
    /// profile, the kernel hands back the notify fd (close-on-exec), which
    /// is returned for the seccomp agent at `listenerPath`.
    pub fn load(&self) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
        let flags = if self.listener.is_some() {
            self.flags | FLAG_NEW_LISTENER
        } else {
            self.flags
        };
        let prog = libc::sock_fprog {
            len: (self.bpf.len() / std::mem::size_of::<libc::sock_filter>()) as u16,
            filter: self.bpf.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `prog` points at our BPF bytes (whole sock_filter records,
        // as libseccomp exported them) for the duration of the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(SeccompError::Io {
                what: "load filter".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        if self.listener.is_none() {
            return Ok(None);
        }
        // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a new
        // fd that nothing else owns.
        Ok(Some(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(r as i32)
        }))
    }

    /// The seccomp agent to hand the notify fd to, if the profile has one.
    pub fn listener(&self) -> Option<&super::Listener> {
        self.listener.as_ref()
    }

    /// The flags to record in state, for `from_cache`.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// Reload a program cached by `load_or_compile` (for `exec`).
    pub fn from_cache(
        path: &Path,
        flags: u64,
        listener: Option<super::Listener>,
    ) -> Result<Self, SeccompError> {
        let bpf = std::fs::read(path).map_err(|source| SeccompError::Io {
            what: format!("read {}", path.display()),
            source,
        })?;
        Ok(Filter {
            bpf,
            flags: flags as libc::c_ulong,
            listener,
        })
    }

    pub fn len(&self) -> usize {
        self.bpf.len() / std::mem::size_of::<libc::sock_filter>()
    }

    pub fn is_empty(&self) -> bool {
        self.bpf.is_empty()
    }
}

fn flags_of(p: &Profile) -> u64 {
    p.flags.iter().fold(0, |f, s| {
        f | match s.as_str() {
            "SECCOMP_FILTER_FLAG_LOG" => FLAG_LOG,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => FLAG_WAIT_KILLABLE_RECV,
            _ => 0, // TSYNC: the init is single-threaded
        }
    })
}

/// The cache key: the profile's content and this binary's version.
pub fn digest(p: &Profile) -> String {
    let mut h = sha2::Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("{p:?}").as_bytes());
    hex::encode(h.finalize())
}

/// The cached program for `p`, compiling and caching it when missing.
/// Where `load_or_compile` caches the program for `p`.
pub fn cache_path(p: &Profile, root: &Path) -> std::path::PathBuf {
    root.join(".cache")
        .join("seccomp")
        .join(format!("{}.bpf", digest(p)))
}

pub fn load_or_compile(p: &Profile, root: &Path) -> Result<Filter, SeccompError> {
    let flags = flags_of(p);
    let listener = p.listener();
    let dir = root.join(".cache").join("seccomp");
    let file = dir.join(format!("{}.bpf", digest(p)));
    if let Ok(bpf) = std::fs::read(&file)
        && bpf.len() % std::mem::size_of::<libc::sock_filter>() == 0
        && !bpf.is_empty()
    {
        return Ok(Filter {
            bpf,
            flags,
            listener,
        });
    }
    let bpf = compile(p)?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| SeccompError::Io { what, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("create cache dir"))?;
    crate::state::write_atomic(
        &dir,
        file.file_name().and_then(|n| n.to_str()).expect("ascii"),
        &bpf,
    )
    .map_err(io("write cache"))?;
    Ok(Filter {
        bpf,
        flags,
        listener,
    })
}

fn action(a: Action) -> ScmpAction {
    match a {
        Action::KillThread => ScmpAction::KillThread,
        Action::KillProcess => ScmpAction::KillProcess,
        Action::Trap => ScmpAction::Trap,
        Action::Errno(e) => ScmpAction::Errno(e as i32),
        Action::Trace(e) => ScmpAction::Trace(e as u16),
        Action::Allow => ScmpAction::Allow,
        Action::Log => ScmpAction::Log,
        Action::Notify => ScmpAction::Notify,
    }
}

fn compare(c: &super::ArgCmp) -> ScmpArgCompare {
    let op = match c.op {
        Op::NotEqual => ScmpCompareOp::NotEqual,
        Op::Less => ScmpCompareOp::Less,
        Op::LessOrEqual => ScmpCompareOp::LessOrEqual,
        Op::Equal => ScmpCompareOp::Equal,
        Op::GreaterOrEqual => ScmpCompareOp::GreaterEqual,
        Op::Greater => ScmpCompareOp::Greater,
        Op::MaskedEqual => ScmpCompareOp::MaskedEqual(c.value),
    };
    let datum = if c.op == Op::MaskedEqual {
        c.value_two
    } else {
        c.value
    };
    ScmpArgCompare::new(c.index, op, datum)
}

/// Compile with libseccomp and export the BPF program.
pub fn compile(p: &Profile) -> Result<Vec<u8>, SeccompError> {
    let mut ctx =
        ScmpFilterContext::new(action(p.default_action)).map_err(SeccompError::Compile)?;
    for a in &p.architectures {
        let arch: ScmpArch = a.parse().map_err(SeccompError::Compile)?;
        ctx.add_arch(arch).map_err(SeccompError::Compile)?;
    }
    for r in &p.rules {
        if r.action == p.default_action {
            continue; // libseccomp refuses rules equal to the default
        }
        for name in &r.names {
            // Names this libseccomp or arch does not know are skipped, as
            // runc does: profiles list syscalls of many kernels.
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let res = if r.args.is_empty() {
                ctx.add_rule(action(r.action), sc)
            } else {
                let cmps: Vec<_> = r.args.iter().map(compare).collect();
                ctx.add_rule_conditional(action(r.action), sc, &cmps)
            };
            res.map_err(SeccompError::Compile)?;
        }
    }
    let mut f = memfd()?;
    ctx.export_bpf(f.as_fd()).map_err(SeccompError::Compile)?;
    let mut bpf = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut bpf))
        .map_err(|source| SeccompError::Io {
            what: "read exported BPF".into(),
            source,
        })?;
    Ok(bpf)
}

fn memfd() -> Result<std::fs::File, SeccompError> {
    let fd =
        nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Io {
                what: "memfd_create".into(),
                source: e.into(),
            })?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_caches_by_content() {
        let spec: crate::config::spec::Seccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        }))
        .unwrap();
        let p = super::super::validate(&spec).unwrap();
        let dir = std::env::temp_dir().join(format!("berth-seccomp-{}", std::process::id()));
        let f = load_or_compile(&p, &dir).unwrap();
        assert!(f.len() > 4);
        let cached = dir
            .join(".cache/seccomp")
            .join(format!("{}.bpf", digest(&p)));
        assert!(cached.exists());
        assert_eq!(load_or_compile(&p, &dir).unwrap().len(), f.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
