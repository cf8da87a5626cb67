//! Membership: registering with the head, heartbeats, and this node's view
//! of the others (what they have, what is free, who died).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::RwLock;

use tokio::sync::watch;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::{FabricError, NodeError};
use crate::ids::NodeId;
use crate::placement::Candidate;
use crate::resources::ResourceSet;
use crate::wire::{node_id, resources_from_pb, resources_to_pb};

/// The most a node waits for a peer's free resources to come in a view
/// before it forgets what it sent that peer, whatever the head says.
const MAX_PACED: Duration = Duration::from_secs(10);

/// Tasks a node may be sent beyond its free resources, in multiples of its
/// total: keeps it busy between heartbeats.
const QUEUE_ALLOWANCE: i64 = 2;

/// A node as this node sees it.
#[derive(Clone, Debug)]
pub struct PeerView {
    pub id: NodeId,
    pub address: String,
    pub total: ResourceSet,
    /// Free resources at its last heartbeat.
    pub free: ResourceSet,
    pub labels: HashMap<String, String>,
    /// Alive (draining nodes included).
    pub alive: bool,
    /// Leaving: it takes no new work.
    pub draining: bool,
    pub is_head: bool,
}

impl PeerView {
    fn from_pb(n: &pb::NodeInfo) -> Option<Self> {
        Some(PeerView {
            id: node_id(&n.node_id).ok()?,
            address: n.address.clone(),
            total: resources_from_pb(n.total.as_ref()),
            free: resources_from_pb(n.free.as_ref()),
            labels: n.labels.clone(),
            alive: matches!(n.state(), pb::NodeState::Alive | pb::NodeState::Draining),
            draining: n.state() == pb::NodeState::Draining,
            is_head: n.is_head,
        })
    }
}

/// Who is in the cluster, as this node sees it: the head's list of nodes
/// (refreshed by every heartbeat), addresses learned from peers that
/// messaged first, and nodes suspected gone. Only this module touches it.
pub(super) struct Membership {
    /// Every node the head told us about, this one included.
    view: RwLock<BTreeMap<NodeId, PeerView>>,
    /// Addresses of peers that messaged this node before the head's view
    /// listed them (a node that just joined).
    learned: DashMap<NodeId, String>,
    /// Nodes this node could not reach lately, by when: placement skips them
    /// until the head's verdict comes (dead) or the suspicion expires, so a
    /// retry does not go back to a node that just crashed.
    suspects: DashMap<NodeId, Instant>,
    /// How long a suspicion lasts.
    suspicion: Duration,
    /// Where the next `Spread` placement starts.
    spread_cursor: AtomicUsize,
    /// The head's view held (its epoch and version): heartbeats ask only
    /// for what changed since.
    held: parking_lot::Mutex<(u64, u64)>,
}

impl Membership {
    pub(super) fn new(node_timeout: Duration) -> Self {
        Membership {
            view: RwLock::new(BTreeMap::new()),
            learned: DashMap::new(),
            suspects: DashMap::new(),
            suspicion: node_timeout * 2,
            spread_cursor: AtomicUsize::new(0),
            held: parking_lot::Mutex::new((0, 0)),
        }
    }

    /// Where the next `Spread` placement starts.
    pub(super) fn spread_cursor(&self) -> &AtomicUsize {
        &self.spread_cursor
    }

    /// Every node known, dead ones included.
    pub(super) fn all(&self) -> Vec<PeerView> {
        self.view.read().values().cloned().collect()
    }

    /// The live nodes other than `me`.
    pub(super) fn alive_others(&self, me: NodeId) -> Vec<NodeId> {
        self.view
            .read()
            .values()
            .filter(|v| v.alive && v.id != me)
            .map(|v| v.id)
            .collect()
    }

    /// A node that messaged this one said it listens at `address`.
    pub(super) fn learn(&self, node: NodeId, address: String) {
        if self.view.read().get(&node).is_none_or(|v| !v.alive) {
            self.learned.insert(node, address);
        }
    }

    /// Where a peer that messaged us said it listens, unless the cluster
    /// has declared it dead.
    pub(super) fn learned_address(&self, node: NodeId) -> Option<String> {
        let dead = self.view.read().get(&node).is_some_and(|v| !v.alive);
        if dead {
            None
        } else {
            self.learned.get(&node).map(|a| a.clone())
        }
    }

    /// Replaces the view; returns the nodes that were alive and are not now.
    fn replace(&self, fresh: BTreeMap<NodeId, PeerView>) -> Vec<NodeId> {
        let mut view = self.view.write();
        let died = view
            .values()
            .filter(|old| old.alive && fresh.get(&old.id).is_none_or(|n| !n.alive))
            .map(|old| old.id)
            .collect();
        *view = fresh;
        died
    }

    fn suspect(&self, node: NodeId) {
        self.suspects.insert(node, Instant::now());
    }

