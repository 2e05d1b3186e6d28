//! Idle detection for streaming connections: the socket's halves are
//! wrapped so that every byte read or written moves one clock, and
//! [`Clock::idle_for`] resolves once it has not moved for the limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Clone)]
pub struct Clock {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte either way.
    last: Arc<AtomicU64>,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn track<T>(&self, inner: T) -> Tracked<T> {
        Tracked {
            inner,
            clock: self.clone(),
        }
    }

    /// Resolves once no byte has moved for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.epoch.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Tracked<T> {
    inner: T,
    clock: Clock,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn traffic_either_way_keeps_a_connection_alive() {
        let (a, mut b) = tokio::io::duplex(64);
        let clock = Clock::new();
        let mut a = clock.track(a);
        let limit = Duration::from_millis(1500);
        let idle = clock.idle_for(limit);
        tokio::pin!(idle);
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            a.write_all(b"x").await.unwrap();
            assert!(
                futures_poll(&mut idle).await.is_none(),
                "idle despite a write"
            );
            tokio::time::sleep(Duration::from_millis(400)).await;
            b.write_all(b"y").await.unwrap();
            let mut one = [0u8; 1];
            a.read_exact(&mut one).await.unwrap();
            assert!(
                futures_poll(&mut idle).await.is_none(),
                "idle despite a read"
            );
        }
        let start = tokio::time::Instant::now();
        idle.await;
        assert!(start.elapsed() >= limit);
    }

    /// Poll once: Some if ready.
    async fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::select! {
            biased;
            o = f => Some(o),
            () = std::future::ready(()) => None,
        }
    }
}
