//! Tasks: submission, dependency tracking, and running one invocation.
//!
//! A submitted task waits, without a thread or a future of its own, until
//! every object it takes as an argument is ready (a [`DepTracker`] listens on
//! them), then queues in the scheduler for its resources, then runs in a
//! fresh instance on the async runtime. Its result goes to the object store
//! under the id the caller already holds. A running task is registered by
//! that id so it can be cancelled, or stopped when its job ends.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::task::AbortHandle;

use crate::error::FabricError;
use crate::ids::{ObjectId, TaskId};
use crate::object_store::{ObjectRef, ReadyListener};
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::instance::{self, CallResult, Role};
use crate::runtime::job::Job;
use crate::scheduler::{Cancellable, Lease};

/// An argument as the host holds it.
pub(crate) enum TaskArg {
    Value(Bytes),
    Object(ObjectRef),
}

impl TaskArg {
    /// The argument's bytes; an object argument must be ready.
    pub(crate) fn resolve(&self) -> Result<Bytes, FabricError> {
        match self {
            TaskArg::Value(b) => Ok(b.clone()),
            TaskArg::Object(r) => r.try_get().unwrap_or_else(|| {
                Err(FabricError::ObjectLost(format!(
                    "argument {} is not ready",
                    r.id()
                )))
            }),
        }
    }

    pub(crate) fn object(&self) -> Option<&ObjectRef> {
        match self {
            TaskArg::Object(r) => Some(r),
            TaskArg::Value(_) => None,
        }
    }
}

/// Resolves all arguments, failing with the first failed one.
pub(crate) fn resolve_args(args: &[TaskArg]) -> Result<Vec<Bytes>, FabricError> {
    args.iter().map(TaskArg::resolve).collect()
}

/// What the fabric keeps about a task until it finishes.
pub(crate) struct TaskControl {
    job: Arc<Job>,
    cancelled: AtomicBool,
    abort: Mutex<Option<AbortHandle>>,
}

impl TaskControl {
    pub(crate) fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Stops the task if it runs; keeps it from starting if it waits.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(h) = self.abort.lock().unwrap().take() {
            h.abort();
        }
    }
}

impl Cancellable for TaskControl {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.job.is_finished()
    }
}

/// A task ready to submit.
pub(crate) struct TaskSpec {
    pub id: TaskId,
    pub job: Arc<Job>,
    pub function: Arc<str>,
    pub args: Vec<TaskArg>,
    /// References inside value arguments: kept alive until the task ends.
    pub _nested: Vec<ObjectRef>,
    pub demand: ResourceSet,
    pub result: ObjectId,
    pub max_retries: u32,
    pub retry_exceptions: bool,
}

/// Submits a task whose result object already exists.
pub(crate) fn submit(core: &Arc<NodeCore>, spec: TaskSpec) {
    let control = Arc::new(TaskControl {
        job: spec.job.clone(),
        cancelled: AtomicBool::new(false),
        abort: Mutex::new(None),
    });
    core.tasks.insert(spec.result, control.clone());
    let tracker = Arc::new(DepTracker {
        remaining: AtomicUsize::new(1),
        launch: Mutex::new(Some((core.clone(), spec, control))),
    });
    {
        let guard = tracker.launch.lock().unwrap();
        let (_, spec, _) = guard.as_ref().expect("just set");
        for r in spec.args.iter().filter_map(TaskArg::object) {
            tracker.remaining.fetch_add(1, Ordering::AcqRel);
            if !r.on_ready(tracker.clone()) {
                tracker.remaining.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
    // Drop the initial count: launches now if nothing is pending.
    tracker.on_ready();
}

/// What a [`DepTracker`] needs to schedule its task.
type Launch = (Arc<NodeCore>, TaskSpec, Arc<TaskControl>);

/// Launches a task once its last pending argument is ready.
struct DepTracker {
    remaining: AtomicUsize,
    launch: Mutex<Option<Launch>>,
}

impl ReadyListener for DepTracker {
    fn on_ready(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some((core, spec, control)) = self.launch.lock().unwrap().take()
        {
            schedule(core, spec, control);
        }
    }
}

fn schedule(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>) {
    let sched = core.scheduler.clone();
    let demand = spec.demand.clone();
    let cancel: Arc<dyn Cancellable> = control.clone();
    sched.submit(
        demand,
        Box::new(move |lease| {
            let ctl = control.clone();
            let handle = core.runtime.spawn(run(core.clone(), spec, control, lease));
            *ctl.abort.lock().unwrap() = Some(handle.abort_handle());
            // A cancel that came before the handle was stored could not abort it.
            if ctl.cancelled.load(Ordering::Acquire) {
                handle.abort();
            }
        }),
        Some(cancel),
    );
}

async fn run(core: Arc<NodeCore>, spec: TaskSpec, control: Arc<TaskControl>, lease: Lease) {
    let result = if control.is_cancelled() {
        drop(lease);
        Err(FabricError::Cancelled)
    } else {
        execute(&core, &spec, lease).await
    };
    let result = match result {
        Err(FabricError::TaskFailed(f))
            if spec.max_retries > 0 && (f.retryable || spec.retry_exceptions) =>
        {
            retry(&core, &spec, &control, FabricError::TaskFailed(f)).await
        }
        other => other,
    };
    core.tasks.remove(&spec.result);
    match result {
        Ok((value, nested)) => core.objects.fulfill(spec.result, Ok(value), nested),
        Err(e) => core.objects.fulfill(spec.result, Err(e), Vec::new()),
    }
}

/// Runs the task again, up to `max_retries` more times, while it keeps
/// failing in a retryable way. Each attempt asks the scheduler again.
async fn retry(
    core: &Arc<NodeCore>,
    spec: &TaskSpec,
    control: &TaskControl,
    mut last: FabricError,
) -> CallResult {
    for attempt in 1..=spec.max_retries {
        if control.is_cancelled() {
            return Err(FabricError::Cancelled);
        }
        tracing::debug!(task = %spec.id.short(), function = %spec.function, attempt, error = %last, "retrying task");
        let lease = core.acquire(spec.demand.clone()).await;
        match execute(core, spec, lease).await {
            Err(FabricError::TaskFailed(f)) if f.retryable || spec.retry_exceptions => {
                last = FabricError::TaskFailed(f);
            }
            other => return other,
        }
    }
    match last {
        FabricError::TaskFailed(mut f) => {
            f.message = format!("{} (after {} retries)", f.message, spec.max_retries);
            Err(FabricError::TaskFailed(f))
        }
        e => Err(e),
    }
}

/// One attempt: a fresh instance, one `dispatch` call.
async fn execute(core: &Arc<NodeCore>, spec: &TaskSpec, lease: Lease) -> CallResult {
    let args = resolve_args(&spec.args)?;
    let role = Role::Task {
        id: spec.id,
        function: spec.function.clone(),
    };
    let mut store = instance::new_store(core, &spec.job, role, Some(lease), &[]);
    let inst = instance::instantiate(&mut store, &spec.job, &spec.function).await?;
    let exports = &spec.job.app.exports;
    instance::call_output(
        &mut store,
        &inst,
        &exports.dispatch,
        &spec.function,
        &args,
        &spec.function,
    )
    .await
}
