//! Registry hosts and mirrors in containerd's `certs.d` layout, so a
//! node's existing containerd mirror configuration works unchanged:
//!
//! ```text
//! <certs.d>/<registry host[:port]>/hosts.toml    (else <certs.d>/_default/hosts.toml)
//! server = "https://registry-1.docker.io"        # upstream; default https://<host>
//! [host."https://mirror.local:5000"]              # tried first, in file order
//!   capabilities = ["pull", "resolve"]
//!   ca = "ca.crt"                                 # or a list; relative to the folder
//!   client = [["client.cert", "client.key"]]      # or "both.pem"
//!   skip_verify = false
//!   override_path = false
//!   [host."https://mirror.local:5000".header]
//!   x-custom = "v"
//! ```
//!
//! Without a hosts.toml, Docker-style `*.crt` (CAs) and `*.cert`/`*.key`
//! pairs in the host's folder are used for the upstream.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: invalid host {host:?}: {why}")]
    Host {
        path: PathBuf,
        host: String,
        why: &'static str,
    },
}

/// TLS settings for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    pub ca_files: Vec<PathBuf>,
    /// (certificate, key) PEM files; the key may be in the certificate file.
    pub client_certs: Vec<(PathBuf, Option<PathBuf>)>,
    pub skip_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// One place to fetch from: a mirror or the upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// `host[:port]`
    pub host: String,
    /// Path prefix that `/<repo>/manifests/...` is appended to (`/v2`).
    pub path: String,
    pub capabilities: Capabilities,
    pub tls: TlsConfig,
    pub headers: Vec<(String, String)>,
    /// True for the registry the reference names (not a mirror).
    pub upstream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    /// Loopback registries without configuration: https, falling back to
    /// plain http when the server does not speak TLS (containerd does the
    /// same for localhost).
    HttpsThenHttp,
}

