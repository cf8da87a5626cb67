//! Tenant usage and quotas across the cluster: what each node reports in its
//! heartbeat, how the head sums it, and how a node applies the quotas the
//! head sends back (each tenant's quota less what it holds elsewhere).

use std::collections::{BTreeMap, HashMap, HashSet};

use wasmfabric_proto::v1 as pb;

use super::convert::{resources_from_pb, resources_to_pb};
use crate::quota::{Quota, ResourceCap};
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::tenants::QuotaView;

pub(crate) fn quota_to_pb(q: &Quota) -> pb::Quota {
    pb::Quota {
        cpus: q.cpus,
        gpus: q.gpus,
        memory: q.memory,
        object_store: q.object_store,
        jobs: q.jobs,
    }
}

pub(crate) fn quota_from_pb(q: Option<&pb::Quota>) -> Quota {
    q.map(|q| Quota {
        cpus: q.cpus,
        gpus: q.gpus,
        memory: q.memory,
        object_store: q.object_store,
        jobs: q.jobs,
    })
    .unwrap_or_default()
}

/// What this node reports for each tenant in its heartbeat.
pub(crate) fn loads(core: &NodeCore) -> Vec<pb::TenantLoad> {
    let held: HashMap<std::sync::Arc<str>, ResourceSet> = core
        .scheduler()
        .held()
        .into_iter()
        .map(|h| (h.tenant, h.held))
        .collect();
    core.tenants()
        .usage()
        .into_iter()
        .map(|u| pb::TenantLoad {
            held: Some(resources_to_pb(
                &held.get(&u.tenant).cloned().unwrap_or_default(),
            )),
            tenant: u.tenant.to_string(),
            object_bytes: u.object_bytes,
            cpu_seconds: u.cpu_seconds,
            memory_byte_seconds: u.memory_byte_seconds,
            object_byte_seconds: u.object_byte_seconds,
            tasks: u.tasks,
            actors: u.actors,
        })
        .collect()
}

/// Applies the head's per-tenant limits on this node; a tenant no longer
/// listed has no quota.
pub(crate) fn apply_limits(core: &NodeCore, limits: &[pb::TenantLimit]) {
    let mut listed = HashSet::new();
    for l in limits {
        listed.insert(l.tenant.clone());
        let quota = quota_from_pb(l.quota.as_ref());
        let elsewhere = resources_from_pb(l.held_elsewhere.as_ref());
        let tenant: std::sync::Arc<str> = l.tenant.as_str().into();
        core.scheduler()
            .set_cap(&tenant, less(quota.resource_cap(), &elsewhere));
        core.tenants().account(&l.tenant).set_view(QuotaView {
            quota,
            object_bytes_elsewhere: l.object_bytes_elsewhere,
        });
    }
    for a in core.tenants().accounts() {
        if !listed.contains(&*a.name) && !a.quota().is_unlimited() {
            core.scheduler().set_cap(&a.name, ResourceCap::default());
            a.set_view(QuotaView::default());
        }
    }
}

/// A cap less what is held elsewhere (never below zero).
fn less(cap: ResourceCap, elsewhere: &ResourceSet) -> ResourceCap {
    ResourceCap {
        cpu: cap.cpu.map(|c| (c - elsewhere.cpu).max(0)),
        gpu: cap.gpu.map(|c| (c - elsewhere.gpu).max(0)),
        memory: cap.memory.map(|c| (c - elsewhere.memory).max(0)),
    }
}

/// The head's sums: per tenant, the loads of all nodes (`alive` decides
/// whose holdings still count).
pub(crate) struct Totals {
    pub by_tenant: BTreeMap<String, pb::TenantUsage>,
}

pub(crate) fn totals<'a>(loads: impl Iterator<Item = (bool, &'a pb::TenantLoad)>) -> Totals {
    let mut by_tenant: BTreeMap<String, pb::TenantUsage> = BTreeMap::new();
    for (alive, l) in loads {
        let u = by_tenant
            .entry(l.tenant.clone())
            .or_insert_with(|| pb::TenantUsage {
                tenant: l.tenant.clone(),
                ..Default::default()
            });
        u.cpu_seconds += l.cpu_seconds;
        u.memory_byte_seconds += l.memory_byte_seconds;
        u.object_byte_seconds += l.object_byte_seconds;
        u.tasks += l.tasks;
        u.actors += l.actors;
        if alive {
            let held = resources_from_pb(l.held.as_ref());
            u.cpus_in_use += held.cpu as f64 / crate::resources::UNIT as f64;
            u.gpus_in_use += held.gpu as f64 / crate::resources::UNIT as f64;
            u.memory_in_use += held.memory.max(0) as u64;
            u.object_bytes_in_use += l.object_bytes;
        }
    }
    Totals { by_tenant }
}

/// For node `me`: each quota'd tenant's limit, counting what the other
/// live nodes hold.
pub(crate) fn limits_for<'a>(
    quotas: &[(String, Quota)],
    others: impl Iterator<Item = &'a pb::TenantLoad> + Clone,
) -> Vec<pb::TenantLimit> {
    quotas
        .iter()
        .filter(|(_, q)| !q.is_unlimited())
        .map(|(tenant, q)| {
            let mut held = ResourceSet::default();
            let mut objects = 0;
            for l in others.clone().filter(|l| &l.tenant == tenant) {
                let h = resources_from_pb(l.held.as_ref());
                held.cpu += h.cpu;
                held.gpu += h.gpu;
                held.memory += h.memory;
                objects += l.object_bytes;
            }
            pb::TenantLimit {
                tenant: tenant.clone(),
                quota: Some(quota_to_pb(q)),
                held_elsewhere: Some(resources_to_pb(&held)),
                object_bytes_elsewhere: objects,
            }
        })
        .collect()
}
