//! What ran here: a bounded record of each job's task attempts and actor
//! calls on this node, for the dashboard's task view and `fabric timeline`.
//!
//! The head never holds individual tasks: each node keeps, per job, the
//! attempts that ran (or ended) here, and answers when asked. The record
//! is bounded three ways, and says when it dropped something:
//!
//! - per job: at most `per-job` events; past it the oldest go (counted in
//!   [`JobEventsRead::dropped`]);
//! - per tenant: at most `per-tenant` bytes over all its jobs here (each
//!   event weighs its kept size and its error text, each distinct name of
//!   a job its text once: one tenant's many jobs cannot grow the node); past it the tenant's oldest ended job's
//!   record goes first, then a job keeps only its newest, and a job with
//!   none kept drops what comes;
//! - after a job ends: its record stays for `keep-for`, and only for the
//!   tenant's `keep-finished` most recent ended jobs; the older ones go
//!   (what a detached actor of an ended job does later is not kept once
//!   its job's record went).
//!
//! Recording is a clock read at each end of a call and one lock of the
//! job's own record, after the caller has its answer; nothing is
//! allocated but a failure's text, and a full record overwrites its oldest
//! in order (see `ring.rs`). `enabled = false` turns it all off, clock
//! reads included.
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

mod ring;
use ring::Ring;
pub use ring::{MAX_NAMES, OTHER_NAME};

/// How much of what ran a node keeps (the `[task-events]` table of its
/// settings file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskEventBounds {
    /// Whether the node keeps them at all (off: `fabric timeline` and the
    /// task view show nothing of this node, and calls skip the clock).
    pub enabled: bool,
    /// Events kept per job.
    pub per_job: usize,
    /// Bytes of events kept per tenant, over all its jobs (`"16 MiB"`).
    #[serde(deserialize_with = "crate::limits::size::required")]
    pub per_tenant: u64,
    /// Ended jobs whose record a tenant keeps.
    pub keep_finished: usize,
    /// How long an ended job's record stays (`"1h"`).
    #[serde(deserialize_with = "crate::limits::humantime_serde")]
    pub keep_for: Duration,
}

impl Default for TaskEventBounds {
    fn default() -> Self {
        TaskEventBounds {
            enabled: true,
            per_job: 20_000,
            per_tenant: 16 << 20,
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
            self.error =
                Some(crate::error::cut(e.to_string(), MAX_ERROR_BYTES, "…").into_boxed_str());
        }
        self
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A tenant's events held on this node, against its bound, and its ended
/// jobs' records (which give their room back first).
struct TenantRoom {
    held: AtomicU64,
    max: u64,
    ended: Mutex<VecDeque<std::sync::Weak<JobEvents>>>,
}

impl TenantRoom {
    fn take(&self, bytes: u64) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + bytes <= self.max).then_some(n + bytes)
            })
            .is_ok()
    }

    fn give(&self, bytes: u64) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Empties the oldest ended record (not `me`'s) that holds anything;
    /// whether one did.
    fn evict_ended(&self, me: &JobEvents) -> bool {
        let mut ended = self.ended.lock();
        for _ in 0..ended.len() {
            let Some(weak) = ended.pop_front() else { break };
            let Some(events) = weak.upgrade() else {
                continue;
            };
            if std::ptr::eq(&*events, me) {
                ended.push_back(weak); // still recording: not its own victim
                continue;
            }
            if events.close(false) > 0 {
                ended.push_back(weak);
                return true;
            }
        }
        false
    }
}

/// One job's events on this node.
pub struct JobEvents {
    /// Whether anything is kept (the node's `enabled`).
    on: bool,
    ring: Mutex<Ring>,
    room: Arc<TenantRoom>,
    per_job: usize,
    /// The job's task counts here when it ended (its books may go before
    /// its record does).
    final_counts: std::sync::OnceLock<TaskCountsRead>,
}

