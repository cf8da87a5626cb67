//! The tasks a node has not finished: the one owner of their bookkeeping.
//!
//! Every unfinished task of this node is in the [`TaskTable`] under the id
//! of its result object, with its [`TaskControl`] (to cancel it, or take it
//! out of the local queue to run elsewhere). A task submitted here counts
//! against its job's pending-tasks limit from [`TaskTable::add`] to
//! [`TaskTable::remove`], and nowhere else: [`PendingTasks`] can only be
//! changed in this module. A task another node forwarded here is in the
//! table too, but counts on the node that submitted it.
//! The debug assertion in [`PendingTasks`]' count down is the invariant the tests
//! exercise: a count that would go below zero means a task was counted
//! down without having been counted up.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use tokio::task::AbortHandle;

use crate::error::FabricError;
use crate::ids::{IdMap, JobId, ObjectId, TaskId};
use crate::limits::exceeded;
use crate::outcomes::Outcome;
use crate::runtime::job::Job;
use crate::runtime::task::TaskSpec;
use crate::scheduler::Cancellable;

/// A job's tasks submitted on this node and not finished. Only the task
/// table changes it (its field is private to this module).
#[derive(Debug, Default)]
pub struct PendingTasks(AtomicU64);

impl PendingTasks {
    /// Tasks pending now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Counts one more task, unless `max` are pending (then how many are).
    fn count_up(&self, max: u64) -> Result<(), u64> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| ())
    }

    /// Counts one task less. Below zero is a bug (a task counted down that
    /// was never counted up): a debug assertion in test builds.
    fn count_down(&self) {
        let before = self.0.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a job's pending tasks went below zero");
    }
}

/// What the fabric keeps about a task until it finishes.
pub struct TaskControl {
    job: Arc<Job>,
    cancelled: AtomicBool,
    /// Taken out of the local queue to run on another node.
    stolen: AtomicBool,
    abort: Mutex<Option<AbortHandle>>,
    /// The task while it waits in the local queue.
    queued: Mutex<Option<TaskSpec>>,
    /// Its first result, by which it is known.
    result: ObjectId,
    /// The objects of its other values (`num-returns`), which name it too.
    more_results: Box<[ObjectId]>,
    /// What its task events name it by.
    id: TaskId,
    function: Arc<str>,
    /// Its attempt here: when it arrived to run (0: it did not, or it was
    /// recorded already), which attempt, when it started (0: not yet).
    arrived_us: AtomicU64,
    attempt: AtomicU32,
    started_us: AtomicU64,
}

/// When an attempt of a task got where it ran, and started there.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptTimes {
    pub queued_us: u64,
    pub started_us: u64,
    pub attempt: u32,
}

