//! The one HTTP/1.1 exchange before a connection turns into SPDY or
//! WebSocket: read the request head, answer `101 Switching Protocols` or an
//! error.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest request head accepted.
const MAX_HEAD: usize = 16 << 10;

#[derive(Debug)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    /// Lowercase names, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Every value of `name`, comma-separated lists split.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    }
}

/// Read the head; returns it with the bytes already read past it.
pub async fn read_head(
    r: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(RequestHead, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let mut chunk = [0u8; 2048];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    Ok(parse_head(&buf[..end]).map(|h| (h, buf[end + 4..].to_vec())))
}

/// Parse a request head (the bytes before the blank line): `None` without
/// a method and a path.
pub fn parse_head(head: &[u8]) -> Option<RequestHead> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(path)) = (first.next(), first.next()) else {
        return None;
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
    })
}

/// Answer with an error status and a plain-text body, then close.
pub async fn respond_error(w: &mut (impl AsyncWrite + Unpin), code: u16, reason: &str, body: &str) {
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = w.write_all(msg.as_bytes()).await;
    let _ = w.shutdown().await;
}

/// Switch to SPDY/3.1 with the negotiated sub-protocol.
pub async fn respond_upgrade(
    w: &mut (impl AsyncWrite + Unpin),
    protocol: &str,
) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
    );
    w.write_all(msg.as_bytes()).await?;
    w.flush().await
}

/// Switch to WebSocket with the negotiated sub-protocol.
pub async fn respond_websocket(
    w: &mut (impl AsyncWrite + Unpin),
    accept: &str,
    protocol: &str,
) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    w.write_all(msg.as_bytes()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_go_upgrade_request_parses() {
        let req = b"POST /exec/abc HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: v3.channel.k8s.io, v2.channel.k8s.io\r\n\r\n\x80\x03";
        let (head, rest) = read_head(&mut &req[..]).await.unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/exec/abc");
        assert_eq!(
            head.values("x-stream-protocol-version"),
            [
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ]
        );
        assert_eq!(rest, b"\x80\x03");
    }

    #[tokio::test]
    async fn a_truncated_head_is_none() {
        assert!(
            read_head(&mut &b"POST /x HTTP/1.1\r\n"[..])
                .await
                .unwrap()
                .is_none()
        );
    }
}
