//! The built-in `RuntimeDefault` seccomp profile, loaded by berth-runc and
//! by runc: ordinary work goes on, and what the profile keeps out fails
//! with EPERM, seen from inside the container by `berth-check syscalls`.
//! Needs root.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_cri::container::seccomp::runtime_default;
use berth_tests::bundle::{Bundle, require_root};

const EPERM: i64 = libc::EPERM as i64;
const ENOSYS: i64 = libc::ENOSYS as i64;

/// runc from the host, to show it takes our profile the same way.
fn runc() -> PathBuf {
    let found = [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    found.expect("runc is not installed: the parity half of this test needs it")
}

enum Runtime {
    BerthRunc,
    Runc,
}

/// The probes' results (0 or errno) from a container whose process has
/// `extra_caps` on top of the spec's defaults, under `profile` (None: no
/// seccomp), run by `runtime`. The shell runs file I/O and a fork first.
fn probe(
    prefix: &str,
    runtime: Runtime,
    extra_caps: &[&str],
    profile: impl FnOnce(&[String]) -> Option<serde_json::Value>,
) -> BTreeMap<String, i64> {
    let mut b = Bundle::new(prefix);
    if let Runtime::Runc = runtime {
        b.runtime = runc();
    }
    let caps = &mut b.config["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        let list = caps[set].as_array_mut().expect("spec lists capabilities");
        for c in extra_caps {
            list.push((*c).into());
        }
    }
    let bounding: Vec<String> = caps["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    // The probes write files and mount over /tmp.
    b.config["root"]["readonly"] = false.into();
    if let Some(p) = profile(&bounding) {
        b.config["linux"]["seccomp"] = p;
    }
    b.set_args(&[
        "/bin/sh",
        "-c",
        "echo berth > /tmp/f && cat /tmp/f && /berth-check syscalls",
    ]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "container failed: {out} {err}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("berth"), "shell output {out:?}");
    let report = lines.next().unwrap_or_default();
    let r =
        serde_json::from_str(report).unwrap_or_else(|e| panic!("report {report:?}: {e}; {err}"));
    eprintln!("{prefix}: {r:?}");
    r
}

fn default_profile(caps: &[String]) -> Option<serde_json::Value> {
    Some(serde_json::to_value(runtime_default(caps)).unwrap())
}

fn assert_default_profile_holds(r: &BTreeMap<String, i64>) {
    for ok in [
        "file_io",
        "fork",
        "clone",
        "personality_query",
        "socket_unix",
        "ptrace_traceme",
    ] {
        assert_eq!(r[ok], 0, "{ok} failed under the default profile: {r:?}");
    }
    for denied in [
        "clone_newuser",
        "clone_newns",
        "unshare_user",
        "unshare_mount",
        "mount_tmpfs",
        "keyctl",
        "add_key",
        "bpf",
        "personality_no_aslr",
        "socket_vsock",
        "chroot",
    ] {
        assert_eq!(r[denied], EPERM, "{denied} not EPERM: {r:?}");
    }
    assert_eq!(r["clone3"], ENOSYS, "clone3 must say ENOSYS: {r:?}");
}

#[test]
fn berth_runc_runs_the_default_profile() {
    if !require_root() {
        return;
    }
    let r = probe("sc-berth", Runtime::BerthRunc, &[], default_profile);
    assert_default_profile_holds(&r);
}

#[test]
fn runc_accepts_the_default_profile_and_agrees() {
    if !require_root() {
        return;
    }
    let ours = probe("sc-cmp-berth", Runtime::BerthRunc, &[], default_profile);
    let theirs = probe("sc-cmp-runc", Runtime::Runc, &[], default_profile);
    assert_default_profile_holds(&theirs);
    assert_eq!(ours, theirs, "berth-runc and runc differ");
}

/// Without a profile the same probes succeed: the EPERMs above are the
/// profile's, not the kernel's capability checks.
#[test]
fn the_denials_come_from_the_profile() {
    if !require_root() {
        return;
    }
    let r = probe("sc-none", Runtime::BerthRunc, &[], |_| None);
    for n in [
        "clone_newuser",
        "unshare_user",
        "keyctl",
        "add_key",
        "personality_no_aslr",
        "clone3",
    ] {
        assert_eq!(r[n], 0, "{n} fails even without seccomp: {r:?}");
    }
}

/// CAP_SYS_ADMIN widens the profile to mounts and namespaces; a profile
/// built for a container without it keeps them out even when the process
/// holds the capability.
#[test]
fn cap_sys_admin_widens_the_profile() {
    if !require_root() {
        return;
    }
    for (runtime, prefix) in [
        (Runtime::BerthRunc, "sc-adm-berth"),
        (Runtime::Runc, "sc-adm-runc"),
    ] {
        let r = probe(prefix, runtime, &["CAP_SYS_ADMIN"], default_profile);
        for n in [
            "unshare_mount",
            "mount_tmpfs",
            "clone_newns",
            "clone3",
            "unshare_user",
        ] {
            assert_eq!(r[n], 0, "{prefix}: {n} fails with CAP_SYS_ADMIN: {r:?}");
        }
        assert_eq!(r["keyctl"], EPERM, "{prefix}: {r:?}");
    }
    let narrow = |caps: &[String]| {
        let without: Vec<String> = caps
            .iter()
            .filter(|c| *c != "CAP_SYS_ADMIN")
            .cloned()
            .collect();
        default_profile(&without)
    };
    let r = probe(
        "sc-adm-narrow",
        Runtime::BerthRunc,
        &["CAP_SYS_ADMIN"],
        narrow,
    );
    for n in ["unshare_mount", "mount_tmpfs", "clone_newns"] {
        assert_eq!(r[n], EPERM, "{n} not EPERM: {r:?}");
    }
}
