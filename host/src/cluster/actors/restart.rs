//! Restarts run by an actor's owner (the node that created it) when the
//! node hosting it dies, from the last checkpoint the host sent it.

use std::sync::Arc;

use bytes::Bytes;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::place_of;
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};
use crate::placement::Strategy;
use crate::runtime::actor::ActorSpec;
use crate::wire::{actor_id, id_bytes};

impl Cluster {
    /// The hosting node of a restartable actor this node created died:
    /// restart each such actor elsewhere (or record it dead when it has no
    /// restarts left).
    pub(in crate::cluster) fn restart_owned_actors(&self, dead: NodeId) {
        let Some(me) = self.me.upgrade() else { return };
        let ids: Vec<ActorId> = self
            .actors
            .owned
            .iter()
            .filter(|o| o.node == dead)
            .map(|o| *o.key())
            .collect();
        for id in ids {
            tokio::spawn(me.clone().restart_actor(id, dead));
        }
    }

    async fn restart_actor(self: Arc<Self>, id: ActorId, dead: NodeId) {
        let (spec, strategy) = {
            let Some(mut o) = self.actors.owned.get_mut(&id) else {
                return;
            };
            if o.node != dead {
                return;
            }
            let label = format!("actor {}({})", o.spec.class, id.short());
            if o.restarts >= o.spec.policy.max_restarts
                || o.spec.job.is_finished() && !o.spec.detached
            {
                let why = format!(
                    "{label} died: node {} hosting it died, and it has no restarts left ({} of {} used)",
                    dead.short(),
                    o.restarts,
                    o.spec.policy.max_restarts
                );
                drop(o);
                self.actors.owned.remove(&id);
                return self.actor_died(id, why);
            }
            o.restarts += 1;
            let mut spec = o.spec.clone();
            spec.restarts = o.restarts;
            spec.checkpoint = o.checkpoint.clone();
            (spec, o.strategy.clone())
        };
        let (class, restarts) = (spec.class.clone(), spec.restarts);
        match self.place_again(spec, strategy).await {
            Ok(node) => {
                tracing::warn!(actor = %id.short(), %class, restart = restarts, from = %dead.short(), to = %node.short(), "restarted an actor whose node died")
            }
            Err(e) => {
                self.actors.owned.remove(&id);
                self.actor_died(
                    id,
                    format!(
                        "actor {class}({}) could not be restarted after node {} died: {e}",
                        id.short(),
                        dead.short()
                    ),
                );
            }
        }
    }

    /// Places a restarting actor, moves its directory entry there and
    /// creates it.
    async fn place_again(
        &self,
        spec: ActorSpec,
        strategy: Strategy,
    ) -> Result<NodeId, FabricError> {
        // In a bundle: wait until the head placed it again.
        if let Strategy::Bundle { group, index } = &strategy {
            self.placed_bundle(*group, *index, &spec.job.tenant).await?;
        }
        let node = self.place_actor(&spec, &strategy)?;
        if self
            .register_actor(&spec, node, false, true)
            .await?
            .is_some()
        {
            return Err(FabricError::InvalidArgument(
                "the head sent an unexpected reply to a restart".into(),
            ));
        }
        let id = spec.id;
        self.actors.remember_place(id, place_of(&spec, node));
        if node == self.id {
            // Hosted by its owner now: a later death of this node takes both.
            self.actors.owned.remove(&id);
            self.start_here(spec)?;
        } else {
            if let Some(mut o) = self.actors.owned.get_mut(&id) {
                o.node = node;
            }
            self.send_create(&spec, node).await?;
        }
        Ok(node)
    }

    /// Tells the node that created an actor hosted here what changed.
    pub(crate) fn send_actor_state(
        &self,
        owner: NodeId,
        id: ActorId,
        restarts: u32,
        checkpoint: Option<Bytes>,
        dead: bool,
    ) {
        let msg = pb::ActorState {
            actor_id: id_bytes(id.as_u128()),
            restarts,
            checkpoint,
            dead,
        };
        self.send_to(owner, pb::peer_message::Kind::ActorState(msg));
    }

    /// An actor this node created saved its state, restarted in place, or
    /// died for good. Only the node hosting it may say so.
    pub(crate) fn on_actor_state(&self, from: NodeId, m: pb::ActorState) -> Result<(), Status> {
        let id = actor_id(&m.actor_id)?;
        if m.dead {
            self.actors.owned.remove_if(&id, |_, o| o.node == from);
            return Ok(());
        }
        if let Some(mut o) = self.actors.owned.get_mut(&id)
            && o.node == from
        {
            o.restarts = o.restarts.max(m.restarts);
            if let Some(state) = m.checkpoint {
                o.checkpoint = Some(state);
            }
        }
        Ok(())
    }
}
