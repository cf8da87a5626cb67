//! The head places placement groups (issue 15): it asks nodes to reserve
//! bundles, all or none per node, through the [`BundleNodes`] port (the
//! head holds no node), and places again the bundles of a node that died.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use wasmfabric_proto::v1 as pb;

use super::Head;
use super::groups::Plan;
use crate::error::FabricError;
use crate::group_wire::group_to_pb;
use crate::ids::{GroupId, NodeId};
use crate::runtime::groups::{GroupInfo, GroupState};

/// What the port's calls return.
pub type BundleFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the head reaches nodes to reserve and free bundles.
pub trait BundleNodes: Send + Sync {
    /// Reserves bundles `indexes` of `group` on `node`, all or none.
    fn reserve(
        &self,
        node: NodeId,
        group: pb::GroupInfo,
        indexes: Vec<u32>,
    ) -> BundleFuture<'_, bool>;

    /// Frees bundles `indexes` of `group` on `node` (all when empty).
    fn release(&self, node: NodeId, group: GroupId, indexes: Vec<u32>) -> BundleFuture<'_, ()>;
}

/// The longest pause between two tries to place a group.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Head {
    /// Where the head reaches nodes (set once, by the head's own node).
    pub fn set_bundle_nodes(&self, port: Arc<dyn BundleNodes>) {
        let _ = self.bundle_nodes.set(port);
    }

    /// Records a group and starts placing it.
    pub(crate) fn create_group(&self, info: GroupInfo) -> Result<GroupInfo, FabricError> {
        // A driver stopped in the middle of creating one: its job's groups
        // were already removed, and this one would be left behind.
        if !info.detached
            && self
                .jobs
                .get(info.job)
                .is_some_and(|j| j.status.is_finished())
        {
            return Err(FabricError::Cancelled);
        }
        let info = self.groups.create(info, &self.nodes.all())?;
        self.start_placing(info.id);
        Ok(info)
    }

    /// Starts placing `id`, unless a loop already does.
    fn start_placing(&self, id: GroupId) {
        if let Some(me) = self.me.upgrade()
            && self.groups.start_placing(id)
        {
            tokio::spawn(async move {
                loop {
                    me.clone().place_group(id).await;
                    // Ended: unless a node died after its last look.
                    if !me.groups.stop_placing(id) || !me.groups.start_placing(id) {
                        return;
                    }
                }
            });
        }
    }

    /// Places a group's unplaced bundles, trying again until they all are
    /// or the group is removed.
    async fn place_group(self: Arc<Self>, id: GroupId) {
        let mut backoff = Duration::from_millis(20);
        loop {
            let Some(info) = self.groups.info(id) else {
                return;
            };
            // (A head restoring its groups starts before its node's port.)
            let Some(port) = self.bundle_nodes.get().cloned() else {
                tokio::time::sleep(backoff).await;
                continue;
            };
            if info.state == GroupState::Created {
                return;
            }
            let plan = match self.groups.plan(id, &self.nodes.all()) {
                Ok(Some(plan)) => plan,
                // No room now, or never with the nodes there are now: a
                // node may free room or join.
                Ok(None) | Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if self.reserve_plan(&*port, &info, &plan).await {
                let placed = self.groups.placed(id, &plan, &self.nodes.alive());
                match placed {
                    Some(placed) if placed.state == GroupState::Created => return,
                    Some(_) => continue,
                    // Removed while its bundles were being reserved.
                    None => return release_all(&*port, id, &plan).await,
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reserves every step of `plan`; on a refusal, frees what this plan
    /// reserved (by index: bundles placed before stay).
    async fn reserve_plan(&self, port: &dyn BundleNodes, info: &GroupInfo, plan: &Plan) -> bool {
        let group = group_to_pb(info);
        for (k, (node, indexes)) in plan.iter().enumerate() {
            if port.reserve(*node, group.clone(), indexes.clone()).await {
                continue;
            }
            // Freed by index: what those nodes held before stays. The
            // refusing node too: its answer may have been lost, not its work.
            for (n, idx) in &plan[..=k] {
                port.release(*n, info.id, idx.clone()).await;
            }
            return false;
        }
        true
    }

    /// Removes group `id` of `tenant` and frees its bundles.
    pub(crate) fn remove_group(&self, id: GroupId, tenant: &str) -> Result<GroupInfo, FabricError> {
        let (info, nodes) = self.groups.remove(id, tenant)?;
        if let Some(port) = self.bundle_nodes.get().cloned() {
            tokio::spawn(async move {
                for n in nodes {
                    port.release(n, id, Vec::new()).await;
                }
            });
        }
        Ok(info)
    }

    /// A job ended: its groups that are not detached are removed.
    pub(crate) fn remove_job_groups(&self, job: crate::ids::JobId) {
        for (id, tenant) in self.groups.of_job(job) {
            let _ = self.remove_group(id, &tenant);
        }
    }

    /// A node died: its groups' bundles are placed again.
    pub(crate) fn groups_of_gone_node(&self, node: NodeId) {
        for info in self.groups.node_gone(node) {
            self.start_placing(info.id);
        }
    }

    /// Takes back the groups a previous run saved, and places the ones
    /// that were not created.
    pub(crate) fn restore_groups(&self, saved: Vec<GroupInfo>) {
        self.groups.restore(saved);
        for id in self.groups.unplaced() {
            self.start_placing(id);
        }
    }
}

async fn release_all(port: &dyn BundleNodes, id: GroupId, plan: &Plan) {
    for (node, indexes) in plan {
        port.release(*node, id, indexes.clone()).await;
    }
}

impl Head {
    /// A group by id or name, for its tenant; with `wait_created`, once it
    /// is created or removed (or `wait_ms` passed).
    pub(crate) async fn get_group(&self, r: pb::GetGroupRequest) -> Result<GroupInfo, FabricError> {
        use pb::get_group_request::By;
        let not_found = || FabricError::NotFound("placement group".into());
        let found = match &r.by {
            Some(By::GroupId(b)) => {
                let id = GroupId::from_u128(
                    crate::wire::parse_id(b)
                        .map_err(|s| FabricError::InvalidArgument(s.message().into()))?,
                );
                self.groups.get(id, &r.tenant)
            }
            Some(By::Name(n)) => self.groups.by_name(&n.namespace, &n.name, &r.tenant),
            None => None,
        };
        let info = found.ok_or_else(not_found)?;
        if !r.wait_created || info.state == GroupState::Created {
            return Ok(info);
        }
        let Some(mut rx) = self.groups.watch(info.id, &r.tenant) else {
            return Ok(GroupInfo {
                state: GroupState::Removed,
                ..info
            });
        };
        let wait = Duration::from_millis(u64::from(r.wait_ms.min(30_000)));
        let settled = tokio::time::timeout(
            wait,
            rx.wait_for(|s| matches!(s, GroupState::Created | GroupState::Removed)),
        )
        .await;
        drop(settled);
        Ok(self.groups.get(info.id, &r.tenant).unwrap_or(GroupInfo {
            state: GroupState::Removed,
            ..info
        }))
    }
}
