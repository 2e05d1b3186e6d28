//! Pulls against the test bed's registries (plain, TLS + basic auth,
//! a hosts.toml mirror) and against small servers of our own that tamper
//! with or cut blob downloads. Needs `hack/testbed.sh up`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_images::registry::auth::{AuthConfig, Credentials};
use berth_images::registry::hosts::HostsDir;
use berth_images::{Digest, ImageRef, ImageStore, Platform, StoreOptions};

struct Bed {
    plain: String,
    tls: String,
    certs_d: PathBuf,
    user: String,
    pass: String,
}

fn bed() -> Bed {
    let reg = berth_tests::output_dir().join("registry");
    let file = |n: &str| {
        std::fs::read_to_string(reg.join(n))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let b = Bed {
        plain: env("BERTH_REGISTRY").unwrap_or_else(|| "127.0.0.1:5000".into()),
        tls: env("BERTH_REGISTRY_TLS").unwrap_or_else(|| "127.0.0.1:5443".into()),
        // The folder holding `<tls registry>/ca.crt` (docker-style certs.d).
        certs_d: env("BERTH_REGISTRY_CERT_DIR")
            .and_then(|d| Path::new(&d).parent().map(Path::to_path_buf))
            .unwrap_or_else(|| reg.join("certs.d")),
        user: env("BERTH_REGISTRY_USER").unwrap_or_else(|| file("user")),
        pass: env("BERTH_REGISTRY_PASS").unwrap_or_else(|| file("pass")),
    };
    for addr in [&b.plain, &b.tls] {
        assert!(
            TcpStream::connect(addr.as_str()).is_ok(),
            "test registry {addr} is not reachable: run `hack/testbed.sh up` first"
        );
    }
    assert!(
        !b.user.is_empty(),
        "no registry credentials in env or {}: run `hack/testbed.sh up`",
        reg.display()
    );
    b
}

fn store(root: &Path, f: impl FnOnce(&mut StoreOptions)) -> Arc<ImageStore> {
    let mut o = StoreOptions::new(root);
    o.sync = false;
    o.registry.backoff = std::time::Duration::from_millis(20);
    f(&mut o);
    ImageStore::open(o).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Finds `rel` in the image's layers, top first (what overlay would show).
fn lookup(
    s: &ImageStore,
    rec: &berth_images::store::images::ImageRecord,
    rel: &str,
) -> Option<PathBuf> {
    s.lowerdirs(rec)
        .into_iter()
        .map(|d| d.join(rel))
        .find(|p| p.symlink_metadata().is_ok())
}

#[test]
fn pulls_busybox_index_from_plain_registry() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), |_| {});
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.plain)).unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    assert_eq!(rec.names, vec![r.to_string()]);
    assert_eq!(rec.config.platform.architecture, "amd64");
    assert_eq!(rec.layers.len(), 3);
    assert_eq!(rec.chain_ids.len(), 3);
    let bb = lookup(&s, &rec, "bin/busybox").expect("busybox binary unpacked");
    assert!(bb.metadata().unwrap().len() > 100_000);
    assert!(bb.metadata().unwrap().mode() & 0o111 != 0);
    // Layer 3 deletes /etc/motd: overlay whiteout (char device 0/0).
    let wh = s.snapshots().fs_dir(&rec.chain_ids[2]).join("etc/motd");
    let md = wh.symlink_metadata().unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    // tmp keeps its sticky bit.
    let tmp = lookup(&s, &rec, "tmp").unwrap();
    assert_eq!(tmp.metadata().unwrap().mode() & 0o7777, 0o1777);
    // Records: get by short name, id prefix; pull again is a no-op.
    assert_eq!(s.get(&r.to_string()).unwrap().unwrap().id, rec.id);
    assert!(s.get(&rec.id.hex()[..12]).unwrap().is_some());
    // HEAD resolves the tag to the index digest recorded as repo digest.
    let (d, mt, _) = rt().block_on(s.registry().resolve(&r, None)).unwrap();
    assert_eq!(rec.repo_digests, vec![r.with_digest(&d).to_string()]);
    assert!(mt.contains("index"), "{mt}");
    let again = rt().block_on(s.pull(&r, None)).unwrap();
    assert_eq!(again.id, rec.id);
    assert_eq!(s.list().unwrap().len(), 1);
    // Remove then GC frees everything.
    s.remove(&r.to_string()).unwrap();
    assert!(rt().block_on(s.gc()).unwrap() > 0);
    assert!(s.snapshots().list().is_empty());
    assert!(s.content().list().unwrap().is_empty());
}

