//! Where a task or actor runs: the hybrid placement policy.
//!
//! Like Ray's: run here when the demand fits what is free here; otherwise on
//! a node that has room, preferring one that already holds the task's
//! argument objects; when no node has room now, queue here if this node
//! could ever run it, else on a node that could. A demand no node could ever
//! fit fails at once, naming what is missing. `Spread` deals tasks out
//! round-robin; node and label affinity pin work (hard) or prefer (soft).
//!
//! The decision is pure: it sees a snapshot of the nodes, so it can be
//! tested without a cluster.
//!
//! ```
//! use fabric_runtime::placement::{place, Candidate, Placement, Strategy};
//! use fabric_runtime::resources::ResourceSet;
//! use fabric_runtime::ids::NodeId;
//! let (me, other) = (NodeId::random(), NodeId::random());
//! let two = ResourceSet::default().with_cpus(2.0);
//! let busy = ResourceSet::default();
//! let nodes = [Candidate::new(me, &two, busy, true), Candidate::new(other, &two, two.clone(), false)];
//! let demand = ResourceSet::default().with_cpus(1.0);
//! let cursor = Default::default();
//! assert_eq!(place(&demand, &Strategy::Default, &nodes, &[], &cursor), Placement::Remote(other));
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::FabricError;
use crate::ids::{GroupId, NodeId};
use crate::resources::ResourceSet;

/// Arguments at least this large pull a task to the node that holds them.
pub const LOCALITY_MIN_BYTES: u64 = 1 << 20;

/// How a caller wants its task or actor placed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Here if it fits, else where it fits (and its arguments are).
    #[default]
    Default,
    /// Round-robin over the nodes that can run it.
    Spread,
    /// On one node: only there (`soft: false`) or there if it fits.
    Node { node: NodeId, soft: bool },
    /// On nodes with label `key=value`: only there, or there if one fits.
    Label {
        key: String,
        value: String,
        soft: bool,
    },
    /// In bundle `index` of a placement group (any of its bundles when
    /// `None`): on the node that holds it, in the resources it reserved
    /// (the demand names them, see [`crate::bundles`]).
    Bundle { group: GroupId, index: Option<u32> },
}

impl Strategy {
    /// Whether the work may run only where the strategy says.
    pub fn is_hard_affinity(&self) -> bool {
        matches!(
            self,
            Strategy::Node { soft: false, .. }
                | Strategy::Label { soft: false, .. }
                | Strategy::Bundle { .. }
        )
    }
}

/// A node as placement sees it.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub id: NodeId,
    pub total: &'a ResourceSet,
    /// What it can take now (for another node: an estimate).
    pub available: ResourceSet,
    pub labels: Option<&'a HashMap<String, String>>,
    pub is_local: bool,
}

impl<'a> Candidate<'a> {
    pub fn new(id: NodeId, total: &'a ResourceSet, available: ResourceSet, is_local: bool) -> Self {
        Candidate {
            id,
            total,
            available,
            labels: None,
            is_local,
        }
    }

    fn has_label(&self, key: &str, value: &str) -> bool {
        self.labels
            .and_then(|l| l.get(key))
            .is_some_and(|v| v == value)
    }
}

/// Where to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    Local,
    Remote(NodeId),
    Infeasible(FabricError),
    /// Not now: the port places it once it can (work in a placement
    /// group's bundle while the bundle is being placed).
    Later,
}

fn to(c: &Candidate<'_>) -> Placement {
    if c.is_local {
        Placement::Local
    } else {
        Placement::Remote(c.id)
    }
}

