//! The CRI streaming server: `Exec`, `Attach` and `PortForward` return a URL with a
//! single-use token; the client (kubelet, crictl, client-go) upgrades an
//! HTTP/1.1 request on it to SPDY/3.1 and the streams of the Kubernetes
//! remotecommand (`v2`..`v4.channel.k8s.io`) or `portforward.k8s.io`
//! protocol run over it.
//!
//! Owns the listener, the pending requests and every connection task (they
//! end when the server task is dropped). It never validates a request: the
//! CRI service does that before [`StreamServer::register`], so a token only
//! ever names a request that was valid when it was made.

pub mod attach;
pub mod conn;
pub mod exec;
pub mod http;
pub mod idle;
pub mod portforward;
pub mod spdy;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::shim::proto::RuntimeCmd;

/// How long a URL stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Sub-protocols of remotecommand we speak, best first.
const EXEC_PROTOCOLS: [&str; 3] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
const PORTFORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// remotecommand over WebSocket (client-go's WebSocket executor offers v5).
const WS_EXEC_PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
/// Port-forward as SPDY tunnelled through WebSocket messages.
const WS_PORTFORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("streaming server: bind {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming server: TLS: {what} {}: {message}", path.display())]
    Tls {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// The streaming server's certificate chain and key (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS acceptor from `files`; the error names the file and what is wrong
/// with it.
fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, StreamError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |what, path: &PathBuf, message: String| StreamError::Tls {
        what,
        path: path.clone(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err("stream_tls_cert_file", &files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(
            "stream_tls_cert_file",
            &files.cert,
            "no CERTIFICATE block".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| err("stream_tls_key_file", &files.key, e.to_string()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("stream_tls_cert_file", &files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("stream_tls_key_file", &files.key, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A validated `Exec`.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub container_id: String,
    pub runtime: RuntimeCmd,
    pub cmd: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A validated `Attach`: the container's monitor holds its stdio.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub container_id: String,
    /// The pod's monitor socket.
    pub socket: PathBuf,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A validated `PortForward`.
#[derive(Debug, Clone)]
pub struct PortForwardRequest {
    pub sandbox_id: String,
    /// The pod's network namespace; `None` for host network.
    pub netns: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub enum Request {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl Request {
    fn route(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

/// The remotecommand protocol version a client negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExecProtocol {
    V2,
    V3,
    V4,
}

pub struct StreamServer {
    addr: SocketAddr,
    state_dir: PathBuf,
    /// A connection with no byte in either direction for this long is
    /// closed (the kubelet's `streamingConnectionIdleTimeout`); `None`: never.
    idle_timeout: Option<Duration>,
    pending: Mutex<HashMap<String, (Instant, Request)>>,
    /// TLS on every connection, when configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl StreamServer {
    /// Bind `address`; serve with [`StreamServer::serve`].
    pub async fn bind(
        address: &str,
        state_dir: PathBuf,
        idle_timeout: Option<Duration>,
        tls: Option<&TlsFiles>,
    ) -> Result<(Arc<Self>, TcpListener), StreamError> {
        let tls = tls.map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StreamError::Bind {
                address: address.to_owned(),
                source,
            })?;
        let mut addr = listener.local_addr().map_err(|source| StreamError::Bind {
            address: address.to_owned(),
            source,
        })?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let server = Arc::new(StreamServer {
            addr,
            state_dir,
            idle_timeout,
            pending: Mutex::new(HashMap::new()),
            tls,
        });
        Ok((server, listener))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Keep `req` under a new token; returns its URL.
    pub fn register(&self, req: Request) -> String {
        let token = crate::sandbox::new_id()[..32].to_owned();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/{}/{token}", self.addr, req.route());
        let mut pending = self.pending.lock().expect("pending lock");
        let now = Instant::now();
        pending.retain(|_, (at, _)| now.duration_since(*at) < TOKEN_TTL);
        pending.insert(token, (now, req));
        url
    }

    fn take(&self, route: &str, token: &str) -> Option<Request> {
        let mut pending = self.pending.lock().expect("pending lock");
        let (at, req) = pending.remove(token)?;
        (at.elapsed() < TOKEN_TTL && req.route() == route).then_some(req)
    }

    /// Accept connections until the returned future is dropped; every
    /// connection task is owned by it.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((sock, _)) => {
                        let me = Arc::clone(&self);
                        conns.spawn(async move { me.handle(sock).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "streaming server: accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    }

    async fn handle(&self, sock: TcpStream) {
        let _ = sock.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let (r, w) = sock.into_split();
            return self.guarded(r, w).await;
        };
        // A client that never finishes its handshake is dropped like one
        // that never sends its request.
        match tokio::time::timeout(Duration::from_secs(30), tls.accept(sock)).await {
            Ok(Ok(stream)) => {
                let (r, w) = tokio::io::split(stream);
                self.guarded(r, w).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "streaming server: TLS handshake"),
            Err(_) => tracing::debug!("streaming server: TLS handshake timed out"),
        }
    }

    /// A session, closed when idle for the configured time.
    async fn guarded(
        &self,
        r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        w: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    ) {
        let Some(limit) = self.idle_timeout else {
            return self.session(r, w).await;
        };
        let clock = idle::Clock::new();
        let (r, w) = (clock.track(r), clock.track(w));
        tokio::select! {
            () = self.session(r, w) => {}
            // Dropping the session closes the socket and stops its tasks.
            () = clock.idle_for(limit) => {
                tracing::debug!(?limit, "closing an idle streaming connection");
            }
        }
    }

    async fn session(
        &self,
        mut r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        mut w: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    ) {
        let Ok(Some((head, rest))) =
            tokio::time::timeout(Duration::from_secs(30), http::read_head(&mut r))
                .await
                .unwrap_or(Ok(None))
        else {
            return;
        };
        let mut parts = head.path.trim_start_matches('/').splitn(2, '/');
        let (route, token) = (
            parts.next().unwrap_or_default().to_owned(),
            parts
                .next()
                .unwrap_or_default()
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
        );
        let upgrade = head.values("upgrade");
        let websocket = upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket"));
        if !websocket && !upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
            http::respond_error(
                &mut w,
                400,
                "Bad Request",
                "unable to upgrade: only SPDY/3.1 and websocket are supported",
            )
            .await;
            return;
        }
        let Some(req) = self.take(&route, &token) else {
            http::respond_error(
                &mut w,
                404,
                "Not Found",
                "unknown or expired streaming token",
            )
            .await;
            return;
        };
        let (offered, supported) = match (&req, websocket) {
            (Request::Exec(_) | Request::Attach(_), false) => (
                head.values("x-stream-protocol-version"),
                &EXEC_PROTOCOLS[..],
            ),
            (Request::PortForward(_), false) => (
                head.values("x-stream-protocol-version"),
                &[PORTFORWARD_PROTOCOL][..],
            ),
            (Request::Exec(_) | Request::Attach(_), true) => (
                head.values("sec-websocket-protocol"),
                &WS_EXEC_PROTOCOLS[..],
            ),
            (Request::PortForward(_), true) => (
                head.values("sec-websocket-protocol"),
                &[WS_PORTFORWARD_PROTOCOL][..],
            ),
        };
        // The client's preference among what both speak.
        let Some(protocol) = offered
            .iter()
            .find(|p| supported.contains(&p.as_str()))
            .cloned()
        else {
            let body = format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            );
            http::respond_error(&mut w, 403, "Forbidden", &body).await;
            return;
        };
        let upgraded = if websocket {
            let Some(key) = head.values("sec-websocket-key").into_iter().next() else {
                http::respond_error(&mut w, 400, "Bad Request", "missing Sec-WebSocket-Key").await;
                return;
            };
            http::respond_websocket(&mut w, &ws::accept_key(&key), &protocol).await
        } else {
            http::respond_upgrade(&mut w, &protocol).await
        };
        if upgraded.is_err() {
            return;
        }
        let reader = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(rest), r);
        let proto = match protocol.as_str() {
            "v5.channel.k8s.io" | "v4.channel.k8s.io" => ExecProtocol::V4,
            "v3.channel.k8s.io" => ExecProtocol::V3,
            _ => ExecProtocol::V2,
        };
        let want = match &req {
            Request::Exec(e) => exec::Want {
                stdin: e.stdin,
                stdout: e.stdout,
                stderr: e.stderr,
                tty: e.tty,
            },
            Request::Attach(a) => exec::Want {
                stdin: a.stdin,
                stdout: a.stdout,
                stderr: a.stderr,
                tty: a.tty,
            },
            Request::PortForward(p) => {
                if websocket {
                    let (tunnel, mut tasks) = ws::tunnel(reader, w);
                    let (tr, tw) = tokio::io::split(tunnel);
                    portforward::serve(conn::Conn::new(tr, tw), p.clone()).await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                } else {
                    portforward::serve(conn::Conn::new(reader, w), p.clone()).await;
                }
                return;
            }
        };
        let (link, streams) = if websocket {
            let (session, streams) = ws::channels(reader, w, want);
            (exec::Link::Ws(session), streams)
        } else {
            let mut conn = conn::Conn::new(reader, w);
            match exec::gather(&mut conn, want, proto).await {
                Some(s) => (exec::Link::Spdy(conn), s),
                None => {
                    tracing::debug!("remotecommand: client did not open its streams");
                    conn.shutdown().await;
                    return;
                }
            }
        };
        match req {
            Request::Exec(e) => exec::serve(link, streams, e, proto, &self.state_dir).await,
            Request::Attach(a) => attach::serve(link, streams, a, proto).await,
            Request::PortForward(_) => unreachable!("served above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tls_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("c.pem"), d.path().join("k.pem"));
        std::fs::write(&cert, "not a certificate\n").unwrap();
        std::fs::write(&key, "not a key\n").unwrap();
        let files = TlsFiles {
            cert: cert.clone(),
            key,
        };
        let e = tls_acceptor(&files).err().unwrap().to_string();
        assert!(
            e.contains("stream_tls_cert_file") && e.contains("c.pem"),
            "{e}"
        );
        let files = TlsFiles {
            cert: d.path().join("missing.pem"),
            key: d.path().join("k.pem"),
        };
        let e = tls_acceptor(&files).err().unwrap().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
