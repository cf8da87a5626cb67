//! The runtime's one way out to the rest of a cluster.
//!
//! The runtime runs tasks and actors on this node and knows nothing of other
//! nodes. Whatever involves them (placing a task elsewhere, sending a result
//! to the node that owns it, creating or calling an actor that lives
//! elsewhere, telling other nodes a job ended) goes through a
//! [`ClusterPort`]. A lone node plugs in [`Alone`], which keeps everything
//! here; a node that joins a cluster plugs in the cluster's port (in the
//! `wasmfabric-host` crate), once. The port grows with the features that
//! need other nodes (generators, placement groups, HTTP ingress).
//!
//! ```
//! use fabric_runtime::runtime::port::ClusterPort;
//! fn assert_object_safe(_: &dyn ClusterPort) {}
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use bytes::Bytes;

use crate::error::FabricError;
use crate::ids::{ActorId, GroupId, JobId, NodeId, ObjectId};
use crate::object_store::ObjectRef;
use crate::placement::{Candidate, Placement, Strategy};
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::actor::{self, ActorCall, ActorSpec};
use crate::runtime::groups::{GroupInfo, GroupSpec};
use crate::runtime::instance::CallResult;
use crate::runtime::routers::RoutedPlace;
use crate::runtime::task::TaskSpec;
use crate::runtime::task_table::TaskControl;

/// What a port's asynchronous calls return.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FabricError>> + Send + 'a>>;

/// A node of the cluster, as this node sees it.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: NodeId,
    /// Where peers reach it (empty for a node in no cluster).
    pub address: String,
    pub alive: bool,
    pub is_head: bool,
    pub total: ResourceSet,
    /// Free at its last report.
    pub free: ResourceSet,
    pub labels: Vec<(String, String)>,
}

/// What the runtime asks of the cluster its node belongs to.
pub trait ClusterPort: Send + Sync {
    /// Whether some node could ever give `demand`.
    fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError>;

    /// Where a task whose arguments are computed should run.
    fn place_task(&self, spec: &TaskSpec) -> Placement;

    /// Places `spec` once it can (it answered [`Placement::Later`]), with
    /// [`crate::runtime::task::place_again`], or fails it.
    fn place_later(&self, spec: TaskSpec, control: Arc<TaskControl>);

    /// Runs a task on `node`; its outcome comes back to this node's runtime
    /// (to [`crate::runtime::task::finish`]).
    fn forward_task(&self, node: NodeId, spec: TaskSpec, control: Arc<TaskControl>);

    /// Stops a task this node forwarded (cancelled, or its job ended).
    fn cancel_forwarded(&self, result: ObjectId);

    /// Delivers the outcomes of one call that ran here (one per object it
    /// completes, its first result first) to `owner`, the node that holds
    /// its result objects.
    fn send_results(&self, owner: NodeId, job: JobId, outcomes: Vec<(ObjectId, CallResult)>);

    /// Sends item `index` of `stream`, yielded by a generator running here,
    /// to `owner`, its caller's node. Resolves once the item is on its way:
    /// a generator's items, and then its call's result, reach the owner in
    /// the order they were sent.
    fn send_item(
        &self,
        owner: NodeId,
        job: JobId,
        stream: ObjectId,
        index: u64,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> PortFuture<'_, ()>;

    /// Tells `node`, where a generator of `stream` runs, that its caller
    /// took `taken` items and has `have` (and dropped the stream when
    /// `closed`).
    fn stream_ack(&self, node: NodeId, stream: ObjectId, taken: u64, have: u64, closed: bool);

    /// The caller dropped `stream` before any item came: tells the node
    /// its call was sent to, if any, to stop the generator.
    fn close_stream(&self, stream: ObjectId);

    /// Creates an actor, here or on another node.
    fn create_actor(
        &self,
        spec: ActorSpec,
        strategy: Strategy,
        get_if_exists: bool,
    ) -> PortFuture<'_, ActorId>;

    /// Queues `call` on an actor that does not live here.
    fn call_actor<'a>(
        &'a self,
        actor: ActorId,
        tenant: &'a str,
        call: ActorCall,
    ) -> PortFuture<'a, ()>;

    /// Kills an actor that does not live here.
    fn kill_actor<'a>(&'a self, actor: ActorId, tenant: &'a str) -> PortFuture<'a, ()>;

