//! The parent <-> init channel: a SOCK_SEQPACKET socketpair carrying small
//! tagged messages. A create costs two messages in the common case (Go,
//! Ready); hooks and the intermediate process add one pair each.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
/// Init -> parent: the seccomp notify fd rides along (SCM_RIGHTS); the
/// parent hands it to the seccomp agent. No answer: a notified syscall
/// simply waits for the agent.
pub const SECCOMP: u8 = b'N';

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

/// A message with an fd attached (`SECCOMP`).
pub fn send_fd(sock: BorrowedFd<'_>, tag: u8, fd: BorrowedFd<'_>) -> io::Result<()> {
    crate::sys::send_fd_with(sock, &[tag], fd.as_raw_fd())
}

/// One message; `None` when the peer closed the channel. An fd sent along
/// is closed.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<Option<(u8, Vec<u8>)>> {
    Ok(recv_with_fd(sock)?.map(|(t, p, _)| (t, p)))
}

/// A message: its tag, its payload, and the fd sent with it, if any.
pub type Msg = (u8, Vec<u8>, Option<OwnedFd>);

/// One message; `None` when the peer closed the channel.
pub fn recv_with_fd(sock: BorrowedFd<'_>) -> io::Result<Option<Msg>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = vec![0u8; 8192];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    loop {
        let mut iov = [io::IoSliceMut::new(&mut buf)];
        let (n, fd) = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for f in fds {
                            // SAFETY: the kernel installed `f` in our table
                            // for this message; nothing else owns it.
                            let owned = unsafe { OwnedFd::from_raw_fd(f) };
                            fd.get_or_insert(owned);
                        }
                    }
                }
                (msg.bytes, fd)
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        let tag = buf.remove(0);
        return Ok(Some((tag, buf, fd)));
    }
}
