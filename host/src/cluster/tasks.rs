//! Tasks across nodes: placing, forwarding, results, and moving queued
//! work to nodes with room.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::{FabricError, FailureKind};
use crate::ids::{JobId, NodeId, ObjectId};
use crate::object_store::Location;
use crate::outcomes::Outcome;
use crate::placement::{self, Placement, Strategy};
use crate::resources::ResourceSet;
use crate::runtime::instance::CallResult;
use crate::runtime::task::{self, Reply, TaskArg, TaskSpec};
use crate::runtime::task_table::TaskControl;
use crate::wire::{
    error_from_pb, error_to_pb, id_bytes, object_id, resources_checked, resources_to_pb,
    status_failure, task_id,
};

/// Values up to this size travel inside messages; larger ones as objects.
pub(crate) const INLINE_MAX: usize = 256 << 10;
/// At most this many bytes of values inline in one message.
pub(crate) const INLINE_TOTAL: usize = 2 << 20;

/// A task this node forwarded, kept until its result comes back (its
/// arguments stay referenced meanwhile, and it can be retried elsewhere).
struct RemoteTask {
    spec: TaskSpec,
    control: Arc<TaskControl>,
    node: NodeId,
}

/// The tasks that cross this node: those it sent to other nodes (until
/// their results come back) and those arriving from them (until accepted).
/// Only this module touches them.
#[derive(Default)]
pub(super) struct RemoteTasks {
    /// Tasks this node forwarded, by result id.
    sent: DashMap<ObjectId, RemoteTask>,
    /// Forwarded tasks that arrived and are not yet accepted (their job's
    /// component may still be compiling): a drain waits for them too.
    arriving: AtomicUsize,
}

impl RemoteTasks {
    /// Forwarded tasks that arrived here and are not yet accepted.
    pub(super) fn arriving(&self) -> usize {
        self.arriving.load(Ordering::Acquire)
    }

    /// Counts a forwarded task as arriving until the guard goes.
    fn arrival(&self) -> Arrival<'_> {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(self)
    }

    /// Takes out the tasks of `job` sent elsewhere: (result, node).
    pub(super) fn take_job(&self, job: JobId) -> Vec<(ObjectId, NodeId)> {
        let ids: Vec<ObjectId> = self
            .sent
            .iter()
            .filter(|t| t.spec.job.id == job)
            .map(|t| *t.key())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.sent.remove(&id).map(|(id, t)| (id, t.node)))
            .collect()
    }

    /// The node a task this node forwarded (by its result id) went to.
    pub(super) fn sent_to(&self, result: ObjectId) -> Option<NodeId> {
        self.sent.get(&result).map(|t| t.node)
    }

    /// Takes out the tasks sent to `node`.
    fn take_sent_to(&self, node: NodeId) -> Vec<RemoteTask> {
        let ids: Vec<ObjectId> = self
            .sent
            .iter()
            .filter(|t| t.node == node)
            .map(|t| *t.key())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.sent.remove(&id).map(|(_, t)| t))
            .collect()
    }
}

/// A generator's backpressure as a message states it (0: not a generator).
pub(super) fn stream_bound(bound: u32) -> Option<u32> {
    (bound > 0).then(|| bound.min(crate::runtime::streams::MAX_BACKPRESSURE))
}

/// A forwarded task counted as arriving.
struct Arrival<'a>(&'a RemoteTasks);

