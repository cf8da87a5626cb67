//! The `Control` service: what clients (the `fabric` CLI) call on the head,
//! a thin adapter over [`Head`].
//!
//! Every call needs a token (checked by the [`super::gate`] before the body
//! is read). A tenant's token runs jobs as that tenant and sees only that
//! tenant's jobs, logs, actors and usage: another tenant's job id gives
//! not-found, exactly as an unknown one. The admin token sees everything
//! and manages tenants.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::control_server::Control;

use super::gate::{Caller, Ticket};
use super::records::LogLine;
use super::submit::{Output, Submission};
use super::{Head, wire};
use crate::security::Principal;
use crate::wire::{error_to_pb, id_bytes, job_id, quota_from_pb};

/// The head's client-facing service.
pub(crate) struct ControlService {
    pub head: Arc<Head>,
}

/// How long `DrainNode` waits for the node to leave by default.
const DRAIN_WAIT: Duration = Duration::from_secs(600);

impl ControlService {
    /// The caller, as the gate found it (or, without a gate, from the
    /// request's token).
    fn who<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        match request.extensions().get::<Caller>() {
            Some(Caller(p)) => Ok(p.clone()),
            None => self.head.tokens().authorize(request),
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

fn event(kind: pb::job_event::Kind) -> pb::JobEvent {
    pb::JobEvent { kind: Some(kind) }
}

/// A job id from a request; a malformed one is as unknown as a missing one.
fn known_job(bytes: &[u8]) -> Result<crate::ids::JobId, Status> {
    job_id(bytes).map_err(|_| Status::not_found("no such job"))
}

/// How often a submitter hears of its job's progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Sends job `id`'s progress to its submitter while both last.
fn send_progress(
    head: Arc<Head>,
    id: crate::ids::JobId,
    tx: mpsc::UnboundedSender<Result<pb::JobEvent, Status>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tick.tick().await;
            if head.job_record(id).is_none_or(|j| j.status.is_finished()) {
                return;
            }
            // None: its driver is not running yet (still loading).
            let Some(p) = head.job_progress(id) else {
                continue;
            };
            let progress = pb::job_event::Progress {
                submitted: p.submitted,
                succeeded: p.ended() - p.failed(),
                failed: p.failed(),
            };
            let kind = pb::job_event::Kind::Progress(progress);
            if tx.send(Ok(event(kind))).is_err() {
                return; // the submitter went away
            }
        }
    });
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn cluster_state(
        &self,
        request: Request<pb::ClusterStateRequest>,
    ) -> Result<Response<pb::ClusterStateReply>, Status> {
        let who = self.who(&request)?;
        let tenant = match &who {
            Principal::Tenant(t) => Some(t.to_string()),
            _ => None,
        };
        let visible = |t: &str| tenant.as_deref().is_none_or(|mine| mine == t);
        let head = &self.head;
        Ok(Response::new(pb::ClusterStateReply {
            nodes: head.nodes().iter().map(wire::node_to_pb).collect(),
            jobs: head
                .jobs()
                .iter()
                .filter(|j| visible(&j.tenant))
                .map(wire::job_to_pb)
                .collect(),
            actors: head
                .actors()
                .iter()
                .filter(|a| visible(&a.tenant))
                .map(wire::actor_to_pb)
                .collect(),
            head_rpcs: match tenant {
                Some(_) => Default::default(),
                None => head.rpc_counts().into_iter().collect(),
            },
        }))
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
        let job = Submission {
            tenant,
            component: r.component,
            args: r.args,
            manifest: r.manifest,
            components: r
                .components
                .into_iter()
                .map(|c| (c.name, c.component))
                .collect(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let lines = tx.clone();
        let sink: Output = Arc::new(move |l: &LogLine| {
            let log = pb::job_event::Kind::Log(wire::log_line_to_pb(l));
            let _ = lines.send(Ok(event(log)));
        });
        let announce = tx.clone();
        let mut started_id = None;
        let started = self
            .head
            .submit(slot, job, sink, |id| {
                started_id = Some(id);
                let started = pb::job_event::Started {
                    job_id: id_bytes(id.as_u128()),
                };
                let _ = announce.send(Ok(event(pb::job_event::Kind::Started(started))));
            })
            .await?;
        if let Some(id) = started_id {
            send_progress(self.head.clone(), id, tx.clone());
        }
        tokio::spawn(async move {
            let result = started.ended.await.unwrap_or_else(|_| {
                Err(crate::error::FabricError::failure(
                    "driver",
                    crate::error::FailureKind::System,
                    "the job's driver went away",
                ))
            });
            let finished = pb::job_event::Finished {
                ok: result.is_ok(),
                error: result.as_ref().err().map(error_to_pb),
            };
            let _ = tx.send(Ok(event(pb::job_event::Kind::Finished(finished))));
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }

    async fn job_logs(
        &self,
        request: Request<pb::JobLogsRequest>,
    ) -> Result<Response<pb::JobLogsReply>, Status> {
        let who = self.who(&request)?;
        let id = known_job(&request.into_inner().job_id)?;
        let tenant = (!who.is_admin()).then(|| who.tenant());
        let (lines, dropped) = self
            .head
            .job_output(id, tenant)
            .ok_or_else(|| Status::not_found("no such job"))?;
        Ok(Response::new(pb::JobLogsReply {
            lines: lines.iter().map(wire::log_line_to_pb).collect(),
            dropped,
        }))
    }

    async fn stop_job(
        &self,
        request: Request<pb::JobRequest>,
    ) -> Result<Response<pb::JobRecord>, Status> {
        let who = self.who(&request)?;
        self.head.count("StopJob");
        let id = known_job(&request.into_inner().job_id)?;
        let job = self.head.stop_job(id, &who).await?;
        Ok(Response::new(wire::job_to_pb(&job)))
    }

    async fn delete_job(
        &self,
        request: Request<pb::JobRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let who = self.who(&request)?;
        self.head.count("DeleteJob");
        let id = known_job(&request.into_inner().job_id)?;
        self.head.delete_job(id, &who).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn job_tasks(
        &self,
        request: Request<pb::JobRequest>,
    ) -> Result<Response<pb::JobTasksReply>, Status> {
        let who = self.who(&request)?;
        self.head.count("JobTasks");
        let id = known_job(&request.into_inner().job_id)?;
        let reply = self.head.job_tasks(id, &who, |tasks| pb::JobTasksReply {
            job: Some(wire::job_to_pb(&tasks.job)),
            nodes: tasks.nodes.iter().map(crate::task_wire::to_pb).collect(),
        });
        Ok(Response::new(reply.await?))
    }

    async fn add_tenant(
        &self,
        request: Request<pb::AddTenantRequest>,
    ) -> Result<Response<pb::AddTenantReply>, Status> {
        self.admin(&request)?;
        let r = request.into_inner();
        let token = self
            .head
            .tokens()
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
            .tokens()
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
            0 => DRAIN_WAIT,
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
        let tenants = self.head.tenant_usage(&who);
        Ok(Response::new(pb::TenantUsageReply {
            tenants: tenants.iter().map(wire::usage_to_pb).collect(),
        }))
    }

    async fn serve_deploy(
        &self,
        request: Request<pb::ServeDeployRequest>,
    ) -> Result<Response<pb::ServeListReply>, Status> {
        let who = self.who(&request)?;
        self.head.count("ServeDeploy");
        // Counted among the tenant's submissions until it is kept or refused.
        let _receiving = request
            .extensions()
            .get::<super::gate::Receiving>()
            .cloned();
        let reply = super::serve_rpc::deploy(&self.head, &who, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn serve_delete(
        &self,
        request: Request<pb::ServeDeleteRequest>,
    ) -> Result<Response<pb::ServeListReply>, Status> {
        let who = self.who(&request)?;
        self.head.count("ServeDelete");
        let reply = super::serve_rpc::delete(&self.head, &who, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn serve_list(
        &self,
        request: Request<pb::ServeListRequest>,
    ) -> Result<Response<pb::ServeListReply>, Status> {
        let who = self.who(&request)?;
        Ok(Response::new(super::serve_rpc::list(&self.head, &who)))
    }
}
