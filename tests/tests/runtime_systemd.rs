//! The systemd cgroup driver (`berth-runc --systemd-cgroup`): the container
//! is a transient scope unit systemd owns, checked from systemd's side
//! (`systemctl show`) and from the cgroup files. Needs systemd as PID 1,
//! which the project's host does not have: the tests that need it are
//! ignored here and run by the vm-systemd tiers (hack/vm.sh --init systemd,
//! cgroup v2 and hybrid). The refusals run everywhere.

use std::path::Path;
use std::process::Command;

use berth_tests::bundle::{Bundle, cgroup_v2, require_root};

fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// `systemctl show -p P1,P2 unit` as (property, value) lines.
fn show(unit: &str, props: &str) -> String {
    let o = Command::new("systemctl")
        .args(["show", "-p", props, unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn systemd_bundle(prefix: &str, slice: &str) -> (Bundle, String) {
    let mut b = Bundle::new(prefix);
    b.systemd_cgroup = true;
    b.config["linux"]["cgroupsPath"] = format!("{slice}:berth:{}", b.id).into();
    b.write_config();
    let unit = format!("berth-{}.scope", b.id);
    (b, unit)
}

/// The scope's cgroup folder for a v1 controller (or the one v2 folder).
fn scope_dir(slice_path: &str, unit: &str, controller: &str) -> std::path::PathBuf {
    let base = if cgroup_v2() {
        Path::new("/sys/fs/cgroup").to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    base.join(slice_path.trim_start_matches('/')).join(unit)
}

#[test]
fn a_cgroups_path_systemd_cannot_name_is_refused_naming_the_field() {
    require_root();
    let mut b = Bundle::new("sd-bad");
    b.systemd_cgroup = true;
    b.config["linux"]["cgroupsPath"] = "/plain/cgroupfs/path".into();
    b.set_args(&["true"]);
    let (code, _, err) = b.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("linux.cgroupsPath") && err.contains("slice:prefix:name"),
        "{err}"
    );
    assert!(
        !b.state_root.join(&b.id).exists(),
        "a refused create left its state folder"
    );
}

#[test]
fn without_systemd_as_init_the_driver_says_so_and_leaves_nothing() {
    require_root();
    let (mut b, unit) = systemd_bundle("sd-none", "system.slice");
    b.set_args(&["true"]);
    let (code, _, err) = b.run();
    if systemd_booted() {
        // Under systemd the same container runs (the other tests look closer).
        assert_eq!(code, 0, "{err}");
        return;
    }
    assert_ne!(code, 0);
    assert!(err.contains("needs systemd as the init"), "{err}");
    assert!(!b.state_root.join(&b.id).exists());
    assert!(!scope_dir("/system.slice", &unit, "memory").exists());
}

#[test]
#[ignore = "needs systemd as PID 1: the vm-systemd tiers run it (hack/vm.sh --init systemd)"]
fn the_container_is_a_scope_systemd_owns_with_the_specs_limits() {
    require_root();
    assert!(systemd_booted(), "systemd is not the init here");
    let (mut b, unit) = systemd_bundle("sd-scope", "berthtest-a.slice");
    b.config["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 67108864},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        "pids": {"limit": 42}
    });
    b.set_args(&["sleep", "300"]);
    let bundle = b.dir.to_str().unwrap().to_owned();
    let (ok, err) = b.runc_bg(&["create", "--bundle", &bundle, &b.id]);
    assert!(ok, "create: {err}");

    // systemd's view: the unit, its slice (made on demand, nested by its
    // dashes) and the limits as properties.
    let slice_path = "/berthtest.slice/berthtest-a.slice";
    let s = show(
        &unit,
        "ActiveState,Slice,ControlGroup,MemoryMax,MemoryLimit,TasksMax",
    );
    assert!(s.contains("ActiveState=active"), "{s}");
    assert!(s.contains("Slice=berthtest-a.slice"), "{s}");
    assert!(
        s.contains(&format!("ControlGroup={slice_path}/{unit}")),
        "{s}"
    );
    assert!(s.contains("TasksMax=42"), "{s}");
    if cgroup_v2() {
        assert!(s.contains("MemoryMax=67108864"), "{s}");
    } else {
        assert!(s.contains("MemoryLimit=67108864"), "{s}");
    }

    // The init is in that cgroup, and the files hold the spec's values.
    let pid = b.state().unwrap()["pid"].as_i64().unwrap();
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(&format!("{slice_path}/{unit}")), "{own}");
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(scope_dir(slice_path, &unit, ctrl).join(file))
            .unwrap_or_else(|e| panic!("{ctrl}/{file}: {e}"))
            .trim()
            .to_owned()
    };
    if cgroup_v2() {
        assert_eq!(read("", "memory.max"), "67108864");
        assert_eq!(read("", "cpu.max"), "50000 100000");
        assert_eq!(read("", "pids.max"), "42");
    } else {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids", "pids.max"), "42");
        // A hierarchy systemd does not manage gets the folder from the runtime.
        assert!(
            own.contains(&format!(":freezer:{slice_path}/{unit}")),
            "{own}"
        );
    }

    // exec joins the same scope (seen from the host: inside, the cgroup
    // namespace shows it as "/").
    let pid_file = b.dir.join("exec.pid");
    let (ok, err) = b.runc_bg(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
        "sleep",
        "60",
    ]);
    assert!(ok, "exec: {err}");
    let epid = std::fs::read_to_string(&pid_file).unwrap();
    let exec_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", epid.trim())).unwrap();
    assert!(
        exec_cg.contains(&format!("{slice_path}/{unit}")),
        "{exec_cg}"
    );

    // update: systemd's property and the file move together.
    let o = b.runc(&["update", "--memory", "128M", &b.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = show(&unit, "MemoryMax,MemoryLimit");
    let want = if cgroup_v2() {
        "MemoryMax=134217728"
    } else {
        "MemoryLimit=134217728"
    };
    assert!(s.contains(want), "{s}");
    if cgroup_v2() {
        assert_eq!(read("", "memory.max"), "134217728");
    } else {
        assert_eq!(read("memory", "memory.limit_in_bytes"), "134217728");
    }

    // delete: the unit and every folder are gone.
    let o = b.runc(&["delete", "--force", &b.id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = show(&unit, "LoadState");
    assert!(s.contains("LoadState=not-found"), "{s}");
    for ctrl in ["memory", "pids", "freezer"] {
        assert!(
            !scope_dir(slice_path, &unit, ctrl).exists(),
            "{ctrl} folder left"
        );
    }
    assert!(!b.state_root.join(&b.id).exists());
}

#[test]
#[ignore = "needs systemd as PID 1: the vm-systemd tiers run it (hack/vm.sh --init systemd)"]
fn a_create_that_fails_after_the_scope_started_stops_it() {
    require_root();
    assert!(systemd_booted(), "systemd is not the init here");
    let (mut b, unit) = systemd_bundle("sd-fail", "system.slice");
    // The prestart hook runs once the init is in its scope; failing, it
    // fails the create.
    b.config["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/false"}]});
    b.set_args(&["true"]);
    let bundle = b.dir.to_str().unwrap().to_owned();
    let (ok, err) = b.runc_bg(&["create", "--bundle", &bundle, &b.id]);
    assert!(!ok, "create with a failing prestart hook succeeded");
    assert!(err.contains("prestart"), "{err}");
    let s = show(&unit, "LoadState");
    assert!(s.contains("LoadState=not-found"), "the scope stayed: {s}");
    for ctrl in ["memory", "pids", "freezer"] {
        assert!(
            !scope_dir("/system.slice", &unit, ctrl).exists(),
            "{ctrl} folder left"
        );
    }
    assert!(!b.state_root.join(&b.id).exists());
}

