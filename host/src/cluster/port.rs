//! The cluster as the runtime sees it: its [`ClusterPort`].
//!
//! When a node joins a cluster, its runtime's port becomes this one: work
//! that involves other nodes (placing tasks, results, actors elsewhere,
//! jobs that end) is handed to the [`Cluster`] here. Each method only
//! forwards to the part of the cluster that owns that work.

use std::sync::Arc;

use bytes::Bytes;

use super::Cluster;
use crate::error::FabricError;
use crate::ids::{ActorId, GroupId, JobId, NodeId, ObjectId};
use crate::object_store::ObjectRef;
use crate::placement::{Placement, Strategy};
use crate::resources::ResourceSet;
use crate::runtime::actor::{ActorCall, ActorSpec};
use crate::runtime::groups::{GroupInfo, GroupSpec};
use crate::runtime::instance::CallResult;
use crate::runtime::port::{ClusterPort, NodeView, PortFuture};
use crate::runtime::routers::RoutedPlace;
use crate::runtime::task::TaskSpec;
use crate::runtime::task_table::TaskControl;

impl Cluster {
    /// This cluster state itself, for work that outlives the call.
    fn arc(&self) -> Result<Arc<Cluster>, FabricError> {
        self.me.upgrade().ok_or(FabricError::Cancelled)
    }
}

impl ClusterPort for Cluster {
    fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError> {
        Cluster::check_feasible(self, demand)
    }

    fn place_task(&self, spec: &TaskSpec) -> Placement {
        Cluster::place_task(self, spec)
    }

    fn place_later(&self, spec: TaskSpec, control: Arc<TaskControl>) {
        if let Ok(me) = self.arc() {
            me.place_later(spec, control);
        }
    }

    fn forward_task(&self, node: NodeId, spec: TaskSpec, control: Arc<TaskControl>) {
        if let Ok(me) = self.arc() {
            me.forward_task(node, spec, control);
        }
    }

    fn cancel_forwarded(&self, result: ObjectId) {
        Cluster::cancel_forwarded(self, result);
    }

    fn send_results(&self, owner: NodeId, job: JobId, outcomes: Vec<(ObjectId, CallResult)>) {
        if let Ok(me) = self.arc() {
            me.send_results(owner, job, outcomes);
        }
    }

    fn send_item(
        &self,
        owner: NodeId,
        job: JobId,
        stream: ObjectId,
        index: u64,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> PortFuture<'_, ()> {
        Box::pin(async move {
            let me = self.arc()?;
            me.send_item(owner, job, stream, index, value, nested).await
        })
    }

    fn stream_ack(&self, node: NodeId, stream: ObjectId, taken: u64, have: u64, closed: bool) {
        Cluster::stream_ack(self, node, stream, taken, have, closed);
    }

    fn close_stream(&self, stream: ObjectId) {
        Cluster::close_stream(self, stream);
    }

    fn create_actor(
        &self,
        spec: ActorSpec,
        strategy: Strategy,
        get_if_exists: bool,
    ) -> PortFuture<'_, ActorId> {
        Box::pin(async move {
            self.arc()?
                .create_actor(spec, strategy, get_if_exists)
                .await
        })
    }

    fn call_actor<'a>(
        &'a self,
        actor: ActorId,
        tenant: &'a str,
        call: ActorCall,
    ) -> PortFuture<'a, ()> {
        Box::pin(async move { self.arc()?.call_actor(actor, tenant, call).await })
    }

    fn kill_actor<'a>(&'a self, actor: ActorId, tenant: &'a str) -> PortFuture<'a, ()> {
        Box::pin(Cluster::kill_actor(self, actor, tenant))
    }

    fn lookup_actor<'a>(&'a self, namespace: &'a str, name: &'a str) -> PortFuture<'a, ActorId> {
        Box::pin(self.lookup_named(namespace, name))
    }

    fn lookup_router<'a>(
        &'a self,
        node: NodeId,
        tenant: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> PortFuture<'a, ActorId> {
        Box::pin(Cluster::lookup_router(self, node, tenant, namespace, name))
    }

    fn place_routed<'a>(
        &'a self,
        node: NodeId,
        router: ActorId,
        tenant: &'a str,
        caller: Option<ActorId>,
    ) -> PortFuture<'a, RoutedPlace> {
        Box::pin(Cluster::place_routed(self, node, router, tenant, caller))
    }

    fn actor_changed(
        &self,
        owner: NodeId,
        actor: ActorId,
        restarts: u32,
        checkpoint: Option<Bytes>,
        dead: bool,
    ) {
        self.send_actor_state(owner, actor, restarts, checkpoint, dead);
    }

    fn actor_died(&self, actor: ActorId, reason: String) {
        if let Ok(me) = self.arc() {
            Cluster::actor_died(&me, actor, reason);
        }
    }

    fn job_ended_here(&self, job: JobId) {
        self.remember_ended(job);
        self.drop_job_work(job);
        if let Ok(me) = self.arc() {
            me.drop_job_groups(job);
        }
    }

    fn driver_returned(&self, job: JobId) {
        self.job_finished(job);
    }

    fn create_group(&self, spec: GroupSpec) -> PortFuture<'_, ()> {
        Box::pin(Cluster::create_group(self, spec))
    }

    fn group_ready<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()> {
        Box::pin(Cluster::group_ready(self, group, tenant))
    }

    fn remove_group<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, ()> {
        Box::pin(Cluster::remove_group(self, group, tenant))
    }

    fn group_info<'a>(&'a self, group: GroupId, tenant: &'a str) -> PortFuture<'a, GroupInfo> {
        Box::pin(Cluster::group_info(self, group, tenant))
    }

    fn lookup_group<'a>(&'a self, ns: &'a str, name: &'a str) -> PortFuture<'a, GroupInfo> {
        Box::pin(Cluster::lookup_group(self, ns, name))
    }

    fn known_group(&self, group: GroupId, tenant: &str) -> Option<GroupInfo> {
        Cluster::known_group(self, group, tenant)
    }

    fn nodes(&self) -> Vec<NodeView> {
        self.node_views()
    }
}
