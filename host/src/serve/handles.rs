//! Deployment handles: one deployment's replica calls another deployment
//! (Ray Serve's `DeploymentHandle`, for composing deployments).
//!
//! Each deployment is registered, under its name, in its tenant's namespace
//! `serve` (see [`crate::runtime::routers`]): a guest of the same tenant
//! finds it as it finds a named actor, and calls its replicas' methods by
//! name. Each call takes a place at a replica as an HTTP request does (the
//! less loaded of two, below `max_ongoing_requests`), waits in the same
//! bounded queue when none has room (the caller's backpressure), and is
//! refused past it, or past `request_timeout` in the queue. A replica that
//! fails a handle's call as it would fail a request (a trap, a limit of its
//! own) is replaced. A replica calling its own deployment is given another
//! replica. Another tenant's deployments are not found. The names are the
//! serve node's own: on a cluster, a replica placed on another node does
//! not find them (its lookup goes to the head, which knows only actors).
//!
//! ```python
//! import fabric
//!
//! @fabric.remote
//! class Front:
//!     def __init__(self):
//!         self.model = fabric.get_actor("model", namespace="serve")
//!
//!     def call(self, request):
//!         return fabric.get(self.model.call.remote(request))
//! ```

use std::sync::Weak;

use crate::error::FabricError;
use crate::ids::ActorId;
use crate::runtime::port::PortFuture;
use crate::runtime::routers::{CallRouter, RoutedPlace};
use crate::serve::deployment::{Deployment, ServeError};

/// What a deployment's handles are routed by; it does not keep the
/// deployment running.
pub(super) struct Router(pub(super) Weak<Deployment>);

impl CallRouter for Router {
    fn place(&self, caller: Option<ActorId>) -> PortFuture<'_, RoutedPlace> {
        Box::pin(async move {
            let Some(deployment) = self.0.upgrade() else {
                return Err(FabricError::NotFound("the deployment stopped".into()));
            };
            let slot = deployment
                .reserve_apart(deployment.deadline(), caller)
                .await
                .map_err(|e| refusal(&deployment, e))?;
            let actor = slot.actor();
            let done = move |failed: Option<&FabricError>| {
                if let Some(e) = failed {
                    deployment.call_failed(actor, e);
                }
                drop(slot);
            };
            Ok(RoutedPlace {
                actor,
                done: Box::new(done),
            })
        })
    }
}

/// Why a handle's call found no place, as the caller gets it.
fn refusal(deployment: &Deployment, e: ServeError) -> FabricError {
    let name = &deployment.name;
    match e {
        ServeError::Overloaded => FabricError::limit(
            "max-queued-requests",
            deployment.max_queued() as u64,
            format!("deployment `{name}`: every replica is busy and its queue is full"),
        ),
        ServeError::Timeout(_) => FabricError::Timeout,
        other => FabricError::ActorDied(format!("deployment `{name}`: {other}")),
    }
}