#[test]
fn mounts_overlay_rootfs_with_whiteouts_applied() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("root"), |_| {});
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.plain)).unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    let cdir = dir.path().join("ctr");
    let fs = berth_images::rootfs::mount_overlay(&cdir, &s.lowerdirs(&rec)).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = berth_images::rootfs::remove(&self.0);
        }
    }
    let _c = Cleanup(cdir.clone());
    assert!(fs.rootfs.join("bin/busybox").exists());
    assert!(fs.rootfs.join("etc/berth-release").exists());
    assert!(
        !fs.rootfs.join("etc/motd").exists(),
        "whiteout not honoured"
    );
    assert!(fs.rootfs.join("etc/passwd").exists());
    std::fs::write(fs.rootfs.join("tmp/written"), "x").unwrap();
    assert!(cdir.join("upper/tmp/written").exists());
    berth_images::rootfs::remove(&cdir).unwrap();
    assert!(!cdir.exists());
    // The snapshots are untouched by the container's writes.
    assert!(lookup(&s, &rec, "tmp/written").is_none());
}

#[test]
fn copied_rootfs_matches_overlay_view() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("root"), |_| {});
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.plain)).unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    let copy =
        berth_images::rootfs_copy::copy_rootfs(&dir.path().join("c"), &s.lowerdirs(&rec)).unwrap();
    let ovl_dir = dir.path().join("o");
    let ovl = berth_images::rootfs::mount_overlay(&ovl_dir, &s.lowerdirs(&rec)).unwrap();
    let listing = |root: &Path| {
        let out = std::process::Command::new("find")
            .arg(".")
            .args(["-printf", "%p %y %m %U %G %s %l\n"])
            .current_dir(root)
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(". "))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let (a, o) = (listing(&copy.rootfs), listing(&ovl.rootfs));
    berth_images::rootfs::remove(&ovl_dir).unwrap();
    assert_eq!(a, o);
    assert!(!copy.rootfs.join("etc/motd").exists());
    assert!(copy.rootfs.join("bin/busybox").exists());
    berth_images::rootfs::remove(&dir.path().join("c")).unwrap();
}

#[test]
fn exports_and_imports_oci_archive_offline() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir.path().join("a"), |_| {});
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.plain)).unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    let ar = dir.path().join("bb.tar");
    rt().block_on(s.export_oci_archive(&rec, &r, &ar)).unwrap();
    // A second store with no registry reachable at all.
    let s2 = store(&dir.path().join("b"), |o| {
        o.registry.hosts = HostsDir {
            dir: None,
            plain_http: vec![],
        };
        o.registry.attempts = 1;
    });
    let got = rt().block_on(s2.import_oci_archive(&ar, None)).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, rec.id);
    assert_eq!(got[0].names, vec![r.to_string()]);
    assert!(lookup(&s2, &got[0], "bin/busybox").is_some());
    // A corrupted archive (a blob byte flipped) is refused.
    let mut bytes = std::fs::read(&ar).unwrap();
    let at = bytes.len() - 4096;
    bytes[at] ^= 0xff;
    std::fs::write(&ar, bytes).unwrap();
    let s3 = store(&dir.path().join("c"), |_| {});
    assert!(rt().block_on(s3.import_oci_archive(&ar, None)).is_err());
}

