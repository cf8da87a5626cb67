//! Placement groups from a node of a cluster (issue 15): the head keeps
//! them; this node asks it, and keeps a cache of the groups it saw, so
//! that work placed in a bundle goes to the node holding it without a
//! round trip to the head.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::FabricError;
use crate::group_wire::{group_to_pb, reply_group};
use crate::ids::{GroupId, NodeId};
use crate::runtime::groups::{GroupInfo, GroupSpec, GroupState, MAX_READY_WAITERS};
use crate::wire::{id_bytes, rpc_failure};
use fabric_runtime::bundles::removed;

/// The most groups a node's cache keeps; past it the cache starts afresh.
const MAX_CACHED: usize = 10_000;

/// How long one `GetGroup` waits at the head for a group to be placed.
const WAIT_MS: u32 = 10_000;

/// The groups this node saw, as the head last said, and how many
/// `placement-group-ready` calls wait on each here.
#[derive(Default)]
pub(super) struct GroupCache(DashMap<GroupId, GroupInfo>, DashMap<GroupId, usize>);

/// One `ready` waiting here; counted while it waits.
struct Waiting<'a>(&'a DashMap<GroupId, usize>, GroupId);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut n) = self.0.get_mut(&self.1) {
            *n -= 1;
        }
        self.0.remove_if(&self.1, |_, n| *n == 0);
    }
}

impl Cluster {
    fn remember_group(&self, info: &GroupInfo) {
        if self.groups.0.len() >= MAX_CACHED {
            self.groups.0.clear();
        }
        self.groups.0.insert(info.id, info.clone());
    }

    async fn ask_group(&self, req: pb::GetGroupRequest) -> Result<GroupInfo, FabricError> {
        let reply = self
            .head
            .clone()
            .get_group(req)
            .await
            .map_err(|s| rpc_failure("GetGroup", &s))?
            .into_inner();
        let info = reply_group(reply)?;
        self.remember_group(&info);
        Ok(info)
    }

    fn by_id(group: GroupId, tenant: &str, wait: bool) -> pb::GetGroupRequest {
        pb::GetGroupRequest {
            by: Some(pb::get_group_request::By::GroupId(id_bytes(
                group.as_u128(),
            ))),
            tenant: tenant.to_string(),
            wait_created: wait,
            wait_ms: WAIT_MS,
        }
    }

    pub(crate) async fn create_group(&self, spec: GroupSpec) -> Result<(), FabricError> {
        let info = GroupInfo::of(&spec);
        let reply = self
            .head
            .clone()
            .create_group(pb::CreateGroupRequest {
                group: Some(group_to_pb(&info)),
            })
            .await
            .map_err(|s| rpc_failure("CreateGroup", &s))?
            .into_inner();
        let info = reply_group(reply)?;
        self.remember_group(&info);
        Ok(())
    }

    /// Waits until every bundle of `group` is reserved.
    pub(crate) async fn group_ready(
        &self,
        group: GroupId,
        tenant: &str,
    ) -> Result<(), FabricError> {
        let _waiting = {
            let mut n = self.groups.1.entry(group).or_insert(0);
            if *n >= MAX_READY_WAITERS {
                return Err(FabricError::limit(
                    "placement-group-waiters",
                    MAX_READY_WAITERS as u64,
                    format!("{MAX_READY_WAITERS} calls already wait for placement group {group}"),
                ));
            }
            *n += 1;
            Waiting(&self.groups.1, group)
        };
        self.wait_created(group, tenant).await
    }

    /// Waits until `group` is created (work placed in it waits so, besides
    /// `ready`: bounded by its job's pending tasks, not by the waiters').
    async fn wait_created(&self, group: GroupId, tenant: &str) -> Result<(), FabricError> {
        loop {
            let info = self.ask_group(Self::by_id(group, tenant, true)).await?;
            match info.state {
                GroupState::Created => return Ok(()),
                GroupState::Removed => return Err(removed(group)),
                GroupState::Pending | GroupState::Rescheduling => {}
            }
        }
    }

