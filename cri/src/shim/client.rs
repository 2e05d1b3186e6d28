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

/// Open an attach session: the shim's answer, and on `Ok` the connection,
/// which carries [`super::proto::frame`]s from then on.
pub async fn attach(
    socket: &Path,
    req: &Request,
) -> Result<(Response, Option<UnixStream>), ClientError> {
    use tokio::io::AsyncReadExt;
    let io = |op, source| ClientError::Io {
        socket: socket.to_owned(),
        op,
        source,
    };
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| io("connect", e))?;
    let mut line = serde_json::to_vec(req).expect("requests serialize");
    line.push(b'\n');
    stream.write_all(&line).await.map_err(|e| io("send", e))?;
    // Byte by byte: frames may follow the answer at once, and must stay in
    // the stream.
    let mut resp = Vec::new();
    loop {
        let b = stream.read_u8().await.map_err(|e| io("receive", e))?;
        if b == b'\n' {
            break;
        }
        resp.push(b);
        if resp.len() > 64 * 1024 {
            return Err(ClientError::Protocol {
                socket: socket.to_owned(),
                message: "answer too long".into(),
            });
        }
    }
    let resp: Response = serde_json::from_slice(&resp).map_err(|e| ClientError::Protocol {
        socket: socket.to_owned(),
        message: format!("{e}: {:?}", String::from_utf8_lossy(&resp)),
    })?;
    let ok = resp == Response::Ok;
    Ok((resp, ok.then_some(stream)))
}
