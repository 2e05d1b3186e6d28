//! WebSocket (RFC 6455), the server side, as client-go's streaming clients
//! use it:
//!
//! - remotecommand over `v5`..`v2.channel.k8s.io`: every binary message
//!   starts with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 error,
//!   4 resize); v5 adds 255 + channel to close the client's stdin.
//!   [`channels`] turns a connection into the same [`Streams`] the SPDY
//!   path gathers, so exec and attach run unchanged over either.
//! - port-forward over `SPDY/3.1+portforward.k8s.io`: the binary messages
//!   carry a SPDY connection's bytes; [`tunnel`] gives them back as a byte
//!   stream for [`super::conn::Conn`].
//!
//! Frames from the client must be masked; control frames are answered
//! (ping with pong, close with close). Messages are capped at
//! [`MAX_MESSAGE`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::conn::StreamWriter;
use super::exec::{Streams, Want};
use super::spdy::Frame;

/// The key suffix of RFC 6455's handshake.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest message accepted (client-go sends at most 32 KiB of stdin
/// per message).
pub const MAX_MESSAGE: usize = 1 << 20;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// remotecommand channels.
const CH_STDIN: u8 = 0;
const CH_STDOUT: u8 = 1;
const CH_STDERR: u8 = 2;
const CH_ERROR: u8 = 3;
const CH_RESIZE: u8 = 4;
/// v5: "close channel N" (the client's end of stdin).
const CH_CLOSE: u8 = 255;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("websocket: frame from the client is not masked")]
    Unmasked,
    #[error("websocket: reserved bits set")]
    Reserved,
    #[error("websocket: unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("websocket: control frame fragmented or longer than 125 bytes")]
    Control,
    #[error("websocket: message longer than {MAX_MESSAGE} bytes")]
    TooLong,
    #[error("websocket: continuation without a message, or a new message inside one")]
    Sequence,
}

