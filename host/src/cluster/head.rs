//! The head: membership, death detection, the actor directory, jobs.
//!
//! The head keeps what must be agreed cluster-wide and nothing per task:
//! which nodes are alive and what they have (from heartbeats), which actors
//! exist where and under which names, and the jobs submitted to it (whose
//! drivers run on the head's own node).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::head_server::Head;

use super::convert::{actor_id, error_to_pb, id_bytes, node_id};
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};
use crate::logs::{LogSink, LogSource, Stream};

/// Finished jobs the head remembers for `fabric status`.
const JOB_HISTORY: usize = 1000;

struct NodeRecord {
    info: pb::NodeInfo,
    last_seen: Instant,
}

/// The head's state. Also the `Head` gRPC service.
pub struct HeadState {
    node: crate::Node,
    interval: Duration,
    timeout: Duration,
    nodes: Mutex<BTreeMap<NodeId, NodeRecord>>,
    actors: Mutex<HashMap<ActorId, pb::ActorInfo>>,
    names: Mutex<HashMap<(String, String), ActorId>>,
    jobs: Arc<Mutex<Vec<pb::JobRecord>>>,
    /// Calls served, by RPC name.
    rpcs: Mutex<BTreeMap<&'static str, u64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HeadState {
    pub(crate) fn new(node: crate::Node, interval: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(HeadState {
            node,
            interval,
            timeout,
            nodes: Mutex::new(BTreeMap::new()),
            actors: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            jobs: Arc::new(Mutex::new(Vec::new())),
            rpcs: Mutex::new(BTreeMap::new()),
        })
    }

