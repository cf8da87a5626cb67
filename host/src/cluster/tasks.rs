//! Tasks across nodes: placing, forwarding, results, and moving queued
//! work to nodes with room.

use std::sync::Arc;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::convert::{
    error_from_pb, error_to_pb, id_bytes, object_id, resources_from_pb, resources_to_pb, task_id,
};
use crate::error::{FabricError, FailureKind};
use crate::ids::{JobId, NodeId, ObjectId};
use crate::object_store::Location;
use crate::placement::{self, Placement, Strategy};
use crate::resources::ResourceSet;
use crate::runtime::instance::CallResult;
use crate::runtime::task::{self, Reply, TaskArg, TaskControl, TaskSpec};

/// Values up to this size travel inside messages; larger ones as objects.
pub(crate) const INLINE_MAX: usize = 256 << 10;

/// A task this node forwarded, kept until its result comes back (its
/// arguments stay referenced meanwhile, and it can be retried elsewhere).
pub(crate) struct RemoteTask {
    spec: TaskSpec,
    control: Arc<TaskControl>,
    node: NodeId,
}

impl Cluster {
    /// Where a task whose arguments are computed should run.
    pub(crate) fn place_task(&self, spec: &TaskSpec) -> Placement {
        let arg_bytes: Vec<(NodeId, u64)> = spec
            .args
            .iter()
            .filter_map(TaskArg::object)
            .filter_map(|r| match r.location() {
                Location::Ready(Ok(b)) => Some((self.id, b.len() as u64)),
                Location::Elsewhere(at, size) => at.first().map(|n| (*n, size)),
                _ => None,
            })
            .collect();
        self.with_candidates(|c| {
            placement::place(
                &spec.demand,
                &spec.strategy,
                c,
                &arg_bytes,
                &self.spread_cursor,
            )
        })
    }

    /// Sends a task to `node`. Its result comes back as a `TaskResult`.
    pub(crate) fn forward_task(
        self: &Arc<Self>,
        node: NodeId,
        spec: TaskSpec,
        control: Arc<TaskControl>,
    ) {
        let peer = match self.peer(node) {
            Ok(p) => p,
            Err(e) => return self.task_lost(spec, control, e),
        };
        peer.add_in_flight(&spec.demand);
        let cluster = self.clone();
        tokio::spawn(async move {
            let msg = match cluster.forward_message(&spec, node).await {
                Ok(m) => m,
                Err(e) => return cluster.task_lost(spec, control, e),
            };
            let result = spec.result;
            cluster.remote_tasks.insert(
                result,
                RemoteTask {
                    spec,
                    control,
                    node,
                },
            );
            if !peer.send(pb::peer_message::Kind::Task(msg))
                && let Some((_, rt)) = cluster.remote_tasks.remove(&result)
            {
                let e = FabricError::failure(
                    &rt.spec.function,
                    FailureKind::System,
                    "the node is unreachable",
                );
                cluster.task_lost(rt.spec, rt.control, e);
            }
        });
    }

    async fn forward_message(
        &self,
        spec: &TaskSpec,
        node: NodeId,
    ) -> Result<pb::ForwardTask, FabricError> {
        let core = self.core().ok_or(FabricError::Cancelled)?;
        let mut args = Vec::with_capacity(spec.args.len());
        for a in &spec.args {
            let kind = match a {
                TaskArg::Value(b) if b.len() <= INLINE_MAX => pb::arg::Kind::Value(b.clone()),
                // A large value goes as an object: fetched in chunks, not in one message.
                TaskArg::Value(b) => {
                    let r = core.objects.put(spec.job.id, b.clone(), Vec::new())?;
                    pb::arg::Kind::Object(self.lend(&r, node).await?)
                }
                TaskArg::Object(r) => pb::arg::Kind::Object(self.lend(r, node).await?),
            };
            args.push(pb::Arg { kind: Some(kind) });
        }
        Ok(pb::ForwardTask {
            job: Some(self.job_info(&spec.job)),
            task_id: id_bytes(spec.id.as_u128()),
            function: spec.function.to_string(),
            args,
            nested: self.lend_all(&spec.nested, node).await?,
            demand: Some(resources_to_pb(&spec.demand)),
            result_id: id_bytes(spec.result.as_u128()),
            max_retries: 0,
            retry_exceptions: false,
        })
    }

    /// A forwarded task could not run where it was sent: retry or fail it.
    fn task_lost(&self, spec: TaskSpec, control: Arc<TaskControl>, e: FabricError) {
        if let Some(core) = self.core() {
            let e = match e {
                FabricError::TaskFailed(mut f) => {
                    f.function = spec.function.to_string();
                    FabricError::TaskFailed(f)
                }
                other => other,
            };
            task::finish(&core, spec, &control, Err(e));
        }
    }

