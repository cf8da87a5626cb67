//! Jobs across nodes: the job a forwarded task or actor belongs to, its
//! component (fetched once per node, by digest), and its output, which goes
//! back to the driver's node.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::ids::{JobId, NodeId};
use crate::logs::{LogSink, LogSource, Stream};
use crate::runtime::component::{AppComponent, digest};
use crate::runtime::job::{Job, JobSpec, LOCAL_TENANT};
use crate::wire::{id_bytes, job_id, node_id};

/// Finished jobs each node remembers, to refuse their late work.
const FINISHED_JOBS_KEPT: usize = 10_000;

/// Bytes per chunk of a component transfer.
const MODULE_CHUNK: usize = 1 << 20;

/// Sends a remote job's output lines to its driver's node.
struct DriverLogs {
    cluster: std::sync::Weak<Cluster>,
    job: JobId,
    driver: NodeId,
}

impl LogSink for DriverLogs {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        if let Some(c) = self.cluster.upgrade() {
            let batch = pb::LogBatch {
                job_id: id_bytes(self.job.as_u128()),
                lines: vec![pb::LogLine {
                    prefix: source.prefix.to_string(),
                    stderr: stream == Stream::Stderr,
                    line: bytes::Bytes::copy_from_slice(line),
                }],
            };
            c.send_to(self.driver, pb::peer_message::Kind::Logs(batch));
        }
    }
}

/// The jobs whose work came to this node from others: one creation per
/// job (its component fetched once per digest), and the jobs that ended
/// here, whose late work is refused. Only this module touches them.
#[derive(Default)]
pub(super) struct JobsHere {
    /// Components being fetched from peers, by digest (one fetch each).
    fetches: DashMap<String, Arc<OnceCell<Arc<AppComponent>>>>,
    /// Jobs being created here, by id (one creation each).
    creating: DashMap<JobId, Arc<OnceCell<Arc<Job>>>>,
    /// Jobs that ended here: the newest [`FINISHED_JOBS_KEPT`], oldest first.
    ended: Mutex<Ended>,
}

#[derive(Default)]
struct Ended {
    order: VecDeque<JobId>,
    set: HashSet<JobId>,
}

impl JobsHere {
    /// Remembers that `job` ended here (its late work is refused).
    fn remember_ended(&self, job: JobId) {
        let mut ended = self.ended.lock();
        if !ended.set.insert(job) {
            return;
        }
        ended.order.push_back(job);
        if ended.order.len() > FINISHED_JOBS_KEPT
            && let Some(old) = ended.order.pop_front()
        {
            ended.set.remove(&old);
        }
        drop(ended);
        self.creating.remove(&job);
    }

    fn has_ended(&self, job: JobId) -> bool {
        self.ended.lock().set.contains(&job)
    }
}

impl Cluster {
    pub(crate) fn job_info(&self, job: &Job) -> pb::JobInfo {
        pb::JobInfo {
            job_id: id_bytes(job.id.as_u128()),
            digest: job.app.digest().to_string(),
            namespace: job.namespace.clone(),
            driver_node: id_bytes(job.driver.as_u128()),
            manifest: job.manifest_text.clone(),
            tenant: job.tenant.to_string(),
            components: job
                .parts
                .iter()
                .map(|(name, app)| (name.to_string(), app.digest().to_string()))
                .collect(),
        }
    }

    /// The job `info` names, created here (with its component fetched from
    /// `from`) the first time work of it arrives.
    ///
    /// Work of a job that ended here is refused (a job made again for it
    /// would hold its component and records with nothing to end it), except
    /// a detached actor's, which outlives its job by design (`revive`).
    pub(crate) async fn ensure_job(
        self: &Arc<Self>,
        from: NodeId,
        info: &pb::JobInfo,
        revive: bool,
    ) -> Result<Arc<Job>, Status> {
        let id = job_id(&info.job_id)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        if let Some(job) = core.jobs().get(&id) {
            return Ok(job.clone());
        }
        let ended = || !revive && self.jobs.has_ended(id);
        if ended() {
            return Err(Status::failed_precondition(format!("job {id} has ended")));
        }
        let cell = self.jobs.creating.entry(id).or_default().clone();
        let job = cell
            .get_or_try_init(|| async {
                let app = self.module(from, &info.digest, &info.tenant).await?;
                let mut parts = Vec::with_capacity(info.components.len());
                if info.components.len() > crate::runtime::job::MAX_PARTS {
                    return Err(Status::invalid_argument("too many components"));
                }
                for (name, digest) in &info.components {
                    parts.push((name.clone(), self.module(from, digest, &info.tenant).await?));
                }
                let parts = crate::runtime::job::parts(&parts)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let driver = node_id(&info.driver_node)?;
                let logs = Arc::new(DriverLogs {
                    cluster: Arc::downgrade(self),
                    job: id,
                    driver,
                });
                let spec = JobSpec {
                    id,
                    app,
                    parts,
                    logs,
                    tenant: if info.tenant.is_empty() {
                        LOCAL_TENANT.into()
                    } else {
                        info.tenant.as_str().into()
                    },
                    namespace: info.namespace.clone(),
                    driver,
                    manifest_text: info.manifest.clone(),
                };
                let job = Job::prepare(&core, spec)
                    .await
                    .map_err(|e| Status::failed_precondition(e.to_string()))?;
                if ended() {
                    // It ended while this node prepared it.
                    return Err(Status::failed_precondition(format!("job {id} has ended")));
                }
                core.jobs().insert(id, job.clone());
                Ok::<_, Status>(job)
            })
            .await?
            .clone();
        Ok(job)
    }

