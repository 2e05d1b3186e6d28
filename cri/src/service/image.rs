//! CRI ImageService, backed by the node's `berth_images::ImageStore`.
//!
//! Behaviour follows containerd's CRI plugin where the kubelet or critest
//! can tell the difference:
//! - PullImage answers the image id (`sha256:<config digest>`) as
//!   `image_ref`; per-request credentials replace the configured ones.
//! - ImageStatus of an image that is not there is an empty answer
//!   (`image: None`), not an error; `verbose` adds an `info` entry holding
//!   JSON `{"chainID", "imageSpec"}` (the OCI image config).
//! - RemoveImage removes the image with all its tags; removing one that is
//!   not there succeeds. GC runs right after (leases keep what containers
//!   use).
//! - The configured `sandbox_image` is reported `pinned`.
//! - ImageFsInfo reports `<root_dir>/images` with bytes and inodes from
//!   what the store recorded at unpack (no tree walk; see
//!   `ImageStore::inodes`).
//!
//! The wire types are converted to and from plain values by the pure
//! functions at the bottom of this file, once, here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_images::config::ImageConfig;
use berth_images::registry::auth::AuthConfig;
use berth_images::{ImageRecord, ImageRef, ImageStore};
use k8s_cri::v1 as cri;
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::error::{Error, Result};

pub struct ImageService {
    store: Arc<ImageStore>,
    /// Where the image store lives, reported by ImageFsInfo.
    mountpoint: PathBuf,
    /// Pull counters for berthd's `/metrics`, when it is served.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl ImageService {
    pub fn new(config: Arc<Config>, store: Arc<ImageStore>) -> Self {
        ImageService {
            mountpoint: crate::images::root(&config),
            metrics: None,
            store,
        }
    }

