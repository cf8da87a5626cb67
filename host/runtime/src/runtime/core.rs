//! The state of a node's runtime, and what every part of it asks of it.
//!
//! A [`NodeCore`] owns the node's engine, object store, scheduler, task
//! table, actors, jobs and tenant books; its fields are private, so each is
//! reached through the method that says what it is for. Work that leaves
//! the node goes through its cluster port: [`port::Alone`] until the node
//! joins a cluster, the cluster's port after.
//!
//! ```no_run
//! use fabric_runtime::{Node, NodeConfig};
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! assert!(!node.core().in_cluster());
//! # Ok(()) }
//! ```

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;

use crate::config::ResolvedConfig;
use crate::error::FabricError;
use crate::ids::{ActorId, IdMap, JobId, NodeId, ObjectId};
use crate::object_store::{ObjectRef, ObjectStore};
use crate::outcomes::Outcome;
use crate::resources::ResourceSet;
use crate::scheduler::{Lease, Scheduler};
use crate::tenants::{TenantAccount, TenantLedger};

use super::actor::{self, ActorRecord};
use super::component::AppComponent;
use super::engine::FabricEngine;
use super::groups::Groups;
use super::instance::{CallOutputs, CallResult};
use super::job::{self, Job};
use super::port::{Alone, ClusterPort};
use super::streams::Streams;
use super::task::Reply;
use super::task_table::TaskTable;

/// A node's runtime.
pub struct NodeCore {
    id: NodeId,
    engine: FabricEngine,
    objects: ObjectStore,
    scheduler: Scheduler,
    tasks: TaskTable,
    /// Streaming generators' items, on their callers' nodes.
    streams: Streams,
    /// Placement groups, while the node is in no cluster.
    groups: Groups,
    actors: IdMap<ActorId, Arc<ActorRecord>>,
    /// `(namespace, name)` to actor.
    named_actors: DashMap<(String, String), ActorId>,
    /// Routed names among them (see [`super::routers`]).
    routers: super::routers::Routers,
    jobs: IdMap<JobId, Arc<Job>>,
    /// Jobs whose drivers are being prepared here, and whether someone
    /// stopped them meanwhile.
    starting_jobs: IdMap<JobId, bool>,
    /// Per-tenant books: the tenant of every job seen, usage and quotas.
    tenants: Arc<TenantLedger>,
    task_events: crate::task_events::TaskEventLog,
    /// The threads' shares between tenants (see [`super::cpu_share`]).
    cpu_shares: super::cpu_share::CpuShares,
    runtime: tokio::runtime::Handle,
    config: ResolvedConfig,
    /// The cluster's port, once the node joins one.
    port: OnceLock<Arc<dyn ClusterPort>>,
    alone: Alone,
}

