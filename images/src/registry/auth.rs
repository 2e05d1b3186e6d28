//! Registry authentication: `WWW-Authenticate` challenges, credentials
//! (CRI `AuthConfig`-shaped, or a docker `config.json`), and the bearer
//! token cache, keyed by registry host and scope.
//!
//! Secrets never appear in errors or logs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// One parsed challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic {
        realm: String,
    },
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (RFC 7235: scheme, then
/// comma-separated `key=value` or `key="quoted \" value"` params). Several
/// challenges may share one header; the first Bearer wins, then Basic.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let sep = |c: char| c.is_ascii_whitespace() || c == ',';
    let mut out = Vec::new();
    let mut rest = header.trim_matches(sep);
    while !rest.is_empty() {
        let before = rest.len();
        let (scheme, after) = match rest.find(|c: char| c.is_ascii_whitespace() || c == ',') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut params: HashMap<String, String> = HashMap::new();
        let mut s = after.trim_start_matches(sep);
        // Read params until the next token that is not followed by '='.
        loop {
            let key_end = s.find(|c: char| c == '=' || c == ',' || c.is_ascii_whitespace());
            let Some(ke) = key_end else { break };
            if !s[ke..].trim_start().starts_with('=') {
                break;
            }
            let key = s[..ke].to_ascii_lowercase();
            let mut v = s[ke..].trim_start()[1..].trim_start();
            let value;
            if let Some(q) = v.strip_prefix('"') {
                let mut val = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                value = val;
                v = &q[end.min(q.len())..];
            } else {
                let e = v.find(',').unwrap_or(v.len());
                value = v[..e].trim().to_owned();
                v = &v[e..];
            }
            params.insert(key, value);
            s = v.trim_start_matches(sep);
        }
        let realm = params.remove("realm").unwrap_or_default();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => out.push(Challenge::Bearer {
                realm,
                service: params.remove("service"),
                scope: params.remove("scope"),
            }),
            "basic" => out.push(Challenge::Basic { realm }),
            _ => {}
        }
        rest = s.trim_start_matches(sep);
        if rest.len() >= before {
            // No progress: junk we cannot read; stop rather than spin.
            break;
        }
    }
    out.sort_by_key(|c| matches!(c, Challenge::Basic { .. }));
    out
}

/// Credentials for one registry, as the CRI `AuthConfig` carries them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    /// OAuth2 refresh token, exchanged at the token endpoint.
    pub identity_token: String,
    /// A ready bearer token, sent as is.
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    pub fn basic(user: &str, pass: &str) -> AuthConfig {
        AuthConfig {
            username: user.to_owned(),
            password: pass.to_owned(),
            ..Default::default()
        }
    }
    /// From a base64 `user:pass` (the `auth` field of CRI and config.json).
    pub fn from_auth_field(auth: &str) -> Option<AuthConfig> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let s = String::from_utf8(raw).ok()?;
        let (u, p) = s.split_once(':')?;
        Some(AuthConfig::basic(u, p))
    }
    pub fn has_basic(&self) -> bool {
        !self.username.is_empty()
    }
}

/// Credentials per registry host (`docker.io`, `127.0.0.1:5443`), and the
/// docker credential helpers a `config.json` names for them.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, AuthConfig>,
    /// `credHelpers`: host -> helper name (`docker-credential-<name>`).
    helpers: HashMap<String, String>,
    /// `credsStore`: the helper for every other host.
    store: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("credential helper {program} for {host}: {problem}")]
    Helper {
        program: String,
        host: String,
        problem: String,
    },
}

