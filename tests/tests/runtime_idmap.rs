//! Idmapped bind mounts (`uidMappings`/`gidMappings` on a mount, `idmap`
//! and `ridmap` options): what the container sees of the owners, and what
//! lands on the host when it writes. Checked from inside with busybox stat.
//! Needs root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_tests::bundle::{Bundle, require_root};

/// A source folder holding `root-file` (0:0) and `five-file` (5:5).
fn source(b: &Bundle) -> std::path::PathBuf {
    let src = b.dir.join("idmap-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("root-file"), "r").unwrap();
    std::fs::write(src.join("five-file"), "5").unwrap();
    std::os::unix::fs::chown(src.join("five-file"), Some(5), Some(5)).unwrap();
    src
}

fn owners(b: &mut Bundle, script: &str) -> String {
    b.set_args(&["sh", "-c", script]);
    let (code, out, err) = b.run();
    assert_eq!(code, 0, "run failed: {err}");
    out
}

fn host_owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn mount_mappings_shift_owners_without_a_user_namespace() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("idmap-plain");
    let src = source(&b);
    let maps = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 10}]);
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({
        "destination": "/mapped", "type": "bind", "source": src,
        "options": ["bind", "idmap"], "uidMappings": maps, "gidMappings": maps}));
    mounts.push(serde_json::json!({
        "destination": "/plain", "type": "bind", "source": src, "options": ["bind"]}));
    b.write_config();
    let out = owners(
        &mut b,
        "busybox stat -c '%n %u:%g' /mapped/root-file /mapped/five-file /plain/root-file /plain/five-file",
    );
    assert!(out.contains("/mapped/root-file 1000:1000"), "{out}");
    assert!(out.contains("/mapped/five-file 1005:1005"), "{out}");
    assert!(out.contains("/plain/root-file 0:0"), "{out}");
    assert!(out.contains("/plain/five-file 5:5"), "{out}");
    assert_eq!(host_owner(&src.join("root-file")), (0, 0));
    assert_eq!(host_owner(&src.join("five-file")), (5, 5));
}

#[test]
fn idmap_option_maps_through_the_containers_user_namespace() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("idmap-userns");
    let src = source(&b);
    // The container's root cannot create folders in a rootfs host root owns.
    for d in ["mapped", "plain"] {
        std::fs::create_dir(b.rootfs().join(d)).unwrap();
    }
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    let maps = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["uidMappings"] = maps.clone();
    b.config["linux"]["gidMappings"] = maps;
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(serde_json::json!({
        "destination": "/mapped", "type": "bind", "source": src, "options": ["bind", "idmap"]}));
    mounts.push(serde_json::json!({
        "destination": "/plain", "type": "bind", "source": src, "options": ["bind"]}));
    b.write_config();
    let out = owners(
        &mut b,
        "busybox stat -c '%n %u:%g' /mapped/root-file /mapped/five-file /plain/root-file; \
         echo new > /mapped/made-inside && echo wrote",
    );
    // Host root is the container's root through the idmapped mount, and
    // nobody (unmapped) through the plain one.
    assert!(out.contains("/mapped/root-file 0:0"), "{out}");
    assert!(out.contains("/mapped/five-file 5:5"), "{out}");
    assert!(out.contains("/plain/root-file 65534:65534"), "{out}");
    assert!(out.contains("wrote"), "{out}");
    assert_eq!(host_owner(&src.join("made-inside")), (0, 0));
}

#[test]
fn ridmap_maps_submounts_and_idmap_does_not() {
    if !require_root() {
        return;
    }
    let mut b = Bundle::new("idmap-rec");
    let src = source(&b);
    // A submount inside the source, made in a private mount namespace of
    // our own so nothing is left on the host whatever happens.
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let maps = serde_json::json!([{"containerID": 0, "hostID": 2000, "size": 10}]);
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    for (dest, opt) in [("/r", "ridmap"), ("/n", "idmap")] {
        mounts.push(serde_json::json!({
            "destination": dest, "type": "bind", "source": src,
            "options": ["rbind", opt], "uidMappings": maps, "gidMappings": maps}));
    }
    b.write_config();
    b.set_args(&[
        "sh",
        "-c",
        "busybox stat -c '%n %u:%g' /r/root-file /n/root-file /r/sub/inner /n/sub/inner",
    ]);
    // berth-runc runs in a mount namespace where `sub` is a bind mount (of
    // another folder of the same file system, which supports idmapped
    // mounts; tmpfs only does from Linux 6.3) holding `inner` (0:0): the
    // rbind copies it, ridmap maps it.
    let inner = b.dir.join("inner-src");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("inner"), "i").unwrap();
    let script = format!(
        "mount --make-rprivate / && mount --bind {inner} {sub} && exec {runc} --root {root} run --bundle {dir} {id}",
        inner = inner.display(),
        sub = sub.display(),
        runc = b.runtime.display(),
        root = b.state_root.display(),
        dir = b.dir.display(),
        id = b.id,
    );
    let o = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("/r/root-file 2000:2000"), "{out}");
    assert!(out.contains("/n/root-file 2000:2000"), "{out}");
    assert!(out.contains("/r/sub/inner 2000:2000"), "{out}");
    assert!(out.contains("/n/sub/inner 0:0"), "{out}");
}

#[test]
fn bad_idmap_configs_are_named() {
    if !require_root() {
        return;
    }
    let one = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    for (mount, field) in [
        (
            serde_json::json!({"destination": "/m", "type": "bind", "source": "/tmp",
                "options": ["bind", "idmap"]}),
            "mounts[7].options[1]",
        ),
        (
            serde_json::json!({"destination": "/m", "type": "bind", "source": "/tmp",
                "options": ["bind"], "uidMappings": one}),
            "mounts[7].gidMappings",
        ),
        (
            serde_json::json!({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                "options": ["idmap"], "uidMappings": one, "gidMappings": one}),
            "mounts[7].type",
        ),
    ] {
        let mut b = Bundle::new("idmap-bad");
        b.config["mounts"].as_array_mut().unwrap().push(mount);
        b.write_config();
        let (ok, err) = b.runc_bg(&["create", "--bundle", b.dir.to_str().unwrap(), &b.id]);
        assert!(!ok);
        assert!(
            err.contains(&format!("config.json: {field}")),
            "{field}: {err}"
        );
        assert!(!b.state_root.join(&b.id).exists(), "state dir left behind");
    }
}
