//! Tasks: submission, dependency tracking, placement, and running one
//! invocation.
//!
//! A submitted task waits, without a thread or a future of its own, until no
//! argument of it is still being computed here (an [`ArgWaiter`] listens on
//! them). Then it is placed: here, or (in a cluster) on another node, which
//! gets it as a forwarded task. A task that runs here waits until its
//! arguments' values are here too (fetching the ones that live elsewhere),
//! queues in the scheduler for its resources, and runs in a fresh instance
//! on the async runtime. Its result goes to the object store under the id
//! the caller already holds, or back to the owning node. A task is registered
//! by that id until it finishes, so it can be cancelled, or stopped when its
//! job ends; while it waits in the local queue it can be taken back out and
//! sent to a node with room (see [`steal`]).

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::error::FabricError;
use crate::ids::{JobId, NodeId, ObjectId, TaskId};
use crate::object_store::{ObjectRef, ReadyListener};
use crate::outcomes::Outcome;
use crate::placement::{Placement, Strategy};
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::instance::{self, CallOutputs, Role};
use crate::runtime::job::Job;
use crate::runtime::slots::Holder;
use crate::runtime::streams::{Generator, count_value};
use crate::runtime::task_table::TaskControl;
use crate::scheduler::{Cancellable, Lease, Order};

/// An argument as the host holds it.
#[derive(Clone)]
pub enum TaskArg {
    Value(Bytes),
    Object(ObjectRef),
    /// Several objects passed as one argument: their values, in order, as
    /// one MessagePack array (Ray's `f.remote(*refs)`).
    Objects(Vec<ObjectRef>),
}

/// At most this many values from one call (`num-returns`).
pub const MAX_NUM_RETURNS: u32 = 10_000;

/// At most this many objects in the `objects` arguments of one call.
pub const MAX_OBJECTS_PER_ARG: usize = 1 << 20;

impl TaskArg {
    /// The argument's bytes; its objects must be here. Several objects are
    /// copied into one array of at most `max_bytes` (the job's object-size
    /// limit: the array is a new value as large as one object may be).
    fn resolve(&self, max_bytes: u64) -> Result<Bytes, (FabricError, Option<&ObjectRef>)> {
        match self {
            TaskArg::Value(b) => Ok(b.clone()),
            TaskArg::Object(r) => value_here(r),
            TaskArg::Objects(refs) => {
                let values = refs.iter().map(value_here).collect::<Result<Vec<_>, _>>()?;
                let total = values
                    .iter()
                    .try_fold(0u64, |sum, v| sum.checked_add(v.len() as u64))
                    .filter(|&t| t <= max_bytes);
                if total.is_none() {
                    let e = crate::limits::exceeded(
                        "object-bytes",
                        max_bytes,
                        format!("an argument of {} objects is larger", refs.len()),
                    );
                    return Err((e, None));
                }
                Ok(msgpack_array(&values))
            }
        }
    }

    /// The objects this argument passes (none for a value).
    pub fn objects(&self) -> &[ObjectRef] {
        match self {
            TaskArg::Object(r) => std::slice::from_ref(r),
            TaskArg::Objects(refs) => refs,
            TaskArg::Value(_) => &[],
        }
    }
}

/// The value of argument object `r`, which must be here; a failure comes
/// with the object when it is its own (so its producer can be named).
fn value_here(r: &ObjectRef) -> Result<Bytes, (FabricError, Option<&ObjectRef>)> {
    let not_here = || {
        Err(FabricError::ObjectLost(format!(
            "argument {} is not here",
            r.id()
        )))
    };
    r.try_get()
        .unwrap_or_else(not_here)
        .map_err(|e| (e, r.is_ready().then_some(r)))
}

/// `values` (each one encoded value) as one MessagePack array.
fn msgpack_array(values: &[Bytes]) -> Bytes {
    let len: usize = values.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(len + 5);
    let n = values.len();
    match n {
        0..=15 => out.push(0x90 | n as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    for v in values {
        out.extend_from_slice(v);
    }
    Bytes::from(out)
}

/// Resolves all arguments of `function` (a call of `job`), failing with
/// the first failed one (as [`FabricError::for_dependent`] says).
pub(crate) fn resolve_args(
    job: &Job,
    function: &str,
    args: &[TaskArg],
) -> Result<Vec<Bytes>, FabricError> {
    let max_bytes = job.limits.object_bytes;
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            a.resolve(max_bytes).map_err(|(e, failed)| match failed {
                Some(r) => e.for_dependent(function, i, r.producer()),
                None => e,
            })
        })
        .collect()
}