/// How long a credential helper may take (it may prompt or hang on a
/// locked keyring; a pull must not wait for ever).
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Credentials {
    pub fn insert(&mut self, host: &str, auth: AuthConfig) {
        self.by_host.insert(normalize_host(host), auth);
    }
    pub fn get(&self, host: &str) -> Option<&AuthConfig> {
        self.by_host.get(&normalize_host(host))
    }

    /// The helper program `config.json` names for `host`, if any:
    /// `credHelpers` first, then `credsStore` (docker's order).
    pub fn helper_for(&self, host: &str) -> Option<String> {
        let h = normalize_host(host);
        self.helpers
            .get(&h)
            .or(self.store.as_ref())
            .map(|n| format!("docker-credential-{n}"))
    }

    /// Runs `host`'s credential helper, if it has one (`<helper> get`,
    /// the server URL on stdin, `{"Username","Secret"}` on stdout), and
    /// keeps what it answers for `host`. A helper that has nothing for the
    /// host ("credentials not found") leaves the `auths` entry, if any.
    /// Blocking; returns whether the helper gave credentials.
    pub fn fill_from_helper(&mut self, host: &str) -> Result<bool, CredentialsError> {
        let Some(program) = self.helper_for(host) else {
            return Ok(false);
        };
        let h = normalize_host(host);
        let server = if h == "docker.io" {
            "https://index.docker.io/v1/".to_owned()
        } else {
            h.clone()
        };
        match run_helper(&program, &server).map_err(|problem| CredentialsError::Helper {
            program: program.clone(),
            host: h.clone(),
            problem,
        })? {
            Some(a) => {
                self.by_host.insert(h, a);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads a docker `config.json` (`auths.<host>.auth` or
    /// `username`/`password`, `identitytoken`, `registrytoken`), and the
    /// credential helpers it names (`credHelpers`, `credsStore`), which
    /// [`Self::fill_from_helper`] runs.
    pub fn from_docker_config(path: &Path) -> Result<Credentials, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|source| CredentialsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        #[derive(serde::Deserialize, Default)]
        struct Entry {
            #[serde(default)]
            auth: String,
            #[serde(default)]
            username: String,
            #[serde(default)]
            password: String,
            #[serde(default)]
            identitytoken: String,
            #[serde(default)]
            registrytoken: String,
        }
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: HashMap<String, Entry>,
            #[serde(default, rename = "credHelpers")]
            cred_helpers: HashMap<String, String>,
            #[serde(default, rename = "credsStore")]
            creds_store: String,
        }
        let f: File = serde_json::from_slice(&bytes).map_err(|source| CredentialsError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        let mut c = Credentials::default();
        for (host, e) in f.auths {
            let mut a = if !e.auth.is_empty() {
                AuthConfig::from_auth_field(&e.auth).unwrap_or_default()
            } else {
                AuthConfig::basic(&e.username, &e.password)
            };
            a.identity_token = e.identitytoken;
            a.registry_token = e.registrytoken;
            c.insert(&host, a);
        }
        for (host, helper) in f.cred_helpers {
            c.helpers.insert(normalize_host(&host), helper);
        }
        c.store = Some(f.creds_store).filter(|s| !s.is_empty());
        Ok(c)
    }
}

/// One `<program> get` exchange. `Ok(None)`: the helper knows no
/// credentials for `server`.
fn run_helper(program: &str, server: &str) -> Result<Option<AuthConfig>, String> {
    use std::io::{Read as _, Write as _};
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        // A helper that exits without reading is judged by its answer.
        let _ = i.write_all(server.as_bytes());
    }
    // Read both pipes on threads so a chatty helper cannot block on a
    // full pipe while we wait for it.
    let pipe = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut r) = r {
                let _ = r.by_ref().take(1 << 20).read_to_end(&mut out);
            }
            out
        })
    };
    let out = pipe(child.stdout.take().map(|o| Box::new(o) as _));
    let err = pipe(child.stderr.take().map(|o| Box::new(o) as _));
    let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) => break st,
            None if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", HELPER_TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if !status.success() {
        let said = String::from_utf8_lossy(if out.is_empty() { &err } else { &out });
        let said = said.trim();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("{status}: {said}"));
    }
    parse_helper_answer(&out).map(Some)
}

/// The helper's JSON answer. Username `<token>` means Secret is an
/// identity (refresh) token, as docker defines it.
fn parse_helper_answer(out: &[u8]) -> Result<AuthConfig, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer =
        serde_json::from_slice(out).map_err(|e| format!("answer is not credentials JSON: {e}"))?;
    if a.username == "<token>" {
        return Ok(AuthConfig {
            identity_token: a.secret,
            ..Default::default()
        });
    }
    Ok(AuthConfig::basic(&a.username, &a.secret))
}

/// `https://index.docker.io/v1/` and friends all mean `docker.io`.
pub fn normalize_host(h: &str) -> String {
    let h = h
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let h = h.split('/').next().unwrap_or(h);
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

/// What to put in `Authorization` for one registry host and scope.
#[derive(Clone)]
pub enum Authorization {
    Basic(String),
    Bearer(String),
}

impl Authorization {
    pub fn header_value(&self) -> String {
        match self {
            Authorization::Basic(b) => format!("Basic {b}"),
            Authorization::Bearer(t) => format!("Bearer {t}"),
        }
    }
    pub fn basic(a: &AuthConfig) -> Authorization {
        Authorization::Basic(
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.username, a.password)),
        )
    }
}

