//! The job registry: the jobs submitted to the head, their output, and the
//! job slots of submissions in progress, under one lock, so the jobs quota
//! is decided on one consistent view.
//!
//! The gate takes a slot ([`JobSlot`]) when a `SubmitJob` arrives, before its
//! body is read; the slot counts against the tenant's quota together with
//! its running jobs, so concurrent submissions cannot all pass the check and
//! then compile. The slot becomes the job's record when the job starts, or
//! goes back when the submission fails (the component does not load, the
//! client goes away).
//!
//! What is kept is bounded per tenant: the newest [`JOB_HISTORY`] finished
//! jobs (running ones always), and the output of the newest
//! [`JOBS_WITH_LOGS`] jobs, each at most [`JOB_LOG_LINES`] lines and
//! [`JOB_LOG_BYTES`] bytes. One tenant's many jobs never push out another's.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::records::{JobRecord, JobStatus, LogLine, Record};
use crate::error::FabricError;
use crate::ids::JobId;

/// Finished jobs the head remembers for `fabric status`, per tenant.
pub(crate) const JOB_HISTORY: usize = 200;
/// Jobs whose output the head keeps: each tenant's most recent.
pub(crate) const JOBS_WITH_LOGS: usize = 20;
/// Lines of one job's output kept at the head.
const JOB_LOG_LINES: usize = 10_000;
/// Bytes of one job's output kept at the head.
const JOB_LOG_BYTES: usize = 1 << 20;

/// The most recent output of one job (at most [`JOB_LOG_LINES`] lines and
/// [`JOB_LOG_BYTES`] bytes: older lines are dropped and counted).
#[derive(Default)]
pub(crate) struct JobLog {
    pub lines: VecDeque<LogLine>,
    pub dropped: u64,
    bytes: usize,
}

impl JobLog {
    pub(crate) fn push(&mut self, line: LogLine) {
        self.bytes += line.line.len() + line.prefix.len();
        self.lines.push_back(line);
        while self.lines.len() > JOB_LOG_LINES || self.bytes > JOB_LOG_BYTES {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.line.len() + old.prefix.len();
            self.dropped += 1;
        }
    }
}

#[derive(Default)]
struct Registry {
    /// In the order the jobs started.
    jobs: Vec<JobRecord>,
    logs: HashMap<JobId, Arc<Mutex<JobLog>>>,
    /// Job slots taken by submissions whose jobs are not recorded yet.
    reserved: HashMap<Arc<str>, u32>,
    /// Running jobs someone asked to stop.
    stopping: std::collections::HashSet<JobId>,
}

/// The head's jobs.
#[derive(Default)]
pub(crate) struct JobRegistry(Mutex<Registry>);

/// One of a tenant's job slots, held until its job is recorded.
pub(crate) struct JobSlot {
    registry: Arc<JobRegistry>,
    tenant: Arc<str>,
    recorded: bool,
}

impl Registry {
    fn running(&self, tenant: &str) -> usize {
        self.jobs
            .iter()
            .filter(|j| j.tenant == tenant && !j.status.is_finished())
            .count()
    }

    /// Records (or updates) a job, then forgets the tenant's oldest finished
    /// jobs past [`JOB_HISTORY`] and the oldest logs past
    /// [`JOBS_WITH_LOGS`]; returns what to save.
    fn set(&mut self, record: JobRecord) -> Vec<Record> {
        let tenant = record.tenant.clone();
        let mut saved = vec![Record::Job(record.clone())];
        match self.jobs.iter_mut().find(|j| j.id == record.id) {
            Some(j) => *j = record,
            None => self.jobs.push(record),
        }
        let finished = |j: &JobRecord| j.tenant == tenant && j.status.is_finished();
        let mut excess = self
            .jobs
            .iter()
            .filter(|j| finished(j))
            .count()
            .saturating_sub(JOB_HISTORY);
        let logs = &mut self.logs;
        self.jobs.retain(|j| {
            if excess > 0 && finished(j) {
                excess -= 1;
                logs.remove(&j.id);
                saved.push(Record::ForgetJob(j.id));
                false
            } else {
                true
            }
        });
        // The tenant's jobs with logs, newest first: past its share, the
        // oldest lose them.
        let with_logs: Vec<JobId> = self
            .jobs
            .iter()
            .rev()
            .filter(|j| j.tenant == tenant && self.logs.contains_key(&j.id))
            .map(|j| j.id)
            .skip(JOBS_WITH_LOGS)
            .collect();
        for old in with_logs {
            self.logs.remove(&old);
        }
        saved
    }
}