impl TaskControl {
    fn new(spec: &TaskSpec) -> Arc<Self> {
        Arc::new(TaskControl {
            result: spec.result,
            more_results: spec.more_results.clone().into(),
            job: spec.job.clone(),
            id: spec.id,
            function: spec.function.clone(),
            arrived_us: AtomicU64::new(0),
            attempt: AtomicU32::new(0),
            started_us: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            stolen: AtomicBool::new(false),
            abort: Mutex::new(None),
            queued: Mutex::new(None),
        })
    }

    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }

    /// Every object the task completes, its first result first.
    pub fn results(&self) -> impl Iterator<Item = ObjectId> + '_ {
        std::iter::once(self.result).chain(self.more_results.iter().copied())
    }

    /// The task's first result, by which it is known.
    pub fn result(&self) -> ObjectId {
        self.result
    }

    /// Stops the task if it runs; keeps it from starting if it waits.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(h) = self.abort.lock().take() {
            h.abort();
        }
    }

    /// Cancelled, or its job ended.
    pub(crate) fn called_off(&self) -> bool {
        self.cancelled.load(Ordering::Acquire) || self.job.is_finished()
    }

    /// Holds the task while it waits in the local queue.
    pub(crate) fn park(&self, spec: TaskSpec) {
        *self.queued.lock() = Some(spec);
    }

    /// The task, unless it was stolen meanwhile.
    pub(crate) fn unpark(&self) -> Option<TaskSpec> {
        self.queued.lock().take()
    }

    fn is_parked(&self) -> bool {
        self.queued.lock().is_some()
    }

    /// Records how to stop the task now that it runs (at once, if a cancel
    /// came first).
    pub(crate) fn running(&self, handle: AbortHandle) {
        *self.abort.lock() = Some(handle.clone());
        // A cancel that came before the handle was stored could not abort it.
        if self.cancelled.load(Ordering::Acquire) {
            handle.abort();
        }
    }

    /// The task goes through placement again (a retry): it is no longer
    /// the one stolen.
    pub(crate) fn placed_again(&self) {
        self.stolen.store(false, Ordering::Release);
    }

    /// Attempt `attempt` arrived here to run.
    pub(crate) fn arrived(&self, attempt: u32) {
        if !self.job.events.is_on() {
            return; // nothing is recorded: nothing is timed
        }
        self.attempt.store(attempt, Ordering::Relaxed);
        self.started_us.store(0, Ordering::Relaxed);
        self.arrived_us
            .store(crate::task_events::now_us(), Ordering::Release);
    }

    /// The attempt here starts now.
    pub(crate) fn started(&self) {
        if !self.job.events.is_on() {
            return;
        }
        self.started_us
            .store(crate::task_events::now_us(), Ordering::Release);
    }

    /// The times of the attempt that arrived here, once: whoever takes
    /// them records its event (its run, or the cancel that stopped it).
    pub(crate) fn take_times(&self) -> Option<AttemptTimes> {
        let queued_us = self.arrived_us.swap(0, Ordering::AcqRel);
        (queued_us != 0).then(|| AttemptTimes {
            queued_us,
            started_us: self.started_us.load(Ordering::Acquire),
            attempt: self.attempt.load(Ordering::Relaxed),
        })
    }

    /// The attempt here as an unfinished event (`None`: none is here).
    pub fn unfinished_event(&self) -> Option<crate::task_events::TaskEvent> {
        let queued_us = self.arrived_us.load(Ordering::Acquire);
        if queued_us == 0 || self.stolen.load(Ordering::Acquire) {
            return None;
        }
        let mut e = crate::task_events::TaskEvent::new(
            crate::task_events::CallKind::Task,
            self.id.as_u128(),
            self.function.clone(),
        );
        e.queued_us = queued_us;
        e.started_us = self.started_us.load(Ordering::Acquire);
        e.finished_us = 0;
        e.attempt = self.attempt.load(Ordering::Relaxed);
        Some(e)
    }

    /// Records the attempt that arrived here as ended with `result`
    /// without an instance's answer (cancelled, or failed before it ran);
    /// when none arrived here, attempt `unrun` (if given) as ended here
    /// now. Nothing when it was recorded already.
    pub fn record_ended<T>(&self, result: &Result<T, FabricError>, unrun: Option<u32>) {
        let times = self.take_times().or_else(|| {
            let now = crate::task_events::now_us();
            unrun.map(|attempt| AttemptTimes {
                queued_us: now,
                started_us: 0,
                attempt,
            })
        });
        if let Some(times) = times {
            self.job.events.record(self.event(times, result, 0, 0));
        }
    }

    /// The event of an attempt of the task that ran (or ended) here.
    pub(crate) fn event<T>(
        &self,
        times: AttemptTimes,
        result: &Result<T, FabricError>,
        bytes_in: u64,
        bytes_out: u64,
    ) -> crate::task_events::TaskEvent {
        let mut e = crate::task_events::TaskEvent::new(
            crate::task_events::CallKind::Task,
            self.id.as_u128(),
            self.function.clone(),
        )
        .ended(result);
        e.queued_us = times.queued_us;
        e.started_us = times.started_us;
        e.attempt = times.attempt;
        e.bytes_in = bytes_in;
        e.bytes_out = bytes_out;
        e
    }
}

impl Cancellable for TaskControl {
    /// Also true once the task was taken out of the queue to run elsewhere.
    fn is_cancelled(&self) -> bool {
        self.called_off() || self.stolen.load(Ordering::Acquire)
    }
}

/// One unfinished task.
struct Unfinished {
    control: Arc<TaskControl>,
    /// Whether it counts against its job's pending tasks here.
    counted: bool,
}

/// The node's unfinished tasks, and those of them that may still move.
#[derive(Default)]
pub struct TaskTable {
    unfinished: IdMap<ObjectId, Unfinished>,
    /// The other results of unfinished tasks that return several values,
    /// to the first (by which the task is known).
    aliases: IdMap<ObjectId, ObjectId>,
    /// Tasks waiting in the local queue that may run on another node.
    movable: Mutex<VecDeque<Weak<TaskControl>>>,
}

impl TaskTable {
    /// Registers a task submitted on this node, counting it against its
    /// job's pending-tasks limit (refused at the limit: what stops a task
    /// that submits itself without end).
    pub fn add(&self, spec: &TaskSpec) -> Result<Arc<TaskControl>, FabricError> {
        let job = &spec.job;
        let max = job.limits.pending_tasks;
        job.pending.count_up(max).map_err(|_| {
            exceeded(
                "pending-tasks",
                max,
                format!(
                    "job {} already has {max} tasks waiting or running",
                    job.id.short()
                ),
            )
        })?;
        job.account.task_counts().submitted();
        job.books.task_counts().submitted();
        Ok(self.insert(spec, true))
    }

