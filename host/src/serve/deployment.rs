//! One deployment's replicas: which one takes a request, how many wait,
//! and a replica that died replaced.
//!
//! A request goes to the less loaded of two replicas drawn at random
//! (power of two choices) among those below `max_ongoing_requests`; when
//! every replica is full it waits, up to `max_queued_requests` of them, for
//! one to finish; beyond that it is refused at once (503), so an overloaded
//! deployment holds no more than its queue.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::FabricError;
use crate::ids::ActorId;
use crate::runtime::routers::RouterRegistration;
use crate::runtime::service::{Pending, Service, ServiceActor};
use crate::serve::config::{AutoscalingConfig, BatchConfig};
use crate::serve::starts::{Starting, Starts};
use crate::serve::stats::{DeploymentReading, RequestStats};
use crate::serve::value;

/// Why a request was not answered by a replica.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ServeError {
    #[error("every replica is busy and the queue is full")]
    Overloaded,
    #[error("the request took longer than {0:?}")]
    Timeout(Duration),
    #[error("the replica failed: {0}")]
    ReplicaFailed(String),
    #[error("the handler failed: {0}")]
    Handler(String),
    #[error("the deployment cannot take the request now: {0}")]
    Unavailable(String),
}

/// One replica: its actor, the requests it has, and (when the deployment
/// batches) the batch being filled for it.
struct Replica {
    actor: ActorId,
    ongoing: AtomicUsize,
    filling: Mutex<Filling>,
}

/// The batch being filled for one replica.
#[derive(Default)]
struct Filling {
    waiting: Vec<Waiting>,
    /// Raised each time a batch goes, so that a timer sends only its own.
    generation: u64,
}

impl Filling {
    fn take(&mut self) -> Vec<Waiting> {
        self.generation += 1;
        std::mem::take(&mut self.waiting)
    }
}

/// A request waiting in a batch, with its place at the replica.
struct Waiting {
    request: Bytes,
    slot: Slot,
    answer: oneshot::Sender<Result<Answer, ServeError>>,
}

/// A running deployment.
pub struct Deployment {
    pub name: String,
    pub(super) service: Service,
    /// What a new replica is made from (its arguments change with
    /// [`Deployment::reconfigure`]).
    template: Mutex<ServiceActor>,
    /// Whether replicas interleave their requests.
    pub(super) concurrent: bool,
    batch: Option<BatchConfig>,
    method: String,
    max_ongoing: usize,
    max_queued: usize,
    timeout: Duration,
    replicas: Mutex<Vec<Arc<Replica>>>,
    queued: AtomicUsize,
    /// Woken when a request finishes (a place may be free).
    freed: Notify,
    /// Woken (all at once) when a request finishes, for handle calls from a
    /// replica of this deployment, which may not take every place: they
    /// must not take a wakeup another waiter could use.
    freed_apart: Notify,
    /// When replicas were replaced lately (for the backoff).
    replaced: Mutex<VecDeque<Instant>>,
    /// Replicas being started (by the autoscaler or as replacements).
    starts: Arc<Starts>,
    /// Wakes the autoscaler: a request found no replica.
    scale_now: Arc<Notify>,
    /// Requests answered, for the metrics.
    pub stats: RequestStats,
    /// Its name among the tenant's deployment handles (see
    /// [`super::handles`]), while it runs.
    pub(super) handle: Mutex<Option<RouterRegistration>>,
}

/// A replica's answer: the handler's encoded value, still charged to the
/// deployment's job while this lives.
pub struct Answer {
    pub value: Bytes,
    _charged: Arc<Pending>,
}

/// What a deployment is made of, once its component is loaded.
pub struct DeploymentPlan {
    pub name: String,
    pub replica: ServiceActor,
    pub replicas: u32,
    pub method: String,
    pub max_ongoing: u32,
    pub max_queued: u32,
    pub timeout: Duration,
    /// The count follows the load between bounds; `replicas` is then the
    /// count at start.
    pub autoscaling: Option<AutoscalingConfig>,
    /// Requests collected into calls of a list (see [`BatchConfig`]).
    pub batch: Option<BatchConfig>,
}