impl NodeCore {
    /// A node's runtime, alone until it joins a cluster.
    pub(crate) fn new(
        config: ResolvedConfig,
        engine: FabricEngine,
        runtime: tokio::runtime::Handle,
    ) -> Arc<Self> {
        let tenants = Arc::new(TenantLedger::default());
        let core = Arc::new_cyclic(|me| NodeCore {
            id: NodeId::random(),
            engine,
            objects: ObjectStore::with_ledger(
                config.object_store_memory,
                tenants.clone(),
                config.spill.clone(),
            ),
            scheduler: Scheduler::new(config.total.clone(), config.num_gpus),
            tasks: TaskTable::default(),
            streams: Streams::default(),
            groups: Groups::default(),
            actors: IdMap::default(),
            named_actors: DashMap::new(),
            routers: Default::default(),
            jobs: IdMap::default(),
            starting_jobs: IdMap::default(),
            tenants,
            task_events: crate::task_events::TaskEventLog::new(config.task_events.clone()),
            cpu_shares: super::cpu_share::CpuShares::new(runtime.metrics().num_workers()),
            runtime,
            config,
            port: OnceLock::new(),
            alone: Alone(me.clone()),
        });
        let hook = super::handles::StopUnreferenced(Arc::downgrade(&core));
        core.objects.set_anchor_hook(Arc::new(hook));
        core
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn engine(&self) -> &FabricEngine {
        &self.engine
    }

    pub fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The placement groups of this node when it is in no cluster.
    pub fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The tasks this node has not finished.
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The streams of generators called from here, and the credits of
    /// generators running here for callers elsewhere.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Actors hosted here, live or dead (until their job ends).
    pub fn actors(&self) -> &IdMap<ActorId, Arc<ActorRecord>> {
        &self.actors
    }

    /// Named actors registered on this node.
    pub fn named_actors(&self) -> &DashMap<(String, String), ActorId> {
        &self.named_actors
    }

    /// The routers among the named actors (see [`super::routers`]).
    pub(crate) fn routers(&self) -> &super::routers::Routers {
        &self.routers
    }

    /// Jobs that run (or have work) here.
    pub fn jobs(&self) -> &IdMap<JobId, Arc<Job>> {
        &self.jobs
    }

    /// Jobs whose drivers are being prepared here (see `Node::stop_job`).
    pub(crate) fn starting_jobs(&self) -> &IdMap<JobId, bool> {
        &self.starting_jobs
    }

    pub fn tenants(&self) -> &Arc<TenantLedger> {
        &self.tenants
    }

    /// The threads' shares between tenants.
    pub fn cpu_shares(&self) -> &super::cpu_share::CpuShares {
        &self.cpu_shares
    }

    /// The async runtime the node's work runs on.
    /// What ran here, per job.
    pub fn task_events(&self) -> &crate::task_events::TaskEventLog {
        &self.task_events
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub fn config(&self) -> &ResolvedConfig {
        &self.config
    }

    /// Where work that leaves this node goes.
    pub fn port(&self) -> &dyn ClusterPort {
        match self.port.get() {
            Some(p) => &**p,
            None => &self.alone,
        }
    }

    /// Plugs in the port of the cluster this node joins (once).
    pub fn join_cluster(&self, port: Arc<dyn ClusterPort>) -> Result<(), FabricError> {
        self.port.set(port).map_err(|_| {
            FabricError::InvalidArgument("this node already belongs to a cluster".into())
        })
    }

    /// Whether the node belongs to a cluster.
    pub fn in_cluster(&self) -> bool {
        self.port.get().is_some()
    }

    /// Fails fast when no node (this one, or any in the cluster) could ever
    /// satisfy `demand`, or when it is more than the tenant may ever hold.
    pub(crate) fn check_feasible(
        &self,
        demand: &ResourceSet,
        account: &TenantAccount,
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
        self.port().check_feasible(demand)
    }

    /// A job started on this node (its driver runs here).
    pub(crate) async fn prepare_job(
        &self,
        id: JobId,
        app: Arc<AppComponent>,
        logs: Arc<dyn crate::logs::LogSink>,
        options: &crate::node::JobOptions,
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
                parts: job::parts(&options.components)?,
                logs,
                namespace: format!("job-{id}"),
                tenant,
                driver: self.id,
                manifest_text: options.manifest.clone(),
            },
        )
        .await
    }

    /// Whether the object behind `r` belongs to the tenant of `job`. An
    /// object of a job this node never ran is treated as another tenant's.
    pub(crate) fn owned_by(&self, r: &ObjectRef, job: &Job) -> bool {
        // The common case, an object of the asking job, needs no lookup.
        r.job() == job.id
            || self
                .tenants
                .of_job(r.job())
                .is_some_and(|a| a.name == job.tenant)
    }

    /// Delivers the outcome of a task or actor call: into the local store,
    /// or back to the node that owns the result.
    pub fn complete(&self, result: ObjectId, reply: Reply, outcome: CallResult) {
        match reply {
            Reply::Remote { owner, job } => {
                self.port()
                    .send_results(owner, job, vec![(result, outcome)])
            }
            Reply::Local => self.fulfill(result, outcome),
        }
    }

