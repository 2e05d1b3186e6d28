//! One upgraded SPDY connection: a reader task that answers the client's
//! streams (SYN_REPLY), pings and resets and hands data to per-stream
//! channels, and a writer task that owns the outgoing header compression.
//! Dropping a [`Conn`] stops both.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::spdy::{FLAG_FIN, Frame, HeaderDecoder, HeaderEncoder, Headers, read_frame};

/// Frames waiting for the socket; bounded so a slow client slows the
/// process output down instead of growing memory.
const OUT_QUEUE: usize = 64;

/// A stream the client opened: its headers and what it sends on it (the
/// channel closes at FIN or reset).
pub struct Incoming {
    pub id: u32,
    pub headers: Headers,
    pub data: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// Our half of one stream. Dropping it half-closes the stream (FIN).
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Frame>,
    closed: bool,
}

impl StreamWriter {
    /// A writer for stream `id` whose frames go to `out` (the WebSocket
    /// path translates them into channel messages).
    pub(super) fn new(id: u32, out: mpsc::Sender<Frame>) -> Self {
        StreamWriter {
            id,
            out,
            closed: false,
        }
    }

    /// Send `data`; false once the connection is gone.
    pub async fn write(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(64 << 10) {
            let f = Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk.to_vec(),
            };
            if self.out.send(f).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Half-close the stream (FIN).
    pub async fn close(mut self) {
        self.closed = true;
        let _ = self.out.send(self.fin()).await;
    }

    fn fin(&self) -> Frame {
        Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Vec::new(),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.out.try_send(self.fin());
        }
    }
}

pub struct Conn {
    out: mpsc::Sender<Frame>,
    /// Streams as the client opens them; closes when the connection ends.
    pub streams: mpsc::UnboundedReceiver<Incoming>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl Conn {
    pub fn new(
        r: impl AsyncRead + Unpin + Send + 'static,
        w: impl AsyncWrite + Unpin + Send + 'static,
    ) -> Self {
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(w, out_rx));
        let reader = tokio::spawn(read_loop(r, out.clone(), streams_tx));
        Conn {
            out,
            streams,
            reader,
            writer: Some(writer),
        }
    }

    pub fn writer(&self, id: u32) -> StreamWriter {
        StreamWriter::new(id, self.out.clone())
    }

    /// Say GOAWAY, flush what is queued and close the socket.
    pub async fn shutdown(mut self) {
        let _ = self
            .out
            .send(Frame::GoAway {
                last_good: 0,
                status: 0,
            })
            .await;
        self.reader.abort();
        let _ = (&mut self.reader).await;
        let writer = self.writer.take();
        drop(self);
        if let Some(mut w) = writer
            && tokio::time::timeout(Duration::from_secs(5), &mut w)
                .await
                .is_err()
        {
            w.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
        // The writer ends by itself once every sender is gone; a stuck one
        // (client not reading) is stopped here.
        if let Some(w) = &self.writer {
            w.abort();
        }
    }
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Frame>) {
    let mut enc = HeaderEncoder::new();
    while let Some(f) = rx.recv().await {
        let bytes = f.encode(&mut enc);
        if w.write_all(&bytes).await.is_err() {
            return;
        }
        // Batch what is already queued into one flush.
        if rx.is_empty() && w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop(
    mut r: impl AsyncRead + Unpin,
    out: mpsc::Sender<Frame>,
    streams: mpsc::UnboundedSender<Incoming>,
) {
    let mut dec = HeaderDecoder::new();
    let mut open: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>> = HashMap::new();
    loop {
        let frame = match read_frame(&mut r, &mut dec).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "streaming connection ended");
                return;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    open.insert(stream_id, tx);
                }
                let reply = Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Vec::new(),
                };
                if out.send(reply).await.is_err() {
                    return;
                }
                let _ = streams.send(Incoming {
                    id: stream_id,
                    headers,
                    data: rx,
                });
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = open.get(&stream_id)
                    && !data.is_empty()
                {
                    let _ = tx.send(data);
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                open.remove(&stream_id);
            }
            Frame::Ping { id } => {
                if out.send(Frame::Ping { id }).await.is_err() {
                    return;
                }
            }
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::spdy::header;

    /// The client side of a connection, as client-go's spdystream drives it.
    struct Client {
        r: tokio::io::ReadHalf<tokio::io::DuplexStream>,
        w: tokio::io::WriteHalf<tokio::io::DuplexStream>,
        enc: HeaderEncoder,
        dec: HeaderDecoder,
    }

    impl Client {
        async fn send(&mut self, f: Frame) {
            self.w.write_all(&f.encode(&mut self.enc)).await.unwrap();
        }
        async fn recv(&mut self) -> Option<Frame> {
            read_frame(&mut self.r, &mut self.dec).await.unwrap()
        }
    }

    fn pair() -> (Conn, Client) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(ours);
        let (cr, cw) = tokio::io::split(theirs);
        let client = Client {
            r: cr,
            w: cw,
            enc: HeaderEncoder::new(),
            dec: HeaderDecoder::new(),
        };
        (Conn::new(r, w), client)
    }

    #[tokio::test]
    async fn streams_are_answered_data_flows_both_ways_and_fin_closes() {
        let (mut conn, mut c) = pair();
        c.send(Frame::SynStream {
            stream_id: 1,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), "stdin".into())],
        })
        .await;
        assert_eq!(
            c.recv().await,
            Some(Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![]
            })
        );
        let mut inc = conn.streams.recv().await.unwrap();
        assert_eq!(header(&inc.headers, "streamType"), Some("stdin"));
        c.send(Frame::Ping { id: 7 }).await;
        assert_eq!(c.recv().await, Some(Frame::Ping { id: 7 }));
        c.send(Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: b"abc".to_vec(),
        })
        .await;
        assert_eq!(inc.data.recv().await.as_deref(), Some(&b"abc"[..]));
        assert_eq!(inc.data.recv().await, None, "FIN ends the stream");

        let w = conn.writer(1);
        assert!(w.write(b"out").await);
        w.close().await;
        assert_eq!(
            c.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: b"out".to_vec()
            })
        );
        assert_eq!(
            c.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: vec![]
            })
        );
        conn.shutdown().await;
        assert!(matches!(c.recv().await, Some(Frame::GoAway { .. })));
        assert_eq!(c.recv().await, None, "socket closed after GOAWAY");
    }
}