impl Endpoint {
    pub fn base_url(&self, scheme: &str) -> String {
        format!("{scheme}://{}{}", self.host, self.path)
    }
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClientCerts {
    One(String),
    List(Vec<ClientCert>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClientCert {
    One(String),
    Pair(Vec<String>),
}

#[derive(Deserialize, Default)]
struct HostSection {
    #[serde(default)]
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    ca: OneOrMany,
    #[serde(default)]
    client: Option<ClientCerts>,
    #[serde(default)]
    skip_verify: Option<bool>,
    #[serde(default)]
    override_path: bool,
    #[serde(default)]
    header: toml::Table,
}

#[derive(Deserialize, Default)]
struct HostsFile {
    #[serde(default)]
    server: Option<String>,
    #[serde(flatten)]
    top: HostSection,
    #[serde(default)]
    host: toml::Table,
}

/// Where hosts.toml folders live (`/etc/containerd/certs.d` on a node).
#[derive(Debug, Clone, Default)]
pub struct HostsDir {
    pub dir: Option<PathBuf>,
    /// Registries reached over plain http (`--plain-http`, CRI insecure).
    pub plain_http: Vec<String>,
}

impl HostsDir {
    /// The endpoints to try for `domain`, mirrors first, upstream last.
    pub fn endpoints(&self, domain: &str) -> Result<Vec<Endpoint>, HostsError> {
        let plain = self.plain_http.iter().any(|h| h == domain);
        let default_scheme = if plain {
            Scheme::Http
        } else if is_loopback(domain) {
            Scheme::HttpsThenHttp
        } else {
            Scheme::Https
        };
        let upstream_host = if domain == "docker.io" {
            "registry-1.docker.io".to_owned()
        } else {
            domain.to_owned()
        };
        let mut upstream = Endpoint {
            scheme: default_scheme,
            host: upstream_host,
            path: "/v2".to_owned(),
            capabilities: Capabilities::ALL,
            tls: TlsConfig::default(),
            headers: vec![],
            upstream: true,
        };
        let Some(root) = &self.dir else {
            return Ok(vec![upstream]);
        };
        let folder = [host_dir_name(domain), "_default".to_owned()]
            .into_iter()
            .map(|n| root.join(n))
            .find(|p| p.is_dir());
        let Some(folder) = folder else {
            return Ok(vec![upstream]);
        };
        let file = folder.join("hosts.toml");
        if !file.exists() {
            upstream.tls = docker_style_certs(&folder)?;
            return Ok(vec![upstream]);
        }
        let text = std::fs::read_to_string(&file).map_err(|source| HostsError::Read {
            path: file.clone(),
            source,
        })?;
        let parsed: HostsFile = toml::from_str(&text).map_err(|source| HostsError::Parse {
            path: file.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for (key, value) in parsed.host {
            let section: HostSection = value.try_into().map_err(|source| HostsError::Parse {
                path: file.clone(),
                source,
            })?;
            let mut ep = endpoint_from_url(&file, &key, plain)?;
            apply_section(&folder, &mut ep, section);
            out.push(ep);
        }
        if let Some(server) = parsed.server {
            let mut ep = endpoint_from_url(&file, &server, plain)?;
            ep.upstream = true;
            upstream = ep;
        }
        apply_section(&folder, &mut upstream, parsed.top);
        out.push(upstream);
        Ok(out)
    }
}

fn apply_section(folder: &Path, ep: &mut Endpoint, s: HostSection) {
    if let Some(caps) = s.capabilities {
        ep.capabilities = Capabilities {
            pull: caps.iter().any(|c| c == "pull"),
            resolve: caps.iter().any(|c| c == "resolve"),
            push: caps.iter().any(|c| c == "push"),
        };
    }
    let rel = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            folder.join(p)
        }
    };
    ep.tls.ca_files.extend(s.ca.list().iter().map(|p| rel(p)));
    match s.client {
        None => {}
        Some(ClientCerts::One(p)) => ep.tls.client_certs.push((rel(&p), None)),
        Some(ClientCerts::List(l)) => {
            for c in l {
                match c {
                    ClientCert::One(p) => ep.tls.client_certs.push((rel(&p), None)),
                    ClientCert::Pair(v) => {
                        if let Some(cert) = v.first() {
                            ep.tls
                                .client_certs
                                .push((rel(cert), v.get(1).map(|k| rel(k))));
                        }
                    }
                }
            }
        }
    }
    if let Some(sv) = s.skip_verify {
        ep.tls.skip_verify = sv;
    }
    if !s.override_path && !ep.path.ends_with("/v2") {
        ep.path = format!("{}/v2", ep.path.trim_end_matches('/'));
    }
    for (k, v) in s.header {
        match v {
            toml::Value::String(s) => ep.headers.push((k, s)),
            toml::Value::Array(a) => {
                for x in a {
                    if let toml::Value::String(s) = x {
                        ep.headers.push((k.clone(), s));
                    }
                }
            }
            _ => {}
        }
    }
}

fn endpoint_from_url(file: &Path, url: &str, plain: bool) -> Result<Endpoint, HostsError> {
    let bad = |why| HostsError::Host {
        path: file.to_path_buf(),
        host: url.to_owned(),
        why,
    };
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if url.contains("://") {
        return Err(bad("scheme must be http or https"));
    } else if plain {
        (Scheme::Http, url)
    } else {
        (Scheme::Https, url)
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['?', '#', '@', ' ']) {
        return Err(bad("no host name"));
    }
    Ok(Endpoint {
        scheme,
        host: host.to_owned(),
        path: path.to_owned(),
        capabilities: Capabilities {
            pull: true,
            resolve: true,
            push: false,
        },
        tls: TlsConfig::default(),
        headers: vec![],
        upstream: false,
    })
}

fn docker_style_certs(folder: &Path) -> Result<TlsConfig, HostsError> {
    let mut tls = TlsConfig::default();
    let rd = std::fs::read_dir(folder).map_err(|source| HostsError::Read {
        path: folder.to_path_buf(),
        source,
    })?;
    let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for p in names {
        match p.extension().and_then(|e| e.to_str()) {
            Some("crt") => tls.ca_files.push(p),
            Some("cert") => {
                let key = p.with_extension("key");
                tls.client_certs.push((p, Some(key)));
            }
            _ => {}
        }
    }
    Ok(tls)
}

/// containerd names a host's folder `host:port`; IPv6 keeps its brackets.
fn host_dir_name(domain: &str) -> String {
    domain.to_owned()
}

fn is_loopback(domain: &str) -> bool {
    let host = if let Some(r) = domain.strip_prefix('[') {
        r.split(']').next().unwrap_or("")
    } else {
        domain.rsplit_once(':').map_or(domain, |(h, _)| h)
    };
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, host: &str, body: &str) {
        let d = dir.join(host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts.toml"), body).unwrap();
    }

    #[test]
    fn no_config_means_upstream_only() {
        let h = HostsDir::default();
        let e = h.endpoints("docker.io").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].base_url("https"), "https://registry-1.docker.io/v2");
        assert_eq!(
            h.endpoints("127.0.0.1:5000").unwrap()[0].scheme,
            Scheme::HttpsThenHttp
        );
        assert_eq!(h.endpoints("quay.io").unwrap()[0].scheme, Scheme::Https);
    }

    #[test]
    fn parses_containerd_hosts_toml() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "docker.io",
            r#"
server = "https://registry-1.docker.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host."https://mirror.example:5443/prefix"]
  capabilities = ["pull"]
  ca = "ca.crt"
  client = [["/abs/c.cert", "c.key"]]
  override_path = true
  [host."https://mirror.example:5443/prefix".header]
  x-a = "b"
"#,
        );
        let h = HostsDir {
            dir: Some(dir.path().to_path_buf()),
            plain_http: vec![],
        };
        let e = h.endpoints("docker.io").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].scheme, Scheme::Http);
        assert_eq!(e[0].base_url("http"), "http://127.0.0.1:5000/v2");
        assert!(e[0].capabilities.resolve && !e[0].capabilities.push);
        assert!(e[0].tls.skip_verify);
        assert_eq!(e[1].base_url("https"), "https://mirror.example:5443/prefix");
        assert!(e[1].capabilities.pull && !e[1].capabilities.resolve);
        assert_eq!(e[1].tls.ca_files, vec![dir.path().join("docker.io/ca.crt")]);
        assert_eq!(
            e[1].tls.client_certs,
            vec![(
                PathBuf::from("/abs/c.cert"),
                Some(dir.path().join("docker.io/c.key"))
            )]
        );
        assert_eq!(e[1].headers, vec![("x-a".to_owned(), "b".to_owned())]);
        assert!(e[2].upstream);
        assert_eq!(e[2].base_url("https"), "https://registry-1.docker.io/v2");
    }

    #[test]
    fn default_folder_docker_certs_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "_default",
            "[host.\"https://m.example\"]\ncapabilities=[\"pull\",\"resolve\"]\n",
        );
        let reg = dir.path().join("reg.example:443");
        std::fs::create_dir_all(&reg).unwrap();
        std::fs::write(reg.join("ca.crt"), "x").unwrap();
        std::fs::write(reg.join("client.cert"), "x").unwrap();
        let h = HostsDir {
            dir: Some(dir.path().to_path_buf()),
            plain_http: vec![],
        };
        let e = h.endpoints("quay.io").unwrap();
        assert_eq!(e[0].host, "m.example");
        assert_eq!(e[1].host, "quay.io");
        let e = h.endpoints("reg.example:443").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].tls.ca_files, vec![reg.join("ca.crt")]);
        assert_eq!(e[0].tls.client_certs[0].1, Some(reg.join("client.key")));
        write(dir.path(), "bad.example", "[host.\"ftp://x\"]\n");
        assert!(h.endpoints("bad.example").is_err());
        write(dir.path(), "bad2.example", "server = [");
        assert!(h.endpoints("bad2.example").is_err());
    }
}