    pub(crate) async fn remove_group(
        &self,
        group: GroupId,
        tenant: &str,
    ) -> Result<(), FabricError> {
        let reply = self
            .head
            .clone()
            .remove_group(pb::RemoveGroupRequest {
                group_id: id_bytes(group.as_u128()),
                tenant: tenant.to_string(),
            })
            .await
            .map_err(|s| rpc_failure("RemoveGroup", &s))?
            .into_inner();
        let removed = reply_group(reply).map(drop);
        // Only the group's tenant may drop it from the cache.
        if removed.is_ok() {
            self.groups.0.remove(&group);
        }
        removed
    }

    pub(crate) async fn group_info(
        &self,
        group: GroupId,
        tenant: &str,
    ) -> Result<GroupInfo, FabricError> {
        self.ask_group(Self::by_id(group, tenant, false)).await
    }

    pub(crate) async fn lookup_group(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<GroupInfo, FabricError> {
        let tenant = namespace.split_once('/').map_or("", |(t, _)| t);
        self.ask_group(pb::GetGroupRequest {
            by: Some(pb::get_group_request::By::Name(pb::NamedActor {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })),
            tenant: tenant.to_string(),
            wait_created: false,
            wait_ms: 0,
        })
        .await
    }

    /// A group as this node knows it now: seen lately, or held here.
    pub(crate) fn known_group(&self, group: GroupId, tenant: &str) -> Option<GroupInfo> {
        self.groups
            .0
            .get(&group)
            .filter(|g| &*g.tenant == tenant)
            .map(|g| g.clone())
            .or_else(|| self.held_group(group, tenant))
    }

    /// The node holding bundle `index` of `group` (any of its bundles when
    /// `None`, this node first), as this node knows it now.
    pub(crate) fn bundle_node(&self, group: GroupId, index: Option<u32>) -> Option<NodeId> {
        let g = self.groups.0.get(&group)?;
        if g.state != GroupState::Created {
            return None;
        }
        match index {
            Some(i) => g.nodes.get(i as usize).copied().flatten(),
            None => g
                .nodes
                .iter()
                .flatten()
                .find(|n| **n == self.id)
                .or_else(|| g.nodes.iter().flatten().next())
                .copied(),
        }
    }

    /// Waits until `group` is placed, then where its bundle is.
    pub(crate) async fn placed_bundle(
        &self,
        group: GroupId,
        index: Option<u32>,
        tenant: &str,
    ) -> Result<NodeId, FabricError> {
        for _ in 0..60 {
            if let Some(node) = self
                .bundle_node(group, index)
                .filter(|n| self.is_live(*n) || *n == self.id)
            {
                return Ok(node);
            }
            self.wait_created(group, tenant).await?;
            // (The head may not have seen a death this node saw.)
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(FabricError::ResourcesInfeasible(format!(
            "placement group {group} could not be placed in time"
        )))
    }

    /// Places a task in a bundle once the bundle is placed.
    pub(super) fn place_later(
        self: &Arc<Self>,
        spec: crate::runtime::task::TaskSpec,
        control: Arc<crate::runtime::task_table::TaskControl>,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let Some(core) = me.core() else { return };
            let crate::placement::Strategy::Bundle { group, index } = spec.strategy else {
                return;
            };
            match me.placed_bundle(group, index, &spec.job.tenant).await {
                Ok(_) => crate::runtime::task::place_again(core, spec, control),
                Err(e) => crate::runtime::task::finish_unrun(&core, spec, &control, e),
            }
        });
    }

    /// A node died: the cached bundles it held are not placed any more.
    pub(super) fn forget_bundles_on(&self, node: NodeId) {
        for mut g in self.groups.0.iter_mut() {
            if g.nodes.contains(&Some(node)) {
                for n in g.nodes.iter_mut().filter(|n| **n == Some(node)) {
                    *n = None;
                }
                g.state = GroupState::Rescheduling;
            }
        }
    }

    /// A job ended: the groups it created here that are not detached go.
    pub(super) fn drop_job_groups(self: &Arc<Self>, job: crate::ids::JobId) {
        let mine: Vec<(GroupId, Arc<str>)> = self
            .groups
            .0
            .iter()
            .filter(|g| g.job == job && !g.detached)
            .map(|g| (g.id, g.tenant.clone()))
            .collect();
        for (id, tenant) in mine {
            let me = self.clone();
            tokio::spawn(async move {
                let _ = me.remove_group(id, &tenant).await;
            });
        }
    }
}
