//! Tenant usage and quotas on a node of a cluster: what the node reports in
//! its heartbeat, and how it applies the quotas the head sends back (each
//! tenant's quota less what it holds elsewhere; the head's side is
//! [`crate::head`]'s usage).

use std::collections::{HashMap, HashSet};

use wasmfabric_proto::v1 as pb;

use crate::quota::ResourceCap;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::tenants::QuotaView;
use crate::wire::{quota_from_pb, resources_from_pb, resources_to_pb};

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
            live_instances: u.live_instances,
            live_actors: u.live_actors,
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
            instances_elsewhere: l.instances_elsewhere,
            actors_elsewhere: l.actors_elsewhere,
            held_elsewhere: elsewhere,
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
