//! The CRI ImageService as the kubelet and crictl see it: through berthd's
//! socket, against the test bed's registries (127.0.0.1:5000 plain,
//! 127.0.0.1:5443 TLS + basic auth). Needs `hack/testbed.sh up`.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Berthd;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

struct Bed {
    plain: String,
    tls: String,
    ca: PathBuf,
    user: String,
    pass: String,
}

fn output_dir() -> PathBuf {
    std::env::var_os("BERTH_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../_output"))
}

fn bed() -> Bed {
    let reg = output_dir().join("registry");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let file = |n: &str| {
        std::fs::read_to_string(reg.join(n))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let b = Bed {
        plain: env("BERTH_REGISTRY").unwrap_or_else(|| "127.0.0.1:5000".into()),
        tls: env("BERTH_REGISTRY_TLS").unwrap_or_else(|| "127.0.0.1:5443".into()),
        ca: env("BERTH_REGISTRY_CA")
            .map(PathBuf::from)
            .unwrap_or_else(|| reg.join("ca.crt")),
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
        b.ca.exists() && !b.user.is_empty(),
        "no test CA at {} or no registry credentials: run `hack/testbed.sh up` first",
        b.ca.display()
    );
    b
}

/// A berthd that trusts the test CA for the TLS registry (a hosts.toml
/// under its `registry_config_path`) and has `sandbox_image` = the test
/// bed's pause image.
fn berthd(bed: &Bed, salt: u32) -> Berthd {
    let mut b = Berthd::start(salt);
    let certs = b.dir.path().join("certs.d");
    let host = certs.join(&bed.tls);
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(
        host.join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nca = {:?}\n",
            bed.tls,
            bed.ca.display().to_string()
        ),
    )
    .unwrap();
    b.reconfigure(&format!(
        "registry_config_path = {:?}\nsandbox_image = \"{}/berth/pause:latest\"\n",
        certs.display().to_string(),
        bed.plain
    ));
    b
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

async fn pull(
    c: &mut ImageServiceClient<Channel>,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    c.pull_image(cri::PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

async fn status(
    c: &mut ImageServiceClient<Channel>,
    image: &str,
    verbose: bool,
) -> cri::ImageStatusResponse {
    c.image_status(cri::ImageStatusRequest {
        image: spec(image),
        verbose,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn list(c: &mut ImageServiceClient<Channel>, filter: Option<&str>) -> Vec<cri::Image> {
    c.list_images(cri::ListImagesRequest {
        filter: filter.map(|f| cri::ImageFilter { image: spec(f) }),
    })
    .await
    .unwrap()
    .into_inner()
    .images
}

async fn remove(c: &mut ImageServiceClient<Channel>, image: &str) {
    c.remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap_or_else(|e| panic!("remove {image}: {e}"));
}

async fn fs_used(c: &mut ImageServiceClient<Channel>) -> (String, u64, u64) {
    let r = c
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_filesystems.len(), 1, "{r:?}");
    let fs = &r.image_filesystems[0];
    assert!(fs.timestamp > 0);
    (
        fs.fs_id.as_ref().unwrap().mountpoint.clone(),
        fs.used_bytes.unwrap().value,
        fs.inodes_used.unwrap().value,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_list_status_remove_through_berthd() {
    let bed = bed();
    let b = berthd(&bed, 41);
    let mut c = b.images().await;
    let busybox = format!("{}/library/busybox:latest", bed.plain);

    // Before anything: not found is an empty answer, not an error.
    let st = status(&mut c, &busybox, true).await;
    assert!(st.image.is_none() && st.info.is_empty(), "{st:?}");

    let id = pull(&mut c, &busybox, None).await.expect("pull busybox");
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "image_ref {id}"
    );

    let all = list(&mut c, None).await;
    let img = all
        .iter()
        .find(|i| i.id == id)
        .expect("pulled image listed");
    assert_eq!(img.repo_tags, vec![busybox.clone()]);
    assert_eq!(img.repo_digests.len(), 1);
    let repo_digest = img.repo_digests[0].clone();
    assert!(
        repo_digest.starts_with(&format!("{}/library/busybox@sha256:", bed.plain)),
        "{repo_digest}"
    );
    assert!(img.size > 0);
    assert!(
        img.uid.is_none() && img.username.is_empty(),
        "busybox has no USER"
    );
    assert!(!img.pinned);
    assert_eq!(list(&mut c, Some(&busybox)).await.len(), 1);
    assert!(
        list(&mut c, Some(&format!("{}/library/nothing:here", bed.plain)))
            .await
            .is_empty()
    );

    // Status by every kind of reference.
    for key in [&busybox, &id, &repo_digest, &id[7..19].to_owned()] {
        let st = status(&mut c, key, false).await;
        assert_eq!(
            st.image.map(|i| i.id).as_deref(),
            Some(id.as_str()),
            "{key}"
        );
    }
    let st = status(&mut c, &busybox, true).await;
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    assert!(
        info["chainID"].as_str().unwrap().starts_with("sha256:"),
        "{info}"
    );
    let spec = &info["imageSpec"];
    assert_eq!(spec["os"], "linux");
    assert_eq!(spec["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    // The sandbox image is pinned; its USER becomes the uid.
    let pause = format!("{}/berth/pause:latest", bed.plain);
    let pause_id = pull(&mut c, &pause, None).await.expect("pull pause");
    let p = status(&mut c, &pause, false).await.image.unwrap();
    assert!(p.pinned);
    assert_eq!(p.uid.map(|u| u.value), Some(65535));
    assert!(p.username.is_empty());

    // The TLS registry with per-request credentials (username/password,
    // then the base64 `auth` field). Same image, so one id with two tags.
    let tls_busybox = format!("{}/library/busybox:latest", bed.tls);
    let basic = cri::AuthConfig {
        username: bed.user.clone(),
        password: bed.pass.clone(),
        server_address: bed.tls.clone(),
        ..Default::default()
    };
    let tls_id = pull(&mut c, &tls_busybox, Some(basic.clone()))
        .await
        .expect("pull from the TLS registry with credentials");
    assert_eq!(tls_id, id);
    let tags = status(&mut c, &id, false).await.image.unwrap().repo_tags;
    assert!(
        tags.contains(&busybox) && tags.contains(&tls_busybox),
        "{tags:?}"
    );
    let encoded = base64_user_pass(&bed.user, &bed.pass);
    let tls_pause = format!("{}/berth/pause:latest", bed.tls);
    let by_auth = cri::AuthConfig {
        auth: encoded,
        ..Default::default()
    };
    assert_eq!(
        pull(&mut c, &tls_pause, Some(by_auth)).await.unwrap(),
        pause_id
    );

    // Wrong password, no credentials: errors naming registry and image.
    let wrong = cri::AuthConfig {
        password: "wrong".into(),
        ..basic
    };
    let e = pull(&mut c, &tls_busybox, Some(wrong)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains(&bed.tls) && e.message().contains("library/busybox"),
        "{}",
        e.message()
    );
    let e = pull(&mut c, &tls_busybox, None).await.unwrap_err();
    assert!(e.message().contains(&bed.tls), "{}", e.message());

    // Bad reference: InvalidArgument naming it. Unreachable registry:
    // an error naming it.
    let e = pull(&mut c, "Not/A Reference", None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("Not/A Reference"), "{}", e.message());
    let e = pull(&mut c, "127.0.0.1:1/library/busybox:latest", None)
        .await
        .unwrap_err();
    assert!(
        e.message().contains("127.0.0.1:1/library/busybox:latest"),
        "{}",
        e.message()
    );

    let (mountpoint, used, inodes) = fs_used(&mut c).await;
    assert_eq!(
        Path::new(&mountpoint),
        b.dir.path().join("root/images"),
        "image fs mountpoint"
    );
    assert!(used > 0 && inodes > 0, "used {used} bytes, {inodes} inodes");

    // Remove by one tag removes the image with all its tags; again is fine.
    remove(&mut c, &busybox).await;
    assert!(status(&mut c, &busybox, false).await.image.is_none());
    assert!(status(&mut c, &tls_busybox, false).await.image.is_none());
    assert!(status(&mut c, &id, false).await.image.is_none());
    remove(&mut c, &busybox).await;
    remove(&mut c, &id).await;
    let (_, used_after, inodes_after) = fs_used(&mut c).await;
    assert!(
        used_after < used && inodes_after < inodes,
        "GC after remove frees space: {used} -> {used_after} bytes, {inodes} -> {inodes_after} inodes"
    );
    // What is left is the pause image; remove it by id.
    assert_eq!(list(&mut c, None).await.len(), 1);
    remove(&mut c, &pause_id).await;
    assert!(list(&mut c, None).await.is_empty());
    assert_eq!(fs_used(&mut c).await.1, 0, "everything collected");
}

fn base64_user_pass(user: &str, pass: &str) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin
                .take()
                .unwrap()
                .write_all(format!("{user}:{pass}").as_bytes())?;
            ch.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// crictl from the test bed (`hack/testbed.sh tools up`) or `$BERTH_CRICTL`.
fn crictl_path() -> PathBuf {
    let p = std::env::var_os("BERTH_CRICTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| output_dir().join("bin/crictl"));
    assert!(
        p.is_file(),
        "no crictl at {}: run `hack/testbed.sh tools up` (or set BERTH_CRICTL)",
        p.display()
    );
    p
}

#[test]
fn crictl_pull_images_rmi_imagefsinfo() {
    let bed = bed();
    let crictl = crictl_path();
    let b = berthd(&bed, 43);
    let endpoint = format!("unix://{}", b.socket.display());
    let run = |args: &[&str]| {
        let out = Command::new(&crictl)
            .args([
                "--runtime-endpoint",
                &endpoint,
                "--image-endpoint",
                &endpoint,
            ])
            .args(["--timeout", "60s"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let busybox = format!("{}/library/busybox:latest", bed.plain);
    let (ok, out, err) = run(&["pull", &busybox]);
    assert!(ok, "crictl pull: {out}{err}");
    assert!(out.contains("sha256:"), "{out}");

    let tls_busybox = format!("{}/library/busybox:latest", bed.tls);
    let creds = format!("{}:{}", bed.user, bed.pass);
    let (ok, out, err) = run(&["pull", "--creds", &creds, &tls_busybox]);
    assert!(ok, "crictl pull --creds: {out}{err}");
    let (ok, _, err) = run(&["pull", "--creds", "berth:wrong", &tls_busybox]);
    assert!(!ok && err.contains(&bed.tls), "{err}");

    let (ok, out, err) = run(&["images", "-o", "json"]);
    assert!(ok, "crictl images: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tags = &v["images"][0]["repoTags"];
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        tags.as_array().unwrap().len() == 2 && out.contains(&busybox),
        "{tags}"
    );

    let (ok, out, err) = run(&["inspecti", &busybox]);
    assert!(ok, "crictl inspecti: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["info"]["imageSpec"]["os"], "linux", "{v}");

    let (ok, out, err) = run(&["imagefsinfo", "-o", "json"]);
    assert!(ok, "crictl imagefsinfo: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // protojson writes a uint64 as a string.
    let value = &v["status"]["imageFilesystems"][0]["usedBytes"]["value"];
    let used = value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0);
    assert!(used > 0, "{v}");

    let (ok, _, err) = run(&["rmi", &busybox]);
    assert!(ok, "crictl rmi: {err}");
    let (ok, out, _) = run(&["images", "-q"]);
    assert!(ok && out.trim().is_empty(), "images after rmi: {out}");
}

/// `berthd images pull` from the TLS + auth registry with the credentials
/// a docker credential helper gives (config.json `credHelpers`), as on a
/// node whose docker config uses a keyring helper.
#[test]
fn cli_pull_runs_the_docker_credential_helper() {
    use std::os::unix::fs::PermissionsExt;
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(&bed.tls)).unwrap();
    std::fs::write(
        certs.join(&bed.tls).join("hosts.toml"),
        format!(
            "server = \"https://{}\"\nca = {:?}\n",
            bed.tls,
            bed.ca.display().to_string()
        ),
    )
    .unwrap();
    // Two helpers speaking docker's protocol: one knows the registry (and
    // records the server it was asked about), one knows nothing.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let asked = dir.path().join("asked");
    let helper = |name: &str, body: String| {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n[ \"$1\" = get ] || exit 2\n{body}")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "berthtest",
        format!(
            "cat > {}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' x {} {}\n",
            asked.display(),
            bed.user,
            bed.pass
        ),
    );
    helper(
        "empty",
        "echo 'credentials not found in native keychain'; exit 1\n".into(),
    );
    let config = |helper: &str| {
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"credHelpers":{{"{}":"{helper}"}}}}"#, bed.tls),
        )
        .unwrap();
    };
    let image = format!("{}/library/busybox:latest", bed.tls);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pull = || {
        let out = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .args(["images", "--root"])
            .arg(dir.path().join("store"))
            .arg("--hosts-dir")
            .arg(&certs)
            .args(["pull", "--quiet", &image])
            .env("PATH", &path)
            .env("DOCKER_CONFIG", dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    config("empty");
    let (ok, err) = pull();
    assert!(!ok, "pulled without credentials");
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    config("missing");
    let (ok, err) = pull();
    assert!(!ok);
    assert!(err.contains("docker-credential-missing"), "{err}");

    config("berthtest");
    let (ok, err) = pull();
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&asked).unwrap(), bed.tls);
}