impl JobEvents {
    /// Whether events are kept (else calls need not time themselves).
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Keeps `event` (the oldest go past a bound).
    pub fn record(&self, event: TaskEvent) {
        if !self.on {
            return;
        }
        let mut ring = self.ring.lock();
        if ring.closed {
            ring.dropped += 1;
            return;
        }
        let mut freed = 0;
        while ring.len() >= self.per_job {
            freed += ring.pop_oldest().expect("per_job is at least 1");
        }
        let weight = ring.weigh(&event);
        // A full record replaces its oldest: most often by one that
        // weighs the same, and the tenant's count is left alone.
        let short = match freed.cmp(&weight) {
            std::cmp::Ordering::Greater => {
                self.room.give(freed - weight);
                false
            }
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => !self.room.take(weight - freed),
        };
        if short {
            self.room.give(freed);
            // The tenant's ended jobs may hold its room: the oldest gives
            // it back (taken without this ring's lock: no two rings are
            // ever locked in turn by two recorders).
            drop(ring);
            self.room.evict_ended(self);
            ring = self.ring.lock();
            if !self.make_room(&mut ring, &event) {
                return;
            }
        }
        ring.push(event);
    }

    /// Takes the room `event` needs, this job's oldest events making it
    /// (again under the lock: other recorders went on meanwhile); false
    /// when the event goes instead.
    fn make_room(&self, ring: &mut Ring, event: &TaskEvent) -> bool {
        if ring.closed {
            ring.dropped += 1;
            return false;
        }
        while ring.len() >= self.per_job {
            let w = ring.pop_oldest().expect("per_job is at least 1");
            self.room.give(w);
        }
        let weight = ring.weigh(event);
        while !self.room.take(weight) {
            let Some(w) = ring.pop_oldest() else {
                ring.dropped += 1;
                return false;
            };
            self.room.give(w);
        }
        true
    }

    /// Drops what it keeps, giving its room back (and, when `for_good`,
    /// keeps nothing more); how many events went.
    fn close(&self, for_good: bool) -> usize {
        let mut ring = self.ring.lock();
        let n = ring.len();
        ring.closed |= for_good;
        self.room.give(ring.clear());
        n
    }

    fn is_closed(&self) -> bool {
        self.ring.lock().closed
    }

    /// Its newest `max` events, and how many it dropped or left out.
    fn read_newest(&self, max: usize) -> (Vec<TaskEvent>, u64) {
        self.ring.lock().read_newest(max)
    }

    fn shrink(&self) {
        self.ring.lock().shrink();
    }
}

