//! SPDY/3.1 framing, as far as the Kubernetes streaming protocols use it:
//! the frame codec and the zlib-compressed header blocks (one compression
//! context per direction for the whole connection, primed with the SPDY/3
//! dictionary). Pure: no I/O besides the async frame reader.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The header-block dictionary from the SPDY/3 specification.
const DICTIONARY: &[u8] = include_bytes!("spdy3.dict");

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// The largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy: read frame")]
    Io(#[from] std::io::Error),
    #[error("spdy: {0}")]
    Malformed(String),
    #[error("spdy: header block")]
    Compression(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Header names (lowercase, as SPDY/3 requires) and values; several values
/// of one name stay joined with NUL, as on the wire.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (names are compared case-insensitively).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this codec does not know (ignored).
    Unknown {
        kind: u16,
    },
}

/// Compresses header blocks sent on one connection.
pub struct HeaderEncoder {
    z: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .expect("a fresh deflate stream accepts a dictionary");
        HeaderEncoder { z }
    }

    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            self.z
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate into a growing buffer");
            // A sync flush is complete once input is consumed and the
            // output buffer was not filled to the brim.
            if (self.z.total_in() - start) as usize == raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Decompresses header blocks received on one connection.
pub struct HeaderDecoder {
    z: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        HeaderDecoder {
            z: Decompress::new(true),
        }
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            match self
                .z
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(Box::new(e)))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Compression(Box::new(e))),
            }
            if (self.z.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() > MAX_PAYLOAD * 4 {
                return Err(SpdyError::Malformed("header block too large".into()));
            }
        }
    }

    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        let mut r = Cursor { b: &raw, at: 0 };
        let n = r.u32()?;
        let mut headers = Vec::new();
        for _ in 0..n {
            let kl = r.u32()? as usize;
            let k = r.take(kl)?;
            let vl = r.u32()? as usize;
            let v = r.take(vl)?;
            headers.push((
                String::from_utf8_lossy(k).to_ascii_lowercase(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
        Ok(headers)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpdyError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| SpdyError::Malformed("frame shorter than its fields".into()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, SpdyError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u8(&mut self) -> Result<u8, SpdyError> {
        Ok(self.take(1)?[0])
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.at..];
        self.at = self.b.len();
        s
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Frame {
    /// The wire bytes; header blocks go through `enc`, which must see every
    /// header block of the connection in order.
    pub fn encode(&self, enc: &mut HeaderEncoder) -> Vec<u8> {
        let id = |s: &u32| (s & 0x7fff_ffff).to_be_bytes();
        match self {
            Frame::SynStream {
                stream_id,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&id(stream_id));
                p.extend_from_slice(&id(associated));
                p.push((priority & 0x7) << 5);
                p.push(0);
                p.extend_from_slice(&enc.encode(headers));
                control(SYN_STREAM, *flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&enc.encode(headers));
                control(SYN_REPLY, *flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&enc.encode(headers));
                control(HEADERS, *flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &p)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, k, v) in entries {
                    p.extend_from_slice(&((u32::from(*f) << 24) | (k & 0xff_ffff)).to_be_bytes());
                    p.extend_from_slice(&v.to_be_bytes());
                }
                control(SETTINGS, *flags, &p)
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut p = id(last_good).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(WINDOW_UPDATE, 0, &p)
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&id(stream_id));
                out.extend_from_slice(
                    &((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes(),
                );
                out.extend_from_slice(data);
                out
            }
            Frame::Unknown { kind } => control(*kind, 0, &[]),
        }
    }

    /// Parse one frame from its 8-byte head and payload.
    pub fn decode(
        head: [u8; 8],
        payload: &[u8],
        dec: &mut HeaderDecoder,
    ) -> Result<Frame, SpdyError> {
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            return Ok(Frame::Data {
                stream_id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                flags,
                data: payload.to_vec(),
            });
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Malformed(format!(
                "unsupported version {version}"
            )));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let mut r = Cursor { b: payload, at: 0 };
        let sid = |r: &mut Cursor<'_>| r.u32().map(|v| v & 0x7fff_ffff);
        Ok(match kind {
            SYN_STREAM => {
                let stream_id = sid(&mut r)?;
                let associated = sid(&mut r)?;
                let priority = r.u8()? >> 5;
                let _slot = r.u8()?;
                let headers = dec.decode(r.rest())?;
                Frame::SynStream {
                    stream_id,
                    associated,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                let stream_id = sid(&mut r)?;
                let headers = dec.decode(r.rest())?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => Frame::RstStream {
                stream_id: sid(&mut r)?,
                status: r.u32()?,
            },
            SETTINGS => {
                let n = r.u32()?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let fk = r.u32()?;
                    entries.push(((fk >> 24) as u8, fk & 0xff_ffff, r.u32()?));
                }
                Frame::Settings { flags, entries }
            }
            PING => Frame::Ping { id: r.u32()? },
            GOAWAY => Frame::GoAway {
                last_good: sid(&mut r)?,
                status: r.u32().unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: sid(&mut r)?,
                delta: r.u32()? & 0x7fff_ffff,
            },
            kind => Frame::Unknown { kind },
        })
    }
}

/// Read one frame; `None` at a clean end of the connection.
pub async fn read_frame(
    r: &mut (impl AsyncRead + Unpin),
    dec: &mut HeaderDecoder,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = (u32::from_be_bytes([head[4], head[5], head[6], head[7]]) & 0xff_ffff) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Frame::decode(head, &payload, dec).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn round_trip(frames: Vec<Frame>) {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(f.encode(&mut enc));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let mut r = &wire[..];
            let mut got = Vec::new();
            while let Some(f) = read_frame(&mut r, &mut dec).await.unwrap() {
                got.push(f);
            }
            got
        });
        assert_eq!(got, frames);
    }

    #[test]
    fn every_frame_kind_round_trips_through_one_compression_context() {
        round_trip(vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated: 0,
                priority: 7,
                flags: 2,
                headers: h(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                flags: 0,
                headers: h(&[("x", "a\0b")]),
            },
            Frame::RstStream {
                stream_id: 3,
                status: 5,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 9 },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream_id: 5,
                flags: 0,
                data: vec![],
            },
            Frame::GoAway {
                last_good: 5,
                status: 0,
            },
        ]);
    }

    #[test]
    fn header_blocks_use_the_spdy3_dictionary() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        // A zlib stream primed with a preset dictionary carries FDICT and
        // the dictionary's Adler-32 in its header.
        let block = HeaderEncoder::new().encode(&h(&[(":method", "POST")]));
        assert_eq!(block[1] & 0x20, 0x20, "FDICT flag");
        let mut adler = (1u32, 0u32);
        for b in DICTIONARY {
            adler.0 = (adler.0 + u32::from(*b)) % 65521;
            adler.1 = (adler.1 + adler.0) % 65521;
        }
        assert_eq!(block[2..6], ((adler.1 << 16) | adler.0).to_be_bytes());
    }

    #[test]
    fn header_names_are_lowercased_and_looked_up_case_insensitively() {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        let got = dec
            .decode(&enc.encode(&h(&[("StreamType", "stdout")])))
            .unwrap();
        assert_eq!(got, h(&[("streamtype", "stdout")]));
        assert_eq!(header(&got, "streamType"), Some("stdout"));
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        let mut dec = HeaderDecoder::new();
        let head = [0x80, 3, 0, 3, 0, 0, 0, 2];
        assert!(Frame::decode(head, &[0, 1], &mut dec).is_err());
        let head = [0x80, 2, 0, 6, 0, 0, 0, 4];
        assert!(Frame::decode(head, &[0, 0, 0, 1], &mut dec).is_err());
    }
}