impl Drop for Arrival<'_> {
    fn drop(&mut self) {
        self.0.arriving.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Cluster {
    /// Where a task whose arguments are computed should run.
    pub(crate) fn place_task(&self, spec: &TaskSpec) -> Placement {
        if let Strategy::Bundle { group, index } = spec.strategy {
            // On the node holding the bundle; not placed now: wait for it.
            return match self.bundle_node(group, index) {
                Some(n) if n == self.id => Placement::Local,
                Some(n) if self.is_live(n) => Placement::Remote(n),
                _ => Placement::Later,
            };
        }
        let arg_bytes: Vec<(NodeId, u64)> = spec
            .args
            .iter()
            .flat_map(TaskArg::objects)
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
                self.members.spread_cursor(),
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
            Err(e) => {
                self.suspect(node);
                return self.task_lost(spec, control, e);
            }
        };
        peer.add_in_flight(&spec.demand);
        // The job and task ids are the trace: the receiver logs the same.
        tracing::debug!(job = %spec.job.id.short(), task = %spec.id.short(), function = %spec.function, to = %node.short(), "forwarding a task");
        let cluster = self.clone();
        tokio::spawn(async move {
            let (args, nested) = match cluster
                .send_args(&spec.args, &spec.nested, spec.job.id, node)
                .await
            {
                Ok(a) => a,
                Err(e) => return cluster.task_lost(spec, control, e),
            };
            let msg = pb::ForwardTask {
                job: Some(cluster.job_info(&spec.job)),
                task_id: id_bytes(spec.id.as_u128()),
                function: spec.function.to_string(),
                args,
                nested,
                demand: Some(resources_to_pb(&spec.demand)),
                result_id: id_bytes(spec.result.as_u128()),
                max_retries: 0,
                retry_exceptions: false,
                depth: spec.depth,
                more_results: spec
                    .more_results
                    .iter()
                    .map(|id| id_bytes(id.as_u128()))
                    .collect(),
                stream_bound: spec.stream.unwrap_or(0),
                attempt: spec.attempt,
            };
            let result = spec.result;
            cluster.tasks.sent.insert(
                result,
                RemoteTask {
                    spec,
                    control,
                    node,
                },
            );
            // Registered before this check: if the node died meanwhile, either
            // the check sees it or the death handling finds the task.
            let alive = cluster.peer_view(node).is_some();
            if (!alive || !peer.send(pb::peer_message::Kind::Task(msg)))
                && let Some((_, rt)) = cluster.tasks.sent.remove(&result)
            {
                cluster.suspect(node);
                let e = FabricError::failure(
                    &rt.spec.function,
                    FailureKind::System,
                    "the node is unreachable",
                );
                cluster.task_lost(rt.spec, rt.control, e);
            }
        });
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
            task::finish_unrun(&core, spec, &control, e);
        }
    }

    /// Runs a task another node forwarded here; its result goes back there,
    /// and so does any failure to start it.
    pub(crate) async fn on_forward_task(
        self: &Arc<Self>,
        from: NodeId,
        t: pb::ForwardTask,
    ) -> Result<(), Status> {
        // Without the result id there is nobody to answer.
        let result = object_id(&t.result_id)?;
        let job_id = t
            .job
            .as_ref()
            .and_then(|j| crate::wire::job_id(&j.job_id).ok())
            .unwrap_or(JobId::from_u128(0));
        let _arrival = self.tasks.arrival();
        // Take every lent reference first: on any failure below, dropping
        // them gives the borrows back.
        let args = self.receive_args(&t.args, job_id);
        let nested = self.receive_refs(&t.nested, job_id);
        let started: Result<(), FabricError> = async {
            let (args, nested) = (
                args.map_err(status_failure)?,
                nested.map_err(status_failure)?,
            );
            let info = t.job.as_ref().ok_or_else(|| {
                FabricError::InvalidArgument("a forwarded task without its job".into())
            })?;
            let job = self
                .ensure_job(from, info, false)
                .await
                .map_err(status_failure)?;
            let core = self.core().ok_or(FabricError::Cancelled)?;
            let demand = resources_checked(t.demand.as_ref())?;
            core.scheduler().check_feasible(&demand)?;
            if t.more_results.len() >= task::MAX_NUM_RETURNS as usize {
                return Err(FabricError::InvalidArgument(
                    "a forwarded task with too many results".into(),
                ));
            }
            let more_results = t
                .more_results
                .iter()
                .map(|id| object_id(id))
                .collect::<Result<Vec<_>, _>>()
                .map_err(status_failure)?;
            let id = task_id(&t.task_id).map_err(status_failure)?;
            tracing::debug!(job = %job.id.short(), task = %id.short(), function = %t.function, from = %from.short(), "a task arrived");
            task::accept_forwarded(
                &core,
                TaskSpec {
                    id,
                    job: job.clone(),
                    function: t.function.clone().into(),
                    args,
                    nested,
                    demand,
                    strategy: Strategy::Default,
                    result,
                    more_results,
                    max_retries: 0,
                    retry_exceptions: false,
                    stream: stream_bound(t.stream_bound),
                    attempt: 0,
                    depth: t.depth.max(1),
                    reply: Reply::Remote {
                        owner: from,
                        job: job.id,
                    },
                },
                t.attempt,
            );
            Ok(())
        }
        .await;
        if let Err(e) = started {
            self.send_result(from, job_id, result, Err(e));
        }
        Ok(())
    }

    /// Sends the failure of a task or actor call that could not start here
    /// to the node that owns its result.
    pub(crate) fn send_result(
        self: &Arc<Self>,
        owner: NodeId,
        job: JobId,
        result: ObjectId,
        outcome: CallResult,
    ) {
        self.send_results(owner, job, vec![(result, outcome)]);
    }

    /// Sends the outcomes of a task or actor call that ran here (one per
    /// object it completes, its first result first) to the node that owns
    /// them, in one message. A large value stays here, as a copy kept for
    /// the owner, and only its location travels.
    pub(crate) fn send_results(
        self: &Arc<Self>,
        owner: NodeId,
        job: JobId,
        outcomes: Vec<(ObjectId, CallResult)>,
    ) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut inline_left = INLINE_TOTAL;
            let mut msgs = Vec::with_capacity(outcomes.len());
            for (result, outcome) in outcomes {
                msgs.push(
                    cluster
                        .result_msg(owner, job, result, outcome, &mut inline_left)
                        .await,
                );
            }
            if msgs.is_empty() {
                return;
            }
            let mut first = msgs.remove(0);
            first.more = msgs;
            cluster.send_to(owner, pb::peer_message::Kind::Result(first));
        });
    }

    /// The message for one outcome: a value within `inline_left` (what the
    /// message may still carry) goes inline, a larger one stays here.
    pub(super) async fn result_msg(
        &self,
        owner: NodeId,
        job: JobId,
        result: ObjectId,
        outcome: CallResult,
        inline_left: &mut usize,
    ) -> pb::TaskResult {
        let mut msg = pb::TaskResult {
            result_id: id_bytes(result.as_u128()),
            ..Default::default()
        };
        let error = |e: &FabricError| Some(pb::task_result::Outcome::Error(error_to_pb(e)));
        match outcome {
            Ok((value, nested)) if value.len() <= INLINE_MAX.min(*inline_left) => {
                *inline_left -= value.len();
                match self.lend_all(&nested, owner).await {
                    Ok(n) => {
                        msg.nested = n;
                        msg.outcome = Some(pb::task_result::Outcome::Value(value));
                    }
                    Err(e) => msg.outcome = error(&e),
                }
            }
            Ok((value, nested)) => {
                msg.size = value.len() as u64;
                let kept = self
                    .core()
                    .ok_or(FabricError::Cancelled)
                    .and_then(|c| c.objects().keep_copy(result, owner, job, value, nested));
                msg.outcome = match kept {
                    Ok(r) => {
                        self.lending.keep(result, r);
                        Some(pb::task_result::Outcome::StoredAt(id_bytes(
                            self.id.as_u128(),
                        )))
                    }
                    Err(e) => error(&e),
                };
            }
            Err(e) => msg.outcome = error(&e),
        }
        msg
    }

    /// A result for a task or actor call this node sent out.
    pub(crate) fn on_result(
        self: &Arc<Self>,
        from: NodeId,
        mut r: pb::TaskResult,
    ) -> Result<(), Status> {
        let id = object_id(&r.result_id)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let stored_at = match &r.outcome {
            Some(pb::task_result::Outcome::StoredAt(n)) => Some(crate::wire::node_id(n)?),
            _ => None,
        };
        // Only the node the work was sent to may answer for it.
        let task = self
            .tasks
            .sent
            .remove_if(&id, |_, t| t.node == from)
            .map(|(_, t)| t);
        let call_job = match task {
            Some(_) => None,
            None => self.take_call_answered(id, from),
        };
        if let Some(t) = &task {
            tracing::debug!(job = %t.spec.job.id.short(), task = %t.spec.id.short(), from = %from.short(), "a task's result arrived");
        }
        let job = match (&task, call_job) {
            (Some(t), _) => t.spec.job.id,
            (None, Some(job)) => job,
            (None, None) => {
                // Nobody waits for it (cancelled, or its job ended).
                for m in std::iter::once(&r).chain(&r.more) {
                    self.release_unused(m);
                }
                return Ok(());
            }
        };
        let outcome = self.received_outcome(from, job, &r);
        if let Some(t) = task {
            let more = std::mem::take(&mut r.more);
            let succeeded = !matches!(outcome, Some(Err(_)));
            if !succeeded {
                // The failure went to all its results (or it is retried).
                for m in &more {
                    self.release_unused(m);
                }
            }
            let spec = match outcome {
                Some(result) => {
                    let spec =
                        (succeeded && !t.spec.more_results.is_empty()).then(|| t.spec.clone());
                    task::finish(&core, t.spec, &t.control, result.map(|v| vec![v]));
                    spec
                }
                None => {
                    core.tasks().remove(id, Outcome::Succeeded);
                    // Only that node has it: keep what rebuilding it takes
                    // (forgotten when the result is freed, even right away).
                    self.lineage.keep(id, t.spec.clone());
                    core.objects()
                        .fulfill_elsewhere(id, stored_at.into_iter().collect(), r.size);
                    Some(t.spec)
                }
            };
            // A failed call's failure went to all its results (or it is
            // retried); a successful one's other values come with it.
            match spec.filter(|s| !s.more_results.is_empty()) {
                Some(spec) => self.complete_more(from, &core, &spec, more),
                None if succeeded => more.iter().for_each(|m| self.release_unused(m)),
                None => {}
            }
            // The node that ran it has room again.
            self.move_queued_tasks();
        } else if call_job.is_some() {
            match outcome {
                Some(result) => core.complete(id, Reply::Local, result),
                None => {
                    core.objects()
                        .fulfill_elsewhere(id, stored_at.into_iter().collect(), r.size)
                }
            }
            // An actor call returns one value: anything more is given back.
            for m in &r.more {
                self.release_unused(m);
            }
        }
        Ok(())
    }

    /// The outcome in `r` (a value or a failure), or `None` when the value
    /// stayed on `from`.
    pub(super) fn received_outcome(
        &self,
        from: NodeId,
        job: JobId,
        r: &pb::TaskResult,
    ) -> Option<CallResult> {
        match &r.outcome {
            Some(pb::task_result::Outcome::Value(v)) => Some(
                self.receive_refs(&r.nested, job)
                    .map(|n| (v.clone(), n))
                    .map_err(status_failure),
            ),
            Some(pb::task_result::Outcome::Error(e)) => Some(Err(error_from_pb(e))),
            Some(pb::task_result::Outcome::StoredAt(_)) => None,
            None => Some(Err(FabricError::failure(
                "result",
                FailureKind::System,
                format!("node {} sent an empty result", from.short()),
            ))),
        }
    }

    /// Completes the other values of a task that returned several, from
    /// the `more` of its result message: only objects of that task, each at
    /// most once; one the message lacks fails (it cannot come later).
    fn complete_more(
        &self,
        from: NodeId,
        core: &Arc<crate::runtime::NodeCore>,
        spec: &TaskSpec,
        more: Vec<pb::TaskResult>,
    ) {
        let mut waiting: std::collections::HashSet<ObjectId> =
            spec.more_results.iter().copied().collect();
        for m in more {
            // Only this task's own results, each once; anything else is
            // given back (and one left waiting fails below).
            let id = object_id(&m.result_id).ok().filter(|id| waiting.remove(id));
            let holder = match &m.outcome {
                Some(pb::task_result::Outcome::StoredAt(n)) => crate::wire::node_id(n).ok(),
                _ => None,
            };
            let Some(id) = id else {
                self.release_unused(&m);
                continue;
            };
            match (self.received_outcome(from, spec.job.id, &m), holder) {
                (Some(outcome), _) => core.complete(id, Reply::Local, outcome),
                (None, Some(at)) => {
                    self.lineage.keep(id, spec.clone());
                    core.objects().fulfill_elsewhere(id, vec![at], m.size);
                }
                (None, None) => {
                    waiting.insert(id);
                }
            }
        }
        for id in waiting {
            let e = FabricError::failure(
                &spec.function,
                FailureKind::System,
                format!("node {} sent no value for one of its results", from.short()),
            );
            core.complete(id, Reply::Local, Err(e));
        }
    }

    /// A result nobody takes: gives back the references it carried, and
    /// lets the node that holds its value, when it stayed there, drop it.
    pub(super) fn release_unused(&self, m: &pb::TaskResult) {
        drop(self.receive_refs(&m.nested, JobId::from_u128(0)));
        if let Some(pb::task_result::Outcome::StoredAt(n)) = &m.outcome
            && let Ok(holder) = crate::wire::node_id(n)
        {
            self.send_to(
                holder,
                pb::peer_message::Kind::FreeObject(pb::FreeObject {
                    object_id: m.result_id.clone(),
                }),
            );
        }
    }

    /// The owner cancelled a task it forwarded here.
    pub(crate) fn on_cancel_task(&self, id: ObjectId) {
        if let Some(core) = self.core()
            && let Some(control) = core.tasks().remove(id, Outcome::Cancelled)
        {
            control.cancel();
            // Its run was dropped: the attempt is recorded here, as its end.
            control.record_ended(&Err::<(), _>(FabricError::Cancelled), None);
        }
    }

    /// Cancels a task this node forwarded, on the node running it.
    pub(crate) fn cancel_forwarded(&self, result: ObjectId) {
        if let Some((_, t)) = self.tasks.sent.remove(&result) {
            self.send_to(
                t.node,
                pb::peer_message::Kind::CancelTask(pb::CancelTask {
                    result_id: id_bytes(result.as_u128()),
                }),
            );
        }
    }

    /// Moves tasks waiting in the local queue to nodes that have room.
    pub(super) fn move_queued_tasks(self: &Arc<Self>) {
        let Some(core) = self.core() else { return };
        if !core.tasks().has_movable() {
            return;
        }
        let mut targets: Vec<NodeId> = Vec::new();
        // (node, what it has, room left) as this pass hands out work.
        let mut room: Vec<(NodeId, ResourceSet, ResourceSet)> = Vec::new();
        self.with_candidates(|cands| {
            for c in cands.iter().filter(|c| !c.is_local) {
                room.push((c.id, c.total.clone(), c.available.clone()));
            }
        });
        if room.is_empty() {
            return;
        }
        let stolen = core.tasks().steal(1024, |spec| {
            let movable = matches!(
                spec.strategy,
                Strategy::Default
                    | Strategy::Spread
                    | Strategy::Node { soft: true, .. }
                    | Strategy::Label { soft: true, .. }
            );
            let fits = room
                .iter_mut()
                .filter(|(_, total, free)| {
                    total.contains(&spec.demand) && free.contains(&spec.demand)
                })
                .max_by_key(|(_, _, free)| free.cpu);
            match fits {
                Some((id, _, free)) if movable => {
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

    /// A node died: retry (or fail) the tasks sent to it.
    pub(super) fn fail_tasks_sent_to(&self, node: NodeId) {
        let Some(core) = self.core() else { return };
        for t in self.tasks.take_sent_to(node) {
            let e = FabricError::failure(
                &t.spec.function,
                FailureKind::System,
                format!("node {} running it died", node.short()),
            );
            task::finish_unrun(&core, t.spec, &t.control, e);
        }
    }
}