    /// Completes the objects `results` of one call with its values, in
    /// order, or each with its failure; to another node, in one message.
    pub fn complete_all(
        &self,
        mut results: impl Iterator<Item = ObjectId>,
        reply: Reply,
        outcome: CallOutputs,
    ) {
        let first = results
            .next()
            .expect("a call completes at least one object");
        let outcomes: Vec<(ObjectId, CallResult)> = match outcome {
            Ok(values) if values.len() == 1 => {
                let value = values.into_iter().next().expect("one value");
                return self.complete(first, reply, Ok(value));
            }
            Ok(values) => std::iter::once(first)
                .chain(results)
                .zip(values.into_iter().map(Ok))
                .collect(),
            // One message: the owner fails every result of the call itself.
            Err(e) if matches!(reply, Reply::Remote { .. }) => vec![(first, Err(e))],
            // The others get the failure with its text cut short (its value
            // is shared): ten thousand results do not copy one long text.
            Err(e) => {
                let brief = e.for_sibling();
                std::iter::once((first, Err(e)))
                    .chain(results.map(|id| (id, Err(brief.clone()))))
                    .collect()
            }
        };
        match reply {
            Reply::Remote { owner, job } => self.port().send_results(owner, job, outcomes),
            Reply::Local => {
                for (id, outcome) in outcomes {
                    self.fulfill(id, outcome);
                }
            }
        }
    }

    fn fulfill(&self, id: ObjectId, outcome: CallResult) {
        match outcome {
            Ok((value, nested)) => self.objects.fulfill(id, Ok(value), nested),
            Err(e) => self.objects.fulfill(id, Err(e), Vec::new()),
        }
    }

    /// A lease for `demand`, waiting in the scheduler's queue if needed
    /// (an error: the placement group it was placed in is gone).
    pub(crate) async fn acquire(
        &self,
        demand: ResourceSet,
        job: &Job,
    ) -> Result<Lease, FabricError> {
        let tenant = &job.tenant;
        if let Some(lease) = self.scheduler.try_acquire(&demand, tenant) {
            return Ok(lease);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        // An actor already holds its instance slot: of its job's queued
        // work, it goes first.
        let order = crate::scheduler::Order {
            group: job.id.as_u128(),
            depth: u32::MAX,
        };
        self.scheduler.submit_at(
            order,
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
    pub fn finish_job(&self, job: &Job) {
        job.mark_finished();
        self.tenants.job_finished(job.id);
        self.port().job_ended_here(job.id);
        self.groups.job_ended(self, job.id);
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
        for (result, control) in self.tasks.of_job(job.id) {
            control.cancel();
            control.record_ended(&Err::<(), _>(FabricError::Cancelled), None);
            if self.tasks.remove(result, Outcome::Cancelled).is_some() {
                self.objects
                    .fulfill(result, Err(FabricError::Cancelled), Vec::new());
            }
        }
        // Its record stays a while, with its counts as they ended.
        let counts = job.books.task_counts().read();
        self.task_events.job_ended(job.id, &job.tenant, counts);
    }

    /// A job whose driver ran here ended: its work stops here and on every
    /// other node, and it leaves the job table.
    pub(crate) fn end_driven_job(&self, job: &Job) {
        self.finish_job(job);
        self.jobs.remove(&job.id);
        self.port().driver_returned(job.id);
    }

    /// What this node knows of job `id`'s tasks (see
    /// [`crate::task_events`]): what ended here, what runs here now, and
    /// the tasks the job submitted here.
    /// At most `max` (the newest) of the ended ones are listed.
    pub fn job_tasks(&self, id: crate::ids::JobId, max: usize) -> crate::task_events::JobTasksHere {
        use crate::task_events::MAX_UNFINISHED_SHOWN;
        let kept = self.task_events().read_newest(id, max);
        let mut unfinished = Vec::new();
        let mut not_shown = 0;
        for (_, control) in self.tasks().of_job(id) {
            let Some(e) = control.unfinished_event() else {
                continue;
            };
            if unfinished.len() < MAX_UNFINISHED_SHOWN.min(max) {
                unfinished.push(e);
            } else {
                not_shown += 1;
            }
        }
        let live = self.tenants().books_of(id);
        let counts = live
            .map(|b| b.task_counts().read())
            .or_else(|| kept.as_ref().and_then(|k| k.final_counts));
        crate::task_events::JobTasksHere {
            kept,
            unfinished,
            unfinished_not_shown: not_shown,
            counts,
        }
    }

    /// Gives back the memory finished work left (see `Node`'s upkeep).
    pub(crate) fn give_back(&self) {
        self.objects.give_back(std::time::Duration::from_secs(1));
        self.tasks.give_back(self.scheduler.queued());
        self.streams.give_back();
        self.task_events.expire();
        crate::ids::shrink_if_sparse(&self.actors);
        crate::allocator::trim(false);
        self.engine().release_idle_pool_memory();
    }
}
