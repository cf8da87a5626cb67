//! Routed calls across nodes: an actor placed on one node calls a router
//! (a Serve deployment's handle) that its job's driver node registered.
//!
//! The caller's node finds the router by name (`LookupRouter`), then asks
//! for each call's place (`PlaceRouted`): the router's node waits for one
//! within the router's own bounds (its replicas' places and queue, the
//! caller's backpressure) and answers with the actor to call and a ticket.
//! The call goes straight to that actor, wherever it lives; once its
//! result is in, the caller's node sends `ReleasePlace` with the ticket
//! (and the call's failure, for the router to judge its actor by). The
//! router's node owns each place it gave until then, and gives back every
//! place a node held when that node dies.
//!
//! The caller's node chooses each ticket, and holds it as a [`Lease`]
//! from before it asks: however the call ends (its result came, it failed,
//! or the guest waiting for the place went away, with the answer perhaps
//! still on its way) the lease's drop releases the ticket, sent again
//! until the router's node answers or leaves the cluster. A release that
//! comes before its place was given is kept (a bounded number per node),
//! so the place is given back as soon as it is given.
//!
//! ```text
//! replica on B ──LookupRouter────▶ serve node A   (once per handle)
//! replica on B ──PlaceRouted 7───▶ A: a place at replica R, ticket 7
//! replica on B ──the call────────▶ R (any node)
//! replica on B ──ReleasePlace 7──▶ A (once the result is in)
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Weak;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};
use crate::runtime::routers::{PlaceDone, RoutedPlace, find_router, local_router};
use crate::wire::{actor_id, error_from_pb, error_to_pb, id_bytes, node_id, rpc_failure};

/// Releases kept per node for places not given yet, and for how long.
/// One is needed only when a release overtakes its own request's answer
/// (its request is then still waiting for a place, within the
/// deployment's `request_timeout`); a cancelled request's is left over.
const MAX_EARLY_RELEASES: usize = 4096;
const EARLY_RELEASE_KEPT: Duration = Duration::from_secs(600);

/// Releases to one node that failed and are being sent again (each a
/// task, until the node answers) before this node asks it for no more
/// places: releases on their way, however many, are not counted.
const MAX_OWED_RELEASES: usize = 1024;

/// How long the caller's node waits for one `ReleasePlace` answer.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Routed places between nodes: those this node's routers gave other
/// nodes' calls, and the releases this node owes other nodes' routers.
#[derive(Default)]
pub(super) struct RoutedPlaces {
    /// The places given here to other nodes' calls.
    given: Mutex<Places>,
    /// The releases to other nodes' routers that failed and are being
    /// sent again.
    owed: OwedReleases,
}

/// The releases this node is sending again, by the node they go to.
#[derive(Default)]
struct OwedReleases(Mutex<HashMap<NodeId, usize>>);

impl OwedReleases {
    fn owed(&self, node: NodeId) -> usize {
        self.0.lock().get(&node).copied().unwrap_or(0)
    }

    fn add(&self, node: NodeId) {
        *self.0.lock().entry(node).or_default() += 1;
    }

    fn settle(&self, node: NodeId) {
        let mut owed = self.0.lock();
        if let Some(n) = owed.get_mut(&node) {
            *n -= 1;
            if *n == 0 {
                owed.remove(&node);
            }
        }
    }
}

#[derive(Default)]
struct Places {
    /// By holder and ticket: what gives the place back.
    held: HashMap<(NodeId, u64), PlaceDone>,
    /// Tickets released before their place was given, by node (oldest
    /// first, bounded in number and age).
    early: HashMap<NodeId, EarlyReleases>,
}

/// One node's early releases: the tickets, and when each came.
type EarlyReleases = (HashSet<u64>, VecDeque<(u64, Instant)>);

