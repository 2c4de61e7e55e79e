//! The worker against a transport that reports every batch it is given and,
//! when asked, holds each one until the test lets it go.

use super::*;
use std::sync::mpsc::{self, Receiver as StdReceiver, Sender};

/// Reports each batch, then waits for a permit when gated.
struct Recorder {
    batches: Sender<Vec<u32>>,
    gate: Option<StdReceiver<()>>,
}

impl Transport<u32> for Recorder {
    fn send(&mut self, batch: &[u32]) {
        let _ = self.batches.send(batch.to_vec());
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
    }
}

/// A recorder, its batches, and (when gated) the sender of permits.
fn recorder(gated: bool) -> (Recorder, StdReceiver<Vec<u32>>, Option<Sender<()>>) {
    let (batches, rx) = mpsc::channel();
    let (permits, gate) = if gated {
        let (tx, rx) = mpsc::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    (Recorder { batches, gate }, rx, permits)
}

fn next(rx: &StdReceiver<Vec<u32>>) -> Vec<u32> {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a batch within 30 s")
}

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn full_batches_go_out_at_once_and_the_rest_at_stop() {
    let (transport, batches, _) = recorder(false);
    let (queue, exporter) = start(
        Batching {
            queue: 100,
            batch_size: 3,
            interval: HOUR,
        },
        transport,
    )
    .expect("thread");
    for span in 0..7 {
        assert!(queue.offer(span));
    }
    assert_eq!(next(&batches), [0, 1, 2]);
    assert_eq!(next(&batches), [3, 4, 5]);
    exporter.flush_and_stop();
    assert_eq!(next(&batches), [6]);
    assert!(batches.recv().is_err(), "nothing after the flush");
    assert!(!queue.offer(7), "a stopped exporter takes no spans");
}

#[test]
fn a_partial_batch_goes_out_after_the_interval() {
    let (transport, batches, _) = recorder(false);
    let (queue, exporter) = start(
        Batching {
            queue: 100,
            batch_size: 100,
            interval: Duration::from_millis(5),
        },
        transport,
    )
    .expect("thread");
    assert!(queue.offer(1) && queue.offer(2));
    let first = next(&batches);
    assert!(queue.offer(3));
    let mut sent = first;
    sent.extend(next(&batches));
    assert_eq!(sent, [1, 2, 3], "in order, without waiting for a stop");
    exporter.flush_and_stop();
}

#[test]
fn a_full_queue_drops_instead_of_waiting() {
    let (transport, batches, permits) = recorder(true);
    let permits = permits.expect("gated");
    let (queue, exporter) = start(
        Batching {
            queue: 2,
            batch_size: 1,
            interval: HOUR,
        },
        transport,
    )
    .expect("thread");
    assert!(queue.offer(0));
    // The transport now holds span 0; the queue has room for two more.
    assert_eq!(next(&batches), [0]);
    let offered: Vec<bool> = (1..=4).map(|span| queue.offer(span)).collect();
    assert_eq!(offered, [true, true, false, false]);
    for _ in 0..3 {
        permits.send(()).expect("the transport waits");
    }
    exporter.flush_and_stop();
    assert_eq!(next(&batches), [1]);
    assert_eq!(next(&batches), [2]);
}
