//! Actors across nodes: placed once, registered with the head's directory,
//! called directly on the node that hosts them.
//!
//! Restarts after a node death are run by the node that created the actor
//! (its *owner*, as in Ray). For an actor with `max_restarts`, the owner
//! keeps the spec, the restart count and the last checkpoint the actor saved
//! (the hosting node sends it there before the result of the call that saved
//! it). When the hosting node dies, the head marks the actor *restarting*
//! (keeping its name); the owner places it again, moves its directory entry
//! to the new node and creates it there from the checkpoint. Callers wait
//! for a restarting actor, and calls that were in flight on the dead node are
//! sent again up to `max_task_retries` times (so such a call may run twice).
//! If the owner itself dies, its actors are not restarted.

mod calls;
mod create;
mod hosted;
mod restart;
mod watches;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use wasmfabric_proto::v1 as pb;

use crate::ids::{ActorId, JobId, NodeId, ObjectId};
use crate::placement::Strategy;
use crate::runtime::actor::{ActorCall, ActorSpec};
use crate::wire::{id_bytes, node_id};

/// The most actor places a node caches; past it the cache starts afresh
/// (each is looked up again in the head's directory when next needed).
const MAX_PLACES: usize = 100_000;

/// How long a call for an actor this node is still creating may wait.
const EARLY_CALL_WAIT: Duration = Duration::from_secs(30);

/// An actor call this node sent to another node, until its result comes.
/// It keeps the call (and so its arguments referenced) to send it again if
/// the node dies and the actor restarts.
struct RemoteCall {
    node: NodeId,
    job: JobId,
    actor: ActorId,
    tenant: Arc<str>,
    call: ActorCall,
    /// A watch whose node could not be reached: it waits here (an answer
    /// may still come) until `watches.rs` settles it.
    lost: bool,
    /// Times it may still be sent again after a node death.
    retries_left: u32,
}

/// Where an actor lives, which tenant owns it, and how often a call lost
/// with its node is sent again.
#[derive(Clone, Debug)]
struct ActorPlace {
    node: NodeId,
    tenant: Arc<str>,
    max_task_retries: u32,
}

impl ActorPlace {
    fn of(info: &pb::ActorInfo) -> Option<ActorPlace> {
        Some(ActorPlace {
            node: node_id(&info.node_id).ok()?,
            tenant: info.tenant.as_str().into(),
            max_task_retries: info.max_task_retries,
        })
    }
}

/// A restartable actor this node created on another node: what restarting
/// it elsewhere needs.
struct OwnedActor {
    spec: ActorSpec,
    strategy: Strategy,
    /// Where it runs now.
    node: NodeId,
    restarts: u32,
    checkpoint: Option<Bytes>,
}

fn actor_info(spec: &ActorSpec, node: NodeId, owner: NodeId) -> pb::ActorInfo {
    let (namespace, name) = spec.name.clone().unwrap_or_default();
    pb::ActorInfo {
        actor_id: id_bytes(spec.id.as_u128()),
        class: spec.class.to_string(),
        name,
        namespace,
        node_id: id_bytes(node.as_u128()),
        job_id: id_bytes(spec.job.id.as_u128()),
        detached: spec.detached,
        dead: false,
        death: String::new(),
        tenant: spec.job.tenant.to_string(),
        owner_node_id: id_bytes(owner.as_u128()),
        max_restarts: spec.policy.max_restarts,
        max_task_retries: spec.policy.max_task_retries,
        restarts: spec.restarts,
        restarting: false,
        // The head stamps it.
        created_unix_ms: 0,
    }
}

/// Actors as they cross this node: where they live, the calls sent to them,
/// those this node must restart, and calls waiting for an actor being
/// created here. Only this module (and its files) touches the maps.
#[derive(Default)]
pub(super) struct RemoteActors {
    /// Where actors live and whose they are (a cache of the head's directory).
    places: DashMap<ActorId, ActorPlace>,
    /// Calls this node sent to actors on other nodes, by result id.
    calls: DashMap<ObjectId, RemoteCall>,
    /// Restartable actors this node created on other nodes.
    owned: DashMap<ActorId, OwnedActor>,
    /// Calls that arrived for actors this node is still creating.
    early: DashMap<ActorId, Vec<ActorCall>>,
    /// The result ids of the watches among `calls` (swept for watches
    /// nobody waits on, see `watches.rs`).
    watching: DashMap<ObjectId, ()>,
    /// Nodes whose lost watches a task is settling.
    rewatching: DashMap<NodeId, ()>,
}

impl RemoteActors {
    /// Caches where actor `id` lives.
    fn remember_place(&self, id: ActorId, place: ActorPlace) {
        if self.places.len() >= MAX_PLACES && !self.places.contains_key(&id) {
            tracing::debug!(
                places = MAX_PLACES,
                "the cache of actor places is full: starting afresh"
            );
            self.places.clear();
        }
        self.places.insert(id, place);
    }

    /// The node a call this node sent (by its result id) went to.
    pub(super) fn call_sent_to(&self, result: ObjectId) -> Option<NodeId> {
        self.calls.get(&result).map(|c| c.node)
    }

    /// `node` died: the actors cached there are looked up again.
    pub(super) fn forget_places_on(&self, node: NodeId) {
        self.places.retain(|_, p| p.node != node);
    }

    /// `job` ended here: its calls are no longer awaited, and its actors
    /// (but detached ones) are not restarted. Returns its watches (their
    /// actors' nodes are told to drop them).
    fn drop_job(&self, job: JobId) -> Vec<(ObjectId, RemoteCall)> {
        let watches: Vec<ObjectId> = self
            .calls
            .iter()
            .filter(|c| c.job == job && c.call.is_watch())
            .map(|c| *c.key())
            .collect();
        let dropped = watches
            .into_iter()
            .filter_map(|id| self.calls.remove(&id))
            .collect();
        self.calls.retain(|_, c| c.job != job);
        self.owned
            .retain(|_, o| o.spec.detached || o.spec.job.id != job);
        dropped
    }
}

/// Where an actor created from `spec` on `node` is, for the cache.
fn place_of(spec: &ActorSpec, node: NodeId) -> ActorPlace {
    ActorPlace {
        node,
        tenant: spec.job.tenant.clone(),
        max_task_retries: spec.policy.max_task_retries,
    }
}
