//! A job: one run of an application's driver and everything it started.
//!
//! The job owns what outlives a single task: its component, its log sink
//! and its namespace for named actors. When the
//! driver returns, [`crate::runtime::NodeCore::finish_job`] stops the job's
//! actors and cancels its queued and running tasks, as Ray does when a driver
//! exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ids::JobId;
use crate::logs::LogSink;
use crate::runtime::component::AppComponent;
use crate::scheduler::Cancellable;

pub struct Job {
    pub id: JobId,
    pub app: Arc<AppComponent>,
    pub logs: Arc<dyn LogSink>,
    /// Where the job's named actors live unless a call names another.
    pub namespace: String,
    finished: AtomicBool,
}

impl Job {
    pub(crate) fn new(app: Arc<AppComponent>, logs: Arc<dyn LogSink>) -> Arc<Self> {
        let id = JobId::random();
        Arc::new(Job {
            id,
            app,
            logs,
            namespace: format!("job-{id}"),
            finished: AtomicBool::new(false),
        })
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::Release);
    }
}

impl Cancellable for Job {
    fn is_cancelled(&self) -> bool {
        self.is_finished()
    }
}