/// Copies the tar at `from` to `to`, passing each regular file's path and
/// bytes through `f` (None drops the entry).
fn rewrite_tar(from: &Path, to: &Path, mut f: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
    let mut ar = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut out = tar::Builder::new(std::fs::File::create(to).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut h = e.header().clone();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if !h.entry_type().is_file() {
            out.append(&h, std::io::empty()).unwrap();
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if let Some(data) = f(&name, data) {
            h.set_size(data.len() as u64);
            h.set_cksum();
            out.append(&h, data.as_slice()).unwrap();
        }
    }
    out.finish().unwrap();
}

#[test]
fn imports_legacy_docker_save_archive_offline() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let src = format!("{}/library/busybox:latest", b.plain);
    let s = store(&dir.path().join("a"), |_| {});
    let pulled = rt()
        .block_on(s.pull(&ImageRef::parse(&src).unwrap(), None))
        .unwrap();
    // skopeo writes the pre-OCI `docker save` format: manifest.json,
    // <config>.json, plain layer tars, <id>/layer.tar symlinks.
    let ar = dir.path().join("bb.tar");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{src}"))
        .arg(format!("docker-archive:{}:busybox:legacy", ar.display()))
        .output()
        .expect("skopeo (installed by hack/testbed.sh)");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = |sub: &str| {
        store(&dir.path().join(sub), |o| {
            o.registry.hosts = HostsDir {
                dir: None,
                plain_http: vec![],
            };
            o.registry.attempts = 1;
        })
    };
    let s2 = offline("b");
    let got = rt().block_on(s2.import_oci_archive(&ar, None)).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].names,
        vec!["docker.io/library/busybox:legacy".to_owned()]
    );
    assert_eq!(got[0].id, pulled.id, "same config, same image id");
    assert_eq!(got[0].chain_ids, pulled.chain_ids);
    assert!(lookup(&s2, &got[0], "bin/busybox").is_some());
    let wh = s2.snapshots().fs_dir(&got[0].chain_ids[2]).join("etc/motd");
    assert!(wh.symlink_metadata().unwrap().file_type().is_char_device());

    // A layer whose bytes no longer match the config's diff_id: refused,
    // no image recorded, no snapshot left.
    let bad = dir.path().join("bad.tar");
    let mut flipped = false;
    rewrite_tar(&ar, &bad, |name, mut data| {
        if name.ends_with(".tar") && data.len() > 1 << 20 && !flipped {
            let at = data.len() / 2;
            data[at] ^= 0xff;
            flipped = true;
        }
        Some(data)
    });
    assert!(flipped);
    let s3 = offline("c");
    let err = rt()
        .block_on(s3.import_oci_archive(&bad, None))
        .unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(msg.contains("diff") || msg.contains("digest"), "{msg}");
    assert!(s3.list().unwrap().is_empty());
    // Layers below the bad one are sound and may stay until GC; the bad
    // one and everything above it never become snapshots.
    let snaps: Vec<Digest> = s3
        .snapshots()
        .list()
        .into_iter()
        .map(|i| i.chain_id)
        .collect();
    assert!(!snaps.contains(&pulled.chain_ids[1]), "{snaps:?}");
    assert!(!snaps.contains(&pulled.chain_ids[2]), "{snaps:?}");
    rt().block_on(s3.gc()).unwrap();
    assert!(s3.snapshots().list().is_empty());
    assert!(s3.content().list().unwrap().is_empty());

    // manifest.json naming a layer the archive lacks: an error naming it.
    let missing = dir.path().join("missing.tar");
    rewrite_tar(&ar, &missing, |name, data| {
        if name == "manifest.json" {
            let s = String::from_utf8(data).unwrap();
            return Some(s.replacen(".tar\"", "-gone.tar\"", 1).into_bytes());
        }
        Some(data)
    });
    let err = rt()
        .block_on(offline("d").import_oci_archive(&missing, None))
        .unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(
        msg.contains("-gone.tar") && msg.contains("does not hold"),
        "{msg}"
    );
}

/// An OCI layout archive of one image named `name` with plain-tar
/// `layers` (for this host's platform).
fn oci_archive_of(name: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Digest::sha256_of(l).to_string())
        .collect();
    let p = Platform::host();
    let config = serde_json::json!({
        "architecture": p.architecture, "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/tool"]},
    })
    .to_string();
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    })
    .to_string();
    let mut m = desc(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    );
    m["annotations"] = serde_json::json!({"io.containerd.image.name": name});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m]}).to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json".into(), index.as_bytes());
    for blob in [config.as_bytes(), manifest.as_bytes()]
        .into_iter()
        .chain(layers.iter().map(|l| l.as_slice()))
    {
        add(
            format!("blobs/sha256/{}", Digest::sha256_of(blob).hex()),
            blob,
        );
    }
    b.into_inner().unwrap()
}