impl Drop for JobEvents {
    fn drop(&mut self) {
        self.room.give(self.ring.get_mut().bytes);
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

impl LogState {
    /// Forgets job `job`'s record: its room goes back now, even while a
    /// detached actor of the job still holds it (which then keeps nothing).
    fn forget(&mut self, job: JobId) {
        if let Some(events) = self.jobs.remove(&job) {
            events.close(true);
        }
    }
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
        let max = self.bounds.per_tenant;
        let room = state
            .rooms
            .entry(tenant.into())
            .or_insert_with(|| {
                Arc::new(TenantRoom {
                    held: AtomicU64::new(0),
                    max,
                    ended: Mutex::default(),
                })
            })
            .clone();
        let events = Arc::new(JobEvents {
            ring: Mutex::default(),
            room,
            on: self.bounds.enabled,
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
            state.forget(j);
        }
        let mut evictable = events.room.ended.lock();
        evictable.push_back(Arc::downgrade(&events));
        evictable.retain(|w| w.upgrade().is_some_and(|e| !e.is_closed()));
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
            state.forget(j);
        }
        let LogState { jobs, ended, .. } = &mut *state;
        let kept: std::collections::HashSet<JobId> = ended
            .values()
            .flat_map(|e| e.iter().map(|(j, _)| *j))
            .collect();
        // Only the log holds it: no job runs here with it.
        jobs.retain(|job, events| Arc::strong_count(events) > 1 || kept.contains(job));
        if jobs.capacity() > 64 && jobs.len() < jobs.capacity() / 4 {
            jobs.shrink_to_fit();
        }
    }

    /// What this node kept of `job`, if anything.
    pub fn read(&self, job: JobId) -> Option<JobEventsRead> {
        self.read_newest(job, usize::MAX)
    }

    /// The newest `max` events this node kept of `job` (the others count
    /// as dropped).
    pub fn read_newest(&self, job: JobId, max: usize) -> Option<JobEventsRead> {
        let events = self.state.lock().jobs.get(&job).cloned()?;
        let final_counts = events.final_counts.get().copied();
        let (events, dropped) = events.read_newest(max);
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

    /// What one job's name `f` weighs, kept once per job.
    const NAME: u64 = 2 + ring::NAME_OVERHEAD;

    /// A log keeping `per_job` events per job, `per_tenant` events' worth
    /// per tenant (and the name of `jobs` jobs), `keep_finished` ended jobs.
    fn log(per_job: usize, per_tenant: u64, keep_finished: usize) -> TaskEventLog {
        TaskEventLog::new(TaskEventBounds {
            enabled: true,
            per_job,
            per_tenant: per_tenant * ring::STORED_BYTES + 2 * NAME,
            keep_finished,
            keep_for: Duration::from_secs(3600),
        })
    }

    fn event(i: u128) -> TaskEvent {
        TaskEvent::new(CallKind::Task, i, "f".into())
    }

    fn ids(read: &JobEventsRead) -> Vec<u128> {
        read.events.iter().map(|e| e.id).collect()
    }

    /// The bytes a tenant holds, as (events, jobs' names).
    fn held(log: &TaskEventLog, tenant: &str) -> u64 {
        let room = log.state.lock().rooms[tenant].clone();
        room.held.load(Ordering::Acquire)
    }

    fn bytes(events: u64, names: u64) -> u64 {
        events * ring::STORED_BYTES + names * NAME
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
        assert_eq!(ids(&read), [12], "one fit; then each newer one replaced it");
        assert_eq!(read.dropped, 2);
        // Another tenant is not held back by this one.
        let other = log.open(JobId::random(), "beta");
        other.record(event(99));
        assert_eq!(other.ring.lock().len(), 1);
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
    fn a_running_job_takes_the_room_of_the_tenants_oldest_ended_one() {
        let log = log(100, 4, 8);
        let old = JobId::random();
        let ended = log.open(old, "acme");
        for i in 0..4 {
            ended.record(event(i));
        }
        log.job_ended(old, "acme", Default::default());
        let new = JobId::random();
        let running = log.open(new, "acme");
        running.record(event(10));
        running.record(event(11));
        assert_eq!(ids(&log.read(new).unwrap()), [10, 11]);
        let gone = log.read(old).unwrap();
        assert!(gone.events.is_empty() && gone.dropped == 4, "{gone:?}");
        assert_eq!(held(&log, "acme"), bytes(2, 1));
    }

    #[test]
    fn ended_jobs_beyond_the_bound_go_and_give_back_their_room() {
        let log = log(100, 10, 2);
        let jobs: Vec<JobId> = (0..3).map(|_| JobId::random()).collect();
        let mut kept = Vec::new();
        for (i, &job) in jobs.iter().enumerate() {
            let events = log.open(job, "acme");
            events.record(event(i as u128));
            events.record(event(i as u128 + 100));
            log.job_ended(job, "acme", Default::default());
            kept.push(events); // as a detached actor of the job would
        }
        assert!(log.read(jobs[0]).is_none(), "the oldest ended record went");
        assert!(log.read(jobs[2]).is_some());
        assert_eq!(
            held(&log, "acme"),
            bytes(4, 2),
            "its room came back at once"
        );
        kept[0].record(event(7));
        assert_eq!(
            held(&log, "acme"),
            bytes(4, 2),
            "a forgotten record keeps nothing"
        );
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
