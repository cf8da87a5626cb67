//! The `Control` service: what clients (the `fabric` CLI) call on the head.
//!
//! Every call needs a token. A tenant's token runs jobs as that tenant and
//! sees only that tenant's jobs, logs, actors and usage: another tenant's job
//! id gives not-found, exactly as an unknown one. The admin token sees
//! everything and manages tenants.

use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::control_server::Control;

use super::convert::{error_to_pb, id_bytes};
use super::gate::{Caller, Ticket};
use super::head::{HeadState, JOBS_WITH_LOGS, JobLog};
use super::quotas::{quota_from_pb, quota_to_pb};
use crate::logs::{LogSink, LogSource, Stream};
use crate::node::JobOptions;
use crate::security::Principal;

/// The head's client-facing service.
pub(crate) struct ControlService {
    pub head: Arc<HeadState>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ControlService {
    /// The caller, as the gate found it (or, without a gate, from the
    /// request's token).
    fn who<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        match request.extensions().get::<Caller>() {
            Some(Caller(p)) => Ok(p.clone()),
            None => self.head.tokens.authorize(request),
        }
    }

    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.who(request)?.is_admin() {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "only the admin token may do this",
            ))
        }
    }
}

/// Sends a job's output down its submit stream and keeps it for `JobLogs`.
struct SubmitSink {
    tx: mpsc::UnboundedSender<Result<pb::JobEvent, Status>>,
    log: Arc<Mutex<JobLog>>,
}

impl LogSink for SubmitSink {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        let log = pb::LogLine {
            prefix: source.prefix.to_string(),
            stderr: stream == Stream::Stderr,
            line: bytes::Bytes::copy_from_slice(line),
        };
        self.log.lock().push(log.clone());
        let _ = self.tx.send(Ok(pb::JobEvent {
            kind: Some(pb::job_event::Kind::Log(log)),
        }));
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn cluster_state(
        &self,
        request: Request<pb::ClusterStateRequest>,
    ) -> Result<Response<pb::ClusterStateReply>, Status> {
        let who = self.who(&request)?;
        let mut state = self.head.cluster_state();
        if let Principal::Tenant(t) = &who {
            state.jobs.retain(|j| j.tenant == **t);
            state.actors.retain(|a| a.tenant == **t);
            state.head_rpcs.clear();
        }
        Ok(Response::new(state))
    }

