//! Placement groups as placement sees them: where a group's bundles go
//! under each strategy, and the resources a reserved bundle adds to its
//! node.
//!
//! A bundle reserved on a node takes its resources out of the node's free
//! set and adds them back under names only work placed in that group asks
//! for (Ray's scheme): `@pg:<group>:<index>:<resource>` for the bundle and
//! `@pg:<group>:*:<resource>` for all the group's bundles on that node, plus
//! a marker of each (`@pg:<group>:<index>`), so that work asking for no
//! resources still needs its bundle to be there. Work placed in a bundle
//! asks for those names instead of the plain ones ([`bundle_demand`]), so
//! the node's one scheduler serves it, queued and fair like any work.
//! Guests cannot name these resources: `@` is refused in resource names.
//!
//! The placement itself ([`place_bundles`]) is pure, like
//! [`crate::placement::place`]: it sees a snapshot of the nodes.
//!
//! ```
//! use fabric_runtime::bundles::{place_bundles, BundlePlacement, BundleStrategy};
//! use fabric_runtime::placement::Candidate;
//! use fabric_runtime::resources::ResourceSet;
//! use fabric_runtime::ids::NodeId;
//! let (a, b) = (NodeId::random(), NodeId::random());
//! let two = ResourceSet::default().with_cpus(2.0);
//! let nodes = [Candidate::new(a, &two, two.clone(), true), Candidate::new(b, &two, two.clone(), false)];
//! let one = ResourceSet::default().with_cpus(1.0);
//! let spread = place_bundles(&[one.clone(), one.clone()], BundleStrategy::StrictSpread, &nodes, &[], true);
//! assert_eq!(spread, BundlePlacement::Placed(vec![a, b]));
//! let pack = place_bundles(&[one.clone(), one], BundleStrategy::StrictPack, &nodes, &[], true);
//! assert_eq!(pack, BundlePlacement::Placed(vec![a, a]));
//! ```

use std::collections::HashSet;

use crate::error::FabricError;
use crate::ids::{GroupId, NodeId};
use crate::placement::Candidate;
use crate::resources::ResourceSet;

/// The most bundles one group may have.
pub const MAX_BUNDLES: usize = 1024;

/// The first character of every resource name the host makes for bundles;
/// refused in names that guests and operators give.
pub const RESERVED: char = '@';

/// A bundle's marker amount: more zero-resource work than could ever run.
const MARK: i64 = 1_000_000_000;

/// How a group's bundles are spread over nodes (Ray's four strategies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BundleStrategy {
    /// As few nodes as possible, more when one does not have room.
    Pack,
    /// As many nodes as possible, sharing nodes when there are too few.
    Spread,
    /// All on one node, or wait.
    StrictPack,
    /// Each on its own node, or wait.
    StrictSpread,
}

impl BundleStrategy {
    /// Ray's name for it.
    pub fn name(self) -> &'static str {
        match self {
            BundleStrategy::Pack => "PACK",
            BundleStrategy::Spread => "SPREAD",
            BundleStrategy::StrictPack => "STRICT_PACK",
            BundleStrategy::StrictSpread => "STRICT_SPREAD",
        }
    }
}

/// Where a group's bundles go now.
#[derive(Debug, PartialEq, Eq)]
pub enum BundlePlacement {
    /// The node of each bundle, in bundle order.
    Placed(Vec<NodeId>),
    /// No room now (why): try again when resources free or nodes join.
    Wait(String),
    /// No room ever.
    Infeasible(FabricError),
}

/// The amounts of a set, each under its name (`CPU`, `GPU`, `memory`, or
/// the custom resource's own).
fn amounts(set: &ResourceSet) -> impl Iterator<Item = (&str, i64)> {
    [("CPU", set.cpu), ("GPU", set.gpu), ("memory", set.memory)]
        .into_iter()
        .chain(set.custom.iter().map(|(n, v)| (&**n, *v)))
        .filter(|(_, v)| *v > 0)
}

fn slot(index: Option<u32>) -> String {
    index.map_or_else(|| "*".to_string(), |i| i.to_string())
}

/// The prefix of every resource name of `group`.
pub fn group_prefix(group: GroupId) -> String {
    format!("{RESERVED}pg:{group}:")
}

fn add_raw(set: &mut ResourceSet, name: &str, amount: i64) {
    let had = set.custom(name);
    *set = std::mem::take(set).with_custom(name, 0.0);
    let i = set
        .custom
        .iter()
        .position(|(n, _)| &**n == name)
        .expect("just set");
    set.custom[i].1 = had + amount;
}