/// A plain layer tar from (path, kind, data-or-link-target, mode).
fn layer_tar(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, body, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_mtime(1_700_000_000);
        if *kind == tar::EntryType::Link {
            h.set_size(0);
            b.append_link(&mut h, path, body).unwrap();
        } else {
            let data = if *kind == tar::EntryType::Regular {
                body.as_bytes()
            } else {
                &[]
            };
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, path, data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn hardlink_to_a_lower_layers_file_is_copied_up_on_import() {
    use tar::EntryType::{Directory, Link, Regular};
    let dir = tempfile::tempdir().unwrap();
    // Layer 0 holds /etc/tool; layer 1 only links /bin/tool to it, as a
    // layer built on an overlay mount does.
    let l0 = layer_tar(&[
        ("etc/", Directory, "", 0o750),
        ("etc/tool", Regular, "lower bytes", 0o4755),
    ]);
    let l1 = layer_tar(&[
        ("bin/", Directory, "", 0o755),
        ("bin/tool", Link, "etc/tool", 0),
    ]);
    let ar = dir.path().join("hl.tar");
    std::fs::write(
        &ar,
        oci_archive_of("127.0.0.1:5000/berth/hardlinks:1", &[l0, l1]),
    )
    .unwrap();
    let s = store(&dir.path().join("s"), |_| {});
    let got = rt().block_on(s.import_oci_archive(&ar, None)).unwrap();
    let rec = &got[0];
    let top = s.snapshots().fs_dir(&rec.chain_ids[1]);
    let link = top.join("bin/tool");
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "lower bytes");
    let md = link.metadata().unwrap();
    assert_eq!(md.ino(), top.join("etc/tool").metadata().unwrap().ino());
    assert_eq!(md.mode() & 0o7777, 0o4755);
    assert_eq!(top.join("etc").metadata().unwrap().mode() & 0o7777, 0o750);
    let lower = s.snapshots().fs_dir(&rec.chain_ids[0]).join("etc/tool");
    assert_eq!(
        lower.metadata().unwrap().nlink(),
        1,
        "lower snapshot untouched"
    );
    // A layer linking a file no layer has: refused, naming the link.
    let bad = layer_tar(&[
        ("bin/", Directory, "", 0o755),
        ("bin/x", Link, "etc/none", 0),
    ]);
    let ar2 = dir.path().join("bad.tar");
    let l0 = layer_tar(&[
        ("etc/", Directory, "", 0o750),
        ("etc/tool", Regular, "lower bytes", 0o4755),
    ]);
    std::fs::write(
        &ar2,
        oci_archive_of("127.0.0.1:5000/berth/hardlinks:bad", &[l0, bad]),
    )
    .unwrap();
    let err = rt().block_on(s.import_oci_archive(&ar2, None)).unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(msg.contains("bin/x") && msg.contains("etc/none"), "{msg}");
}

#[test]
fn selects_other_platforms_and_explains_missing_ones() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), |o| {
        o.platform = Platform::parse("linux/arm64").unwrap()
    });
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.plain)).unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    assert_eq!(rec.config.platform.architecture, "arm64");
    assert!(lookup(&s, &rec, "ARM64-STUB").is_some());
    let s = store(dir.path(), |o| {
        o.platform = Platform::parse("linux/s390x").unwrap()
    });
    let err = rt().block_on(s.pull(&r, None)).unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(
        msg.contains("linux/s390x") && msg.contains("linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
}

#[test]
fn pulls_over_tls_with_basic_auth_and_fails_with_wrong_password() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let r = ImageRef::parse(&format!("{}/library/busybox:latest", b.tls)).unwrap();
    let mk = |pass: &str| {
        let mut creds = Credentials::default();
        creds.insert(&b.tls, AuthConfig::basic(&b.user, pass));
        let certs = b.certs_d.clone();
        store(dir.path(), move |o| {
            o.registry.credentials = creds;
            o.registry.hosts = HostsDir {
                dir: Some(certs),
                plain_http: vec![],
            };
        })
    };
    let err = rt()
        .block_on(mk("wrong-password").pull(&r, None))
        .unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(msg.contains("authentication failed"), "{msg}");
    // No credentials at all: a different hint.
    let s = store(dir.path(), |o| {
        o.registry.hosts = HostsDir {
            dir: Some(b.certs_d.clone()),
            plain_http: vec![],
        }
    });
    let msg = berth_images::registry::chain(&rt().block_on(s.pull(&r, None)).unwrap_err());
    assert!(msg.contains("no credentials"), "{msg}");
    let rec = rt().block_on(mk(&b.pass).pull(&r, None)).unwrap();
    assert_eq!(rec.layers.len(), 3);
    // Per-request credentials (CRI AuthConfig), and no leak of the cached
    // authorization to a later request without them.
    let s = store(&dir.path().join("per-request"), |o| {
        o.registry.hosts = HostsDir {
            dir: Some(b.certs_d.clone()),
            plain_http: vec![],
        }
    });
    let auth = AuthConfig::basic(&b.user, &b.pass);
    rt().block_on(async {
        s.pull_with_auth(&r, Some(auth), None).await.unwrap();
        let web = ImageRef::parse(&format!("{}/berth/web:latest", b.tls)).unwrap();
        let msg = berth_images::registry::chain(&s.pull(&web, None).await.unwrap_err());
        assert!(msg.contains("no credentials"), "{msg}");
    });
    // Without the CA the TLS registry is refused.
    let s = store(dir.path(), |o| {
        let mut c = Credentials::default();
        c.insert(&b.tls, AuthConfig::basic(&b.user, &b.pass));
        o.registry.credentials = c;
    });
    let r2 = ImageRef::parse(&format!("{}/berth/web:latest", b.tls)).unwrap();
    assert!(rt().block_on(s.pull(&r2, None)).is_err());
}

