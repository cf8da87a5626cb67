//! Actors across nodes: placed once, registered with the head's directory,
//! called directly on the node that hosts them.

use std::sync::Arc;
use std::time::Duration;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::convert::{
    actor_id, error_from_pb, id_bytes, node_id, object_id, resources_checked, resources_to_pb,
    rpc_failure, status_failure,
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

/// Where an actor lives and which tenant owns it.
#[derive(Clone, Debug)]
pub(crate) struct ActorPlace {
    pub node: NodeId,
    pub tenant: Arc<str>,
}

impl ActorPlace {
    fn of(info: &pb::ActorInfo) -> Option<ActorPlace> {
        Some(ActorPlace {
            node: node_id(&info.node_id).ok()?,
            tenant: info.tenant.as_str().into(),
        })
    }
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
        tenant: spec.job.tenant.to_string(),
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
                let id = actor_id(&info.actor_id).map_err(status_failure)?;
                if let Some(place) = ActorPlace::of(&info) {
                    self.actor_nodes.insert(id, place);
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
        let tenant = spec.job.tenant.clone();
        self.actor_nodes.insert(id, ActorPlace { node, tenant });
        if node == self.id {
            if let Some(key) = &spec.name {
                core.named_actors.insert(key.clone(), id);
            }
            let mut held = self.early_calls.entry(id).or_default();
            let record = actor::spawn(&core, spec);
            for call in std::mem::take(&mut *held) {
                record.call(&core, call);
            }
            drop(held);
            self.early_calls.remove(&id);
            return Ok(id);
        }
        let sent: Result<(), FabricError> = async {
            let (args, nested) = self
                .send_args(&spec.args, &spec.nested, spec.job.id, node)
                .await?;
            let (namespace, name) = spec.name.clone().unwrap_or_default();
            let msg = pb::CreateActor {
                job: Some(self.job_info(&spec.job)),
                actor_id: id_bytes(id.as_u128()),
                class: spec.class.to_string(),
                args,
                nested,
                demand: Some(resources_to_pb(&spec.demand)),
                name,
                namespace,
                detached: spec.detached,
            };
            if self.send_to(node, pb::peer_message::Kind::CreateActor(msg)) {
                Ok(())
            } else {
                Err(FabricError::ActorDied(format!(
                    "node {} chosen for the actor is unreachable",
                    node.short()
                )))
            }
        }
        .await;
        if let Err(e) = &sent {
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

    /// Where an actor of `tenant` lives: the cache, else the head's
    /// directory. Another tenant's actor is not found, exactly as a missing
    /// one (no existence oracle).
    async fn actor_node(&self, id: ActorId, tenant: &str) -> Result<NodeId, FabricError> {
        let not_found = || FabricError::NotFound(format!("actor {id}"));
        if let Some(p) = self.actor_nodes.get(&id) {
            return if &*p.tenant == tenant {
                Ok(p.node)
            } else {
                Err(not_found())
            };
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
            .filter(|a| reply.found && a.tenant == tenant)
            .ok_or_else(not_found)?;
        if info.dead {
            return Err(FabricError::ActorDied(info.death));
        }
        let place = ActorPlace::of(&info).ok_or_else(not_found)?;
        let node = place.node;
        self.actor_nodes.insert(id, place);
        Ok(node)
    }

    /// Sends a call to the node hosting the actor. Calls from this node
    /// reach it in the order they were made.
    pub(crate) async fn call_actor(
        self: &Arc<Self>,
        id: ActorId,
        tenant: &str,
        call: ActorCall,
    ) -> Result<(), FabricError> {
        let node = self.actor_node(id, tenant).await?;
        if node == self.id {
            // The directory says here, but it is not (yet) in the registry.
            self.hold_or_deliver(id, call);
            return Ok(());
        }
        let job = self
            .core()
            .and_then(|c| c.objects.lookup(call.result))
            .map(|r| r.job())
            .unwrap_or(JobId::from_u128(0));
        let (args, nested) = self.send_args(&call.args, &call.nested, job, node).await?;
        let msg = pb::ActorCall {
            actor_id: id_bytes(id.as_u128()),
            method: call.method.to_string(),
            args,
            nested,
            result_id: id_bytes(call.result.as_u128()),
        };
        let mut keep: Vec<ObjectRef> = call
            .args
            .iter()
            .filter_map(TaskArg::object)
            .cloned()
            .collect();
        keep.extend(call.nested);
        self.remote_calls.insert(
            call.result,
            RemoteCall {
                node,
                job,
                _args: keep,
            },
        );
        if self.peer_view(node).is_none()
            || !self.send_to(node, pb::peer_message::Kind::ActorCall(msg))
        {
            self.remote_calls.remove(&call.result);
            return Err(FabricError::ActorDied(format!(
                "node {} hosting actor {id} is unreachable",
                node.short()
            )));
        }
        Ok(())
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
                    self.actor_nodes.insert(id, place);
                }
                Ok(id)
            }
            None => Err(FabricError::NotFound(format!(
                "no actor named `{name}` in namespace `{}`",
                crate::runtime::job::shown_namespace(namespace)
            ))),
        }
    }

    /// An actor hosted here died (or never started): the directory learns it.
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

    /// Creates here an actor another node placed on this one. If it cannot
    /// be, it is recorded dead, so its calls fail with the reason.
    pub(crate) async fn on_create_actor(
        self: &Arc<Self>,
        from: NodeId,
        c: pb::CreateActor,
    ) -> Result<(), Status> {
        let id = actor_id(&c.actor_id)?;
        let job_id = c
            .job
            .as_ref()
            .and_then(|j| super::convert::job_id(&j.job_id).ok())
            .unwrap_or(JobId::from_u128(0));
        let args = self.receive_args(&c.args, job_id);
        let nested = self.receive_refs(&c.nested, job_id);
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let job = match &c.job {
            Some(info) => self.ensure_job(from, info).await,
            None => Err(Status::invalid_argument("an actor without its job")),
        };
        let spec: Result<ActorSpec, FabricError> = (|| {
            let job = job.clone().map_err(status_failure)?;
            let demand = resources_checked(c.demand.as_ref())?;
            core.scheduler.check_feasible(&demand)?;
            Ok(ActorSpec {
                id,
                job,
                class: c.class.clone().into(),
                args: args.map_err(status_failure)?,
                nested: nested.map_err(status_failure)?,
                demand,
                name: (!c.name.is_empty()).then(|| (c.namespace.clone(), c.name.clone())),
                detached: c.detached,
            })
        })();
        let tenant = c
            .job
            .as_ref()
            .map(|j| j.tenant.as_str())
            .unwrap_or_default();
        self.actor_nodes.insert(
            id,
            ActorPlace {
                node: self.id,
                tenant: tenant.into(),
            },
        );
        let mut held = self.early_calls.entry(id).or_default();
        match spec {
            Ok(spec) => {
                if let Some(key) = &spec.name {
                    core.named_actors.insert(key.clone(), id);
                }
                let record = actor::spawn(&core, spec);
                for call in std::mem::take(&mut *held) {
                    record.call(&core, call);
                }
            }
            Err(e) => {
                let reason = format!(
                    "actor {}({}) could not be created on node {}: {e}",
                    c.class,
                    id.short(),
                    self.id.short()
                );
                if let Ok(job) = job {
                    actor::record_dead(&core, id, job, c.class.clone().into(), reason.clone());
                }
                for call in std::mem::take(&mut *held) {
                    core.complete(
                        call.result,
                        call.reply,
                        Err(FabricError::ActorDied(reason.clone())),
                    );
                }
                self.actor_died(id, reason);
            }
        }
        drop(held);
        self.early_calls.remove(&id);
        Ok(())
    }

    /// A call from another node for an actor hosted here; any failure to
    /// queue it goes back as its result.
    pub(crate) fn on_actor_call(
        self: &Arc<Self>,
        from: NodeId,
        c: pb::ActorCall,
    ) -> Result<(), Status> {
        let result = object_id(&c.result_id)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let id = match actor_id(&c.actor_id) {
            Ok(id) => id,
            Err(s) => {
                self.send_result(from, JobId::from_u128(0), result, Err(status_failure(s)));
                return Ok(());
            }
        };
        let job = core
            .actors
            .get(&id)
            .map(|r| r.job.id)
            .unwrap_or(JobId::from_u128(0));
        let args = self.receive_args(&c.args, job);
        let nested = self.receive_refs(&c.nested, job);
        let (args, nested) = match (args, nested) {
            (Ok(a), Ok(n)) => (a, n),
            (Err(s), _) | (_, Err(s)) => {
                self.send_result(from, job, result, Err(status_failure(s)));
                return Ok(());
            }
        };
        let call = ActorCall {
            method: c.method.into(),
            args,
            nested,
            result,
            reply: Reply::Remote { owner: from, job },
        };
        self.hold_or_deliver(id, call);
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

    /// Delivers a call to the actor, or holds it while the actor is being
    /// created here. Both happen under the same lock as the creation's
    /// delivery of held calls, so calls keep their order.
    fn hold_or_deliver(self: &Arc<Self>, id: ActorId, call: ActorCall) {
        let Some(core) = self.core() else { return };
        let mut held = self.early_calls.entry(id).or_default();
        if let Some(record) = core.actors.get(&id).map(|r| r.clone()) {
            drop(held);
            self.early_calls.remove_if(&id, |_, calls| calls.is_empty());
            return record.call(&core, call);
        }
        let result = call.result;
        held.push(call);
        drop(held);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_CALL_WAIT).await;
            let mut stale = None;
            if let Some(mut calls) = cluster.early_calls.get_mut(&id)
                && let Some(i) = calls.iter().position(|c| c.result == result)
            {
                stale = Some(calls.remove(i));
            }
            if let (Some(call), Some(core)) = (stale, cluster.core()) {
                let e = FabricError::ActorDied(format!(
                    "actor {id} never started on node {}",
                    cluster.id.short()
                ));
                core.complete(call.result, call.reply, Err(e));
            }
        });
    }
}
