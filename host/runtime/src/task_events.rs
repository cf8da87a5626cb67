//! What ran here: a bounded record of each job's task attempts and actor
//! calls on this node, for the dashboard's task view and `fabric timeline`.
//!
//! The head never holds individual tasks: each node keeps, per job, the
//! attempts that ran (or ended) here, and answers when asked. The record
//! is bounded three ways, and says when it dropped something:
//!
//! - per job: at most `per-job` events; past it the oldest go (counted in
//!   [`JobEventsRead::dropped`]);
//! - per tenant: at most `per-tenant` events over all its jobs here (one
//!   tenant's many jobs cannot grow the node); past it a job keeps only its
//!   newest, and a job with none kept drops what comes;
//! - after a job ends: its record stays for `keep-for`, and only for the
//!   tenant's `keep-finished` most recent ended jobs; the older ones go.
//!
//! Recording is one clock read at each end and one uncontended lock per
//! call (each job has its own); nothing is allocated but a failure's text.
//!
//! ```
//! use fabric_runtime::ids::JobId;
//! use fabric_runtime::task_events::{CallKind, TaskEvent, TaskEventBounds, TaskEventLog};
//! let log = TaskEventLog::new(TaskEventBounds { per_job: 2, ..TaskEventBounds::default() });
//! let job = JobId::random();
//! let events = log.open(job, "acme");
//! for i in 0..3 {
//!     events.record(TaskEvent::new(CallKind::Task, i, "square".into()));
//! }
//! let read = log.read(job).unwrap();
//! assert_eq!((read.events.len(), read.dropped), (2, 1));
//! assert_eq!(read.events[0].id, 1, "the oldest went first");
//! ```

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::FabricError;
use crate::ids::{ActorId, JobId};
use crate::outcomes::{Outcome, TaskCountsRead};

/// How much of what ran a node keeps (the `[task-events]` table of its
/// settings file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskEventBounds {
    /// Events kept per job.
    pub per_job: usize,
    /// Events kept per tenant, over all its jobs.
    pub per_tenant: usize,
    /// Ended jobs whose record a tenant keeps.
    pub keep_finished: usize,
    /// How long an ended job's record stays (`"1h"`).
    #[serde(deserialize_with = "crate::limits::humantime_serde")]
    pub keep_for: Duration,
}

impl Default for TaskEventBounds {
    fn default() -> Self {
        TaskEventBounds {
            per_job: 20_000,
            per_tenant: 50_000,
            keep_finished: 8,
            keep_for: Duration::from_secs(3600),
        }
    }
}

/// The longest failure text an event keeps.
pub const MAX_ERROR_BYTES: usize = 300;

/// What kind of call an event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Task,
    ActorCall,
    /// An actor's constructor (`Class.new`), once per start or restart.
    ActorCreation,
}

impl CallKind {
    pub fn label(self) -> &'static str {
        match self {
            CallKind::Task => "task",
            CallKind::ActorCall => "actor_call",
            CallKind::ActorCreation => "actor_creation",
        }
    }

    pub fn from_label(label: &str) -> Option<CallKind> {
        [CallKind::Task, CallKind::ActorCall, CallKind::ActorCreation]
            .into_iter()
            .find(|k| k.label() == label)
    }
}

/// One attempt of a task, or one actor call, as it ran on a node. Times
/// are microseconds since the Unix epoch (0: it never got there).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    pub kind: CallKind,
    /// The task's id; for an actor call, the id of its result object.
    pub id: u128,
    /// The function, or the actor's method (`new` for its constructor).
    pub function: Arc<str>,
    /// The actor's id and class, for an actor's calls.
    pub actor: Option<(ActorId, Arc<str>)>,
    /// The task's attempt (0 first), or the actor's restarts so far (which
    /// of its instances ran the call).
    pub attempt: u32,
    /// When it arrived here to run (for a task: before its arguments
    /// were fetched and it queued for resources).
    pub queued_us: u64,
    pub started_us: u64,
    pub finished_us: u64,
    /// Its arguments' bytes, and its values' bytes.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub outcome: Outcome,
    /// What it failed with, cut to [`MAX_ERROR_BYTES`].
    pub error: Option<Box<str>>,
}

impl TaskEvent {
    /// An event of `kind` for call `id` of `function`, queued, started and
    /// finished now, that succeeded; the other fields are set by the caller.
    pub fn new(kind: CallKind, id: u128, function: Arc<str>) -> Self {
        let now = now_us();
        TaskEvent {
            kind,
            id,
            function,
            actor: None,
            attempt: 0,
            queued_us: now,
            started_us: now,
            finished_us: now,
            bytes_in: 0,
            bytes_out: 0,
            outcome: Outcome::Succeeded,
            error: None,
        }
    }

    /// Sets its outcome (and failure text) from how it ended.
    pub fn ended<T>(mut self, result: &Result<T, FabricError>) -> Self {
        self.outcome = Outcome::of(result);
        if let Err(e) = result {
            self.error = Some(cut(e.to_string()).into_boxed_str());
        }
        self
    }
}

