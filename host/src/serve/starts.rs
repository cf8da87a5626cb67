//! Replicas being started: how many, and how many of those starts the
//! autoscaler called off meanwhile (see [`super::deployment`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Replicas being started, and how many of those starts are called off.
#[derive(Default)]
pub(super) struct Starts {
    starting: AtomicUsize,
    cancel: AtomicUsize,
}

impl Starts {
    /// Starts not called off.
    pub(super) fn pending(&self) -> usize {
        let starting = self.starting.load(Ordering::Acquire);
        starting.saturating_sub(self.cancel.load(Ordering::Acquire))
    }

    /// Calls off up to `n` pending starts; returns how many.
    pub(super) fn cancel(&self, n: usize) -> usize {
        let n = n.min(self.pending());
        self.cancel.fetch_add(n, Ordering::AcqRel);
        n
    }

    /// Whether one start is called off (and takes it).
    pub(super) fn take_cancel(&self) -> bool {
        self.cancel
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One start, counted until dropped (a task that ends in any way).
pub(super) struct Starting(Arc<Starts>);

impl Starting {
    pub(super) fn new(starts: Arc<Starts>) -> Self {
        starts.starting.fetch_add(1, Ordering::AcqRel);
        Starting(starts)
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.0.starting.fetch_sub(1, Ordering::AcqRel) == 1 {
            // No start left to take a cancel: none may linger for the next.
            self.0.cancel.store(0, Ordering::Release);
        }
    }
}