impl Deployment {
    /// The tenant its replicas run for.
    pub fn tenant(&self) -> &str {
        self.service.tenant()
    }

    /// Starts the plan's replicas in `service`.
    pub async fn start(service: Service, plan: DeploymentPlan) -> Result<Arc<Self>, FabricError> {
        let deployment = Arc::new(Deployment {
            name: plan.name,
            service,
            concurrent: plan.replica.policy.max_concurrency > 0,
            batch: plan.batch,
            template: Mutex::new(plan.replica),
            method: plan.method,
            max_ongoing: plan.max_ongoing as usize,
            max_queued: plan.max_queued as usize,
            timeout: plan.timeout,
            replicas: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            freed: Notify::new(),
            freed_apart: Notify::new(),
            replaced: Mutex::new(VecDeque::new()),
            starts: Arc::default(),
            scale_now: Arc::new(Notify::new()),
            stats: RequestStats::default(),
            handle: Mutex::new(None),
        });
        for _ in 0..plan.replicas {
            let template = deployment.template.lock().clone();
            let actor = deployment.service.create_actor(template).await?;
            deployment.ready(actor).await?;
            deployment.add(actor);
        }
        if let Some(config) = plan.autoscaling {
            super::autoscale::spawn(&deployment, config, deployment.scale_now.clone());
        }
        // A new name is found at once, so the constructors of deployments
        // started after this one find it (a redeploy's waits for its
        // commit: the running one keeps it until then).
        deployment.claim_handle_name(false)?;
        Ok(deployment)
    }

    fn add(self: &Arc<Self>, actor: ActorId) {
        self.replicas.lock().push(Arc::new(Replica {
            actor,
            ongoing: AtomicUsize::new(0),
            filling: Mutex::default(),
        }));
        self.freed.notify_waiters();
        self.freed_apart.notify_waiters();
    }