impl JobRegistry {
    /// Takes back the jobs a previous head saved: those that were running
    /// failed (their drivers ran in the head's process, which is gone).
    /// Returns what to save.
    pub(crate) fn restore(&self, mut jobs: Vec<JobRecord>) -> Vec<Record> {
        jobs.sort_by_key(|j| j.started_ms);
        let mut failed = Vec::new();
        for j in &mut jobs {
            if j.status == JobStatus::Running {
                j.status = JobStatus::Failed("the head stopped while the job ran".into());
                j.ended_ms = j.ended_ms.max(j.started_ms);
                failed.push(Record::Job(j.clone()));
            }
        }
        self.0.lock().jobs = jobs;
        failed
    }

    /// Takes one of `tenant`'s job slots, or refuses when its running jobs
    /// and the submissions holding slots fill its jobs quota (`max`).
    pub(crate) fn reserve(
        self: &Arc<Self>,
        tenant: &str,
        max: Option<u32>,
    ) -> Result<JobSlot, FabricError> {
        let mut r = self.0.lock();
        let starting = r.reserved.get(tenant).copied().unwrap_or(0);
        if let Some(max) = max {
            let running = r.running(tenant) as u32;
            if running + starting >= max {
                return Err(FabricError::limit(
                    "jobs-quota",
                    u64::from(max),
                    format!(
                        "tenant `{tenant}` already runs {running} jobs and is starting {starting}"
                    ),
                ));
            }
        }
        let tenant: Arc<str> = tenant.into();
        *r.reserved.entry(tenant.clone()).or_default() += 1;
        Ok(JobSlot {
            registry: self.clone(),
            tenant,
            recorded: false,
        })
    }

    pub(crate) fn get(&self, id: JobId) -> Option<JobRecord> {
        self.0.lock().jobs.iter().find(|j| j.id == id).cloned()
    }

