//! The part of the D-Bus wire protocol the systemd cgroup driver needs:
//! SASL EXTERNAL, method calls with basic, array, struct and variant
//! arguments, and reading replies, errors and signals.
//!
//! Own code rather than a D-Bus crate: the driver makes three kinds of call
//! (start, stop, set properties) and waits for one signal (JobRemoved); the
//! crates bring an async runtime or libdbus and would triple the runtime's
//! size, which is its memory (see the `lean` profile).
//!
//! Incoming messages are outside input: `Message::parse` checks every length
//! and alignment against the buffer, caps the nesting depth and the message
//! size, and never panics (fuzz target `dbus_message`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Messages bigger than this are refused (the spec's limit is 128 MiB;
/// systemd's signals and replies are a few KiB).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Containers nested deeper than this are refused (the spec allows 64).
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("authentication refused: {0:?}")]
    Auth(String),
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// An error reply: its name (e.g. org.freedesktop.systemd1.NoSuchUnit)
    /// and message.
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DbusError {
    let what = what.into();
    move |source| DbusError::Io { what, source }
}

/// An argument value the driver sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    U32(u32),
    U64(u64),
    Str(String),
    Bytes(Vec<u8>),
    U32s(Vec<u32>),
    /// `a(sv)`: a property list.
    Props(Vec<(String, Value)>),
    /// `a(sa(sv))`: auxiliary units (always empty here).
    NoAux,
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::U32(_) => "u",
            Value::U64(_) => "t",
            Value::Str(_) => "s",
            Value::Bytes(_) => "ay",
            Value::U32s(_) => "au",
            Value::Props(_) => "a(sv)",
            Value::NoAux => "a(sa(sv))",
        }
    }
}

/// Little-endian message writer; offsets (for alignment) are from the
/// message's first byte, and the body starts 8-aligned.
#[derive(Default)]
struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    fn pad(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements align to `align`: length, padding, elements.
    fn array(&mut self, align: usize, f: impl FnOnce(&mut Self)) {
        self.pad(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.pad(align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U32(u) => self.u32(*u),
            Value::U64(u) => self.u64(*u),
            Value::Str(s) => self.str(s),
            Value::Bytes(b) => self.array(1, |e| e.buf.extend_from_slice(b)),
            Value::U32s(v) => self.array(4, |e| v.iter().for_each(|u| e.u32(*u))),
            Value::Props(p) => self.array(8, |e| {
                for (k, v) in p {
                    e.pad(8);
                    e.str(k);
                    e.sig(v.signature());
                    e.value(v);
                }
            }),
            Value::NoAux => self.array(8, |_| {}),
        }
    }
}

/// A method call to `dest` (None on a peer-to-peer connection).
pub struct Call<'a> {
    pub dest: Option<&'a str>,
    pub path: &'a str,
    pub interface: &'a str,
    pub member: &'a str,
    pub args: &'a [Value],
}

