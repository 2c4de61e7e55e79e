//! Which worker runtime the current thread serves, and how many copies of
//! per-worker state there are.
//!
//! A leaf below everything a request touches (counters, round-robin positions,
//! upstream connections, access-log buffers): each indexes its per-worker copy
//! with [`worker`], a thread-local read with no lock and no allocation.

thread_local! {
    /// Which worker runtime this thread serves (0 outside the workers).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Copies of per-worker counters and positions: each worker counts in its
/// own, on cache lines of its own, so two workers never write the same line.
pub(crate) const SHARDS: usize = 8;

/// Marks the current thread as worker `index`: its requests use that worker's
/// upstream connections, which are registered with that worker's runtime.
pub(crate) fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The worker the current thread serves.
#[inline]
pub(crate) fn worker() -> usize {
    WORKER.with(std::cell::Cell::get)
}