    fn is_suspect(&self, node: NodeId) -> bool {
        match self
            .suspects
            .get(&node)
            .map(|t| t.elapsed() < self.suspicion)
        {
            Some(true) => true,
            Some(false) => {
                self.suspects.remove(&node);
                false
            }
            None => false,
        }
    }
}

impl Cluster {
    /// Registers this node with the head.
    pub(super) async fn register(&self) -> Result<(), NodeError> {
        let core = self
            .core()
            .ok_or_else(|| NodeError::Config("the node stopped".into()))?;
        let req = pb::RegisterRequest {
            node_id: crate::wire::id_bytes(self.id.as_u128()),
            address: self.address.clone(),
            total: Some(resources_to_pb(core.scheduler().total())),
            labels: self.config.labels.clone().into_iter().collect(),
            object_store_capacity: core.objects().capacity_bytes(),
        };
        let reply = self
            .head
            .clone()
            .register(req)
            .await
            .map_err(|s| {
                NodeError::Config(format!(
                    "cannot register with the head at {}: {}",
                    self.config.head.as_deref().unwrap_or(&self.address),
                    s.message()
                ))
            })?
            .into_inner();
        let _ = self.update_view(&reply.nodes, false, Duration::ZERO);
        // The next heartbeat brings the whole view with its version.
        *self.members.held.lock() = (0, 0);
        super::quotas::apply_limits(&core, &reply.tenants);
        Ok(())
    }

