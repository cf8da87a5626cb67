//! Actors: one long-lived instance that runs its calls one at a time.
//!
//! An actor is a tokio task that owns one store. Calls arrive on its mailbox
//! in submission order and run strictly in that order; a call whose
//! arguments are not ready yet holds up the calls behind it, as in Ray. A
//! method that returns an error fails only that call; a trap or panic
//! poisons the instance: the call that trapped fails with the trap, and the
//! actor either restarts in a fresh instance (while it has restarts left,
//! see [`Restarts`]; queued calls then run on the new instance) or dies,
//! and every queued and later call fails with `actor-died`. A restart runs
//! the constructor again, which may read the state the actor last saved
//! with `save-checkpoint`. Killing an actor stops its task at once and is
//! never followed by a restart; the [`Mailbox`] guard fails whatever was
//! still queued.
//!
//! An actor that is neither named nor detached lives by reference: when
//! its last handle anywhere in the cluster goes, its creator's node queues
//! a stop behind the calls already queued ([`ActorCall::stop`], see
//! `handles.rs`), and the actor ends once it reaches it.
//!
//! A restart after the actor's *node* died is the business of the node
//! that created the actor: it keeps the spec and the last checkpoint (the
//! cluster's remote actors, reached through the node's port).

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use bytes::Bytes;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::FabricError;
use crate::ids::{ActorId, NodeId, ObjectId};
use crate::object_store::ObjectRef;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::call_record::{ActorTag, CallRecord, Recording};
use crate::runtime::instance::{self, Role};
use crate::runtime::job::Job;
use crate::runtime::output::Parts;
use crate::runtime::slots::{Holder, InstanceSlot};
use crate::runtime::streams::{Generator, count_value};
use crate::runtime::task::{Reply, TaskArg, resolve_args};
use crate::runtime::watch::Watches;

/// One queued method call.
#[derive(Clone)]
pub struct ActorCall {
    pub method: Arc<str>,
    pub args: Vec<TaskArg>,
    pub nested: Vec<ObjectRef>,
    pub result: ObjectId,
    pub reply: Reply,
    /// For a generator method: its backpressure (see `TaskSpec::stream`).
    pub stream: Option<u32>,
    /// The caller's handle to the actor, held (on the caller's node, never
    /// sent) until the call is answered: the handle's last borrow cannot go
    /// back to its owner, and so the stop it causes cannot set out, before
    /// the actor has this call.
    pub keep: Option<ObjectRef>,
    /// When it reached the actor (microseconds since the Unix epoch; set
    /// by [`ActorRecord::call`]).
    pub queued_us: u64,
}

/// What the node knows about a live actor.
pub struct ActorRecord {
    pub id: ActorId,
    pub job: Arc<Job>,
    pub class: Arc<str>,
    /// `(namespace, name)` when the actor is named.
    pub name: Option<(String, String)>,
    /// Outlives its job.
    pub detached: bool,
    /// The node that created it, when another: it keeps what a restart
    /// after this node's death needs, so it hears of checkpoints.
    pub owner: Option<NodeId>,
    /// The placement group it was placed in (it stops when the group goes).
    pub group: Option<crate::ids::GroupId>,
    /// Restarts so far (this incarnation's and earlier ones') and allowed.
    restarts: AtomicU32,
    /// The state the actor last saved.
    checkpoint: Mutex<Option<Bytes>>,
    /// Calls queued or running (a draining node waits for them).
    busy: AtomicUsize,
    mailbox: mpsc::UnboundedSender<Box<ActorCall>>,
    dead: Mutex<Option<String>>,
    abort: Mutex<Option<AbortHandle>>,
    /// Watches waiting for it to end (see `watch.rs`).
    watches: Watches,
}

pub use super::concurrent::MAX_CONCURRENCY;