    /// A call of `actor` failed as a replica's own failure would (a trap,
    /// a limit, its node lost): it is replaced if it is gone, which a probe
    /// tells. The error alone does not: a replica may pass on the error of
    /// a deployment it called, and stays up.
    pub(super) fn check_replica(self: &Arc<Self>, actor: ActorId) {
        // Out of rotation while it is probed: no new request goes to a
        // replica that may be gone (one probe at a time: a replica already
        // out is being probed, or was replaced).
        let taken_out = {
            let mut replicas = self.replicas.lock();
            let at = replicas.iter().position(|r| r.actor == actor);
            at.map(|i| replicas.remove(i))
        };
        let Some(replica) = taken_out else { return };
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(d) = me.upgrade() else { return };
            let probe = d.service.call(actor, "-ready-", Vec::new());
            let gone = match tokio::time::timeout(d.timeout, probe).await {
                Ok(Err(e)) => ends_the_replica(&e, false) || is_refusal(&e),
                // Up (its answer is "unknown function"), or too busy to say.
                _ => false,
            };
            d.replicas.lock().push(replica);
            match gone {
                true => d.replace(actor),
                false => {
                    d.freed.notify_waiters();
                    d.freed_apart.notify_waiters();
                }
            }
        });
    }

    /// Replicas running now.
    pub fn replica_count(&self) -> usize {
        self.replicas.lock().len()
    }

    /// The most requests that wait for a replica.
    pub fn max_queued(&self) -> usize {
        self.max_queued
    }

    /// Requests waiting for a replica now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Waits until `actor`'s constructor has run, with a call no method
    /// answers (its name is no identifier in any SDK): an actor that
    /// answers "unknown function" is up; one whose constructor failed is
    /// dead, and fails this. Bounded by the request timeout, so a replica
    /// takes requests only once it could answer them.
    async fn ready(&self, actor: ActorId) -> Result<(), FabricError> {
        let probe = self.service.call(actor, "-ready-", Vec::new());
        match tokio::time::timeout(self.timeout, probe).await {
            Err(_) => Err(FabricError::InvalidArgument(format!(
                "a replica of `{}` did not start within {:?}",
                self.name, self.timeout
            ))),
            Ok(Err(e)) if ends_the_replica(&e, false) || is_refusal(&e) => Err(e),
            Ok(_) => Ok(()),
        }
    }

    /// Hands `args` (a new user config) to each replica's `reconfigure`
    /// method, in turn with its requests, and to the constructor of every
    /// replica started from now on: Ray's reconfigure without a restart.
    /// Fails at the first replica that has no such method or raised.
    pub async fn reconfigure(&self, args: Vec<Bytes>) -> Result<(), FabricError> {
        self.template.lock().args = args.clone();
        let actors: Vec<ActorId> = self.replicas.lock().iter().map(|r| r.actor).collect();
        for actor in actors {
            // Bounded: a replica that stalls in `reconfigure` (or behind
            // its queue) cannot hold the reload, which is every
            // deployment's, for longer than a request may take.
            let call = self.service.call(actor, "reconfigure", args.clone());
            match tokio::time::timeout(self.timeout, call).await {
                Ok(answered) => answered?,
                Err(_) => {
                    return Err(FabricError::InvalidArgument(format!(
                        "`reconfigure` took longer than {:?}",
                        self.timeout
                    )));
                }
            };
        }
        Ok(())
    }

    /// Its figures now, for a scrape.
    pub fn reading(&self) -> DeploymentReading {
        let (replicas, ongoing) = {
            let replicas = self.replicas.lock();
            let ongoing = replicas
                .iter()
                .map(|r| r.ongoing.load(Ordering::Relaxed))
                .sum();
            (replicas.len(), ongoing)
        };
        DeploymentReading {
            name: self.name.clone(),
            by_class: self.stats.by_class(),
            latency: self.stats.latency(),
            replicas,
            starting: self.starts.pending(),
            ongoing,
            queued: self.queued(),
        }
    }

    /// What the autoscaler reads: the load (requests at replicas and
    /// queued) and the replicas running or starting.
    pub(super) fn scaling_inputs(&self) -> (usize, usize) {
        let replicas = self.replicas.lock();
        let ongoing: usize = replicas
            .iter()
            .map(|r| r.ongoing.load(Ordering::Relaxed))
            .sum();
        let current = replicas.len() + self.starts.pending();
        (ongoing + self.queued(), current)
    }

    /// A place at a replica with room, waiting in the bounded queue until
    /// `deadline` while none has.
    pub async fn reserve(self: &Arc<Self>, deadline: Instant) -> Result<Slot, ServeError> {
        self.reserve_apart(deadline, None).await
    }

    /// [`Deployment::reserve`], at a replica other than `caller` (a
    /// replica calling its own deployment through a handle would wait for
    /// itself).
    pub(super) async fn reserve_apart(
        self: &Arc<Self>,
        deadline: Instant,
        caller: Option<ActorId>,
    ) -> Result<Slot, ServeError> {
        match tokio::time::timeout_at(deadline, self.place(caller)).await {
            Ok(placed) => Ok(Slot {
                replica: placed?,
                deployment: self.clone(),
            }),
            Err(_) => Err(ServeError::Timeout(self.timeout)),
        }
    }

    /// When a request that arrives now must be answered.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// Runs `request` (its encoded value) on the slot's replica and waits
    /// until `deadline` for the answer. The call runs in a task of its own,
    /// which holds the slot and the call's charge until the replica is
    /// done with it, whether or not anyone still waits: a caller that
    /// leaves, or times out, frees no place a busy replica still fills.
    pub async fn run(
        self: &Arc<Self>,
        slot: Slot,
        request: Bytes,
        deadline: Instant,
    ) -> Result<Answer, ServeError> {
        let (answer, answered) = oneshot::channel();
        match &self.batch {
            Some(batch) => self.join_batch(
                batch,
                Waiting {
                    request,
                    slot,
                    answer,
                },
            ),
            None => {
                let me = self.clone();
                tokio::spawn(async move {
                    let actor = slot.replica.actor;
                    let outcome = me.call(actor, request).await;
                    let _ = answer.send(outcome);
                    drop(slot);
                });
            }
        }
        match tokio::time::timeout_at(deadline, answered).await {
            Err(_) => Err(ServeError::Timeout(self.timeout)),
            Ok(Err(_)) => Err(ServeError::Unavailable("the call was lost".into())),
            Ok(Ok(outcome)) => outcome,
        }
    }

    /// Adds a request to its replica's batch; the batch goes when full,
    /// or `max_wait` after its first request.
    fn join_batch(self: &Arc<Self>, batch: &BatchConfig, waiting: Waiting) {
        let replica = waiting.slot.replica.clone();
        let mut filling = replica.filling.lock();
        filling.waiting.push(waiting);
        if filling.waiting.len() >= batch.max_size as usize {
            let full = filling.take();
            drop(filling);
            return self.send_batch(replica.actor, full);
        }
        if filling.waiting.len() > 1 {
            return; // its timer runs already
        }
        let generation = filling.generation;
        drop(filling);
        let (me, wait) = (Arc::downgrade(self), batch.max_wait);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let due = {
                let mut filling = replica.filling.lock();
                if filling.generation != generation {
                    return; // it filled up and went
                }
                filling.take()
            };
            // The requests' places hold the deployment: it is there.
            if let Some(d) = me.upgrade() {
                d.send_batch(replica.actor, due);
            }
        });
    }

    /// Calls the replica once with the batch's requests as a list, and
    /// hands each request its item of the answer; each keeps its place
    /// until then. A failure is every request's.
    fn send_batch(self: &Arc<Self>, actor: ActorId, mut batch: Vec<Waiting>) {
        let me = self.clone();
        tokio::spawn(async move {
            // The list is the call's argument, charged to the job; the
            // requests are not kept beside it.
            let requests = batch.iter_mut().map(|w| std::mem::take(&mut w.request));
            let requests = value::request_list(requests.collect());
            let answers = match me.call(actor, requests).await {
                Ok(answer) => value::answer_list(&answer.value, batch.len())
                    .map_err(ServeError::Handler)
                    .map(|items| (items, answer._charged)),
                Err(e) => Err(e),
            };
            match answers {
                Ok((items, charged)) => {
                    for (w, value) in batch.into_iter().zip(items) {
                        let _charged = charged.clone();
                        let _ = w.answer.send(Ok(Answer { value, _charged }));
                    }
                }
                Err(e) => {
                    // Each request's failure is logged as it is answered.
                    for w in batch {
                        let _ = w.answer.send(Err(e.clone()));
                    }
                }
            }
        });
    }

    async fn call(self: &Arc<Self>, actor: ActorId, request: Bytes) -> Result<Answer, ServeError> {
        // Refused before it reached the replica (the tenant's quota, a full
        // store): the deployment is busy, the replica is fine.
        let pending = match self
            .service
            .submit(actor, &self.method, vec![request])
            .await
        {
            Ok(pending) => pending,
            // The replica is gone (killed, or died while idle): replaced.
            Err(e @ (FabricError::NotFound(_) | FabricError::ActorDied(_))) => {
                self.replace(actor);
                return Err(ServeError::ReplicaFailed(e.to_string()));
            }
            Err(e) => return Err(ServeError::Unavailable(e.to_string())),
        };
        match pending.outcome().await {
            Ok(value) => Ok(Answer {
                value,
                _charged: Arc::new(pending),
            }),
            // A 502; the replica is replaced if a probe finds it gone
            // (this may be an error it passed on).
            Err(e) if ends_the_replica(&e, self.concurrent) => {
                self.check_replica(actor);
                Err(ServeError::ReplicaFailed(e.to_string()))
            }
            Err(e) => Err(ServeError::Handler(e.to_string())),
        }
    }

    /// A replica with room, taken (its count raised), waiting in the queue
    /// while none has room.
    async fn place(&self, caller: Option<ActorId>) -> Result<Arc<Replica>, ServeError> {
        if let Some(r) = self.try_take(caller) {
            return Ok(r);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ServeError::Overloaded);
        }
        let _queued = Queued(&self.queued);
        if self.replicas.lock().is_empty() {
            // Scaled to zero, or every replica being replaced: the
            // autoscaler (if any) starts one now rather than at its tick.
            self.scale_now.notify_one();
        }
        let freed_by = match caller {
            None => &self.freed,
            Some(_) => &self.freed_apart,
        };
        loop {
            let freed = freed_by.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_take(caller) {
                return Ok(r);
            }
            freed.await;
        }
    }

    /// Power of two choices over the replicas below the bound (but
    /// `caller`).
    fn try_take(&self, caller: Option<ActorId>) -> Option<Arc<Replica>> {
        let replicas = self.replicas.lock();
        if replicas.is_empty() {
            // Every replica is being replaced: wait in the queue for one.
            return None;
        }
        let mut rng = rand::rng();
        let a = &replicas[rng.random_range(0..replicas.len())];
        let b = &replicas[rng.random_range(0..replicas.len())];
        let (first, second) =
            match a.ongoing.load(Ordering::Relaxed) <= b.ongoing.load(Ordering::Relaxed) {
                true => (a, b),
                false => (b, a),
            };
        for r in [first, second].into_iter().chain(replicas.iter()) {
            if Some(r.actor) == caller {
                continue;
            }
            let taken = r
                .ongoing
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n < self.max_ongoing).then_some(n + 1)
                });
            if taken.is_ok() {
                return Some(r.clone());
            }
        }
        None
    }

    /// Replaces a replica that failed with a new actor (once, by whichever
    /// request saw it fail first): the old one is stopped, whatever its
    /// state, and its queued requests fail (502).
    pub(super) fn replace(self: &Arc<Self>, dead: ActorId) {
        let removed = {
            let mut replicas = self.replicas.lock();
            let before = replicas.len();
            replicas.retain(|r| r.actor != dead);
            replicas.len() < before
        };
        if !removed {
            return;
        }
        tracing::warn!(deployment = %self.name, actor = %dead, "a replica failed: starting another");
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            if let Some(d) = me.upgrade() {
                let _ = d.service.kill(dead).await;
            }
        });
        self.start_replica(self.replacement_delay());
    }

    /// Starts one replica after `delay`, retrying with a backoff until it
    /// starts, the deployment is gone, or the autoscaler no longer wants it
    /// ([`Deployment::shrink`]); counted as starting meanwhile.
    pub(super) fn start_replica(self: &Arc<Self>, delay: Duration) {
        let starting = Starting::new(self.starts.clone());
        let me: Weak<Deployment> = Arc::downgrade(self);
        let began = Instant::now();
        tokio::spawn(async move {
            // Counted until this task ends, however it ends.
            let _starting = starting;
            tokio::time::sleep(delay).await;
            let mut wait = Duration::from_millis(100);
            // Gone with its deployment: nothing to start.
            while let Some(d) = me.upgrade() {
                if d.starts.take_cancel() {
                    return;
                }
                let template = d.template.lock().clone();
                let created = match d.service.create_actor(template).await {
                    Ok(actor) => match d.ready(actor).await {
                        Ok(()) => Ok(actor),
                        Err(e) => {
                            let _ = d.service.kill(actor).await;
                            Err(e)
                        }
                    },
                    Err(e) => Err(e),
                };
                match created {
                    Ok(actor) => {
                        if d.starts.take_cancel() {
                            let _ = d.service.kill(actor).await;
                            return;
                        }
                        tracing::debug!(deployment = %d.name, took = ?began.elapsed(), "a replica started");
                        return d.add(actor);
                    }
                    Err(FabricError::Cancelled) => return,
                    Err(e) => {
                        tracing::warn!(deployment = %d.name, error = %e, "cannot start a replica");
                    }
                }
                drop(d);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Has `n` fewer replicas: replicas still starting are called off
    /// first (they answer nothing yet), then the idlest running ones are
    /// retired.
    pub(super) fn shrink(self: &Arc<Self>, n: usize) {
        let called_off = self.starts.cancel(n);
        self.retire(n - called_off);
    }

    /// Stops the `n` idlest replicas (keeping none is allowed): each is
    /// taken out of the choice at once, and stopped once the requests it
    /// has are answered.
    fn retire(self: &Arc<Self>, n: usize) {
        let retired: Vec<Arc<Replica>> = {
            let mut replicas = self.replicas.lock();
            replicas.sort_by_key(|r| r.ongoing.load(Ordering::Relaxed));
            let n = n.min(replicas.len());
            replicas.drain(..n).collect()
        };
        for replica in retired {
            let me = Arc::downgrade(self);
            tokio::spawn(async move {
                // No new request reaches it; those it has hold a count.
                while replica.ongoing.load(Ordering::Acquire) > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Some(d) = me.upgrade() {
                    let _ = d.service.kill(replica.actor).await;
                }
            });
        }
    }

    /// How long to wait before starting a replacement: nothing for the
    /// first in a minute, then doubling from 100 ms up to [`MAX_BACKOFF`],
    /// so a request that crashes its replica every time cannot keep the
    /// node instantiating.
    fn replacement_delay(&self) -> Duration {
        let now = Instant::now();
        let mut replaced = self.replaced.lock();
        while replaced
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            replaced.pop_front();
        }
        let recent = replaced.len() as u32;
        if replaced.len() < 64 {
            replaced.push_back(now);
        }
        match recent {
            0 => Duration::ZERO,
            n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 1)).min(MAX_BACKOFF),
        }
    }
}