/// The error of the first argument of `function` that failed here, if any:
/// such a task cannot run.
fn failed_argument(function: &str, args: &[TaskArg]) -> Option<FabricError> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.objects()
            .iter()
            .find_map(|r| Some(r.failure()?.for_dependent(function, i, r.producer())))
    })
}

/// Where a finished call's result goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Into this node's object store.
    Local,
    /// Back to the node that owns the result object (for this job).
    Remote { owner: NodeId, job: JobId },
}

/// Retries after a system failure when the caller does not say (Ray's default).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A task ready to submit.
#[derive(Clone)]
pub struct TaskSpec {
    pub id: TaskId,
    pub job: Arc<Job>,
    pub function: Arc<str>,
    pub args: Vec<TaskArg>,
    /// References inside value arguments: kept alive until the task ends.
    pub nested: Vec<ObjectRef>,
    pub demand: ResourceSet,
    pub strategy: Strategy,
    pub result: ObjectId,
    /// The objects of its other values, when it returns several (see
    /// `num-returns`); `result` holds the first. Each is completed on its
    /// own; the task is known by `result`.
    pub more_results: Vec<ObjectId>,
    pub max_retries: u32,
    pub retry_exceptions: bool,
    /// For a streaming generator: at most this many items yielded and not
    /// taken by its caller (see [`crate::runtime::streams`]); `result` then
    /// completes with the number of items.
    pub stream: Option<u32>,
    /// Attempts made so far.
    pub attempt: u32,
    pub reply: Reply,
    /// Levels of tasks above it in its task tree (1: a driver or an actor
    /// submitted it): deeper tasks are started first (see
    /// [`crate::scheduler`]).
    pub depth: u32,
}

impl TaskSpec {
    /// A task of `job` running `function` on `args`, whose result goes into
    /// the object `result` here: a fresh id, one CPU, placed anywhere,
    /// retried [`DEFAULT_MAX_RETRIES`] times after a system failure. The
    /// other fields are set by struct update where a caller differs.
    pub fn new(job: Arc<Job>, function: Arc<str>, args: Vec<TaskArg>, result: ObjectId) -> Self {
        TaskSpec {
            id: TaskId::random(),
            job,
            function,
            args,
            nested: Vec::new(),
            demand: ResourceSet::default().with_cpus(1.0),
            strategy: Strategy::Default,
            result,
            more_results: Vec::new(),
            max_retries: DEFAULT_MAX_RETRIES,
            retry_exceptions: false,
            stream: None,
            attempt: 0,
            reply: Reply::Local,
            depth: 1,
        }
    }

    /// Every object it completes, `result` first.
    pub fn results(&self) -> impl Iterator<Item = ObjectId> + '_ {
        std::iter::once(self.result).chain(self.more_results.iter().copied())
    }

    /// How many values it returns.
    pub fn num_returns(&self) -> usize {
        1 + self.more_results.len()
    }

    /// Whether the task may run on another node than this one: not when it
    /// was forwarded here, nor when it is pinned to this node.
    fn may_move(&self) -> bool {
        self.reply == Reply::Local && !self.strategy.is_hard_affinity()
    }
}

/// Submits a new task whose result object already exists; refused when its
/// job has its limit of tasks pending.
pub fn submit(core: &Arc<NodeCore>, spec: TaskSpec) -> Result<(), FabricError> {
    let control = core.tasks().add(&spec)?;
    let core = core.clone();
    // Placement needs to know where the arguments are, not to have them.
    wait_for_args(Want::Settled, spec, move |spec| place(core, spec, control));
    Ok(())
}

/// Places again a task the port put off ([`Placement::Later`]).
pub fn place_again(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>) {
    place(core, spec, control)
}

/// Places a task whose arguments are all computed.
fn place(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>) {
    if let Some(e) = failed_argument(&spec.function, &spec.args) {
        // It cannot run, here or anywhere: no retry either.
        let failed = Err(e);
        control.record_ended(&failed, Some(spec.attempt));
        return deliver(&core, spec, failed);
    }
    match core.port().place_task(&spec) {
        Placement::Local => run_here(core, spec, control),
        Placement::Remote(node) => core.port().forward_task(node, spec, control),
        Placement::Infeasible(e) => finish_unrun(&core, spec, &control, e),
        Placement::Later => core.port().place_later(spec, control),
    }
}

