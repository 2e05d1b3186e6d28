//! A streamed `PortForward`: the client opens an `error` and a `data`
//! stream per forwarded connection, paired by `requestID`, each naming a
//! `port`; berthd connects to 127.0.0.1:<port> inside the pod's network
//! namespace and copies both ways. Failures go to the `error` stream.
//!
//! The namespace is entered on a short-lived std thread of its own (never a
//! tokio worker): setns changes only the calling thread, and a socket stays
//! in the namespace it was created in.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use super::PortForwardRequest;
use super::conn::{Conn, StreamWriter};
use super::spdy::header;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Pair {
    port: Option<String>,
    error: Option<StreamWriter>,
    data: Option<(StreamWriter, UnboundedReceiver<Vec<u8>>)>,
}

pub async fn serve(mut conn: Conn, req: PortForwardRequest) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    loop {
        let inc = tokio::select! {
            inc = conn.streams.recv() => match inc {
                Some(i) => i,
                None => break,
            },
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        let w = conn.writer(inc.id);
        let request_id = header(&inc.headers, "requestid")
            .unwrap_or_default()
            .to_owned();
        let pair = pairs.entry(request_id.clone()).or_default();
        if let Some(p) = header(&inc.headers, "port") {
            pair.port = Some(p.to_owned());
        }
        match header(&inc.headers, "streamtype").unwrap_or_default() {
            "error" => pair.error = Some(w),
            "data" => pair.data = Some((w, inc.data)),
            other => {
                tracing::debug!(
                    stream_type = other,
                    "portforward: unknown stream type ignored"
                );
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pairs.remove(&request_id).expect("just seen");
            let (Some(error), Some((data, rx))) = (pair.error, pair.data) else {
                continue;
            };
            let netns = req.netns.clone();
            let sandbox = req.sandbox_id.clone();
            forwards.spawn(async move {
                forward(&sandbox, netns, pair.port, error, data, rx).await;
            });
        }
    }
    drop(forwards);
    conn.shutdown().await;
}

async fn forward(
    sandbox: &str,
    netns: Option<PathBuf>,
    port: Option<String>,
    error: StreamWriter,
    data: StreamWriter,
    mut rx: UnboundedReceiver<Vec<u8>>,
) {
    let port = match port.as_deref().map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        _ => {
            let msg = format!("pod sandbox {sandbox}: invalid port {port:?}");
            error.write(msg.as_bytes()).await;
            return;
        }
    };
    let tcp = match connect(netns, port).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!(
                "pod sandbox {sandbox}: connect to 127.0.0.1:{port} in the pod's network: {e}"
            );
            tracing::debug!(sandbox_id = sandbox, port, error = %e, "portforward: connect");
            error.write(msg.as_bytes()).await;
            return;
        }
    };
    let (mut tr, mut tw) = tcp.into_split();
    let inbound = async move {
        while let Some(chunk) = rx.recv().await {
            if tw.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = tw.shutdown().await;
        // Keep `tw` alive until the other direction is done.
        std::future::pending::<()>().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match tr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !data.write(&buf[..n]).await {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
    data.close().await;
    error.close().await;
}

/// A TCP connection to 127.0.0.1:`port` made inside `netns` (the host's
/// when `None`).
async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Some(netns) = netns else {
        return tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-netns".into())
        .spawn(move || {
            let _ = tx.send(connect_in(&netns, addr));
        })?;
    let std_stream = rx
        .await
        .map_err(|_| std::io::Error::other("namespace thread ended without an answer"))??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

/// Runs on a dedicated thread that ends right after: it is left in the
/// pod's namespace.
fn connect_in(netns: &Path, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns)?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    std::net::TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
}
