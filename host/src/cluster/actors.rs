//! Actors across nodes: placed once, registered with the head's directory,
//! called directly on the node that hosts them.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::convert::{
    actor_id, error_from_pb, id_bytes, node_id, object_id, resources_from_pb, resources_to_pb,
    rpc_failure,
};
use crate::error::FabricError;
use crate::ids::{ActorId, JobId, NodeId};
use crate::object_store::ObjectRef;
use crate::placement::{Placement, Strategy, place};
use crate::runtime::actor::{self, ActorCall, ActorSpec};
use crate::runtime::task::{Reply, TaskArg};

/// How long a call for an actor this node is still creating may wait.
const EARLY_CALL_WAIT: Duration = Duration::from_secs(30);

/// An actor call this node sent to another node, until its result comes.
pub(crate) struct RemoteCall {
    pub node: NodeId,
    pub job: JobId,
    /// The call's arguments stay referenced until it ends.
    _args: Vec<ObjectRef>,
}

fn actor_info(spec: &ActorSpec, node: NodeId) -> pb::ActorInfo {
    let (namespace, name) = spec.name.clone().unwrap_or_default();
    pb::ActorInfo {
        actor_id: id_bytes(spec.id.as_u128()),
        class: spec.class.to_string(),
        name,
        namespace,
        node_id: id_bytes(node.as_u128()),
        job_id: id_bytes(spec.job.id.as_u128()),
        detached: spec.detached,
        dead: false,
        death: String::new(),
    }
}

impl Cluster {
    /// Places and creates an actor; registers it in the head's directory
    /// first (which also keeps names unique across the cluster).
    pub(crate) async fn create_actor(
        self: &Arc<Self>,
        spec: ActorSpec,
        strategy: Strategy,
        get_if_exists: bool,
    ) -> Result<ActorId, FabricError> {
        let core = self.core().ok_or(FabricError::Cancelled)?;
        let node = match self
            .with_candidates(|c| place(&spec.demand, &strategy, c, &[], &self.spread_cursor))
        {
            Placement::Local => self.id,
            Placement::Remote(n) => n,
            Placement::Infeasible(e) => return Err(e),
        };
        let reply = self
            .head
            .clone()
            .register_actor(pb::RegisterActorRequest {
                actor: Some(actor_info(&spec, node)),
                get_if_exists,
            })
            .await
            .map_err(|s| rpc_failure("RegisterActor", &s))?
            .into_inner();
        match reply.outcome {
            Some(pb::register_actor_reply::Outcome::Registered(_)) => {}
            Some(pb::register_actor_reply::Outcome::Existing(info)) => {
                let id = actor_id(&info.actor_id)
                    .map_err(|s| FabricError::InvalidArgument(s.message().into()))?;
                if let Ok(n) = node_id(&info.node_id) {
                    self.actor_nodes.insert(id, n);
                }
                return Ok(id);
            }
            Some(pb::register_actor_reply::Outcome::Error(e)) => return Err(error_from_pb(&e)),
            None => {
                return Err(FabricError::InvalidArgument(
                    "the head sent an empty reply".into(),
                ));
            }
        }
        let id = spec.id;
        self.actor_nodes.insert(id, node);
        if node == self.id {
            if let Some(key) = &spec.name {
                core.named_actors.insert(key.clone(), id);
            }
            actor::spawn(&core, spec);
            self.deliver_early_calls(id);
            return Ok(id);
        }
        let mut args = Vec::with_capacity(spec.args.len());
        for a in &spec.args {
            let kind = match a {
                TaskArg::Value(b) => pb::arg::Kind::Value(b.clone()),
                TaskArg::Object(r) => pb::arg::Kind::Object(self.lend(r, node).await?),
            };
            args.push(pb::Arg { kind: Some(kind) });
        }
        let (namespace, name) = spec.name.clone().unwrap_or_default();
        let msg = pb::CreateActor {
            job: Some(self.job_info(&spec.job)),
            actor_id: id_bytes(id.as_u128()),
            class: spec.class.to_string(),
            args,
            nested: self.lend_all(&spec.nested, node).await?,
            demand: Some(resources_to_pb(&spec.demand)),
            name,
            namespace,
            detached: spec.detached,
        };
        if !self.send_to(node, pb::peer_message::Kind::CreateActor(msg)) {
            return Err(FabricError::ActorDied(format!(
                "node {} chosen for the actor is unreachable",
                node.short()
            )));
        }
        Ok(id)
    }