/// One frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Parse one client frame from the start of `buf`: the frame and the bytes
/// it used, or `None` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(WsFrame, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || (b1 & 0x7f) > 125 {
                return Err(WsError::Control);
            }
        }
        op => return Err(WsError::Opcode(op)),
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            (
                u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")),
                10,
            )
        }
        n => (n as u64, 2),
    };
    if len > MAX_MESSAGE as u64 {
        return Err(WsError::TooLong);
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask: [u8; 4] = buf[at..at + 4].try_into().expect("4 bytes");
    at += 4;
    let payload = buf[at..at + len]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Ok(Some((
        WsFrame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

/// A whole, unmasked server frame.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// What the connection's reader hands on.
enum Event {
    Message(Vec<u8>),
    Ping(Vec<u8>),
    Close,
}

/// Reassembles messages from frames; `None` at the end of the connection
/// (closed, broken, or a protocol error, which is logged).
struct Reader<R> {
    r: R,
    buf: Vec<u8>,
    partial: Option<Vec<u8>>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    async fn next(&mut self) -> Option<Event> {
        loop {
            match parse(&self.buf) {
                Err(e) => {
                    tracing::debug!(error = %e, "websocket: closing on a bad frame");
                    return None;
                }
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    match self.frame(f) {
                        Err(e) => {
                            tracing::debug!(error = %e, "websocket: closing on a bad frame");
                            return None;
                        }
                        Ok(Some(ev)) => return Some(ev),
                        Ok(None) => continue,
                    }
                }
                Ok(None) => {
                    let mut chunk = [0u8; 16 << 10];
                    match self.r.read(&mut chunk).await {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }
    }

    fn frame(&mut self, f: WsFrame) -> Result<Option<Event>, WsError> {
        match f.opcode {
            OP_PING => Ok(Some(Event::Ping(f.payload))),
            OP_PONG => Ok(None),
            OP_CLOSE => Ok(Some(Event::Close)),
            OP_CONT => {
                let Some(mut m) = self.partial.take() else {
                    return Err(WsError::Sequence);
                };
                if m.len() + f.payload.len() > MAX_MESSAGE {
                    return Err(WsError::TooLong);
                }
                m.extend_from_slice(&f.payload);
                if f.fin {
                    Ok(Some(Event::Message(m)))
                } else {
                    self.partial = Some(m);
                    Ok(None)
                }
            }
            _ => {
                if self.partial.is_some() {
                    return Err(WsError::Sequence);
                }
                if f.fin {
                    Ok(Some(Event::Message(f.payload)))
                } else {
                    self.partial = Some(f.payload);
                    Ok(None)
                }
            }
        }
    }
}

/// Writes whole frames; flushes once the queue is empty.
async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = rx.recv().await {
        if w.write_all(&frame).await.is_err() {
            return;
        }
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// A remotecommand session over WebSocket: ends with [`Session::shutdown`].
pub(super) struct Session {
    frames: mpsc::Sender<Frame>,
    gone: Option<oneshot::Receiver<()>>,
    tasks: JoinSet<()>,
}

impl Session {
    /// Resolves when the client has closed the connection or gone away.
    pub async fn client_gone(&mut self) {
        match self.gone.take() {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending().await,
        }
    }

    /// Close (status 1000), give the queue 5 s to drain, stop the tasks.
    pub async fn shutdown(mut self) {
        let _ = self
            .frames
            .send(Frame::GoAway {
                last_good: 0,
                status: 0,
            })
            .await;
        drop(self.frames);
        // Normally quick: the client answers our close with its own, the
        // reader ends, and the writer with it once it has sent everything.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// Start a remotecommand session on an upgraded connection: the streams
/// `want` names, as the SPDY path would have gathered them.
pub(super) fn channels(
    r: impl AsyncRead + Unpin + Send + 'static,
    w: impl AsyncWrite + Unpin + Send + 'static,
    want: Want,
) -> (Session, Streams) {
    let (raw_tx, raw_rx) = mpsc::channel::<Vec<u8>>(64);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(w, raw_rx));
    // Our streams' frames, as channel messages; a FIN means nothing here.
    let raw = raw_tx.clone();
    tasks.spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            let out = match f {
                Frame::Data {
                    stream_id, data, ..
                } if !data.is_empty() => {
                    let mut m = Vec::with_capacity(data.len() + 1);
                    m.push(stream_id as u8);
                    m.extend_from_slice(&data);
                    encode(OP_BINARY, &m)
                }
                Frame::GoAway { .. } => {
                    let _ = raw.send(encode(OP_CLOSE, &1000u16.to_be_bytes())).await;
                    return;
                }
                _ => continue,
            };
            if raw.send(out).await.is_err() {
                return;
            }
        }
    });
    let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
    let (resize_tx, resize_rx) = mpsc::unbounded_channel();
    let (gone_tx, gone_rx) = oneshot::channel();
    tasks.spawn(async move {
        let mut reader = Reader {
            r,
            buf: Vec::new(),
            partial: None,
        };
        let mut stdin = Some(stdin_tx);
        let resize = resize_tx;
        while let Some(ev) = reader.next().await {
            match ev {
                Event::Ping(p) => {
                    let _ = raw_tx.send(encode(OP_PONG, &p)).await;
                }
                Event::Close => break,
                Event::Message(m) => match m.split_first() {
                    Some((&CH_STDIN, data)) => {
                        if let Some(tx) = &stdin {
                            let _ = tx.send(data.to_vec());
                        }
                    }
                    Some((&CH_RESIZE, data)) => {
                        let _ = resize.send(data.to_vec());
                    }
                    Some((&CH_CLOSE, [CH_STDIN, ..])) => stdin = None,
                    _ => {}
                },
            }
        }
        let _ = gone_tx.send(());
    });
    let writer = |ch: u8| StreamWriter::new(u32::from(ch), frames_tx.clone());
    let streams = Streams {
        error: Some(writer(CH_ERROR)),
        stdin: want.stdin.then_some(stdin_rx),
        stdout: want.stdout.then(|| writer(CH_STDOUT)),
        stderr: (want.stderr && !want.tty).then(|| writer(CH_STDERR)),
        resize: want.tty.then_some(resize_rx),
    };
    (
        Session {
            frames: frames_tx,
            gone: Some(gone_rx),
            tasks,
        },
        streams,
    )
}

/// The byte stream a SPDY-over-WebSocket client tunnels; the returned tasks
/// carry it and end with the connection (the caller owns them).
pub(super) fn tunnel(
    r: impl AsyncRead + Unpin + Send + 'static,
    w: impl AsyncWrite + Unpin + Send + 'static,
) -> (tokio::io::DuplexStream, JoinSet<()>) {
    let (ours, theirs) = tokio::io::duplex(64 << 10);
    let (mut from_conn, mut to_conn) = tokio::io::split(ours);
    let (raw_tx, raw_rx) = mpsc::channel::<Vec<u8>>(64);
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(w, raw_rx));
    let raw = raw_tx.clone();
    tasks.spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from_conn.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = raw.send(encode(OP_CLOSE, &1000u16.to_be_bytes())).await;
                    return;
                }
                Ok(n) => {
                    if raw.send(encode(OP_BINARY, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    tasks.spawn(async move {
        let mut reader = Reader {
            r,
            buf: Vec::new(),
            partial: None,
        };
        while let Some(ev) = reader.next().await {
            match ev {
                Event::Ping(p) => {
                    let _ = raw_tx.send(encode(OP_PONG, &p)).await;
                }
                Event::Close => break,
                Event::Message(m) => {
                    if to_conn.write_all(&m).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_conn.shutdown().await;
    });
    (theirs, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_rfc_example_key_is_accepted() {
        // RFC 6455, section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_parse_unmasked_and_partial_input_waits() {
        let f = masked(OP_BINARY, true, b"\x01hello");
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]), Ok(None), "cut at {cut}");
        }
        let (frame, used) = parse(&f).unwrap().unwrap();
        assert_eq!(used, f.len());
        assert_eq!(frame.payload, b"\x01hello");
        let long = vec![7u8; 300];
        let (frame, _) = parse(&masked(OP_BINARY, true, &long)).unwrap().unwrap();
        assert_eq!(frame.payload, long);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut unmasked = encode(OP_BINARY, b"x");
        assert_eq!(parse(&unmasked), Err(WsError::Unmasked));
        unmasked[0] |= 0x40;
        assert_eq!(parse(&unmasked), Err(WsError::Reserved));
        assert_eq!(parse(&masked(0x3, true, b"")), Err(WsError::Opcode(3)));
        assert_eq!(parse(&masked(OP_PING, false, b"")), Err(WsError::Control));
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert_eq!(parse(&huge), Err(WsError::TooLong));
    }

    #[tokio::test]
    async fn fragments_join_and_control_frames_come_between() {
        let mut wire = masked(OP_BINARY, false, b"\x00ab");
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONT, true, b"cd"));
        wire.extend(masked(OP_CLOSE, true, &1000u16.to_be_bytes()));
        let mut r = Reader {
            r: &wire[..],
            buf: Vec::new(),
            partial: None,
        };
        assert!(matches!(r.next().await, Some(Event::Ping(p)) if p == b"p"));
        assert!(matches!(r.next().await, Some(Event::Message(m)) if m == b"\x00abcd"));
        assert!(matches!(r.next().await, Some(Event::Close)));
        assert!(r.next().await.is_none());
        let wire = masked(OP_CONT, true, b"x");
        let mut r = Reader {
            r: &wire[..],
            buf: Vec::new(),
            partial: None,
        };
        assert!(r.next().await.is_none(), "a continuation without a start");
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        assert_eq!(encode(OP_BINARY, b"ab"), b"\x82\x02ab");
        assert_eq!(encode(OP_BINARY, &[0; 200])[..4], [0x82, 126, 0, 200]);
        assert_eq!(encode(OP_BINARY, &[0; 70000])[..2], [0x82, 127]);
    }
}