/// How often an actor is brought back, and how many calls it runs at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Restarts allowed after a trap, a panic or its node's death.
    pub max_restarts: u32,
    /// Times a call lost with the actor's node is sent again.
    pub max_task_retries: u32,
    /// Calls it may have in flight at once, interleaved (a concurrent
    /// actor, see `concurrent.rs`); 0: one at a time, each on its own.
    pub max_concurrency: u32,
}

/// What creating an actor needs.
#[derive(Clone)]
pub struct ActorSpec {
    pub id: ActorId,
    pub job: Arc<Job>,
    pub class: Arc<str>,
    pub args: Vec<TaskArg>,
    pub nested: Vec<ObjectRef>,
    pub demand: ResourceSet,
    pub name: Option<(String, String)>,
    pub detached: bool,
    pub policy: Restarts,
    /// Restarts before this creation (0 for a new actor).
    pub restarts: u32,
    /// The state the actor saved before this creation (a restart).
    pub checkpoint: Option<Bytes>,
    /// The node that created the actor, when another.
    pub owner: Option<NodeId>,
}

impl ActorSpec {
    /// A new actor: never restarted, nothing saved, created here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: ActorId,
        job: Arc<Job>,
        class: Arc<str>,
        args: Vec<TaskArg>,
        nested: Vec<ObjectRef>,
        demand: ResourceSet,
        name: Option<(String, String)>,
        detached: bool,
        policy: Restarts,
    ) -> Self {
        ActorSpec {
            id,
            job,
            class,
            args,
            nested,
            demand,
            name,
            detached,
            policy,
            restarts: 0,
            checkpoint: None,
            owner: None,
        }
    }
}

impl ActorRecord {
    /// Why the actor died, if it did.
    pub(crate) fn death(&self) -> Option<String> {
        self.dead.lock().clone()
    }

    /// Queues a call; a dead actor fails it at once. A watch is kept
    /// aside until the actor ends.
    pub fn call(&self, core: &Arc<NodeCore>, mut call: ActorCall) {
        if call.is_watch() {
            return self.watches.add(core, call, || self.death());
        }
        if let Some(reason) = self.death() {
            core.complete(call.result, call.reply, Err(FabricError::ActorDied(reason)));
            return;
        }
        if self.job.events.is_on() {
            call.queued_us = crate::task_events::now_us();
        }
        self.busy.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(call)) = self.mailbox.send(Box::new(call)) {
            self.done_one();
            let reason = self
                .death()
                .unwrap_or_else(|| "its mailbox is closed".into());
            core.complete(call.result, call.reply, Err(FabricError::ActorDied(reason)));
        }
    }

    /// Drops the watch on this actor whose answer goes to `result` on
    /// node `owner`.
    pub fn cancel_watch(&self, result: ObjectId, owner: NodeId) {
        self.watches.cancel(|id, o| id == result && o == owner);
    }

    /// Drops the watches whose watchers are on node `owner` (it died).
    pub fn forget_watches_of(&self, owner: NodeId) {
        self.watches.cancel(|_, o| o == owner);
    }

    fn label(&self) -> String {
        format!("actor {}({})", self.class, self.id.short())
    }

    /// Calls queued or running.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    pub(crate) fn done_one(&self) {
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Records why it ended (`why` follows its label), unless it already
    /// has a reason.
    pub(crate) fn mark_dead(&self, why: &str) {
        let mut dead = self.dead.lock();
        if dead.is_none() {
            *dead = Some(format!("{} {why}", self.label()));
        }
    }

    /// Saves the actor's state; the creating node, if another, hears of it.
    pub(crate) fn save_checkpoint(&self, core: &NodeCore, state: Bytes) {
        *self.checkpoint.lock() = Some(state.clone());
        self.tell_owner(core, Some(state), false);
    }

    /// The state the actor last saved.
    pub(crate) fn checkpoint(&self) -> Option<Bytes> {
        self.checkpoint.lock().clone()
    }

    pub(crate) fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Tells the node that created the actor (if another) what changed.
    fn tell_owner(&self, core: &NodeCore, checkpoint: Option<Bytes>, dead: bool) {
        if let Some(owner) = self.owner {
            core.port()
                .actor_changed(owner, self.id, self.restarts(), checkpoint, dead);
        }
    }
}

