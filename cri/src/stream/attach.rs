//! A streamed `Attach`: bridge the client's remotecommand streams to the
//! container's stdio, which the pod's monitor holds (an attach session on
//! its socket, in [`frame`]s). The session ends when the container's output
//! ends (it exited) or the client goes away; the container keeps running.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::exec::{Link, Outcome, Streams, TermSize, finish};
use super::{AttachRequest, ExecProtocol};
use crate::shim::proto::{Request, Response, frame};

pub(super) async fn serve(mut link: Link, mut s: Streams, req: AttachRequest, proto: ExecProtocol) {
    let error = s.error.take();
    let outcome = tokio::select! {
        o = bridge(&req, s) => o,
        () = link.client_gone() => Outcome::Exited(0),
    };
    finish(link, error, proto, &[], &outcome).await;
}

async fn bridge(req: &AttachRequest, s: Streams) -> Outcome {
    let shim_req = Request::Attach {
        id: req.container_id.clone(),
        stdin: s.stdin.is_some(),
        stdout: s.stdout.is_some(),
        // A terminal has one output stream.
        stderr: s.stderr.is_some() && !req.tty,
    };
    let sock = match crate::shim::client::attach(&req.socket, &shim_req).await {
        Ok((_, Some(sock))) => sock,
        Ok((Response::Error { message, .. }, None)) => return Outcome::Failed(message),
        Ok((other, None)) => return Outcome::Failed(format!("attach: monitor answered {other:?}")),
        Err(e) => return Outcome::Failed(format!("attach to container {}: {e}", req.container_id)),
    };
    let (mut from_shim, mut to_shim) = sock.into_split();
    // Frames for the monitor come from two streams (stdin, resize): one
    // writer owns the socket's write half.
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if to_shim.write_all(&f).await.is_err() {
                break;
            }
        }
        // Input is over, output is not: keep the write half (dropping it
        // would shut it down, and the monitor takes EOF as the client gone)
        // until the session ends and this task is aborted.
        std::future::pending::<()>().await;
        drop(to_shim);
    });
    let mut inputs = tokio::task::JoinSet::new();
    if let Some(mut stdin) = s.stdin {
        let tx = tx.clone();
        inputs.spawn(async move {
            while let Some(chunk) = stdin.recv().await {
                for part in chunk.chunks(frame::MAX_PAYLOAD) {
                    let mut f = Vec::with_capacity(part.len() + frame::HEADER);
                    frame::encode(&mut f, frame::STDIN, part);
                    if tx.send(f).is_err() {
                        return;
                    }
                }
            }
            // The client closed its stdin.
            let mut f = Vec::new();
            frame::encode(&mut f, frame::STDIN_CLOSE, &[]);
            let _ = tx.send(f);
        });
    }
    if let Some(mut resize) = s.resize {
        let tx = tx.clone();
        inputs.spawn(async move {
            let mut pending = Vec::new();
            while let Some(chunk) = resize.recv().await {
                pending.extend_from_slice(&chunk);
                // client-go writes one JSON object per line.
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    if let Ok(size) = serde_json::from_slice::<TermSize>(&line) {
                        let mut f = Vec::new();
                        let mut p = size.width.to_be_bytes().to_vec();
                        p.extend_from_slice(&size.height.to_be_bytes());
                        frame::encode(&mut f, frame::RESIZE, &p);
                        if tx.send(f).is_err() {
                            return;
                        }
                    }
                }
                if pending.len() > 4096 {
                    pending.clear();
                }
            }
        });
    }
    drop(tx);
    // The container's output, until the monitor ends the session.
    let (stdout, stderr) = (s.stdout, s.stderr);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    let ended = 'read: loop {
        let n = match from_shim.read(&mut chunk).await {
            Ok(0) | Err(_) => break 'read Outcome::Exited(0),
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (kind, payload, used) = match frame::parse(&buf) {
                Ok(Some((k, p, used))) => (k, p.to_vec(), used),
                Ok(None) => break,
                Err(e) => break 'read Outcome::Failed(format!("attach: monitor sent {e}")),
            };
            buf.drain(..used);
            let w = match kind {
                frame::STDOUT => stdout.as_ref(),
                frame::STDERR => stderr.as_ref(),
                _ => None,
            };
            if let Some(w) = w
                && !w.write(&payload).await
            {
                // The client went away.
                break 'read Outcome::Exited(0);
            }
        }
    };
    inputs.abort_all();
    writer.abort();
    for w in [stdout, stderr].into_iter().flatten() {
        w.close().await;
    }
    ended
}
