//! `Localhost` profile files: the docker/containerd profile format, of
//! which plain OCI `linux.seccomp` JSON is a subset, resolved for one
//! container into the OCI wire type.

use std::collections::BTreeSet;

use berth_runtime::config::spec::{Seccomp, SeccompArg, SeccompSyscall};
use serde::Deserialize;

use super::{Host, normalize_cap, parse_kernel};

/// A profile file: the docker/containerd profile format, of which plain OCI
/// `linux.seccomp` JSON is a subset. Unknown fields are ignored, as docker
/// and containerd do.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<FileSyscall>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileSyscall {
    name: Option<String>,
    names: Option<Vec<String>>,
    #[serde(default)]
    action: String,
    errno_ret: Option<u32>,
    args: Option<Vec<FileArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    #[serde(default)]
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    arches: Option<Vec<String>>,
    caps: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// (field path in the file, what is wrong there).
pub(super) type FieldError = (String, String);

/// Parse and check a profile file, resolving `includes`/`excludes` for a
/// container with `caps` on `host`.
pub(super) fn convert(bytes: &[u8], caps: &[String], host: &Host) -> Result<Seccomp, FieldError> {
    use berth_runtime::seccomp::{ARCHES, Action, FLAGS, Op};

    let file: ProfileFile =
        berth_runtime::config::parse_json("profile", bytes).map_err(|e| match e {
            berth_runtime::config::ConfigError::Parse { field, msg, .. }
            | berth_runtime::config::ConfigError::Invalid { field, msg, .. } => (field, msg),
            other => ("(document)".into(), other.to_string()),
        })?;
    let err = |field: String, message: String| Err((field, message));

    if file.default_action.is_empty() {
        return err("defaultAction".into(), "required".into());
    }
    if Action::parse(&file.default_action, file.default_errno_ret).is_none() {
        return err(
            "defaultAction".into(),
            format!("unknown action {:?}", file.default_action),
        );
    }
    let check_arch = |field: String, a: &str| {
        if ARCHES.contains(&a) {
            Ok(())
        } else {
            Err((field, format!("unknown architecture {a:?}")))
        }
    };
    let architectures = file.architectures.unwrap_or_default();
    let arch_map = file.arch_map.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return err(
            "archMap".into(),
            "architectures and archMap are both set; use one".into(),
        );
    }
    for (i, a) in architectures.iter().enumerate() {
        check_arch(format!("architectures[{i}]"), a)?;
    }
    let native = host.seccomp_arches().into_iter().next();
    let mut arches = architectures;
    for (i, m) in arch_map.iter().enumerate() {
        check_arch(format!("archMap[{i}].architecture"), &m.architecture)?;
        let subs = m.sub_architectures.as_deref().unwrap_or_default();
        for (j, s) in subs.iter().enumerate() {
            check_arch(format!("archMap[{i}].subArchitectures[{j}]"), s)?;
        }
        if native.as_deref() == Some(m.architecture.as_str()) {
            arches.push(m.architecture.clone());
            arches.extend(subs.iter().cloned());
        }
    }
    let flags = file.flags.unwrap_or_default();
    for (i, f) in flags.iter().enumerate() {
        if !FLAGS.contains(&f.as_str()) {
            return err(format!("flags[{i}]"), format!("unknown flag {f:?}"));
        }
    }

    let caps: BTreeSet<String> = caps.iter().map(|c| normalize_cap(c)).collect();
    let mut syscalls = Vec::new();
    for (i, sc) in file.syscalls.unwrap_or_default().into_iter().enumerate() {
        let at = |f: &str| format!("syscalls[{i}].{f}");
        let names = match (sc.name, sc.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return err(at("name"), "name and names are both set; use one".into());
            }
            (Some(n), _) => vec![n],
            (None, Some(n)) if !n.is_empty() => n,
            _ => return err(at("names"), "no syscall named".into()),
        };
        if sc.action.is_empty() {
            return err(at("action"), "required".into());
        }
        let Some(action) = Action::parse(&sc.action, sc.errno_ret) else {
            return err(at("action"), format!("unknown action {:?}", sc.action));
        };
        if sc.errno_ret.is_some() && !matches!(action, Action::Errno(_) | Action::Trace(_)) {
            return err(
                at("errnoRet"),
                format!(
                    "only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {}",
                    sc.action
                ),
            );
        }
        let mut args = Vec::new();
        for (j, a) in sc.args.unwrap_or_default().into_iter().enumerate() {
            if Op::parse(&a.op).is_none() {
                return err(
                    at(&format!("args[{j}].op")),
                    format!("unknown operator {:?}", a.op),
                );
            }
            if a.index > 5 {
                return err(
                    at(&format!("args[{j}].index")),
                    format!("{} is not a syscall argument index (0-5)", a.index),
                );
            }
            args.push(SeccompArg {
                index: a.index,
                value: a.value,
                value_two: a.value_two,
                op: a.op,
            });
        }
        let include =
            applies(&sc.includes, &sc.excludes, &caps, host).map_err(|(f, m)| (at(&f), m))?;
        if include {
            syscalls.push(SeccompSyscall {
                names,
                action: sc.action,
                errno_ret: sc.errno_ret,
                args,
            });
        }
    }
    let seccomp = Seccomp {
        default_action: file.default_action,
        default_errno_ret: file.default_errno_ret,
        architectures: arches,
        flags,
        listener_path: file.listener_path,
        listener_metadata: file.listener_metadata,
        syscalls,
    };
    // What is left to check (SCMP_ACT_NOTIFY needs a listener) is checked
    // by the runtime's own validation, the same berth-runc applies.
    berth_runtime::seccomp::validate(&seccomp).map_err(|(field, message)| {
        let field = field
            .strip_prefix("linux.seccomp.")
            .unwrap_or(&field)
            .to_owned();
        (field, message)
    })?;
    Ok(seccomp)
}

