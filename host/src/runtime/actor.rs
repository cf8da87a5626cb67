//! Actors: one long-lived instance that runs its calls one at a time.
//!
//! An actor is a tokio task that owns one store. Calls arrive on its mailbox
//! in submission order and run strictly in that order; a call whose
//! arguments are not ready yet holds up the calls behind it, as in Ray. A
//! method that returns an error fails only that call; a trap or panic
//! poisons the instance, so the actor dies and every queued and later call
//! fails with `actor-died`. Killing an actor stops its task at once; the
//! [`Mailbox`] guard fails whatever was still queued.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::error::{FabricError, FailureKind};
use crate::ids::{ActorId, ObjectId};
use crate::object_store::ObjectRef;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::instance::{self, Role};
use crate::runtime::job::Job;
use crate::runtime::task::{Reply, TaskArg, resolve_args};

/// One queued method call.
pub(crate) struct ActorCall {
    pub method: Arc<str>,
    pub args: Vec<TaskArg>,
    pub nested: Vec<ObjectRef>,
    pub result: ObjectId,
    pub reply: Reply,
}

/// What the node knows about a live actor.
pub(crate) struct ActorRecord {
    pub id: ActorId,
    pub job: Arc<Job>,
    pub class: Arc<str>,
    /// `(namespace, name)` when the actor is named.
    pub name: Option<(String, String)>,
    /// Outlives its job.
    pub detached: bool,
    mailbox: mpsc::UnboundedSender<ActorCall>,
    dead: Mutex<Option<String>>,
    abort: Mutex<Option<AbortHandle>>,
}

/// What creating an actor needs.
pub(crate) struct ActorSpec {
    pub id: ActorId,
    pub job: Arc<Job>,
    pub class: Arc<str>,
    pub args: Vec<TaskArg>,
    pub nested: Vec<ObjectRef>,
    pub demand: ResourceSet,
    pub name: Option<(String, String)>,
    pub detached: bool,
}

impl ActorRecord {
    /// Why the actor died, if it did.
    pub(crate) fn death(&self) -> Option<String> {
        self.dead.lock().unwrap().clone()
    }

    /// Queues a call; a dead actor fails it at once.
    pub(crate) fn call(&self, core: &Arc<NodeCore>, call: ActorCall) {
        if let Some(reason) = self.death() {
            core.complete(call.result, call.reply, Err(FabricError::ActorDied(reason)));
            return;
        }
        if let Err(mpsc::error::SendError(call)) = self.mailbox.send(call) {
            let reason = self
                .death()
                .unwrap_or_else(|| "its mailbox is closed".into());
            core.complete(call.result, call.reply, Err(FabricError::ActorDied(reason)));
        }
    }

