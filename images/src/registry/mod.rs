//! Distribution API v2 client: manifests and blobs from mirrors and the
//! upstream registry, with auth, TLS, retries and resumable blob reads.
//!
//! Why not `oci-client`: its `pull()` buffers whole layers in memory, it has
//! no containerd `hosts.toml` mirrors, no per-host TLS from `certs.d`, no
//! platform variants, and its blob stream API does not let us resume at an
//! offset we choose after a crash. The protocol is small, so it lives here,
//! on reqwest (rustls, custom CAs, client identities, redirects to blob
//! storage with the Authorization header dropped across hosts).
//!
//! This module never writes to disk; the content store owns that.

pub mod auth;
pub mod hosts;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode, header};
use tracing::{debug, warn};

use crate::digest::Digest;
use crate::manifest::{self, MAX_MANIFEST_BYTES, media};
use crate::reference::ImageRef;
use auth::{AuthConfig, Authorization, Challenge, Credentials, TokenCache, TokenResponse};
use hosts::{Endpoint, HostsDir, Scheme, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url}")]
    Http {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url}: registry answered {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{url}: authentication failed ({status}){}", if *.has_credentials { "; check the credentials for this registry" } else { "; no credentials configured for this registry" })]
    Unauthorized {
        url: String,
        status: StatusCode,
        has_credentials: bool,
    },
    #[error("token endpoint {realm}")]
    Token {
        realm: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("token endpoint {realm} returned no token")]
    NoToken { realm: String },
    #[error("{what} not found: {reference}")]
    NotFound {
        what: &'static str,
        reference: String,
    },
    #[error("{url}: {what} is larger than the {limit}-byte limit")]
    TooLarge {
        url: String,
        what: &'static str,
        limit: u64,
    },
    #[error("{what} {expected}: registry served content with digest {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("tls config: {path}")]
    TlsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls config: {path}: not a usable PEM certificate or key")]
    TlsPem {
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("build http client")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Hosts(#[from] hosts::HostsError),
    #[error("{reference}: no endpoint could serve it: {}", errors.join("; "))]
    AllEndpoints {
        reference: String,
        errors: Vec<String>,
    },
    #[error("{url}: server answered {status} to a Range request from {offset}")]
    Range {
        url: String,
        status: StatusCode,
        offset: u64,
    },
}

impl RegistryError {
    /// True when the registry said the object does not exist (as opposed to
    /// a transport or auth problem): the next endpoint may still have it.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}

/// How the client finds and talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub hosts: HostsDir,
    pub credentials: Credentials,
    /// Attempts per request on 429, 5xx and connection errors.
    pub attempts: u32,
    pub backoff: Duration,
    pub user_agent: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            hosts: HostsDir::default(),
            credentials: Credentials::default(),
            attempts: 4,
            backoff: Duration::from_millis(200),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A manifest or index as served: raw bytes (verified), media type, digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Bytes,
}

/// A blob body, positioned at `offset`.
pub struct BlobResponse {
    pub offset: u64,
    /// Total size when the server said.
    pub total: Option<u64>,
    pub url: String,
    pub response: reqwest::Response,
}

pub struct Registry {
    opts: RegistryOptions,
    clients: Mutex<HashMap<TlsConfig, reqwest::Client>>,
    tokens: TokenCache,
    /// Loopback hosts found not to speak TLS.
    plain: Mutex<HashSet<String>>,
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Registry {
        Registry {
            opts,
            clients: Mutex::default(),
            tokens: TokenCache::default(),
            plain: Mutex::default(),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// Mirrors first, upstream last.
    pub fn endpoints(&self, r: &ImageRef) -> Result<Vec<Endpoint>, RegistryError> {
        Ok(self.opts.hosts.endpoints(r.domain())?)
    }

    /// Fetches the manifest or index that `r` names (its digest when
    /// pinned, else its tag), verified against the digest it was asked by
    /// or the one the registry announced.
    pub async fn fetch_manifest(
        &self,
        r: &ImageRef,
        object: &str,
        auth: Option<&AuthConfig>,
    ) -> Result<FetchedManifest, RegistryError> {
        let by_digest = object.parse::<Digest>().ok();
        let mut errors = Vec::new();
        for ep in self.endpoints(r)? {
            let usable = if by_digest.is_some() {
                ep.capabilities.pull || ep.capabilities.resolve
            } else {
                ep.capabilities.resolve
            };
            if !usable {
                continue;
            }
            match self
                .get_manifest(&ep, r, object, by_digest.as_ref(), auth)
                .await
            {
                Ok(m) => return Ok(m),
                Err(e @ RegistryError::DigestMismatch { .. }) => return Err(e),
                Err(e) => {
                    debug!(endpoint = %ep.host, error = %e, "manifest endpoint failed");
                    errors.push(format!("{}: {}", ep.host, chain(&e)));
                    if ep.upstream {
                        return Err(if errors.len() == 1 {
                            e
                        } else {
                            RegistryError::AllEndpoints {
                                reference: r.to_string(),
                                errors,
                            }
                        });
                    }
                }
            }
        }
        Err(RegistryError::AllEndpoints {
            reference: r.to_string(),
            errors,
        })
    }

    /// Resolves `r` to the digest, media type and size of what it names,
    /// with a HEAD request (no body transferred). Registries that omit
    /// `Docker-Content-Digest` on HEAD get a GET instead.
    pub async fn resolve(
        &self,
        r: &ImageRef,
        auth: Option<&AuthConfig>,
    ) -> Result<(Digest, String, u64), RegistryError> {
        let object = r.object();
        let mut errors = Vec::new();
        for ep in self.endpoints(r)? {
            if !ep.capabilities.resolve {
                continue;
            }
            let suffix = format!("/manifests/{object}");
            let res = self
                .send(
                    &ep,
                    r.path(),
                    Method::HEAD,
                    &suffix,
                    &[(header::ACCEPT, media::ACCEPT.to_owned())],
                    auth,
                )
                .await;
            match res {
                Ok(resp) if resp.status().is_success() => {
                    let h = resp.headers();
                    let media_type = h
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let digest = h
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<Digest>().ok());
                    match digest {
                        Some(d) => return Ok((d, media_type, resp.content_length().unwrap_or(0))),
                        None => {
                            let m = self.get_manifest(&ep, r, &object, r.digest(), auth).await?;
                            let len = m.bytes.len() as u64;
                            return Ok((m.digest, m.media_type, len));
                        }
                    }
                }
                Ok(resp) => errors.push(format!("{}: HEAD answered {}", ep.host, resp.status())),
                Err(e) => errors.push(format!("{}: {}", ep.host, chain(&e))),
            }
        }
        Err(RegistryError::AllEndpoints {
            reference: r.to_string(),
            errors,
        })
    }

    async fn get_manifest(
        &self,
        ep: &Endpoint,
        r: &ImageRef,
        object: &str,
        want: Option<&Digest>,
        auth: Option<&AuthConfig>,
    ) -> Result<FetchedManifest, RegistryError> {
        let suffix = format!("/manifests/{object}");
        let resp = self
            .send(
                ep,
                r.path(),
                Method::GET,
                &suffix,
                &[(header::ACCEPT, media::ACCEPT.to_owned())],
                auth,
            )
            .await?;
        let url = resp.url().to_string();
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: "manifest",
                reference: format!("{}/{}:{object}", ep.host, r.path()),
            });
        }
        let resp = check_status(Method::GET, resp).await?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES, "manifest", &url).await?;
        let actual = Digest::sha256_of(&bytes);
        let expected = want.or(announced.as_ref());
        if let Some(exp) = expected
            && exp.algorithm() == actual.algorithm()
            && *exp != actual
        {
            {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest",
                    expected: exp.clone(),
                    actual,
                });
            }
        }
        Ok(FetchedManifest {
            media_type,
            digest: actual,
            bytes,
        })
    }

    /// Opens a blob at `offset` on the first endpoint that has it.
    pub async fn open_blob(
        &self,
        r: &ImageRef,
        digest: &Digest,
        offset: u64,
        auth: Option<&AuthConfig>,
    ) -> Result<BlobResponse, RegistryError> {
        let mut errors = Vec::new();
        for ep in self.endpoints(r)? {
            if !ep.capabilities.pull {
                continue;
            }
            match self.open_blob_at(&ep, r, digest, offset, auth).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    debug!(endpoint = %ep.host, error = %e, "blob endpoint failed");
                    errors.push(format!("{}: {}", ep.host, chain(&e)));
                }
            }
        }
        Err(RegistryError::AllEndpoints {
            reference: format!("{}@{digest}", r.name()),
            errors,
        })
    }

    async fn open_blob_at(
        &self,
        ep: &Endpoint,
        r: &ImageRef,
        digest: &Digest,
        offset: u64,
        auth: Option<&AuthConfig>,
    ) -> Result<BlobResponse, RegistryError> {
        let suffix = format!("/blobs/{digest}");
        let mut hdrs = vec![];
        if offset > 0 {
            hdrs.push((header::RANGE, format!("bytes={offset}-")));
        }
        let resp = self
            .send(ep, r.path(), Method::GET, &suffix, &hdrs, auth)
            .await?;
        let url = resp.url().to_string();
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: "blob",
                reference: format!("{}/{}@{digest}", ep.host, r.path()),
            });
        }
        let status = resp.status();
        if offset > 0 && status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(RegistryError::Range {
                url,
                status,
                offset,
            });
        }
        let resp = check_status(Method::GET, resp).await?;
        let len = resp.content_length();
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                // Content-Range: bytes start-end/total
                let cr = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let start = cr
                    .strip_prefix("bytes ")
                    .and_then(|s| s.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                let total = cr.rsplit('/').next().and_then(|s| s.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(RegistryError::Range {
                        url,
                        status,
                        offset,
                    });
                }
                Ok(BlobResponse {
                    offset,
                    total,
                    url,
                    response: resp,
                })
            }
            _ => Ok(BlobResponse {
                // A 200 to a Range request: the server starts from 0.
                offset: 0,
                total: len,
                url,
                response: resp,
            }),
        }
    }

    /// Sends one request with auth, TLS fallback for loopback and retries.
    async fn send(
        &self,
        ep: &Endpoint,
        repo: &str,
        method: Method,
        suffix: &str,
        extra: &[(header::HeaderName, String)],
        request_auth: Option<&AuthConfig>,
    ) -> Result<reqwest::Response, RegistryError> {
        let client = self.client(&ep.tls)?;
        // Per-request credentials (CRI PullImage) win over configured ones.
        // Tokens are cached per credential too, so a token fetched with one
        // pod's pull secret never serves a request made without it.
        let creds = request_auth
            .cloned()
            .or_else(|| self.opts.credentials.get(&hosts_key(ep)).cloned());
        let scope = auth::pull_scope(repo);
        let cache_key = format!("{scope}#{}", auth::fingerprint(creds.as_ref()));
        let mut scheme = match ep.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::HttpsThenHttp => {
                if self
                    .plain
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&ep.host)
                {
                    "http"
                } else {
                    "https"
                }
            }
        };
        let mut attempt = 0;
        let mut authed = false;
        loop {
            let url = format!("{}/{repo}{suffix}", ep.base_url(scheme));
            let mut req = client.request(method.clone(), &url);
            for (k, v) in extra {
                req = req.header(k, v);
            }
            for (k, v) in &ep.headers {
                req = req.header(k.as_str(), v);
            }
            if let Some(a) = self.tokens.get(&ep.host, &cache_key) {
                req = req.header(header::AUTHORIZATION, a.header_value());
            } else if let Some(c) = creds.as_ref().filter(|c| !c.registry_token.is_empty()) {
                req = req.header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", c.registry_token),
                );
            }
            let res = req.send().await;
            attempt += 1;
            let resp = match res {
                Ok(r) => r,
                Err(e) => {
                    if ep.scheme == Scheme::HttpsThenHttp && scheme == "https" && e.is_connect() {
                        debug!(host = %ep.host, "no TLS on loopback registry; using http");
                        self.plain
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(ep.host.clone());
                        scheme = "http";
                        continue;
                    }
                    if attempt < self.opts.attempts && (e.is_connect() || e.is_timeout()) {
                        self.backoff(attempt, None).await;
                        continue;
                    }
                    return Err(RegistryError::Http {
                        method,
                        url,
                        source: e,
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authed {
                authed = true;
                let challenges = resp
                    .headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(auth::parse_challenges)
                    .collect::<Vec<_>>();
                self.tokens.forget(&ep.host, &cache_key);
                if self
                    .authorize(&client, ep, &scope, &cache_key, creds.as_ref(), &challenges)
                    .await?
                {
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Unauthorized {
                    url,
                    status,
                    has_credentials: creds.is_some(),
                });
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || matches!(status.as_u16(), 500 | 502 | 503 | 504);
            if retryable && attempt < self.opts.attempts {
                let after = resp
                    .headers()
                    .get(header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                warn!(%url, %status, attempt, "registry busy; retrying");
                self.backoff(attempt, after).await;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn backoff(&self, attempt: u32, after: Option<Duration>) {
        let exp = self.opts.backoff * 2u32.saturating_pow(attempt.saturating_sub(1));
        let d = after.unwrap_or(exp).min(Duration::from_secs(30));
        tokio::time::sleep(d).await;
    }

    /// Answers a 401: caches what to send next and says whether to retry.
    async fn authorize(
        &self,
        client: &reqwest::Client,
        ep: &Endpoint,
        scope: &str,
        cache_key: &str,
        creds: Option<&AuthConfig>,
        challenges: &[Challenge],
    ) -> Result<bool, RegistryError> {
        // Bearer sorts first; the first challenge we understand decides.
        if let Some(ch) = challenges.first() {
            match ch {
                Challenge::Bearer {
                    realm,
                    service,
                    scope: ch_scope,
                } => {
                    let scope_q = ch_scope.clone().unwrap_or_else(|| scope.to_owned());
                    let token = self
                        .fetch_token(client, realm, service.as_deref(), &scope_q, creds)
                        .await
                        .map_err(|e| RegistryError::Token {
                            realm: realm.clone(),
                            source: Box::new(e),
                        })?;
                    let t = token.token().ok_or_else(|| RegistryError::NoToken {
                        realm: realm.clone(),
                    })?;
                    self.tokens.put(
                        &ep.host,
                        cache_key,
                        Authorization::Bearer(t.to_owned()),
                        token.ttl(),
                    );
                    return Ok(true);
                }
                Challenge::Basic { .. } => {
                    let Some(c) = creds.filter(|c| c.has_basic()) else {
                        return Ok(false);
                    };
                    // Basic credentials do not expire; cache for long.
                    self.tokens.put(
                        &ep.host,
                        cache_key,
                        Authorization::basic(c),
                        Duration::from_secs(24 * 3600),
                    );
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&AuthConfig>,
    ) -> Result<TokenResponse, RegistryError> {
        let mut url = realm.to_owned();
        let mut q = vec![("scope", scope)];
        if let Some(s) = service {
            q.push(("service", s));
        }
        let resp = if let Some(c) = creds.filter(|c| !c.identity_token.is_empty()) {
            // OAuth2 refresh-token grant.
            let mut body = format!(
                "grant_type=refresh_token&client_id=berth&refresh_token={}",
                urlencode(&c.identity_token)
            );
            for (k, v) in &q {
                body.push_str(&format!("&{k}={}", urlencode(v)));
            }
            client
                .post(&url)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        } else {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(
                &q.iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&"),
            );
            let mut req = client.get(&url);
            if let Some(c) = creds.filter(|c| c.has_basic()) {
                req = req.header(
                    header::AUTHORIZATION,
                    Authorization::basic(c).header_value(),
                );
            }
            req.send().await
        }
        .map_err(|source| RegistryError::Http {
            method: Method::GET,
            url: realm.to_owned(),
            source,
        })?;
        if matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(RegistryError::Unauthorized {
                url: realm.to_owned(),
                status: resp.status(),
                has_credentials: creds.is_some(),
            });
        }
        let resp = check_status(Method::GET, resp).await?;
        let bytes = read_capped(resp, 1 << 20, "token response", realm).await?;
        serde_json::from_slice(&bytes).map_err(|_| RegistryError::NoToken {
            realm: realm.to_owned(),
        })
    }

    fn client(&self, tls: &TlsConfig) -> Result<reqwest::Client, RegistryError> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = m.get(tls) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(&self.opts.user_agent)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .danger_accept_invalid_certs(tls.skip_verify);
        for ca in &tls.ca_files {
            let pem = std::fs::read(ca).map_err(|source| RegistryError::TlsFile {
                path: ca.display().to_string(),
                source,
            })?;
            for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                RegistryError::TlsPem {
                    path: ca.display().to_string(),
                    source,
                }
            })? {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = tls.client_certs.first() {
            let mut pem = std::fs::read(cert).map_err(|source| RegistryError::TlsFile {
                path: cert.display().to_string(),
                source,
            })?;
            if let Some(k) = key {
                pem.push(b'\n');
                pem.extend(std::fs::read(k).map_err(|source| RegistryError::TlsFile {
                    path: k.display().to_string(),
                    source,
                })?);
            }
            let id = reqwest::Identity::from_pem(&pem).map_err(|source| RegistryError::TlsPem {
                path: cert.display().to_string(),
                source,
            })?;
            b = b.identity(id);
        }
        let c = b.build().map_err(RegistryError::Client)?;
        m.insert(tls.clone(), c.clone());
        Ok(c)
    }
}

/// Credentials are keyed by the registry the reference names; a mirror
/// may also have its own entry under its host.
fn hosts_key(ep: &Endpoint) -> String {
    auth::normalize_host(&ep.host)
}

async fn check_status(
    method: Method,
    resp: reqwest::Response,
) -> Result<reqwest::Response, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let url = resp.url().to_string();
    let body = read_capped(resp, 4096, "error body", &url)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    Err(RegistryError::Status {
        method,
        url,
        status,
        body,
    })
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_capped(
    resp: reqwest::Response,
    limit: u64,
    what: &'static str,
    url: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        url: url.to_owned(),
        what,
        limit,
    };
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Http {
            method: Method::GET,
            url: url.to_owned(),
            source,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(out))
}

fn urlencode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Parses a manifest the registry served (a thin re-export so callers
/// need only this module).
pub fn parse_manifest(
    m: &FetchedManifest,
) -> Result<manifest::ManifestKind, manifest::ManifestError> {
    manifest::parse(&m.media_type, &m.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencodes_scopes() {
        assert_eq!(
            urlencode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
    }
}
