//! Routers: names a guest finds as it finds a named actor, whose calls go
//! to one of several actors chosen per call. Serve's deployments are
//! routers in the namespace [`SERVE_NAMESPACE`], so one deployment's
//! replica calls another deployment as a handle (Ray Serve's
//! `DeploymentHandle`), with its replica chosen, its places bounded and its
//! queue shared with the HTTP requests.
//!
//! The runtime knows nothing of Serve: a router is a [`CallRouter`] that
//! the layer above registers through [`crate::runtime::service::Service`].
//! A registered name is a virtual actor id in the node's named actors; the
//! guest's handle to it carries that id, and `call-actor` on it asks the
//! router for a place ([`CallRouter::place`]: it may wait there, which is
//! the caller's backpressure), delivers the call to the actor the place
//! names, and gives the place back once the call's result is in.
//!
//! On a cluster, a router lives on the node that registered it, which is
//! the driver node of the jobs it serves. An actor of such a job placed on
//! another node finds the router there ([`ClusterPort::lookup_router`])
//! and asks it for each call's place ([`ClusterPort::place_routed`]); the
//! call itself goes straight to the actor the place names. A router's id
//! is marked ([`is_router_id`]), so a handle to it held on any node is
//! known for one, and asked of the driver node of the job that holds it
//! (a handle passed to another job's actor, whose driver is another node,
//! is not found there).
//!
//! [`ClusterPort::lookup_router`]: crate::runtime::port::ClusterPort::lookup_router
//! [`ClusterPort::place_routed`]: crate::runtime::port::ClusterPort::place_routed
//!
//! ```
//! use fabric_runtime::runtime::routers::{CallRouter, RoutedPlace};
//! use fabric_runtime::ids::ActorId;
//! use fabric_runtime::runtime::port::PortFuture;
//!
//! /// Every call to one actor, with no bound.
//! struct One(ActorId);
//! impl CallRouter for One {
//!     fn place(&self, _caller: Option<ActorId>) -> PortFuture<'_, RoutedPlace> {
//!         let actor = self.0;
//!         Box::pin(async move { Ok(RoutedPlace { actor, done: Box::new(|_| {}) }) })
//!     }
//! }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use dashmap::DashMap;

use crate::error::FabricError;
use crate::ids::ActorId;
use crate::runtime::NodeCore;
use crate::runtime::job::{scoped_namespace, shown_namespace};
use crate::runtime::port::PortFuture;

/// The namespace Serve's deployments are found in; no actor may be named
/// in it.
pub const SERVE_NAMESPACE: &str = "serve";

/// The top 32 bits of every router's id.
const ROUTER_MARK: u128 = 0xfab5_e7e5 << 96;
const MARK_BITS: u128 = 0xffff_ffff << 96;

/// A new router id: random, and marked.
fn router_id() -> ActorId {
    ActorId::from_u128((ActorId::random().as_u128() & !MARK_BITS) | ROUTER_MARK)
}

/// Whether `id` is marked as a router's. An actor's random id is so marked
/// once in 2^32: a call to it that the router's node does not know is
/// then delivered as to an actor.
pub fn is_router_id(id: ActorId) -> bool {
    id.as_u128() & MARK_BITS == ROUTER_MARK
}

/// The id of `tenant`'s router registered on this node as `name` in the
/// namespace the tenant's code calls `namespace`.
pub fn find_router(core: &NodeCore, tenant: &str, namespace: &str, name: &str) -> Option<ActorId> {
    let key = (scoped_namespace(tenant, namespace), name.to_string());
    let id = *core.named_actors().get(&key)?;
    core.routers().get(&id, tenant).map(|_| id)
}

/// `tenant`'s router `id`, registered on this node.
pub fn local_router(core: &NodeCore, id: ActorId, tenant: &str) -> Option<Arc<dyn CallRouter>> {
    core.routers().get(&id, tenant)
}

/// A router another node registered (the calling job's driver node):
/// each place is that node's to give.
pub(crate) struct RemoteRouter {
    pub(crate) core: Arc<NodeCore>,
    pub(crate) node: crate::ids::NodeId,
    pub(crate) id: ActorId,
    pub(crate) tenant: Arc<str>,
}

impl CallRouter for RemoteRouter {
    fn place(&self, caller: Option<ActorId>) -> PortFuture<'_, RoutedPlace> {
        self.core
            .port()
            .place_routed(self.node, self.id, &self.tenant, caller)
    }
}

