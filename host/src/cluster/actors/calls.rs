//! Calls to actors on other nodes: finding where an actor lives (a cache
//! of the head's directory), sending calls in order, and sending again
//! those lost with a node while the actor restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmfabric_proto::v1 as pb;

use super::{ActorPlace, RemoteCall};
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, JobId, NodeId, ObjectId};
use crate::runtime::actor::ActorCall;
use crate::runtime::task::Reply;
use crate::wire::{actor_id, id_bytes, rpc_failure, status_failure};

impl Cluster {
    /// How long a caller waits for an actor whose node died to come back.
    pub(in crate::cluster) fn restart_wait(&self) -> Duration {
        self.config.node_timeout * 4 + Duration::from_secs(30)
    }

    /// Where an actor of `tenant` lives: the cache, else the head's
    /// directory (waiting while it restarts after its node died). Another
    /// tenant's actor is not found, exactly as a missing one (no existence
    /// oracle).
    pub(super) async fn actor_place(
        &self,
        id: ActorId,
        tenant: &str,
    ) -> Result<ActorPlace, FabricError> {
        let not_found = || FabricError::NotFound(format!("actor {id}"));
        if let Some(p) = self.actors.places.get(&id) {
            return if &*p.tenant == tenant {
                Ok(p.clone())
            } else {
                Err(not_found())
            };
        }
        let deadline = Instant::now() + self.restart_wait();
        loop {
            let reply = self
                .head
                .clone()
                .lookup_actor(pb::LookupActorRequest {
                    by: Some(pb::lookup_actor_request::By::ActorId(id_bytes(
                        id.as_u128(),
                    ))),
                })
                .await
                .map_err(|s| rpc_failure("LookupActor", &s))?
                .into_inner();
            let info = reply
                .actor
                .filter(|a| reply.found && a.tenant == tenant)
                .ok_or_else(not_found)?;
            if info.dead {
                return Err(FabricError::ActorDied(info.death));
            }
            if info.restarting {
                if Instant::now() > deadline {
                    return Err(FabricError::ActorDied(format!(
                        "actor {id} did not come back after its node died"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let place = ActorPlace::of(&info).ok_or_else(not_found)?;
            self.actors.remember_place(id, place.clone());
            return Ok(place);
        }
    }

    async fn actor_node(&self, id: ActorId, tenant: &str) -> Result<NodeId, FabricError> {
        self.actor_place(id, tenant).await.map(|p| p.node)
    }

    /// Sends a call to the node hosting the actor. Calls from this node
    /// reach it in the order they were made.
    pub(crate) async fn call_actor(
        self: &Arc<Self>,
        id: ActorId,
        tenant: &str,
        call: ActorCall,
    ) -> Result<(), FabricError> {
        let place = self.actor_place(id, tenant).await?;
        // A watch lost with its node is not a retried call (`rewatch`).
        let retries = match call.is_watch() {
            true => 0,
            false => place.max_task_retries,
        };
        let stop = call.is_stop();
        let sent = self.send_call(id, place, call, retries).await;
        if stop {
            // No handle is left anywhere: no call will look for it again.
            self.actors.places.remove(&id);
        }
        sent
    }

    pub(super) async fn send_call(
        self: &Arc<Self>,
        id: ActorId,
        place: ActorPlace,
        call: ActorCall,
        retries_left: u32,
    ) -> Result<(), FabricError> {
        let node = place.node;
        if node == self.id {
            // The directory says here, but it is not (yet) in the registry.
            self.hold_or_deliver(id, call);
            return Ok(());
        }
        let job = self
            .core()
            .and_then(|c| c.objects().lookup(call.result))
            .map(|r| r.job())
            .unwrap_or(JobId::from_u128(0));
        let (args, nested) = self.send_args(&call.args, &call.nested, job, node).await?;
        let msg = pb::ActorCall {
            actor_id: id_bytes(id.as_u128()),
            method: call.method.to_string(),
            args,
            nested,
            result_id: id_bytes(call.result.as_u128()),
            stream_bound: call.stream.unwrap_or(0),
        };
        let result = call.result;
        let watch = call.is_watch();
        self.actors.calls.insert(
            result,
            RemoteCall {
                node,
                job,
                actor: id,
                tenant: place.tenant,
                call,
                lost: false,
                retries_left,
            },
        );
        if watch {
            self.note_watch(result);
        }
        if self.peer_view(node).is_none()
            || !self.send_to(node, pb::peer_message::Kind::ActorCall(msg))
        {
            self.suspect(node);
            if watch {
                self.rewatch(node, result);
            } else if let Some((_, lost)) = self.actors.calls.remove(&result) {
                if lost.retries_left > 0 {
                    self.retry_call(lost);
                } else {
                    return Err(FabricError::ActorDied(format!(
                        "node {} hosting actor {id} is unreachable",
                        node.short()
                    )));
                }
            }
        }
        Ok(())
    }

    /// A call lost with its node: send it again once the actor is back
    /// (restarted elsewhere, or its node reachable again).
    fn retry_call(&self, lost: RemoteCall) {
        let Some(me) = self.me.upgrade() else { return };
        let resend: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(me.resend(lost));
        tokio::spawn(resend);
    }

    async fn resend(self: Arc<Self>, lost: RemoteCall) {
        let RemoteCall {
            node: failed,
            actor: id,
            tenant,
            call,
            retries_left,
            ..
        } = lost;
        let (result, reply) = (call.result, call.reply);
        let deadline = Instant::now() + self.restart_wait();
        let place = loop {
            self.actors.places.remove_if(&id, |_, p| p.node == failed);
            match self.actor_place(id, &tenant).await {
                Ok(p) if p.node != failed => break Ok(p),
                // Not (yet) declared dead, nor answering: wait for either.
                Ok(_) if self.peer_view(failed).is_none() || self.is_suspect(failed) => {
                    if Instant::now() > deadline {
                        break Err(FabricError::ActorDied(format!(
                            "node {} hosting actor {id} is unreachable",
                            failed.short()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(p) => break Ok(p),
                Err(e) => break Err(e),
            }
        };
        tracing::debug!(actor = %id.short(), from = %failed.short(), "sending a call lost with its node again");
        let sent = match place {
            Ok(p) => self.send_call(id, p, call, retries_left - 1).await,
            Err(e) => Err(e),
        };
        if let (Err(e), Some(core)) = (sent, self.core()) {
            core.complete(result, reply, Err(e));
        }
    }

    /// Stops an actor wherever it lives.
    pub(crate) async fn kill_actor(&self, id: ActorId, tenant: &str) -> Result<(), FabricError> {
        let node = self.actor_node(id, tenant).await?;
        let msg = pb::KillActor {
            actor_id: id_bytes(id.as_u128()),
            reason: format!("actor {} was killed", id.short()),
        };
        if node == self.id {
            self.on_kill_actor(msg);
        } else {
            self.send_to(node, pb::peer_message::Kind::KillActor(msg));
        }
        Ok(())
    }

    /// The actor named `name` in `namespace`, from the head's directory.
    pub(crate) async fn lookup_named(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ActorId, FabricError> {
        let reply = self
            .head
            .clone()
            .lookup_actor(pb::LookupActorRequest {
                by: Some(pb::lookup_actor_request::By::Name(pb::NamedActor {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })),
            })
            .await
            .map_err(|s| rpc_failure("LookupActor", &s))?
            .into_inner();
        match reply.actor.filter(|a| reply.found && !a.dead) {
            Some(info) => {
                let id = actor_id(&info.actor_id).map_err(status_failure)?;
                if let Some(place) = ActorPlace::of(&info) {
                    self.actors.remember_place(id, place);
                }
                Ok(id)
            }
            None => Err(FabricError::NotFound(format!(
                "no actor named `{name}` in namespace `{}`",
                crate::runtime::job::shown_namespace(namespace)
            ))),
        }
    }

    /// The result of a call sent to `from` came: the call is done. Its job,
    /// if it was one this node sent there (only that node may answer).
    pub(in crate::cluster) fn take_call_answered(
        &self,
        id: ObjectId,
        from: NodeId,
    ) -> Option<JobId> {
        self.actors
            .calls
            .remove_if(&id, |_, c| c.node == from)
            .map(|(_, c)| c.job)
    }

    /// A node died: send again (or fail) the calls that were running there.
    pub(in crate::cluster) fn fail_calls_sent_to(&self, node: NodeId) {
        let Some(core) = self.core() else { return };
        let lost: Vec<ObjectId> = self
            .actors
            .calls
            .iter()
            .filter(|c| c.node == node)
            .map(|c| *c.key())
            .collect();
        for id in lost {
            if self
                .actors
                .calls
                .get(&id)
                .is_some_and(|c| c.call.is_watch())
            {
                self.rewatch(node, id);
                continue;
            }
            let Some((_, lost)) = self.actors.calls.remove(&id) else {
                continue;
            };
            if lost.retries_left > 0 {
                self.retry_call(lost);
            } else {
                core.complete(
                    id,
                    Reply::Local,
                    Err(FabricError::ActorDied(format!(
                        "node {} hosting the actor died while it ran this call",
                        node.short()
                    ))),
                );
            }
        }
    }
}