/// Creates an actor on this node (no cluster): claims its name, if any,
/// in this node's registry, then starts it.
pub(crate) fn create_local(
    core: &Arc<NodeCore>,
    spec: ActorSpec,
    get_if_exists: bool,
) -> Result<ActorId, FabricError> {
    if let Some(key) = &spec.name {
        match core.named_actors().entry(key.clone()) {
            dashmap::Entry::Occupied(existing) if get_if_exists => return Ok(*existing.get()),
            dashmap::Entry::Occupied(_) => {
                return Err(FabricError::InvalidArgument(format!(
                    "an actor named `{}` already exists in namespace `{}`",
                    key.1,
                    crate::runtime::job::shown_namespace(&key.0)
                )));
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(spec.id);
            }
        }
    }
    let slot = match spec.job.take_slot_for(core, Holder::Actor, &spec.class) {
        Ok(slot) => slot,
        Err(e) => {
            if let Some(key) = &spec.name {
                core.named_actors().remove_if(key, |_, id| *id == spec.id);
            }
            return Err(e);
        }
    };
    let id = spec.id;
    spawn(core, spec, slot);
    Ok(id)
}

/// Starts an actor: registers it and spawns its task, which holds `slot`
/// (taken for it with [`Job::take_slot`]) for as long as the actor lives,
/// restarts included.
pub fn spawn(core: &Arc<NodeCore>, spec: ActorSpec, slot: InstanceSlot) -> Arc<ActorRecord> {
    spec.job.account.count_actor();
    let (tx, rx) = mpsc::unbounded_channel();
    let record = Arc::new(ActorRecord {
        id: spec.id,
        job: spec.job.clone(),
        class: spec.class.clone(),
        name: spec.name.clone(),
        detached: spec.detached,
        owner: spec.owner,
        group: crate::bundles::group_of(&spec.demand),
        restarts: AtomicU32::new(spec.restarts),
        checkpoint: Mutex::new(spec.checkpoint.clone()),
        busy: AtomicUsize::new(0),
        mailbox: tx,
        dead: Mutex::new(None),
        abort: Mutex::new(None),
        watches: Watches::default(),
    });
    core.actors().insert(spec.id, record.clone());
    let mailbox = Mailbox {
        rx,
        parked: Default::default(),
        core: core.clone(),
        record: record.clone(),
        current: None,
    };
    let handle = core
        .runtime()
        .spawn(actor_main(core.clone(), spec, mailbox, slot));
    *record.abort.lock() = Some(handle.abort_handle());
    if record.death().is_some() {
        handle.abort();
    }
    // Its job ended while it was being created (after the job's actors
    // were stopped): it must not outlive the job.
    if record.job.is_finished() && !record.detached {
        kill(
            core,
            &record,
            format!("{} stopped: its job ended", record.label()),
        );
    }
    record
}

/// Records an actor that could not be created here as dead, so calls to it
/// fail at once with `reason`.
pub fn record_dead(core: &NodeCore, id: ActorId, job: Arc<Job>, class: Arc<str>, reason: String) {
    let (tx, _) = mpsc::unbounded_channel();
    let record = Arc::new(ActorRecord {
        id,
        job,
        class,
        name: None,
        detached: false,
        owner: None,
        group: None,
        restarts: AtomicU32::new(0),
        checkpoint: Mutex::new(None),
        busy: AtomicUsize::new(0),
        mailbox: tx,
        dead: Mutex::new(Some(reason)),
        abort: Mutex::new(None),
        watches: Watches::default(),
    });
    core.actors().insert(id, record);
}

/// Marks the actor dead, frees its name and stops its task. The record stays
/// (until its job ends) so later calls fail with the reason it died.
pub fn kill(core: &NodeCore, record: &ActorRecord, reason: String) {
    {
        let mut dead = record.dead.lock();
        if dead.is_none() {
            *dead = Some(reason);
        }
    }
    release_name(core, record);
    if let Some(h) = record.abort.lock().take() {
        h.abort();
    }
}

