//! The containers' stdio in the monitor: output into the CRI log and out to
//! attached clients, attach sessions' input into stdin, terminal resizes.

use std::io::{ErrorKind as IoKind, Read, Write};

use super::{MAX_ATTACH_BACKLOG, Mode, Shim, Token};
use crate::proto::frame;

impl Shim {
    // --- stdio -------------------------------------------------------------

    /// Read once from output `i` of container `id`: log it, copy it to the
    /// attached clients. False once nothing more is to be read now.
    pub(super) fn read_output(&mut self, id: &str, i: usize) -> bool {
        let Some(e) = self.entries.get_mut(id) else {
            return false;
        };
        let Some(out) = e.io.outputs.get_mut(i) else {
            return false;
        };
        let n = match out.fd.read(&mut self.scratch) {
            Ok(n) => n,
            Err(err) if err.kind() == IoKind::Interrupted => return true,
            Err(err) if err.kind() == IoKind::WouldBlock => return false,
            // EIO from a pty master: the terminal's last holder closed it.
            Err(_) => 0,
        };
        if n == 0 {
            let mut out = e.io.outputs.remove(i);
            if let Some(log) = e.io.log.as_mut() {
                out.lines.finish(log);
            }
            if e.io.outputs.is_empty() {
                // Nothing more to attach to.
                let attached = std::mem::take(&mut e.io.attached);
                for a in attached {
                    self.close_conn(a);
                }
            }
            return false;
        }
        let data = &self.scratch[..n];
        if let Some(log) = e.io.log.as_mut() {
            out.lines.push(data, log);
        }
        let kind = out.kind;
        let mut slow = Vec::new();
        for t in &e.io.attached {
            let Some(c) = self.conns.get_mut(t) else {
                continue;
            };
            let wanted = match &c.mode {
                Mode::Attach { stdout, stderr, .. } => {
                    (kind == frame::STDOUT && *stdout) || (kind == frame::STDERR && *stderr)
                }
                _ => false,
            };
            if !wanted {
                continue;
            }
            if c.wbuf.len() > MAX_ATTACH_BACKLOG {
                slow.push(*t);
                continue;
            }
            for chunk in data.chunks(frame::MAX_PAYLOAD) {
                frame::encode(&mut c.wbuf, kind, chunk);
            }
        }
        let attached = e.io.attached.clone();
        for t in slow {
            note!("container {id}: dropping an attach client that does not keep up");
            self.drop_conn(t);
        }
        for t in attached {
            self.flush(t);
        }
        true
    }

    /// Frames from an attached client.
    pub(super) fn attach_input(&mut self, t: Token) {
        loop {
            let Some(c) = self.conns.get_mut(&t) else {
                return;
            };
            let Mode::Attach { id, stdin, .. } = &mut c.mode else {
                return;
            };
            let (kind, payload, used) = match frame::parse(&c.rbuf) {
                Ok(Some((k, p, n))) => (k, p.to_vec(), n),
                Ok(None) => return,
                Err(e) => {
                    note!("container {id}: attach: {e}");
                    self.drop_conn(t);
                    return;
                }
            };
            c.rbuf.drain(..used);
            let id = id.clone();
            let session_stdin = *stdin;
            if kind == frame::STDIN_CLOSE && session_stdin {
                *stdin = false;
            }
            let Some(e) = self.entries.get_mut(&id) else {
                return;
            };
            match kind {
                frame::STDIN if session_stdin && e.io.stdin.is_some() && !e.io.close_stdin => {
                    e.io.stdin_buf.extend_from_slice(&payload);
                    self.flush_stdin(&id);
                }
                frame::STDIN_CLOSE if session_stdin && e.io.stdin_once => {
                    e.io.close_stdin = true;
                    self.flush_stdin(&id);
                }
                frame::RESIZE => {
                    if let (Some(pty), Some((w, h))) = (&e.io.pty, frame::parse_resize(&payload)) {
                        let _ = rustix::termios::tcsetwinsize(
                            pty,
                            rustix::termios::Winsize {
                                ws_row: h,
                                ws_col: w,
                                ws_xpixel: 0,
                                ws_ypixel: 0,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// An attach session ended.
    pub(super) fn detach(&mut self, id: &str, t: Token, had_stdin: bool) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.io.attached.retain(|a| *a != t);
        if had_stdin && e.io.stdin_once {
            e.io.close_stdin = true;
            self.flush_stdin(id);
        }
    }

    /// End a connection once what is queued for it is written.
    pub(super) fn close_conn(&mut self, t: Token) {
        if let Some(c) = self.conns.get_mut(&t) {
            c.mode = Mode::Closing;
        }
        self.flush(t);
    }

    pub(super) fn flush_stdin(&mut self, id: &str) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        let io = &mut e.io;
        let mut broken = false;
        if let Some(f) = io.stdin.as_mut() {
            while !io.stdin_buf.is_empty() {
                match f.write(&io.stdin_buf) {
                    Ok(n) => {
                        io.stdin_buf.drain(..n);
                    }
                    Err(e) if e.kind() == IoKind::Interrupted => {}
                    Err(e) if e.kind() == IoKind::WouldBlock => return,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
        }
        if broken {
            // Nobody reads it any more.
            io.stdin_buf.clear();
            io.stdin = None;
        }
        if io.close_stdin && io.stdin_buf.is_empty() && io.pty.is_none() {
            io.stdin = None;
        }
        if io.stdin_buf.capacity() > 64 * 1024 && io.stdin_buf.is_empty() {
            io.stdin_buf = Vec::new();
        }
    }
}
