//! Creating actors from this node: placing them, registering them with the
//! head's directory (which keeps names unique), starting them here or
//! sending them to the node chosen.

use std::sync::Arc;

use wasmfabric_proto::v1 as pb;

use super::{ActorPlace, OwnedActor, actor_info, place_of};
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, NodeId};
use crate::placement::{Placement, Strategy, place};
use crate::runtime::actor::ActorSpec;
use crate::runtime::slots::Holder;
use crate::wire::{
    actor_id, error_from_pb, id_bytes, resources_to_pb, rpc_failure, status_failure,
};

impl Cluster {
    /// Places and creates an actor; registers it in the head's directory
    /// first (which also keeps names unique across the cluster).
    pub(crate) async fn create_actor(
        self: &Arc<Self>,
        spec: ActorSpec,
        strategy: Strategy,
        get_if_exists: bool,
    ) -> Result<ActorId, FabricError> {
        if let Strategy::Bundle { group, index } = &strategy {
            self.placed_bundle(*group, *index, &spec.job.tenant).await?;
        }
        let node = self.place_actor(&spec, &strategy)?;
        // The head checks the tenant's actors quota as it registers the
        // actor; the node that hosts it takes its instance slot.
        if let Some(info) = self
            .register_actor(&spec, node, get_if_exists, false)
            .await?
        {
            let id = actor_id(&info.actor_id).map_err(status_failure)?;
            if let Some(place) = ActorPlace::of(&info) {
                self.actors.remember_place(id, place);
            }
            return Ok(id);
        }
        let id = spec.id;
        self.actors.remember_place(id, place_of(&spec, node));
        if node == self.id {
            return self.start_registered_here(spec);
        }
        if spec.policy.max_restarts > 0 {
            self.actors.owned.insert(
                id,
                OwnedActor {
                    spec: spec.clone(),
                    strategy,
                    node,
                    restarts: 0,
                    checkpoint: None,
                },
            );
        }
        let sent = self.send_create(&spec, node).await;
        if let Err(e) = &sent {
            self.actors.owned.remove(&id);
            // The directory must not keep a name for an actor that never was.
            self.actor_died(
                id,
                format!(
                    "actor {}({}) could not be created: {e}",
                    spec.class,
                    id.short()
                ),
            );
        }
        sent.map(|()| id)
    }

    /// Starts here an actor just registered in the head's directory; if it
    /// gets no instance slot, the directory forgets it (and its name) and
    /// the caller gets the typed refusal.
    fn start_registered_here(self: &Arc<Self>, spec: ActorSpec) -> Result<ActorId, FabricError> {
        let id = spec.id;
        let core = self.core().ok_or(FabricError::Cancelled)?;
        match spec.job.take_slot_for(&core, Holder::Actor, &spec.class) {
            Ok(slot) => {
                self.start_with_held(&core, spec, slot);
                Ok(id)
            }
            Err(e) => {
                self.actors.places.remove(&id);
                let why = format!(
                    "actor {}({}) could not be created: {e}",
                    spec.class,
                    id.short()
                );
                self.actor_died(id, why);
                Err(e)
            }
        }
    }

    /// The node an actor should live on.
    pub(super) fn place_actor(
        &self,
        spec: &ActorSpec,
        strategy: &Strategy,
    ) -> Result<NodeId, FabricError> {
        if let Strategy::Bundle { group, index } = strategy {
            return self.bundle_node(*group, *index).ok_or_else(|| {
                FabricError::ResourcesInfeasible(format!(
                    "placement group {group} has no bundle placed now"
                ))
            });
        }
        match self.with_candidates(|c| {
            place(&spec.demand, strategy, c, &[], self.members.spread_cursor())
        }) {
            Placement::Local => Ok(self.id),
            Placement::Remote(n) => Ok(n),
            Placement::Infeasible(e) => Err(e),
            Placement::Later => Err(FabricError::ResourcesInfeasible(
                "an actor that cannot be placed now".into(),
            )),
        }
    }

    /// Registers the actor on `node` in the head's directory (`restart`:
    /// moves a restarting one there). `Some` is the existing actor that
    /// holds the name, when `get_if_exists` found one.
    pub(super) async fn register_actor(
        &self,
        spec: &ActorSpec,
        node: NodeId,
        get_if_exists: bool,
        restart: bool,
    ) -> Result<Option<pb::ActorInfo>, FabricError> {
        let reply = self
            .head
            .clone()
            .register_actor(pb::RegisterActorRequest {
                actor: Some(actor_info(spec, node, self.id)),
                get_if_exists,
                restart,
            })
            .await
            .map_err(|s| rpc_failure("RegisterActor", &s))?
            .into_inner();
        match reply.outcome {
            Some(pb::register_actor_reply::Outcome::Registered(_)) => Ok(None),
            Some(pb::register_actor_reply::Outcome::Existing(info)) => Ok(Some(info)),
            Some(pb::register_actor_reply::Outcome::Error(e)) => Err(error_from_pb(&e)),
            None => Err(FabricError::InvalidArgument(
                "the head sent an empty reply".into(),
            )),
        }
    }

    /// Starts an actor on this node, then delivers the calls that came for
    /// it before it existed (in order).
    pub(super) fn start_here(&self, spec: ActorSpec) -> Result<(), FabricError> {
        let core = self.core().ok_or(FabricError::Cancelled)?;
        let slot = spec.job.take_slot_for(&core, Holder::Actor, &spec.class)?;
        self.start_with_held(&core, spec, slot);
        Ok(())
    }

    /// Asks `node` to create the actor.
    pub(super) async fn send_create(
        &self,
        spec: &ActorSpec,
        node: NodeId,
    ) -> Result<(), FabricError> {
        let (args, nested) = self
            .send_args(&spec.args, &spec.nested, spec.job.id, node)
            .await?;
        let (namespace, name) = spec.name.clone().unwrap_or_default();
        let msg = pb::CreateActor {
            job: Some(self.job_info(&spec.job)),
            actor_id: id_bytes(spec.id.as_u128()),
            class: spec.class.to_string(),
            args,
            nested,
            demand: Some(resources_to_pb(&spec.demand)),
            name,
            namespace,
            detached: spec.detached,
            max_restarts: spec.policy.max_restarts,
            max_task_retries: spec.policy.max_task_retries,
            max_concurrency: spec.policy.max_concurrency,
            restarts: spec.restarts,
            checkpoint: spec.checkpoint.clone(),
        };
        if self.send_to(node, pb::peer_message::Kind::CreateActor(msg)) {
            Ok(())
        } else {
            self.suspect(node);
            Err(FabricError::ActorDied(format!(
                "node {} chosen for the actor is unreachable",
                node.short()
            )))
        }
    }
}
