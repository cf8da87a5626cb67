//! Placement groups to and from the protocol's `GroupInfo` (the head keeps
//! groups; nodes reserve their bundles): the one place that touches both.

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use crate::ids::{GroupId, JobId, NodeId};
use crate::runtime::groups::{GroupInfo, GroupState};
use crate::wire::{id_bytes, parse_id, resources_checked, resources_to_pb, status_failure};
use fabric_runtime::bundles::{BundleStrategy, MAX_BUNDLES};

use pb::group_info::{State as PbState, Strategy as PbStrategy};

fn strategy_to_pb(s: BundleStrategy) -> PbStrategy {
    match s {
        BundleStrategy::Pack => PbStrategy::Pack,
        BundleStrategy::Spread => PbStrategy::Spread,
        BundleStrategy::StrictPack => PbStrategy::StrictPack,
        BundleStrategy::StrictSpread => PbStrategy::StrictSpread,
    }
}

fn strategy_from_pb(s: PbStrategy) -> BundleStrategy {
    match s {
        PbStrategy::Pack => BundleStrategy::Pack,
        PbStrategy::Spread => BundleStrategy::Spread,
        PbStrategy::StrictPack => BundleStrategy::StrictPack,
        PbStrategy::StrictSpread => BundleStrategy::StrictSpread,
    }
}

fn state_to_pb(s: GroupState) -> PbState {
    match s {
        GroupState::Pending => PbState::Pending,
        GroupState::Created => PbState::Created,
        GroupState::Rescheduling => PbState::Rescheduling,
        GroupState::Removed => PbState::Removed,
    }
}

fn state_from_pb(s: PbState) -> GroupState {
    match s {
        PbState::Pending => GroupState::Pending,
        PbState::Created => GroupState::Created,
        PbState::Rescheduling => GroupState::Rescheduling,
        PbState::Removed => GroupState::Removed,
    }
}

pub(crate) fn group_to_pb(g: &GroupInfo) -> pb::GroupInfo {
    let (namespace, name) = g.name.clone().unwrap_or_default();
    pb::GroupInfo {
        group_id: id_bytes(g.id.as_u128()),
        tenant: g.tenant.to_string(),
        job_id: id_bytes(g.job.as_u128()),
        namespace,
        name,
        detached: g.detached,
        strategy: strategy_to_pb(g.strategy) as i32,
        bundles: g.bundles.iter().map(resources_to_pb).collect(),
        bundle_nodes: g
            .nodes
            .iter()
            .map(|n| n.map_or_else(Default::default, |n| id_bytes(n.as_u128())))
            .collect(),
        state: state_to_pb(g.state) as i32,
    }
}

/// A group from a peer or the head; every amount and count checked.
pub(crate) fn group_from_pb(g: &pb::GroupInfo) -> Result<GroupInfo, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    if g.bundles.is_empty() || g.bundles.len() > MAX_BUNDLES {
        return Err(bad(format!("a group of {} bundles", g.bundles.len())));
    }
    let bundles = g
        .bundles
        .iter()
        .map(|b| resources_checked(Some(b)).map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let nodes = (0..bundles.len())
        .map(|i| match g.bundle_nodes.get(i) {
            Some(b) if !b.is_empty() => parse_id(b).map(|n| Some(NodeId::from_u128(n))),
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(GroupInfo {
        id: GroupId::from_u128(parse_id(&g.group_id)?),
        tenant: g.tenant.as_str().into(),
        job: JobId::from_u128(parse_id(&g.job_id)?),
        name: (!g.name.is_empty()).then(|| (g.namespace.clone(), g.name.clone())),
        detached: g.detached,
        strategy: strategy_from_pb(g.strategy()),
        bundles,
        nodes,
        state: state_from_pb(g.state()),
    })
}

/// A reply's group, or its error.
pub(crate) fn reply_group(r: pb::GroupReply) -> Result<GroupInfo, crate::error::FabricError> {
    match r.outcome {
        Some(pb::group_reply::Outcome::Group(g)) => group_from_pb(&g).map_err(status_failure),
        Some(pb::group_reply::Outcome::Error(e)) => Err(crate::wire::error_from_pb(&e)),
        None => Err(crate::error::FabricError::InvalidArgument(
            "the head sent an empty reply".into(),
        )),
    }
}