    /// Counts pulled bytes into `metrics`.
    pub fn with_metrics(mut self, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs a blocking store call (metadata file reads) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> std::result::Result<T, berth_images::Error> + Send + 'static,
        what: String,
    ) -> Result<T> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Serve(format!("{what}: {e}")))?
            .map_err(|source| Error::Images {
                what,
                source: Box::new(source),
            })
    }

    async fn find(&self, key: String) -> Result<Option<ImageRecord>> {
        let what = format!("image {key:?}: look up");
        self.blocking(move |s| s.get(&key), what).await
    }

    fn to_cri(&self, rec: &ImageRecord) -> cri::Image {
        image_to_cri(rec, self.store.is_pinned(rec))
    }
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for ImageService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> std::result::Result<Response<cri::ListImagesResponse>, Status> {
        let filter = list_filter(request.into_inner());
        let images = match filter {
            Some(key) => self.find(key).await?.into_iter().collect(),
            None => {
                self.blocking(|s| s.list(), "list images".to_owned())
                    .await?
            }
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(|r| self.to_cri(r)).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> std::result::Result<Response<cri::ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let key = image_key(req.image, "image status")?;
        let Some(rec) = self.find(key).await? else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let info = if req.verbose {
            verbose_info(&rec)
        } else {
            HashMap::new()
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(self.to_cri(&rec)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> std::result::Result<Response<cri::PullImageResponse>, Status> {
        let pull = pull_request(request.into_inner())?;
        let rec = self
            .store
            .pull_with_auth(
                &pull.reference,
                pull.auth,
                self.metrics.as_ref().map(|m| {
                    Arc::new(crate::metrics::PullCounter::new(Arc::clone(m)))
                        as Arc<dyn berth_images::Progress>
                }),
            )
            .await
            .map_err(|source| Error::Images {
                what: "pull".to_owned(),
                source: Box::new(source),
            })?;
        tracing::info!(image = %pull.reference, id = %rec.id, "image pulled");
        Ok(Response::new(cri::PullImageResponse {
            image_ref: rec.id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> std::result::Result<Response<cri::RemoveImageResponse>, Status> {
        let key = image_key(request.into_inner().image, "remove image")?;
        let k = key.clone();
        let removed = self
            .blocking(
                move |s| match s.remove(&k) {
                    Ok(rec) => Ok(Some(rec)),
                    Err(berth_images::Error::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                },
                format!("image {key:?}: remove"),
            )
            .await?;
        let Some(rec) = removed else {
            // Already gone: removal is idempotent, as in containerd.
            return Ok(Response::new(cri::RemoveImageResponse {}));
        };
        tracing::info!(image = %key, id = %rec.id, "image removed");
        // The record is gone, which is what was asked; space not freed now
        // is freed by the next GC.
        match self.store.gc().await {
            Ok(freed) => tracing::debug!(freed, "image gc"),
            Err(e) => {
                tracing::warn!(image = %key, error = %berth_images::registry::chain(&e), "image gc after remove")
            }
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> std::result::Result<Response<cri::ImageFsInfoResponse>, Status> {
        let what = "image filesystem usage".to_owned();
        let (bytes, inodes) = self
            .blocking(
                |s| {
                    let (blobs, snaps) = s.usage();
                    Ok((blobs + snaps, s.inodes()))
                },
                what,
            )
            .await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs_usage(&self.mountpoint, bytes, inodes, now)],
            container_filesystems: vec![],
        }))
    }
}

// ---- wire <-> domain, pure ---------------------------------------------------

/// A validated `PullImageRequest`.
#[derive(Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub reference: ImageRef,
    /// Credentials for this pull only; `None` uses the configured ones.
    pub auth: Option<AuthConfig>,
}

/// The image spec's `image`, which must be there.
fn image_key(spec: Option<cri::ImageSpec>, rpc: &str) -> Result<String> {
    let key = spec.map(|s| s.image).unwrap_or_default();
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{rpc}: image spec: empty")));
    }
    Ok(key.to_owned())
}

pub fn pull_request(req: cri::PullImageRequest) -> Result<PullRequest> {
    let key = image_key(req.image, "pull image")?;
    let reference = ImageRef::parse(&key).map_err(Error::Reference)?;
    let auth = match req.auth {
        Some(a) => auth_config(a, &reference)?,
        None => None,
    };
    Ok(PullRequest { reference, auth })
}

/// CRI `AuthConfig` to credentials: username/password, else `auth`
/// (base64 `user:password`); tokens carried as they are. All empty is no
/// credentials. `server_address` only says which registry they are for
/// (the kubelet already picked them for this image), so it is not checked.
pub fn auth_config(a: cri::AuthConfig, r: &ImageRef) -> Result<Option<AuthConfig>> {
    let mut out = if !a.username.is_empty() {
        AuthConfig::basic(&a.username, &a.password)
    } else if !a.auth.is_empty() {
        AuthConfig::from_auth_field(&a.auth).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "pull image {r}: auth config: auth is not base64 of user:password"
            ))
        })?
    } else {
        AuthConfig::default()
    };
    out.identity_token = a.identity_token;
    out.registry_token = a.registry_token;
    Ok((out != AuthConfig::default()).then_some(out))
}

/// The image `ListImages` is filtered to, if any.
pub fn list_filter(req: cri::ListImagesRequest) -> Option<String> {
    req.filter
        .and_then(|f| f.image)
        .map(|s| s.image.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The image's user as CRI wants it: a numeric user (before any `:group`)
/// is a uid, anything else a username (containerd's `getUserFromImage`).
pub fn image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or_default();
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_owned()),
    }
}

pub fn image_to_cri(rec: &ImageRecord, pinned: bool) -> cri::Image {
    let (uid, username) = image_user(&rec.config.run.user);
    cri::Image {
        id: rec.id.to_string(),
        repo_tags: rec.names.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.to_string(),
            ..Default::default()
        }),
        pinned,
    }
}