    fn label(&self) -> String {
        format!("actor {}({})", self.class, self.id.short())
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
        match core.named_actors.entry(key.clone()) {
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
    let id = spec.id;
    spawn(core, spec);
    Ok(id)
}

/// Starts an actor: registers it and spawns its task.
pub(crate) fn spawn(core: &Arc<NodeCore>, spec: ActorSpec) -> Arc<ActorRecord> {
    spec.job.account.count_actor();
    let (tx, rx) = mpsc::unbounded_channel();
    let record = Arc::new(ActorRecord {
        id: spec.id,
        job: spec.job.clone(),
        class: spec.class.clone(),
        name: spec.name.clone(),
        detached: spec.detached,
        mailbox: tx,
        dead: Mutex::new(None),
        abort: Mutex::new(None),
    });
    core.actors.insert(spec.id, record.clone());
    let mailbox = Mailbox {
        rx,
        core: core.clone(),
        record: record.clone(),
        current: None,
    };
    let handle = core.runtime.spawn(actor_main(core.clone(), spec, mailbox));
    *record.abort.lock().unwrap() = Some(handle.abort_handle());
    if record.death().is_some() {
        handle.abort();
    }
    record
}

/// Records an actor that could not be created here as dead, so calls to it
/// fail at once with `reason`.
pub(crate) fn record_dead(
    core: &NodeCore,
    id: ActorId,
    job: Arc<Job>,
    class: Arc<str>,
    reason: String,
) {
    let (tx, _) = mpsc::unbounded_channel();
    let record = Arc::new(ActorRecord {
        id,
        job,
        class,
        name: None,
        detached: false,
        mailbox: tx,
        dead: Mutex::new(Some(reason)),
        abort: Mutex::new(None),
    });
    core.actors.insert(id, record);
}

/// Marks the actor dead, frees its name and stops its task. The record stays
/// (until its job ends) so later calls fail with the reason it died.
pub(crate) fn kill(core: &NodeCore, record: &ActorRecord, reason: String) {
    {
        let mut dead = record.dead.lock().unwrap();
        if dead.is_none() {
            *dead = Some(reason);
        }
    }
    release_name(core, record);
    if let Some(h) = record.abort.lock().unwrap().take() {
        h.abort();
    }
}

fn release_name(core: &NodeCore, record: &ActorRecord) {
    if let Some(key) = &record.name {
        core.named_actors.remove_if(key, |_, id| *id == record.id);
    }
}

/// The receiving end of an actor's calls. Dropping it (the actor ended or
/// was killed) fails the call in flight and every queued one.
pub(crate) struct Mailbox {
    rx: mpsc::UnboundedReceiver<ActorCall>,
    core: Arc<NodeCore>,
    record: Arc<ActorRecord>,
    current: Option<(ObjectId, Reply)>,
}

impl Mailbox {
    fn die(&mut self, reason: String) {
        tracing::debug!(actor = %self.record.id.short(), class = %self.record.class, %reason, "actor died");
        let mut dead = self.record.dead.lock().unwrap();
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
        release_name(&self.core, &self.record);
        if let Some(cluster) = self.core.cluster() {
            cluster.actor_died(self.record.id, reason.clone());
        }
        self.rx.close();
        if let Some((id, reply)) = self.current.take() {
            self.core
                .complete(id, reply, Err(FabricError::ActorDied(reason.clone())));
        }
        while let Ok(call) = self.rx.try_recv() {
            self.core.complete(
                call.result,
                call.reply,
                Err(FabricError::ActorDied(reason.clone())),
            );
        }
    }
}

/// Waits until every object argument is ready (failed ones included).
async fn await_args(args: &[TaskArg]) {
    for r in args.iter().filter_map(TaskArg::object) {
        let _ = r.get(None).await;
    }
}

async fn actor_main(core: Arc<NodeCore>, spec: ActorSpec, mut mailbox: Mailbox) {
    let label = mailbox.record.label();
    let lease = core.acquire(spec.demand.clone(), &spec.job.tenant).await;
    await_args(&spec.args).await;
    let argv = match resolve_args(&spec.args) {
        Ok(a) => a,
        Err(e) => {
            return mailbox.die(format!(
                "{label} could not start: a constructor argument failed: {e}"
            ));
        }
    };
    let role = Role::Actor {
        id: spec.id,
        class: spec.class.clone(),
    };
    let mut store = instance::new_store(&core, &spec.job, role, Some(lease), &[]);
    let what = format!("{}.new", spec.class);
    let inst = match instance::instantiate(&mut store, &spec.job, &what).await {
        Ok(i) => i,
        Err(e) => return mailbox.die(format!("{label} could not start: {e}")),
    };
    let exports = spec.job.app.exports.clone();
    if let Err(e) =
        instance::call_new(&mut store, &inst, &exports.actor_new, &spec.class, &argv).await
    {
        return mailbox.die(format!("{label} could not start: {e}"));
    }
    drop((argv, spec.args, spec.nested));

    while let Some(call) = mailbox.rx.recv().await {
        mailbox.current = Some((call.result, call.reply));
        await_args(&call.args).await;
        let what = format!("{}.{}", spec.class, call.method);
        let outcome = match resolve_args(&call.args) {
            Ok(argv) => {
                instance::call_output(
                    &mut store,
                    &inst,
                    &exports.actor_call,
                    &call.method,
                    &argv,
                    &what,
                )
                .await
            }
            Err(e) => Err(e),
        };
        mailbox.current = None;
        // A trap or panic poisons the instance; an error value does not.
        let death = match &outcome {
            Err(e @ FabricError::TaskFailed(f))
                if matches!(
                    f.kind,
                    FailureKind::Panic | FailureKind::Trap | FailureKind::System
                ) =>
            {
                Some(format!("{label} died: {e}"))
            }
            _ => None,
        };
        core.complete(call.result, call.reply, outcome);
        drop((call.args, call.nested));
        if let Some(reason) = death {
            // The instance is poisoned after a trap: it cannot run again.
            return mailbox.die(reason);
        }
    }
}