#[test]
fn pulls_docker_io_name_through_hosts_toml_mirror() {
    let b = bed();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join("docker.io")).unwrap();
    std::fs::write(
        certs.join("docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            b.plain
        ),
    )
    .unwrap();
    let s = store(&dir.path().join("root"), |o| {
        o.registry.hosts = HostsDir {
            dir: Some(certs.clone()),
            plain_http: vec![],
        };
        o.registry.attempts = 1;
    });
    let r = ImageRef::parse("busybox").unwrap();
    let rec = rt().block_on(s.pull(&r, None)).unwrap();
    assert_eq!(rec.names, vec!["docker.io/library/busybox:latest"]);
    assert!(rec.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
}

// ---- our own small registry, for tampering and cut downloads ----

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    /// Layer bytes with one byte flipped (same length).
    Tamper,
    /// The first layer request stops half-way (connection closed).
    CutOnce,
    /// Every layer request stops half-way and then hangs.
    CutHang,
    /// Honest, behind a bearer token service at /token (basic u:p).
    Bearer,
    /// The layer is answered with a 307 to /storage/<digest> (blob storage).
    Redirect,
}

struct Fake {
    addr: String,
    ranges: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Blobs {
    manifest: Vec<u8>,
    config: (Digest, Vec<u8>),
    layer: (Digest, Vec<u8>),
}

fn synthetic_image() -> Blobs {
    let mut tar = tar::Builder::new(Vec::new());
    let data: Vec<u8> = (0..400_000u32)
        .flat_map(|i| (i * 7919).to_le_bytes())
        .collect();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "data.bin", &data[..]).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff = Digest::sha256_of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    let layer = gz.finish().unwrap();
    let ld = Digest::sha256_of(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/x"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
    )
    .into_bytes();
    let cd = Digest::sha256_of(&config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{ld}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    )
    .into_bytes();
    Blobs {
        manifest,
        config: (cd, config),
        layer: (ld, layer),
    }
}

