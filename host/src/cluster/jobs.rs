//! Jobs across nodes: the job a forwarded task or actor belongs to, its
//! component (fetched once per node, by digest), and its output, which goes
//! back to the driver's node.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::convert::{id_bytes, job_id, node_id};
use crate::ids::{JobId, NodeId};
use crate::logs::{LogSink, LogSource, Stream};
use crate::runtime::component::{AppComponent, digest};
use crate::runtime::job::{Job, JobSpec, LOCAL_TENANT};

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

impl Cluster {
    pub(crate) fn job_info(&self, job: &Job) -> pb::JobInfo {
        pb::JobInfo {
            job_id: id_bytes(job.id.as_u128()),
            digest: job.app.digest().to_string(),
            namespace: job.namespace.clone(),
            driver_node: id_bytes(job.driver.as_u128()),
            manifest: job.manifest_text.clone(),
            tenant: job.tenant.to_string(),
        }
    }

    /// The job `info` names, created here (with its component fetched from
    /// `from`) the first time work of it arrives.
    pub(crate) async fn ensure_job(
        self: &Arc<Self>,
        from: NodeId,
        info: &pb::JobInfo,
    ) -> Result<Arc<Job>, Status> {
        let id = job_id(&info.job_id)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        if let Some(job) = core.jobs().get(&id) {
            return Ok(job.clone());
        }
        let cell = self.job_cells.entry(id).or_default().clone();
        let job = cell
            .get_or_try_init(|| async {
                let app = self.module(from, &info.digest, &info.tenant).await?;
                let driver = node_id(&info.driver_node)?;
                let logs = Arc::new(DriverLogs {
                    cluster: Arc::downgrade(self),
                    job: id,
                    driver,
                });
                let spec = JobSpec {
                    id,
                    app,
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
            .modules
            .entry(digest_hex.to_string())
            .or_default()
            .clone();
        let app = cell
            .get_or_try_init(|| async {
                let peer = self.peer(from).map_err(|e| Status::unavailable(e.to_string()))?;
                let mut stream = peer
                    .client
                    .clone()
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
        self.modules
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
        let peers: Vec<NodeId> = self
            .view
            .read()
            .values()
            .filter(|v| v.alive && v.id != self.id)
            .map(|v| v.id)
            .collect();
        for node in peers {
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
        self.remember_finished(id);
        self.job_cells.remove(&id);
        if let Some(core) = self.core()
            && let Some((_, job)) = core.jobs().remove(&id)
        {
            core.finish_job(&job);
        }
        Ok(())
    }

    /// Work of a finished job that arrives late is refused.
    pub(crate) fn remember_finished(&self, id: JobId) {
        let mut done = self.finished_jobs.lock();
        if done.len() >= FINISHED_JOBS_KEPT {
            done.pop_front();
        }
        done.push_back(id);
    }

    /// A job ended on this node: what it sent to other nodes is no longer
    /// awaited (their nodes stop it too), and its arguments are released.
    pub(crate) fn drop_job_work(&self, job: JobId) {
        let tasks: Vec<_> = self
            .remote_tasks
            .iter()
            .filter(|t| t.spec_job() == job)
            .map(|t| *t.key())
            .collect();
        for id in tasks {
            if let Some((_, t)) = self.remote_tasks.remove(&id) {
                self.send_to(
                    t.node(),
                    pb::peer_message::Kind::CancelTask(pb::CancelTask {
                        result_id: id_bytes(id.as_u128()),
                    }),
                );
            }
        }
        self.remote_calls.retain(|_, c| c.job != job);
        self.owned_actors
            .retain(|_, o| o.detached() || o.job() != job);
    }
}