    /// Where an actor lives: the cache, else the head's directory.
    async fn actor_node(&self, id: ActorId) -> Result<NodeId, FabricError> {
        if let Some(n) = self.actor_nodes.get(&id) {
            return Ok(*n);
        }
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
            .filter(|_| reply.found)
            .ok_or_else(|| FabricError::NotFound(format!("actor {id}")))?;
        if info.dead {
            return Err(FabricError::ActorDied(info.death));
        }
        let node = node_id(&info.node_id).map_err(|s| FabricError::NotFound(s.message().into()))?;
        self.actor_nodes.insert(id, node);
        Ok(node)
    }

    /// Sends a call to the node hosting the actor. Calls from this node
    /// reach it in the order they were made.
    pub(crate) async fn call_actor(
        self: &Arc<Self>,
        id: ActorId,
        call: ActorCall,
    ) -> Result<(), FabricError> {
        let node = self.actor_node(id).await?;
        if node == self.id {
            // The directory says here, but it is not (yet) in the registry.
            self.hold_early_call(id, call);
            return Ok(());
        }
        let mut args = Vec::with_capacity(call.args.len());
        let mut keep = Vec::new();
        for a in &call.args {
            let kind = match a {
                TaskArg::Value(b) => pb::arg::Kind::Value(b.clone()),
                TaskArg::Object(r) => {
                    keep.push(r.clone());
                    pb::arg::Kind::Object(self.lend(r, node).await?)
                }
            };
            args.push(pb::Arg { kind: Some(kind) });
        }
        let job = self
            .core()
            .and_then(|c| c.objects.lookup(call.result))
            .map(|r| r.job())
            .unwrap_or(JobId::from_u128(0));
        let msg = pb::ActorCall {
            actor_id: id_bytes(id.as_u128()),
            method: call.method.to_string(),
            args,
            nested: self.lend_all(&call.nested, node).await?,
            result_id: id_bytes(call.result.as_u128()),
        };
        keep.extend(call.nested);
        self.remote_calls.insert(
            call.result,
            RemoteCall {
                node,
                job,
                _args: keep,
            },
        );
        if !self.send_to(node, pb::peer_message::Kind::ActorCall(msg)) {
            self.remote_calls.remove(&call.result);
            return Err(FabricError::ActorDied(format!(
                "node {} hosting actor {id} is unreachable",
                node.short()
            )));
        }
        Ok(())
    }