/// The bytes of a method call with this serial.
pub fn encode_call(c: &Call<'_>, serial: u32) -> Vec<u8> {
    let mut body = Enc::default();
    let mut sig = String::new();
    for a in c.args {
        sig.push_str(a.signature());
        body.value(a);
    }
    let mut m = Enc::default();
    m.buf.extend_from_slice(&[b'l', 1, 0, 1]);
    m.u32(body.buf.len() as u32);
    m.u32(serial);
    let field = |e: &mut Enc, code: u8, s: &str, kind: &str| {
        e.pad(8);
        e.buf.push(code);
        e.sig(kind);
        if kind == "g" {
            e.sig(s);
        } else {
            e.str(s);
        }
    };
    m.array(8, |e| {
        field(e, 1, c.path, "o");
        field(e, 2, c.interface, "s");
        field(e, 3, c.member, "s");
        if let Some(d) = c.dest {
            field(e, 6, d, "s");
        }
        if !sig.is_empty() {
            field(e, 8, &sig, "g");
        }
    });
    m.pad(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

pub const METHOD_CALL: u8 = 1;
pub const METHOD_RETURN: u8 = 2;
pub const ERROR: u8 = 3;
pub const SIGNAL: u8 = 4;

/// A decoded argument: the basic types, with containers flattened away
/// (the driver reads only basic arguments at the top level).
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Str(String),
    Uint(u64),
    Int(i64),
    Other,
}

/// A received message.
#[derive(Debug, Default, PartialEq)]
pub struct Message {
    pub kind: u8,
    pub serial: u32,
    pub reply_serial: Option<u32>,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub signature: String,
    /// The top-level arguments.
    pub args: Vec<Arg>,
}

impl Message {
    /// The total length of the message whose first 16 bytes are `head`.
    pub fn total_len(head: &[u8; 16]) -> Result<usize, DbusError> {
        let le = match head[0] {
            b'l' => true,
            b'B' => false,
            _ => return Err(DbusError::Malformed("bad endianness byte")),
        };
        let rd = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let body = rd(&head[4..8]) as usize;
        let fields = rd(&head[12..16]) as usize;
        let total = (16 + fields).next_multiple_of(8).saturating_add(body);
        if total > MAX_MESSAGE {
            return Err(DbusError::Malformed("message too large"));
        }
        Ok(total)
    }

    pub fn parse(buf: &[u8]) -> Result<Message, DbusError> {
        let head: &[u8; 16] = buf
            .get(..16)
            .and_then(|h| h.try_into().ok())
            .ok_or(DbusError::Malformed("short header"))?;
        let total = Self::total_len(head)?;
        if buf.len() != total {
            return Err(DbusError::Malformed("length does not match the header"));
        }
        let mut d = Dec {
            buf,
            pos: 12,
            le: buf[0] == b'l',
        };
        let mut m = Message {
            kind: buf[1],
            serial: d.at_u32(8)?,
            ..Default::default()
        };
        // Header fields: a(yv).
        let end = d.array_start(8)?;
        while d.pos < end {
            d.align(8)?;
            let code = d.byte()?;
            let sig = d.signature()?;
            let (one, rest) = split_type(&sig)?;
            if !rest.is_empty() {
                return Err(DbusError::Malformed(
                    "header field holds more than one type",
                ));
            }
            let v = d.value_of(one, 0)?;
            match (code, v) {
                (1, Arg::Str(s)) => m.path = Some(s),
                (2, Arg::Str(s)) => m.interface = Some(s),
                (3, Arg::Str(s)) => m.member = Some(s),
                (4, Arg::Str(s)) => m.error_name = Some(s),
                (5, Arg::Uint(u)) => m.reply_serial = Some(u as u32),
                (8, Arg::Str(s)) => m.signature = s,
                _ => {}
            }
        }
        if d.pos != end {
            return Err(DbusError::Malformed("header fields overrun"));
        }
        d.align(8)?;
        let mut rest = m.signature.as_str();
        while !rest.is_empty() {
            let (one, tail) = split_type(rest)?;
            m.args.push(d.value_of(one, 0)?);
            rest = tail;
        }
        if d.pos != buf.len() {
            return Err(DbusError::Malformed("body longer than its signature"));
        }
        Ok(m)
    }

    /// The first argument as a string (an error's message, a path).
    pub fn first_str(&self) -> Option<&str> {
        match self.args.first() {
            Some(Arg::Str(s)) => Some(s),
            _ => None,
        }
    }
}

/// The first complete type of a signature, and what follows it.
fn split_type(sig: &str) -> Result<(&str, &str), DbusError> {
    let b = sig.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    loop {
        let c = *b
            .get(i)
            .ok_or(DbusError::Malformed("incomplete signature"))?;
        i += 1;
        match c {
            b'a' => continue,
            b'(' | b'{' => depth += 1,
            b')' | b'}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(DbusError::Malformed("unbalanced signature"))?
            }
            b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b's' | b'o' | b'g'
            | b'v' | b'h' => {}
            _ => return Err(DbusError::Malformed("unknown type code")),
        }
        if depth == 0 {
            return Ok((&sig[..i], &sig[i..]));
        }
        if depth > MAX_DEPTH {
            return Err(DbusError::Malformed("signature nested too deep"));
        }
    }
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    le: bool,
}

