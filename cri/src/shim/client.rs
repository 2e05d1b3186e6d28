//! berthd's side of the shim protocol.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::proto::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("shim {socket}: {op}")]
    Io {
        socket: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("shim {socket}: bad response: {message}")]
    Protocol { socket: PathBuf, message: String },
}

/// Send one request on a fresh connection and read its response.
pub async fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |op, source| ClientError::Io {
        socket: socket.to_owned(),
        op,
        source,
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| io("connect", e))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    w.write_all(&line).await.map_err(|e| io("send", e))?;
    let mut resp = String::new();
    BufReader::new(r)
        .read_line(&mut resp)
        .await
        .map_err(|e| io("receive", e))?;
    serde_json::from_str(&resp).map_err(|e| ClientError::Protocol {
        socket: socket.to_owned(),
        message: format!("{e}: {resp:?}"),
    })
}
