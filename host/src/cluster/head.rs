//! The head: membership, death detection, the actor directory, jobs.
//!
//! The head keeps what must be agreed cluster-wide and nothing per task:
//! which nodes are alive and what they have (from heartbeats), which actors
//! exist where and under which names, and the jobs submitted to it (whose
//! drivers run on the head's own node).
//!
//! With a state file (see [`super::head_store`]) the nodes, actors and jobs
//! survive a restart of the head: a head started again on the same data
//! directory gives every worker it knew one death timeout to heartbeat
//! (the previous head's own node is dead at once: this process replaced
//! it), keeps serving the actor directory (named and detached actors on live
//! workers answer as before), and records the jobs whose drivers it was
//! running as failed.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::head_server::Head;

use super::convert::{actor_id, error_to_pb, id_bytes, node_id};
use super::head_store::{HeadStore, Loaded, Record};
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};

/// Finished jobs the head remembers for `fabric status`, per tenant (one
/// tenant's many jobs do not push another's out).
const JOB_HISTORY: usize = 200;

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
    pub(super) jobs: Arc<Mutex<Vec<pb::JobRecord>>>,
    /// Recent output of the jobs in `jobs`, for `fabric logs`.
    pub(super) job_logs: Mutex<HashMap<bytes::Bytes, Arc<Mutex<JobLog>>>>,
    /// The latest per-tenant loads each node reported.
    loads: Mutex<HashMap<NodeId, Vec<pb::TenantLoad>>>,
    /// Client tokens and tenants.
    pub(super) tokens: Arc<crate::security::Tokens>,
    /// Calls served, by RPC name.
    rpcs: Mutex<BTreeMap<&'static str, u64>>,
    /// Where the state above is saved (none: in memory only).
    store: Option<Arc<HeadStore>>,
    /// Nodes that left by deregistering (rather than dying).
    departed: Mutex<std::collections::HashSet<NodeId>>,
    /// Job slots taken by submissions whose jobs are not recorded yet, by
    /// tenant (see [`super::job_slots`]).
    pub(super) reserved_jobs: Mutex<HashMap<Arc<str>, u32>>,
    /// Each tenant's dead actors, oldest first: the directory keeps the
    /// last [`DEAD_ACTORS_KEPT`] of them (to say why they died), not all.
    dead_actors: Mutex<HashMap<String, std::collections::VecDeque<ActorId>>>,
}

/// Dead actors whose records (and death reasons) the head keeps, per tenant.
const DEAD_ACTORS_KEPT: usize = 1000;

/// Lines of one job's output kept at the head.
const JOB_LOG_LINES: usize = 10_000;
/// Bytes of one job's output kept at the head.
const JOB_LOG_BYTES: usize = 1 << 20;
/// Jobs whose output the head keeps: each tenant's most recent.
pub(super) const JOBS_WITH_LOGS: usize = 20;

/// The most recent output of one job (at most [`JOB_LOG_LINES`] lines and
/// [`JOB_LOG_BYTES`] bytes: older lines are dropped and counted).
#[derive(Default)]
pub(super) struct JobLog {
    pub lines: std::collections::VecDeque<pb::LogLine>,
    pub dropped: u64,
    bytes: usize,
}

