//! One deployment's replicas: which one takes a request, how many wait,
//! and a replica that died replaced.
//!
//! A request goes to the less loaded of two replicas drawn at random
//! (power of two choices) among those below `max_ongoing_requests`; when
//! every replica is full it waits, up to `max_queued_requests` of them, for
//! one to finish; beyond that it is refused at once (503), so an overloaded
//! deployment holds no more than its queue.

use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::Notify;

use crate::error::FabricError;
use crate::ids::ActorId;
use crate::runtime::service::{Service, ServiceActor};

/// Why a request was not answered by a replica.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("every replica is busy and the queue is full")]
    Overloaded,
    #[error("the request took longer than {0:?}")]
    Timeout(Duration),
    #[error("the replica failed: {0}")]
    ReplicaFailed(String),
    #[error("the handler failed: {0}")]
    Handler(String),
    #[error("no replica is running")]
    NoReplica,
}

/// One replica: its actor, and the requests it has.
struct Replica {
    actor: ActorId,
    ongoing: AtomicUsize,
}

/// A running deployment.
pub struct Deployment {
    pub name: String,
    service: Service,
    template: ServiceActor,
    method: String,
    max_ongoing: usize,
    max_queued: usize,
    timeout: Duration,
    replicas: Mutex<Vec<Arc<Replica>>>,
    queued: AtomicUsize,
    /// Woken when a request finishes (a place may be free).
    freed: Notify,
}

/// What a deployment is made of, once its component is loaded.
pub struct DeploymentPlan {
    pub name: String,
    pub replica: ServiceActor,
    pub replicas: u32,
    pub method: String,
    pub max_ongoing: u32,
    pub max_queued: u32,
    pub timeout: Duration,
}

impl Deployment {
    /// Starts the plan's replicas in `service`.
    pub async fn start(service: Service, plan: DeploymentPlan) -> Result<Arc<Self>, FabricError> {
        let deployment = Arc::new(Deployment {
            name: plan.name,
            service,
            template: plan.replica,
            method: plan.method,
            max_ongoing: plan.max_ongoing as usize,
            max_queued: plan.max_queued as usize,
            timeout: plan.timeout,
            replicas: Mutex::new(Vec::new()),
            queued: AtomicUsize::new(0),
            freed: Notify::new(),
        });
        for _ in 0..plan.replicas {
            let actor = deployment
                .service
                .create_actor(deployment.template.clone())
                .await?;
            deployment.add(actor);
        }
        Ok(deployment)
    }

    fn add(&self, actor: ActorId) {
        self.replicas.lock().push(Arc::new(Replica {
            actor,
            ongoing: AtomicUsize::new(0),
        }));
        self.freed.notify_waiters();
    }

    /// Replicas running now.
    pub fn replica_count(&self) -> usize {
        self.replicas.lock().len()
    }

    /// Requests waiting for a replica now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Answers one request (its encoded value) with the handler's encoded
    /// result, within the deployment's timeout.
    pub async fn handle(self: &Arc<Self>, request: Bytes) -> Result<Bytes, ServeError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let replica = match tokio::time::timeout_at(deadline, self.place()).await {
            Ok(placed) => placed?,
            Err(_) => return Err(ServeError::Timeout(self.timeout)),
        };
        let _taken = Taken {
            replica: replica.clone(),
            deployment: self.clone(),
        };
        let call = self
            .service
            .call(replica.actor, &self.method, vec![request]);
        match tokio::time::timeout_at(deadline, call).await {
            Err(_) => Err(ServeError::Timeout(self.timeout)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if ends_the_replica(&e) => {
                self.replace(replica.actor);
                Err(ServeError::ReplicaFailed(e.to_string()))
            }
            Ok(Err(e)) => Err(ServeError::Handler(e.to_string())),
        }
    }

    /// A replica with room, taken (its count raised), waiting in the queue
    /// while none has room.
    async fn place(&self) -> Result<Arc<Replica>, ServeError> {
        if let Some(r) = self.try_take()? {
            return Ok(r);
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ServeError::Overloaded);
        }
        let _queued = Queued(&self.queued);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(r) = self.try_take()? {
                return Ok(r);
            }
            freed.await;
        }
    }

    /// Power of two choices over the replicas below the bound.
    fn try_take(&self) -> Result<Option<Arc<Replica>>, ServeError> {
        let replicas = self.replicas.lock();
        if replicas.is_empty() {
            return Err(ServeError::NoReplica);
        }
        let mut rng = rand::rng();
        let a = &replicas[rng.random_range(0..replicas.len())];
        let b = &replicas[rng.random_range(0..replicas.len())];
        let (first, second) =
            match a.ongoing.load(Ordering::Relaxed) <= b.ongoing.load(Ordering::Relaxed) {
                true => (a, b),
                false => (b, a),
            };
        for r in [first, second].into_iter().chain(replicas.iter()) {
            let taken = r
                .ongoing
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                    (n < self.max_ongoing).then_some(n + 1)
                });
            if taken.is_ok() {
                return Ok(Some(r.clone()));
            }
        }
        Ok(None)
    }

    /// Replaces a replica that failed with a new actor (once, by whichever
    /// request saw it fail first): the old one is stopped, whatever its
    /// state, and its queued requests fail (502).
    fn replace(self: &Arc<Self>, dead: ActorId) {
        let removed = {
            let mut replicas = self.replicas.lock();
            let before = replicas.len();
            replicas.retain(|r| r.actor != dead);
            replicas.len() < before
        };
        if !removed {
            return;
        }
        tracing::warn!(deployment = %self.name, actor = %dead, "a replica failed: starting another");
        let me = self.clone();
        tokio::spawn(async move {
            let _ = me.service.kill(dead).await;
            let mut wait = Duration::from_millis(100);
            loop {
                match me.service.create_actor(me.template.clone()).await {
                    Ok(actor) => return me.add(actor),
                    Err(FabricError::Cancelled) => return,
                    Err(e) => {
                        tracing::warn!(deployment = %me.name, error = %e, "cannot start a replica");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }
}

/// Whether a call's failure is the replica's own (its instance trapped,
/// panicked, ran out of a limit, or died) rather than the handler's error.
fn ends_the_replica(e: &FabricError) -> bool {
    use crate::error::FailureKind;
    match e {
        FabricError::ActorDied(_) | FabricError::LimitExceeded { .. } => true,
        FabricError::TaskFailed(f) => {
            matches!(
                f.kind,
                FailureKind::Trap | FailureKind::Panic | FailureKind::System
            )
        }
        _ => false,
    }
}

/// A request's place at a replica; given back however the request ends.
struct Taken {
    replica: Arc<Replica>,
    deployment: Arc<Deployment>,
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.replica.ongoing.fetch_sub(1, Ordering::AcqRel);
        self.deployment.freed.notify_one();
    }
}

/// A request's place in the queue.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