/// The OCI image config (`imageSpec`) as JSON, rebuilt from the record.
pub fn image_spec_json(c: &ImageConfig) -> serde_json::Value {
    let set = |v: &[String]| {
        v.iter()
            .map(|k| (k.clone(), serde_json::json!({})))
            .collect::<serde_json::Map<_, _>>()
    };
    let run = &c.run;
    let mut config = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value, empty: bool| {
        if !empty {
            config.insert(k.to_owned(), v);
        }
    };
    put("User", run.user.clone().into(), run.user.is_empty());
    put("Env", run.env.clone().into(), run.env.is_empty());
    put(
        "Entrypoint",
        run.entrypoint.clone().into(),
        run.entrypoint.is_empty(),
    );
    put("Cmd", run.cmd.clone().into(), run.cmd.is_empty());
    put(
        "WorkingDir",
        run.working_dir.clone().into(),
        run.working_dir.is_empty(),
    );
    put("Volumes", set(&run.volumes).into(), run.volumes.is_empty());
    put(
        "ExposedPorts",
        set(&run.exposed_ports).into(),
        run.exposed_ports.is_empty(),
    );
    put(
        "Labels",
        serde_json::json!(run.labels),
        run.labels.is_empty(),
    );
    put(
        "StopSignal",
        run.stop_signal.clone().into(),
        run.stop_signal.is_empty(),
    );
    let mut spec = serde_json::json!({
        "architecture": c.platform.architecture,
        "os": c.platform.os,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": c.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    if !c.platform.variant.is_empty() {
        spec["variant"] = c.platform.variant.clone().into();
    }
    if let Some(created) = &c.created {
        spec["created"] = created.clone().into();
    }
    spec
}

/// `ImageStatus` verbose info: `info` = `{"chainID", "imageSpec"}`, as
/// containerd answers.
pub fn verbose_info(rec: &ImageRecord) -> HashMap<String, String> {
    let info = serde_json::json!({
        "chainID": rec.chain_ids.last().map(|d| d.to_string()).unwrap_or_default(),
        "imageSpec": image_spec_json(&rec.config),
    });
    HashMap::from([("info".to_owned(), info.to_string())])
}

pub fn fs_usage(
    mountpoint: &std::path::Path,
    bytes: u64,
    inodes: u64,
    timestamp: i64,
) -> cri::FilesystemUsage {
    cri::FilesystemUsage {
        timestamp,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: mountpoint.display().to_string(),
        }),
        used_bytes: Some(cri::UInt64Value { value: bytes }),
        inodes_used: Some(cri::UInt64Value { value: inodes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_images::Digest;

    fn spec(image: &str) -> Option<cri::ImageSpec> {
        Some(cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        })
    }

    fn record(user: &str) -> ImageRecord {
        let d = |c: char| -> Digest {
            format!("sha256:{}", c.to_string().repeat(64))
                .parse()
                .unwrap()
        };
        let mut config: ImageConfig = ImageConfig::parse(
            br#"{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z",
                 "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"Volumes":{"/data":{}},
                           "Labels":{"a":"b"}},
                 "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        config.run.user = user.to_owned();
        ImageRecord {
            id: d('a'),
            names: vec!["127.0.0.1:5000/library/busybox:latest".into()],
            repo_digests: vec![format!("127.0.0.1:5000/library/busybox@{}", d('b'))],
            manifest: d('c'),
            size: 1234,
            layers: vec![],
            chain_ids: vec![d('1'), d('2')],
            config,
        }
    }

    #[test]
    fn pull_requests_are_validated_and_credentials_read() {
        let req = |image: &str, auth: Option<cri::AuthConfig>| cri::PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        };
        let p = pull_request(req("busybox", None)).unwrap();
        assert_eq!(p.reference.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(p.auth, None);

        let e = pull_request(req("Busy Box", None)).unwrap_err();
        assert!(matches!(e, Error::Reference(_)), "{e:?}");
        assert_eq!(
            Status::from(e).code(),
            tonic::Code::InvalidArgument,
            "invalid reference is InvalidArgument"
        );
        let e = pull_request(req(" ", None)).unwrap_err();
        assert!(e.to_string().contains("image spec: empty"), "{e}");

        let basic = cri::AuthConfig {
            username: "berth".into(),
            password: "pw".into(),
            ..Default::default()
        };
        let p = pull_request(req("127.0.0.1:5443/a:1", Some(basic))).unwrap();
        assert_eq!(p.auth, Some(AuthConfig::basic("berth", "pw")));

        // base64("berth:pw")
        let auth = cri::AuthConfig {
            auth: "YmVydGg6cHc=".into(),
            server_address: "127.0.0.1:5443".into(),
            ..Default::default()
        };
        let p = pull_request(req("127.0.0.1:5443/a:1", Some(auth))).unwrap();
        assert_eq!(p.auth, Some(AuthConfig::basic("berth", "pw")));

        let tokens = cri::AuthConfig {
            identity_token: "refresh".into(),
            registry_token: "bearer".into(),
            ..Default::default()
        };
        let p = pull_request(req("a", Some(tokens))).unwrap();
        let a = p.auth.unwrap();
        assert_eq!(
            (a.identity_token.as_str(), a.registry_token.as_str()),
            ("refresh", "bearer")
        );
        assert!(!a.has_basic());

        let bad = cri::AuthConfig {
            auth: "not base64!".into(),
            ..Default::default()
        };
        let e = pull_request(req("a", Some(bad))).unwrap_err();
        assert_eq!(Status::from(e).code(), tonic::Code::InvalidArgument);
        assert_eq!(
            pull_request(req("a", Some(cri::AuthConfig::default())))
                .unwrap()
                .auth,
            None
        );
    }

    #[test]
    fn image_users_become_uid_or_username() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(image_user("1002"), (Some(1002), String::new()));
        assert_eq!(image_user("1003:1004"), (Some(1003), String::new()));
        assert_eq!(image_user("www-data"), (None, "www-data".into()));
        assert_eq!(image_user("www-data:1004"), (None, "www-data".into()));
    }

    #[test]
    fn records_convert_to_cri_images() {
        let rec = record("65535:65535");
        let img = image_to_cri(&rec, true);
        assert_eq!(img.id, rec.id.to_string());
        assert_eq!(img.repo_tags, rec.names);
        assert_eq!(img.repo_digests, rec.repo_digests);
        assert_eq!(img.size, 1234);
        assert_eq!(img.uid, Some(cri::Int64Value { value: 65535 }));
        assert_eq!(img.username, "");
        assert!(img.pinned);
        assert_eq!(img.spec.unwrap().image, rec.id.to_string());

        let info = verbose_info(&rec);
        let v: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
        assert_eq!(v["chainID"], rec.chain_ids[1].to_string());
        let s = &v["imageSpec"];
        assert_eq!(s["os"], "linux");
        assert_eq!(s["created"], "2026-01-01T00:00:00Z");
        assert_eq!(s["config"]["User"], "65535:65535");
        assert_eq!(s["config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(s["config"]["Volumes"], serde_json::json!({"/data": {}}));
        assert_eq!(s["config"]["Labels"]["a"], "b");
        assert_eq!(s["rootfs"]["type"], "layers");
    }

    #[test]
    fn list_filters_and_fs_usage() {
        assert_eq!(list_filter(cri::ListImagesRequest::default()), None);
        let f = |image: &str| cri::ListImagesRequest {
            filter: Some(cri::ImageFilter { image: spec(image) }),
        };
        assert_eq!(list_filter(f("")), None);
        assert_eq!(list_filter(f("busybox")), Some("busybox".into()));

        let u = fs_usage(std::path::Path::new("/var/lib/berth/images"), 10, 3, 7);
        assert_eq!(u.fs_id.unwrap().mountpoint, "/var/lib/berth/images");
        assert_eq!(u.used_bytes.unwrap().value, 10);
        assert_eq!(u.inodes_used.unwrap().value, 3);
        assert_eq!(u.timestamp, 7);
    }
}