fn fake_registry(rt: &tokio::runtime::Runtime, blobs: Arc<Blobs>, mode: Mode) -> Fake {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = ranges.clone();
    let cut_done = Arc::new(Mutex::new(false));
    rt.spawn(async move {
        loop {
            let (mut sock, _) = tokio::select! {
                a = listener.accept() => a.unwrap(),
                _ = &mut stopped => return,
            };
            let blobs = blobs.clone();
            let seen = seen.clone();
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                let range = text
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned))
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
                let send = |status: &str, ctype: &str, body: &[u8], extra: String| {
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                        body.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(body);
                    out
                };
                let layer_path = format!("/v2/t/img/blobs/{}", blobs.layer.0);
                let lower = text.to_ascii_lowercase();
                if mode == Mode::Bearer && path.starts_with("/token") {
                    let resp = if lower.contains("authorization: basic dtpw")
                        && path.contains("scope=repository%3At%2Fimg%3Apull")
                    {
                        seen.lock().unwrap().push("token".into());
                        send("200 OK", "application/json", br#"{"token":"tok-1","expires_in":300}"#, String::new())
                    } else {
                        send("401 Unauthorized", "application/json", b"{}", String::new())
                    };
                    let _ = sock.write_all(&resp).await;
                    return;
                }
                if mode == Mode::Bearer && !lower.contains("authorization: bearer tok-1") {
                    let host = text
                        .lines()
                        .find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: ")))
                        .unwrap_or("")
                        .trim()
                        .to_owned();
                    let challenge = format!(
                        "WWW-Authenticate: Bearer realm=\"http://{host}/token\",service=\"fake\",scope=\"repository:t/img:pull\"\r\n"
                    );
                    let _ = sock
                        .write_all(&send("401 Unauthorized", "application/json", b"{}", challenge))
                        .await;
                    return;
                }
                if mode == Mode::Redirect && path == layer_path {
                    seen.lock().unwrap().push("redirect".into());
                    let loc = format!("Location: /storage/{}\r\n", blobs.layer.0);
                    let _ = sock.write_all(&send("307 Temporary Redirect", "text/plain", b"", loc)).await;
                    return;
                }
                let path = if mode == Mode::Redirect && path == format!("/storage/{}", blobs.layer.0) {
                    layer_path.clone()
                } else {
                    path
                };
                let resp = if path == "/v2/t/img/manifests/latest" {
                    send("200 OK", "application/vnd.oci.image.manifest.v1+json", &blobs.manifest, String::new())
                } else if path == format!("/v2/t/img/blobs/{}", blobs.config.0) {
                    send("200 OK", "application/octet-stream", &blobs.config.1, String::new())
                } else if path == layer_path {
                    seen.lock().unwrap().push(format!("{}", range.unwrap_or(0)));
                    let mut body = blobs.layer.1.clone();
                    if mode == Mode::Tamper {
                        let mid = body.len() / 2;
                        body[mid] ^= 0xff;
                    }
                    let total = body.len();
                    let half = total / 2;
                    let cut = match mode {
                        Mode::CutOnce => {
                            let mut c = cut_done.lock().unwrap();
                            let first = !*c;
                            *c = true;
                            first
                        }
                        Mode::CutHang => true,
                        _ => false,
                    };
                    let start = range.unwrap_or(0).min(total);
                    let mut out = if start > 0 {
                        send(
                            "206 Partial Content",
                            "application/octet-stream",
                            &body[start..],
                            format!("Content-Range: bytes {start}-{}/{total}\r\n", total - 1),
                        )
                    } else {
                        send("200 OK", "application/octet-stream", &body, String::new())
                    };
                    if cut {
                        let head_len = out.len() - (total - start);
                        out.truncate(head_len + half.saturating_sub(start));
                        let _ = sock.write_all(&out).await;
                        let _ = sock.flush().await;
                        if mode == Mode::CutHang {
                            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        }
                        return;
                    }
                    out
                } else if path == "/v2/" {
                    send("200 OK", "application/json", b"{}", String::new())
                } else {
                    send("404 Not Found", "application/json", b"{}", String::new())
                };
                let _ = sock.write_all(&resp).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Fake {
        addr,
        ranges,
        _stop: stop,
    }
}

fn plain_store(root: &Path, addr: &str) -> Arc<ImageStore> {
    let addr = addr.to_owned();
    store(root, move |o| {
        o.registry.hosts = HostsDir {
            dir: None,
            plain_http: vec![addr],
        };
    })
}

#[test]
fn refuses_tampered_layer_and_keeps_nothing() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let fake = fake_registry(&rt, blobs.clone(), Mode::Tamper);
    let dir = tempfile::tempdir().unwrap();
    let s = plain_store(dir.path(), &fake.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", fake.addr)).unwrap();
    let err = rt.block_on(s.pull(&r, None)).unwrap_err();
    let msg = berth_images::registry::chain(&err);
    assert!(
        msg.contains(&blobs.layer.0.to_string()) && msg.contains("digest"),
        "{msg}"
    );
    assert!(
        s.content().size(&blobs.layer.0).is_none(),
        "tampered blob committed"
    );
    assert!(
        s.snapshots().list().is_empty(),
        "snapshot from tampered layer"
    );
    assert!(s.list().unwrap().is_empty());
    // The honest server afterwards: the pull succeeds from scratch.
    let honest = fake_registry(&rt, blobs.clone(), Mode::Honest);
    let s = plain_store(dir.path(), &honest.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", honest.addr)).unwrap();
    rt.block_on(s.pull(&r, None)).unwrap();
    assert_eq!(
        honest.ranges.lock().unwrap().as_slice(),
        ["0"],
        "bad partial must not be resumed"
    );
}

#[test]
fn resumes_a_cut_download_with_range() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let fake = fake_registry(&rt, blobs.clone(), Mode::CutOnce);
    let dir = tempfile::tempdir().unwrap();
    let s = plain_store(dir.path(), &fake.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", fake.addr)).unwrap();
    let rec = rt.block_on(s.pull(&r, None)).unwrap();
    let ranges = fake.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], "0");
    assert!(ranges[1].parse::<usize>().unwrap() > 0, "{ranges:?}");
    assert_eq!(
        s.content().size(&blobs.layer.0),
        Some(blobs.layer.1.len() as u64)
    );
    assert!(lookup(&s, &rec, "data.bin").is_some());
}

#[test]
fn resumes_after_a_cancelled_pull() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let hang = fake_registry(&rt, blobs.clone(), Mode::CutHang);
    let dir = tempfile::tempdir().unwrap();
    {
        let s = plain_store(dir.path(), &hang.addr);
        let r = ImageRef::parse(&format!("{}/t/img:latest", hang.addr)).unwrap();
        // Cancel mid-download (as a kill would), with half the blob on disk.
        let res = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(3), s.pull(&r, None)).await
        });
        assert!(res.is_err(), "pull should hang on the cut server");
        assert!(
            s.content().size(&blobs.layer.0).is_none(),
            "partial blob visible"
        );
    }
    let honest = fake_registry(&rt, blobs.clone(), Mode::Honest);
    let s = plain_store(dir.path(), &honest.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", honest.addr)).unwrap();
    let rec = rt.block_on(s.pull(&r, None)).unwrap();
    let ranges = honest.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 1);
    let from: usize = ranges[0].parse().unwrap();
    assert!(
        from > 0 && from <= blobs.layer.1.len() / 2 + 1,
        "resumed from {from}"
    );
    let f = lookup(&s, &rec, "data.bin").unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1_600_000);
}

