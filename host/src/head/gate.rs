//! The gate in front of the `Control` service: who is calling, and whether
//! they may, decided from the request's headers before its body is read.
//!
//! A call without a valid token is answered `unauthenticated` at once; its
//! body (a component of up to 256 MiB, say) is never read or decoded. A
//! `SubmitJob` also takes one of its tenant's job slots here, so a tenant at
//! its jobs quota is refused before the node receives, let alone compiles,
//! its component; and a tenant may have only a few submissions being
//! received at once. Handlers find the caller ([`Caller`]) and the slot
//! ([`super::JobSlot`]) in the request's extensions.
//!
//! ```
//! // The path of the call that carries a component:
//! assert_eq!(fabric_host::head::SUBMIT_JOB_PATH, "/fabric.v1.Control/SubmitJob");
//! ```

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;

use super::{Head, JobSlot};
use crate::security::Principal;

/// The gRPC path of `SubmitJob`.
pub const SUBMIT_JOB_PATH: &str = "/fabric.v1.Control/SubmitJob";

/// The gRPC path of `ServeDeploy`, which carries components too.
const SERVE_DEPLOY_PATH: &str = "/fabric.v1.Control/ServeDeploy";

/// A `ServeDeploy` being received and handled: one of its tenant's
/// submissions (its handler holds a clone until it answers).
#[derive(Clone)]
pub(crate) struct Receiving(#[allow(dead_code)] Arc<Submitting>);

/// Submissions of one tenant being received or compiled at once.
pub(crate) const SUBMISSIONS_PER_TENANT: usize = 4;

/// Who made a call (set by the gate).
#[derive(Clone)]
pub(crate) struct Caller(pub Principal);

/// A job slot taken for a `SubmitJob`, for its handler to take.
#[derive(Clone)]
pub(crate) struct Ticket(Arc<Mutex<Option<Admitted>>>);

/// What a submission holds until its job is recorded: its job slot, and
/// its place among its tenant's submissions in progress.
pub(crate) struct Admitted {
    pub slot: JobSlot,
    pub submitting: Submitting,
}

impl Ticket {
    pub(crate) fn take(&self) -> Option<Admitted> {
        self.0.lock().take()
    }
}

/// The tower layer that puts a [`Gate`] in front of a service.
#[derive(Clone)]
pub(crate) struct GateLayer {
    head: Arc<Head>,
}

impl GateLayer {
    pub(crate) fn new(head: Arc<Head>) -> Self {
        GateLayer { head }
    }
}

/// Submissions being received or compiled, per tenant (shared by every
/// way in: this gate and the Jobs API).
#[derive(Default)]
pub(crate) struct Submissions(Arc<Mutex<HashMap<Arc<str>, usize>>>);

impl Submissions {
    /// Counts one more submission of `tenant`, unless it has
    /// [`SUBMISSIONS_PER_TENANT`] in progress.
    pub(crate) fn begin(&self, tenant: &Arc<str>) -> Result<Submitting, crate::error::FabricError> {
        let mut counts = self.0.lock();
        let n = counts.entry(tenant.clone()).or_default();
        if *n >= SUBMISSIONS_PER_TENANT {
            return Err(crate::error::FabricError::limit(
                "submissions",
                SUBMISSIONS_PER_TENANT as u64,
                format!("tenant `{tenant}` already has {n} jobs being submitted"),
            ));
        }
        *n += 1;
        Ok(Submitting {
            counts: self.0.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    layer: GateLayer,
}

/// One submission in progress for a tenant; dropping it ends it.
pub(crate) struct Submitting {
    counts: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    tenant: Arc<str>,
}

impl Drop for Submitting {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.tenant);
            }
        }
    }
}

impl GateLayer {
    /// Checks the caller and, for a submission, takes what it needs.
    fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let who = self.head.tokens().authorize_headers(request.headers())?;
        let tenant: Arc<str> = who.tenant().into();
        let begin = || {
            let submissions = &self.head.submissions;
            submissions
                .begin(&tenant)
                .map_err(|e| Status::resource_exhausted(e.to_string()))
        };
        if request.uri().path() == SUBMIT_JOB_PATH {
            let submitting = begin()?;
            let slot = self.head.reserve_job(&tenant)?;
            let admitted = Admitted { slot, submitting };
            request
                .extensions_mut()
                .insert(Ticket(Arc::new(Mutex::new(Some(admitted)))));
        }
        if request.uri().path() == SERVE_DEPLOY_PATH {
            let receiving = Receiving(Arc::new(begin()?));
            request.extensions_mut().insert(receiving);
        }
        request.extensions_mut().insert(Caller(who));
        Ok(())
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Gate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.layer.admit(&mut request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            // Answered from the headers: the body is dropped unread.
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