    /// Sends a heartbeat every interval until the node leaves.
    pub(super) fn start_heartbeats(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let interval = self.config.heartbeat_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let Some(core) = self.core() else { return };
                self.sweep_watches();
                let stats = crate::Node::from_core(core.clone()).stats();
                let held = *self.members.held.lock();
                let req = pb::HeartbeatRequest {
                    node_id: crate::wire::id_bytes(self.id.as_u128()),
                    free: Some(resources_to_pb(&stats.free)),
                    queued_tasks: stats.queued_tasks as u64,
                    running_tasks: stats.running_tasks as u64,
                    object_store_used: stats.object_store_used,
                    tenants: super::quotas::loads(&core),
                    resident_bytes: stats.memory.resident,
                    accounted_bytes: stats.memory.accounted(),
                    live_instances: stats.instances.live,
                    peak_instances: stats.instances.peak,
                    instance_slots: stats.instances.slots,
                    view_epoch: held.0,
                    view_version: held.1,
                    serve: self.serve_loads(),
                };
                match self.head.clone().heartbeat(req).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        if warned {
                            tracing::info!("the head answers again");
                            warned = false;
                        }
                        if reply.reregister {
                            if let Err(e) = self.register().await {
                                tracing::warn!(error = %e, "re-registering with the head failed");
                            }
                        } else {
                            // A view with an entry it could not read is
                            // not held: the next reply brings all of it.
                            // A head paces by at most 10 s; a larger figure
                            // (a head of another build) is taken as that.
                            let paced =
                                Duration::from_millis(reply.load_interval_ms.into()).min(MAX_PACED);
                            let whole = self.update_view(&reply.nodes, reply.partial, paced);
                            *self.members.held.lock() = match whole {
                                true => (reply.view_epoch, reply.view_version),
                                false => (0, 0),
                            };
                            super::quotas::apply_limits(&core, &reply.tenants);
                        }
                    }
                    Err(s) if !warned => {
                        tracing::warn!(error = %s.message(), "the head does not answer heartbeats");
                        warned = true;
                    }
                    Err(_) => {}
                }
                self.move_queued_tasks();
            }
        });
    }

    /// Replaces the view with the head's list (`partial`: the nodes that
    /// changed, over the view held); handles nodes that died. `paced`: how
    /// long the head may hold a node's changed free resources back from
    /// the views. False when an entry could not be read (and was left out).
    pub(super) fn update_view(
        &self,
        nodes: &[pb::NodeInfo],
        partial: bool,
        paced: Duration,
    ) -> bool {
        let read: Vec<PeerView> = nodes.iter().filter_map(PeerView::from_pb).collect();
        self.settle_in_flight(&read, partial, paced);
        if partial && nodes.is_empty() {
            return true;
        }
        let mut fresh = if partial {
            self.members.view.read().clone()
        } else {
            BTreeMap::new()
        };
        let whole = read.len() == nodes.len();
        fresh.extend(read.into_iter().map(|v| (v.id, v)));
        if fresh.get(&self.id).is_some_and(|me| me.draining) {
            self.start_drain();
        }
        let died = self.members.replace(fresh);
        for node in died {
            if node != self.id {
                self.on_node_dead(node);
            }
        }
        whole
    }

    /// What was sent to a node counts against its free resources until
    /// they come in a view, or until they would have if they had changed:
    /// the head's pacing, plus a beat for the node's report to reach the
    /// head and one for the view to come back.
    fn settle_in_flight(&self, read: &[PeerView], partial: bool, paced: Duration) {
        let arrived: HashSet<NodeId> = read.iter().map(|v| v.id).collect();
        let beat = self.config.heartbeat_interval;
        let max_age = paced.max(beat) + beat;
        self.peers.settle_in_flight(!partial, &arrived, max_age);
    }

    /// Every node the head listed, as the runtime's introspection shows
    /// them (this node's free resources exact, the others' as last reported).
    pub(crate) fn node_views(&self) -> Vec<crate::runtime::port::NodeView> {
        let core = self.core();
        let view = self.members.view.read();
        view.values()
            .map(|v| {
                let free = match (&core, v.id == self.id) {
                    (Some(c), true) => c.scheduler().free().without_named(),
                    _ => v.free.clone().without_named(),
                };
                let mut labels: Vec<(String, String)> = v
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                crate::runtime::port::NodeView {
                    id: v.id,
                    address: v.address.clone(),
                    alive: v.alive,
                    is_head: v.is_head,
                    total: v.total.clone(),
                    free,
                    labels,
                }
            })
            .collect()
    }

    /// A live node's view, if there is one.
    pub(crate) fn peer_view(&self, node: NodeId) -> Option<PeerView> {
        self.members
            .view
            .read()
            .get(&node)
            .filter(|v| v.alive)
            .cloned()
    }

    /// The live nodes as placement candidates. This node's entry uses the
    /// exact free resources; the others' an estimate from their last
    /// heartbeat, less what this node sent them since.
    pub(crate) fn with_candidates<R>(&self, f: impl FnOnce(&[Candidate<'_>]) -> R) -> R {
        let core = self.core();
        let view = self.members.view.read();
        // A draining node offers no room: work goes elsewhere if it can.
        let local_free = core
            .as_ref()
            .filter(|_| !self.is_draining())
            .map(|c| c.scheduler().free())
            .unwrap_or_default();
        let local_total = core
            .as_ref()
            .map(|c| c.scheduler().total().clone())
            .unwrap_or_default();
        let mut candidates = Vec::with_capacity(view.len() + 1);
        candidates.push(Candidate {
            id: self.id,
            total: &local_total,
            available: local_free,
            labels: view.get(&self.id).map(|v| &v.labels),
            is_local: true,
        });
        for v in view
            .values()
            .filter(|v| v.alive && !v.draining && v.id != self.id && !self.is_suspect(v.id))
        {
            let mut available = v.free.clone();
            for _ in 0..QUEUE_ALLOWANCE {
                available.add(&v.total);
            }
            available.subtract(&self.peers.in_flight(v.id));
            candidates.push(Candidate {
                id: v.id,
                total: &v.total,
                available,
                labels: Some(&v.labels),
                is_local: false,
            });
        }
        f(&candidates)
    }

    /// Fails fast when no live node could ever satisfy `demand`.
    pub(crate) fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError> {
        let core = self.core();
        if let Some(c) = &core
            && c.scheduler().check_feasible(demand).is_ok()
        {
            return Ok(());
        }
        let view = self.members.view.read();
        if view.values().any(|v| v.alive && v.total.contains(demand)) {
            return Ok(());
        }
        let mut best = core
            .as_ref()
            .map(|c| c.scheduler().total().clone())
            .unwrap_or_default();
        for v in view.values().filter(|v| v.alive) {
            best.max_with(&v.total);
        }
        Err(FabricError::ResourcesInfeasible(format!(
            "no node in the cluster can ever satisfy {{{demand}}}: {}",
            best.missing(demand).join(", ")
        )))
    }

    /// `node` could not be reached: keep new work off it for a while (two
    /// death timeouts), until the head declares it dead or it answers again.
    pub(crate) fn suspect(&self, node: NodeId) {
        if node != self.id {
            tracing::debug!(node = %node.short(), "a node is unreachable; placing elsewhere");
            self.members.suspect(node);
        }
    }

    /// Alive in the head's view and not suspected of being gone.
    pub(super) fn is_live(&self, node: NodeId) -> bool {
        self.peer_view(node).is_some() && !self.is_suspect(node)
    }

    pub(super) fn is_suspect(&self, node: NodeId) -> bool {
        self.members.is_suspect(node)
    }

    /// Everything that depended on a node that died: its borrows, the tasks
    /// and calls sent to it, and the actors it hosted.
    pub(super) fn on_node_dead(&self, node: NodeId) {
        tracing::warn!(node = %node.short(), "a node died");
        self.peers.remove(node);
        if let Some(l) = &self.local {
            l.forget(node);
        }
        self.lending.forget_node(node);
        self.actors.forget_places_on(node);
        self.forget_bundles_on(node);
        self.routed.forget_node(node);
        self.fail_remote_work(node);
        self.restart_owned_actors(node);
        // Watches it had here wait for no one.
        if let Some(core) = self.core() {
            for actor in core.actors().iter() {
                actor.forget_watches_of(node);
            }
        }
    }
}