/// Tokens per (host, scope), dropped a little before they expire.
#[derive(Default)]
pub struct TokenCache {
    inner: Mutex<HashMap<(String, String), (Authorization, Instant)>>,
}

impl TokenCache {
    pub fn get(&self, host: &str, scope: &str) -> Option<Authorization> {
        let m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(host.to_owned(), scope.to_owned()))
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(a, _)| a.clone())
    }
    pub fn put(&self, host: &str, scope: &str, auth: Authorization, ttl: Duration) {
        // Renew 30 s early (a token that dies mid-download costs a retry).
        let ttl = ttl
            .saturating_sub(Duration::from_secs(30))
            .max(Duration::from_secs(5));
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(
            (host.to_owned(), scope.to_owned()),
            (auth, Instant::now() + ttl),
        );
    }
    pub fn forget(&self, host: &str, scope: &str) {
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(host.to_owned(), scope.to_owned()));
    }
}

/// A token endpoint's answer.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    pub fn token(&self) -> Option<&str> {
        [&self.token, &self.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
            .map(String::as_str)
    }
    /// The spec's default lifetime is 60 s.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.expires_in.unwrap_or(60).clamp(60, 24 * 3600))
    }
}

/// A short, non-reversible tag of a credential, for cache keys.
pub fn fingerprint(a: Option<&AuthConfig>) -> String {
    use sha2::Digest as _;
    match a {
        None => "anonymous".to_owned(),
        Some(a) => {
            let mut h = sha2::Sha256::new();
            for part in [
                &a.username,
                &a.password,
                &a.identity_token,
                &a.registry_token,
            ] {
                h.update(part.as_bytes());
                h.update([0u8]);
            }
            hex::encode(&h.finalize()[..8])
        }
    }
}

/// The pull scope of a repository.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_helpers_follow_dockers_order_and_answer_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"a.example:5000":{"auth":"dTpw"}},"credsStore":"store","credHelpers":{"https://index.docker.io/v1/":"hub"}}"#,
        )
        .unwrap();
        let c = Credentials::from_docker_config(&p).unwrap();
        assert_eq!(
            c.helper_for("docker.io").as_deref(),
            Some("docker-credential-hub")
        );
        assert_eq!(
            c.helper_for("a.example:5000").as_deref(),
            Some("docker-credential-store")
        );
        assert_eq!(c.get("a.example:5000").unwrap().username, "u");
        let a =
            parse_helper_answer(br#"{"ServerURL":"x","Username":"bob","Secret":"pw"}"#).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("bob", "pw"));
        let t = parse_helper_answer(br#"{"Username":"<token>","Secret":"refresh"}"#).unwrap();
        assert_eq!(t.identity_token, "refresh");
        assert!(!t.has_basic());
        assert!(
            parse_helper_answer(b"not json")
                .unwrap_err()
                .contains("credentials JSON")
        );
    }

    #[test]
    fn parses_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            }]
        );
    }

    #[test]
    fn parses_odd_challenges() {
        // Basic first, quoted escapes, unquoted value, extra spaces, case.
        let c = parse_challenges(
            r#"Basic realm="Registry Realm", BEARER  realm = "https://x/t?a=1" , service=reg , scope="repository:a/b:pull,push" , error="insufficient \"scope\"""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Challenge::Bearer {
                realm: "https://x/t?a=1".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            c[1],
            Challenge::Basic {
                realm: "Registry Realm".into()
            }
        );
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("Negotiate abc").is_empty());
        assert!(parse_challenges(r#"Bearer realm="unterminated"#).len() == 1);
        // Found by the fuzzer: other whitespace once spun forever.
        for junk in [
            "\n",
            "a\n",
            "Bearer\r\n realm=x\x0c",
            "=",
            ",,=,",
            "\"",
            "a=\"\\",
        ] {
            let _ = parse_challenges(junk);
        }
    }

    #[test]
    fn docker_config_and_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},"127.0.0.1:5443":{"username":"u","password":"p"}}}"#,
        )
        .unwrap();
        let c = Credentials::from_docker_config(&p).unwrap();
        let hub = c.get("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.get("127.0.0.1:5443").unwrap().username, "u");
        assert!(!format!("{hub:?}").contains("pa:ss"));
    }

    #[test]
    fn token_cache_expires() {
        let t = TokenCache::default();
        t.put(
            "h",
            "s",
            Authorization::Bearer("x".into()),
            Duration::from_secs(3600),
        );
        assert!(t.get("h", "s").is_some());
        assert!(t.get("h", "other").is_none());
        t.forget("h", "s");
        assert!(t.get("h", "s").is_none());
    }
}
