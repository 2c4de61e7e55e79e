//! The span exporter's worker: a bounded queue that request paths offer spans
//! to without waiting, drained in batches that go out when `batch_size` spans
//! are held or `interval` has passed, and flushed when the exporter stops.
//!
//! When the queue is full (a slow or absent collector) an offered span is
//! dropped, and the caller counts it: a request never waits on telemetry.
//! Sending is the caller's [`Transport`]: this module owns the queue and the
//! batching policy, not a socket. It runs as a task on the caller's tokio
//! runtime.

use std::future::Future;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Ships one batch of spans (encoding, posting, counting the outcome).
pub trait Transport<S>: Send + 'static {
    /// Called for one batch at a time; the next batch waits for it to return,
    /// so a slow collector fills the queue instead of piling up requests.
    fn send(&mut self, batch: &[S]) -> impl Future<Output = ()> + Send;
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

/// The request path's handle on the exporter: [`SpanQueue::offer`] never waits.
#[derive(Debug)]
pub struct SpanQueue<S> {
    tx: mpsc::Sender<S>,
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
        self.tx.try_send(span).is_ok()
    }
}

/// The running exporter, stopped by [`Exporter::flush_and_stop`].
#[derive(Debug)]
pub struct Exporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Sends what is queued, then ends: no span offered after this is kept.
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the exporter task on the current tokio runtime.
pub fn start<S, T>(batching: Batching, transport: T) -> (SpanQueue<S>, Exporter)
where
    S: Send + 'static,
    T: Transport<S>,
{
    let (tx, rx) = mpsc::channel(batching.queue.max(1));
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(
        rx,
        stop_rx,
        batching.batch_size.max(1),
        batching.interval,
        transport,
    ));
    (SpanQueue { tx }, Exporter { stop, task })
}

async fn run<S, T: Transport<S>>(
    mut rx: mpsc::Receiver<S>,
    mut stop: oneshot::Receiver<()>,
    batch_size: usize,
    interval: Duration,
    mut transport: T,
) {
    let mut batch = Vec::with_capacity(batch_size);
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            span = rx.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    if batch.len() >= batch_size {
                        transport.send(&batch).await;
                        batch.clear();
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                if !batch.is_empty() {
                    transport.send(&batch).await;
                    batch.clear();
                }
            }
            _ = &mut stop => {
                // No new spans from here on; what is queued still goes out.
                rx.close();
                while let Some(span) = rx.recv().await {
                    batch.push(span);
                    if batch.len() >= batch_size {
                        transport.send(&batch).await;
                        batch.clear();
                    }
                }
                break;
            }
        }
    }
    if !batch.is_empty() {
        transport.send(&batch).await;
    }
}

#[cfg(test)]
mod tests;
