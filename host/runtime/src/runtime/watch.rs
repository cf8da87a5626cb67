//! Watches on an actor: references that fail with `actor-died` once the
//! actor ends (WIT `watch-actor`).
//!
//! A watch travels as an [`ActorCall`] with a method name no guest can
//! write, so it reaches the actor wherever it lives by the path every call
//! takes, and the cluster fails it as it fails any call in flight when the
//! actor's node dies. It never enters the mailbox: the actor's record keeps
//! it aside ([`Watches`]) and answers it when the actor stops, dies or
//! restarts. A watch is not work: a draining node does not wait for it, and
//! it holds no handle (the actor's lifetime is not its business).
//!
//! A watch nobody waits on any more goes: when the list is full, those
//! whose watcher is on this node and dropped its reference are pruned; a
//! watcher on another node cancels its own ([`UNWATCH`]) when its reference
//! is dropped or its job ends (the cluster's `RemoteActors`).

use parking_lot::Mutex;

use crate::error::FabricError;
use crate::ids::ObjectId;
use crate::runtime::NodeCore;
use crate::runtime::actor::ActorCall;
use crate::runtime::task::Reply;

/// The method name of a watch (`check_name` refuses a NUL to guests).
const WATCH: &str = "\0watch";

/// The method name of a message that cancels the watch whose result id it
/// carries (sent between nodes only).
pub const UNWATCH: &str = "\0unwatch";

/// Watches one actor may have waiting; each is a pending result its
/// watcher's job was charged for, but the actor's node keeps the entry.
pub const MAX_WATCHES: usize = 4096;

impl ActorCall {
    /// A watch whose answer goes to `result` (through `reply`).
    pub fn watch(result: ObjectId, reply: Reply) -> Self {
        ActorCall {
            method: WATCH.into(),
            args: Vec::new(),
            nested: Vec::new(),
            result,
            reply,
            stream: None,
            queued_us: 0,
            keep: None,
        }
    }

    /// Whether this is an [`ActorCall::watch`].
    pub fn is_watch(&self) -> bool {
        &*self.method == WATCH
    }
}

/// The watches waiting on one actor (its incarnation: a restart answers
/// them).
#[derive(Default)]
pub(crate) struct Watches(Mutex<Vec<(ObjectId, Reply)>>);

impl Watches {
    /// Keeps `call` until the actor ends; answers it at once when the actor
    /// is dead already (`death`, read under the lock [`Watches::end`] takes
    /// after the death is recorded, so no watch is left behind).
    pub(crate) fn add(
        &self,
        core: &NodeCore,
        call: ActorCall,
        death: impl FnOnce() -> Option<String>,
    ) {
        let mut waiting = self.0.lock();
        if waiting.len() >= MAX_WATCHES {
            // Watchers here that dropped their reference wait no more.
            let objects = core.objects();
            waiting.retain(|(id, reply)| {
                matches!(reply, Reply::Remote { .. }) || objects.contains(*id)
            });
        }
        let refused = match death() {
            Some(reason) => Some(FabricError::ActorDied(reason)),
            None if waiting.len() >= MAX_WATCHES => Some(FabricError::limit(
                "actor-watches",
                MAX_WATCHES as u64,
                format!("at most {MAX_WATCHES} watches wait on one actor"),
            )),
            None => {
                // Sent again after its stream broke, it may be here already.
                waiting.retain(|(id, _)| *id != call.result);
                waiting.push((call.result, call.reply));
                None
            }
        };
        drop(waiting);
        if let Some(e) = refused {
            core.complete(call.result, call.reply, Err(e));
        }
    }

    /// Drops the watches of watchers on other nodes for which `gone`
    /// (their result id, their node) holds.
    pub(crate) fn cancel(&self, gone: impl Fn(ObjectId, crate::ids::NodeId) -> bool) {
        self.0.lock().retain(|(id, reply)| match reply {
            Reply::Remote { owner, .. } => !gone(*id, *owner),
            Reply::Local => true,
        });
    }

    /// The actor ended (or restarts): every watch fails with `reason`.
    pub(crate) fn end(&self, core: &NodeCore, reason: &str) {
        let ended = std::mem::take(&mut *self.0.lock());
        for (result, reply) in ended {
            core.complete(
                result,
                reply,
                Err(FabricError::ActorDied(reason.to_string())),
            );
        }
    }
}
