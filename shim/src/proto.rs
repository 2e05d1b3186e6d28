//! The berthd <-> berth-shim protocol: one JSON request per line on the
//! shim's unix socket, one JSON response line back.
//!
//! `Attach` is the one request after which the connection changes mode: once
//! the shim answered `ok`, both sides exchange binary frames (see [`frame`])
//! until the container's output ends or either side closes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the shim runs a container's OCI runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeCmd {
    /// The runtime binary (berth-runc, runc, crun).
    pub binary: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
    /// `--systemd-cgroup`: berthd's cgroup driver is systemd.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub systemd_cgroup: bool,
}

impl RuntimeCmd {
    /// The global flags every runtime command starts with.
    pub fn global_args(&self) -> Vec<std::ffi::OsString> {
        let mut a = vec!["--root".into(), self.root.clone().into_os_string()];
        if self.systemd_cgroup {
            a.push("--systemd-cgroup".into());
        }
        a
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// `<runtime> create` the bundle, with stdout/stderr into the CRI log.
    Create {
        id: String,
        bundle: PathBuf,
        runtime: RuntimeCmd,
        log_path: Option<PathBuf>,
        /// Keep a pipe to the container's stdin for attach sessions.
        #[serde(default)]
        stdin: bool,
        /// Close the container's stdin when the first attach session that
        /// wrote to it ends.
        #[serde(default)]
        stdin_once: bool,
        /// Run on a terminal: `--console-socket`, the shim keeps the pty
        /// master, logs its output as stdout.
        #[serde(default)]
        tty: bool,
    },
    Start {
        id: String,
    },
    Kill {
        id: String,
        signal: i32,
        all: bool,
    },
    /// Forget an exited (or never started) container and `<runtime> delete` it.
    Delete {
        id: String,
    },
    /// One container's state; `Wait` blocks until it has exited.
    State {
        id: String,
    },
    Wait {
        id: String,
    },
    /// Every container the shim knows.
    List,
    /// Reopen a container's log file (after the kubelet rotated it).
    ReopenLog {
        id: String,
    },
    /// Exit once no container is left.
    Shutdown,
    /// Join a running container's stdio; after the `ok` answer the
    /// connection carries [`frame`]s.
    Attach {
        id: String,
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: Status,
    pub pid: i32,
    /// Exit code; 128 + signal for a signalled process.
    pub exit_code: Option<i32>,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub bundle: PathBuf,
    pub runtime: RuntimeCmd,
    pub log_path: Option<PathBuf>,
    /// The OOM killer killed a process of the container while it ran (seen
    /// by the monitor as it happened: the cgroup may be gone at exit).
    #[serde(default)]
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    State { state: ContainerState },
    List { containers: Vec<ContainerState> },
    Error { kind: ErrorKind, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Runtime,
    BadRequest,
}

/// The binary frames of an attach session: one kind byte, a big-endian u32
/// payload length, the payload.
pub mod frame {
    /// berthd -> shim: bytes for the container's stdin.
    pub const STDIN: u8 = 0;
    /// shim -> berthd: the container's stdout (the terminal's output with a
    /// tty).
    pub const STDOUT: u8 = 1;
    /// shim -> berthd: the container's stderr.
    pub const STDERR: u8 = 2;
    /// berthd -> shim: the client closed its stdin (empty payload).
    pub const STDIN_CLOSE: u8 = 3;
    /// berthd -> shim: resize the terminal: width then height, u16 each.
    pub const RESIZE: u8 = 4;

    pub const HEADER: usize = 5;
    /// The largest payload either side sends or accepts.
    pub const MAX_PAYLOAD: usize = 64 * 1024;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FrameError {
        UnknownKind(u8),
        TooLong(usize),
    }

    impl std::fmt::Display for FrameError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                FrameError::UnknownKind(k) => write!(f, "unknown attach frame kind {k}"),
                FrameError::TooLong(n) => {
                    write!(f, "attach frame of {n} bytes is longer than {MAX_PAYLOAD}")
                }
            }
        }
    }

    /// A parsed frame: kind, payload, bytes of the buffer it used.
    pub type Frame<'a> = (u8, &'a [u8], usize);

    /// The first whole frame in `buf`, or `None` while it is incomplete.
    pub fn parse(buf: &[u8]) -> Result<Option<Frame<'_>>, FrameError> {
        let Some(head) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let kind = head[0];
        if kind > RESIZE {
            return Err(FrameError::UnknownKind(kind));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        Ok(buf
            .get(HEADER..HEADER + len)
            .map(|payload| (kind, payload, HEADER + len)))
    }

    /// Append one frame to `out`.
    pub fn encode(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// A `RESIZE` payload's (width, height).
    pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
        match payload {
            [w0, w1, h0, h1] => Some((
                u16::from_be_bytes([*w0, *w1]),
                u16::from_be_bytes([*h0, *h1]),
            )),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_round_trip_and_bad_ones_are_refused() {
            let mut buf = Vec::new();
            encode(&mut buf, STDOUT, b"hello");
            encode(&mut buf, RESIZE, &[0, 80, 0, 24]);
            let (k, p, n) = parse(&buf).unwrap().unwrap();
            assert_eq!((k, p, n), (STDOUT, &b"hello"[..], 10));
            let (k, p, _) = parse(&buf[n..]).unwrap().unwrap();
            assert_eq!(k, RESIZE);
            assert_eq!(parse_resize(p), Some((80, 24)));
            assert_eq!(parse(&buf[..7]).unwrap(), None);
            assert_eq!(parse(&[9, 0, 0, 0, 0]), Err(FrameError::UnknownKind(9)));
            assert_eq!(parse(&[0, 0, 2, 0, 1]), Err(FrameError::TooLong(0x20001)));
        }
    }
}