    pub(crate) fn log(&self, id: JobId) -> Option<Arc<Mutex<JobLog>>> {
        self.0.lock().logs.get(&id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<JobRecord> {
        self.0.lock().jobs.clone()
    }

    /// Notes that `id` is being stopped (so it ends `stopped`); `false`
    /// when it is not running.
    pub(crate) fn mark_stopping(&self, id: JobId) -> bool {
        let mut r = self.0.lock();
        let running = r.jobs.iter().any(|j| j.id == id && !j.status.is_finished());
        if running {
            r.stopping.insert(id);
        }
        running
    }

    /// Job `record` ended with `result` (`stopped`, when someone stopped it
    /// and it ended cancelled); what to save goes to `save` under the same
    /// lock, so a delete that sees it finished is saved after it.
    pub(crate) fn finish(
        &self,
        mut record: JobRecord,
        result: &Result<(), FabricError>,
        ended_ms: u64,
        save: impl FnOnce(Vec<Record>),
    ) {
        let mut r = self.0.lock();
        let stopped = r.stopping.remove(&record.id);
        record.status = match result {
            Ok(()) => JobStatus::Succeeded,
            Err(FabricError::Cancelled) if stopped => JobStatus::Stopped,
            Err(e) => JobStatus::Failed(e.to_string()),
        };
        record.ended_ms = ended_ms;
        save(r.set(record));
    }

    /// Forgets finished job `id` and its output, if `may_see` it; returns
    /// what to save.
    pub(crate) fn forget(
        &self,
        id: JobId,
        may_see: impl Fn(&JobRecord) -> bool,
    ) -> Result<Vec<Record>, super::HeadError> {
        let mut r = self.0.lock();
        let job = r
            .jobs
            .iter()
            .find(|j| j.id == id && may_see(j))
            .ok_or(super::HeadError::NoSuchJob)?;
        if !job.status.is_finished() {
            return Err(super::HeadError::JobRunning(id));
        }
        r.jobs.retain(|j| j.id != id);
        r.logs.remove(&id);
        Ok(vec![Record::ForgetJob(id)])
    }

    /// A tenant's jobs known, and those running.
    pub(crate) fn counts(&self, tenant: &str) -> (u64, u32) {
        let r = self.0.lock();
        let known = r.jobs.iter().filter(|j| j.tenant == tenant).count();
        (known as u64, r.running(tenant) as u32)
    }
}

impl JobSlot {
    /// The job starts: its record (and its log) take the slot's place under
    /// one lock, so no other submission sees neither. Returns what to save.
    pub(crate) fn start(mut self, record: JobRecord, log: Arc<Mutex<JobLog>>) -> Vec<Record> {
        let mut r = self.registry.0.lock();
        r.logs.insert(record.id, log);
        let saved = r.set(record);
        release(&mut r, &self.tenant);
        self.recorded = true;
        saved
    }
}

fn release(r: &mut Registry, tenant: &Arc<str>) {
    if let Some(n) = r.reserved.get_mut(tenant) {
        *n -= 1;
        if *n == 0 {
            r.reserved.remove(tenant);
        }
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        if !self.recorded {
            release(&mut self.registry.0.lock(), &self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn job(tenant: &str, started_ms: u64, status: JobStatus) -> JobRecord {
        JobRecord {
            id: JobId::random(),
            digest: String::new(),
            driver: NodeId::random(),
            started_ms,
            ended_ms: 0,
            tenant: tenant.into(),
            status,
        }
    }

    #[test]
    fn slots_count_against_the_quota_until_released() {
        let jobs = Arc::new(JobRegistry::default());
        let a = jobs.reserve("acme", Some(2)).unwrap();
        let _b = jobs.reserve("acme", Some(2)).unwrap();
        assert!(jobs.reserve("acme", Some(2)).is_err(), "two slots fill 2");
        assert!(jobs.reserve("other", Some(2)).is_ok(), "per tenant");
        drop(a);
        let c = jobs.reserve("acme", Some(2)).unwrap();
        c.start(job("acme", 1, JobStatus::Running), Arc::default());
        assert!(
            jobs.reserve("acme", Some(2)).is_err(),
            "a running job holds its slot"
        );
    }

    #[test]
    fn one_tenant_cannot_push_out_anothers_history_or_logs() {
        let jobs = Arc::new(JobRegistry::default());
        let theirs = job("victim", 0, JobStatus::Succeeded);
        let slot = jobs.reserve("victim", None).unwrap();
        slot.start(theirs.clone(), Arc::default());
        for n in 0..(JOB_HISTORY + JOBS_WITH_LOGS + 5) as u64 {
            let slot = jobs.reserve("noisy", None).unwrap();
            slot.start(job("noisy", n + 1, JobStatus::Succeeded), Arc::default());
        }
        assert_eq!(jobs.counts("noisy").0 as usize, JOB_HISTORY);
        assert!(jobs.get(theirs.id).is_some() && jobs.log(theirs.id).is_some());
        let noisy_logs = jobs
            .all()
            .iter()
            .filter(|j| j.tenant == "noisy" && jobs.log(j.id).is_some())
            .count();
        assert_eq!(noisy_logs, JOBS_WITH_LOGS);
    }
}
