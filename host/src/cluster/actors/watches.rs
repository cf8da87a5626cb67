//! Watches on actors of other nodes (WIT `watch-actor`). A watch goes out
//! as a call (see the runtime's `watch.rs`) and waits among the calls in
//! flight, so the actor's node answers it when the actor ends. This node
//! keeps it honest at both ends: a watch whose node cannot be reached is
//! sent again if that node comes back with the actor still there, and
//! fails once the node is declared dead or the actor lives elsewhere; a
//! watch nobody waits on (its reference dropped, its job ended) is
//! cancelled on the actor's node, so it does not fill that actor's list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmfabric_proto::v1 as pb;

use super::RemoteCall;
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{JobId, ObjectId};
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

    /// A watch whose node could not be reached (its stream broke, say):
    /// see the module docs.
    pub(super) fn rewatch(&self, lost: RemoteCall) {
        let Some(me) = self.me.upgrade() else { return };
        let again: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(me.watch_again(lost));
        tokio::spawn(again);
    }

    async fn watch_again(self: Arc<Self>, lost: RemoteCall) {
        let RemoteCall {
            node: failed,
            actor: id,
            tenant,
            call,
            ..
        } = lost;
        let (result, reply) = (call.result, call.reply);
        let deadline = Instant::now() + self.restart_wait();
        let sent = loop {
            if self.peer_view(failed).is_none() {
                break Err(FabricError::ActorDied(format!(
                    "node {} hosting actor {id} died",
                    failed.short()
                )));
            }
            if !self.is_suspect(failed) {
                break match self.actor_place(id, &tenant).await {
                    Ok(p) if p.node == failed => self.send_call(id, p, call, 0).await,
                    Ok(p) => Err(FabricError::ActorDied(format!(
                        "actor {id} lives on node {} now: it restarted",
                        p.node.short()
                    ))),
                    Err(e) => Err(e),
                };
            }
            if Instant::now() > deadline {
                break Err(FabricError::ActorDied(format!(
                    "node {} hosting actor {id} is unreachable",
                    failed.short()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if let (Err(e), Some(core)) = (sent, self.core()) {
            core.complete(result, reply, Err(e));
        }
    }
}
