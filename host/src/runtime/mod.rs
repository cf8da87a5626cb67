//! The node's runtime: everything a running job touches, in one place.
//!
//! [`NodeCore`] is shared (behind an `Arc`) by every instance's store data,
//! so a host call reaches the object store, the scheduler, the task and
//! actor registries and the engine without locks on the way. The public
//! face of it is [`crate::node::Node`].

pub mod actor;
pub mod compile;
pub mod component;
pub mod component_cache;
pub mod engine;
pub mod instance;
pub mod job;
mod limiter;
pub mod strip;
pub mod task;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use dashmap::DashMap;

use crate::config::ResolvedConfig;
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId, ObjectId};
use crate::object_store::ObjectStore;
use crate::resources::ResourceSet;
use crate::scheduler::{Lease, Scheduler};

use self::actor::ActorRecord;
use self::engine::FabricEngine;
use self::instance::CallResult;
use self::job::Job;
use self::task::{Reply, TaskControl};
use crate::cluster::Cluster;

pub(crate) struct NodeCore {
    pub id: NodeId,
    pub engine: FabricEngine,
    pub objects: ObjectStore,
    pub scheduler: Scheduler,
    /// Tasks not finished yet, by the id of their result object.
    pub tasks: crate::ids::IdMap<ObjectId, Arc<TaskControl>>,
    pub actors: crate::ids::IdMap<ActorId, Arc<ActorRecord>>,
    /// `(namespace, name)` to actor.
    pub named_actors: DashMap<(String, String), ActorId>,
    pub jobs: crate::ids::IdMap<crate::ids::JobId, Arc<Job>>,
    /// Per-tenant books: the tenant of every job seen, usage and quotas.
    pub tenants: Arc<crate::tenants::TenantLedger>,
    /// Tasks waiting in the local queue that may move to another node.
    pub queued_tasks: Mutex<VecDeque<Weak<TaskControl>>>,
    pub runtime: tokio::runtime::Handle,
    pub config: ResolvedConfig,
    /// Set once the node joins a cluster.
    pub cluster: OnceLock<Arc<Cluster>>,
}

impl NodeCore {
    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Fails fast when no node (this one, or any in the cluster) could ever
    /// satisfy `demand`.
    pub(crate) fn check_feasible(
        &self,
        demand: &ResourceSet,
        account: &crate::tenants::TenantAccount,
    ) -> Result<(), FabricError> {
        let quota = account.quota();
        if let Some(which) = quota.resource_cap().never_admits(demand) {
            let (value, unit) = match which.as_str() {
                "cpus" => (quota.cpus.unwrap_or_default() as u64, "CPUs"),
                "gpus" => (quota.gpus.unwrap_or_default() as u64, "GPUs"),
                _ => (quota.memory.unwrap_or_default(), "bytes of memory"),
            };
            return Err(FabricError::limit(
                &format!("{which}-quota"),
                value,
                format!(
                    "{{{demand}}} is more than tenant `{}` may ever hold ({value} {unit})",
                    account.name
                ),
            ));
        }
        match self.cluster() {
            Some(c) => c.check_feasible(demand),
            None => self.scheduler.check_feasible(demand),
        }
    }

    /// A job started on this node (its driver runs here).
    pub(crate) async fn prepare_job(
        &self,
        id: crate::ids::JobId,
        app: Arc<component::AppComponent>,
        logs: Arc<dyn crate::logs::LogSink>,
        options: &crate::node::JobOptions,
        driver: NodeId,
    ) -> Result<Arc<Job>, FabricError> {
        let tenant: Arc<str> = options
            .tenant
            .as_deref()
            .unwrap_or(job::LOCAL_TENANT)
            .into();
        Job::prepare(
            self,
            job::JobSpec {
                id,
                app,
                logs,
                namespace: format!("job-{id}"),
                tenant,
                driver,
                manifest_text: options.manifest.clone(),
            },
        )
        .await
    }

    /// Whether the object behind `r` belongs to the tenant of `job`. An
    /// object of a job this node never ran is treated as another tenant's.
    pub(crate) fn owned_by(&self, r: &crate::object_store::ObjectRef, job: &Job) -> bool {
        // The common case, an object of the asking job, needs no lookup.
        r.job() == job.id
            || self
                .tenants
                .of_job(r.job())
                .is_some_and(|a| a.name == job.tenant)
    }

    /// Delivers the outcome of a task or actor call: into the local store,
    /// or back to the node that owns the result.
    pub(crate) fn complete(self: &Arc<Self>, result: ObjectId, reply: Reply, outcome: CallResult) {
        match (reply, self.cluster()) {
            (Reply::Remote { owner, job }, Some(cluster)) => {
                cluster.send_result(owner, job, result, outcome)
            }
            _ => match outcome {
                Ok((value, nested)) => self.objects.fulfill(result, Ok(value), nested),
                Err(e) => self.objects.fulfill(result, Err(e), Vec::new()),
            },
        }
    }

    /// A lease for `demand`, waiting in the scheduler's queue if needed.
    pub(crate) async fn acquire(
        &self,
        demand: ResourceSet,
        tenant: &crate::scheduler::Tenant,
    ) -> Lease {
        if let Some(lease) = self.scheduler.try_acquire(&demand, tenant) {
            return lease;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.scheduler.submit(
            demand,
            tenant,
            Box::new(move |lease| {
                // A dropped receiver (the waiter was stopped) gives the lease back.
                let _ = tx.send(lease);
            }),
            None,
        );
        rx.await
            .expect("the scheduler keeps queued work until it starts it")
    }

    /// Stops what a finished job left behind: its actors and its tasks.
    pub(crate) fn finish_job(&self, job: &Job) {
        job.mark_finished();
        self.tenants.job_finished(job.id);
        if let Some(cluster) = self.cluster() {
            cluster.remember_finished(job.id);
            cluster.drop_job_work(job.id);
        }
        let actors: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|a| a.job.id == job.id && !a.detached)
            .map(|a| *a.key())
            .collect();
        for id in actors {
            if let Some((_, rec)) = self.actors.remove(&id) {
                actor::kill(
                    self,
                    &rec,
                    format!("actor {}({}) stopped: its job ended", rec.class, id.short()),
                );
            }
        }
        let mine: Vec<(ObjectId, Arc<TaskControl>)> = self
            .tasks
            .iter()
            .filter(|e| e.value().job().id == job.id)
            .map(|e| (*e.key(), e.value().clone()))
            .collect();
        for (result, control) in mine {
            control.cancel();
            self.tasks.remove(&result);
            self.objects
                .fulfill(result, Err(FabricError::Cancelled), Vec::new());
        }
    }
}
