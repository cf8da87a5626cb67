//! What the head knows, as the head's own types: nodes, actors, jobs, their
//! states and their output, keyed by typed ids. Protobuf appears only where
//! these cross the wire or the disk (see [`super::wire`]).
//!
//! ```
//! use fabric_host::head::{JobStatus, NodeState};
//! assert!(NodeState::Draining.is_up() && !NodeState::Dead.is_up());
//! assert!(JobStatus::Failed("boom".into()).is_finished());
//! ```

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use crate::ids::{ActorId, JobId, NodeId};
use crate::resources::ResourceSet;

/// Where a node is in its life, as the head sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Alive,
    /// Alive, taking no new work, leaving once its work is done.
    Draining,
    /// Missed its heartbeats, or left: its work was failed over.
    Dead,
}

impl NodeState {
    /// Alive, or draining (which is alive until it leaves).
    pub fn is_up(self) -> bool {
        matches!(self, NodeState::Alive | NodeState::Draining)
    }
}

/// What a node reported in its last heartbeat about its own load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeLoad {
    pub free: ResourceSet,
    pub queued_tasks: u64,
    pub running_tasks: u64,
    pub object_store_used: u64,
    pub resident_bytes: u64,
    pub accounted_bytes: u64,
    /// Live instances now, the most at once, and the node's slots.
    pub live_instances: u64,
    pub peak_instances: u64,
    pub instance_slots: u64,
}

/// One node of the cluster.
#[derive(Clone, Debug)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Where peers reach it (`host:port`).
    pub address: String,
    pub total: ResourceSet,
    pub labels: HashMap<String, String>,
    pub object_store_capacity: u64,
    /// The node this head runs on (a restored record never is).
    pub is_head: bool,
    pub state: NodeState,
    pub load: NodeLoad,
    /// When the head last heard from it (not saved: a restarted head gives
    /// every node a fresh timeout).
    pub last_seen: Instant,
}

/// Where an actor is in its life, as the directory sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActorState {
    Alive,
    /// Its node died and its creator is placing it again: calls wait.
    Restarting,
    /// Dead for good, and why.
    Dead(String),
}

/// One actor in the directory.
#[derive(Clone, Debug, PartialEq)]
pub struct ActorRecord {
    pub id: ActorId,
    pub class: String,
    /// Its name and namespace (empty: unnamed).
    pub name: String,
    pub namespace: String,
    /// The node it runs on.
    pub node: NodeId,
    /// The node that created it (and restarts it when its node dies).
    pub owner: NodeId,
    pub job: JobId,
    pub detached: bool,
    /// The tenant that owns it: only its jobs may find or call it.
    pub tenant: String,
    pub max_restarts: u32,
    pub max_task_retries: u32,
    pub restarts: u32,
    pub state: ActorState,
    /// When the head registered it (Unix milliseconds).
    pub created_unix_ms: u64,
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ActorRecord {
    pub fn is_dead(&self) -> bool {
        matches!(self.state, ActorState::Dead(_))
    }

    /// Its key in the name index, if it has a name.
    pub(crate) fn name_key(&self) -> Option<(String, String)> {
        (!self.name.is_empty()).then(|| (self.namespace.clone(), self.name.clone()))
    }

    /// Marks it dead for `why`.
    pub(crate) fn die(&mut self, why: String) {
        self.state = ActorState::Dead(why);
    }
}

/// How a job ended, or that it has not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    /// Failed, with the error its driver ended with.
    Failed(String),
    /// Someone stopped it.
    Stopped,
}

impl JobStatus {
    pub fn is_finished(&self) -> bool {
        !matches!(self, JobStatus::Running)
    }
}

/// One job submitted to the head.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    pub id: JobId,
    /// The digest of its component.
    pub digest: String,
    /// The node its driver runs on.
    pub driver: NodeId,
    /// When it started (milliseconds since the Unix epoch).
    pub started_ms: u64,
    /// When it ended (0 while it runs).
    pub ended_ms: u64,
    pub tenant: String,
    pub status: JobStatus,
}

/// One line of a job's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Empty for the driver, else e.g. "(square task=1a2b3c4d) ".
    pub prefix: String,
    pub stderr: bool,
    pub line: Bytes,
}

/// What a node holds and has used for one tenant (from its heartbeat).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantLoad {
    pub tenant: String,
    /// CPUs, GPUs and memory its running work holds there.
    pub held: ResourceSet,
    pub object_bytes: u64,
    pub cpu_seconds: f64,
    pub memory_byte_seconds: f64,
    pub object_byte_seconds: f64,
    pub tasks: u64,
    pub actors: u64,
    /// Instances and actors alive there now.
    pub live_instances: u64,
    pub live_actors: u64,
}

/// One change to the head's durable state.
#[derive(Debug)]
pub enum Record {
    Node(NodeRecord),
    Actor(ActorRecord),
    Job(JobRecord),
    /// A job dropped from the history.
    ForgetJob(JobId),
    /// A dead actor dropped from the directory.
    ForgetActor(ActorId),
    /// A placement group (issue 15).
    Group(crate::runtime::groups::GroupInfo),
    /// A removed placement group.
    ForgetGroup(crate::ids::GroupId),
    /// A kept Serve deployment.
    Serve(Box<super::serve_dir::ServeRecord>),
    /// A deleted Serve deployment: its tenant and name.
    ForgetServe(String, String),
}

/// One Serve deployment as one node's ingress runs it now (sent with the
/// node's heartbeat, for the dashboard).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServeLoad {
    pub tenant: String,
    pub name: String,
    /// `None`: any host.
    pub host: Option<String>,
    pub route: String,
    pub stateless: bool,
    pub replicas: u32,
    pub starting: u32,
    pub ongoing: u64,
    pub queued: u64,
    /// Answers so far by status class: 2xx, 3xx, 4xx, 5xx.
    pub requests: [u64; 4],
    /// Upper bounds of the latency buckets holding p50 and p99.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}