    /// Finds a named actor that is not registered here.
    fn lookup_actor<'a>(&'a self, namespace: &'a str, name: &'a str) -> PortFuture<'a, ActorId>;

    /// The id of `tenant`'s router (a Serve deployment) that `node`
    /// registered as `name` in `namespace` (as the tenant's code names it):
    /// see [`crate::runtime::routers`].
    fn lookup_router<'a>(
        &'a self,
        node: NodeId,
        tenant: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> PortFuture<'a, ActorId>;

    /// A place for one call from `caller` at one of the actors of router
    /// `router`, which `node` registered; its `done` gives it back there.
    fn place_routed<'a>(
        &'a self,
        node: NodeId,
        router: ActorId,
        tenant: &'a str,
        caller: Option<ActorId>,
    ) -> PortFuture<'a, RoutedPlace>;

    /// An actor living here for `owner` (the node that created it) saved a
    /// checkpoint, restarted, or died for good.
    fn actor_changed(
        &self,
        owner: NodeId,
        actor: ActorId,
        restarts: u32,
        checkpoint: Option<Bytes>,
        dead: bool,
    );

    /// An actor living here died.
    fn actor_died(&self, actor: ActorId, reason: String);

    /// A job ended on this node: work it sent elsewhere is no longer
    /// awaited, and its late work is refused.
    fn job_ended_here(&self, job: JobId);

    /// The driver of `job`, which ran here, returned: every node stops the
    /// job's work.
    fn driver_returned(&self, job: JobId);

    /// Records a placement group; its bundles are reserved meanwhile (see
    /// [`ClusterPort::group_ready`]). Fails when it could never be placed.
    fn create_group(&self, spec: GroupSpec) -> PortFuture<'_, ()>;

    /// Waits until every bundle of `group` is reserved.
    fn group_ready<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()>;

    /// Removes `group`: frees its bundles, stops its work.
    fn remove_group<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()>;

    /// What `group` is and where its bundles are.
    fn group_info<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, GroupInfo>;

    /// The group named `name` in the (tenant-scoped) `namespace`.
    fn lookup_group<'a>(&'a self, namespace: &'a str, name: &'a str) -> PortFuture<'a, GroupInfo>;

    /// `group` as this node knows it now, without asking anyone: what
    /// admitting work placed in it checks.
    fn known_group(&self, group: GroupId, tenant: &str) -> Option<GroupInfo>;

    /// The nodes of the cluster (this one included).
    fn nodes(&self) -> Vec<NodeView>;
}

/// The port of a node in no cluster: everything runs here.
pub struct Alone(pub(crate) Weak<NodeCore>);

fn node_stopping() -> FabricError {
    FabricError::Cancelled
}

impl ClusterPort for Alone {
    fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError> {
        match self.0.upgrade() {
            Some(core) => core.scheduler().check_feasible(demand),
            None => Err(node_stopping()),
        }
    }

    fn place_task(&self, spec: &TaskSpec) -> Placement {
        let Some(core) = self.0.upgrade() else {
            return Placement::Infeasible(node_stopping());
        };
        // Alone, a node runs everything itself, unless it is pinned elsewhere.
        if !spec.strategy.is_hard_affinity() || matches!(spec.strategy, Strategy::Bundle { .. }) {
            return Placement::Local;
        }
        let total = core.scheduler().total().clone();
        let me = [Candidate::new(core.id(), &total, total.clone(), true)];
        crate::placement::place(&spec.demand, &spec.strategy, &me, &[], &Default::default())
    }

    fn place_later(&self, spec: TaskSpec, control: Arc<TaskControl>) {
        // Unreachable: a lone node places every task now.
        if let Some(core) = self.0.upgrade() {
            let e = FabricError::ResourcesInfeasible("a task a lone node could not place".into());
            crate::runtime::task::finish_unrun(&core, spec, &control, e);
        }
    }

    fn forward_task(&self, node: NodeId, spec: TaskSpec, control: Arc<TaskControl>) {
        // Unreachable: a lone node places nothing elsewhere. Fail it, do
        // not lose it.
        if let Some(core) = self.0.upgrade() {
            let e = FabricError::ResourcesInfeasible(format!(
                "node {} is not in this node's cluster (it is in none)",
                node.short()
            ));
            crate::runtime::task::finish_unrun(&core, spec, &control, e);
        }
    }

    fn cancel_forwarded(&self, _result: ObjectId) {}

    fn send_results(&self, _owner: NodeId, _job: JobId, outcomes: Vec<(ObjectId, CallResult)>) {
        // Unreachable: without a cluster every result is owned here.
        if let Some(core) = self.0.upgrade() {
            for (result, outcome) in outcomes {
                core.complete(result, crate::runtime::task::Reply::Local, outcome);
            }
        }
    }

