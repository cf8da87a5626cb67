//! Placement groups: `create-placement-group`, `placement-group-ready`,
//! `remove-placement-group`, `placement-group-table` and
//! `get-placement-group`. Every call acts for the caller's tenant only: a
//! group of another tenant is not found, exactly as a missing one.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::LinkerInstance;

use super::{Ctx, HostCall, check_name, demand_of, reserve_result, to_wasm};
use crate::bindings::fabric::core::types::{
    BundleStrategy as WitStrategy, GroupState as WitState, Id, PlacementGroupInfo,
    PlacementGroupOptions,
};
use crate::bundles::{BundleStrategy, MAX_BUNDLES};
use crate::error::FabricError;
use crate::ids::GroupId;
use crate::object_store::ObjectRef;
use crate::runtime::groups::{GroupInfo, GroupSpec, GroupState};
use crate::runtime::instance::InstanceState;
use crate::runtime::job::scoped_namespace;

/// What a resolved `placement-group-ready` reference holds: MessagePack `nil`.
const READY: &[u8] = &[0xc0];

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "create-placement-group",
        |mut store: Ctx, (options,): (PlacementGroupOptions,)| {
            Box::new(async move { Ok((to_wasm(create(store.data_mut(), options).await)?,)) })
        },
    )?;
    host.func_wrap(
        "placement-group-ready",
        |mut store: Ctx, (group,): (Id,)| {
            let ready = ready(&store, GroupId::from_wit(group));
            let handle = ready.and_then(|r| Ok(store.data_mut().push_ref(r)?));
            Ok((to_wasm(handle)?,))
        },
    )?;
    host.func_wrap_async("remove-placement-group", |store: Ctx, (group,): (Id,)| {
        Box::new(async move {
            let exec = store.data().exec()?;
            let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
            let removed = core.port().remove_group(GroupId::from_wit(group), &tenant);
            Ok((to_wasm(removed.await.map_err(Into::into))?,))
        })
    })?;
    host.func_wrap_async("placement-group-table", |store: Ctx, (group,): (Id,)| {
        Box::new(async move {
            let exec = store.data().exec()?;
            let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
            let info = core.port().group_info(GroupId::from_wit(group), &tenant);
            Ok((to_wasm(
                info.await.map(|i| info_to_wit(&i)).map_err(Into::into),
            )?,))
        })
    })?;
    host.func_wrap_async(
        "get-placement-group",
        |mut store: Ctx, (name, namespace): (String, Option<String>)| {
            Box::new(
                async move { Ok((to_wasm(lookup(store.data_mut(), name, namespace).await)?,)) },
            )
        },
    )?;
    Ok(())
}

fn strategy_of(s: WitStrategy) -> BundleStrategy {
    match s {
        WitStrategy::Pack => BundleStrategy::Pack,
        WitStrategy::Spread => BundleStrategy::Spread,
        WitStrategy::StrictPack => BundleStrategy::StrictPack,
        WitStrategy::StrictSpread => BundleStrategy::StrictSpread,
    }
}

fn strategy_to_wit(s: BundleStrategy) -> WitStrategy {
    match s {
        BundleStrategy::Pack => WitStrategy::Pack,
        BundleStrategy::Spread => WitStrategy::Spread,
        BundleStrategy::StrictPack => WitStrategy::StrictPack,
        BundleStrategy::StrictSpread => WitStrategy::StrictSpread,
    }
}

async fn create(state: &mut InstanceState, options: PlacementGroupOptions) -> HostCall<Id> {
    let exec = state.exec()?;
    let (core, job) = (exec.core.clone(), exec.job.clone());
    if options.bundles.is_empty() || options.bundles.len() > MAX_BUNDLES {
        return Err(FabricError::InvalidArgument(format!(
            "a placement group needs 1 to {MAX_BUNDLES} bundles, got {}",
            options.bundles.len()
        ))
        .into());
    }
    let bundles = options
        .bundles
        .iter()
        .map(|r| demand_of(r, 0.0))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = bundles.iter().position(|b| b.is_empty()) {
        return Err(FabricError::InvalidArgument(format!(
            "bundle {i} reserves nothing: a bundle needs some amount of a resource"
        ))
        .into());
    }
    let name = match options.name {
        None => None,
        Some(name) => {
            check_name("placement group", &name)?;
            let ns = options.namespace.unwrap_or_else(|| job.namespace.clone());
            check_name("namespace", &ns)?;
            Some((scoped_namespace(&job.tenant, &ns), name))
        }
    };
    if job.is_finished() {
        return Err(FabricError::Cancelled.into());
    }
    // A group its tenant's quota could never hold fails now, not waits.
    let quota = job.account.quota();
    if let Some(which) = quota
        .resource_cap()
        .never_admits(&crate::bundles::sum(&bundles))
    {
        let value = match which.as_str() {
            "cpus" => quota.cpus.unwrap_or_default() as u64,
            "gpus" => quota.gpus.unwrap_or_default() as u64,
            _ => quota.memory.unwrap_or_default(),
        };
        return Err(FabricError::limit(
            &format!("{which}-quota"),
            value,
            format!(
                "the group's bundles together are more than tenant `{}` may ever hold",
                job.tenant
            ),
        )
        .into());
    }
    let spec = GroupSpec {
        id: GroupId::random(),
        job,
        name,
        detached: options.detached,
        strategy: strategy_of(options.strategy),
        bundles,
    };
    let id = spec.id;
    core.port().create_group(spec).await?;
    Ok(id.to_wit())
}

/// A reference that resolves once the group is created.
fn ready(store: &Ctx<'_>, group: GroupId) -> HostCall<ObjectRef> {
    let exec = store.data().exec()?;
    let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
    // Refused at once for a group this tenant does not have.
    if core.port().known_group(group, &tenant).is_none() {
        return Err(FabricError::NotFound(format!("placement group {group}")).into());
    }
    let result = reserve_result(store, &[], Arc::from("placement-group-ready"))?;
    let id = result.id();
    let waiting = core.clone();
    core.runtime().spawn(async move {
        let outcome = waiting.port().group_ready(group, &tenant).await;
        let value = outcome.map(|()| Bytes::from_static(READY));
        waiting.objects().fulfill(id, value, Vec::new());
    });
    Ok(result)
}

async fn lookup(
    state: &mut InstanceState,
    name: String,
    namespace: Option<String>,
) -> HostCall<PlacementGroupInfo> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let shown = namespace.unwrap_or_else(|| exec.job.namespace.clone());
    check_name("placement group", &name)?;
    check_name("namespace", &shown)?;
    let ns = scoped_namespace(&exec.job.tenant, &shown);
    let info = core.port().lookup_group(&ns, &name).await?;
    Ok(info_to_wit(&info))
}

fn info_to_wit(info: &GroupInfo) -> PlacementGroupInfo {
    PlacementGroupInfo {
        id: info.id.to_wit(),
        name: info.name.as_ref().map(|(_, n)| n.clone()),
        strategy: strategy_to_wit(info.strategy),
        bundles: info.bundles.iter().map(super::introspect::to_wit).collect(),
        bundle_nodes: info
            .nodes
            .iter()
            .map(|n| n.map(|n| n.to_string()))
            .collect(),
        state: match info.state {
            GroupState::Pending => WitState::Pending,
            GroupState::Created => WitState::Created,
            GroupState::Rescheduling => WitState::Rescheduling,
            GroupState::Removed => WitState::Removed,
        },
    }
}
