//! Watches on actors of other nodes (WIT `watch-actor`). A watch goes out
//! as a call (see the runtime's `watch.rs`) and waits among the calls in
//! flight, so the actor's node answers it when the actor ends. This node
//! keeps it honest at both ends: a watch whose node cannot be reached
//! waits (an answer may still come on the other direction's stream) until
//! the node is declared dead or the actor lives elsewhere (it fails), or
//! the node answers again with the actor still there (it is sent again); a
//! watch nobody waits on (its reference dropped, its job ended) is
//! cancelled on the actor's node, so it does not fill that actor's list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmfabric_proto::v1 as pb;

use super::RemoteCall;
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{JobId, NodeId, ObjectId};
use crate::wire::id_bytes;

impl Cluster {
    /// A watch went out among the calls in flight: the sweep looks at it.
    pub(super) fn note_watch(&self, result: ObjectId) {
        self.actors.watching.insert(result, ());
    }

    /// Tells the watched actor's node to drop watch `id`.
    fn unwatch(&self, id: ObjectId, watch: &RemoteCall) {
        let msg = pb::ActorCall {
            actor_id: id_bytes(watch.actor.as_u128()),
            method: crate::runtime::UNWATCH.to_string(),
            args: Vec::new(),
            nested: Vec::new(),
            result_id: id_bytes(id.as_u128()),
            stream_bound: 0,
        };
        self.send_to(watch.node, pb::peer_message::Kind::ActorCall(msg));
    }

    /// `job` ended here: its calls are no longer awaited, its watches are
    /// dropped where they wait, and its actors are not restarted.
    pub(in crate::cluster) fn drop_job_actor_work(&self, job: JobId) {
        for (id, watch) in self.actors.drop_job(job) {
            self.actors.watching.remove(&id);
            self.unwatch(id, &watch);
        }
    }

    /// Cancels the watches whose references are all gone here (run with
    /// each heartbeat), and forgets those that were answered.
    pub(in crate::cluster) fn sweep_watches(&self) {
        let Some(core) = self.core() else { return };
        let ids: Vec<ObjectId> = self.actors.watching.iter().map(|e| *e.key()).collect();
        for id in ids {
            if !self.actors.calls.contains_key(&id) {
                self.actors.watching.remove(&id);
            } else if !core.objects().contains(id) {
                self.actors.watching.remove(&id);
                if let Some((_, watch)) = self.actors.calls.remove(&id) {
                    self.unwatch(id, &watch);
                }
            }
        }
    }

    /// Watch `id`, sent to `node`, could not be delivered there or its
    /// stream broke: it stays among the calls in flight (an answer that
    /// still comes settles it) and one task per node settles the rest once
    /// the node is declared dead (they fire) or answers again (they are
    /// sent again where the actor still lives, and fire where it moved).
    pub(super) fn rewatch(&self, node: NodeId, id: ObjectId) {
        if let Some(mut c) = self.actors.calls.get_mut(&id) {
            c.lost = true;
        }
        if self.actors.rewatching.insert(node, ()).is_some() {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let settle: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(me.settle_lost_watches(node));
        tokio::spawn(settle);
    }

    async fn settle_lost_watches(self: Arc<Self>, node: NodeId) {
        let deadline = Instant::now() + self.restart_wait();
        let verdict = loop {
            if self.peer_view(node).is_none() {
                break Lost::Dead;
            }
            if !self.is_suspect(node) {
                break Lost::Back;
            }
            if Instant::now() > deadline {
                break Lost::Unreachable;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for id in self.lost_watches(node) {
            self.settle_watch(node, id, verdict).await;
        }
        self.actors.rewatching.remove(&node);
        // One lost while this task was finishing: settle it too.
        if let Some(id) = self.lost_watches(node).first() {
            self.rewatch(node, *id);
        }
    }

    fn lost_watches(&self, node: NodeId) -> Vec<ObjectId> {
        let calls = self.actors.calls.iter();
        calls
            .filter(|c| c.node == node && c.lost)
            .map(|c| *c.key())
            .collect()
    }

    async fn settle_watch(self: &Arc<Self>, node: NodeId, id: ObjectId, verdict: Lost) {
        let Some((_, watch)) = self.actors.calls.remove(&id) else {
            return;
        };
        let RemoteCall {
            actor,
            tenant,
            call,
            ..
        } = watch;
        let (result, reply) = (call.result, call.reply);
        let died = |why: String| FabricError::ActorDied(format!("actor {actor} {why}"));
        let settled = match verdict {
            Lost::Dead => Err(died(format!("was lost with node {}", node.short()))),
            Lost::Unreachable => Err(died(format!("is on node {}, unreachable", node.short()))),
            Lost::Back => match self.actor_place(actor, &tenant).await {
                Ok(p) if p.node == node => self.send_call(actor, p, call, 0).await,
                Ok(p) => Err(died(format!("restarted on node {}", p.node.short()))),
                Err(e) => Err(e),
            },
        };
        if let (Err(e), Some(core)) = (settled, self.core()) {
            core.complete(result, reply, Err(e));
        }
    }
}

/// What became of a node whose watches were lost.
#[derive(Clone, Copy)]
enum Lost {
    /// The cluster declared it dead.
    Dead,
    /// It answers again.
    Back,
    /// It neither died nor answered for as long as a restart may take.
    Unreachable,
}
