//! Stateless deployments: an unchanged `wasi:http` proxy component (a
//! Spin or `wasmtime serve` app) behind a route, a fresh instance for each
//! request (see [`crate::runtime::wasi_http`]).
//!
//! There are no replicas to pick: a request takes one of the deployment's
//! `max_ongoing` places, waiting in a queue of at most `max_queued` (503
//! past it), and keeps its place until its instance has finished the
//! response's body or the request's deadline passed. Its instance runs
//! under the deployment's manifest, for its tenant, like any job's.
//!
//! ```no_run
//! # async fn demo(node: fabric_host::Node) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use fabric_host::serve::{Route, Serve, stateless::{Stateless, StatelessPlan}};
//! let app = node.load_http(&std::fs::read("proxy.wasm")?, None).await?;
//! let service = node.start_http_service(app, Arc::new(fabric_host::logs::TerminalSink), Default::default()).await?;
//! let plan = StatelessPlan {
//!     name: "hello".into(), max_ongoing: 64, max_queued: 256,
//!     timeout: std::time::Duration::from_secs(30),
//! };
//! let route = Route::new(None, "/", Stateless::start(service, plan), None, 1 << 20, 16 << 20);
//! let serve = Serve::start("127.0.0.1:8000".parse()?, Default::default(), vec![route], Default::default()).await?;
//! println!("serving on http://{}", serve.address());
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{FabricError, FailureKind};
use crate::runtime::wasi_http::{HttpBody, HttpService};
use crate::serve::deployment::ServeError;
use crate::serve::stats::{DeploymentReading, RequestStats};
use axum::http;

/// What a stateless deployment is.
#[derive(Clone, Debug)]
pub struct StatelessPlan {
    pub name: String,
    /// Requests at instances at once.
    pub max_ongoing: u32,
    /// Requests waiting for a place before more get 503.
    pub max_queued: u32,
    /// The longest a request may take, its body's streaming included.
    pub timeout: Duration,
}

/// A running stateless deployment.
pub struct Stateless {
    pub name: String,
    service: HttpService,
    places: Arc<Semaphore>,
    max_ongoing: usize,
    queued: AtomicUsize,
    max_queued: usize,
    timeout: Duration,
    pub stats: RequestStats,
}

impl Stateless {
    pub fn start(service: HttpService, plan: StatelessPlan) -> Arc<Self> {
        let max_ongoing = plan.max_ongoing.max(1) as usize;
        Arc::new(Stateless {
            name: plan.name,
            service,
            places: Arc::new(Semaphore::new(max_ongoing)),
            max_ongoing,
            queued: AtomicUsize::new(0),
            max_queued: plan.max_queued as usize,
            timeout: plan.timeout,
            stats: RequestStats::default(),
        })
    }

    /// The tenant its instances run for.
    pub fn tenant(&self) -> &str {
        self.service.tenant()
    }

    /// The deadline of a request that arrives now.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// A place for one request, waiting in the bounded queue until
    /// `deadline` for one to free.
    pub async fn reserve(&self, deadline: Instant) -> Result<Place, ServeError> {
        if let Ok(permit) = self.places.clone().try_acquire_owned() {
            return Ok(Place(permit));
        }
        // Counted before the check, so two arrivals cannot both pass it;
        // uncounted by a guard, so a caller who leaves while it waits
        // (its future dropped) leaves no count behind.
        let waiting = Waiting::count(&self.queued);
        if waiting.ahead >= self.max_queued {
            return Err(ServeError::Overloaded);
        }
        let waited = tokio::time::timeout_at(deadline, self.places.clone().acquire_owned()).await;
        drop(waiting);
        match waited {
            Ok(Ok(permit)) => Ok(Place(permit)),
            Ok(Err(_)) => Err(ServeError::Unavailable("the deployment stopped".into())),
            Err(_) => Err(ServeError::Timeout(self.timeout)),
        }
    }

    /// Answers `request` with a fresh instance, which keeps `place` until
    /// it has finished the body (or the deadline passed).
    pub async fn run(
        &self,
        place: Place,
        request: http::Request<Bytes>,
        deadline: Instant,
    ) -> Result<http::Response<HttpBody>, ServeError> {
        self.service
            .handle(request, deadline, place)
            .await
            .map_err(|e| self.serve_error(e))
    }

    fn serve_error(&self, e: FabricError) -> ServeError {
        match e {
            FabricError::Timeout => ServeError::Timeout(self.timeout),
            // The pool, the tenant's share or quota, or the deployment's
            // live instances are full: overload, not a fault of the request.
            FabricError::LimitExceeded { ref name, .. } if SLOT_LIMITS.contains(&name.as_str()) => {
                ServeError::Overloaded
            }
            FabricError::TaskFailed(ref f)
                if matches!(
                    f.kind,
                    FailureKind::ApplicationError | FailureKind::BadValue
                ) =>
            {
                ServeError::Handler(e.to_string())
            }
            FabricError::InvalidArgument(m) => ServeError::Handler(m),
            other => ServeError::ReplicaFailed(other.to_string()),
        }
    }

    /// Its figures for the metrics.
    pub fn reading(&self) -> DeploymentReading {
        DeploymentReading {
            name: self.name.clone(),
            by_class: self.stats.by_class(),
            latency: self.stats.latency(),
            replicas: 0,
            starting: 0,
            ongoing: self.max_ongoing - self.places.available_permits(),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }
}

/// The bounds an instance's slot is refused by (see
/// [`crate::runtime::slots`]).
const SLOT_LIMITS: &[&str] = &[
    "instances",
    "instance-share",
    "instances-quota",
    "live-instances",
];

/// A request counted as queued until dropped.
struct Waiting<'a> {
    queued: &'a AtomicUsize,
    /// Requests queued before this one.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn count(queued: &'a AtomicUsize) -> Self {
        let ahead = queued.fetch_add(1, Ordering::AcqRel);
        Waiting { queued, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's place at a stateless deployment, held by its instance.
pub struct Place(#[allow(dead_code)] OwnedSemaphorePermit);
