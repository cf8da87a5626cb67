//! Where the head runs the drivers of submitted jobs: a port, so the head
//! holds no node. A node serving as the head plugs itself in; a test (or a
//! head that runs drivers elsewhere) can plug in something else.
//!
//! ```no_run
//! use fabric_host::{Node, NodeConfig, head::Drivers};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! let drivers: &dyn Drivers = &node;
//! let app = drivers.load(std::fs::read("job.wasm")?.into(), "acme").await?;
//! println!("jobs start on node {}", drivers.node_id());
//! # let _ = app; Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::LoadError;
use crate::ids::{JobId, NodeId};
use crate::logs::LogSink;
use crate::{AppComponent, JobOptions, JobOutcome, Node};

/// A boxed future that outlives the call that made it.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the head needs to run a job's driver.
pub trait Drivers: Send + Sync + 'static {
    /// The node drivers run on (the head's own node).
    fn node_id(&self) -> NodeId;

    /// Compiles (or finds compiled) a tenant's component.
    fn load(&self, component: Bytes, tenant: &str)
    -> Pending<Result<Arc<AppComponent>, LoadError>>;

    /// Starts a job's driver; the future resolves when the job ends.
    fn start(
        &self,
        job: JobId,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> Pending<JobOutcome>;

    /// Stops a job whose driver it started; `false` when it runs no such
    /// job (yet, or any more).
    fn stop(&self, job: JobId) -> bool;

    /// The tasks a running job submitted from the driver's node so far.
    fn progress(&self, job: JobId) -> Option<crate::outcomes::TaskCountsRead>;
}

impl Drivers for Node {
    fn node_id(&self) -> NodeId {
        self.id()
    }

    fn load(
        &self,
        component: Bytes,
        tenant: &str,
    ) -> Pending<Result<Arc<AppComponent>, LoadError>> {
        let (node, tenant) = (self.clone(), tenant.to_string());
        Box::pin(async move { node.load_for(&component, &tenant).await })
    }

    fn start(
        &self,
        job: JobId,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> Pending<JobOutcome> {
        Box::pin(self.start_job_as(job, app, args, logs, options))
    }

    fn stop(&self, job: JobId) -> bool {
        self.stop_job(job)
    }

    fn progress(&self, job: JobId) -> Option<crate::outcomes::TaskCountsRead> {
        self.job_progress(job)
    }
}
