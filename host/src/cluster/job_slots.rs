//! Job slots: a tenant's jobs quota, taken before anything is done for a
//! submission.
//!
//! The gate takes a slot when a `SubmitJob` arrives, before its body is
//! read; the slot counts against the tenant's quota together with its
//! running jobs, so concurrent submissions cannot all pass the check and
//! then compile. The slot becomes the job's record when the job starts, or
//! goes back when the submission fails (the component does not load, the
//! client goes away).

use std::sync::Arc;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::head::HeadState;
use crate::error::FabricError;

/// One of a tenant's job slots, held until its job is recorded.
pub(crate) struct JobSlot {
    head: Arc<HeadState>,
    tenant: Arc<str>,
    recorded: bool,
}

impl HeadState {
    /// Takes one of `tenant`'s job slots, or refuses when its running jobs
    /// and the submissions holding slots fill its jobs quota.
    pub(super) fn reserve_job(self: &Arc<Self>, tenant: &str) -> Result<JobSlot, Status> {
        let jobs = self.jobs.lock();
        let mut reserved = self.reserved_jobs.lock();
        let starting = reserved.get(tenant).copied().unwrap_or(0);
        if let Some(max) = self.tokens.quota(tenant).jobs {
            let running = jobs
                .iter()
                .filter(|j| j.tenant == tenant && j.status() == pb::job_record::Status::Running)
                .count() as u32;
            if running + starting >= max {
                let e = FabricError::limit(
                    "jobs-quota",
                    u64::from(max),
                    format!(
                        "tenant `{tenant}` already runs {running} jobs and is starting {starting}"
                    ),
                );
                return Err(Status::resource_exhausted(e.to_string()));
            }
        }
        let tenant: Arc<str> = tenant.into();
        *reserved.entry(tenant.clone()).or_default() += 1;
        Ok(JobSlot {
            head: self.clone(),
            tenant,
            recorded: false,
        })
    }
}

impl JobSlot {
    /// The job starts: its record takes the slot's place (under one lock,
    /// so no other submission sees neither).
    pub(super) fn record(mut self, record: pb::JobRecord) {
        let mut jobs = self.head.jobs.lock();
        jobs.push(record);
        self.release();
        self.recorded = true;
    }

    fn release(&self) {
        let mut reserved = self.head.reserved_jobs.lock();
        if let Some(n) = reserved.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                reserved.remove(&self.tenant);
            }
        }
    }
}

impl Drop for JobSlot {
    fn drop(&mut self) {
        if !self.recorded {
            self.release();
        }
    }
}
