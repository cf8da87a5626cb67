//! A job: one run of an application's driver and everything it started.
//!
//! The job owns what outlives a single task: its component, its log sink
//! and its namespace for named actors. When the
//! driver returns, [`crate::runtime::NodeCore::finish_job`] stops the job's
//! actors and cancels its queued and running tasks, as Ray does when a driver
//! exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ids::{JobId, NodeId};
use crate::logs::LogSink;
use crate::runtime::component::AppComponent;
use crate::scheduler::Cancellable;

pub struct Job {
    pub id: JobId,
    pub app: Arc<AppComponent>,
    pub logs: Arc<dyn LogSink>,
    /// Where the job's named actors live unless a call names another.
    pub namespace: String,
    /// The node running the driver.
    pub driver: NodeId,
    finished: AtomicBool,
}

impl Job {
    /// A new job whose driver runs on `driver` (this node).
    pub(crate) fn new(app: Arc<AppComponent>, logs: Arc<dyn LogSink>, driver: NodeId) -> Arc<Self> {
        let id = JobId::random();
        Self::with_id(id, app, logs, format!("job-{id}"), driver)
    }

    /// A job known under `id`: a new one, or (on another node than its
    /// driver's) one whose tasks and actors arrive here.
    pub(crate) fn with_id(
        id: JobId,
        app: Arc<AppComponent>,
        logs: Arc<dyn LogSink>,
        namespace: String,
        driver: NodeId,
    ) -> Arc<Self> {
        Arc::new(Job {
            id,
            app,
            logs,
            namespace,
            driver,
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
