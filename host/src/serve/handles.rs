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
//! replica (with one replica, it waits out `request_timeout`). Another
//! tenant's deployments are not found. The names are the serve node's
//! own: on a cluster, a replica placed on another node finds them there
//! (its job's driver node) and asks that node for each call's place, which
//! it gives back once the call's result is in (see
//! `cluster/routed.rs`); the call itself goes straight to the replica.
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

use std::sync::{Arc, Weak};

use crate::error::FabricError;
use crate::ids::ActorId;
use crate::runtime::port::PortFuture;
use crate::runtime::routers::{CallRouter, RoutedPlace, SERVE_NAMESPACE};
use crate::serve::deployment::{Deployment, ServeError, ends_the_replica};

impl Deployment {
    /// Makes this the deployment its tenant's handles named `name` reach
    /// (see [`super::handles`]), taking the name over from an earlier
    /// deployment of that name (a redeploy's); once is enough. Called once
    /// the deployment takes its route's requests, so a redeploy that
    /// fails leaves the handles where the requests are.
    pub fn take_handle_name(self: &Arc<Self>) -> Result<(), FabricError> {
        self.claim_handle_name(true)
    }

    /// Registers this deployment's handle name, unless it holds it already
    /// or (without `take_over`) another deployment does.
    pub(super) fn claim_handle_name(self: &Arc<Self>, take_over: bool) -> Result<(), FabricError> {
        let mut handle = self.handle.lock();
        if handle.is_none() {
            let router = Arc::new(Router(Arc::downgrade(self)));
            *handle =
                self.service
                    .register_router(SERVE_NAMESPACE, &self.name, router, take_over)?;
        }
        Ok(())
    }

    /// A call a handle placed at `actor` failed with `e`: a replica that
    /// could not be reached is replaced; one whose call failed as its own
    /// failure would is replaced if a probe finds it gone (it may have
    /// passed on a downstream error, or the caller's store refused the
    /// result).
    pub(super) fn call_failed(self: &Arc<Self>, actor: ActorId, e: &FabricError) {
        match e {
            FabricError::NotFound(_) => self.replace(actor),
            e if ends_the_replica(e, self.concurrent) => self.check_replica(actor),
            _ => {}
        }
    }

    /// Takes this deployment's name from its handles (it is left out of
    /// the configuration): calls already placed finish, new ones find no
    /// deployment, and it stops once its last request is answered.
    pub fn release_handle_name(&self) {
        self.handle.lock().take();
    }
}

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
