//! Waiting for several objects at once: a counter that wakes one waiter
//! when enough of them are ready.

use super::*;

/// Counts objects becoming ready and wakes one waiter when enough are.
pub(crate) struct ReadyCounter {
    pub(super) ready: AtomicUsize,
    needed: usize,
    notify: Notify,
    /// Set when the waiter stopped waiting (done or timed out).
    closed: std::sync::atomic::AtomicBool,
}

impl ReadyCounter {
    pub(crate) fn new(already_ready: usize, needed: usize) -> Arc<Self> {
        Arc::new(ReadyCounter {
            ready: AtomicUsize::new(already_ready),
            needed,
            notify: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The waiter is gone: listeners still registered may be dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn add_ready(&self, n: usize) {
        self.ready.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ready.load(Ordering::Acquire) >= self.needed {
                return;
            }
            notified.await;
        }
    }
}

impl ReadyListener for ReadyCounter {
    fn on_ready(&self) {
        if self.ready.fetch_add(1, Ordering::AcqRel) + 1 >= self.needed {
            self.notify.notify_one();
        }
    }

    fn is_done(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.ready.load(Ordering::Acquire) >= self.needed
    }
}