    /// Runs a task another node forwarded here; its result goes back there.
    pub(crate) async fn on_forward_task(
        self: &Arc<Self>,
        from: NodeId,
        t: pb::ForwardTask,
    ) -> Result<(), Status> {
        let info = t
            .job
            .ok_or_else(|| Status::invalid_argument("a forwarded task without its job"))?;
        let job = self.ensure_job(from, &info).await?;
        let result = object_id(&t.result_id)?;
        let mut args = Vec::with_capacity(t.args.len());
        for a in &t.args {
            args.push(match &a.kind {
                Some(pb::arg::Kind::Value(b)) => TaskArg::Value(b.clone()),
                Some(pb::arg::Kind::Object(r)) => TaskArg::Object(self.receive_ref(r, job.id)?),
                None => return Err(Status::invalid_argument("an empty argument")),
            });
        }
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let spec = TaskSpec {
            id: task_id(&t.task_id)?,
            job: job.clone(),
            function: t.function.into(),
            args,
            nested: self.receive_refs(&t.nested, job.id)?,
            demand: resources_from_pb(t.demand.as_ref()),
            strategy: Strategy::Default,
            result,
            max_retries: 0,
            retry_exceptions: false,
            attempt: 0,
            reply: Reply::Remote {
                owner: from,
                job: job.id,
            },
        };
        if let Err(e) = core.scheduler.check_feasible(&spec.demand) {
            core.complete(result, spec.reply, Err(e));
            return Ok(());
        }
        task::accept_forwarded(&core, spec);
        Ok(())
    }

