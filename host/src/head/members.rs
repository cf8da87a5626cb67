//! The head's side of membership: nodes register, heartbeat, drain and
//! leave; each heartbeat brings the node's tenant loads and takes back each
//! quota'd tenant's limits for that node.

use std::time::Instant;

use super::records::{NodeLoad, NodeRecord, NodeState, Record, TenantLoad};
use super::usage::{self, TenantLimit, TenantUsage};
use super::{Head, HeadError};
use crate::ids::NodeId;
use crate::resources::ResourceSet;
use crate::security::Principal;

/// What a node says about itself when it registers.
pub(crate) struct Joining {
    pub id: NodeId,
    pub address: String,
    pub total: ResourceSet,
    pub labels: std::collections::HashMap<String, String>,
    pub object_store_capacity: u64,
}

impl Head {
    /// A node (re)registers: it is alive, and saved before it hears so.
    pub(crate) async fn register_node(&self, node: Joining) -> Result<Vec<NodeRecord>, HeadError> {
        let record = NodeRecord {
            is_head: node.id == self.node_id(),
            id: node.id,
            address: node.address,
            load: NodeLoad {
                free: node.total.clone(),
                ..Default::default()
            },
            total: node.total,
            labels: node.labels,
            object_store_capacity: node.object_store_capacity,
            state: NodeState::Alive,
            last_seen: Instant::now(),
        };
        tracing::info!(node = %record.id.short(), address = %record.address, "node registered");
        self.nodes.register(record.clone());
        self.save(vec![Record::Node(record)]).await?;
        Ok(self.nodes.all())
    }

    /// A heartbeat: `None` if the head does not know the node (it should
    /// register again), else the cluster as the head sees it and the
    /// node's tenant limits.
    pub(crate) fn heartbeat(
        &self,
        id: NodeId,
        load: NodeLoad,
        tenants: Vec<TenantLoad>,
        (epoch, version): (u64, u64),
    ) -> Option<(super::nodes::View, Vec<TenantLimit>)> {
        if !self.nodes.heartbeat(id, load, tenants) {
            return None;
        }
        Some((self.nodes.view_since(epoch, version), self.limits_for(id)))
    }

    /// A node left the cluster on its own.
    pub(crate) fn deregister(&self, id: NodeId) {
        self.node_gone(id, true, "its node left the cluster");
        tracing::info!(node = %id.short(), "node left");
    }

    /// The live node whose id is `prefix`, or the only one whose id starts
    /// with it (hex).
    pub(crate) fn find_node(&self, prefix: &str) -> Result<NodeId, HeadError> {
        Ok(self.nodes.find(prefix)?)
    }

    /// Marks a worker draining: heartbeats tell every node (it included).
    pub(crate) fn start_draining(&self, id: NodeId) -> Result<(), HeadError> {
        if id == self.node_id() {
            return Err(HeadError::HeadNotDrainable);
        }
        let node = self
            .nodes
            .start_draining(id)
            .ok_or(HeadError::NotAlive(id))?;
        tracing::info!(node = %id.short(), "draining a node");
        self.save_later(vec![Record::Node(node)]);
        Ok(())
    }

    /// Whether the node is gone: `Some(true)` if it left (deregistered),
    /// `Some(false)` if it died, `None` while it is up.
    pub(crate) fn has_left(&self, id: NodeId) -> Option<bool> {
        self.nodes.has_left(id)
    }

    /// The quota'd tenants' limits for node `me`, counting what the other
    /// live nodes hold.
    pub(crate) fn limits_for(&self, me: NodeId) -> Vec<TenantLimit> {
        let quotas: Vec<(String, crate::quota::Quota)> = self
            .tokens
            .tenants()
            .into_iter()
            .map(|t| (t.name, t.quota))
            .collect();
        if quotas.iter().all(|(_, q)| q.is_unlimited()) {
            return Vec::new();
        }
        self.nodes.with_loads(|loads| {
            let others: Vec<&TenantLoad> = loads
                .filter(|(n, up, _)| *n != me && *up)
                .map(|(_, _, l)| l)
                .collect();
            usage::limits_for(&quotas, others.iter().copied())
        })
    }

    /// Each tenant's usage over the cluster (every tenant with a token, and
    /// any that ran); a tenant caller sees only its own.
    pub(crate) fn tenant_usage(&self, who: &Principal) -> Vec<TenantUsage> {
        let mut totals = self
            .nodes
            .with_loads(|loads| usage::totals(loads.map(|(_, up, l)| (up, l))));
        for t in self.tokens.tenants() {
            totals.entry(t.name.clone()).or_insert_with(|| TenantUsage {
                tenant: t.name.clone(),
                ..Default::default()
            });
        }
        totals
            .into_values()
            .filter(|u| who.is_admin() || u.tenant == who.tenant())
            .map(|mut u| {
                u.quota = self.tokens.quota(&u.tenant);
                (u.jobs, u.jobs_running) = self.jobs.counts(&u.tenant);
                u
            })
            .collect()
    }
}