#[test]
#[ignore = "needs systemd as PID 1: the vm-systemd tiers run it (hack/vm.sh --init systemd)"]
fn runc_and_berth_runc_make_the_same_scope() {
    require_root();
    assert!(systemd_booted(), "systemd is not the init here");
    let runc = Path::new("/usr/sbin/runc");
    assert!(runc.exists(), "runc is in the VM image");
    let props = "ActiveState,Slice,Delegate,MemoryMax,MemoryLimit,TasksMax";
    let mut seen = Vec::new();
    for rt in [None, Some(runc)] {
        let (mut b, unit) = systemd_bundle("sd-same", "berthtest-b.slice");
        if let Some(r) = rt {
            b.runtime = r.to_path_buf();
        }
        b.config["linux"]["resources"] =
            serde_json::json!({"memory": {"limit": 33554432}, "pids": {"limit": 20}});
        b.set_args(&["sleep", "300"]);
        let bundle = b.dir.to_str().unwrap().to_owned();
        let (ok, err) = b.runc_bg(&["create", "--bundle", &bundle, &b.id]);
        assert!(ok, "{} create: {err}", b.runtime.display());
        let cg = show(&unit, "ControlGroup");
        assert_eq!(
            cg.trim(),
            format!("ControlGroup=/berthtest.slice/berthtest-b.slice/{unit}"),
            "{}",
            b.runtime.display()
        );
        seen.push((b.runtime.display().to_string(), show(&unit, props)));
        let o = b.runc(&["delete", "--force", &b.id]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(show(&unit, "LoadState").contains("LoadState=not-found"));
    }
    assert_eq!(seen[0].1, seen[1].1, "berth-runc vs runc: {seen:#?}");
}