    /// Sends the outcome of a task or actor call that ran here to the node
    /// that owns its result. A large value stays here, as a copy kept for
    /// the owner, and only its location travels.
    pub(crate) fn send_result(
        self: &Arc<Self>,
        owner: NodeId,
        job: JobId,
        result: ObjectId,
        outcome: CallResult,
    ) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut msg = pb::TaskResult {
                result_id: id_bytes(result.as_u128()),
                ..Default::default()
            };
            match outcome {
                Ok((value, nested)) if value.len() <= INLINE_MAX => match cluster
                    .lend_all(&nested, owner)
                    .await
                {
                    Ok(n) => {
                        msg.nested = n;
                        msg.outcome = Some(pb::task_result::Outcome::Value(value));
                    }
                    Err(e) => msg.outcome = Some(pb::task_result::Outcome::Error(error_to_pb(&e))),
                },
                Ok((value, nested)) => {
                    msg.size = value.len() as u64;
                    let kept = cluster
                        .core()
                        .ok_or(FabricError::Cancelled)
                        .and_then(|c| c.objects.keep_copy(result, owner, job, value, nested));
                    msg.outcome = Some(match kept {
                        Ok(r) => {
                            cluster.kept.insert(result, r);
                            pb::task_result::Outcome::StoredAt(id_bytes(cluster.id.as_u128()))
                        }
                        Err(e) => pb::task_result::Outcome::Error(error_to_pb(&e)),
                    });
                }
                Err(e) => msg.outcome = Some(pb::task_result::Outcome::Error(error_to_pb(&e))),
            }
            cluster.send_to(owner, pb::peer_message::Kind::Result(msg));
        });
    }

    /// A result for a task or actor call this node sent out.
    pub(crate) fn on_result(
        self: &Arc<Self>,
        from: NodeId,
        r: pb::TaskResult,
    ) -> Result<(), Status> {
        let id = object_id(&r.result_id)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let stored_at = match &r.outcome {
            Some(pb::task_result::Outcome::StoredAt(n)) => Some(super::convert::node_id(n)?),
            _ => None,
        };
        let task = self.remote_tasks.remove(&id).map(|(_, t)| t);
        let call = self.remote_calls.remove(&id).map(|(_, c)| c);
        let job = match (&task, &call) {
            (Some(t), _) => t.spec.job.id,
            (None, Some(c)) => c.job,
            (None, None) => {
                // Nobody waits for it (cancelled, or its job ended): let the
                // holder drop a copy it kept.
                if let Some(n) = stored_at {
                    self.send_to(
                        n,
                        pb::peer_message::Kind::FreeObject(pb::FreeObject {
                            object_id: r.result_id,
                        }),
                    );
                }
                return Ok(());
            }
        };
        let outcome: Result<Option<CallResult>, FabricError> = match r.outcome {
            Some(pb::task_result::Outcome::Value(v)) => {
                Ok(Some(Ok((v, self.receive_refs(&r.nested, job)?))))
            }
            Some(pb::task_result::Outcome::Error(e)) => Ok(Some(Err(error_from_pb(&e)))),
            Some(pb::task_result::Outcome::StoredAt(_)) => Ok(None),
            None => Err(FabricError::failure(
                "result",
                FailureKind::System,
                format!("node {} sent an empty result", from.short()),
            )),
        };
        let outcome = outcome.unwrap_or_else(|e| Some(Err(e)));
        if let Some(t) = task {
            match outcome {
                Some(result) => task::finish(&core, t.spec, &t.control, result),
                None => {
                    core.tasks.remove(&id);
                    core.objects
                        .fulfill_elsewhere(id, stored_at.into_iter().collect(), r.size);
                }
            }
            // The node that ran it has room again.
            self.spill();
        } else if call.is_some() {
            match outcome {
                Some(result) => core.complete(id, Reply::Local, result),
                None => core
                    .objects
                    .fulfill_elsewhere(id, stored_at.into_iter().collect(), r.size),
            }
        }
        Ok(())
    }

    /// The owner cancelled a task it forwarded here.
    pub(crate) fn on_cancel_task(&self, id: ObjectId) {
        if let Some(core) = self.core()
            && let Some((_, control)) = core.tasks.remove(&id)
        {
            control.cancel();
        }
    }

    /// Cancels a task this node forwarded, on the node running it.
    pub(crate) fn cancel_forwarded(&self, result: ObjectId) {
        if let Some((_, t)) = self.remote_tasks.remove(&result) {
            self.send_to(
                t.node,
                pb::peer_message::Kind::CancelTask(pb::CancelTask {
                    result_id: id_bytes(result.as_u128()),
                }),
            );
        }
    }

    /// Moves tasks waiting in the local queue to nodes that have room.
    pub(crate) fn spill(self: &Arc<Self>) {
        let Some(core) = self.core() else { return };
        if core.queued_tasks.lock().unwrap().is_empty() {
            return;
        }
        let mut targets: Vec<NodeId> = Vec::new();
        // Room left per node as this pass hands out work.
        let mut room: Vec<(NodeId, ResourceSet)> = Vec::new();
        self.with_candidates(|cands| {
            for c in cands.iter().filter(|c| !c.is_local) {
                room.push((c.id, c.available.clone()));
            }
        });
        if room.is_empty() {
            return;
        }
        let stolen = task::steal(&core, 1024, |spec| {
            let fits = room
                .iter_mut()
                .filter(|(_, free)| free.contains(&spec.demand))
                .max_by_key(|(_, free)| free.cpu);
            match (fits, &spec.strategy) {
                (
                    Some((id, free)),
                    Strategy::Default
                    | Strategy::Spread
                    | Strategy::Node { soft: true, .. }
                    | Strategy::Label { soft: true, .. },
                ) => {
                    free.subtract(&spec.demand);
                    targets.push(*id);
                    true
                }
                _ => false,
            }
        });
        for ((spec, control), node) in stolen.into_iter().zip(targets) {
            tracing::debug!(task = %spec.id.short(), to = %node.short(), "moving a queued task to a node with room");
            self.forward_task(node, spec, control);
        }
    }

    /// A node died: retry (or fail) what was sent to it.
    pub(super) fn fail_remote_work(&self, node: NodeId) {
        let Some(core) = self.core() else { return };
        let lost_tasks: Vec<ObjectId> = self
            .remote_tasks
            .iter()
            .filter(|t| t.node == node)
            .map(|t| *t.key())
            .collect();
        for id in lost_tasks {
            if let Some((_, t)) = self.remote_tasks.remove(&id) {
                let e = FabricError::failure(
                    &t.spec.function,
                    FailureKind::System,
                    format!("node {} running it died", node.short()),
                );
                task::finish(&core, t.spec, &t.control, Err(e));
            }
        }
        let lost_calls: Vec<ObjectId> = self
            .remote_calls
            .iter()
            .filter(|c| c.node == node)
            .map(|c| *c.key())
            .collect();
        for id in lost_calls {
            if self.remote_calls.remove(&id).is_some() {
                core.complete(
                    id,
                    Reply::Local,
                    Err(FabricError::ActorDied(format!(
                        "node {} hosting the actor died",
                        node.short()
                    ))),
                );
            }
        }
    }

    /// The large value of `id` this node kept for its owner is no longer needed.
    pub(crate) fn drop_kept(&self, id: ObjectId) {
        self.kept.remove(&id);
    }
}