/// The longest a replacement waits.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Whether a call's failure is the replica's own (its instance trapped,
/// panicked, ran out of a limit, or died) rather than the handler's error.
/// A concurrent replica outlives a call past its wall time (the host fails
/// that call alone); any other limit ends the instance.
pub(super) fn ends_the_replica(e: &FabricError, concurrent: bool) -> bool {
    use crate::error::FailureKind;
    match e {
        FabricError::LimitExceeded { name, .. } => !(concurrent && name == "wall-time"),
        FabricError::ActorDied(_) => true,
        FabricError::TaskFailed(f) => {
            matches!(
                f.kind,
                FailureKind::Trap | FailureKind::Panic | FailureKind::System
            )
        }
        _ => false,
    }
}

/// Whether a failure is a refusal to run the call at all (the actor is
/// gone or was never admitted), as opposed to an answer from it.
fn is_refusal(e: &FabricError) -> bool {
    matches!(
        e,
        FabricError::NotFound(_) | FabricError::LimitExceeded { .. }
    )
}

/// A request's place at a replica; given back however the request ends.
pub struct Slot {
    replica: Arc<Replica>,
    deployment: Arc<Deployment>,
}

impl Slot {
    /// The replica it is a place at.
    pub fn actor(&self) -> ActorId {
        self.replica.actor
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.replica.ongoing.fetch_sub(1, Ordering::AcqRel);
        self.deployment.freed.notify_one();
        self.deployment.freed_apart.notify_waiters();
    }
}

/// A request's place in the queue.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
