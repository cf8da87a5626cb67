//! Actors that live by reference (Ray's rule): an actor that is neither
//! named nor detached is stopped once the last handle to it is dropped
//! anywhere in the cluster.
//!
//! A handle is a reference to the actor's handle object (see
//! [`crate::object_store::ObjectStore::anchor`]), owned by the node that
//! created the actor, so the object store's counting (guests' handles,
//! handles nested in objects, borrows by other nodes) is the actor's. When
//! the handle object is freed, [`StopUnreferenced`] queues a stop on the
//! actor, here or through the port: it runs after the calls queued before
//! it, so `let r = actor.f().remote(); drop(actor); get(r)` still works.

use std::sync::{Arc, Weak};

use crate::ids::{ActorId, JobId, ObjectId};
use crate::object_store::AnchorFreed;
use crate::runtime::NodeCore;
use crate::runtime::actor::ActorCall;
use crate::runtime::task::Reply;

/// The method name of a stop: empty, a name no guest can call (`check_name`
/// refuses it).
const STOP: &str = "";

impl ActorCall {
    /// A call that stops the actor once the calls queued before it ran.
    pub fn stop() -> Self {
        ActorCall {
            method: STOP.into(),
            args: Vec::new(),
            nested: Vec::new(),
            result: ObjectId::random(),
            reply: Reply::Local,
            stream: None,
            queued_us: 0,
            keep: None,
        }
    }

    /// Whether this is a [`ActorCall::stop`].
    pub fn is_stop(&self) -> bool {
        &*self.method == STOP
    }
}

/// The store's hook: stops an actor whose last handle went.
pub(crate) struct StopUnreferenced(pub Weak<NodeCore>);

impl AnchorFreed for StopUnreferenced {
    fn freed(&self, actor: ActorId, job: JobId) {
        let Some(core) = self.0.upgrade() else {
            return;
        };
        let runtime = core.runtime().clone();
        runtime.spawn(stop(core, actor, job));
    }
}

async fn stop(core: Arc<NodeCore>, actor: ActorId, job: JobId) {
    // A job that ended here already stopped its actors.
    let Some(job) = core.jobs().get(&job).map(|j| j.clone()) else {
        return;
    };
    if job.is_finished() {
        return;
    }
    tracing::debug!(actor = %actor.short(), "the last handle went: stopping the actor");
    let record = core.actors().get(&actor).map(|r| r.clone());
    match record {
        Some(record) => record.call(&core, ActorCall::stop()),
        None => {
            if let Err(e) = core
                .port()
                .call_actor(actor, &job.tenant, ActorCall::stop())
                .await
            {
                tracing::debug!(actor = %actor.short(), error = %e, "no actor to stop");
            }
        }
    }
}