/// The nodes `strategy` lets `demand` go to, among the `feasible` ones (or
/// the placement itself when the strategy decides it alone).
fn pool_for<'a, 'b>(
    demand: &ResourceSet,
    strategy: &Strategy,
    candidates: &[Candidate<'b>],
    feasible: Vec<&'a Candidate<'b>>,
) -> Result<Vec<&'a Candidate<'b>>, Placement> {
    Ok(match strategy {
        Strategy::Node { node, soft } => match feasible.iter().find(|c| c.id == *node) {
            Some(c) if !soft || c.available.contains(demand) => return Err(to(c)),
            _ if *soft => feasible,
            _ => {
                let why = if candidates.iter().any(|c| c.id == *node) {
                    format!("node {node} can never fit {{{demand}}}")
                } else {
                    format!("node {node} is not a live member of the cluster")
                };
                return Err(Placement::Infeasible(FabricError::ResourcesInfeasible(why)));
            }
        },
        Strategy::Label { key, value, soft } => {
            let labelled: Vec<&Candidate<'_>> = feasible
                .iter()
                .copied()
                .filter(|c| c.has_label(key, value))
                .collect();
            match (labelled.is_empty(), soft) {
                (true, false) => {
                    return Err(Placement::Infeasible(FabricError::ResourcesInfeasible(
                        format!("no node labelled {key}={value} can fit {{{demand}}}"),
                    )));
                }
                (true, true) => feasible.clone(),
                (false, false) => labelled,
                (false, true) => {
                    if labelled.iter().any(|c| c.available.contains(demand)) {
                        labelled
                    } else {
                        feasible.clone()
                    }
                }
            }
        }
        Strategy::Default | Strategy::Spread | Strategy::Bundle { .. } => feasible,
    })
}

/// Chooses a node for `demand`. `candidates` are the live nodes (this one
/// included, marked `is_local`); `arg_bytes` says how many bytes of the
/// task's arguments each node holds; `cursor` turns the `Spread` wheel.
pub fn place(
    demand: &ResourceSet,
    strategy: &Strategy,
    candidates: &[Candidate<'_>],
    arg_bytes: &[(NodeId, u64)],
    cursor: &AtomicUsize,
) -> Placement {
    let feasible: Vec<&Candidate<'_>> = candidates
        .iter()
        .filter(|c| c.total.contains(demand))
        .collect();
    if feasible.is_empty() {
        return Placement::Infeasible(infeasible(demand, candidates));
    }
    let pool = match pool_for(demand, strategy, candidates, feasible) {
        Ok(pool) => pool,
        Err(placement) => return placement,
    };
    if matches!(strategy, Strategy::Spread) {
        // Round-robin over every node that can run it: an even deal, even
        // when some are busy (they queue their share).
        let i = cursor.fetch_add(1, Ordering::Relaxed) % pool.len();
        return to(pool[i]);
    }
    let free: Vec<&Candidate<'_>> = pool
        .iter()
        .copied()
        .filter(|c| c.available.contains(demand))
        .collect();
    // Data locality: the node holding the most argument bytes, if it has room.
    let local_bytes = |id: NodeId| {
        arg_bytes
            .iter()
            .filter(|(n, _)| *n == id)
            .map(|(_, b)| *b)
            .sum::<u64>()
    };
    let here = candidates
        .iter()
        .find(|c| c.is_local)
        .map(|c| local_bytes(c.id))
        .unwrap_or(0);
    if let Some(best) = free
        .iter()
        .filter(|c| !c.is_local)
        .max_by_key(|c| local_bytes(c.id))
        .filter(|c| local_bytes(c.id) >= here + LOCALITY_MIN_BYTES)
    {
        return to(best);
    }
    if free.iter().any(|c| c.is_local) {
        return Placement::Local;
    }
    if let Some(best) = free.iter().max_by_key(|c| c.available.cpu) {
        return to(best);
    }
    // Nobody has room now: wait here if this node could run it, else at the
    // roomiest node that could.
    if let Some(local) = pool.iter().find(|c| c.is_local) {
        return to(local);
    }
    to(pool
        .iter()
        .max_by_key(|c| c.total.cpu)
        .expect("pool is not empty"))
}

/// The error for a demand that fits no node, naming what is missing (against
/// the most any node has of each resource).
fn infeasible(demand: &ResourceSet, candidates: &[Candidate<'_>]) -> FabricError {
    let mut best = ResourceSet::default();
    for c in candidates {
        best.max_with(c.total);
    }
    let detail = if candidates.is_empty() {
        "the cluster has no live nodes".into()
    } else {
        best.missing(demand).join(", ")
    };
    FabricError::ResourcesInfeasible(format!("no node can ever satisfy {{{demand}}}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(n: f64) -> ResourceSet {
        ResourceSet::default().with_cpus(n)
    }

    struct World {
        ids: Vec<NodeId>,
        totals: Vec<ResourceSet>,
        labels: Vec<HashMap<String, String>>,
    }

    impl World {
        fn new(totals: Vec<ResourceSet>) -> Self {
            World {
                ids: totals.iter().map(|_| NodeId::random()).collect(),
                labels: totals.iter().map(|_| HashMap::new()).collect(),
                totals,
            }
        }

        /// Node 0 is local; `free` per node.
        fn nodes(&self, free: &[ResourceSet]) -> Vec<Candidate<'_>> {
            (0..self.ids.len())
                .map(|i| Candidate {
                    id: self.ids[i],
                    total: &self.totals[i],
                    available: free[i].clone(),
                    labels: Some(&self.labels[i]),
                    is_local: i == 0,
                })
                .collect()
        }
    }

    #[test]
    fn local_first_then_where_there_is_room_then_queue_locally() {
        let w = World::new(vec![cpus(2.0), cpus(2.0), cpus(4.0)]);
        let c = AtomicUsize::new(0);
        let d = cpus(1.0);
        assert_eq!(
            place(
                &d,
                &Strategy::Default,
                &w.nodes(&[cpus(1.0), cpus(2.0), cpus(4.0)]),
                &[],
                &c
            ),
            Placement::Local
        );
        assert_eq!(
            place(
                &d,
                &Strategy::Default,
                &w.nodes(&[cpus(0.0), cpus(1.0), cpus(3.0)]),
                &[],
                &c
            ),
            Placement::Remote(w.ids[2]),
            "the roomiest other node"
        );
        assert_eq!(
            place(
                &d,
                &Strategy::Default,
                &w.nodes(&[cpus(0.0), cpus(0.0), cpus(0.0)]),
                &[],
                &c
            ),
            Placement::Local
        );
        let big = cpus(3.0);
        assert_eq!(
            place(
                &big,
                &Strategy::Default,
                &w.nodes(&[cpus(0.0), cpus(0.0), cpus(0.0)]),
                &[],
                &c
            ),
            Placement::Remote(w.ids[2]),
            "queue where it can ever fit"
        );
    }

    #[test]
    fn arguments_pull_a_task_to_their_node() {
        let w = World::new(vec![cpus(2.0), cpus(2.0)]);
        let c = AtomicUsize::new(0);
        let free = [cpus(2.0), cpus(2.0)];
        let args = [(w.ids[1], 50 << 20)];
        assert_eq!(
            place(&cpus(1.0), &Strategy::Default, &w.nodes(&free), &args, &c),
            Placement::Remote(w.ids[1])
        );
        let small = [(w.ids[1], 10)];
        assert_eq!(
            place(&cpus(1.0), &Strategy::Default, &w.nodes(&free), &small, &c),
            Placement::Local
        );
    }

    #[test]
    fn gpus_and_custom_resources_go_only_where_they_exist() {
        let w = World::new(vec![
            cpus(2.0),
            cpus(2.0).with_gpus(1.0),
            cpus(2.0).with_custom("ssd", 1.0),
        ]);
        let c = AtomicUsize::new(0);
        let free: Vec<ResourceSet> = w.totals.clone();
        let gpu = cpus(1.0).with_gpus(1.0);
        assert_eq!(
            place(&gpu, &Strategy::Default, &w.nodes(&free), &[], &c),
            Placement::Remote(w.ids[1])
        );
        let ssd = cpus(1.0).with_custom("ssd", 1.0);
        assert_eq!(
            place(&ssd, &Strategy::Default, &w.nodes(&free), &[], &c),
            Placement::Remote(w.ids[2])
        );
        let Placement::Infeasible(e) = place(
            &cpus(1.0).with_gpus(2.0),
            &Strategy::Default,
            &w.nodes(&free),
            &[],
            &c,
        ) else {
            panic!()
        };
        assert!(e.to_string().contains("GPU: 2 (node has 1)"), "{e}");
    }

    #[test]
    fn spread_deals_round_robin() {
        let w = World::new(vec![cpus(2.0), cpus(2.0), cpus(2.0)]);
        let c = AtomicUsize::new(0);
        let free = w.totals.clone();
        let nodes = w.nodes(&free);
        let picks: Vec<Placement> = (0..3)
            .map(|_| place(&cpus(1.0), &Strategy::Spread, &nodes, &[], &c))
            .collect();
        assert_eq!(
            picks,
            vec![
                Placement::Local,
                Placement::Remote(w.ids[1]),
                Placement::Remote(w.ids[2])
            ]
        );
    }

    #[test]
    fn affinity_hard_and_soft() {
        let mut w = World::new(vec![cpus(2.0), cpus(2.0), cpus(2.0)]);
        w.labels[2].insert("zone".into(), "b".into());
        let c = AtomicUsize::new(0);
        let busy = [cpus(2.0), cpus(0.0), cpus(0.0)];
        let hard = Strategy::Node {
            node: w.ids[1],
            soft: false,
        };
        assert_eq!(
            place(&cpus(1.0), &hard, &w.nodes(&busy), &[], &c),
            Placement::Remote(w.ids[1]),
            "hard waits there"
        );
        let soft = Strategy::Node {
            node: w.ids[1],
            soft: true,
        };
        assert_eq!(
            place(&cpus(1.0), &soft, &w.nodes(&busy), &[], &c),
            Placement::Local,
            "soft goes where there is room"
        );
        let gone = Strategy::Node {
            node: NodeId::random(),
            soft: false,
        };
        assert!(matches!(
            place(&cpus(1.0), &gone, &w.nodes(&busy), &[], &c),
            Placement::Infeasible(_)
        ));
        let zone = Strategy::Label {
            key: "zone".into(),
            value: "b".into(),
            soft: false,
        };
        assert_eq!(
            place(&cpus(1.0), &zone, &w.nodes(&busy), &[], &c),
            Placement::Remote(w.ids[2])
        );
        let nowhere = Strategy::Label {
            key: "zone".into(),
            value: "z".into(),
            soft: false,
        };
        assert!(matches!(
            place(&cpus(1.0), &nowhere, &w.nodes(&busy), &[], &c),
            Placement::Infeasible(_)
        ));
        let maybe = Strategy::Label {
            key: "zone".into(),
            value: "z".into(),
            soft: true,
        };
        assert_eq!(
            place(&cpus(1.0), &maybe, &w.nodes(&busy), &[], &c),
            Placement::Local
        );
    }
}