    type SubmitJobStream = UnboundedReceiverStream<Result<pb::JobEvent, Status>>;

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<Self::SubmitJobStream>, Status> {
        let who = self.who(&request)?;
        self.head.count("SubmitJob");
        let tenant = who.tenant().to_string();
        // The gate took a job slot before the body was read.
        let (slot, _submitting) = match request.extensions().get::<Ticket>().and_then(Ticket::take)
        {
            Some(a) => (a.slot, Some(a.submitting)),
            None => (self.head.reserve_job(&tenant)?, None),
        };
        let r = request.into_inner();
        let node = self.head.node();
        let app = node
            .load_for(&r.component, &tenant)
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot load the component: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(JobLog::default()));
        let sink = Arc::new(SubmitSink {
            tx: tx.clone(),
            log: log.clone(),
        });
        let digest = app.digest().to_string();
        let job_id = crate::ids::JobId::random();
        let mut record = pb::JobRecord {
            job_id: id_bytes(job_id.as_u128()),
            digest,
            driver_node: id_bytes(node.id().as_u128()),
            started_ms: now_ms(),
            tenant: tenant.clone(),
            ..Default::default()
        };
        record.set_status(pb::job_record::Status::Running);
        slot.record(record.clone());
        let options = JobOptions {
            manifest: r.manifest,
            tenant: Some(tenant.clone()),
        };
        let running = node.start_job_as(job_id, app, r.args, sink, options);
        self.head.job_logs.lock().insert(record.job_id.clone(), log);
        self.record(record.clone());
        let _ = tx.send(Ok(pb::JobEvent {
            kind: Some(pb::job_event::Kind::Started(pb::job_event::Started {
                job_id: record.job_id.clone(),
            })),
        }));
        let head = self.head.clone();
        tokio::spawn(async move {
            let outcome = running.await;
            let (ok, error) = match &outcome.result {
                Ok(()) => (true, None),
                Err(e) => (false, Some(error_to_pb(e))),
            };
            record.set_status(if ok {
                pb::job_record::Status::Succeeded
            } else {
                pb::job_record::Status::Failed
            });
            record.error = outcome
                .result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            ControlService { head }.record(record);
            let _ = tx.send(Ok(pb::JobEvent {
                kind: Some(pb::job_event::Kind::Finished(pb::job_event::Finished {
                    ok,
                    error,
                })),
            }));
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn job_logs(
        &self,
        request: Request<pb::JobLogsRequest>,
    ) -> Result<Response<pb::JobLogsReply>, Status> {
        let who = self.who(&request)?;
        let id = request.into_inner().job_id;
        let not_found = || Status::not_found("no such job");
        let tenant = self
            .head
            .jobs
            .lock()
            .iter()
            .find(|j| j.job_id == id)
            .map(|j| j.tenant.clone())
            .ok_or_else(not_found)?;
        if !who.is_admin() && who.tenant() != tenant {
            // Exactly as an unknown job: no existence oracle.
            return Err(not_found());
        }
        let log = self
            .head
            .job_logs
            .lock()
            .get(&id)
            .cloned()
            .ok_or_else(not_found)?;
        let log = log.lock();
        Ok(Response::new(pb::JobLogsReply {
            lines: log.lines.iter().cloned().collect(),
            dropped: log.dropped,
        }))
    }

    async fn add_tenant(
        &self,
        request: Request<pb::AddTenantRequest>,
    ) -> Result<Response<pb::AddTenantReply>, Status> {
        self.admin(&request)?;
        let r = request.into_inner();
        let token = self
            .head
            .tokens
            .add_tenant(&r.name, quota_from_pb(r.quota.as_ref()))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tracing::info!(tenant = %r.name, "tenant added");
        Ok(Response::new(pb::AddTenantReply { token }))
    }

    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.admin(&request)?;
        let r = request.into_inner();
        self.head
            .tokens
            .set_quota(&r.name, quota_from_pb(r.quota.as_ref()))
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeReply>, Status> {
        self.admin(&request)?;
        self.head.count("DrainNode");
        let r = request.into_inner();
        let id = self.head.find_node(&r.node)?;
        self.head.start_draining(id)?;
        let wait = match r.timeout_ms {
            0 => Self::DRAIN_WAIT,
            ms => Duration::from_millis(ms),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let gone = loop {
            if let Some(cleanly) = self.head.has_left(id) {
                break Some(cleanly);
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(Response::new(pb::DrainNodeReply {
            node_id: id_bytes(id.as_u128()),
            left: gone == Some(true),
            died: gone == Some(false),
        }))
    }

    async fn tenant_usage(
        &self,
        request: Request<pb::TenantUsageRequest>,
    ) -> Result<Response<pb::TenantUsageReply>, Status> {
        let who = self.who(&request)?;
        let mut totals = self.head.tenant_totals().by_tenant;
        for t in self.head.tokens.tenants() {
            totals
                .entry(t.name.clone())
                .or_insert_with(|| pb::TenantUsage {
                    tenant: t.name.clone(),
                    ..Default::default()
                });
        }
        let jobs = self.head.jobs.lock().clone();
        let mut tenants: Vec<pb::TenantUsage> = totals
            .into_values()
            .filter(|u| who.is_admin() || u.tenant == who.tenant())
            .map(|mut u| {
                u.quota = Some(quota_to_pb(&self.head.tokens.quota(&u.tenant)));
                u.jobs = jobs.iter().filter(|j| j.tenant == u.tenant).count() as u64;
                u.jobs_running = jobs
                    .iter()
                    .filter(|j| {
                        j.tenant == u.tenant && j.status() == pb::job_record::Status::Running
                    })
                    .count() as u32;
                u
            })
            .collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Ok(Response::new(pb::TenantUsageReply { tenants }))
    }
}

impl ControlService {
    /// How long `DrainNode` waits for the node to leave by default.
    const DRAIN_WAIT: Duration = Duration::from_secs(600);

    /// Records a job and forgets the logs of all but the most recent jobs.
    fn record(&self, record: pb::JobRecord) {
        let tenant = record.tenant.clone();
        self.head.set_job(record);
        let jobs = self.head.jobs.lock();
        let mut logs = self.head.job_logs.lock();
        // The tenant's jobs with logs, newest first: past its share, the
        // oldest lose them (another tenant's logs are not touched).
        let with_logs: Vec<&bytes::Bytes> = jobs
            .iter()
            .rev()
            .filter(|j| j.tenant == tenant && logs.contains_key(&j.job_id))
            .map(|j| &j.job_id)
            .collect();
        for old in with_logs.into_iter().skip(JOBS_WITH_LOGS) {
            logs.remove(old);
        }
    }
}