#[test]
fn bearer_token_flow_fetches_one_token_per_scope() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let fake = fake_registry(&rt, blobs.clone(), Mode::Bearer);
    let dir = tempfile::tempdir().unwrap();
    let r = ImageRef::parse(&format!("{}/t/img:latest", fake.addr)).unwrap();
    // Without credentials the token service refuses.
    let s = plain_store(&dir.path().join("a"), &fake.addr);
    let msg = berth_images::registry::chain(&rt.block_on(s.pull(&r, None)).unwrap_err());
    assert!(
        msg.contains("token endpoint") || msg.contains("authentication failed"),
        "{msg}"
    );
    let s = plain_store(&dir.path().join("b"), &fake.addr);
    let auth = AuthConfig::basic("u", "p");
    let rec = rt.block_on(s.pull_with_auth(&r, Some(auth), None)).unwrap();
    assert!(lookup(&s, &rec, "data.bin").is_some());
    let seen = fake.ranges.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|x| *x == "token").count(), 1, "{seen:?}");
}

#[test]
fn follows_redirects_to_blob_storage() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let fake = fake_registry(&rt, blobs.clone(), Mode::Redirect);
    let dir = tempfile::tempdir().unwrap();
    let s = plain_store(dir.path(), &fake.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", fake.addr)).unwrap();
    let rec = rt.block_on(s.pull(&r, None)).unwrap();
    assert!(lookup(&s, &rec, "data.bin").is_some());
    assert_eq!(fake.ranges.lock().unwrap().as_slice(), ["redirect", "0"]);
}

