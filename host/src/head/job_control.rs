//! What a client may do with a job once it is submitted: see it, stop it,
//! delete it. Another tenant's job is exactly as unknown as a missing one;
//! the admin sees and stops every job.

use std::time::Duration;

use super::records::JobRecord;
use super::{Head, HeadError};
use crate::ids::JobId;
use crate::security::Principal;

/// How long a stop waits for a job that is still starting (its component
/// loading) to be found on its driver's node.
const STOP_WAIT: Duration = Duration::from_secs(10);

fn may_see(who: &Principal, job: &JobRecord) -> bool {
    who.is_admin() || who.tenant() == job.tenant
}

impl Head {
    /// Job `id`, if `who` may see it.
    pub(crate) fn job_for(&self, id: JobId, who: &Principal) -> Result<JobRecord, HeadError> {
        self.jobs
            .get(id)
            .filter(|j| may_see(who, j))
            .ok_or(HeadError::NoSuchJob)
    }

    /// Job `id`'s record, whoever's it is (for the head's own use).
    pub(crate) fn job_record(&self, id: JobId) -> Option<JobRecord> {
        self.jobs.get(id)
    }

    /// The tasks running job `id` submitted from its driver's node so far.
    pub(crate) fn job_progress(&self, id: JobId) -> Option<crate::outcomes::TaskCountsRead> {
        self.drivers.progress(id)
    }

    /// The jobs `who` may see, oldest first.
    pub(crate) fn jobs_for(&self, who: &Principal) -> Vec<JobRecord> {
        self.jobs
            .all()
            .into_iter()
            .filter(|j| may_see(who, j))
            .collect()
    }

    /// Stops job `id` (a finished job is left as it is) and waits until it
    /// has ended; returns its record.
    pub(crate) async fn stop_job(
        &self,
        id: JobId,
        who: &Principal,
    ) -> Result<JobRecord, HeadError> {
        let job = self.job_for(id, who)?;
        if !self.jobs.mark_stopping(id) {
            return Ok(job);
        }
        tracing::info!(job = %id.short(), by = %who.tenant(), "stopping a job");
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        let mut asked = false;
        let _ = job;
        loop {
            // Its driver may not be running yet (still loading): ask again.
            // The node remembers a stop asked while the job is prepared.
            asked = asked || self.drivers.stop(id);
            // Deleted meanwhile (it had ended): gone, as for anyone.
            let now = self.job_for(id, who)?;
            if now.status.is_finished() || tokio::time::Instant::now() >= deadline {
                // Ended; or asked, and it will end (its record says so then).
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(if asked { 20 } else { 100 })).await;
        }
    }

    /// Forgets finished job `id` and its output.
    pub(crate) async fn delete_job(&self, id: JobId, who: &Principal) -> Result<(), HeadError> {
        let forgotten = self.jobs.forget(id, |j| may_see(who, j))?;
        self.save(forgotten).await
    }
}