impl RoutedPlaces {
    /// Holds `done`'s place for `node` under `ticket`; `false` (and the
    /// place given back) when `node` released that ticket already, or
    /// holds it (a ticket is one place).
    fn hold(&self, node: NodeId, ticket: u64, done: PlaceDone) -> bool {
        let mut places = self.given.lock();
        let released = places
            .early
            .get_mut(&node)
            .is_some_and(|(set, _)| set.remove(&ticket));
        if released || places.held.contains_key(&(node, ticket)) {
            drop(places);
            done(None);
            return false;
        }
        places.held.insert((node, ticket), done);
        true
    }

    /// Gives back `node`'s place `ticket`, or, when it was not given yet,
    /// keeps the release for it.
    fn release(&self, node: NodeId, ticket: u64, failure: Option<&FabricError>) {
        let mut places = self.given.lock();
        match places.held.remove(&(node, ticket)) {
            Some(done) => {
                drop(places);
                done(failure);
            }
            None => {
                let now = Instant::now();
                let (set, order) = places.early.entry(node).or_default();
                if set.insert(ticket) {
                    order.push_back((ticket, now));
                }
                while let Some(&(oldest, at)) = order.front() {
                    let stale = now.duration_since(at) > EARLY_RELEASE_KEPT;
                    if order.len() <= MAX_EARLY_RELEASES && !stale {
                        break;
                    }
                    order.pop_front();
                    set.remove(&oldest);
                }
            }
        }
    }

    /// Gives back every place `node` held (it died).
    pub(super) fn forget_node(&self, node: NodeId) {
        let gone: Vec<PlaceDone> = {
            let mut places = self.given.lock();
            places.early.remove(&node);
            let tickets: Vec<(NodeId, u64)> = places
                .held
                .keys()
                .filter(|(n, _)| *n == node)
                .copied()
                .collect();
            tickets
                .iter()
                .filter_map(|k| places.held.remove(k))
                .collect()
        };
        for done in gone {
            done(None);
        }
    }
}

/// A place this node asked another node for, under its ticket: released
/// there when dropped (with the call's failure, if it was given one),
/// unless the place was refused.
struct Lease {
    cluster: Weak<Cluster>,
    node: NodeId,
    ticket: u64,
    failure: Option<pb::Error>,
    armed: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let (true, Some(c)) = (self.armed, self.cluster.upgrade()) {
            c.send_release(self.node, self.ticket, self.failure.take());
        }
    }
}

/// A release that failed once and is being sent again, counted against
/// its node until it ends.
struct Owed {
    cluster: Weak<Cluster>,
    node: NodeId,
}

impl Owed {
    fn new(c: &Cluster, node: NodeId) -> Owed {
        c.routed.owed.add(node);
        Owed {
            cluster: c.me.clone(),
            node,
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.upgrade() {
            c.routed.owed.settle(self.node);
        }
    }
}

/// Whether a failed `ReleasePlace` is sent again: a node that could not
/// be reached, or did not answer, may yet; one that refused never will.
fn retried(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Unavailable | Unknown | Cancelled | DeadlineExceeded | Internal
    )
}