    /// Whether the task known by `result` (its first result) is unfinished.
    pub fn is_unfinished(&self, result: ObjectId) -> bool {
        self.unfinished.contains_key(&result)
    }

    /// Registers a task another node forwarded here (counted there).
    pub fn add_forwarded(&self, spec: &TaskSpec) -> Arc<TaskControl> {
        self.insert(spec, false)
    }

    fn insert(&self, spec: &TaskSpec, counted: bool) -> Arc<TaskControl> {
        let control = TaskControl::new(spec);
        let entry = Unfinished {
            control: control.clone(),
            counted,
        };
        for &other in &spec.more_results {
            self.aliases.insert(other, spec.result);
        }
        self.unfinished.insert(spec.result, entry);
        control
    }

    /// The task producing `result` (any of its results) is done (finished,
    /// failed, cancelled): it leaves the table, and its job counts one task
    /// less. A task submitted here counts as ended with `outcome`.
    pub fn remove(&self, result: ObjectId, outcome: Outcome) -> Option<Arc<TaskControl>> {
        let gone = match self.unfinished.remove(&result) {
            Some((_, gone)) => gone,
            None => {
                let (_, first) = self.aliases.remove(&result)?;
                self.unfinished.remove(&first)?.1
            }
        };
        for other in gone.control.more_results.iter() {
            self.aliases.remove(other);
        }
        if gone.counted {
            gone.control.job.pending.count_down();
            gone.control.job.account.task_counts().ended(outcome);
            gone.control.job.books.task_counts().ended(outcome);
        }
        Some(gone.control)
    }

    /// Unfinished tasks.
    pub fn len(&self) -> usize {
        self.unfinished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// The unfinished tasks of `job`, by result.
    pub fn of_job(&self, job: JobId) -> Vec<(ObjectId, Arc<TaskControl>)> {
        self.unfinished
            .iter()
            .filter(|e| e.value().control.job.id == job)
            .map(|e| (*e.key(), e.value().control.clone()))
            .collect()
    }

    /// Notes a task waiting in the local queue that may run elsewhere.
    pub(crate) fn queue_movable(&self, control: &Arc<TaskControl>) {
        if control.is_parked() {
            self.movable.lock().push_back(Arc::downgrade(control));
        }
    }

    /// Whether any task waits that might move.
    pub fn has_movable(&self) -> bool {
        !self.movable.lock().is_empty()
    }

    /// Takes up to `max` tasks that wait in the local queue (newest first)
    /// and may run elsewhere, for `accept` to send to other nodes; `accept`
    /// says whether it took each one (a task it refuses stays queued).
    pub fn steal(
        &self,
        max: usize,
        mut accept: impl FnMut(&TaskSpec) -> bool,
    ) -> Vec<(TaskSpec, Arc<TaskControl>)> {
        let mut out = Vec::new();
        let mut queue = self.movable.lock();
        let mut keep = VecDeque::new();
        while out.len() < max {
            let Some(weak) = queue.pop_back() else { break };
            let Some(control) = Weak::upgrade(&weak) else {
                continue;
            };
            let mut slot = control.queued.lock();
            match slot.as_ref() {
                Some(spec) if !control.called_off() => {
                    if accept(spec) {
                        let spec = slot.take().expect("checked");
                        control.stolen.store(true, Ordering::Release);
                        // Its attempt runs, and is recorded, elsewhere.
                        control.arrived_us.store(0, Ordering::Release);
                        drop(slot);
                        out.push((spec, control));
                    } else {
                        drop(slot);
                        keep.push_front(weak);
                    }
                }
                _ => {}
            }
        }
        queue.extend(keep);
        out
    }

    /// Gives back the room of a table that once held far more tasks, and
    /// forgets queued tasks that have started or ended since (when they
    /// are most of the queue: `still_queued` is how many wait now).
    pub(crate) fn give_back(&self, still_queued: usize) {
        crate::ids::shrink_if_sparse(&self.unfinished);
        crate::ids::shrink_if_sparse(&self.aliases);
        let mut queue = self.movable.lock();
        if queue.len() > 2 * still_queued + 1024 {
            queue.retain(|w| w.upgrade().is_some_and(|c| c.is_parked()));
        }
        if queue.capacity() > 4096 && queue.len() < queue.capacity() / 4 {
            queue.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PendingTasks;

    #[test]
    fn the_count_stops_at_the_limit_and_comes_back_to_zero() {
        let pending = PendingTasks::default();
        for _ in 0..3 {
            pending.count_up(3).unwrap();
        }
        assert_eq!(pending.count_up(3), Err(3), "refused at the limit");
        for _ in 0..3 {
            pending.count_down();
        }
        assert_eq!(pending.get(), 0);
        pending.count_up(3).unwrap();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a job's pending tasks went below zero")]
    fn counting_down_what_was_never_counted_up_fires() {
        PendingTasks::default().count_down();
    }
}
