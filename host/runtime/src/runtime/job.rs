//! A job: one run of an application's driver and everything it started.
//!
//! The job owns what outlives a single task: its component, its log sink,
//! its tenant, its namespace for named actors, its manifest (and the limits
//! and capabilities decided from it) and its count of pending tasks. When
//! the driver returns, [`crate::runtime::NodeCore::finish_job`] stops the
//! job's actors and cancels its queued and running tasks, as Ray does when a
//! driver exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::FabricError;
use crate::ids::{JobId, NodeId};
use crate::limits::Limits;
use crate::logs::LogSink;
use crate::manifest::{Granted, JobManifest};
use crate::runtime::NodeCore;
use crate::runtime::component::AppComponent;
use crate::scheduler::Cancellable;

/// The tenant of a node's own, local jobs (`fabric run`).
pub const LOCAL_TENANT: &str = "local";

/// Named actors live in namespaces of their tenant: the same name in
/// another tenant is another actor, invisible to this one.
pub(crate) fn scoped_namespace(tenant: &str, namespace: &str) -> String {
    format!("{tenant}/{namespace}")
}

/// The namespace as its tenant wrote it.
pub fn shown_namespace(scoped: &str) -> &str {
    scoped.split_once('/').map_or(scoped, |(_, ns)| ns)
}

pub struct Job {
    pub id: JobId,
    pub app: Arc<AppComponent>,
    pub logs: Arc<dyn LogSink>,
    /// The tenant the job runs for: everything it creates is theirs.
    pub tenant: Arc<str>,
    /// Where the job's named actors live unless a call names another.
    pub namespace: String,
    /// The node running the driver.
    pub driver: NodeId,
    /// The manifest as submitted (other nodes decide their limits from it).
    pub manifest_text: String,
    pub limits: Limits,
    /// The tenant's books on this node.
    pub account: Arc<crate::tenants::TenantAccount>,
    /// The job's books on this node (its objects, live instances, actors).
    pub books: Arc<crate::tenants::JobBooks>,
    pub granted: Arc<Granted>,
    /// Tasks submitted here and not yet finished (kept by the task table).
    pub(crate) pending: crate::runtime::task_table::PendingTasks,
    finished: AtomicBool,
}

/// What a job is made from.
pub struct JobSpec {
    pub id: JobId,
    pub app: Arc<AppComponent>,
    pub logs: Arc<dyn LogSink>,
    pub tenant: Arc<str>,
    pub namespace: String,
    pub driver: NodeId,
    /// Empty for none.
    pub manifest_text: String,
}

impl Job {
    /// Decides a job's limits and capabilities from its manifest, against
    /// this node's operator defaults, caps and policy.
    pub async fn prepare(core: &NodeCore, spec: JobSpec) -> Result<Arc<Job>, FabricError> {
        let manifest = if spec.manifest_text.trim().is_empty() {
            JobManifest::default()
        } else {
            JobManifest::parse(&spec.manifest_text)?
        };
        let cfg = &core.config();
        let limits = cfg.limits.for_job(&cfg.max_limits, &manifest.limits)?;
        cfg.policy.check(&manifest.capabilities)?;
        let granted = Granted::resolve(&manifest.capabilities, &cfg.policy).await?;
        let account = core.tenants().account(&spec.tenant);
        let books = core
            .tenants()
            .add_job(spec.id, account.clone(), limits.objects);
        Ok(Arc::new(Job {
            id: spec.id,
            app: spec.app,
            logs: spec.logs,
            tenant: spec.tenant,
            namespace: spec.namespace,
            driver: spec.driver,
            manifest_text: spec.manifest_text,
            limits,
            account,
            books,
            granted: Arc::new(granted),
            pending: Default::default(),
            finished: AtomicBool::new(false),
        }))
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Takes a slot of the node's instance pool for an instance of the job
    /// (see [`crate::runtime::slots`]).
    pub fn take_slot(
        &self,
        core: &NodeCore,
        holder: crate::runtime::slots::Holder,
    ) -> Result<crate::runtime::slots::InstanceSlot, FabricError> {
        crate::runtime::slots::InstanceSlot::take(
            core.engine().slots(),
            &self.books,
            (self.limits.live_instances, self.limits.live_actors),
            holder,
            self.app.slot_weight,
        )
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