fn release_name(core: &NodeCore, record: &ActorRecord) {
    if let Some(key) = &record.name {
        core.named_actors().remove_if(key, |_, id| *id == record.id);
    }
}

/// Where an actor's calls wait. They wait boxed: tokio's channel keeps
/// its queue in blocks of 32 slots and gives every channel its first
/// block when it is made, so an idle actor holds 32 slots; boxed calls
/// make that block 32 pointers (about 300 bytes) rather than 32 calls
/// (5 KiB), a twentieth of an idle actor's memory.
pub(crate) type CallReceiver = mpsc::UnboundedReceiver<Box<ActorCall>>;

/// The receiving end of an actor's calls. Dropping it (the actor ended or
/// was killed) fails the call in flight and every queued one.
pub(crate) struct Mailbox {
    pub(super) rx: CallReceiver,
    /// Calls a concurrent actor's run took but had not started (their
    /// arguments were not here): they go first to the next run.
    pub(super) parked: std::collections::VecDeque<ActorCall>,
    core: Arc<NodeCore>,
    pub(super) record: Arc<ActorRecord>,
    current: Option<(ObjectId, Reply)>,
}

impl Mailbox {
    pub(super) fn die(&mut self, reason: String) {
        tracing::debug!(actor = %self.record.id.short(), class = %self.record.class, %reason, "actor died");
        let mut dead = self.record.dead.lock();
        if dead.is_none() {
            *dead = Some(reason);
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if self.record.death().is_none() {
            self.die(format!("{} stopped", self.record.label()));
        }
        let reason = self.record.death().unwrap_or_default();
        self.record.watches.end(&self.core, &reason);
        release_name(&self.core, &self.record);
        self.core.port().actor_died(self.record.id, reason.clone());
        // Dead for good: its creator need not keep what restarts need.
        self.record.tell_owner(&self.core, None, true);
        self.rx.close();
        if let Some((id, reply)) = self.current.take() {
            self.core
                .complete(id, reply, Err(FabricError::ActorDied(reason.clone())));
            self.record.done_one();
        }
        let parked: Vec<ActorCall> = self.parked.drain(..).collect();
        let queued = std::iter::from_fn(|| self.rx.try_recv().ok().map(|c| *c));
        for call in parked.into_iter().chain(queued.collect::<Vec<_>>()) {
            if call.is_stop() {
                self.core
                    .complete(call.result, call.reply, Ok((Bytes::new(), Vec::new())));
                self.record.done_one();
                continue;
            }
            self.core.complete(
                call.result,
                call.reply,
                Err(FabricError::ActorDied(reason.clone())),
            );
            self.record.done_one();
        }
    }
}

/// Waits until every object argument is ready (failed ones included).
async fn await_args(args: &[TaskArg]) {
    for r in args.iter().flat_map(TaskArg::objects) {
        let _ = r.get(None).await;
    }
}

/// Whether the component of the actor's class exports `actor-run`.
fn runs_concurrently(spec: &ActorSpec) -> bool {
    spec.job
        .component_of(&spec.class)
        .is_ok_and(|(app, _)| app.exports.actor_run.is_some())
}

async fn actor_main(
    core: Arc<NodeCore>,
    mut spec: ActorSpec,
    mut mailbox: Mailbox,
    _slot: InstanceSlot,
) {
    let label = mailbox.record.label();
    if spec.policy.max_concurrency > 0 && !runs_concurrently(&spec) {
        return mailbox.die(format!(
            "{label} could not start: it is concurrent (max-concurrency), and its component \
             exports no `actor-run`"
        ));
    }
    let mut lease = match core.acquire(spec.demand.clone(), &spec.job).await {
        Ok(l) => Some(l),
        Err(e) => return mailbox.die(format!("{label} could not start: {e}")),
    };
    await_args(&spec.args).await;
    let argv = match resolve_args(&spec.job, &format!("{}.new", spec.class), &spec.args) {
        Ok(a) => a,
        Err(e) => {
            return mailbox.die(format!(
                "{label} could not start: a constructor argument failed: {e}"
            ));
        }
    };
    let restartable = spec.policy.max_restarts > 0;
    // A restart re-runs the constructor with the same arguments: keep their
    // bytes (not the references) only when there can be one.
    let kept_argv = restartable.then(|| argv.clone());
    let mut argv = Some(argv);
    drop(std::mem::take(&mut spec.args));
    // The references inside the arguments stay until the constructor has
    // decoded them (and held its own), for every run of it when it may run
    // again: the last reference to a value's object may be this one.
    let mut nested = Some(std::mem::take(&mut spec.nested));
    loop {
        let queued_us = crate::task_events::now_us();
        let lease_now = match lease.take() {
            Some(l) => l,
            None => match core.acquire(spec.demand.clone(), &spec.job).await {
                Ok(l) => l,
                Err(e) => return mailbox.die(format!("{label} could not restart: {e}")),
            },
        };
        let ctor_args = match argv.take() {
            Some(a) => a,
            None => kept_argv.clone().unwrap_or_default(),
        };
        let built = construct(&core, &mailbox.record, lease_now, &ctor_args, queued_us).await;
        let (mut store, inst) = match built {
            Ok(built) => built,
            Err(e) => return mailbox.die(format!("{label} could not start: {e}")),
        };
        drop(ctor_args);
        if !restartable {
            drop(nested.take());
        }
        let served = serve_instance(&core, &spec, &mut store, &inst, &mut mailbox).await;
        let Some(reason) = served else {
            return;
        };
        // The instance is poisoned: restart it in a fresh one, or die.
        let record = &mailbox.record;
        let done = record.restarts();
        if done >= spec.policy.max_restarts || record.death().is_some() {
            let reason = if restartable {
                format!("{reason} (after {done} restarts)")
            } else {
                reason
            };
            return mailbox.die(reason);
        }
        record.restarts.store(done + 1, Ordering::Relaxed);
        spec.job.account.count_restart();
        record.tell_owner(&core, None, false);
        // What it was is gone: its watchers hear of it as of a death.
        record.watches.end(
            &core,
            &format!("{reason} (it restarts, without the state it had)"),
        );
        tracing::warn!(actor = %spec.id.short(), class = %spec.class, restart = done + 1, max = spec.policy.max_restarts, %reason, "restarting the actor");
    }
}

/// Serves calls on the instance: one at a time, or interleaved for a
/// concurrent actor.
async fn serve_instance(
    core: &Arc<NodeCore>,
    spec: &ActorSpec,
    store: &mut wasmtime::Store<instance::InstanceState>,
    inst: &wasmtime::component::Instance,
    mailbox: &mut Mailbox,
) -> Option<String> {
    let exports = match spec.job.component_of(&spec.class) {
        Ok((app, _)) => &app.exports,
        Err(e) => return Some(e.to_string()),
    };
    match spec.policy.max_concurrency {
        0 => serve(core, &spec.class, store, inst, exports, mailbox).await,
        max => super::concurrent::serve(core, &spec.job, exports, store, inst, mailbox, max).await,
    }
}

/// A fresh instance of `record`'s actor (holding `lease`) whose
/// constructor ran on `args`; its construction (since `queued_us`) is
/// recorded as one of its job's events.
async fn construct(
    core: &Arc<NodeCore>,
    record: &ActorRecord,
    lease: crate::scheduler::Lease,
    args: &[Bytes],
    queued_us: u64,
) -> Result<(instance::Sandbox, wasmtime::component::Instance), FabricError> {
    let bytes_in = args.iter().map(|a| a.len() as u64).sum();
    let tag = ActorTag::of(record);
    let creating = Recording::new(&tag, None, || {
        CallRecord::creation(&tag, queued_us, bytes_in)
    });
    let built = build(core, record, lease, args).await;
    if let Some(ran) = creating.finish() {
        tag.keep(ran.ended(&tag, None, &built, 0));
    }
    built
}

async fn build(
    core: &Arc<NodeCore>,
    record: &ActorRecord,
    lease: crate::scheduler::Lease,
    args: &[Bytes],
) -> Result<(instance::Sandbox, wasmtime::component::Instance), FabricError> {
    let (job, class) = (&record.job, &record.class);
    let role = Role::Actor {
        id: record.id,
        class: class.clone(),
    };
    let (app, local) = job.component_of(class)?;
    let mut store = instance::new_store(core, job, role, Some(lease), None, &[]);
    let what = format!("{class}.new");
    let inst = instance::instantiate(&mut store, app, &what).await?;
    instance::call_new(&mut store, &inst, &app.exports.actor_new, local, args).await?;
    Ok((store, inst))
}

/// Runs calls on the instance until the mailbox closes (`None`) or a call
/// poisons the instance (`Some(why)`).
async fn serve(
    core: &Arc<NodeCore>,
    class: &Arc<str>,
    store: &mut wasmtime::Store<instance::InstanceState>,
    inst: &wasmtime::component::Instance,
    exports: &crate::runtime::component::GuestExports,
    mailbox: &mut Mailbox,
) -> Option<String> {
    let label = mailbox.record.label();
    let Some(job) = store.data().exec.as_ref().map(|e| e.job.clone()) else {
        return Some(format!("{label} has no job"));
    };
    let tag = ActorTag::of(&mailbox.record);
    while let Some(call) = mailbox.rx.recv().await {
        let call = *call;
        if call.is_stop() {
            // No handle is left: it ends after the calls queued before.
            core.complete(call.result, call.reply, Ok((Bytes::new(), Vec::new())));
            mailbox.record.done_one();
            mailbox.die(format!("{label} stopped: its last handle was dropped"));
            // Nothing can name it any more: its record goes too (a driver
            // that makes and drops actors in a loop keeps nothing of them).
            let record = &mailbox.record;
            core.actors()
                .remove_if(&record.id, |_, r| Arc::ptr_eq(r, record));
            return None;
        }
        mailbox.current = Some((call.result, call.reply));
        await_args(&call.args).await;
        let mut ran = Recording::new(&tag, Some(&call), || CallRecord::start(&call));
        let what = format!("{}.{}", class, call.method);
        store.data_mut().generator = call
            .stream
            .map(|bound| Generator::start(core, call.result, call.reply, bound));
        let outcome = match resolve_args(&job, &what, &call.args) {
            Ok(argv) => {
                ran.bytes_in(argv.iter().map(|a| a.len() as u64).sum());
                let export = &exports.actor_call;
                instance::call_output(store, inst, export, &call.method, &argv, &what, Parts::one)
                    .await
            }
            Err(e) => Err(e),
        };
        let outcome = match store.data_mut().generator.take() {
            // A generator's value is the number of items it yielded.
            Some(g) => outcome.map(|_| (count_value(g.next), Vec::new())),
            None => outcome,
        };
        mailbox.current = None;
        // A trap, panic or broken limit poisons the instance; an error the
        // method returned (or an argument that failed) does not.
        let death = match &outcome {
            Err(e) if store.data().poisoned => Some(format!("{label} died: {e}")),
            _ => None,
        };
        let bytes_out = outcome.as_ref().map_or(0, |(v, _)| v.len() as u64);
        let ran = ran.finish();
        let event = ran.map(|r| r.ended(&tag, Some(call.method), &outcome, bytes_out));
        core.complete(call.result, call.reply, outcome);
        if let Some(event) = event {
            tag.keep(event);
        }
        mailbox.record.done_one();
        drop((call.args, call.nested));
        if death.is_some() {
            return death;
        }
    }
    None
}
