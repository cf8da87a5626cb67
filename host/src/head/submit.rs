//! Starting a submitted job: its record, its kept output, its driver (on
//! the [`super::Drivers`] port), and its final state when it ends.

use parking_lot::Mutex;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::jobs::{JobLog, JobSlot};
use super::records::{JobRecord, JobStatus, LogLine};
use super::{Head, HeadError};
use crate::JobOptions;
use crate::error::FabricError;
use crate::ids::JobId;
use crate::logs::{LogSink, LogSource, Stream};

/// What a client asked to run.
pub(crate) struct Submission {
    pub tenant: String,
    pub component: Bytes,
    pub args: Vec<String>,
    /// The job manifest (TOML).
    pub manifest: String,
    /// Its other components, by name.
    pub components: Vec<(String, Bytes)>,
}

/// A job that started: how it ended, once it has (its record is final by
/// then).
pub(crate) struct Started {
    pub ended: oneshot::Receiver<Result<(), FabricError>>,
}

/// Where a job's output goes besides the head's kept log (the client).
pub(crate) type Output = Arc<dyn Fn(&LogLine) + Send + Sync>;

/// Keeps a job's output for `fabric logs` and passes it on to the client
/// (the line is copied out of the guest once; both share it).
struct KeptOutput {
    log: Arc<Mutex<JobLog>>,
    client: Output,
}

impl LogSink for KeptOutput {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        let line = LogLine {
            prefix: source.prefix.to_string(),
            stderr: stream == Stream::Stderr,
            line: Bytes::copy_from_slice(line),
        };
        (self.client)(&line);
        self.log.lock().push(line);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Head {
    /// Takes one of `tenant`'s job slots (see [`super::jobs`]).
    pub(crate) fn reserve_job(&self, tenant: &str) -> Result<JobSlot, HeadError> {
        self.jobs
            .reserve(tenant, self.tokens.quota(tenant).jobs)
            .map_err(HeadError::Refused)
    }

    /// Loads the component and starts the job's driver in `slot`; its
    /// output goes to `client` (and is kept). `started` runs once the job
    /// is recorded, before its driver can print.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        slot: JobSlot,
        job: Submission,
        client: Output,
        started: impl FnOnce(JobId),
    ) -> Result<Started, HeadError> {
        // What costs nothing to check is checked before any compile.
        crate::runtime::job::check_part_names(job.components.iter().map(|(n, _)| n.as_str()))
            .map_err(HeadError::Refused)?;
        if !job.manifest.trim().is_empty() {
            crate::manifest::JobManifest::parse(&job.manifest).map_err(HeadError::Refused)?;
        }
        let app = self
            .drivers
            .load(job.component, &job.tenant)
            .await
            .map_err(HeadError::Load)?;
        let mut components = Vec::with_capacity(job.components.len());
        for (name, bytes) in job.components {
            let part = self
                .drivers
                .load(bytes, &job.tenant)
                .await
                .map_err(HeadError::Load)?;
            components.push((name, part));
        }
        let id = JobId::random();
        let record = JobRecord {
            id,
            digest: app.digest().to_string(),
            driver: self.node_id(),
            started_ms: now_ms(),
            ended_ms: 0,
            tenant: job.tenant.clone(),
            status: JobStatus::Running,
        };
        let log = Arc::new(Mutex::new(JobLog::default()));
        self.save_later(slot.start(record.clone(), log.clone()));
        started(id);
        let options = JobOptions {
            manifest: job.manifest,
            tenant: Some(job.tenant),
            components,
        };
        let sink = Arc::new(KeptOutput { log, client });
        let running = self.drivers.start(id, app, job.args, sink, options);
        let (done, ended) = oneshot::channel();
        let head = self.clone();
        tokio::spawn(async move {
            let outcome = running.await;
            head.jobs
                .finish(record, &outcome.result, now_ms(), |saved| {
                    head.save_later(saved)
                });
            // Its groups that are not detached go with it (the nodes that
            // made them also remove them; this covers a node that died).
            head.remove_job_groups(id);
            let _ = done.send(outcome.result);
        });
        Ok(Started { ended })
    }

    /// A job's kept output, if `tenant` (`None`: the admin) may see it.
    /// Another tenant's job is exactly as unknown as a missing one.
    pub(crate) fn job_output(
        &self,
        id: JobId,
        tenant: Option<&str>,
    ) -> Option<(Vec<LogLine>, u64)> {
        let job = self.jobs.get(id)?;
        if tenant.is_some_and(|t| t != job.tenant) {
            return None;
        }
        let log = self.jobs.log(id)?;
        let log = log.lock();
        Some((log.lines.iter().cloned().collect(), log.dropped))
    }

    /// The lines of job `id`'s kept output from line `from` on (counting
    /// every line it printed, kept or dropped): those still kept, and the
    /// number of the first of them (past `from` when older lines were
    /// dropped). `None` when there is no such output.
    pub(crate) fn job_output_from(&self, id: JobId, from: u64) -> Option<(Vec<LogLine>, u64)> {
        let log = self.jobs.log(id)?;
        let log = log.lock();
        let first = from.max(log.dropped);
        let skip = (first - log.dropped) as usize;
        Some((log.lines.iter().skip(skip).cloned().collect(), first))
    }
}