/// Runs a task on this node: once its arguments are here, it queues for
/// its resources. Forwarded tasks come in here.
pub(crate) fn run_here(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>) {
    let attempt = spec.attempt;
    run_attempt_here(core, spec, control, attempt)
}

/// [`run_here`] for attempt `attempt` (which a forwarded task's spec does
/// not carry: its sender counts retries).
fn run_attempt_here(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>, attempt: u32) {
    control.arrived(attempt);
    wait_for_args(Want::Here, spec, move |spec| enqueue(core, spec, control));
}

/// Registers attempt `attempt` of a task forwarded to this node by another
/// (which counted it, and retries it).
pub fn accept_forwarded(core: &Arc<NodeCore>, spec: TaskSpec, attempt: u32) {
    let control = core.tasks().add_forwarded(&spec);
    run_attempt_here(core.clone(), spec, control, attempt);
}

/// Which readiness of the arguments to wait for.
enum Want {
    /// None is still being computed on this node.
    Settled,
    /// Every value is on this node.
    Here,
}

/// Calls `then` with the task once its arguments are as `want` says, without
/// holding a thread or a future meanwhile.
fn wait_for_args(want: Want, spec: TaskSpec, then: impl FnOnce(TaskSpec) + Send + 'static) {
    let waiter = Arc::new(ArgWaiter {
        remaining: AtomicUsize::new(1),
        then: Mutex::new(None),
    });
    for r in spec.args.iter().flat_map(TaskArg::objects) {
        waiter.remaining.fetch_add(1, Ordering::AcqRel);
        let registered = match want {
            Want::Settled => r.on_settled(waiter.clone()),
            Want::Here => r.on_ready(waiter.clone()),
        };
        if !registered {
            waiter.remaining.fetch_sub(1, Ordering::AcqRel);
        }
    }
    *waiter.then.lock() = Some(Box::new(move || then(spec)));
    // Drop the initial count: goes on now if nothing is pending.
    waiter.on_ready();
}

