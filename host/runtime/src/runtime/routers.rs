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
//! ```
//! use fabric_runtime::runtime::routers::{CallRouter, RoutedPlace};
//! use fabric_runtime::ids::ActorId;
//! use fabric_runtime::runtime::port::PortFuture;
//!
//! /// Every call to one actor, with no bound.
//! struct One(ActorId);
//! impl CallRouter for One {
//!     fn place(&self) -> PortFuture<'_, RoutedPlace> {
//!         let actor = self.0;
//!         Box::pin(async move { Ok(RoutedPlace { actor, done: Box::new(|_| {}) }) })
//!     }
//! }
//! ```

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

/// Chooses the actor each call to a routed name goes to.
pub trait CallRouter: Send + Sync {
    /// A place at one of the router's actors for one call, waited for
    /// within the router's own bounds; an error is the caller's (the
    /// router is full, or gone).
    fn place(&self) -> PortFuture<'_, RoutedPlace>;
}

/// Runs once a routed call has ended, with its error if it failed; gives
/// its place back.
pub type PlaceDone = Box<dyn FnOnce(Option<&FabricError>) + Send>;

/// A call's place at one actor.
pub struct RoutedPlace {
    pub actor: ActorId,
    pub done: PlaceDone,
}

/// The node's routers by their virtual actor ids.
#[derive(Default)]
pub(crate) struct Routers {
    by_id: DashMap<ActorId, Arc<dyn CallRouter>>,
}

impl Routers {
    pub(crate) fn get(&self, id: &ActorId) -> Option<Arc<dyn CallRouter>> {
        self.by_id.get(id).map(|r| r.clone())
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
/// router already there is replaced (the handles guests hold reach the
/// new one); an actor already there keeps the name, and this fails.
pub(crate) fn register(
    core: &Arc<NodeCore>,
    tenant: &str,
    namespace: &str,
    name: &str,
    router: Arc<dyn CallRouter>,
) -> Result<RouterRegistration, FabricError> {
    let key = (scoped_namespace(tenant, namespace), name.to_string());
    let id = match core.named_actors().entry(key.clone()) {
        dashmap::Entry::Occupied(held) if core.routers().by_id.contains_key(held.get()) => {
            *held.get()
        }
        dashmap::Entry::Occupied(_) => {
            return Err(FabricError::InvalidArgument(format!(
                "an actor named `{name}` already exists in namespace `{}`",
                shown_namespace(&key.0)
            )));
        }
        dashmap::Entry::Vacant(slot) => *slot.insert(ActorId::random()),
    };
    core.routers().by_id.insert(id, router.clone());
    Ok(RouterRegistration {
        core: Arc::downgrade(core),
        key,
        id,
        router,
    })
}

impl Drop for RouterRegistration {
    fn drop(&mut self) {
        let Some(core) = self.core.upgrade() else {
            return;
        };
        // Only this registration's own router: a redeploy's new one may
        // hold the name by now.
        let removed = core
            .routers()
            .by_id
            .remove_if(&self.id, |_, r| Arc::ptr_eq(r, &self.router));
        if removed.is_some() {
            core.named_actors()
                .remove_if(&self.key, |_, id| *id == self.id);
        }
    }
}