    /// Declares nodes dead once they miss heartbeats for the timeout.
    pub(crate) fn start_death_watch(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let head = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(head.interval.min(Duration::from_millis(250)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let dead: Vec<NodeId> = {
                    let mut nodes = head.nodes.lock().unwrap();
                    nodes
                        .iter_mut()
                        .filter(|(_, r)| {
                            r.info.state() == pb::NodeState::Alive
                                && r.last_seen.elapsed() > head.timeout
                        })
                        .map(|(id, r)| {
                            r.info.set_state(pb::NodeState::Dead);
                            *id
                        })
                        .collect()
                };
                for id in dead {
                    tracing::warn!(node = %id.short(), timeout = ?head.timeout, "node missed its heartbeats: declared dead");
                    head.node_gone(id, "its node died");
                }
            }
        });
    }

    /// Marks the actors of a dead node dead and frees their names.
    fn node_gone(&self, node: NodeId, why: &str) {
        let node_bytes = id_bytes(node.as_u128());
        let mut actors = self.actors.lock().unwrap();
        let mut names = self.names.lock().unwrap();
        for a in actors
            .values_mut()
            .filter(|a| a.node_id == node_bytes && !a.dead)
        {
            a.dead = true;
            a.death = format!("actor {}({}) died: {why}", a.class, hex_short(&a.actor_id));
            names.remove(&(a.namespace.clone(), a.name.clone()));
        }
    }

    fn nodes_pb(&self) -> Vec<pb::NodeInfo> {
        self.nodes
            .lock()
            .unwrap()
            .values()
            .map(|r| {
                let mut info = r.info.clone();
                info.last_seen_ms = r.last_seen.elapsed().as_millis() as u64;
                info
            })
            .collect()
    }

    /// Nodes, jobs and actors, as `fabric status` shows them.
    pub fn cluster_state(&self) -> pb::ClusterStateReply {
        pb::ClusterStateReply {
            nodes: self.nodes_pb(),
            jobs: self.jobs.lock().unwrap().clone(),
            actors: self.actors.lock().unwrap().values().cloned().collect(),
            head_rpcs: self
                .rpcs
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    fn count(&self, rpc: &'static str) {
        *self.rpcs.lock().unwrap().entry(rpc).or_default() += 1;
    }
}

/// Records a job's state (the newest `JOB_HISTORY` are kept).
fn set_job(jobs: &Mutex<Vec<pb::JobRecord>>, record: pb::JobRecord) {
    let mut jobs = jobs.lock().unwrap();
    match jobs.iter_mut().find(|j| j.job_id == record.job_id) {
        Some(j) => *j = record,
        None => jobs.push(record),
    }
    if jobs.len() > JOB_HISTORY {
        let excess = jobs.len() - JOB_HISTORY;
        jobs.drain(..excess);
    }
}

fn hex_short(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Sends a job's output lines down its submit stream.
struct SubmitSink {
    tx: mpsc::UnboundedSender<Result<pb::JobEvent, Status>>,
}

impl LogSink for SubmitSink {
    fn line(&self, source: &LogSource, stream: Stream, line: &[u8]) {
        let log = pb::LogLine {
            prefix: source.prefix.to_string(),
            stderr: stream == Stream::Stderr,
            line: bytes::Bytes::copy_from_slice(line),
        };
        let _ = self.tx.send(Ok(pb::JobEvent {
            kind: Some(pb::job_event::Kind::Log(log)),
        }));
    }
}

#[tonic::async_trait]
impl Head for HeadState {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        self.count("Register");
        let r = request.into_inner();
        let id = node_id(&r.node_id)?;
        let is_head = id == self.node.id();
        let mut info = pb::NodeInfo {
            node_id: r.node_id,
            address: r.address,
            free: r.total.clone(),
            total: r.total,
            labels: r.labels,
            object_store_capacity: r.object_store_capacity,
            is_head,
            ..Default::default()
        };
        info.set_state(pb::NodeState::Alive);
        tracing::info!(node = %id.short(), address = %info.address, "node registered");
        self.nodes.lock().unwrap().insert(
            id,
            NodeRecord {
                info,
                last_seen: Instant::now(),
            },
        );
        Ok(Response::new(pb::RegisterReply {
            nodes: self.nodes_pb(),
            heartbeat_interval_ms: self.interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        self.count("Heartbeat");
        let r = request.into_inner();
        let id = node_id(&r.node_id)?;
        let known = {
            let mut nodes = self.nodes.lock().unwrap();
            match nodes.get_mut(&id) {
                Some(rec) => {
                    // A node declared dead stays dead: its work was already
                    // failed over. It sees itself dead in the reply.
                    if rec.info.state() == pb::NodeState::Alive {
                        rec.last_seen = Instant::now();
                        rec.info.free = r.free;
                        rec.info.queued_tasks = r.queued_tasks;
                        rec.info.running_tasks = r.running_tasks;
                        rec.info.object_store_used = r.object_store_used;
                    }
                    true
                }
                None => false,
            }
        };
        Ok(Response::new(pb::HeartbeatReply {
            nodes: if known { self.nodes_pb() } else { Vec::new() },
            reregister: !known,
        }))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.count("Deregister");
        let id = node_id(&request.into_inner().node_id)?;
        if let Some(rec) = self.nodes.lock().unwrap().get_mut(&id) {
            rec.info.set_state(pb::NodeState::Dead);
        }
        self.node_gone(id, "its node left the cluster");
        tracing::info!(node = %id.short(), "node left");
        Ok(Response::new(pb::Empty {}))
    }

    async fn cluster_state(
        &self,
        _: Request<pb::ClusterStateRequest>,
    ) -> Result<Response<pb::ClusterStateReply>, Status> {
        self.count("ClusterState");
        Ok(Response::new(HeadState::cluster_state(self)))
    }

    async fn register_actor(
        &self,
        request: Request<pb::RegisterActorRequest>,
    ) -> Result<Response<pb::RegisterActorReply>, Status> {
        self.count("RegisterActor");
        let r = request.into_inner();
        let info = r
            .actor
            .ok_or_else(|| Status::invalid_argument("no actor"))?;
        let id = actor_id(&info.actor_id)?;
        use pb::register_actor_reply::Outcome;
        let mut actors = self.actors.lock().unwrap();
        let mut names = self.names.lock().unwrap();
        if !info.name.is_empty() {
            let key = (info.namespace.clone(), info.name.clone());
            if let Some(existing) = names.get(&key).and_then(|a| actors.get(a)) {
                let outcome = if r.get_if_exists {
                    Outcome::Existing(existing.clone())
                } else {
                    let e = FabricError::InvalidArgument(format!(
                        "an actor named `{}` already exists in namespace `{}`",
                        key.1,
                        crate::runtime::job::shown_namespace(&key.0)
                    ));
                    Outcome::Error(error_to_pb(&e))
                };
                return Ok(Response::new(pb::RegisterActorReply {
                    outcome: Some(outcome),
                }));
            }
            names.insert(key, id);
        }
        actors.insert(id, info);
        Ok(Response::new(pb::RegisterActorReply {
            outcome: Some(Outcome::Registered(pb::Empty {})),
        }))
    }

    async fn lookup_actor(
        &self,
        request: Request<pb::LookupActorRequest>,
    ) -> Result<Response<pb::LookupActorReply>, Status> {
        self.count("LookupActor");
        let actors = self.actors.lock().unwrap();
        let found = match request.into_inner().by {
            Some(pb::lookup_actor_request::By::ActorId(id)) => actors.get(&actor_id(&id)?).cloned(),
            Some(pb::lookup_actor_request::By::Name(n)) => self
                .names
                .lock()
                .unwrap()
                .get(&(n.namespace, n.name))
                .and_then(|id| actors.get(id))
                .cloned(),
            None => return Err(Status::invalid_argument("look up by id or by name")),
        };
        Ok(Response::new(pb::LookupActorReply {
            found: found.is_some(),
            actor: found,
        }))
    }

    async fn actor_died(
        &self,
        request: Request<pb::ActorDiedRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.count("ActorDied");
        let r = request.into_inner();
        let id = actor_id(&r.actor_id)?;
        let mut actors = self.actors.lock().unwrap();
        if let Some(a) = actors.get_mut(&id) {
            a.dead = true;
            a.death = r.reason;
            let key = (a.namespace.clone(), a.name.clone());
            let mut names = self.names.lock().unwrap();
            if names.get(&key) == Some(&id) {
                names.remove(&key);
            }
        }
        Ok(Response::new(pb::Empty {}))
    }

    type SubmitJobStream = UnboundedReceiverStream<Result<pb::JobEvent, Status>>;

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<Self::SubmitJobStream>, Status> {
        self.count("SubmitJob");
        let r = request.into_inner();
        let app = self
            .node
            .load(&r.component)
            .await
            .map_err(|e| Status::invalid_argument(format!("cannot load the component: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Arc::new(SubmitSink { tx: tx.clone() });
        let digest = app.digest().to_string();
        let (job_id, running) = self.node.start_job(app, r.args, sink);
        let mut record = pb::JobRecord {
            job_id: id_bytes(job_id.as_u128()),
            digest,
            driver_node: id_bytes(self.node.id().as_u128()),
            started_ms: now_ms(),
            ..Default::default()
        };
        record.set_status(pb::job_record::Status::Running);
        set_job(&self.jobs, record.clone());
        let _ = tx.send(Ok(pb::JobEvent {
            kind: Some(pb::job_event::Kind::Started(pb::job_event::Started {
                job_id: record.job_id.clone(),
            })),
        }));
        let jobs = self.jobs.clone();
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
            set_job(&jobs, record);
            let _ = tx.send(Ok(pb::JobEvent {
                kind: Some(pb::job_event::Kind::Finished(pb::job_event::Finished {
                    ok,
                    error,
                })),
            }));
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}