/// What reserving bundle `index` of `group` adds to its node: the bundle's
/// amounts under the bundle's names and the group's, and both markers.
pub fn bundle_resources(group: GroupId, index: u32, bundle: &ResourceSet) -> ResourceSet {
    let prefix = group_prefix(group);
    let mut set = ResourceSet::default();
    for at in [Some(index), None] {
        let s = slot(at);
        for (name, amount) in amounts(bundle) {
            add_raw(&mut set, &format!("{prefix}{s}:{name}"), amount);
        }
        add_raw(&mut set, &format!("{prefix}{s}"), MARK);
    }
    set
}

/// What work placed in bundle `index` of `group` (any of its bundles when
/// `None`) asks its node for instead of `demand`. Work in one bundle also
/// counts against the group's total on its node, as in Ray.
pub fn bundle_demand(group: GroupId, index: Option<u32>, demand: &ResourceSet) -> ResourceSet {
    let prefix = group_prefix(group);
    let mut set = ResourceSet::default();
    let slots: &[Option<u32>] = if index.is_some() {
        &[index, None]
    } else {
        &[None]
    };
    for at in slots {
        let s = slot(*at);
        for (name, amount) in amounts(demand) {
            add_raw(&mut set, &format!("{prefix}{s}:{name}"), amount);
        }
    }
    add_raw(&mut set, &format!("{prefix}{}", slot(index)), 1);
    set
}

/// `demand` marked as the reservation of `group`'s bundles (a name of the
/// group's with no amount): while it waits in a scheduler's queue,
/// removing the group takes it out ([`crate::scheduler::Scheduler::close_group`]).
pub fn as_reservation(group: GroupId, mut demand: ResourceSet) -> ResourceSet {
    add_raw(&mut demand, &format!("{}reserve", group_prefix(group)), 0);
    demand
}

/// Why work of a group that is gone cannot run (or wait for it).
pub fn removed(group: GroupId) -> FabricError {
    FabricError::ResourcesInfeasible(format!("placement group {group} was removed"))
}

/// The group and bundle (`None`: any of its bundles) `demand` is placed in.
pub fn bundle_of(demand: &ResourceSet) -> Option<(GroupId, Option<u32>)> {
    let group = group_of(demand)?;
    let prefix = group_prefix(group);
    // The marker of the bundle asked for: `<prefix><index>` or `<prefix>*`.
    let index = demand.custom.iter().find_map(|(n, _)| {
        let slot = n.strip_prefix(prefix.as_str())?;
        if slot.contains(':') {
            return None;
        }
        Some(slot.parse::<u32>().ok())
    })?;
    Some((group, index))
}

/// The group whose bundle `demand` asks for, if it asks for one.
pub fn group_of(demand: &ResourceSet) -> Option<GroupId> {
    let tag = format!("{RESERVED}pg:");
    demand.custom.iter().find_map(|(n, _)| {
        let hex = n.strip_prefix(tag.as_str())?.get(..32)?;
        hex.parse().ok()
    })
}

/// The sum of `bundles`, each amount saturating (a sum past what any node
/// could have is as infeasible as one at the limit).
pub fn sum(bundles: &[ResourceSet]) -> ResourceSet {
    let mut total = ResourceSet::default();
    for b in bundles {
        total.cpu = total.cpu.saturating_add(b.cpu);
        total.gpu = total.gpu.saturating_add(b.gpu);
        total.memory = total.memory.saturating_add(b.memory);
        for (n, v) in &b.custom {
            let had = total.custom(n);
            add_raw(&mut total, n, 0);
            let i = total
                .custom
                .iter()
                .position(|(m, _)| m == n)
                .expect("just set");
            total.custom[i].1 = had.saturating_add(*v);
        }
    }
    total
}