/// Whether a docker-format rule applies to a container with `caps` on
/// `host`: every `includes` condition holds (all its caps held) and no
/// `excludes` condition does (any of its caps held excludes).
fn applies(
    inc: &Filter,
    exc: &Filter,
    caps: &BTreeSet<String>,
    host: &Host,
) -> Result<bool, FieldError> {
    let kernel_at_least = |field: &str, v: &str| -> Result<bool, FieldError> {
        let want = parse_kernel(v).ok_or_else(|| {
            (
                field.to_owned(),
                format!("{v:?} is not a kernel version (4.8)"),
            )
        })?;
        Ok(host.kernel.is_some_and(|k| k >= want))
    };
    let arch = host.go_arch();
    let held = |c: &String| caps.contains(&normalize_cap(c));
    if exc
        .arches
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x == arch))
    {
        return Ok(false);
    }
    if exc.caps.as_ref().is_some_and(|c| c.iter().any(held)) {
        return Ok(false);
    }
    if let Some(v) = &exc.min_kernel
        && kernel_at_least("excludes.minKernel", v)?
    {
        return Ok(false);
    }
    if inc
        .arches
        .as_ref()
        .is_some_and(|a| !a.is_empty() && !a.iter().any(|x| x == arch))
    {
        return Ok(false);
    }
    if inc.caps.as_ref().is_some_and(|c| !c.iter().all(held)) {
        return Ok(false);
    }
    if let Some(v) = &inc.min_kernel
        && !kernel_at_least("includes.minKernel", v)?
    {
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: Host = Host {
        arch: "x86_64",
        kernel: Some((6, 1)),
    };

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    fn parse(json: serde_json::Value, caps: &[String]) -> Result<Seccomp, FieldError> {
        convert(json.to_string().as_bytes(), caps, &AMD64)
    }

    #[test]
    fn localhost_reads_plain_oci_json() {
        let p = parse(
            serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                              "args": [{"index": 1, "value": 448, "op": "SCMP_CMP_EQ"}]}]
            }),
            &[],
        )
        .unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ALLOW");
        assert_eq!(p.architectures, ["SCMP_ARCH_X86_64"]);
        assert_eq!(p.syscalls.len(), 1);
        assert_eq!(p.syscalls[0].errno_ret, Some(13));
        assert_eq!(p.syscalls[0].args[0].value, 448);
    }

    #[test]
    fn localhost_reads_the_docker_format() {
        let file = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64",
                 "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
                 "comment": "", "includes": {}, "excludes": {}},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"arches": ["arm64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "4.8"}},
                {"names": ["kcmp"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"minKernel": "9.0"}}
            ]
        });
        let names = |p: &Seccomp| -> Vec<String> {
            p.syscalls.iter().flat_map(|r| r.names.clone()).collect()
        };
        let p = parse(file.clone(), &[]).unwrap();
        assert_eq!(p.default_errno_ret, Some(1));
        assert_eq!(
            p.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert_eq!(
            names(&p),
            ["read", "write", "getpid", "clone", "arch_prctl", "ptrace"]
        );
        let p = parse(file, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        assert_eq!(
            names(&p),
            ["read", "write", "getpid", "mount", "arch_prctl", "ptrace"]
        );
    }

    #[test]
    fn localhost_errors_name_the_field() {
        let bad = |json: serde_json::Value, field: &str, says: &str| {
            let (f, m) = parse(json.clone(), &[]).expect_err(&json.to_string());
            assert_eq!(f, field, "{m}");
            assert!(m.contains(says), "{f}: {m}");
        };
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW"},
                             {"names": ["b"], "action": "SCMP_ACT_EXPLODE"}]}),
            "syscalls[1].action",
            "unknown action \"SCMP_ACT_EXPLODE\"",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "defaultAction",
            "unknown action",
        );
        bad(
            serde_json::json!({"syscalls": []}),
            "defaultAction",
            "required",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_VAX"]}),
            "architectures[0]",
            "unknown architecture",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}),
            "archMap",
            "both",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}),
            "syscalls[0].args[0].op",
            "unknown operator",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "syscalls[0].args[0].index",
            "0-5",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}),
            "syscalls[0].names",
            "no syscall",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}),
            "syscalls[0].errnoRet",
            "only SCMP_ACT_ERRNO",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW",
                              "includes": {"minKernel": "new"}}]}),
            "syscalls[0].includes.minKernel",
            "not a kernel version",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}),
            "syscalls[0].names",
            "expected a sequence",
        );
        bad(
            serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            "listenerPath",
            "required",
        );
    }

    #[test]
    fn localhost_roundtrips_the_default_profile() {
        let default_caps = caps(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        let p = super::super::builtin::build_default(&default_caps, &AMD64);
        let back = parse(serde_json::to_value(&p).unwrap(), &[]).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&p).unwrap()
        );
    }
}
