//! Actors across nodes: placed once, registered with the head's directory,
//! called directly on the node that hosts them.
//!
//! Restarts after a node death are run by the node that created the actor
//! (its *owner*, as in Ray). For an actor with `max_restarts`, the owner
//! keeps the spec, the restart count and the last checkpoint the actor saved
//! (the hosting node sends it there before the result of the call that saved
//! it). When the hosting node dies, the head marks the actor *restarting*
//! (keeping its name); the owner places it again, moves its directory entry
//! to the new node and creates it there from the checkpoint. Callers wait
//! for a restarting actor, and calls that were in flight on the dead node are
//! sent again up to `max_task_retries` times (so such a call may run twice).
//! If the owner itself dies, its actors are not restarted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::convert::{
    actor_id, error_from_pb, id_bytes, node_id, object_id, resources_checked, resources_to_pb,
    rpc_failure, status_failure,
};
use crate::error::FabricError;
use crate::ids::{ActorId, JobId, NodeId};
use crate::placement::{Placement, Strategy, place};
use crate::runtime::actor::{self, ActorCall, ActorSpec, Restarts};
use crate::runtime::task::Reply;

/// How long a call for an actor this node is still creating may wait.
const EARLY_CALL_WAIT: Duration = Duration::from_secs(30);

/// An actor call this node sent to another node, until its result comes.
/// It keeps the call (and so its arguments referenced) to send it again if
/// the node dies and the actor restarts.
pub(crate) struct RemoteCall {
    pub node: NodeId,
    pub job: JobId,
    actor: ActorId,
    tenant: Arc<str>,
    call: ActorCall,
    /// Times it may still be sent again after a node death.
    retries_left: u32,
}

impl RemoteCall {
    pub(super) fn retries_left(&self) -> u32 {
        self.retries_left
    }
}

/// Where an actor lives, which tenant owns it, and how often a call lost
/// with its node is sent again.
#[derive(Clone, Debug)]
pub(crate) struct ActorPlace {
    pub node: NodeId,
    pub tenant: Arc<str>,
    pub max_task_retries: u32,
}

impl ActorPlace {
    fn of(info: &pb::ActorInfo) -> Option<ActorPlace> {
        Some(ActorPlace {
            node: node_id(&info.node_id).ok()?,
            tenant: info.tenant.as_str().into(),
            max_task_retries: info.max_task_retries,
        })
    }
}

/// A restartable actor this node created on another node: what restarting
/// it elsewhere needs.
pub(crate) struct OwnedActor {
    spec: ActorSpec,
    strategy: Strategy,
    /// Where it runs now.
    node: NodeId,
    restarts: u32,
    checkpoint: Option<Bytes>,
}

impl OwnedActor {
    pub(super) fn detached(&self) -> bool {
        self.spec.detached
    }

    pub(super) fn job(&self) -> JobId {
        self.spec.job.id
    }
}