impl JobLog {
    pub(super) fn push(&mut self, line: pb::LogLine) {
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

impl HeadState {
    pub(crate) fn new(
        node: crate::Node,
        interval: Duration,
        timeout: Duration,
        tokens: Arc<crate::security::Tokens>,
        restored: Option<(Arc<HeadStore>, Loaded)>,
    ) -> Arc<Self> {
        let (store, loaded) = match restored {
            Some((s, l)) => (Some(s), l),
            None => (None, Loaded::default()),
        };
        let head = Arc::new(HeadState {
            node,
            job_logs: Mutex::new(HashMap::new()),
            loads: Mutex::new(HashMap::new()),
            tokens,
            interval,
            timeout,
            nodes: Mutex::new(BTreeMap::new()),
            actors: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            jobs: Arc::new(Mutex::new(Vec::new())),
            rpcs: Mutex::new(BTreeMap::new()),
            store,
            departed: Mutex::new(Default::default()),
            reserved_jobs: Mutex::new(HashMap::new()),
            dead_actors: Mutex::new(HashMap::new()),
        });
        head.restore(loaded);
        head
    }

    /// Takes back the state a previous run of the head saved.
    fn restore(&self, loaded: Loaded) {
        let (n_nodes, n_actors, n_jobs) =
            (loaded.nodes.len(), loaded.actors.len(), loaded.jobs.len());
        if n_nodes + n_actors + n_jobs == 0 {
            return;
        }
        let mut nodes = self.nodes.lock();
        let mut old_heads = Vec::new();
        for mut info in loaded.nodes {
            let Ok(id) = node_id(&info.node_id) else {
                continue;
            };
            if info.is_head && is_up(info.state()) {
                // The head that saved this state ran on this data directory
                // and this address: its process is gone (this one replaced
                // it), so it is dead now, not in a death timeout (peers
                // would send it work meanwhile, and reach this process).
                info.set_state(pb::NodeState::Dead);
                old_heads.push(id);
            }
            info.is_head = false;
            nodes.insert(
                id,
                NodeRecord {
                    info,
                    last_seen: Instant::now(),
                },
            );
        }
        drop(nodes);
        let mut dead = Vec::new();
        let mut actors = self.actors.lock();
        let mut names = self.names.lock();
        for info in loaded.actors {
            let Ok(id) = actor_id(&info.actor_id) else {
                continue;
            };
            if !info.dead && !info.name.is_empty() {
                names.insert((info.namespace.clone(), info.name.clone()), id);
            }
            if info.dead {
                dead.push((info.tenant.clone(), id));
            }
            actors.insert(id, info);
        }
        drop((actors, names));
        let forgotten: Vec<Record> = dead
            .into_iter()
            .flat_map(|(tenant, id)| self.forget_old_dead(&tenant, id))
            .collect();
        self.save_later(forgotten);
        let mut failed = Vec::new();
        let mut jobs = loaded.jobs;
        jobs.sort_by_key(|j| j.started_ms);
        for j in &mut jobs {
            if j.status() == pb::job_record::Status::Running {
                // Its driver ran in the head's process, which is gone.
                j.set_status(pb::job_record::Status::Failed);
                j.error = "the head stopped while the job ran".into();
                failed.push(Record::Job(j.clone()));
            }
        }
        *self.jobs.lock() = jobs;
        self.save_later(failed);
        for id in old_heads {
            self.save_node(id);
            self.node_gone(id, "the head it ran on stopped");
        }
        tracing::info!(
            nodes = n_nodes,
            actors = n_actors,
            jobs = n_jobs,
            "restored the head's state"
        );
    }

    /// Saves `records` soon (in order with every other save).
    fn save_later(&self, records: Vec<Record>) {
        if let Some(s) = &self.store {
            s.save_later(records);
        }
    }

    /// Saves `records` before the caller answers anyone.
    async fn save(&self, records: Vec<Record>) -> Result<(), Status> {
        match &self.store {
            Some(s) => s
                .save(records)
                .await
                .map_err(|e| Status::unavailable(format!("the head could not save: {e}"))),
            None => Ok(()),
        }
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
                    let mut nodes = head.nodes.lock();
                    nodes
                        .iter_mut()
                        .filter(|(_, r)| {
                            is_up(r.info.state()) && r.last_seen.elapsed() > head.timeout
                        })
                        .map(|(id, r)| {
                            r.info.set_state(pb::NodeState::Dead);
                            *id
                        })
                        .collect()
                };
                for id in dead {
                    tracing::warn!(node = %id.short(), timeout = ?head.timeout, "node missed its heartbeats: declared dead");
                    head.save_node(id);
                    head.node_gone(id, "its node died");
                }
            }
        });
    }

    /// The actors of a dead node: those with restarts left whose creator
    /// lives are *restarting* (they keep their names; the creator places
    /// them again), the others are dead and free their names. Actors that
    /// the dead node created and that were waiting for it to restart them
    /// are dead too.
    fn node_gone(&self, node: NodeId, why: &str) {
        let node_bytes = id_bytes(node.as_u128());
        let alive = self.alive_nodes();
        let owner_alive = |a: &pb::ActorInfo| {
            node_id(&a.owner_node_id).is_ok_and(|o| o != node && alive.contains(&o))
        };
        let mut actors = self.actors.lock();
        let mut names = self.names.lock();
        let mut changed = Vec::new();
        for a in actors.values_mut().filter(|a| !a.dead) {
            let hosted = a.node_id == node_bytes;
            let orphaned = a.restarting && a.owner_node_id == node_bytes;
            if !hosted && !orphaned {
                continue;
            }
            if hosted && a.restarts < a.max_restarts && owner_alive(a) {
                a.restarting = true;
                changed.push(Record::Actor(a.clone()));
                continue;
            }
            a.dead = true;
            a.restarting = false;
            a.death = if orphaned {
                format!(
                    "actor {}({}) died: its node died and so did the node that would restart it",
                    a.class,
                    hex_short(&a.actor_id)
                )
            } else {
                format!("actor {}({}) died: {why}", a.class, hex_short(&a.actor_id))
            };
            let key = (a.namespace.clone(), a.name.clone());
            if names
                .get(&key)
                .is_some_and(|id| id_bytes(id.as_u128()) == a.actor_id)
            {
                names.remove(&key);
            }
            changed.push(Record::Actor(a.clone()));
        }
        drop((actors, names));
        self.save_later(changed);
    }

    /// Saves a node's record (its address and state).
    fn save_node(&self, id: NodeId) {
        let info = self.nodes.lock().get(&id).map(|r| r.info.clone());
        if let Some(info) = info {
            self.save_later(vec![Record::Node(info)]);
        }
    }

    fn nodes_pb(&self) -> Vec<pb::NodeInfo> {
        self.nodes
            .lock()
            .values()
            .map(|r| {
                let mut info = r.info.clone();
                info.last_seen_ms = r.last_seen.elapsed().as_millis() as u64;
                info
            })
            .collect()
    }

    pub(super) fn node(&self) -> &crate::Node {
        &self.node
    }

    /// Nodes, jobs and actors, as `fabric status` shows them.
    pub fn cluster_state(&self) -> pb::ClusterStateReply {
        pb::ClusterStateReply {
            nodes: self.nodes_pb(),
            jobs: self.jobs.lock().clone(),
            actors: self.actors.lock().values().cloned().collect(),
            head_rpcs: self
                .rpcs
                .lock()
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    fn alive_nodes(&self) -> std::collections::HashSet<NodeId> {
        self.nodes
            .lock()
            .iter()
            .filter(|(_, r)| is_up(r.info.state()))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Per tenant, usage summed over every node (live nodes' holdings only).
    pub(super) fn tenant_totals(&self) -> super::quotas::Totals {
        let alive = self.alive_nodes();
        let loads = self.loads.lock();
        super::quotas::totals(loads.iter().flat_map(|(n, ls)| {
            let alive = alive.contains(n);
            ls.iter().map(move |l| (alive, l))
        }))
    }

    /// The quota'd tenants' limits for node `me`.
    fn limits_for(&self, me: NodeId) -> Vec<pb::TenantLimit> {
        let quotas: Vec<(String, crate::quota::Quota)> = self
            .tokens
            .tenants()
            .into_iter()
            .map(|t| (t.name, t.quota))
            .collect();
        if quotas.iter().all(|(_, q)| q.is_unlimited()) {
            return Vec::new();
        }
        let alive = self.alive_nodes();
        let loads = self.loads.lock();
        let others = loads
            .iter()
            .filter(|(n, _)| **n != me && alive.contains(n))
            .flat_map(|(_, ls)| ls.iter());
        super::quotas::limits_for(&quotas, others)
    }

    /// A restarting actor's creator placed it again: its entry moves to
    /// the new node (keeping its name). Only an actor whose node died, and
    /// only its creator, may be moved; a killed actor stays dead.
    fn move_restarted(&self, id: ActorId, to: pb::ActorInfo) -> Result<pb::ActorInfo, FabricError> {
        let alive = self.alive_nodes();
        let mut actors = self.actors.lock();
        let Some(a) = actors.get_mut(&id) else {
            return Err(FabricError::NotFound(format!("actor {id}")));
        };
        if a.dead {
            return Err(FabricError::ActorDied(a.death.clone()));
        }
        if a.owner_node_id != to.owner_node_id {
            return Err(FabricError::InvalidArgument(format!(
                "only the node that created actor {id} may restart it"
            )));
        }
        let host_alive = node_id(&a.node_id).is_ok_and(|n| alive.contains(&n));
        if !a.restarting && host_alive {
            return Err(FabricError::InvalidArgument(format!(
                "actor {id} is alive on its node"
            )));
        }
        a.node_id = to.node_id;
        a.restarts = to.restarts;
        a.restarting = false;
        Ok(a.clone())
    }

    pub(super) fn count(&self, rpc: &'static str) {
        *self.rpcs.lock().entry(rpc).or_default() += 1;
    }
}

impl HeadState {
    /// Records (and saves) a job's state; each tenant's newest
    /// `JOB_HISTORY` finished jobs are kept (running ones always are).
    pub(super) fn set_job(&self, record: pb::JobRecord) {
        let mut saved = vec![Record::Job(record.clone())];
        {
            let mut jobs = self.jobs.lock();
            let tenant = record.tenant.clone();
            match jobs.iter_mut().find(|j| j.job_id == record.job_id) {
                Some(j) => *j = record,
                None => jobs.push(record),
            }
            let finished = |j: &pb::JobRecord| {
                j.tenant == tenant && j.status() != pb::job_record::Status::Running
            };
            let mut excess = jobs
                .iter()
                .filter(|j| finished(j))
                .count()
                .saturating_sub(JOB_HISTORY);
            // Oldest first: the list is in the order jobs started.
            jobs.retain(|j| {
                if excess > 0 && finished(j) {
                    excess -= 1;
                    saved.push(Record::ForgetJob(j.job_id.clone()));
                    false
                } else {
                    true
                }
            });
            let mut logs = self.job_logs.lock();
            for r in &saved {
                if let Record::ForgetJob(id) = r {
                    logs.remove(id);
                }
            }
        }
        self.save_later(saved);
    }
}

/// Alive, or draining (which is alive until it leaves).
fn is_up(state: pb::NodeState) -> bool {
    matches!(state, pb::NodeState::Alive | pb::NodeState::Draining)
}

impl HeadState {
    /// The live node whose id is `id`, or the only one whose id starts with
    /// it (hex).
    pub(super) fn find_node(&self, id: &str) -> Result<NodeId, Status> {
        let id = id.trim().to_ascii_lowercase();
        if id.is_empty() {
            return Err(Status::invalid_argument(
                "name a node (its id or a prefix of it)",
            ));
        }
        let nodes = self.nodes.lock();
        let matches: Vec<NodeId> = nodes
            .iter()
            .filter(|(n, r)| is_up(r.info.state()) && n.to_string().starts_with(&id))
            .map(|(n, _)| *n)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(Status::not_found(format!(
                "no live node has an id starting with `{id}`"
            ))),
            _ => Err(Status::invalid_argument(format!(
                "{} live nodes have ids starting with `{id}`: give more of it",
                matches.len()
            ))),
        }
    }

    /// Marks a worker draining: heartbeats tell every node (it included).
    pub(super) fn start_draining(&self, id: NodeId) -> Result<(), Status> {
        if id == self.node.id() {
            return Err(Status::failed_precondition(
                "the head cannot be drained: it runs the jobs' drivers and the cluster's directory",
            ));
        }
        let info = {
            let mut nodes = self.nodes.lock();
            let rec = nodes
                .get_mut(&id)
                .filter(|r| is_up(r.info.state()))
                .ok_or_else(|| Status::not_found(format!("node {id} is not alive")))?;
            rec.info.set_state(pb::NodeState::Draining);
            rec.info.clone()
        };
        tracing::info!(node = %id.short(), "draining a node");
        self.save_later(vec![Record::Node(info)]);
        Ok(())
    }

    /// Whether the node is gone: `Some(true)` if it left (deregistered),
    /// `Some(false)` if it died, `None` while it is up.
    pub(super) fn has_left(&self, id: NodeId) -> Option<bool> {
        let up = self
            .nodes
            .lock()
            .get(&id)
            .is_some_and(|r| is_up(r.info.state()));
        (!up).then(|| self.departed.lock().contains(&id))
    }
}

fn hex_short(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
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
        self.nodes.lock().insert(
            id,
            NodeRecord {
                info: info.clone(),
                last_seen: Instant::now(),
            },
        );
        self.save(vec![Record::Node(info)]).await?;
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
            let mut nodes = self.nodes.lock();
            match nodes.get_mut(&id) {
                Some(rec) => {
                    // A node declared dead stays dead: its work was already
                    // failed over. It sees itself dead in the reply.
                    if is_up(rec.info.state()) {
                        rec.last_seen = Instant::now();
                        rec.info.free = r.free;
                        rec.info.queued_tasks = r.queued_tasks;
                        rec.info.running_tasks = r.running_tasks;
                        rec.info.object_store_used = r.object_store_used;
                        rec.info.resident_bytes = r.resident_bytes;
                        rec.info.accounted_bytes = r.accounted_bytes;
                    }
                    true
                }
                None => false,
            }
        };
        if known {
            self.loads.lock().insert(id, r.tenants);
        }
        Ok(Response::new(pb::HeartbeatReply {
            nodes: if known { self.nodes_pb() } else { Vec::new() },
            reregister: !known,
            tenants: if known {
                self.limits_for(id)
            } else {
                Vec::new()
            },
        }))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.count("Deregister");
        let id = node_id(&request.into_inner().node_id)?;
        if let Some(rec) = self.nodes.lock().get_mut(&id) {
            rec.info.set_state(pb::NodeState::Dead);
        }
        self.departed.lock().insert(id);
        self.save_node(id);
        self.node_gone(id, "its node left the cluster");
        tracing::info!(node = %id.short(), "node left");
        Ok(Response::new(pb::Empty {}))
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
        if r.restart {
            let outcome = match self.move_restarted(id, info) {
                Ok(moved) => {
                    self.save(vec![Record::Actor(moved)]).await?;
                    Outcome::Registered(pb::Empty {})
                }
                Err(e) => Outcome::Error(error_to_pb(&e)),
            };
            return Ok(Response::new(pb::RegisterActorReply {
                outcome: Some(outcome),
            }));
        }
        let existing = {
            let mut actors = self.actors.lock();
            let mut names = self.names.lock();
            let key = (info.namespace.clone(), info.name.clone());
            match names.get(&key).and_then(|a| actors.get(a)) {
                Some(existing) if !info.name.is_empty() => Some((key, existing.clone())),
                _ => {
                    if !info.name.is_empty() {
                        names.insert(key, id);
                    }
                    actors.insert(id, info.clone());
                    None
                }
            }
        };
        if let Some((key, existing)) = existing {
            let outcome = if r.get_if_exists {
                Outcome::Existing(existing)
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
        // Confirmed only once saved: a head that restarts still knows it.
        self.save(vec![Record::Actor(info)]).await?;
        Ok(Response::new(pb::RegisterActorReply {
            outcome: Some(Outcome::Registered(pb::Empty {})),
        }))
    }

    async fn lookup_actor(
        &self,
        request: Request<pb::LookupActorRequest>,
    ) -> Result<Response<pb::LookupActorReply>, Status> {
        self.count("LookupActor");
        let actors = self.actors.lock();
        let found = match request.into_inner().by {
            Some(pb::lookup_actor_request::By::ActorId(id)) => actors.get(&actor_id(&id)?).cloned(),
            Some(pb::lookup_actor_request::By::Name(n)) => self
                .names
                .lock()
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
        let died = {
            let mut actors = self.actors.lock();
            actors.get_mut(&id).map(|a| {
                a.dead = true;
                a.restarting = false;
                a.death = r.reason;
                let key = (a.namespace.clone(), a.name.clone());
                let mut names = self.names.lock();
                if names.get(&key) == Some(&id) {
                    names.remove(&key);
                }
                a.clone()
            })
        };
        if let Some(a) = died {
            let mut saved = vec![Record::Actor(a.clone())];
            saved.extend(self.forget_old_dead(&a.tenant, id));
            self.save(saved).await?;
        }
        Ok(Response::new(pb::Empty {}))
    }
}

impl HeadState {
    /// Notes that `id` (of `tenant`) died; forgets that tenant's oldest dead
    /// actors beyond [`DEAD_ACTORS_KEPT`], returning what to save.
    fn forget_old_dead(&self, tenant: &str, id: ActorId) -> Vec<Record> {
        let mut dead = self.dead_actors.lock();
        let list = dead.entry(tenant.to_string()).or_default();
        if !list.contains(&id) {
            list.push_back(id);
        }
        let mut forgotten = Vec::new();
        while list.len() > DEAD_ACTORS_KEPT {
            let Some(old) = list.pop_front() else { break };
            let mut actors = self.actors.lock();
            if actors.get(&old).is_some_and(|a| a.dead) {
                actors.remove(&old);
                forgotten.push(Record::ForgetActor(id_bytes(old.as_u128())));
            }
        }
        forgotten
    }
}
