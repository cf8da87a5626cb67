//! What a guest may see of its cluster: `cluster-resources`,
//! `available-resources`, `nodes` and `tenant-resources`.
//!
//! Totals are no one's secret; what is free is: it tells a tenant how busy
//! the others are. So unless the operator's policy shows the cluster's
//! load (`show-cluster-load`), `available-resources` is what the caller's
//! own tenant may still take (the totals within its quota, less what it
//! holds), and `nodes` lists each node without its free resources or its
//! address (the cluster's network is the operator's).

use wasmtime::component::LinkerInstance;

use super::Ctx;
use crate::bindings::fabric::core::types::{NodeInfo, Resources, TenantView};
use crate::bundles::RESERVED;
use crate::resources::{ResourceSet, UNIT};
use crate::runtime::NodeCore;
use crate::runtime::instance::InstanceState;
use crate::runtime::port::NodeView;
use crate::tenants::TenantAccount;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap("cluster-resources", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        Ok((to_wit(&totals(&exec.core.port().nodes()).0),))
    })?;
    host.func_wrap("available-resources", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        let (total, free) = totals(&exec.core.port().nodes());
        let shown = if shows_load(&exec.core) {
            free
        } else {
            tenant_room(&exec.core, &exec.job.account, &total)
        };
        Ok((to_wit(&shown),))
    })?;
    host.func_wrap("nodes", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        let load = shows_load(&exec.core);
        let nodes = exec.core.port().nodes();
        Ok((nodes
            .iter()
            .map(|n| node_to_wit(n, load))
            .collect::<Vec<_>>(),))
    })?;
    host.func_wrap("tenant-resources", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        let account = &exec.job.account;
        let quota = account.quota();
        Ok((TenantView {
            quota_cpus: quota.cpus,
            quota_gpus: quota.gpus,
            quota_memory: quota.memory,
            used: to_wit(&held(&exec.core, account)),
        },))
    })?;
    Ok(())
}

fn shows_load(core: &NodeCore) -> bool {
    core.config().policy.show_cluster_load
}

/// What the live nodes have, and have free (never below zero).
fn totals(nodes: &[NodeView]) -> (ResourceSet, ResourceSet) {
    let (mut total, mut free) = (ResourceSet::default(), ResourceSet::default());
    for n in nodes.iter().filter(|n| n.alive) {
        total.add(&n.total);
        let mut f = n.free.clone();
        f.cpu = f.cpu.max(0);
        f.gpu = f.gpu.max(0);
        f.memory = f.memory.max(0);
        free.add(&f);
    }
    (total, free)
}

/// What `account`'s work holds in the cluster: here, and elsewhere as the
/// head last said.
fn held(core: &NodeCore, account: &TenantAccount) -> ResourceSet {
    let mut held = account.held_elsewhere();
    if let Some(here) = core
        .scheduler()
        .held()
        .into_iter()
        .find(|h| h.tenant == account.name)
    {
        held.add(&here.held);
    }
    held.custom.clear();
    held
}

/// What `account`'s tenant may still take: the totals within its quota,
/// less what it holds. Custom resources show their totals.
fn tenant_room(core: &NodeCore, account: &TenantAccount, total: &ResourceSet) -> ResourceSet {
    let cap = account.quota().resource_cap();
    let used = held(core, account);
    let room = |total: i64, cap: Option<i64>, used: i64| {
        (total.min(cap.unwrap_or(i64::MAX)) - used.max(0)).max(0)
    };
    ResourceSet {
        cpu: room(total.cpu, cap.cpu, used.cpu),
        gpu: room(total.gpu, cap.gpu, used.gpu),
        memory: room(total.memory, cap.memory, used.memory),
        custom: total.custom.clone(),
    }
}

/// A resource set as the WIT `resources` record (bundles' own names left out).
pub(crate) fn to_wit(set: &ResourceSet) -> Resources {
    let amount = |v: i64| v as f64 / UNIT as f64;
    Resources {
        num_cpus: Some(amount(set.cpu)),
        num_gpus: Some(amount(set.gpu)),
        memory: Some(set.memory.max(0) as u64),
        custom: set
            .custom
            .iter()
            .filter(|(n, _)| !n.starts_with(RESERVED))
            .map(|(n, v)| (n.to_string(), amount(*v)))
            .collect(),
    }
}

fn node_to_wit(n: &NodeView, load: bool) -> NodeInfo {
    NodeInfo {
        node_id: n.id.to_string(),
        address: if load {
            n.address.clone()
        } else {
            String::new()
        },
        alive: n.alive,
        is_head: n.is_head,
        resources: to_wit(&n.total),
        available: load.then(|| to_wit(&n.free)),
        labels: n.labels.clone(),
    }
}
