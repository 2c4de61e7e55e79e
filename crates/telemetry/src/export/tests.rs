//! The worker against a transport that reports every batch it is given and,
//! when asked, holds the first one until the test lets it go.

use super::*;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{Semaphore, mpsc::unbounded_channel};

/// Reports each batch; each send first takes a permit from `gate`.
struct Recorder {
    batches: mpsc::UnboundedSender<Vec<u32>>,
    gate: Arc<Semaphore>,
}

impl Transport<u32> for Recorder {
    async fn send(&mut self, batch: &[u32]) {
        let _ = self.batches.send(batch.to_vec());
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
    }
}

fn recorder(open: bool) -> (Recorder, UnboundedReceiver<Vec<u32>>, Arc<Semaphore>) {
    let (batches, rx) = unbounded_channel();
    let gate = Arc::new(Semaphore::new(if open {
        Semaphore::MAX_PERMITS
    } else {
        0
    }));
    (
        Recorder {
            batches,
            gate: Arc::clone(&gate),
        },
        rx,
        gate,
    )
}

async fn next(rx: &mut UnboundedReceiver<Vec<u32>>) -> Vec<u32> {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a batch within 30 s")
        .expect("the exporter is running")
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn full_batches_go_out_at_once_and_the_rest_at_stop() {
    let (transport, mut batches, _gate) = recorder(true);
    let (queue, exporter) = start(
        Batching {
            queue: 100,
            batch_size: 3,
            interval: HOUR,
        },
        transport,
    );
    for span in 0..7 {
        assert!(queue.offer(span));
    }
    assert_eq!(next(&mut batches).await, [0, 1, 2]);
    assert_eq!(next(&mut batches).await, [3, 4, 5]);
    exporter.flush_and_stop().await;
    assert_eq!(next(&mut batches).await, [6]);
    assert!(batches.recv().await.is_none(), "nothing after the flush");
    assert!(!queue.offer(7), "a stopped exporter takes no spans");
}

#[tokio::test]
async fn a_partial_batch_goes_out_after_the_interval() {
    let (transport, mut batches, _gate) = recorder(true);
    let (queue, exporter) = start(
        Batching {
            queue: 100,
            batch_size: 100,
            interval: Duration::from_millis(5),
        },
        transport,
    );
    assert!(queue.offer(1) && queue.offer(2));
    assert_eq!(next(&mut batches).await, [1, 2]);
    exporter.flush_and_stop().await;
}

#[tokio::test]
async fn a_full_queue_drops_instead_of_waiting() {
    let (transport, mut batches, gate) = recorder(false);
    let (queue, exporter) = start(
        Batching {
            queue: 2,
            batch_size: 1,
            interval: HOUR,
        },
        transport,
    );
    assert!(queue.offer(0));
    // The transport now holds span 0; the queue has room for two more.
    assert_eq!(next(&mut batches).await, [0]);
    let offered: Vec<bool> = (1..=4).map(|span| queue.offer(span)).collect();
    assert_eq!(offered, [true, true, false, false]);
    gate.add_permits(Semaphore::MAX_PERMITS);
    exporter.flush_and_stop().await;
    assert_eq!(next(&mut batches).await, [1]);
    assert_eq!(next(&mut batches).await, [2]);
}