/// Chooses the actor each call to a routed name goes to.
pub trait CallRouter: Send + Sync {
    /// A place at one of the router's actors for one call from `caller`
    /// (an actor, which is never placed at itself, or `None`), waited for
    /// within the router's own bounds; an error is the caller's (the
    /// router is full, or gone).
    fn place(&self, caller: Option<ActorId>) -> PortFuture<'_, RoutedPlace>;
}

/// Runs once a routed call has ended, with its error if it failed; gives
/// its place back.
pub type PlaceDone = Box<dyn FnOnce(Option<&FabricError>) + Send>;

/// A call's place at one actor.
pub struct RoutedPlace {
    pub actor: ActorId,
    pub done: PlaceDone,
}

/// A registered router, and whose it is.
struct Entry {
    tenant: Arc<str>,
    router: Arc<dyn CallRouter>,
}

/// The node's routers by their virtual actor ids.
#[derive(Default)]
pub(crate) struct Routers {
    by_id: DashMap<ActorId, Entry>,
    /// Whether a router was ever registered here: every actor call looks
    /// for one, and a node that serves nothing should not pay for it.
    any: AtomicBool,
}

impl Routers {
    /// The router `id` names, when it is `tenant`'s: another tenant's is
    /// not found, as a missing one.
    pub(crate) fn get(&self, id: &ActorId, tenant: &str) -> Option<Arc<dyn CallRouter>> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        self.by_id
            .get(id)
            .filter(|e| &*e.tenant == tenant)
            .map(|e| e.router.clone())
    }
}

/// A router's name, registered until this is dropped (unless another
/// router took the name over meanwhile: a redeployed deployment's).
pub struct RouterRegistration {
    core: Weak<NodeCore>,
    key: (String, String),
    id: ActorId,
    /// Held, so no other router can come to have its address.
    router: Arc<dyn CallRouter>,
}

/// Registers `router` as `name` in `tenant`'s namespace `namespace`. A
/// router already there is replaced when `take_over` says so (the handles
/// guests hold reach the new one), else it keeps the name and this
/// registers nothing (`None`); an actor already there keeps the name, and
/// this fails.
///
/// Both maps change while the name's entry is held (the named actors'
/// first, then the routers': [`RouterRegistration`]'s drop takes them in
/// the same order), so a registration and a drop never interleave.
pub(crate) fn register(
    core: &Arc<NodeCore>,
    tenant: &str,
    namespace: &str,
    name: &str,
    router: Arc<dyn CallRouter>,
    take_over: bool,
) -> Result<Option<RouterRegistration>, FabricError> {
    let key = (scoped_namespace(tenant, namespace), name.to_string());
    let entry = Entry {
        tenant: tenant.into(),
        router: router.clone(),
    };
    let id = match core.named_actors().entry(key.clone()) {
        dashmap::Entry::Occupied(held) => {
            let id = *held.get();
            match core.routers().by_id.get_mut(&id) {
                Some(mut current) if take_over => *current = entry,
                Some(_) => return Ok(None),
                None => {
                    return Err(FabricError::InvalidArgument(format!(
                        "an actor named `{name}` already exists in namespace `{}`",
                        shown_namespace(&key.0)
                    )));
                }
            }
            id
        }
        dashmap::Entry::Vacant(slot) => {
            let id = router_id();
            core.routers().by_id.insert(id, entry);
            core.routers().any.store(true, Ordering::Relaxed);
            slot.insert(id);
            id
        }
    };
    Ok(Some(RouterRegistration {
        core: Arc::downgrade(core),
        key,
        id,
        router,
    }))
}

impl Drop for RouterRegistration {
    fn drop(&mut self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        // Only this registration's own router: a redeploy's new one may
        // hold the name by now.
        if let dashmap::Entry::Occupied(held) = core.named_actors().entry(self.key.clone())
            && *held.get() == self.id
        {
            let removed = core
                .routers()
                .by_id
                .remove_if(&self.id, |_, e| Arc::ptr_eq(&e.router, &self.router));
            if removed.is_some() {
                held.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_router_id_is_marked_and_an_actors_random_id_is_not() {
        assert!((0..100).all(|_| is_router_id(router_id())));
        let ids: std::collections::HashSet<_> = (0..100).map(|_| router_id()).collect();
        assert_eq!(ids.len(), 100, "still random below the mark");
        // One actor id in 2^32 is marked: none of these (the call path
        // falls back to the actor when it is).
        assert!(!(0..10_000).any(|_| is_router_id(ActorId::random())));
    }
}
