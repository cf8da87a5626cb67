//! A node: the embedded runtime that `fabric run` starts, and the unit a
//! cluster is made of.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fabric_runtime::{Node, NodeConfig, logs::TerminalSink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! let app = node.load(&std::fs::read("app.wasm")?).await?;
//! let outcome = node.run_job(app, vec![], Arc::new(TerminalSink)).await;
//! outcome.result?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::config::NodeConfig;
use crate::error::{FabricError, FailureKind, LoadError, NodeError};
use crate::host_api;
use crate::ids::{JobId, NodeId, ObjectId};
use crate::logs::LogSink;
use crate::object_store::ObjectStore;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::component::AppComponent;
use crate::runtime::engine::FabricEngine;
use crate::runtime::instance::{self, Role};
use crate::runtime::job::Job;
use crate::runtime::slots::Holder;
use crate::runtime::task::{self, TaskArg, TaskSpec};

/// How to run a job: its manifest (limits and capabilities) and tenant.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// The job manifest, TOML (see [`crate::manifest`]); empty for none.
    pub manifest: String,
    /// The tenant it runs for (default: the node's local tenant).
    pub tenant: Option<String>,
    /// The job's other components, by name (its manifest's `[components]`):
    /// a call of `name/function` or `name/Class` runs there.
    pub components: Vec<(String, Arc<AppComponent>)>,
}

/// How a job ended.
#[derive(Debug)]
pub struct JobOutcome {
    pub job_id: JobId,
    /// `Ok` when `main` returned `Ok`; else why it did not.
    pub result: Result<(), FabricError>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    core: Arc<NodeCore>,
}

/// Runs a job's driver to the end of `main`.
async fn run_driver(
    core: &Arc<NodeCore>,
    job: &Arc<Job>,
    args: Vec<String>,
) -> Result<(), FabricError> {
    let mut argv = vec!["app".to_string()];
    argv.extend(args.iter().cloned());
    let slot = job.take_slot(core, Holder::Driver, &job.app)?;
    let mut store = instance::new_store(core, job, Role::Driver, None, Some(slot), &argv);
    let inst = instance::instantiate(&mut store, &job.app, "main").await?;
    instance::call_main(&mut store, &inst, &job.app.exports.main, &args).await
}

/// How often a node gives back what finished work left behind.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Gives back, while the node lives, the memory finished work left: large
/// buffers nobody reused for a second, and the room of maps that once held
/// far more than they do now.
fn start_upkeep(core: &Arc<NodeCore>) {
    let weak = Arc::downgrade(core);
    core.runtime().spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(core) = weak.upgrade() else { return };
            core.give_back();
        }
    });
}

/// A snapshot of a node's state.
#[derive(Clone, Debug)]
pub struct NodeStats {
    pub total: ResourceSet,
    pub free: ResourceSet,
    pub queued_tasks: usize,
    pub running_tasks: usize,
    /// Streams of generators called from here, and credits of generators
    /// running here for callers elsewhere.
    pub streams: usize,
    pub actors: usize,
    pub objects: usize,
    pub object_store_used: u64,
    pub object_store_capacity: u64,
    /// The process's memory, and what the node accounts for.
    pub memory: MemoryReport,
    /// The instance pool's slots in use (nodes of one process that share
    /// an engine share its pool).
    pub instances: InstanceReport,
}

/// Slots of the instance pool: held now, the most held at once, and all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstanceReport {
    pub live: u64,
    pub peak: u64,
    pub slots: u64,
}

/// The node process's resident memory beside what the node accounts for
/// (to tenants, or as its own caches): each accounted part the larger of
/// its values read just before and just after the resident memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryReport {
    /// Resident memory of the whole process (`/proc/self/statm`).
    pub resident: u64,
    /// The object store: values, each object's overhead, and the recycled
    /// buffers it keeps for large values.
    pub object_store: u64,
    /// Linear memory of the live instances (tasks, actors, drivers).
    pub instances: u64,
    /// Compiled components kept beyond their use.
    pub components: u64,
    /// Pages the instance pool's unused slots keep for their next
    /// instances (given back once a slot has been unused for a whole
    /// second: about two seconds after the work stops).
    pub pool_kept: u64,
}

impl MemoryReport {
    /// What the node accounts for, all told.
    pub fn accounted(&self) -> u64 {
        self.object_store + self.instances + self.components + self.pool_kept
    }
}

/// This process's resident memory, in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

