//! Actors hosted here for other nodes: creating them on request, delivering
//! their calls (held while the actor is still being created), killing them.

use std::sync::Arc;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::{ActorPlace, EARLY_CALL_WAIT};
use crate::cluster::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, JobId, NodeId};
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::actor::{self, ActorCall, ActorSpec, Restarts};
use crate::runtime::job::Job;
use crate::runtime::slots::{Holder, InstanceSlot};
use crate::runtime::task::{Reply, TaskArg};
use crate::wire::{actor_id, id_bytes, job_id, object_id, resources_checked, status_failure};

impl Cluster {
    /// An actor hosted here died (or never started): the directory learns it.
    pub(crate) fn actor_died(self: &Arc<Self>, id: ActorId, reason: String) {
        // Nothing of it is kept here any more.
        self.actors.places.remove(&id);
        self.actors
            .early
            .remove_if(&id, |_, calls| calls.is_empty());
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
            .and_then(|j| job_id(&j.job_id).ok())
            .unwrap_or(JobId::from_u128(0));
        // Take every lent reference first: on any failure below, dropping
        // them gives the borrows back.
        let args = self.receive_args(&c.args, job_id);
        let nested = self.receive_refs(&c.nested, job_id);
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let job = match &c.job {
            Some(info) => self.ensure_job(from, info, c.detached).await,
            None => Err(Status::invalid_argument("an actor without its job")),
        };
        let tenant = c
            .job
            .as_ref()
            .map(|j| j.tenant.as_str())
            .unwrap_or_default();
        self.actors.remember_place(
            id,
            ActorPlace {
                node: self.id,
                tenant: tenant.into(),
                max_task_retries: c.max_task_retries,
            },
        );
        let spec = (|| {
            let job = job.clone().map_err(status_failure)?;
            let (args, nested) = (
                args.map_err(status_failure)?,
                nested.map_err(status_failure)?,
            );
            let spec = hosted_spec(&core, from, &c, job, args, nested)?;
            let slot = spec.job.take_slot_for(&core, Holder::Actor, &spec.class)?;
            Ok::<_, FabricError>((spec, slot))
        })();
        match spec {
            Ok((spec, slot)) => self.start_with_held(&core, spec, slot),
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
                self.fail_held(&core, id, &reason);
                // Its creator keeps what a restart would need: no longer.
                self.send_actor_state(from, id, c.restarts, None, true);
                self.actor_died(id, reason);
            }
        }
        Ok(())
    }

    /// Starts an actor here, then delivers the calls that came for it
    /// before it existed, in order (new calls wait on the same lock).
    pub(super) fn start_with_held(
        &self,
        core: &Arc<NodeCore>,
        spec: ActorSpec,
        slot: InstanceSlot,
    ) {
        let id = spec.id;
        if let Some(key) = &spec.name {
            core.named_actors().insert(key.clone(), id);
        }
        let mut held = self.actors.early.entry(id).or_default();
        let record = actor::spawn(core, spec, slot);
        for call in std::mem::take(&mut *held) {
            record.call(core, call);
        }
        drop(held);
        self.actors.early.remove(&id);
    }

    /// The actor `id` could not be created here: the calls held for it fail.
    fn fail_held(&self, core: &NodeCore, id: ActorId, reason: &str) {
        if let Some((_, calls)) = self.actors.early.remove(&id) {
            for call in calls {
                let e = FabricError::ActorDied(reason.to_string());
                core.complete(call.result, call.reply, Err(e));
            }
        }
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
        if c.method == crate::runtime::UNWATCH {
            // A watcher on `from` no longer waits (nothing to answer).
            if let Some(record) = core.actors().get(&id) {
                record.cancel_watch(result, from);
            }
            return Ok(());
        }
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
            keep: None,
            queued_us: 0,
            method: c.method.into(),
            args,
            nested,
            result,
            reply: Reply::Remote { owner: from, job },
            stream: super::super::tasks::stream_bound(c.stream_bound),
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
    pub(super) fn hold_or_deliver(self: &Arc<Self>, id: ActorId, call: ActorCall) {
        let Some(core) = self.core() else { return };
        let mut held = self.actors.early.entry(id).or_default();
        if let Some(record) = core.actors().get(&id).map(|r| r.clone()) {
            drop(held);
            self.actors
                .early
                .remove_if(&id, |_, calls| calls.is_empty());
            return record.call(&core, call);
        }
        let result = call.result;
        held.push(call);
        drop(held);
        let cluster = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_CALL_WAIT).await;
            let mut stale = None;
            if let Some(mut calls) = cluster.actors.early.get_mut(&id)
                && let Some(i) = calls.iter().position(|c| c.result == result)
            {
                stale = Some(calls.remove(i));
            }
            cluster
                .actors
                .early
                .remove_if(&id, |_, calls| calls.is_empty());
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

/// The spec of an actor another node asked this one to host.
fn hosted_spec(
    core: &NodeCore,
    from: NodeId,
    c: &pb::CreateActor,
    job: Arc<Job>,
    args: Vec<TaskArg>,
    nested: Vec<ObjectRef>,
) -> Result<ActorSpec, FabricError> {
    let demand = resources_checked(c.demand.as_ref())?;
    core.scheduler().check_feasible(&demand)?;
    Ok(ActorSpec {
        id: actor_id(&c.actor_id).map_err(status_failure)?,
        job,
        class: c.class.clone().into(),
        args,
        nested,
        demand,
        name: (!c.name.is_empty()).then(|| (c.namespace.clone(), c.name.clone())),
        detached: c.detached,
        policy: Restarts {
            max_restarts: c.max_restarts,
            max_task_retries: c.max_task_retries,
            max_concurrency: c
                .max_concurrency
                .min(crate::runtime::actor::MAX_CONCURRENCY),
        },
        restarts: c.restarts,
        checkpoint: c.checkpoint.clone(),
        owner: Some(from),
    })
}
