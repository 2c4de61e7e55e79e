//! Keep-alive connections to upstream endpoints: one idle set per worker and endpoint.
//!
//! A worker takes a connection for one exchange and puts it back when the
//! response has been read to its end, so a connection is only ever used by
//! the worker (and runtime) that opened it. Each worker has its own lock, which
//! only that worker's thread takes: it is never contended.

use crate::worker::worker;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// An idle connection unused for this long is closed instead of reused.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Idle connections kept per endpoint and worker; more are closed.
const KEEP_PER_ENDPOINT: usize = 1024;

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// The idle upstream connections of every worker.
#[derive(Debug)]
pub struct Connections {
    workers: Vec<Mutex<HashMap<SocketAddr, Vec<Idle>>>>,
}

impl Connections {
    pub fn new(workers: usize) -> Connections {
        Connections {
            workers: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<Idle>>> {
        self.workers[worker() % self.workers.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection to `address` that is still open,
    /// at `now` (the time the request began: close enough, and no clock read).
    pub fn take(&self, address: SocketAddr, now: Instant) -> Option<TcpStream> {
        let mut idle = self.mine();
        let list = idle.get_mut(&address)?;
        while let Some(c) = list.pop() {
            if now.saturating_duration_since(c.since) < IDLE_LIMIT && still_open(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Drops the idle connections that are closed or older than the limit at `now`.
    pub fn sweep(&self, now: Instant) {
        for worker in &self.workers {
            let mut idle = worker.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|_, list| {
                list.retain(|c| {
                    now.saturating_duration_since(c.since) < IDLE_LIMIT && still_open(&c.stream)
                });
                !list.is_empty()
            });
        }
    }

    /// Keeps a connection whose last response was read to its end; `since` is
    /// when the request it served began.
    pub fn put(&self, address: SocketAddr, stream: TcpStream, since: Instant) {
        let mut idle = self.mine();
        let list = idle.entry(address).or_default();
        if list.len() < KEEP_PER_ENDPOINT {
            list.push(Idle { stream, since });
        }
    }
}

/// False when the upstream has closed an idle connection (or sent something
/// unasked). The runtime already knows whether the socket turned readable, so
/// an idle connection that did not costs no system call to check.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}

/// Opens a connection within `timeout`.
pub async fn connect(address: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out after {}", yaml::format_duration(timeout)),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Connections {
        fn held(&self) -> usize {
            self.workers
                .iter()
                .map(|w| w.lock().unwrap().values().map(Vec::len).sum::<usize>())
                .sum()
        }
    }

    /// Real sockets on loopback: one whose peer hangs up, two that stay open.
    #[tokio::test]
    async fn sweeping_drops_closed_and_expired_idle_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Connections::new(1);
        let mut peers = Vec::new();
        let now = Instant::now();
        for _ in 0..3 {
            let stream = connect(address, Duration::from_secs(5)).await.unwrap();
            peers.push(listener.accept().await.unwrap().0);
            connections.put(address, stream, now);
        }
        assert_eq!(connections.held(), 3);
        // The first connection's peer hangs up; the sweep notices once the
        // runtime has seen the socket turn readable.
        drop(peers.remove(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while connections.held() > 2 {
            assert!(
                Instant::now() < deadline,
                "the closed connection was never swept"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            connections.sweep(Instant::now());
        }
        assert_eq!(connections.held(), 2);
        // Open ones stay, until they have idled past the limit.
        connections.sweep(now + IDLE_LIMIT - Duration::from_secs(1));
        assert_eq!(connections.held(), 2);
        assert!(connections.take(address, now).is_some());
        connections.sweep(now + IDLE_LIMIT);
        assert_eq!(connections.held(), 0);
        assert!(connections.take(address, now).is_none());
    }
}