/// `text` cut to at most [`MAX_ERROR_BYTES`], at a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A tenant's events held on this node, against its bound.
struct TenantRoom {
    held: AtomicU64,
    max: u64,
}

impl TenantRoom {
    fn take_one(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n as u64, Ordering::AcqRel);
    }
}

/// One job's events on this node.
pub struct JobEvents {
    ring: Mutex<Ring>,
    room: Arc<TenantRoom>,
    per_job: usize,
    /// The job's task counts here when it ended (its books may go before
    /// its record does).
    final_counts: std::sync::OnceLock<TaskCountsRead>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<TaskEvent>,
    dropped: u64,
}

impl JobEvents {
    /// Keeps `event` (the oldest goes past a bound).
    pub fn record(&self, event: TaskEvent) {
        let mut ring = self.ring.lock();
        if ring.events.len() >= self.per_job || !self.room.take_one() {
            // Full: the newest replace the oldest, or (nothing of this job
            // to replace) the event goes.
            ring.dropped += 1;
            if ring.events.pop_front().is_none() {
                return;
            }
        }
        ring.events.push_back(event);
    }

    fn read(&self) -> (Vec<TaskEvent>, u64) {
        let ring = self.ring.lock();
        (ring.events.iter().cloned().collect(), ring.dropped)
    }

    fn shrink(&self) {
        self.ring.lock().events.shrink_to_fit();
    }
}

impl Drop for JobEvents {
    fn drop(&mut self) {
        self.room.give(self.ring.get_mut().events.len());
    }
}

/// What a node kept of one job.
#[derive(Clone, Debug, Default)]
pub struct JobEventsRead {
    /// Oldest first.
    pub events: Vec<TaskEvent>,
    /// Events dropped past a bound.
    pub dropped: u64,
    /// Once the job ended here: the tasks it submitted here.
    pub final_counts: Option<TaskCountsRead>,
}

/// What a node knows of one job's tasks.
#[derive(Clone, Debug, Default)]
pub struct JobTasksHere {
    /// Attempts and calls that ended here (`None`: nothing is kept).
    pub kept: Option<JobEventsRead>,
    /// Task attempts here that have not ended (at most
    /// [`MAX_UNFINISHED_SHOWN`]; `finished_us` 0, `started_us` 0 while
    /// one waits).
    pub unfinished: Vec<TaskEvent>,
    /// Unfinished attempts here beyond those shown.
    pub unfinished_not_shown: u64,
    /// The tasks the job submitted here and how they ended (`None`: it
    /// submitted none that this node still knows of).
    pub counts: Option<TaskCountsRead>,
}

/// The most unfinished attempts a node lists for one job.
pub const MAX_UNFINISHED_SHOWN: usize = 10_000;

#[derive(Default)]
struct LogState {
    jobs: HashMap<JobId, Arc<JobEvents>>,
    rooms: HashMap<Arc<str>, Arc<TenantRoom>>,
    /// Per tenant, its ended jobs whose record is kept, oldest first.
    ended: HashMap<Arc<str>, VecDeque<(JobId, Instant)>>,
}

/// Every job's events on this node.
pub struct TaskEventLog {
    bounds: TaskEventBounds,
    state: Mutex<LogState>,
}

impl TaskEventLog {
    pub fn new(bounds: TaskEventBounds) -> Self {
        TaskEventLog {
            bounds,
            state: Mutex::default(),
        }
    }

    /// The record of `job` of `tenant` (made on first use; a job prepared
    /// here again keeps it).
    pub fn open(&self, job: JobId, tenant: &str) -> Arc<JobEvents> {
        let mut state = self.state.lock();
        if let Some(events) = state.jobs.get(&job) {
            return events.clone();
        }
        let max = self.bounds.per_tenant as u64;
        let room = state
            .rooms
            .entry(tenant.into())
            .or_insert_with(|| {
                Arc::new(TenantRoom {
                    held: AtomicU64::new(0),
                    max,
                })
            })
            .clone();
        let events = Arc::new(JobEvents {
            ring: Mutex::default(),
            room,
            per_job: self.bounds.per_job.max(1),
            final_counts: Default::default(),
        });
        state.jobs.insert(job, events.clone());
        events
    }

    /// `job` ended here: its record stays a while (see the module's doc),
    /// and the tenant's oldest ended records beyond the bound go.
    /// `counts` are the tasks it submitted here, and how they ended.
    pub fn job_ended(&self, job: JobId, tenant: &str, counts: TaskCountsRead) {
        let mut state = self.state.lock();
        let Some(events) = state.jobs.get(&job).cloned() else {
            return;
        };
        let _ = events.final_counts.set(counts);
        events.shrink();
        let ended = state.ended.entry(tenant.into()).or_default();
        if ended.iter().any(|(j, _)| *j == job) {
            return;
        }
        ended.push_back((job, Instant::now()));
        let mut gone = Vec::new();
        while ended.len() > self.bounds.keep_finished {
            gone.extend(ended.pop_front().map(|(j, _)| j));
        }
        for j in gone {
            state.jobs.remove(&j);
        }
    }

