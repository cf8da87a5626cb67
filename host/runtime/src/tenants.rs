//! A node's per-tenant books: what each tenant holds here, its quota as this
//! node enforces it, and its meters (for billing).
//!
//! Every job runs for a tenant, and everything it creates is charged to that
//! tenant's [`TenantAccount`]: object bytes (against its object-store quota),
//! linear memory, CPU time, tasks and actors. Byte-seconds are integrated
//! exactly: each change of a tenant's bytes first adds `bytes × time since
//! the last change`.
//!
//! Quotas are cluster-wide: every heartbeat tells the head what each tenant
//! holds here, and the head answers with what it holds on the other nodes,
//! so each node admits work only within `quota − held elsewhere` (as of the
//! last heartbeat; a burst on several nodes at once can overshoot by what
//! they admit between two heartbeats).
//!
//! ```
//! use fabric_runtime::tenants::TenantLedger;
//! let ledger = TenantLedger::default();
//! let acme = ledger.account("acme");
//! acme.charge_objects(100).unwrap();
//! assert_eq!(ledger.usage().iter().find(|u| &*u.tenant == "acme").unwrap().object_bytes, 100);
//! ```

use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use dashmap::DashMap;

use crate::error::FabricError;
use crate::ids::JobId;
use crate::quota::Quota;

/// `∫ bytes dt`, updated on every change.
struct Integrator {
    state: Mutex<(i64, f64, Instant)>,
}

impl Integrator {
    fn new() -> Self {
        Integrator {
            state: Mutex::new((0, 0.0, Instant::now())),
        }
    }

    /// Applies `delta` unless `check(current)` refuses it.
    fn change(
        &self,
        delta: i64,
        check: impl FnOnce(i64) -> Result<(), FabricError>,
    ) -> Result<(), FabricError> {
        let mut s = self.state.lock();
        if delta > 0 {
            check(s.0)?;
        }
        let now = Instant::now();
        s.1 += s.0.max(0) as f64 * now.duration_since(s.2).as_secs_f64();
        s.0 += delta;
        s.2 = now;
        Ok(())
    }

    /// (bytes now, byte-seconds so far).
    fn read(&self) -> (i64, f64) {
        let s = self.state.lock();
        (s.0, s.1 + s.0.max(0) as f64 * s.2.elapsed().as_secs_f64())
    }
}

/// What the cluster says about a tenant beyond this node.
#[derive(Clone, Debug, Default)]
pub struct QuotaView {
    pub quota: Quota,
    /// Object bytes it holds on the other nodes.
    pub object_bytes_elsewhere: u64,
    /// Live instances and live actors it holds on the other nodes.
    pub instances_elsewhere: u64,
    pub actors_elsewhere: u64,
    /// CPUs, GPUs and memory its work holds on the other nodes.
    pub held_elsewhere: crate::resources::ResourceSet,
}

/// Takes one more of `counter` unless it holds `max`.
fn take_one(counter: &AtomicU64, max: u64) -> Result<u64, u64> {
    counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < max).then_some(n + 1)
    })
}

/// Live instances (tasks running, actors, drivers) and live actors.
#[derive(Default)]
struct Live {
    instances: AtomicU64,
    actors: AtomicU64,
}

impl Live {
    /// Takes an instance (and an actor) within `(max instances, max actors)`,
    /// or says which one is full (`Err(true)`: the actors).
    fn take(&self, (max_instances, max_actors): (u64, u64), actor: bool) -> Result<(), bool> {
        take_one(&self.instances, max_instances).map_err(|_| false)?;
        if actor && take_one(&self.actors, max_actors).is_err() {
            self.instances.fetch_sub(1, Ordering::AcqRel);
            return Err(true);
        }
        Ok(())
    }

    /// Whether [`Live::take`] would succeed now (taking nothing).
    fn check(&self, (max_instances, max_actors): (u64, u64), actor: bool) -> Result<(), bool> {
        let (instances, actors) = self.read();
        if instances >= max_instances {
            return Err(false);
        }
        if actor && actors >= max_actors {
            return Err(true);
        }
        Ok(())
    }

