//! The parent <-> init channel: a SOCK_SEQPACKET socketpair carrying small
//! tagged messages. A create costs two messages in the common case (Go,
//! Ready); hooks and the intermediate process add one pair each.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// Parent -> child: maps and cgroup are in place, continue.
pub const GO: u8 = b'G';
/// Intermediate -> parent: namespaces unshared, write the id maps now.
pub const UNSHARED: u8 = b'U';
/// Intermediate -> parent: the init's pid (4 bytes LE).
pub const PID: u8 = b'P';
/// Init -> parent: run prestart/createRuntime hooks, then send GO.
pub const HOOKS: u8 = b'H';
/// Init -> parent: set up, waiting for start.
pub const READY: u8 = b'R';
/// Init -> parent: failed; the payload is the message.
pub const ERROR: u8 = b'E';
/// Parent -> init (`run`): start now.
pub const START: u8 = b'S';

pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

pub fn send(sock: BorrowedFd<'_>, tag: u8, payload: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1 + payload.len().min(8191));
    buf.push(tag);
    buf.extend_from_slice(&payload[..payload.len().min(8191)]);
    loop {
        match nix::sys::socket::send(
            sock.as_raw_fd(),
            &buf,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One message; `None` when the peer closed the channel.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut buf = vec![0u8; 8192];
    loop {
        match nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                buf.truncate(n);
                let tag = buf.remove(0);
                return Ok(Some((tag, buf)));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