impl Cluster {
    /// The caller's side of `LookupRouter`.
    pub(crate) async fn lookup_router(
        &self,
        node: NodeId,
        tenant: &str,
        namespace: &str,
        name: &str,
    ) -> Result<ActorId, FabricError> {
        let request = pb::LookupRouterRequest {
            tenant: tenant.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let reply = self
            .peer(node)?
            .client()
            .lookup_router(request)
            .await
            .map_err(|s| rpc_failure("LookupRouter", &s))?
            .into_inner();
        if reply.router_id.is_empty() {
            return Err(FabricError::NotFound(format!(
                "no deployment `{name}` of this tenant is served by this job's serve node"
            )));
        }
        actor_id(&reply.router_id).map_err(|s| rpc_failure("LookupRouter", &s))
    }

    /// The caller's side of `PlaceRouted`: the place, whose `done` (or
    /// drop) releases it.
    pub(crate) async fn place_routed(
        &self,
        node: NodeId,
        router: ActorId,
        tenant: &str,
        caller: Option<ActorId>,
    ) -> Result<RoutedPlace, FabricError> {
        let peer = self.peer(node)?;
        if self.routed.owed.owed(node) >= MAX_OWED_RELEASES {
            return Err(FabricError::failure(
                "PlaceRouted",
                crate::error::FailureKind::System,
                format!(
                    "node {} has not taken back {MAX_OWED_RELEASES} places \
                     (their releases are being sent again)",
                    node.short()
                ),
            ));
        }
        let mut lease = Lease {
            cluster: self.me.clone(),
            node,
            ticket: rand::random(),
            failure: None,
            armed: true,
        };
        let request = pb::PlaceRoutedRequest {
            router_id: id_bytes(router.as_u128()),
            tenant: tenant.to_string(),
            caller: caller.map(|c| id_bytes(c.as_u128())).unwrap_or_default(),
            from_node: id_bytes(self.id.as_u128()),
            ticket: lease.ticket,
        };
        // From here on, a dropped or failed request releases the ticket.
        let reply = peer
            .client()
            .place_routed(request)
            .await
            .map_err(|s| rpc_failure("PlaceRouted", &s))?
            .into_inner();
        if let Some(refused) = &reply.refused {
            lease.armed = false;
            return Err(error_from_pb(refused));
        }
        let actor = actor_id(&reply.actor_id).map_err(|s| rpc_failure("PlaceRouted", &s))?;
        let done = move |failure: Option<&FabricError>| {
            let mut lease = lease;
            lease.failure = failure.map(error_to_pb);
        };
        Ok(RoutedPlace {
            actor,
            done: Box::new(done),
        })
    }

    /// Sends `ReleasePlace` for `ticket` to `node` until it answers, or
    /// leaves the cluster (it then holds no place of this node's).
    fn send_release(&self, node: NodeId, ticket: u64, failure: Option<pb::Error>) {
        let Some(core) = self.core() else {
            return;
        };
        let request = pb::ReleasePlaceRequest {
            from_node: id_bytes(self.id.as_u128()),
            ticket,
            failure,
        };
        let me = self.me.clone();
        core.runtime().spawn(async move {
            let mut wait = Duration::from_millis(100);
            // Counted against the node once a try failed: a release on its
            // way is not owed.
            let mut owed: Option<Owed> = None;
            loop {
                let Some(c) = me.upgrade().filter(|c| c.peer_view(node).is_some()) else {
                    return;
                };
                match c.try_release(node, request.clone()).await {
                    Ok(()) => return,
                    Err(why) => {
                        tracing::debug!(node = %node.short(), error = %why, "a place's release waits");
                    }
                }
                owed.get_or_insert_with(|| Owed::new(&c, node));
                drop(c);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// One try of `ReleasePlace`: `Ok` once `node` took it, or refused it
    /// for good (a node that does not know the call answers so).
    async fn try_release(
        &self,
        node: NodeId,
        request: pb::ReleasePlaceRequest,
    ) -> Result<(), String> {
        let peer = self.peer(node).map_err(|e| e.to_string())?;
        let mut client = peer.client();
        match tokio::time::timeout(RELEASE_TIMEOUT, client.release_place(request)).await {
            Ok(Err(s)) if retried(s.code()) => Err(s.to_string()),
            Ok(_) => Ok(()),
            Err(_) => Err("no answer".to_string()),
        }
    }

    /// The router's side of `LookupRouter`.
    pub(super) fn on_lookup_router(&self, r: &pb::LookupRouterRequest) -> pb::LookupRouterReply {
        let found = self
            .core()
            .and_then(|core| find_router(&core, &r.tenant, &r.namespace, &r.name));
        pb::LookupRouterReply {
            router_id: found.map(|id| id_bytes(id.as_u128())).unwrap_or_default(),
        }
    }

    /// The router's side of `PlaceRouted`: waits for a place, as the
    /// router bounds them, and holds it for the caller's node.
    pub(super) async fn on_place_routed(
        &self,
        r: pb::PlaceRoutedRequest,
    ) -> Result<pb::PlaceRoutedReply, Status> {
        let router_id = actor_id(&r.router_id)?;
        let from = node_id(&r.from_node)?;
        let caller = match r.caller.is_empty() {
            true => None,
            false => Some(actor_id(&r.caller)?),
        };
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("this node is leaving"))?;
        let refused = |e: FabricError| pb::PlaceRoutedReply {
            actor_id: Default::default(),
            refused: Some(error_to_pb(&e)),
        };
        let Some(router) = local_router(&core, router_id, &r.tenant) else {
            let e = FabricError::NotFound(format!("actor {router_id}"));
            return Ok(refused(e));
        };
        let place = match router.place(caller).await {
            Ok(place) => place,
            Err(e) => return Ok(refused(e)),
        };
        let actor = place.actor;
        if !self.routed.hold(from, r.ticket, place.done) {
            return Ok(refused(FabricError::Cancelled));
        }
        // A node the cluster declared dead would never give it back (held
        // first: a death after this check finds the place held).
        if self.peer_view(from).is_none() {
            self.routed.release(from, r.ticket, None);
            return Err(Status::failed_precondition("the calling node is gone"));
        }
        Ok(pb::PlaceRoutedReply {
            actor_id: id_bytes(actor.as_u128()),
            refused: None,
        })
    }

    /// The router's side of `ReleasePlace`. A node out of this node's
    /// view holds no place here (they went with it).
    pub(super) fn on_release_place(&self, r: pb::ReleasePlaceRequest) -> Result<(), Status> {
        let from = node_id(&r.from_node)?;
        if self.peer_view(from).is_none() {
            return Ok(());
        }
        let failure = r.failure.as_ref().map(error_from_pb);
        self.routed.release(from, r.ticket, failure.as_ref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counted(count: &Arc<AtomicUsize>) -> PlaceDone {
        let count = count.clone();
        Box::new(move |_| {
            count.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_place_is_given_back_once_and_only_by_its_holder() {
        let places = RoutedPlaces::default();
        let (a, b) = (NodeId::random(), NodeId::random());
        let given_back = Arc::new(AtomicUsize::new(0));
        assert!(places.hold(a, 7, counted(&given_back)));
        places.release(b, 7, None);
        assert_eq!(given_back.load(Ordering::SeqCst), 0, "not b's to give back");
        places.release(a, 7, None);
        assert_eq!(given_back.load(Ordering::SeqCst), 1);
        places.release(a, 7, None);
        assert_eq!(given_back.load(Ordering::SeqCst), 1, "given back once");
    }

    #[test]
    fn a_ticket_released_before_its_place_is_given_gives_it_back_at_once() {
        let places = RoutedPlaces::default();
        let a = NodeId::random();
        let given_back = Arc::new(AtomicUsize::new(0));
        places.release(a, 9, None);
        assert!(!places.hold(a, 9, counted(&given_back)));
        assert_eq!(given_back.load(Ordering::SeqCst), 1);
        assert!(places.hold(a, 10, counted(&given_back)));
        assert!(
            !places.hold(a, 10, counted(&given_back)),
            "one place per ticket"
        );
        assert_eq!(given_back.load(Ordering::SeqCst), 2);
        // The early releases kept are bounded.
        for t in 0..(MAX_EARLY_RELEASES as u64 * 2) {
            places.release(a, 1_000 + t, None);
        }
        let kept = places.given.lock().early[&a].0.len();
        assert_eq!(kept, MAX_EARLY_RELEASES);
    }

    #[test]
    fn a_dead_nodes_places_are_given_back() {
        let places = RoutedPlaces::default();
        let (a, b) = (NodeId::random(), NodeId::random());
        let given_back = Arc::new(AtomicUsize::new(0));
        places.hold(a, 1, counted(&given_back));
        places.hold(a, 2, counted(&given_back));
        places.hold(b, 1, counted(&given_back));
        places.release(a, 3, None);
        places.forget_node(a);
        assert_eq!(given_back.load(Ordering::SeqCst), 2);
        places.release(b, 1, None);
        assert_eq!(given_back.load(Ordering::SeqCst), 3);
        let left = places.given.lock();
        assert!(left.held.is_empty() && left.early.is_empty());
    }
}