    /// Stops an actor wherever it lives.
    pub(crate) async fn kill_actor(&self, id: ActorId) -> Result<(), FabricError> {
        let node = self.actor_node(id).await?;
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
                let id = actor_id(&info.actor_id)
                    .map_err(|s| FabricError::NotFound(s.message().into()))?;
                if let Ok(n) = node_id(&info.node_id) {
                    self.actor_nodes.insert(id, n);
                }
                Ok(id)
            }
            None => Err(FabricError::NotFound(format!(
                "no actor named `{name}` in namespace `{namespace}`"
            ))),
        }
    }

    /// An actor hosted here died: the directory learns it.
    pub(crate) fn actor_died(self: &Arc<Self>, id: ActorId, reason: String) {
        let mut head = self.head.clone();
        tokio::spawn(async move {
            let req = pb::ActorDiedRequest {
                actor_id: id_bytes(id.as_u128()),
                reason,
            };
            if let Err(s) = head.actor_died(req).await {
                tracing::debug!(error = %s.message(), "telling the head an actor died failed");
            }
        });
    }

    /// Creates here an actor another node placed on this one.
    pub(crate) async fn on_create_actor(
        self: &Arc<Self>,
        from: NodeId,
        c: pb::CreateActor,
    ) -> Result<(), Status> {
        let info = c
            .job
            .ok_or_else(|| Status::invalid_argument("an actor without its job"))?;
        let job = self.ensure_job(from, &info).await?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let mut args = Vec::with_capacity(c.args.len());
        for a in &c.args {
            args.push(match &a.kind {
                Some(pb::arg::Kind::Value(b)) => TaskArg::Value(b.clone()),
                Some(pb::arg::Kind::Object(r)) => TaskArg::Object(self.receive_ref(r, job.id)?),
                None => return Err(Status::invalid_argument("an empty argument")),
            });
        }
        let id = actor_id(&c.actor_id)?;
        let name = (!c.name.is_empty()).then(|| (c.namespace.clone(), c.name.clone()));
        if let Some(key) = &name {
            core.named_actors.insert(key.clone(), id);
        }
        actor::spawn(
            &core,
            ActorSpec {
                id,
                job,
                class: c.class.into(),
                args,
                nested: self.receive_refs(&c.nested, JobId::from_u128(0))?,
                demand: resources_from_pb(c.demand.as_ref()),
                name,
                detached: c.detached,
            },
        );
        self.actor_nodes.insert(id, self.id);
        self.deliver_early_calls(id);
        Ok(())
    }

    /// A call from another node for an actor hosted here.
    pub(crate) fn on_actor_call(
        self: &Arc<Self>,
        from: NodeId,
        c: pb::ActorCall,
    ) -> Result<(), Status> {
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let id = actor_id(&c.actor_id)?;
        let result = object_id(&c.result_id)?;
        let job = core
            .actors
            .get(&id)
            .map(|r| r.job.id)
            .unwrap_or(JobId::from_u128(0));
        let mut args = Vec::with_capacity(c.args.len());
        for a in &c.args {
            args.push(match &a.kind {
                Some(pb::arg::Kind::Value(b)) => TaskArg::Value(b.clone()),
                Some(pb::arg::Kind::Object(r)) => TaskArg::Object(self.receive_ref(r, job)?),
                None => return Err(Status::invalid_argument("an empty argument")),
            });
        }
        let call = ActorCall {
            method: c.method.into(),
            args,
            nested: self.receive_refs(&c.nested, job)?,
            result,
            reply: Reply::Remote { owner: from, job },
        };
        match core.actors.get(&id).map(|r| r.clone()) {
            Some(record) => record.call(&core, call),
            None => self.hold_early_call(id, call),
        }
        Ok(())
    }

    pub(crate) fn on_kill_actor(&self, k: pb::KillActor) {
        let Some(core) = self.core() else { return };
        let Ok(id) = actor_id(&k.actor_id) else {
            return;
        };
        if let Some(record) = core.actors.get(&id).map(|r| r.clone()) {
            actor::kill(&core, &record, k.reason);
        }
    }

    /// Keeps a call for an actor being created here until it exists; fails
    /// it if it never comes.
    fn hold_early_call(self: &Arc<Self>, id: ActorId, call: ActorCall) {
        self.early_calls.entry(id).or_default().push(call);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_CALL_WAIT).await;
            let stale = cluster
                .early_calls
                .remove(&id)
                .map(|(_, calls)| calls)
                .unwrap_or_default();
            if let Some(core) = cluster.core() {
                for call in stale {
                    let e = FabricError::ActorDied(format!(
                        "actor {id} never started on node {}",
                        cluster.id.short()
                    ));
                    core.complete(call.result, call.reply, Err(e));
                }
            }
        });
    }

    fn deliver_early_calls(self: &Arc<Self>, id: ActorId) {
        let Some(core) = self.core() else { return };
        if let Some((_, calls)) = self.early_calls.remove(&id)
            && let Some(record) = core.actors.get(&id).map(|r| r.clone())
        {
            for call in calls {
                record.call(&core, call);
            }
        }
    }
}
