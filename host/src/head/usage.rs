//! Tenant usage across the cluster, as the head sums it from the nodes'
//! heartbeats, and each tenant's limits for one node (its quota less what
//! it holds on the other live nodes).

use std::collections::BTreeMap;

use super::records::TenantLoad;
use crate::quota::Quota;
use crate::resources::ResourceSet;

/// One tenant's usage, summed over every node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantUsage {
    pub tenant: String,
    pub quota: Quota,
    pub cpu_seconds: f64,
    pub memory_byte_seconds: f64,
    pub object_byte_seconds: f64,
    pub tasks: u64,
    pub actors: u64,
    pub jobs: u64,
    pub jobs_running: u32,
    /// What its work holds now on live nodes.
    pub in_use: ResourceSet,
    pub object_bytes_in_use: u64,
    /// Instances and actors alive now on live nodes.
    pub live_instances: u64,
    pub live_actors: u64,
}

/// A quota'd tenant's limit on one node.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TenantLimit {
    pub tenant: String,
    pub quota: Quota,
    pub held_elsewhere: ResourceSet,
    pub object_bytes_elsewhere: u64,
    pub instances_elsewhere: u64,
    pub actors_elsewhere: u64,
}

/// Per tenant, the loads of all nodes summed (`alive` decides whose
/// holdings still count: a dead node holds nothing).
pub(crate) fn totals<'a>(
    loads: impl Iterator<Item = (bool, &'a TenantLoad)>,
) -> BTreeMap<String, TenantUsage> {
    let mut by_tenant: BTreeMap<String, TenantUsage> = BTreeMap::new();
    for (alive, l) in loads {
        let u = by_tenant
            .entry(l.tenant.clone())
            .or_insert_with(|| TenantUsage {
                tenant: l.tenant.clone(),
                ..Default::default()
            });
        u.cpu_seconds += l.cpu_seconds;
        u.memory_byte_seconds += l.memory_byte_seconds;
        u.object_byte_seconds += l.object_byte_seconds;
        u.tasks += l.tasks;
        u.actors += l.actors;
        if alive {
            u.in_use.cpu += l.held.cpu;
            u.in_use.gpu += l.held.gpu;
            u.in_use.memory += l.held.memory.max(0);
            u.object_bytes_in_use += l.object_bytes;
            u.live_instances += l.live_instances;
            u.live_actors += l.live_actors;
        }
    }
    by_tenant
}

/// Each quota'd tenant's limit for a node, counting what the other live
/// nodes hold (`others`).
pub(crate) fn limits_for<'a>(
    quotas: &[(String, Quota)],
    others: impl Iterator<Item = &'a TenantLoad> + Clone,
) -> Vec<TenantLimit> {
    quotas
        .iter()
        .filter(|(_, q)| !q.is_unlimited())
        .map(|(tenant, q)| {
            let mut held = ResourceSet::default();
            let (mut objects, mut instances, mut actors) = (0, 0, 0);
            for l in others.clone().filter(|l| &l.tenant == tenant) {
                held.cpu += l.held.cpu;
                held.gpu += l.held.gpu;
                held.memory += l.held.memory;
                objects += l.object_bytes;
                instances += l.live_instances;
                actors += l.live_actors;
            }
            TenantLimit {
                tenant: tenant.clone(),
                quota: q.clone(),
                held_elsewhere: held,
                object_bytes_elsewhere: objects,
                instances_elsewhere: instances,
                actors_elsewhere: actors,
            }
        })
        .collect()
}