    fn give_back(&self, actor: bool) {
        self.instances.fetch_sub(1, Ordering::AcqRel);
        if actor {
            self.actors.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn read(&self) -> (u64, u64) {
        (
            self.instances.load(Ordering::Acquire),
            self.actors.load(Ordering::Acquire),
        )
    }
}

/// One tenant's books on this node.
pub struct TenantAccount {
    pub name: Arc<str>,
    objects: Integrator,
    memory: Integrator,
    cpu_nanos: AtomicU64,
    tasks: AtomicU64,
    actors: AtomicU64,
    live: Live,
    view: RwLock<QuotaView>,
    // Counted once per task or restart. (These share cache lines with one
    // another across the tenant's threads: no cost measured on 2 cores,
    // benches/README.md; to look at again with more cores, issue 19.)
    restarts: AtomicU64,
    /// Tasks its jobs submitted here, and how they ended.
    outcomes: crate::outcomes::TaskCounts,
}

impl TenantAccount {
    fn new(name: Arc<str>) -> Self {
        TenantAccount {
            name,
            objects: Integrator::new(),
            memory: Integrator::new(),
            cpu_nanos: AtomicU64::new(0),
            tasks: AtomicU64::new(0),
            actors: AtomicU64::new(0),
            live: Live::default(),
            view: RwLock::new(QuotaView::default()),
            restarts: AtomicU64::new(0),
            outcomes: Default::default(),
        }
    }

    /// Counts `bytes` more of the tenant's objects here, unless that would
    /// take it over its object-store quota.
    pub fn charge_objects(&self, bytes: u64) -> Result<(), FabricError> {
        let (cap, elsewhere) = {
            let v = self.view.read();
            (v.quota.object_store, v.object_bytes_elsewhere)
        };
        self.objects.change(bytes as i64, |now| match cap {
            Some(cap) if now as u64 + elsewhere + bytes > cap => Err(FabricError::limit(
                "object-store-quota",
                cap,
                format!(
                    "tenant `{}` would hold {} of objects",
                    self.name,
                    crate::resources::fmt_bytes((now as u64 + elsewhere + bytes) as i64)
                ),
            )),
            _ => Ok(()),
        })
    }

    /// Counts `bytes` more of the tenant's objects whatever its quota (what
    /// must be kept: a reference another node sent).
    pub(crate) fn force_objects(&self, bytes: u64) {
        let _ = self.objects.change(bytes as i64, |_| Ok(()));
    }

    pub fn uncharge_objects(&self, bytes: u64) {
        let _ = self.objects.change(-(bytes as i64), |_| Ok(()));
    }

    /// Linear memory its instances grew (or, negative, gave back).
    pub(crate) fn memory_changed(&self, delta: i64) {
        let _ = self.memory.change(delta, |_| Ok(()));
    }

    pub(crate) fn add_cpu(&self, d: std::time::Duration) {
        self.cpu_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_task(&self) {
        self.tasks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_actor(&self) {
        self.actors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Its actors' restarts on this node.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Tasks its jobs submitted on this node, and how they ended.
    pub fn task_counts(&self) -> &crate::outcomes::TaskCounts {
        &self.outcomes
    }

    /// Counts a live instance (and actor) here, unless the tenant's
    /// `instances` (`actors`) quota, less what it holds elsewhere, is full.
    pub(crate) fn take_live(&self, actor: bool) -> Result<(), FabricError> {
        let (max, why) = self.live_room();
        self.live.take(max, actor).map_err(why)
    }

    /// Whether one more live instance (and actor) would fit the tenant's
    /// quotas as this node last heard (checked where the work is created;
    /// the node it goes to counts it).
    pub fn check_live(&self, actor: bool) -> Result<(), FabricError> {
        let (max, why) = self.live_room();
        self.live.check(max, actor).map_err(why)
    }

    /// The most live instances and actors the tenant may hold here, and
    /// the error for going past one (`true`: the actors).
    fn live_room(&self) -> ((u64, u64), impl FnOnce(bool) -> FabricError + '_) {
        let (quota, elsewhere) = {
            let v = self.view.read();
            (
                (v.quota.instances, v.quota.actors),
                (v.instances_elsewhere, v.actors_elsewhere),
            )
        };
        let room = |q: Option<u64>, e: u64| q.map_or(u64::MAX, |q| q.saturating_sub(e));
        let max = (room(quota.0, elsewhere.0), room(quota.1, elsewhere.1));
        let why = move |actors: bool| {
            let (name, quota, elsewhere, what) = if actors {
                ("actors-quota", quota.1, elsewhere.1, "actors")
            } else {
                ("instances-quota", quota.0, elsewhere.0, "instances")
            };
            let quota = quota.unwrap_or(0);
            FabricError::limit(
                name,
                quota,
                format!(
                    "tenant `{}` holds its quota of {quota} live {what} ({elsewhere} of them \
                     on other nodes)",
                    self.name
                ),
            )
        };
        (max, why)
    }

    pub(crate) fn give_back_live(&self, actor: bool) {
        self.live.give_back(actor);
    }

    /// Live instances and live actors it holds here now.
    pub fn live(&self) -> (u64, u64) {
        self.live.read()
    }

    pub fn set_view(&self, view: QuotaView) {
        *self.view.write() = view;
    }

    pub fn quota(&self) -> Quota {
        self.view.read().quota.clone()
    }

    /// What its work holds on the other nodes (as the head last said).
    pub fn held_elsewhere(&self) -> crate::resources::ResourceSet {
        self.view.read().held_elsewhere.clone()
    }

    pub fn usage(&self) -> TenantUsage {
        let (object_bytes, object_byte_seconds) = self.objects.read();
        let (memory_bytes, memory_byte_seconds) = self.memory.read();
        TenantUsage {
            tenant: self.name.clone(),
            object_bytes: object_bytes.max(0) as u64,
            object_byte_seconds,
            memory_bytes: memory_bytes.max(0) as u64,
            memory_byte_seconds,
            cpu_seconds: self.cpu_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            tasks: self.tasks.load(Ordering::Relaxed),
            actors: self.actors.load(Ordering::Relaxed),
            live_instances: self.live.read().0,
            live_actors: self.live.read().1,
            component_bytes: 0,
        }
    }
}

/// A tenant's meters on one node.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantUsage {
    pub tenant: Arc<str>,
    /// Bytes of its objects held now.
    pub object_bytes: u64,
    pub object_byte_seconds: f64,
    /// Linear memory of its live instances now.
    pub memory_bytes: u64,
    pub memory_byte_seconds: f64,
    /// Time its guests ran (not waiting in `get` or `wait`).
    pub cpu_seconds: f64,
    pub tasks: u64,
    pub actors: u64,
    /// Instances (tasks running, actors, drivers) and actors alive here now
    /// (detached actors of ended jobs included).
    pub live_instances: u64,
    pub live_actors: u64,
    /// Compiled components kept for it beyond their use (filled in by
    /// the node, whose engine keeps them).
    pub component_bytes: u64,
}

/// What a node charges one job for: its tenant's account, and the objects
/// of the job it holds now, against the job's `objects` limit.
pub struct JobBooks {
    pub account: Arc<TenantAccount>,
    job: JobId,
    objects: AtomicU64,
    max_objects: u64,
    live: Live,
    /// Set when the job ended here: the books go once its last object does.
    finished: std::sync::atomic::AtomicBool,
    /// Tasks the job submitted here, and how they ended (its progress).
    outcomes: crate::outcomes::TaskCounts,
}

impl JobBooks {
    /// Tasks the job submitted on this node, and how they ended.
    pub fn task_counts(&self) -> &crate::outcomes::TaskCounts {
        &self.outcomes
    }

    /// Counts one more object of the job here, unless it holds its limit.
    pub(crate) fn add_object(&self) -> Result<(), FabricError> {
        let max = self.max_objects;
        self.objects
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| {
                FabricError::limit(
                    "objects",
                    max,
                    format!("the job already holds {max} objects on this node"),
                )
            })
    }

    /// Counts one more object that must be kept whatever the limit (a
    /// reference another node sent, a copy kept for its owner).
    pub(crate) fn force_object(&self) {
        self.objects.fetch_add(1, Ordering::AcqRel);
    }

    /// One object of the job went; true when it was the last one of a
    /// finished job (its books may go).
    pub(crate) fn remove_object(&self) -> bool {
        self.objects.fetch_sub(1, Ordering::AcqRel) == 1 && self.finished.load(Ordering::Acquire)
    }

    /// The job's objects held here now.
    pub fn objects(&self) -> u64 {
        self.objects.load(Ordering::Acquire)
    }

    /// Counts a live instance (and actor) of the job here, unless it holds
    /// `(max instances, max actors)` (its `live-instances` and
    /// `live-actors` limits).
    pub(crate) fn take_live(&self, max: (u64, u64), actor: bool) -> Result<(), FabricError> {
        self.live
            .take(max, actor)
            .map_err(|actors| live_limit(max, actors))
    }

    pub(crate) fn give_back_live(&self, actor: bool) {
        self.live.give_back(actor);
    }

    /// Whether one more live instance (and actor) of the job would fit
    /// `max` here now (taking nothing).
    pub(crate) fn check_live(&self, max: (u64, u64), actor: bool) -> Result<(), FabricError> {
        self.live
            .check(max, actor)
            .map_err(|actors| live_limit(max, actors))
    }

    /// Live instances and actors of the job here now.
    pub fn live(&self) -> (u64, u64) {
        self.live.read()
    }
}

/// The error for a job past its `live-instances` or (`actors`) `live-actors`
/// limit on a node.
fn live_limit(max: (u64, u64), actors: bool) -> FabricError {
    let (name, max, what) = if actors {
        ("live-actors", max.1, "actors")
    } else {
        ("live-instances", max.0, "instances")
    };
    FabricError::limit(
        name,
        max,
        format!("the job already holds {max} live {what} on this node"),
    )
}

/// Every tenant's account on this node.
#[derive(Default)]
pub struct TenantLedger {
    accounts: DashMap<Arc<str>, Arc<TenantAccount>>,
    /// The books of every job this node has seen (kept after the job ends:
    /// its objects and detached actors may outlive it).
    jobs: crate::ids::IdMap<JobId, Arc<JobBooks>>,
}

impl TenantLedger {
    /// Tenant `name`'s account (made on first use).
    pub fn account(&self, name: &str) -> Arc<TenantAccount> {
        if let Some(a) = self.accounts.get(name) {
            return a.clone();
        }
        self.accounts
            .entry(name.into())
            .or_insert_with(|| Arc::new(TenantAccount::new(name.into())))
            .clone()
    }

    /// Opens the books of `job` (once: a job prepared again keeps them).
    pub(crate) fn add_job(
        &self,
        job: JobId,
        account: Arc<TenantAccount>,
        max_objects: u64,
    ) -> Arc<JobBooks> {
        self.jobs
            .entry(job)
            .or_insert_with(|| {
                Arc::new(JobBooks {
                    account,
                    job,
                    objects: AtomicU64::new(0),
                    max_objects,
                    live: Live::default(),
                    finished: Default::default(),
                    outcomes: Default::default(),
                })
            })
            .clone()
    }

    /// The account of job `job`, if this node has seen it.
    pub fn of_job(&self, job: JobId) -> Option<Arc<TenantAccount>> {
        self.jobs.get(&job).map(|b| b.account.clone())
    }

    /// The job ended here: its books go now if it holds no object, else
    /// when its last object goes (see [`TenantLedger::forget`]).
    pub(crate) fn job_finished(&self, job: JobId) {
        if let Some(books) = self.books_of(job) {
            books.finished.store(true, Ordering::Release);
            if books.objects() == 0 {
                self.jobs.remove(&job);
            }
        }
    }

    /// Forgets the books of a finished job whose last object just went.
    pub(crate) fn forget(&self, books: &JobBooks) {
        self.jobs
            .remove_if(&books.job, |_, b| std::ptr::eq(&**b, books));
    }

    /// Jobs whose books this node keeps (running, or with objects left).
    pub fn jobs_kept(&self) -> usize {
        self.jobs.len()
    }

    /// The books of job `job`, if this node has seen it.
    pub fn books_of(&self, job: JobId) -> Option<Arc<JobBooks>> {
        self.jobs.get(&job).map(|b| b.clone())
    }

    /// Every tenant's meters here.
    pub fn usage(&self) -> Vec<TenantUsage> {
        self.accounts.iter().map(|a| a.usage()).collect()
    }

    pub fn accounts(&self) -> Vec<Arc<TenantAccount>> {
        self.accounts.iter().map(|a| a.clone()).collect()
    }
}
