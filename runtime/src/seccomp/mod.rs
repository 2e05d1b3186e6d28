//! Seccomp: the validated profile (`linux.seccomp`), and its compilation to
//! BPF (see `compile`).

use super::config::spec;

/// What a matching syscall does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u32),
    Trace(u32),
    Allow,
    Log,
    Notify,
}

impl Action {
    pub const NAMES: [&'static str; 10] = [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
        "SCMP_ACT_KILL_THREAD",
    ];

    /// `errno` is the rule's `errnoRet` (or the profile's `defaultErrnoRet`);
    /// EPERM when unset, as runc does.
    pub fn parse(name: &str, errno: Option<u32>) -> Option<Self> {
        Some(match name {
            "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => Self::KillThread,
            "SCMP_ACT_KILL_PROCESS" => Self::KillProcess,
            "SCMP_ACT_TRAP" => Self::Trap,
            "SCMP_ACT_ERRNO" => Self::Errno(errno.unwrap_or(libc::EPERM as u32)),
            "SCMP_ACT_TRACE" => Self::Trace(errno.unwrap_or(libc::EPERM as u32)),
            "SCMP_ACT_ALLOW" => Self::Allow,
            "SCMP_ACT_LOG" => Self::Log,
            "SCMP_ACT_NOTIFY" => Self::Notify,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    NotEqual,
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
    MaskedEqual,
}

impl Op {
    pub const NAMES: [&'static str; 7] = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(
            [
                Self::NotEqual,
                Self::Less,
                Self::LessOrEqual,
                Self::Equal,
                Self::GreaterOrEqual,
                Self::Greater,
                Self::MaskedEqual,
            ][i],
        )
    }
}

pub const ARCHES: [&str; 17] = [
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_RISCV64",
];

pub const FLAGS: [&str; 4] = [
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArgCmp {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    pub args: Vec<ArgCmp>,
}

/// A validated seccomp profile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Profile {
    pub default_action: Action,
    pub architectures: Vec<String>,
    pub flags: Vec<String>,
    pub listener_path: Option<String>,
    pub listener_metadata: Option<String>,
    pub rules: Vec<Rule>,
}

impl Profile {
    pub fn uses_notify(&self) -> bool {
        self.default_action == Action::Notify
            || self.rules.iter().any(|r| r.action == Action::Notify)
    }

    /// The seccomp agent, when an action is SCMP_ACT_NOTIFY (validation
    /// guarantees the path then).
    pub fn listener(&self) -> Option<Listener> {
        if !self.uses_notify() {
            return None;
        }
        Some(Listener {
            path: self.listener_path.clone()?,
            metadata: self.listener_metadata.clone(),
        })
    }
}

/// A seccomp agent: the unix socket that gets the container process state
/// and the notify fd (`linux.seccomp.listenerPath`), and the opaque
/// `listenerMetadata` passed along.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Listener {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Validate `linux.seccomp`; the error is (field, message).
pub fn validate(s: &spec::Seccomp) -> Result<Profile, (String, String)> {
    let default_action =
        Action::parse(&s.default_action, s.default_errno_ret).ok_or_else(|| {
            (
                "linux.seccomp.defaultAction".to_owned(),
                format!("unknown action {:?}", s.default_action),
            )
        })?;
    for (i, a) in s.architectures.iter().enumerate() {
        if !ARCHES.contains(&a.as_str()) {
            return Err((
                format!("linux.seccomp.architectures[{i}]"),
                format!("unknown architecture {a:?}"),
            ));
        }
    }
    for (i, f) in s.flags.iter().enumerate() {
        if !FLAGS.contains(&f.as_str()) {
            return Err((
                format!("linux.seccomp.flags[{i}]"),
                format!("unknown flag {f:?}"),
            ));
        }
    }
    let mut rules = Vec::with_capacity(s.syscalls.len());
    for (i, sc) in s.syscalls.iter().enumerate() {
        let action = Action::parse(&sc.action, sc.errno_ret).ok_or_else(|| {
            (
                format!("linux.seccomp.syscalls[{i}].action"),
                format!("unknown action {:?}", sc.action),
            )
        })?;
        if sc.names.is_empty() {
            return Err((
                format!("linux.seccomp.syscalls[{i}].names"),
                "must not be empty".into(),
            ));
        }
        let mut args = Vec::with_capacity(sc.args.len());
        for (j, a) in sc.args.iter().enumerate() {
            let op = Op::parse(&a.op).ok_or_else(|| {
                (
                    format!("linux.seccomp.syscalls[{i}].args[{j}].op"),
                    format!("unknown operator {:?}", a.op),
                )
            })?;
            if a.index > 5 {
                return Err((
                    format!("linux.seccomp.syscalls[{i}].args[{j}].index"),
                    format!("{} is not a syscall argument index (0-5)", a.index),
                ));
            }
            args.push(ArgCmp {
                index: a.index,
                value: a.value,
                value_two: a.value_two,
                op,
            });
        }
        rules.push(Rule {
            names: sc.names.clone(),
            action,
            args,
        });
    }
    let profile = Profile {
        default_action,
        architectures: s.architectures.clone(),
        flags: s.flags.clone(),
        listener_path: s.listener_path.clone(),
        listener_metadata: s.listener_metadata.clone(),
        rules,
    };
    if profile.uses_notify() && profile.listener_path.as_deref().unwrap_or("").is_empty() {
        return Err((
            "linux.seccomp.listenerPath".into(),
            "required when an action is SCMP_ACT_NOTIFY".into(),
        ));
    }
    // The process hands its notify fd over with sendmsg once the filter is
    // on: notifying on that call, or on everything, would wait for an agent
    // that has no fd yet.
    if profile.default_action == Action::Notify {
        return Err((
            "linux.seccomp.defaultAction".into(),
            "SCMP_ACT_NOTIFY cannot be the default action (the runtime needs sendmsg to hand the notify fd to the agent)".into(),
        ));
    }
    for (i, r) in profile.rules.iter().enumerate() {
        if r.action == Action::Notify && r.names.iter().any(|n| n == "sendmsg") {
            return Err((
                format!("linux.seccomp.syscalls[{i}].action"),
                "SCMP_ACT_NOTIFY cannot be used for sendmsg (the runtime needs it to hand the notify fd to the agent)".into(),
            ));
        }
    }
    Ok(profile)
}
pub mod compile;
pub mod notify;