fn actor_info(spec: &ActorSpec, node: NodeId, owner: NodeId) -> pb::ActorInfo {
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
        owner_node_id: id_bytes(owner.as_u128()),
        max_restarts: spec.policy.max_restarts,
        max_task_retries: spec.policy.max_task_retries,
        restarts: spec.restarts,
        restarting: false,
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
        let node = self.place_actor(&spec, &strategy)?;
        if let Some(info) = self
            .register_actor(&spec, node, get_if_exists, false)
            .await?
        {
            let id = actor_id(&info.actor_id).map_err(status_failure)?;
            if let Some(place) = ActorPlace::of(&info) {
                self.actor_nodes.insert(id, place);
            }
            return Ok(id);
        }
        let id = spec.id;
        self.actor_nodes.insert(id, place_of(&spec, node));
        if node == self.id {
            self.start_here(spec)?;
            return Ok(id);
        }
        if spec.policy.max_restarts > 0 {
            self.owned_actors.insert(
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
            self.owned_actors.remove(&id);
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

    /// The node an actor should live on.
    fn place_actor(&self, spec: &ActorSpec, strategy: &Strategy) -> Result<NodeId, FabricError> {
        match self.with_candidates(|c| place(&spec.demand, strategy, c, &[], &self.spread_cursor)) {
            Placement::Local => Ok(self.id),
            Placement::Remote(n) => Ok(n),
            Placement::Infeasible(e) => Err(e),
        }
    }

    /// Registers the actor on `node` in the head's directory (`restart`:
    /// moves a restarting one there). `Some` is the existing actor that
    /// holds the name, when `get_if_exists` found one.
    async fn register_actor(
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
    fn start_here(&self, spec: ActorSpec) -> Result<(), FabricError> {
        let core = self.core().ok_or(FabricError::Cancelled)?;
        let id = spec.id;
        if let Some(key) = &spec.name {
            core.named_actors().insert(key.clone(), id);
        }
        let mut held = self.early_calls.entry(id).or_default();
        let record = actor::spawn(&core, spec);
        for call in std::mem::take(&mut *held) {
            record.call(&core, call);
        }
        drop(held);
        self.early_calls.remove(&id);
        Ok(())
    }

    /// Asks `node` to create the actor.
    async fn send_create(&self, spec: &ActorSpec, node: NodeId) -> Result<(), FabricError> {
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

    /// The hosting node of a restartable actor this node created died:
    /// restart each such actor elsewhere (or record it dead when it has no
    /// restarts left).
    pub(super) fn restart_owned_actors(&self, dead: NodeId) {
        let Some(me) = self.me.upgrade() else { return };
        let ids: Vec<ActorId> = self
            .owned_actors
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
            let Some(mut o) = self.owned_actors.get_mut(&id) else {
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
                self.owned_actors.remove(&id);
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
                self.owned_actors.remove(&id);
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
        self.actor_nodes.insert(id, place_of(&spec, node));
        if node == self.id {
            // Hosted by its owner now: a later death of this node takes both.
            self.owned_actors.remove(&id);
            self.start_here(spec)?;
        } else {
            if let Some(mut o) = self.owned_actors.get_mut(&id) {
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
            self.owned_actors.remove_if(&id, |_, o| o.node == from);
            return Ok(());
        }
        if let Some(mut o) = self.owned_actors.get_mut(&id)
            && o.node == from
        {
            o.restarts = o.restarts.max(m.restarts);
            if let Some(state) = m.checkpoint {
                o.checkpoint = Some(state);
            }
        }
        Ok(())
    }

    /// How long a caller waits for an actor whose node died to come back.
    pub(super) fn restart_wait(&self) -> Duration {
        self.config.node_timeout * 4 + Duration::from_secs(30)
    }

    /// Where an actor of `tenant` lives: the cache, else the head's
    /// directory (waiting while it restarts after its node died). Another
    /// tenant's actor is not found, exactly as a missing one (no existence
    /// oracle).
    async fn actor_place(&self, id: ActorId, tenant: &str) -> Result<ActorPlace, FabricError> {
        let not_found = || FabricError::NotFound(format!("actor {id}"));
        if let Some(p) = self.actor_nodes.get(&id) {
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
            self.actor_nodes.insert(id, place.clone());
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
        let retries = place.max_task_retries;
        self.send_call(id, place, call, retries).await
    }

    async fn send_call(
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
        };
        let result = call.result;
        self.remote_calls.insert(
            result,
            RemoteCall {
                node,
                job,
                actor: id,
                tenant: place.tenant,
                call,
                retries_left,
            },
        );
        if self.peer_view(node).is_none()
            || !self.send_to(node, pb::peer_message::Kind::ActorCall(msg))
        {
            self.suspect(node);
            if let Some((_, lost)) = self.remote_calls.remove(&result) {
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
    pub(super) fn retry_call(&self, lost: RemoteCall) {
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
            self.actor_nodes.remove_if(&id, |_, p| p.node == failed);
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
            core.scheduler().check_feasible(&demand)?;
            Ok(ActorSpec {
                id,
                job,
                class: c.class.clone().into(),
                args: args.map_err(status_failure)?,
                nested: nested.map_err(status_failure)?,
                demand,
                name: (!c.name.is_empty()).then(|| (c.namespace.clone(), c.name.clone())),
                detached: c.detached,
                policy: Restarts {
                    max_restarts: c.max_restarts,
                    max_task_retries: c.max_task_retries,
                },
                restarts: c.restarts,
                checkpoint: c.checkpoint.clone(),
                owner: Some(from),
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
                max_task_retries: c.max_task_retries,
            },
        );
        let mut held = self.early_calls.entry(id).or_default();
        match spec {
            Ok(spec) => {
                if let Some(key) = &spec.name {
                    core.named_actors().insert(key.clone(), id);
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
            .actors()
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
        if let Some(record) = core.actors().get(&id).map(|r| r.clone()) {
            actor::kill(&core, &record, k.reason);
        }
    }

    /// Delivers a call to the actor, or holds it while the actor is being
    /// created here. Both happen under the same lock as the creation's
    /// delivery of held calls, so calls keep their order.
    fn hold_or_deliver(self: &Arc<Self>, id: ActorId, call: ActorCall) {
        let Some(core) = self.core() else { return };
        let mut held = self.early_calls.entry(id).or_default();
        if let Some(record) = core.actors().get(&id).map(|r| r.clone()) {
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

/// Where an actor created from `spec` on `node` is, for the cache.
fn place_of(spec: &ActorSpec, node: NodeId) -> ActorPlace {
    ActorPlace {
        node,
        tenant: spec.job.tenant.clone(),
        max_task_retries: spec.policy.max_task_retries,
    }
}