    fn send_item(
        &self,
        _owner: NodeId,
        _job: JobId,
        stream: ObjectId,
        index: u64,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> PortFuture<'_, ()> {
        // Unreachable: without a cluster every caller is here.
        if let Some(core) = self.0.upgrade() {
            let item = crate::runtime::streams::Item::Here(value, nested);
            core.streams().push(&core, stream, index, None, item);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn stream_ack(&self, _: NodeId, _: ObjectId, _: u64, _: u64, _: bool) {}

    fn close_stream(&self, _stream: ObjectId) {}

    fn create_actor(
        &self,
        spec: ActorSpec,
        _strategy: Strategy,
        get_if_exists: bool,
    ) -> PortFuture<'_, ActorId> {
        let created = match self.0.upgrade() {
            Some(core) => actor::create_local(&core, spec, get_if_exists),
            None => Err(node_stopping()),
        };
        Box::pin(std::future::ready(created))
    }

    fn call_actor<'a>(
        &'a self,
        actor: ActorId,
        _tenant: &'a str,
        _call: ActorCall,
    ) -> PortFuture<'a, ()> {
        Box::pin(std::future::ready(Err(FabricError::NotFound(format!(
            "actor {actor}"
        )))))
    }

    fn kill_actor<'a>(&'a self, actor: ActorId, _tenant: &'a str) -> PortFuture<'a, ()> {
        Box::pin(std::future::ready(Err(FabricError::NotFound(format!(
            "actor {actor}"
        )))))
    }

    fn lookup_actor<'a>(&'a self, namespace: &'a str, name: &'a str) -> PortFuture<'a, ActorId> {
        let shown = crate::runtime::job::shown_namespace(namespace);
        Box::pin(std::future::ready(Err(FabricError::NotFound(format!(
            "no actor named `{name}` in namespace `{shown}`"
        )))))
    }

    fn lookup_router<'a>(
        &'a self,
        _node: NodeId,
        _tenant: &'a str,
        _namespace: &'a str,
        name: &'a str,
    ) -> PortFuture<'a, ActorId> {
        Box::pin(std::future::ready(Err(FabricError::NotFound(format!(
            "no deployment `{name}` (this node is in no cluster)"
        )))))
    }

    fn place_routed<'a>(
        &'a self,
        _node: NodeId,
        router: ActorId,
        _tenant: &'a str,
        _caller: Option<ActorId>,
    ) -> PortFuture<'a, RoutedPlace> {
        Box::pin(std::future::ready(Err(FabricError::NotFound(format!(
            "actor {router}"
        )))))
    }

    fn actor_changed(&self, _: NodeId, _: ActorId, _: u32, _: Option<Bytes>, _: bool) {}

    fn actor_died(&self, _actor: ActorId, _reason: String) {}

    fn job_ended_here(&self, _job: JobId) {}

    fn driver_returned(&self, _job: JobId) {}

    fn create_group(&self, spec: GroupSpec) -> PortFuture<'_, ()> {
        let created = match self.0.upgrade() {
            Some(core) => core.groups().create(&core, spec),
            None => Err(node_stopping()),
        };
        Box::pin(std::future::ready(created))
    }

    fn group_ready<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()> {
        Box::pin(async move {
            let core = self.0.upgrade().ok_or_else(node_stopping)?;
            core.groups().ready(group, tenant).await
        })
    }

    fn remove_group<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()> {
        let removed = match self.0.upgrade() {
            Some(core) => core.groups().remove(&core, group, tenant),
            None => Err(node_stopping()),
        };
        Box::pin(std::future::ready(removed))
    }

    fn group_info<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, GroupInfo> {
        let info = self
            .known_group(group, tenant)
            .ok_or_else(|| FabricError::NotFound(format!("placement group {group}")));
        Box::pin(std::future::ready(info))
    }

    fn lookup_group<'a>(&'a self, namespace: &'a str, name: &'a str) -> PortFuture<'a, GroupInfo> {
        let found = match self.0.upgrade() {
            Some(core) => core.groups().lookup(namespace, name),
            None => Err(node_stopping()),
        };
        Box::pin(std::future::ready(found))
    }

    fn known_group(&self, group: GroupId, tenant: &str) -> Option<GroupInfo> {
        self.0.upgrade()?.groups().info(group, tenant)
    }

    fn nodes(&self) -> Vec<NodeView> {
        let Some(core) = self.0.upgrade() else {
            return Vec::new();
        };
        vec![NodeView {
            id: core.id(),
            address: String::new(),
            alive: true,
            is_head: false,
            total: core.scheduler().total().clone(),
            free: core.scheduler().free().without_named(),
            labels: Vec::new(),
        }]
    }
}