impl Node {
    /// Starts a node, with an engine of its own, on the current tokio runtime.
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let engine = FabricEngine::new(&config.engine)?;
        Self::start_with_engine(config, engine)
    }

    /// Starts a node that shares `engine` (and its compiled components) with
    /// other nodes in this process. `config.engine` is ignored.
    pub fn start_with_engine(config: NodeConfig, engine: FabricEngine) -> Result<Node, NodeError> {
        let resolved = config.resolve()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| NodeError::Config("a node must start inside a tokio runtime".into()))?;
        let core = NodeCore::new(resolved, engine, runtime);
        tracing::info!(node = %core.id().short(), resources = %core.config().total, "node started");
        start_upkeep(&core);
        Ok(Node { core })
    }

    pub fn id(&self) -> NodeId {
        self.core.id()
    }

    /// The node of a runtime (for the cluster crate).
    #[doc(hidden)]
    pub fn from_core(core: Arc<NodeCore>) -> Self {
        Node { core }
    }

    /// The node's runtime (for the cluster crate, which joins it to a
    /// cluster through it).
    #[doc(hidden)]
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    /// Compiles (or finds in the cache) an application component.
    pub async fn load(&self, bytes: &[u8]) -> Result<Arc<AppComponent>, LoadError> {
        self.core.engine().load(bytes).await
    }

    /// [`Node::load`] for `tenant`, who is charged for keeping the compiled
    /// component and whose compiles take turns.
    pub async fn load_for(
        &self,
        bytes: &[u8],
        tenant: &str,
    ) -> Result<Arc<AppComponent>, LoadError> {
        self.core.engine().load_for(bytes, tenant).await
    }

    /// Compiles a `wasi:http` proxy component (a stateless deployment's)
    /// for `tenant` (the node's local tenant when `None`), under the same
    /// compile bounds as an application.
    pub async fn load_http(
        &self,
        bytes: &[u8],
        tenant: Option<&str>,
    ) -> Result<Arc<crate::runtime::wasi_http::HttpApp>, LoadError> {
        let tenant = tenant.unwrap_or(crate::runtime::job::LOCAL_TENANT);
        self.core.engine().load_http_for(bytes, tenant).await
    }

    /// Starts a service that answers HTTP requests with `app`, a fresh
    /// instance each, for `options.tenant` under `options.manifest` (see
    /// [`crate::runtime::wasi_http`]). `options.components` must be empty.
    pub async fn start_http_service(
        &self,
        app: Arc<crate::runtime::wasi_http::HttpApp>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> Result<crate::runtime::wasi_http::HttpService, FabricError> {
        if !options.components.is_empty() {
            return Err(FabricError::InvalidArgument(
                "an HTTP service runs one component".into(),
            ));
        }
        let tenant = options
            .tenant
            .as_deref()
            .unwrap_or(crate::runtime::job::LOCAL_TENANT);
        crate::runtime::wasi_http::HttpService::start(
            self.core.clone(),
            app,
            logs,
            tenant.into(),
            &options.manifest,
        )
        .await
    }

    /// The engine this node runs on (share it with [`Node::start_with_engine`]).
    pub fn engine(&self) -> &FabricEngine {
        self.core.engine()
    }

    /// Runs `main` of `app` as a job and waits for it. When `main` returns,
    /// the job's actors stop and its unfinished tasks are cancelled, on
    /// every node of the cluster.
    pub async fn run_job(
        &self,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
    ) -> JobOutcome {
        self.start_job(app, args, logs).1.await
    }

    /// Starts `main` of `app` as a job; returns its id and a future of its
    /// outcome (the job runs whether or not the future is awaited).
    pub fn start_job(
        &self,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
    ) -> (
        JobId,
        impl std::future::Future<Output = JobOutcome> + Send + 'static,
    ) {
        self.start_job_with(app, args, logs, JobOptions::default())
    }

    /// [`Node::start_job`] with a manifest and a tenant.
    pub fn start_job_with(
        &self,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> (
        JobId,
        impl std::future::Future<Output = JobOutcome> + Send + 'static,
    ) {
        let id = JobId::random();
        (id, self.start_job_as(id, app, args, logs, options))
    }

    /// [`Node::start_job_with`] under an id the caller chose (fresh from
    /// [`JobId::random`]).
    pub fn start_job_as(
        &self,
        id: JobId,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> impl std::future::Future<Output = JobOutcome> + Send + 'static {
        let core = self.core.clone();
        core.starting_jobs().insert(id, false);
        let handle = self.core.runtime().spawn(async move {
            let job = match core.prepare_job(id, app, logs, &options).await {
                Ok(job) => job,
                Err(e) => {
                    core.starting_jobs().remove(&id);
                    return JobOutcome {
                        job_id: id,
                        result: Err(e),
                    };
                }
            };
            core.jobs().insert(job.id, job.clone());
            // Stopped while it was being prepared.
            if core
                .starting_jobs()
                .remove(&id)
                .is_some_and(|(_, stop)| stop)
            {
                job.stop();
            }
            tracing::debug!(job = %job.id.short(), tenant = %job.tenant, "job started");
            // The driver runs in a task of its own, which stopping the job
            // aborts (dropping its call ends its instance).
            let driver = {
                let (core, job) = (core.clone(), job.clone());
                let runtime = core.runtime().clone();
                runtime.spawn(async move { run_driver(&core, &job, args).await })
            };
            job.set_driver(Some(driver.abort_handle()));
            let ran = driver.await;
            job.set_driver(None);
            let result = match ran {
                Ok(r) => r,
                Err(e) if e.is_cancelled() => Err(FabricError::Cancelled),
                Err(e) => Err(FabricError::failure(
                    "main",
                    FailureKind::System,
                    format!("the driver stopped: {e}"),
                )),
            };
            core.end_driven_job(&job);
            tracing::debug!(job = %job.id.short(), ok = result.is_ok(), "job finished");
            JobOutcome {
                job_id: job.id,
                result,
            }
        });
        async move {
            handle.await.unwrap_or_else(|e| JobOutcome {
                job_id: id,
                result: Err(FabricError::failure(
                    "main",
                    FailureKind::System,
                    format!("the driver stopped: {e}"),
                )),
            })
        }
    }

    /// The tasks job `id` submitted on this node so far, and how they
    /// ended (`None`: no such job here).
    pub fn job_progress(&self, id: JobId) -> Option<crate::outcomes::TaskCountsRead> {
        let job = self.core.jobs().get(&id)?;
        Some(job.books.task_counts().read())
    }

    /// What this node knows of job `id`'s tasks (see
    /// [`crate::task_events`]): what ended here, what runs here now, and
    /// the tasks the job submitted here.
    pub fn job_tasks(&self, id: JobId) -> crate::task_events::JobTasksHere {
        self.core.job_tasks(id, usize::MAX)
    }

    /// Stops job `id`, whose driver runs on this node: its driver ends at
    /// once and its work everywhere is cancelled; the job ends with
    /// `cancelled`. `false` when no such job runs its driver here.
    pub fn stop_job(&self, id: JobId) -> bool {
        // Still being prepared: it stops as soon as it is.
        if let Some(mut stop) = self.core.starting_jobs().get_mut(&id) {
            *stop = true;
            return true;
        }
        match self.core.jobs().get(&id) {
            Some(job) if job.driver == self.id() => {
                job.stop();
                true
            }
            _ => false,
        }
    }

    /// [`Node::run_job`] with a manifest and a tenant.
    pub async fn run_job_with(
        &self,
        app: Arc<AppComponent>,
        args: Vec<String>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> JobOutcome {
        self.start_job_with(app, args, logs, options).1.await
    }

    /// Starts a job without a driver, which the host drives (see
    /// [`crate::runtime::service`]): it lives until the service is stopped
    /// or dropped.
    pub async fn start_service(
        &self,
        app: Arc<AppComponent>,
        logs: Arc<dyn LogSink>,
        options: JobOptions,
    ) -> Result<crate::runtime::service::Service, FabricError> {
        let job = self
            .core
            .prepare_job(JobId::random(), app, logs, &options)
            .await?;
        self.core.jobs().insert(job.id, job.clone());
        Ok(crate::runtime::service::Service::new(
            self.core.clone(),
            job,
        ))
    }

    /// Runs one remote function of `app` as a task with encoded `args` and
    /// returns its encoded result (what `fabric run --call` does).
    pub async fn call(
        &self,
        app: Arc<AppComponent>,
        function: &str,
        args: Vec<Bytes>,
        logs: Arc<dyn LogSink>,
    ) -> Result<Bytes, FabricError> {
        host_api::check_name("function", function)?;
        let job = self
            .core
            .prepare_job(JobId::random(), app, logs, &JobOptions::default())
            .await?;
        self.core.jobs().insert(job.id, job.clone());
        let value = self.call_in(&job, function, args).await;
        self.core.end_driven_job(&job);
        value
    }

    /// Runs `function` of `job` as one task and waits for its result.
    async fn call_in(
        &self,
        job: &Arc<Job>,
        function: &str,
        args: Vec<Bytes>,
    ) -> Result<Bytes, FabricError> {
        let result = ObjectId::random();
        let held = args.iter().map(|a| a.len() as u64).sum();
        let result_ref =
            self.core
                .objects()
                .create_pending(result, job.id, function.into(), held)?;
        let args = args.into_iter().map(TaskArg::Value).collect();
        let spec = TaskSpec {
            demand: ResourceSet::default()
                .with_cpus(1.0)
                .min_cpus(self.core.scheduler().total()),
            max_retries: 0,
            ..TaskSpec::new(job.clone(), function.into(), args, result)
        };
        task::submit(&self.core, spec)?;
        result_ref.get(None).await
    }

    /// Times `samples` instantiations of `app` (new store, instantiate,
    /// drop), the fixed cost every task pays. For benchmarks and diagnosis.
    pub async fn measure_instantiate(
        &self,
        app: Arc<AppComponent>,
        samples: usize,
    ) -> Result<Vec<std::time::Duration>, FabricError> {
        let job = self
            .core
            .prepare_job(
                JobId::random(),
                app,
                Arc::new(crate::logs::MemorySink::default()),
                &JobOptions::default(),
            )
            .await?;
        let mut out = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = std::time::Instant::now();
            let slot = job.take_slot(&self.core, Holder::Driver, &job.app)?;
            let mut store =
                instance::new_store(&self.core, &job, Role::Driver, None, Some(slot), &[]);
            instance::instantiate(&mut store, &job.app, "instantiate").await?;
            drop(store);
            out.push(start.elapsed());
        }
        Ok(out)
    }

    /// Sets `tenant`'s quota on this node (a cluster's head sets quotas
    /// cluster-wide instead, with `fabric tenant`).
    pub fn set_quota(&self, tenant: &str, quota: crate::quota::Quota) {
        let cap = quota.resource_cap();
        self.core.scheduler().set_cap(&tenant.into(), cap);
        self.core
            .tenants()
            .account(tenant)
            .set_view(crate::tenants::QuotaView {
                quota,
                ..Default::default()
            });
    }

    /// Every tenant's meters on this node (with the compiled components
    /// kept for it, which the engine tracks).
    pub fn tenant_usage(&self) -> Vec<crate::tenants::TenantUsage> {
        let mut usage = self.core.tenants().usage();
        for u in &mut usage {
            u.component_bytes = self.core.engine().component_bytes_of(&u.tenant);
        }
        usage
    }

    /// Every tenant's books on this node (what metrics read).
    pub fn tenant_accounts(&self) -> Vec<Arc<crate::tenants::TenantAccount>> {
        self.core.tenants().accounts()
    }

    /// Actors hosted here by tenant: (alive, dead but still known).
    pub fn actors_by_tenant(&self) -> std::collections::BTreeMap<Arc<str>, (u64, u64)> {
        let mut out = std::collections::BTreeMap::<Arc<str>, (u64, u64)>::new();
        for a in self.core.actors().iter() {
            let n = out.entry(a.job.account.name.clone()).or_default();
            if a.death().is_none() {
                n.0 += 1;
            } else {
                n.1 += 1;
            }
        }
        out
    }

    pub fn stats(&self) -> NodeStats {
        let c = &self.core;
        NodeStats {
            total: c.scheduler().total().clone(),
            // Bundles' own names are no one else's business (heartbeats carry this).
            free: c.scheduler().free().without_named(),
            queued_tasks: c.scheduler().queued(),
            running_tasks: c.tasks().len(),
            streams: c.streams().len(),
            actors: c.actors().iter().filter(|a| a.death().is_none()).count(),
            objects: c.objects().len(),
            object_store_used: c.objects().used_bytes(),
            object_store_capacity: c.objects().capacity_bytes(),
            memory: self.memory(),
            instances: {
                let pool = c.engine().slots();
                InstanceReport {
                    live: pool.live(),
                    peak: pool.peak(),
                    slots: pool.total(),
                }
            },
        }
    }

    /// The process's resident memory beside what the node accounts for.
    pub fn memory(&self) -> MemoryReport {
        let c = &self.core;
        let parts = || {
            let instances: u64 = c
                .tenants()
                .accounts()
                .iter()
                .map(|a| a.usage().memory_bytes)
                .sum();
            let objects = c.objects().used_bytes() + c.objects().cached_buffer_bytes();
            let engine = c.engine();
            (
                objects,
                instances,
                engine.component_bytes(),
                engine.pool_kept_bytes(),
            )
        };
        // Each part is the larger of its values just before and just after
        // the resident memory is read: memory taken or given back between
        // the reads cannot look unaccounted.
        let before = parts();
        let resident = resident_bytes();
        let after = parts();
        MemoryReport {
            resident,
            object_store: before.0.max(after.0),
            instances: before.1.max(after.1),
            components: before.2.max(after.2),
            pool_kept: before.3.max(after.3),
        }
    }

    /// The node's object store (for embedding and tests).
    pub fn objects(&self) -> &ObjectStore {
        self.core.objects()
    }
}
