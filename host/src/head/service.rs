//! The `Head` gRPC service that nodes call: a thin adapter that checks the
//! request's shape, converts it to the head's records and calls [`Head`].

use std::sync::Arc;

use tonic::{Request, Response, Status};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::head_server::Head as HeadRpc;

use super::Head;
use super::actors::ActorOutcome;
use super::members::Joining;
use super::records::NodeLoad;
use super::wire;
use crate::wire::{actor_id, error_to_pb, node_id, resources_from_pb};

/// Serves [`Head`] to the cluster's nodes.
pub(crate) struct HeadService(pub Arc<Head>);

fn actor_reply(outcome: ActorOutcome) -> pb::RegisterActorReply {
    use pb::register_actor_reply::Outcome;
    let outcome = match outcome {
        ActorOutcome::Registered => Outcome::Registered(pb::Empty {}),
        ActorOutcome::Existing(a) => Outcome::Existing(wire::actor_to_pb(&a)),
        ActorOutcome::Refused(e) => Outcome::Error(error_to_pb(&e)),
    };
    pb::RegisterActorReply {
        outcome: Some(outcome),
    }
}

fn group_reply(
    r: Result<crate::runtime::groups::GroupInfo, crate::error::FabricError>,
) -> pb::GroupReply {
    use pb::group_reply::Outcome;
    pb::GroupReply {
        outcome: Some(match r {
            Ok(info) => Outcome::Group(crate::group_wire::group_to_pb(&info)),
            Err(e) => Outcome::Error(error_to_pb(&e)),
        }),
    }
}

#[tonic::async_trait]
impl HeadRpc for HeadService {
    async fn serve_watch(
        &self,
        request: Request<pb::ServeWatchRequest>,
    ) -> Result<Response<pb::ServeWatchReply>, Status> {
        self.0.count("ServeWatch");
        let reply = super::serve_rpc::watch(&self.0, request.into_inner()).await;
        Ok(Response::new(reply))
    }

    async fn serve_fetch(
        &self,
        request: Request<pb::ServeFetchRequest>,
    ) -> Result<Response<pb::ServeDeployment>, Status> {
        self.0.count("ServeFetch");
        let reply = super::serve_rpc::fetch(&self.0, request.into_inner())?;
        Ok(Response::new(reply))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::GroupReply>, Status> {
        self.0.count("CreateGroup");
        let r = request.into_inner();
        let info = crate::group_wire::group_from_pb(
            r.group
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("a group to create"))?,
        )?;
        Ok(Response::new(group_reply(self.0.create_group(info))))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GroupReply>, Status> {
        self.0.count("GetGroup");
        let r = request.into_inner();
        Ok(Response::new(group_reply(self.0.get_group(r).await)))
    }

    async fn remove_group(
        &self,
        request: Request<pb::RemoveGroupRequest>,
    ) -> Result<Response<pb::GroupReply>, Status> {
        self.0.count("RemoveGroup");
        let r = request.into_inner();
        let id = crate::ids::GroupId::from_u128(crate::wire::parse_id(&r.group_id)?);
        let removed = self.0.remove_group(id, &r.tenant);
        Ok(Response::new(group_reply(removed)))
    }

    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterReply>, Status> {
        self.0.count("Register");
        let r = request.into_inner();
        let joining = Joining {
            id: node_id(&r.node_id)?,
            address: r.address,
            total: resources_from_pb(r.total.as_ref()),
            labels: r.labels,
            object_store_capacity: r.object_store_capacity,
        };
        let id = joining.id;
        let nodes = self.0.register_node(joining).await?;
        Ok(Response::new(pb::RegisterReply {
            nodes: nodes.iter().map(wire::node_to_pb).collect(),
            heartbeat_interval_ms: self.0.heartbeat_interval().as_millis() as u64,
            tenants: self
                .0
                .limits_for(id)
                .iter()
                .map(wire::limit_to_pb)
                .collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatReply>, Status> {
        self.0.count("Heartbeat");
        let r = request.into_inner();
        let id = node_id(&r.node_id)?;
        let load = NodeLoad {
            free: resources_from_pb(r.free.as_ref()),
            queued_tasks: r.queued_tasks,
            running_tasks: r.running_tasks,
            object_store_used: r.object_store_used,
            resident_bytes: r.resident_bytes,
            accounted_bytes: r.accounted_bytes,
            live_instances: r.live_instances,
            peak_instances: r.peak_instances,
            instance_slots: r.instance_slots,
        };
        let tenants = r
            .tenants
            .into_iter()
            .map(wire::tenant_load_from_pb)
            .collect();
        let held = (r.view_epoch, r.view_version);
        let serve = r.serve.into_iter().map(wire::serve_load_from_pb).collect();
        let reply = match self.0.heartbeat(id, load, tenants, held) {
            Some((view, limits)) => {
                self.0.serve_report(id, serve);
                pb::HeartbeatReply {
                    nodes: view.nodes.iter().map(wire::node_to_pb).collect(),
                    reregister: false,
                    tenants: limits.iter().map(wire::limit_to_pb).collect(),
                    partial: view.partial,
                    view_epoch: view.epoch,
                    view_version: view.version,
                    load_interval_ms: view.load_interval.as_millis().min(u32::MAX as u128) as u32,
                }
            }
            None => pb::HeartbeatReply {
                reregister: true,
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.0.count("Deregister");
        self.0.deregister(node_id(&request.into_inner().node_id)?);
        Ok(Response::new(pb::Empty {}))
    }

    async fn register_actor(
        &self,
        request: Request<pb::RegisterActorRequest>,
    ) -> Result<Response<pb::RegisterActorReply>, Status> {
        self.0.count("RegisterActor");
        let r = request.into_inner();
        let info = r
            .actor
            .ok_or_else(|| Status::invalid_argument("no actor"))?;
        let actor = wire::actor_from_pb(info)?;
        let outcome = if r.restart {
            self.0.restart_actor(actor).await?
        } else {
            self.0.register_actor(actor, r.get_if_exists).await?
        };
        Ok(Response::new(actor_reply(outcome)))
    }

    async fn lookup_actor(
        &self,
        request: Request<pb::LookupActorRequest>,
    ) -> Result<Response<pb::LookupActorReply>, Status> {
        self.0.count("LookupActor");
        let found = match request.into_inner().by {
            Some(pb::lookup_actor_request::By::ActorId(id)) => self.0.actor_by_id(actor_id(&id)?),
            Some(pb::lookup_actor_request::By::Name(n)) => {
                self.0.actor_by_name(n.namespace, n.name)
            }
            None => return Err(Status::invalid_argument("look up by id or by name")),
        };
        Ok(Response::new(pb::LookupActorReply {
            found: found.is_some(),
            actor: found.as_ref().map(wire::actor_to_pb),
        }))
    }

    async fn actor_died(
        &self,
        request: Request<pb::ActorDiedRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.0.count("ActorDied");
        let r = request.into_inner();
        self.0.actor_died(actor_id(&r.actor_id)?, r.reason).await?;
        Ok(Response::new(pb::Empty {}))
    }
}
