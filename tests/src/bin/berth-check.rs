//! berth-check: runs inside a container and reports what the container sees
//! (identity, capabilities, namespaces, cgroups, mounts, limits) as JSON on
//! stdout, so tests assert from the inside. Built statically.

use std::fs;

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

fn main() {
    let status = read("/proc/self/status");
    let mut ns = serde_json::Map::new();
    for n in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        let target = fs::read_link(format!("/proc/self/ns/{n}")).map(|p| p.display().to_string());
        ns.insert(n.into(), target.unwrap_or_default().into());
    }
    let report = serde_json::json!({
        "pid": std::process::id(),
        "uid": status_field(&status, "Uid:"),
        "gid": status_field(&status, "Gid:"),
        "groups": status_field(&status, "Groups:"),
        "cap_inh": status_field(&status, "CapInh:"),
        "cap_prm": status_field(&status, "CapPrm:"),
        "cap_eff": status_field(&status, "CapEff:"),
        "cap_bnd": status_field(&status, "CapBnd:"),
        "cap_amb": status_field(&status, "CapAmb:"),
        "no_new_privs": status_field(&status, "NoNewPrivs:"),
        "seccomp": status_field(&status, "Seccomp:"),
        "hostname": read("/proc/sys/kernel/hostname").trim(),
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "namespaces": ns,
        "cgroup": read("/proc/self/cgroup"),
        "mountinfo": read("/proc/self/mountinfo"),
        "limits": read("/proc/self/limits"),
        "oom_score_adj": read("/proc/self/oom_score_adj").trim(),
        "env": std::env::vars().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
    });
    println!("{report}");
}