impl Dec<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DbusError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DbusError::Malformed("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn align(&mut self, n: usize) -> Result<(), DbusError> {
        let to = self.pos.next_multiple_of(n);
        let pad = self.take(to - self.pos)?;
        if pad.iter().any(|b| *b != 0) {
            return Err(DbusError::Malformed("non-zero padding"));
        }
        Ok(())
    }
    fn byte(&mut self) -> Result<u8, DbusError> {
        Ok(self.take(1)?[0])
    }
    fn at_u32(&self, at: usize) -> Result<u32, DbusError> {
        let b: [u8; 4] = self
            .buf
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(DbusError::Malformed("truncated"))?;
        Ok(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }
    fn uint(&mut self, n: usize) -> Result<u64, DbusError> {
        self.align(n)?;
        let le = self.le;
        let b = self.take(n)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }
    fn string(&mut self, len: usize) -> Result<String, DbusError> {
        let s = self.take(len)?.to_vec();
        if self.byte()? != 0 {
            return Err(DbusError::Malformed("string without its NUL"));
        }
        String::from_utf8(s).map_err(|_| DbusError::Malformed("string is not UTF-8"))
    }
    fn signature(&mut self) -> Result<String, DbusError> {
        let n = usize::from(self.byte()?);
        self.string(n)
    }
    /// Starts an array: reads its length and the padding to its elements;
    /// returns where it ends.
    fn array_start(&mut self, elem_align: usize) -> Result<usize, DbusError> {
        let n = self.uint(4)? as usize;
        if n > 64 << 20 {
            return Err(DbusError::Malformed("array too long"));
        }
        self.align(elem_align)?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DbusError::Malformed("array overruns the message"))?;
        Ok(end)
    }
    /// One value of the complete type `sig`.
    fn value_of(&mut self, sig: &str, depth: usize) -> Result<Arg, DbusError> {
        if depth > MAX_DEPTH {
            return Err(DbusError::Malformed("value nested too deep"));
        }
        let b = sig.as_bytes();
        Ok(match b.first() {
            Some(b'y') => Arg::Uint(u64::from(self.byte()?)),
            Some(b'b') => match self.uint(4)? {
                0 | 1 => Arg::Other,
                _ => return Err(DbusError::Malformed("boolean other than 0 or 1")),
            },
            Some(b'n') => Arg::Int(i64::from(self.uint(2)? as u16 as i16)),
            Some(b'q') => Arg::Uint(self.uint(2)?),
            Some(b'i') => Arg::Int(i64::from(self.uint(4)? as u32 as i32)),
            Some(b'u') | Some(b'h') => Arg::Uint(self.uint(4)?),
            Some(b'x') => Arg::Int(self.uint(8)? as i64),
            Some(b't') => Arg::Uint(self.uint(8)?),
            Some(b'd') => {
                self.uint(8)?;
                Arg::Other
            }
            Some(b's') | Some(b'o') => {
                let n = self.uint(4)? as usize;
                Arg::Str(self.string(n)?)
            }
            Some(b'g') => Arg::Str(self.signature()?),
            Some(b'v') => {
                let inner = self.signature()?;
                let (one, rest) = split_type(&inner)?;
                if !rest.is_empty() {
                    return Err(DbusError::Malformed("variant holds more than one type"));
                }
                self.value_of(one, depth + 1)?
            }
            Some(b'a') => {
                let elem = &sig[1..];
                let end = self.array_start(align_of(elem))?;
                while self.pos < end {
                    let before = self.pos;
                    self.value_of(elem, depth + 1)?;
                    if self.pos == before {
                        return Err(DbusError::Malformed("array element of no size"));
                    }
                }
                if self.pos != end {
                    return Err(DbusError::Malformed("array element overruns the array"));
                }
                Arg::Other
            }
            Some(b'(') | Some(b'{') => {
                self.align(8)?;
                let mut rest = &sig[1..sig.len() - 1];
                if rest.is_empty() {
                    return Err(DbusError::Malformed("empty struct"));
                }
                while !rest.is_empty() {
                    let (one, tail) = split_type(rest)?;
                    self.value_of(one, depth + 1)?;
                    rest = tail;
                }
                Arg::Other
            }
            _ => return Err(DbusError::Malformed("unknown type code")),
        })
    }
}

fn align_of(sig: &str) -> usize {
    match sig.as_bytes().first() {
        Some(b'y' | b'g' | b'v') => 1,
        Some(b'n' | b'q') => 2,
        Some(b'x' | b't' | b'd' | b'(' | b'{') => 8,
        _ => 4,
    }
}

/// A connection: to the bus daemon (`broker`, with a unique name) or
/// straight to systemd's private socket.
pub struct Conn {
    sock: UnixStream,
    serial: u32,
    pub broker: bool,
    /// Bytes read past the last message.
    pending: Vec<u8>,
}