/// Places the bundles of a group not yet placed (`fixed[i]` is where bundle
/// `i` already is; missing entries are unplaced) on `nodes` under
/// `strategy`. `may_grow`: nodes may join later, so too few nodes for
/// `STRICT_SPREAD` means wait rather than never.
pub fn place_bundles(
    bundles: &[ResourceSet],
    strategy: BundleStrategy,
    nodes: &[Candidate<'_>],
    fixed: &[Option<NodeId>],
    may_grow: bool,
) -> BundlePlacement {
    if let Err(e) = check_ever(bundles, strategy, nodes, may_grow) {
        return BundlePlacement::Infeasible(e);
    }
    let mut placed: Vec<Option<NodeId>> = (0..bundles.len())
        .map(|i| fixed.get(i).copied().flatten())
        .collect();
    let mut room: Vec<ResourceSet> = nodes.iter().map(|c| c.available.clone()).collect();
    let todo: Vec<usize> = (0..bundles.len())
        .filter(|i| placed[*i].is_none())
        .collect();
    let done = match strategy {
        BundleStrategy::StrictPack => strict_pack(bundles, nodes, &mut room, &mut placed, &todo),
        _ => {
            let mut ok = true;
            for &i in &todo {
                let used: HashSet<NodeId> = placed.iter().flatten().copied().collect();
                match pick(&bundles[i], strategy, nodes, &room, &used) {
                    Some(n) => {
                        room[n].subtract(&bundles[i]);
                        placed[i] = Some(nodes[n].id);
                    }
                    None => ok = false,
                }
            }
            ok
        }
    };
    if !done {
        return BundlePlacement::Wait(format!(
            "no room now for the bundles of a {} group",
            strategy.name()
        ));
    }
    BundlePlacement::Placed(placed.into_iter().map(|n| n.expect("all placed")).collect())
}

/// All the unplaced bundles on one node: the node of the placed ones, if
/// any, else the first with room for all (this node first).
fn strict_pack(
    bundles: &[ResourceSet],
    nodes: &[Candidate<'_>],
    room: &mut [ResourceSet],
    placed: &mut [Option<NodeId>],
    todo: &[usize],
) -> bool {
    let need = sum(&todo.iter().map(|i| bundles[*i].clone()).collect::<Vec<_>>());
    let home = placed.iter().flatten().next().copied();
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|n| !nodes[*n].is_local);
    let Some(n) = order
        .into_iter()
        .filter(|n| home.is_none_or(|h| nodes[*n].id == h))
        .find(|n| room[*n].contains(&need))
    else {
        return false;
    };
    room[n].subtract(&need);
    for &i in todo {
        placed[i] = Some(nodes[n].id);
    }
    true
}

/// The node (its index in `nodes`) for one bundle, given the nodes the
/// group already uses.
fn pick(
    bundle: &ResourceSet,
    strategy: BundleStrategy,
    nodes: &[Candidate<'_>],
    room: &[ResourceSet],
    used: &HashSet<NodeId>,
) -> Option<usize> {
    let fits = |n: &usize| room[*n].contains(bundle);
    let is_used = |n: &usize| used.contains(&nodes[*n].id);
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    // This node first, then the others in their given order.
    order.sort_by_key(|n| !nodes[*n].is_local);
    match strategy {
        BundleStrategy::Pack | BundleStrategy::StrictPack => order
            .iter()
            .copied()
            .filter(fits)
            .find(is_used)
            .or_else(|| order.iter().copied().find(fits)),
        BundleStrategy::Spread => order
            .iter()
            .copied()
            .filter(fits)
            .find(|n| !is_used(n))
            .or_else(|| order.iter().copied().find(fits)),
        BundleStrategy::StrictSpread => order.iter().copied().filter(fits).find(|n| !is_used(n)),
    }
}

/// Fails when no arrangement of the nodes' totals could ever hold the
/// group, naming what is missing.
fn check_ever(
    bundles: &[ResourceSet],
    strategy: BundleStrategy,
    nodes: &[Candidate<'_>],
    may_grow: bool,
) -> Result<(), FabricError> {
    let infeasible = FabricError::ResourcesInfeasible;
    if bundles.is_empty() || bundles.len() > MAX_BUNDLES {
        return Err(FabricError::InvalidArgument(format!(
            "a placement group needs 1 to {MAX_BUNDLES} bundles, got {}",
            bundles.len()
        )));
    }
    let mut best = ResourceSet::default();
    for c in nodes {
        best.max_with(c.total);
    }
    for (i, b) in bundles.iter().enumerate() {
        if !nodes.iter().any(|c| c.total.contains(b)) {
            return Err(infeasible(format!(
                "no node can ever hold bundle {i} {{{b}}}: {}",
                best.missing(b).join(", ")
            )));
        }
    }
    match strategy {
        BundleStrategy::StrictPack => {
            let all = sum(bundles);
            if !nodes.iter().any(|c| c.total.contains(&all)) {
                return Err(infeasible(format!(
                    "STRICT_PACK: no node can ever hold all {} bundles {{{all}}}: {}",
                    bundles.len(),
                    best.missing(&all).join(", ")
                )));
            }
        }
        BundleStrategy::StrictSpread if !may_grow => {
            let wide = nodes.len();
            if bundles.len() > wide {
                return Err(infeasible(format!(
                    "STRICT_SPREAD: {} bundles need {} nodes, and there {}",
                    bundles.len(),
                    bundles.len(),
                    if wide == 1 {
                        "is 1".to_string()
                    } else {
                        format!("are {wide}")
                    }
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: f64) -> ResourceSet {
        ResourceSet::default().with_cpus(n)
    }

    fn nodes<'a>(ids: &[NodeId], total: &'a ResourceSet) -> Vec<Candidate<'a>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Candidate::new(*id, total, total.clone(), i == 0))
            .collect()
    }

    #[test]
    fn each_strategy_places_as_it_says() {
        let ids = [NodeId::random(), NodeId::random(), NodeId::random()];
        let total = cpus(2.0);
        let n = nodes(&ids, &total);
        let b = vec![cpus(1.0); 3];
        let placed = |s| match place_bundles(&b, s, &n, &[], true) {
            BundlePlacement::Placed(p) => p,
            other => panic!("{s:?}: {other:?}"),
        };
        assert_eq!(placed(BundleStrategy::Pack), vec![ids[0], ids[0], ids[1]]);
        assert_eq!(placed(BundleStrategy::Spread), ids.to_vec());
        assert_eq!(placed(BundleStrategy::StrictSpread), ids.to_vec());
        // Three CPUs fit on no node: never.
        assert!(matches!(
            place_bundles(&b, BundleStrategy::StrictPack, &n, &[], true),
            BundlePlacement::Infeasible(FabricError::ResourcesInfeasible(m)) if m.contains("STRICT_PACK")
        ));
        // Four bundles on three nodes: wait for a fourth, or never alone.
        let four = vec![cpus(0.5); 4];
        assert!(matches!(
            place_bundles(&four, BundleStrategy::StrictSpread, &n, &[], true),
            BundlePlacement::Wait(_)
        ));
        assert!(matches!(
            place_bundles(&four, BundleStrategy::StrictSpread, &n, &[], false),
            BundlePlacement::Infeasible(_)
        ));
        // Spread shares nodes when there are too few.
        assert!(matches!(
            place_bundles(&four, BundleStrategy::Spread, &n, &[], true),
            BundlePlacement::Placed(p) if p.iter().collect::<HashSet<_>>().len() == 3
        ));
    }

    #[test]
    fn a_bundle_no_node_can_hold_is_named() {
        let ids = [NodeId::random()];
        let total = cpus(2.0);
        let n = nodes(&ids, &total);
        let big = ResourceSet::default().with_gpus(1.0);
        match place_bundles(&[cpus(1.0), big], BundleStrategy::Pack, &n, &[], true) {
            BundlePlacement::Infeasible(FabricError::ResourcesInfeasible(m)) => {
                assert!(m.contains("bundle 1") && m.contains("GPU"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replacing_lost_bundles_keeps_the_strategy() {
        let ids = [NodeId::random(), NodeId::random(), NodeId::random()];
        let total = cpus(2.0);
        let mut n = nodes(&ids, &total);
        let b = vec![cpus(1.0); 2];
        // Bundle 1 was on the node that died (gone from the candidates).
        n.remove(1);
        let fixed = [Some(ids[0]), None];
        assert_eq!(
            place_bundles(&b, BundleStrategy::StrictSpread, &n, &fixed, true),
            BundlePlacement::Placed(vec![ids[0], ids[2]])
        );
        // Strict pack goes back to where the others are, or waits.
        n[0].available = cpus(0.0);
        assert!(matches!(
            place_bundles(&b, BundleStrategy::StrictPack, &n, &fixed, true),
            BundlePlacement::Wait(_)
        ));
    }

    #[test]
    fn bundle_names_are_the_groups_own() {
        let g = GroupId::random();
        let reserved = bundle_resources(g, 1, &cpus(2.0));
        let in_one = bundle_demand(g, Some(1), &cpus(1.0));
        let in_any = bundle_demand(g, None, &cpus(2.0));
        assert!(reserved.contains(&in_one) && reserved.contains(&in_any));
        assert!(!reserved.contains(&bundle_demand(g, Some(0), &cpus(0.0))));
        assert!(!reserved.contains(&bundle_demand(GroupId::random(), None, &cpus(0.0))));
        assert!(!reserved.contains(&bundle_demand(g, Some(1), &cpus(3.0))));
        assert!(in_one.custom.iter().all(|(n, _)| n.starts_with(RESERVED)));
        assert_eq!(bundle_of(&in_one), Some((g, Some(1))));
        assert_eq!(bundle_of(&in_any), Some((g, None)));
        assert_eq!(bundle_of(&cpus(1.0)), None);
    }
}