    /// The compiled component with `digest`: cached, or fetched from `from`
    /// (one fetch at a time per digest), checked against its digest, and
    /// compiled for `tenant`.
    async fn module(
        &self,
        from: NodeId,
        digest_hex: &str,
        tenant: &str,
    ) -> Result<Arc<AppComponent>, Status> {
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        if let Some(app) = core.engine().cached(digest_hex) {
            return Ok(app);
        }
        let cell = self
            .jobs
            .fetches
            .entry(digest_hex.to_string())
            .or_default()
            .clone();
        let app = cell
            .get_or_try_init(|| async {
                let peer = self.peer(from).map_err(|e| Status::unavailable(e.to_string()))?;
                let mut stream = peer
                    .client()
                    .fetch_module(pb::FetchModuleRequest { digest: digest_hex.to_string() })
                    .await?
                    .into_inner();
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    if bytes.len() + chunk.data.len() > super::MAX_MESSAGE {
                        return Err(Status::resource_exhausted(format!(
                            "the component {digest_hex} is larger than {} bytes",
                            super::MAX_MESSAGE
                        )));
                    }
                    bytes.extend_from_slice(&chunk.data);
                }
                if digest(&bytes) != digest_hex {
                    return Err(Status::data_loss(format!("the component fetched for digest {digest_hex} does not match it")));
                }
                tracing::debug!(digest = %&digest_hex[..12], from = %from.short(), "fetched a component");
                let tenant = if tenant.is_empty() { LOCAL_TENANT } else { tenant };
                core.engine().load_for(&bytes, tenant).await.map_err(|e| Status::invalid_argument(e.to_string()))
            })
            .await
            .cloned();
        // The cell only joins concurrent fetches: once done, the engine
        // keeps the component (within its budgets), not this map.
        self.jobs
            .fetches
            .remove_if(digest_hex, |_, c| Arc::ptr_eq(c, &cell));
        app
    }

    /// Serves `FetchModule`: the component with `digest`, in chunks.
    pub(crate) fn serve_module(
        &self,
        digest_hex: &str,
    ) -> Result<ReceiverStream<Result<pb::ModuleChunk, Status>>, Status> {
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let app = core.engine().cached(digest_hex).ok_or_else(|| {
            Status::not_found(format!(
                "no component with digest {digest_hex} on this node"
            ))
        })?;
        let bytes = app.bytes().clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut offset = 0;
            while offset < bytes.len() {
                let end = (offset + MODULE_CHUNK).min(bytes.len());
                if tx
                    .send(Ok(pb::ModuleChunk {
                        data: bytes.slice(offset..end),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                offset = end;
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    /// Output lines of a job whose driver runs here.
    pub(crate) fn on_logs(&self, batch: pb::LogBatch) -> Result<(), Status> {
        let id = job_id(&batch.job_id)?;
        let Some(job) = self
            .core()
            .and_then(|c| c.jobs().get(&id).map(|j| j.clone()))
        else {
            return Ok(()); // the job ended; late lines are dropped
        };
        for l in batch.lines {
            let source = LogSource {
                prefix: l.prefix.into(),
            };
            let stream = if l.stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            job.logs.line(&source, stream, &l.line);
        }
        Ok(())
    }

    /// The driver of `job` returned: every node stops the job's work.
    pub(crate) fn job_finished(&self, job: JobId) {
        for node in self.members.alive_others(self.id) {
            self.send_to(
                node,
                pb::peer_message::Kind::JobFinished(pb::JobFinished {
                    job_id: id_bytes(job.as_u128()),
                }),
            );
        }
    }

    pub(crate) fn on_job_finished(&self, f: pb::JobFinished) -> Result<(), Status> {
        let id = job_id(&f.job_id)?;
        self.jobs.remember_ended(id);
        if let Some(core) = self.core()
            && let Some((_, job)) = core.jobs().remove(&id)
        {
            core.finish_job(&job);
        }
        Ok(())
    }

    /// `job` ended on this node: its late work is refused.
    pub(super) fn remember_ended(&self, job: JobId) {
        self.jobs.remember_ended(job);
    }

    /// A job ended on this node: what it sent to other nodes is no longer
    /// awaited (their nodes stop it too), and its arguments are released.
    pub(crate) fn drop_job_work(&self, job: JobId) {
        for (id, node) in self.tasks.take_job(job) {
            self.send_to(
                node,
                pb::peer_message::Kind::CancelTask(pb::CancelTask {
                    result_id: id_bytes(id.as_u128()),
                }),
            );
        }
        self.drop_job_actor_work(job);
    }
}
