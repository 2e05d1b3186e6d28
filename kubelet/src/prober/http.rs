//! httpGet probes: a small HTTP/1.1 client (one request per connection,
//! the response's head is all it reads), over TLS without verifying the
//! certificate for HTTPS, as upstream does. Redirects are followed on the
//! same host only; a redirect elsewhere ends the probe on its 3xx.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Outcome, host_port};
use crate::probe::{HttpGet, Scheme, USER_AGENT};

/// Largest response head read.
const MAX_HEAD: usize = 16 * 1024;
/// Upstream's (Go's) limit.
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path and query, from `/`.
    pub path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            host_port(&self.host, self.port),
            self.path
        )
    }
}

impl Url {
    /// Where a redirect's `Location` points, from this URL.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let bad = || format!("bad redirect location {location:?}");
        let (scheme, rest) = if let Some(r) = location.strip_prefix("http://") {
            (Some(Scheme::Http), Some(r))
        } else if let Some(r) = location.strip_prefix("https://") {
            (Some(Scheme::Https), Some(r))
        } else if let Some(r) = location.strip_prefix("//") {
            (None, Some(r))
        } else {
            (None, None)
        };
        let Some(rest) = rest else {
            // Same host: an absolute path, or one relative to this one's folder.
            let path = if location.starts_with('/') {
                location.to_owned()
            } else {
                let base = self.path.split('?').next().unwrap_or("/");
                let dir = &base[..base.rfind('/').map(|i| i + 1).unwrap_or(1)];
                format!("{dir}{location}")
            };
            return Ok(Url {
                path,
                ..self.clone()
            });
        };
        let scheme = scheme.unwrap_or(self.scheme);
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse().map_err(|_| bad())?),
                None if after.is_empty() => (h, default_port),
                None => return Err(bad()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(Url {
            scheme,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// The request: upstream's default headers, then the probe's own, which
/// replace defaults of the same name.
pub fn request(url: &Url, headers: &[(String, String)]) -> String {
    let mut out = format!("GET {} HTTP/1.1\r\n", url.path);
    let defaults = [
        ("Host", host_port(&url.host, url.port)),
        ("User-Agent", USER_AGENT.to_owned()),
        ("Accept", "*/*".to_owned()),
    ];
    for (name, value) in &defaults {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("connection") {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

/// The parts of a response head a probe looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub location: Option<String>,
}

/// Parse a response head from the bytes read so far: None while its end
/// (an empty line) has not arrived.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("malformed HTTP response {status_line:?}"));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("malformed HTTP status code {code:?}"))?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_owned());
    Ok(Some(Head { status, location }))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, req: &[u8]) -> Result<Head, String> {
    s.write_all(req).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        // 1xx heads (100 Continue) come before the real one.
        while let Some(head) = parse_head(&buf)? {
            if head.status >= 200 {
                return Ok(head);
            }
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
            buf.drain(..end);
        }
        if buf.len() > MAX_HEAD {
            return Err(format!("response head larger than {MAX_HEAD} bytes"));
        }
    }
}

pub async fn fetch(url: &Url, headers: &[(String, String)]) -> Result<Head, String> {
    let addr = host_port(&url.host, url.port);
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let req = request(url, headers);
    match url.scheme {
        Scheme::Http => exchange(tcp, req.as_bytes()).await,
        Scheme::Https => {
            let name = rustls::pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| format!("{:?}: {e}", url.host))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            exchange(tls, req.as_bytes()).await
        }
    }
}

/// Probe `host` (the pod IP or the probe's host) with `get`, all within
/// `timeout`.
pub async fn probe(host: &str, get: &HttpGet, timeout: Duration) -> Outcome {
    let first = Url {
        scheme: get.scheme,
        host: host.to_owned(),
        port: get.port,
        path: get.path.clone(),
    };
    let mut url = first.clone();
    let run = async {
        for _ in 0..=MAX_REDIRECTS {
            let head = fetch(&url, &get.headers)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            let next = match (&head.location, head.status) {
                (Some(l), 301 | 302 | 303 | 307 | 308) => url.join(l)?,
                _ => return Ok(head.status),
            };
            if !next.host.eq_ignore_ascii_case(&first.host) {
                tracing::debug!(from = %url, to = %next, "probe redirected to another host: not followed");
                return Ok(head.status);
            }
            url = next;
        }
        Err(format!(
            "Get \"{url}\": stopped after {MAX_REDIRECTS} redirects"
        ))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(e)) => Outcome::Failure(e),
        Err(_) => Outcome::Failure(format!(
            "Get \"{first}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers, {}s)",
            timeout.as_secs()
        )),
    }
}

/// TLS that takes any certificate (upstream's InsecureSkipVerify) but
/// still checks the handshake's signatures against it.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(path: &str) -> Url {
        Url {
            scheme: Scheme::Http,
            host: "10.0.0.5".into(),
            port: 8080,
            path: path.into(),
        }
    }

    #[test]
    fn requests_carry_upstreams_headers() {
        let r = request(&url("/healthz?x=1"), &[]);
        assert_eq!(
            r,
            "GET /healthz?x=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = request(
            &url("/"),
            &[
                ("host".into(), "example.com".into()),
                ("X-A".into(), "1".into()),
                ("X-A".into(), "2".into()),
            ],
        );
        assert_eq!(
            r,
            "GET / HTTP/1.1\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\nhost: example.com\r\nX-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn parses_response_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
        assert_eq!(
            parse_head(b"HTTP/1.1 404 Not Found\r\nServer: x\r\n\r\nbody"),
            Ok(Some(Head {
                status: 404,
                location: None
            }))
        );
        assert_eq!(
            parse_head(b"HTTP/1.0 302\r\nlocation:  /next \r\n\r\n"),
            Ok(Some(Head {
                status: 302,
                location: Some("/next".into())
            }))
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn redirect_locations() {
        let u = url("/a/b?q=1");
        assert_eq!(u.join("/c").unwrap(), url("/c"));
        assert_eq!(u.join("c?d").unwrap(), url("/a/c?d"));
        assert_eq!(
            u.join("https://other:8443/x").unwrap(),
            Url {
                scheme: Scheme::Https,
                host: "other".into(),
                port: 8443,
                path: "/x".into()
            }
        );
        assert_eq!(
            u.join("//10.0.0.5").unwrap(),
            Url {
                port: 80,
                ..url("/")
            }
        );
        assert_eq!(
            u.join("http://[fd00::1]:81?x").unwrap(),
            Url {
                host: "fd00::1".into(),
                port: 81,
                ..url("/?x")
            }
        );
        assert_eq!(url("/x").to_string(), "http://10.0.0.5:8080/x");
        assert!(u.join("http://:80/").is_err());
        assert!(u.join("http://h:port/").is_err());
    }

    /// A server answering each connection with the next canned response.
    async fn serve(responses: Vec<String>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for r in responses {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                seen.push(String::from_utf8_lossy(&got).into_owned());
                s.write_all(r.as_bytes()).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    fn get(port: u16, path: &str) -> HttpGet {
        HttpGet {
            scheme: Scheme::Http,
            host: None,
            port,
            path: path.into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        }
    }

    #[tokio::test]
    async fn probes_follow_same_host_redirects_and_judge_the_status() {
        let t = Duration::from_secs(2);
        let (port, srv) = serve(vec![
            "HTTP/1.1 301 Moved\r\nLocation: /ok\r\n\r\n".into(),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".into(),
        ])
        .await;
        assert_eq!(
            probe("127.0.0.1", &get(port, "/start"), t).await,
            Outcome::Success
        );
        let seen = srv.await.unwrap();
        assert!(seen[0].starts_with("GET /start HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[1].starts_with("GET /ok HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[1].contains("\r\nX-Probe: yes\r\n"), "{seen:?}");

        let (port, _srv) = serve(vec!["HTTP/1.1 404 Not Found\r\n\r\n".into()]).await;
        assert_eq!(
            probe("127.0.0.1", &get(port, "/"), t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 404".into())
        );
        // A redirect elsewhere is not followed: its 3xx is a success.
        let (port, _srv) = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1/\r\n\r\n".into(),
        ])
        .await;
        assert_eq!(
            probe("127.0.0.1", &get(port, "/"), t).await,
            Outcome::Success
        );
        // Nobody listening.
        drop(_srv);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = l.local_addr().unwrap().port();
        drop(l);
        match probe("127.0.0.1", &get(closed, "/x"), t).await {
            Outcome::Failure(m) => assert!(
                m.starts_with(&format!("Get \"http://127.0.0.1:{closed}/x\": dial tcp")),
                "{m}"
            ),
            o => panic!("{o:?}"),
        }
        // A server that never answers: the timeout.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = l.local_addr().unwrap().port();
        match probe("127.0.0.1", &get(silent, "/"), Duration::from_millis(300)).await {
            Outcome::Failure(m) => assert!(m.contains("deadline exceeded"), "{m}"),
            o => panic!("{o:?}"),
        }
        drop(l);
    }

    /// A self-signed certificate nobody trusts (the probe does not check).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUJWBS8AQJ0mFCaVSqPpL0RXLeKRQwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKcHJvYmUtdGVzdDAgFw0yNjEyMDIxMzQ3MTNaGA8yMTI2MTEw
ODEzNDcxM1owFTETMBEGA1UEAwwKcHJvYmUtdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABBd2rQkOVyeJW3xFo+V25J1r5ipwW0G8t3YW+cN8EIizUSHxT3dB
+NeRQaTS0I06b5mLCkZb7iYk1mP915CL6/SjUzBRMB0GA1UdDgQWBBTWuLpeys20
Bva5Bp9Zj+M5wRJbsTAfBgNVHSMEGDAWgBTWuLpeys20Bva5Bp9Zj+M5wRJbsTAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIFuf7EXugfyfBfupt0su
5QJQtLolXT5qPUMOnbXQQyxtAiEAkxbWPo7bvSL0sRJdTtaccVIXzMN2gnvdcrA9
S0vw9eo=
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgJAAT7cXezgnz34lx
KglqpgO9/Lrs/bg0pbbsP5HijPehRANCAAQXdq0JDlcniVt8RaPlduSda+YqcFtB
vLd2FvnDfBCIs1Eh8U93QfjXkUGk0tCNOm+ZiwpGW+4mJNZj/deQi+v0
-----END PRIVATE KEY-----
";

    #[tokio::test]
    async fn https_probes_take_any_certificate() {
        use rustls::pki_types::pem::PemObject;
        let certs =
            vec![rustls::pki_types::CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut s = acceptor.accept(s).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            s.shutdown().await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let get = HttpGet {
            scheme: Scheme::Https,
            ..get(port, "/secure")
        };
        assert_eq!(
            probe("127.0.0.1", &get, Duration::from_secs(3)).await,
            Outcome::Success
        );
        assert!(srv.await.unwrap().starts_with("GET /secure HTTP/1.1\r\n"));
    }
}