#[test]
fn concurrent_pulls_of_one_image_download_once() {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let fake = fake_registry(&rt, blobs.clone(), Mode::Honest);
    let dir = tempfile::tempdir().unwrap();
    let s = plain_store(dir.path(), &fake.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", fake.addr)).unwrap();
    rt.block_on(async {
        let a = s.pull(&r, None);
        let b = s.pull(&r, None);
        let c = s.pull(&r, None);
        let (a, b, c) = tokio::join!(a, b, c);
        assert_eq!(a.unwrap().id, b.unwrap().id);
        c.unwrap();
    });
    assert_eq!(
        fake.ranges.lock().unwrap().len(),
        1,
        "layer fetched more than once"
    );
}

#[allow(dead_code)]
fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// Child half of `resumes_after_kill_9`: pulls from the hanging server
/// until the parent kills it. Does nothing in a normal test run.
#[test]
fn kill_9_child_pull() {
    let Ok(spec) = std::env::var("BERTH_IMAGES_KILL_CHILD") else {
        return;
    };
    let (root, addr) = spec.split_once('|').unwrap();
    let s = plain_store(Path::new(root), addr);
    let r = ImageRef::parse(&format!("{addr}/t/img:latest")).unwrap();
    let _ = rt().block_on(s.pull(&r, None));
}

/// Starts `kill_9_child_pull` in a child process on the store at `root`
/// and returns once it has written half the layer to `ingest`.
fn child_pull_half(root: &Path, addr: &str, ingest: &Path, blobs: &Blobs) -> std::process::Child {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_child_pull", "--nocapture"])
        .env(
            "BERTH_IMAGES_KILL_CHILD",
            format!("{}|{addr}", root.display()),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let half = blobs.layer.1.len() as u64 / 2;
    let t = std::time::Instant::now();
    while ingest.metadata().map(|m| m.len()).unwrap_or(0) < half {
        if t.elapsed().as_secs() >= 30 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child never wrote half the layer");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// A registry that hangs half-way through the layer, and a child process
/// pulling from it that has written half the layer.
fn hanging_pull_in_a_child() -> (
    tokio::runtime::Runtime,
    Arc<Blobs>,
    Fake,
    tempfile::TempDir,
    std::process::Child,
) {
    let rt = rt();
    let blobs = Arc::new(synthetic_image());
    let hang = fake_registry(&rt, blobs.clone(), Mode::CutHang);
    let dir = tempfile::tempdir().unwrap();
    let ingest = dir
        .path()
        .join(format!("ingest/sha256-{}", blobs.layer.0.hex()));
    let child = child_pull_half(dir.path(), &hang.addr, &ingest, &blobs);
    (rt, blobs, hang, dir, child)
}

#[test]
fn gc_in_another_process_waits_for_a_pull_in_progress() {
    let (rt, blobs, hang, dir, mut child) = hanging_pull_in_a_child();
    // The pull has committed the config; no record names it yet.
    let s = plain_store(dir.path(), &hang.addr);
    assert!(s.content().size(&blobs.config.0).is_some());
    let gc = rt
        .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(2), s.gc()).await });
    let config_kept = s.content().size(&blobs.config.0).is_some();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(gc.is_err(), "GC ran while another process was pulling");
    assert!(config_kept, "GC deleted the config of a pull in progress");
    // The puller is gone, its lock with it: GC runs and collects the
    // config no record names.
    assert!(rt.block_on(s.gc()).unwrap() > 0);
    assert!(s.content().size(&blobs.config.0).is_none());
}

#[test]
fn resumes_after_kill_9() {
    let (rt, blobs, hang, dir, mut child) = hanging_pull_in_a_child();
    let half = blobs.layer.1.len() as u64 / 2;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let s = plain_store(dir.path(), &hang.addr);
    assert!(
        s.content().size(&blobs.layer.0).is_none(),
        "partial blob visible"
    );
    assert!(s.snapshots().list().is_empty(), "half snapshot visible");
    let honest = fake_registry(&rt, blobs.clone(), Mode::Honest);
    let s = plain_store(dir.path(), &honest.addr);
    let r = ImageRef::parse(&format!("{}/t/img:latest", honest.addr)).unwrap();
    let rec = rt.block_on(s.pull(&r, None)).unwrap();
    let ranges = honest.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 1);
    assert_eq!(
        ranges[0].parse::<u64>().unwrap(),
        half,
        "not resumed where the kill left it"
    );
    assert_eq!(
        lookup(&s, &rec, "data.bin")
            .unwrap()
            .metadata()
            .unwrap()
            .len(),
        1_600_000
    );
    // No temp snapshot of the killed process is left behind.
    assert_eq!(
        std::fs::read_dir(dir.path().join("snapshots/tmp"))
            .unwrap()
            .count(),
        0
    );
}