/// Goes on with a task once the last awaited argument is ready.
struct ArgWaiter {
    remaining: AtomicUsize,
    then: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ReadyListener for ArgWaiter {
    fn on_ready(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(then) = self.then.lock().take()
        {
            then();
        }
    }
}

/// Queues a task in the local scheduler. While it waits it can be stolen.
fn enqueue(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>) {
    let demand = spec.demand.clone();
    let tenant = spec.job.tenant.clone();
    let movable = spec.may_move();
    let depth = spec.depth;
    let spec_job = spec.job.id.as_u128();
    control.park(spec);
    let cancel: Arc<dyn Cancellable> = control.clone();
    let ctl = control.clone();
    let start_core = core.clone();
    let order = Order {
        group: spec_job,
        depth,
    };
    core.scheduler().submit_at(
        order,
        demand,
        &tenant,
        Box::new(move |lease| {
            let Some(spec) = ctl.unpark() else {
                return; // stolen meanwhile: the lease goes back
            };
            let lease = match lease {
                Ok(lease) => lease,
                // Its placement group is gone: it can never run.
                Err(e) => return finish_unrun(&start_core, spec, &ctl, e),
            };
            let run = run(start_core.clone(), spec, ctl.clone(), lease);
            ctl.running(start_core.runtime().spawn(run).abort_handle());
        }),
        Some(cancel),
    );
    // Still queued: in a cluster, others may take it to a node with room.
    if movable && core.in_cluster() {
        core.tasks().queue_movable(&control);
    }
}

async fn run(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>, lease: Lease) {
    let mut bytes_in = 0;
    let result = if control.called_off() {
        drop(lease);
        Err(FabricError::Cancelled)
    } else {
        control.started();
        spec.job.account.count_task();
        // The job and task ids are the trace: every node a task passes
        // through logs them (`--log-level debug`), so their logs join.
        let span = tracing::debug_span!("task", job = %spec.job.id.short(), task = %spec.id.short(), function = %spec.function, attempt = spec.attempt);
        let ran = execute(&core, &spec, lease, &mut bytes_in);
        let ran = tracing::Instrument::instrument(ran, span.clone()).await;
        tracing::debug!(parent: &span, outcome = %crate::outcomes::Outcome::of(&ran).label(), "task ran");
        ran
    };
    let event = control.take_times().map(|times| {
        let bytes_out = result
            .as_ref()
            .map_or(0, |values| values.iter().map(|(v, _)| v.len() as u64).sum());
        control.event(times, &result, bytes_in, bytes_out)
    });
    finish(&core, spec, &control, result);
    // Recorded once its caller has the answer: off the call's path.
    if let Some(event) = event {
        control.job().events.record(event);
    }
}

/// Cancels the unfinished task that completes `id` (any of its results):
/// a queued one never runs, a running one stops, here or on the node it
/// was sent to, and its results become `cancelled`. A finished task is
/// left as it is.
pub fn cancel(core: &NodeCore, id: ObjectId) {
    if let Some(control) = core.tasks().remove(id, Outcome::Cancelled) {
        control.cancel();
        control.record_ended(&Err::<(), _>(FabricError::Cancelled), None);
        core.port().cancel_forwarded(control.result());
        for r in control.results() {
            core.objects()
                .fulfill(r, Err(FabricError::Cancelled), Vec::new());
        }
    }
}

/// A task attempt ended without running here (infeasible, its placement
/// group gone, the node it was sent to lost): it is recorded here, then
/// retried or failed as [`finish`] says.
pub fn finish_unrun(
    core: &Arc<NodeCore>,
    spec: TaskSpec,
    control: &Arc<TaskControl>,
    error: FabricError,
) {
    let failed = Err(error);
    control.record_ended(&failed, Some(spec.attempt));
    finish(core, spec, control, failed);
}

/// A task attempt ended: retry it if it may be, else deliver the outcome.
/// An attempt that ran here was recorded by its run (see [`finish_unrun`]
/// for one that did not).
pub fn finish(
    core: &Arc<NodeCore>,
    mut spec: TaskSpec,
    control: &Arc<TaskControl>,
    outcome: CallOutputs,
) {
    let retry = match &outcome {
        Ok(_) | Err(FabricError::Cancelled) => false,
        Err(FabricError::TaskFailed(f)) => f.retryable || spec.retry_exceptions,
        // Any other error the task ended with (its own, or one it passed on).
        Err(_) => spec.retry_exceptions,
    };
    if retry && spec.attempt < spec.max_retries && !control.called_off() {
        spec.attempt += 1;
        tracing::debug!(task = %spec.id.short(), function = %spec.function, attempt = spec.attempt, error = ?outcome.as_ref().err(), "retrying task");
        control.placed_again();
        return place(core.clone(), spec, control.clone());
    }
    let outcome = match outcome {
        Err(FabricError::TaskFailed(mut f)) if spec.attempt > 0 => {
            f.message = format!("{} (after {} retries)", f.message, spec.attempt);
            Err(FabricError::TaskFailed(f))
        }
        other => other,
    };
    deliver(core, spec, outcome);
}

/// The task is done: it leaves the task table and its outcome goes to
/// whoever holds its results.
fn deliver(core: &Arc<NodeCore>, spec: TaskSpec, outcome: CallOutputs) {
    core.tasks().remove(spec.result, Outcome::of(&outcome));
    core.complete_all(spec.results(), spec.reply, outcome);
}

/// One attempt: a fresh instance, one `dispatch` call; `bytes_in` is set
/// to its arguments' size.
async fn execute(
    core: &Arc<NodeCore>,
    spec: &TaskSpec,
    lease: Lease,
    bytes_in: &mut u64,
) -> CallOutputs {
    let args = resolve_args(&spec.job, &spec.function, &spec.args)?;
    *bytes_in = args.iter().map(|a| a.len() as u64).sum();
    let role = Role::Task {
        id: spec.id,
        function: spec.function.clone(),
        result: spec.result,
        more_results: spec.more_results.as_slice().into(),
        depth: spec.depth,
    };
    let (app, local) = spec.job.component_of(&spec.function)?;
    let slot = spec.job.take_slot(core, Holder::Task, app)?;
    let mut store = instance::new_store(core, &spec.job, role, Some(lease), Some(slot), &[]);
    let inst = instance::instantiate(&mut store, app, &spec.function).await?;
    store.data_mut().generator = spec
        .stream
        .map(|bound| Generator::start(core, spec.result, spec.reply, bound));
    let values = instance::call_output(
        &mut store,
        &inst,
        &app.exports.dispatch,
        local,
        &args,
        &spec.function,
        |parts, what, max| parts.split(what, spec.num_returns(), max),
    )
    .await;
    match store.data_mut().generator.take() {
        // A generator's value is the number of items it yielded.
        Some(g) => values.map(|_| vec![(count_value(g.next), Vec::new())]),
        None => values,
    }
}