    /// Forgets the records of jobs that ended more than `keep-for` ago,
    /// and of jobs that no longer run here without having ended here (a
    /// job prepared for a task that came after its end).
    pub fn expire(&self) {
        let mut state = self.state.lock();
        let keep_for = self.bounds.keep_for;
        let mut gone = Vec::new();
        state.ended.retain(|_, ended| {
            while ended
                .front()
                .is_some_and(|(_, at)| at.elapsed() >= keep_for)
            {
                gone.extend(ended.pop_front().map(|(j, _)| j));
            }
            !ended.is_empty()
        });
        for j in gone {
            state.jobs.remove(&j);
        }
        let LogState { jobs, ended, .. } = &mut *state;
        let kept = |job: &JobId| ended.values().any(|e| e.iter().any(|(j, _)| j == job));
        // Only the log holds it: no job runs here with it.
        jobs.retain(|job, events| Arc::strong_count(events) > 1 || kept(job));
        if jobs.capacity() > 64 && jobs.len() < jobs.capacity() / 4 {
            jobs.shrink_to_fit();
        }
    }

    /// What this node kept of `job`, if anything.
    pub fn read(&self, job: JobId) -> Option<JobEventsRead> {
        let events = self.state.lock().jobs.get(&job).cloned()?;
        let final_counts = events.final_counts.get().copied();
        let (events, dropped) = events.read();
        Some(JobEventsRead {
            events,
            dropped,
            final_counts,
        })
    }

    /// Jobs whose record is kept.
    pub fn jobs_kept(&self) -> usize {
        self.state.lock().jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(per_job: usize, per_tenant: usize, keep_finished: usize) -> TaskEventLog {
        TaskEventLog::new(TaskEventBounds {
            per_job,
            per_tenant,
            keep_finished,
            keep_for: Duration::from_secs(3600),
        })
    }

    fn event(i: u128) -> TaskEvent {
        TaskEvent::new(CallKind::Task, i, "f".into())
    }

    #[test]
    fn a_tenant_past_its_bound_keeps_its_newest_and_says_so() {
        let log = log(100, 5, 8);
        let (a, b) = (JobId::random(), JobId::random());
        let ea = log.open(a, "acme");
        for i in 0..4 {
            ea.record(event(i));
        }
        let eb = log.open(b, "acme");
        for i in 10..13 {
            eb.record(event(i));
        }
        let read = log.read(b).unwrap();
        let ids: Vec<u128> = read.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [12], "one fit; then each newer one replaced it");
        assert_eq!(read.dropped, 2);
        // Another tenant is not held back by this one.
        let other = log.open(JobId::random(), "beta");
        other.record(event(99));
        assert_eq!(other.ring.lock().events.len(), 1);
    }

    #[test]
    fn a_job_with_nothing_kept_drops_what_comes_at_the_tenants_bound() {
        let log = log(100, 2, 8);
        let full = log.open(JobId::random(), "acme");
        full.record(event(1));
        full.record(event(2));
        let late = JobId::random();
        log.open(late, "acme").record(event(3));
        let read = log.read(late).unwrap();
        assert!(read.events.is_empty());
        assert_eq!(read.dropped, 1);
    }

    #[test]
    fn ended_jobs_beyond_the_bound_go_and_give_back_their_room() {
        let log = log(100, 10, 2);
        let jobs: Vec<JobId> = (0..3).map(|_| JobId::random()).collect();
        for (i, &job) in jobs.iter().enumerate() {
            let events = log.open(job, "acme");
            events.record(event(i as u128));
            events.record(event(i as u128 + 100));
            drop(events);
            log.job_ended(job, "acme", Default::default());
        }
        assert!(log.read(jobs[0]).is_none(), "the oldest ended record went");
        assert!(log.read(jobs[2]).is_some());
        let room = log.state.lock().rooms["acme"].clone();
        assert_eq!(room.held.load(Ordering::Acquire), 4);
    }

    #[test]
    fn ended_records_expire() {
        let log = TaskEventLog::new(TaskEventBounds {
            keep_for: Duration::ZERO,
            ..TaskEventBounds::default()
        });
        let job = JobId::random();
        log.open(job, "acme").record(event(1));
        log.job_ended(job, "acme", Default::default());
        let running = JobId::random();
        let held = log.open(running, "acme");
        log.open(JobId::random(), "acme"); // no job holds it, and it never ended
        log.expire();
        assert!(log.read(job).is_none());
        assert_eq!(log.jobs_kept(), 1, "only the running job's record stays");
        assert!(log.read(running).is_some());
        drop(held);
    }

    #[test]
    fn failure_text_is_cut_at_a_character_boundary() {
        let long = FabricError::InvalidArgument("é".repeat(400));
        let e = event(1).ended::<()>(&Err(long));
        let text = e.error.unwrap();
        assert!(text.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(text.ends_with('…'));
        assert_eq!(e.outcome, Outcome::InvalidArgument);
    }
}