impl Conn {
    /// Connect and authenticate (SASL EXTERNAL as our uid); on a bus,
    /// also say Hello.
    pub fn open(path: &str, broker: bool, timeout: Duration) -> Result<Conn, DbusError> {
        let sock = UnixStream::connect(path).map_err(io(format!("connect to {path}")))?;
        sock.set_read_timeout(Some(timeout))
            .and_then(|()| sock.set_write_timeout(Some(timeout)))
            .map_err(io("set socket timeouts"))?;
        let mut c = Conn {
            sock,
            serial: 0,
            broker,
            pending: Vec::new(),
        };
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        // BEGIN right behind AUTH: EXTERNAL needs no further exchange.
        let hello = format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n");
        c.sock
            .write_all(hello.as_bytes())
            .map_err(io(format!("authenticate to {path}")))?;
        let line = c.read_line()?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth(line));
        }
        if broker {
            c.call(&Call {
                dest: Some("org.freedesktop.DBus"),
                path: "/org/freedesktop/DBus",
                interface: "org.freedesktop.DBus",
                member: "Hello",
                args: &[],
            })?;
        }
        Ok(c)
    }

    fn read_line(&mut self) -> Result<String, DbusError> {
        let mut chunk = [0u8; 256];
        loop {
            if let Some(i) = self.pending.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.pending[..i]).into_owned();
                self.pending.drain(..i + 2);
                return Ok(line);
            }
            if self.pending.len() > 4096 {
                return Err(DbusError::Auth("no line end in 4 KiB".into()));
            }
            let n = self
                .sock
                .read(&mut chunk)
                .map_err(io("read the authentication reply"))?;
            if n == 0 {
                return Err(DbusError::Auth("connection closed".into()));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    fn fill(&mut self, n: usize) -> Result<(), DbusError> {
        let mut chunk = vec![0u8; 64 << 10];
        while self.pending.len() < n {
            let got = self.sock.read(&mut chunk).map_err(io("read a message"))?;
            if got == 0 {
                return Err(DbusError::Io {
                    what: "read a message".into(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            self.pending.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// The next message on the connection.
    pub fn read(&mut self) -> Result<Message, DbusError> {
        self.fill(16)?;
        let head: [u8; 16] = self.pending[..16].try_into().expect("16 bytes");
        let total = Message::total_len(&head)?;
        self.fill(total)?;
        let m = Message::parse(&self.pending[..total]);
        self.pending.drain(..total);
        m
    }

    /// Send a call; its serial.
    pub fn send(&mut self, c: &Call<'_>) -> Result<u32, DbusError> {
        self.serial += 1;
        let bytes = encode_call(c, self.serial);
        self.sock
            .write_all(&bytes)
            .map_err(io(format!("send {}", c.member)))?;
        Ok(self.serial)
    }

    /// Call and wait for the reply; signals that arrive meanwhile go to
    /// `signals`.
    pub fn call_keeping(
        &mut self,
        c: &Call<'_>,
        signals: &mut Vec<Message>,
    ) -> Result<Message, DbusError> {
        let serial = self.send(c)?;
        loop {
            let m = self.read()?;
            match (m.kind, m.reply_serial) {
                (METHOD_RETURN, Some(s)) if s == serial => return Ok(m),
                (ERROR, Some(s)) if s == serial => {
                    return Err(DbusError::Remote {
                        name: m.error_name.clone().unwrap_or_default(),
                        message: m.first_str().unwrap_or_default().to_owned(),
                    });
                }
                (SIGNAL, _) => signals.push(m),
                _ => {}
            }
        }
    }

    pub fn call(&mut self, c: &Call<'_>) -> Result<Message, DbusError> {
        self.call_keeping(c, &mut Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(kind: u8, reply_to: u32, sig: &str, body: &[u8], extra: &[(u8, &str)]) -> Vec<u8> {
        let mut m = Enc::default();
        m.buf.extend_from_slice(&[b'l', kind, 0, 1]);
        m.u32(body.len() as u32);
        m.u32(9);
        m.array(8, |e| {
            e.pad(8);
            e.buf.push(5);
            e.sig("u");
            e.u32(reply_to);
            for (code, s) in extra {
                e.pad(8);
                e.buf.push(*code);
                e.sig("s");
                e.str(s);
            }
            if !sig.is_empty() {
                e.pad(8);
                e.buf.push(8);
                e.sig("g");
                e.sig(sig);
            }
        });
        m.pad(8);
        m.buf.extend_from_slice(body);
        m.buf
    }

    #[test]
    fn a_call_round_trips_through_the_parser() {
        let args = [
            Value::Str("berth-x.scope".into()),
            Value::Str("replace".into()),
            Value::Props(vec![
                ("Delegate".into(), Value::Bool(true)),
                ("PIDs".into(), Value::U32s(vec![42])),
                ("MemoryMax".into(), Value::U64(1 << 30)),
                ("AllowedCPUs".into(), Value::Bytes(vec![0b11])),
            ]),
            Value::NoAux,
        ];
        let bytes = encode_call(
            &Call {
                dest: Some("org.freedesktop.systemd1"),
                path: "/org/freedesktop/systemd1",
                interface: "org.freedesktop.systemd1.Manager",
                member: "StartTransientUnit",
                args: &args,
            },
            7,
        );
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.serial, 7);
        assert_eq!(m.member.as_deref(), Some("StartTransientUnit"));
        assert_eq!(m.path.as_deref(), Some("/org/freedesktop/systemd1"));
        assert_eq!(m.signature, "ssa(sv)a(sa(sv))");
        assert_eq!(m.args[0], Arg::Str("berth-x.scope".into()));
        assert_eq!(m.args.len(), 4);
    }

    #[test]
    fn the_wire_bytes_of_a_small_call_are_the_specs() {
        // StopUnit("a", "b") to no destination, serial 1: fields path,
        // interface, member and signature, each 8-aligned.
        let b = encode_call(
            &Call {
                dest: None,
                path: "/",
                interface: "i",
                member: "m",
                args: &[Value::Str("a".into()), Value::Str("b".into())],
            },
            1,
        );
        assert_eq!(&b[..4], b"l\x01\x00\x01");
        // "a" (length, byte, NUL), padding to 4, "b": 14 bytes.
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 14);
        assert_eq!(b.len() % 8, 6); // after an 8-aligned header
        let body = &b[b.len() - 14..];
        assert_eq!(body, b"\x01\0\0\0a\0\0\0\x01\0\0\0b\0");
    }

    #[test]
    fn replies_errors_and_signals_are_read() {
        let mut body = Enc::default();
        body.str("/org/freedesktop/systemd1/job/12");
        let m = Message::parse(&reply(METHOD_RETURN, 3, "o", &body.buf, &[])).unwrap();
        assert_eq!(m.reply_serial, Some(3));
        assert_eq!(m.first_str(), Some("/org/freedesktop/systemd1/job/12"));

        let mut body = Enc::default();
        body.str("Unit x.scope not loaded.");
        let m = Message::parse(&reply(
            ERROR,
            4,
            "s",
            &body.buf,
            &[(4, "org.freedesktop.systemd1.NoSuchUnit")],
        ))
        .unwrap();
        assert_eq!(
            m.error_name.as_deref(),
            Some("org.freedesktop.systemd1.NoSuchUnit")
        );

        // JobRemoved(uoss)
        let mut body = Enc::default();
        body.u32(12);
        body.str("/org/freedesktop/systemd1/job/12");
        body.str("x.scope");
        body.str("done");
        let m = Message::parse(&reply(SIGNAL, 0, "uoss", &body.buf, &[(3, "JobRemoved")])).unwrap();
        assert_eq!(m.member.as_deref(), Some("JobRemoved"));
        assert_eq!(m.args[3], Arg::Str("done".into()));
    }

    #[test]
    fn containers_in_a_body_are_walked_and_checked() {
        // PropertiesChanged(sa{sv}as), as systemd sends them unasked.
        let mut body = Enc::default();
        body.str("org.freedesktop.systemd1.Unit");
        body.array(8, |e| {
            e.pad(8);
            e.str("ActiveState");
            e.sig("s");
            e.str("active");
        });
        body.array(4, |e| e.str("Names"));
        let m = Message::parse(&reply(SIGNAL, 0, "sa{sv}as", &body.buf, &[])).unwrap();
        assert_eq!(m.args.len(), 3);
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        let mut body = Enc::default();
        body.str("done");
        let good = reply(SIGNAL, 0, "s", &body.buf, &[]);
        assert!(Message::parse(&good).is_ok());
        // Every truncation, and every single-byte corruption, is an error or
        // a message, never a panic.
        for n in 0..good.len() {
            assert!(Message::parse(&good[..n]).is_err(), "truncated at {n}");
        }
        for i in 0..good.len() {
            for v in [0u8, 0xff, b'a', b'(', b'v'] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = Message::parse(&bad);
            }
        }
        // A string length past the end.
        let mut bad = good.clone();
        let at = bad.len() - 9;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Message::parse(&bad).is_err());
        // Deep nesting.
        assert!(
            split_type(
                &"a".repeat(10)
                    .chars()
                    .chain("(".repeat(40).chars())
                    .collect::<String>()
            )
            .is_err()
        );
    }
}
