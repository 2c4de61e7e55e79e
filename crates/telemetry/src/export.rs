//! The span exporter's worker: a bounded queue that request paths offer spans
//! to without waiting, drained in batches that go out when `batch_size` spans
//! are held or the oldest has waited `interval`, and flushed when the
//! exporter stops.
//!
//! When the queue is full (a slow or absent collector) an offered span is
//! dropped, and the caller counts it: a request never waits on telemetry.
//! Sending is the caller's [`Transport`]: this module owns the queue, the
//! batching policy and the thread that applies it, not a socket. The worker
//! is a plain thread, so the exporter needs no async runtime and a slow
//! collector never holds up a runtime's workers.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Ships one batch of spans (encoding, posting, counting the outcome).
pub trait Transport<S>: Send + 'static {
    /// Called for one batch at a time on the exporter's thread; the next
    /// batch waits for it to return, so a slow collector fills the queue
    /// instead of piling up requests. It should bound its own time.
    fn send(&mut self, batch: &[S]);
}

/// Queue and batch sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    /// Spans held while the collector is slow; more are dropped.
    pub queue: usize,
    /// Spans per batch.
    pub batch_size: usize,
    /// The longest a span waits in the queue before it is sent.
    pub interval: Duration,
}

enum Message<S> {
    Span(S),
    Stop,
}

/// The request path's handle on the exporter: [`SpanQueue::offer`] never waits.
#[derive(Debug)]
pub struct SpanQueue<S> {
    tx: SyncSender<Message<S>>,
}

impl<S> Clone for SpanQueue<S> {
    fn clone(&self) -> SpanQueue<S> {
        SpanQueue {
            tx: self.tx.clone(),
        }
    }
}

impl<S> SpanQueue<S> {
    /// Queues `span`; `false` when it was dropped (queue full, or the
    /// exporter stopped): the caller counts it.
    pub fn offer(&self, span: S) -> bool {
        match self.tx.try_send(Message::Span(span)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The running exporter, stopped by [`Exporter::flush_and_stop`].
#[derive(Debug)]
pub struct Exporter<S> {
    tx: SyncSender<Message<S>>,
    thread: JoinHandle<()>,
}

impl<S> Exporter<S> {
    /// Sends what is queued, then ends; spans offered afterwards are dropped.
    /// Blocks until the last batch is sent (each bounded by the transport).
    pub fn flush_and_stop(self) {
        // Waits for room when the queue is full: the worker is draining it.
        let _ = self.tx.send(Message::Stop);
        let _ = self.thread.join();
    }
}

/// Starts the exporter's thread.
///
/// # Errors
///
/// When the operating system cannot start a thread.
pub fn start<S, T>(batching: Batching, transport: T) -> std::io::Result<(SpanQueue<S>, Exporter<S>)>
where
    S: Send + 'static,
    T: Transport<S>,
{
    let (tx, rx) = sync_channel(batching.queue.max(1));
    let batch_size = batching.batch_size.max(1);
    let interval = batching.interval;
    let thread = std::thread::Builder::new()
        .name("span-exporter".into())
        .spawn(move || run(&rx, batch_size, interval, transport))?;
    Ok((SpanQueue { tx: tx.clone() }, Exporter { tx, thread }))
}

fn run<S, T: Transport<S>>(
    rx: &Receiver<Message<S>>,
    batch_size: usize,
    interval: Duration,
    mut transport: T,
) {
    let mut batch = Vec::with_capacity(batch_size);
    // When the oldest span of `batch` must go out.
    let mut due = Instant::now();
    loop {
        let message = if batch.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(due.saturating_duration_since(Instant::now()))
        };
        match message {
            Ok(Message::Span(span)) => {
                if batch.is_empty() {
                    due = Instant::now() + interval;
                }
                batch.push(span);
                if batch.len() >= batch_size {
                    transport.send(&batch);
                    batch.clear();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                transport.send(&batch);
                batch.clear();
            }
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // What was queued before the stop still goes out.
    while let Ok(Message::Span(span)) = rx.try_recv() {
        batch.push(span);
        if batch.len() >= batch_size {
            transport.send(&batch);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        transport.send(&batch);
    }
}

#[cfg(test)]
mod tests;
