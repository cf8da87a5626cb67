//! Placement groups (Ray's `ray.util.placement_group`): reserve bundles of
//! resources together, then run tasks and actors in them.
//!
//! ```no_run
//! use fabric::util::{PlacementGroup, PlacementStrategy, remove_placement_group};
//! use fabric::{Resources, TaskOptions};
//! # #[fabric::remote] fn work() -> u32 { 1 }
//! # fn main() -> fabric::Result<()> {
//! let bundle = Resources::new().cpus(1.0);
//! let pg = PlacementGroup::builder(vec![bundle; 2], PlacementStrategy::StrictSpread).create()?;
//! fabric::get(&pg.ready()?)?; // both bundles are reserved
//! let r = work::options(TaskOptions::new().placement(pg.bundle(1))).remote()?;
//! assert_eq!(fabric::get(&r)?, 1);
//! remove_placement_group(&pg)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use crate::__bindings::fabric::core::{host, types};
use crate::object::{id_from_wit, id_to_wit};
use crate::{ObjectRef, Placement, Resources, Result};

/// How a group's bundles spread over nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementStrategy {
    /// As few nodes as possible.
    Pack,
    /// As many nodes as possible.
    Spread,
    /// All on one node, or wait.
    StrictPack,
    /// Each on its own node, or wait.
    StrictSpread,
}

impl PlacementStrategy {
    fn to_wit(self) -> types::BundleStrategy {
        match self {
            PlacementStrategy::Pack => types::BundleStrategy::Pack,
            PlacementStrategy::Spread => types::BundleStrategy::Spread,
            PlacementStrategy::StrictPack => types::BundleStrategy::StrictPack,
            PlacementStrategy::StrictSpread => types::BundleStrategy::StrictSpread,
        }
    }

    fn from_wit(s: types::BundleStrategy) -> Self {
        match s {
            types::BundleStrategy::Pack => PlacementStrategy::Pack,
            types::BundleStrategy::Spread => PlacementStrategy::Spread,
            types::BundleStrategy::StrictPack => PlacementStrategy::StrictPack,
            types::BundleStrategy::StrictSpread => PlacementStrategy::StrictSpread,
        }
    }
}

/// Where a group stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Pending,
    Created,
    Rescheduling,
    Removed,
}

/// A group as `placement_group_table` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementGroupTable {
    pub id: u128,
    pub name: Option<String>,
    pub strategy: PlacementStrategy,
    pub bundles: Vec<Resources>,
    /// The node holding each bundle, while it is reserved.
    pub bundle_nodes: Vec<Option<String>>,
    pub state: GroupState,
}

/// A placement group: its bundles are reserved together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementGroup {
    id: u128,
    bundles: usize,
}

/// Builds a [`PlacementGroup`]: bundles and strategy, optionally a name,
/// a namespace, and a lifetime beyond the job.
#[derive(Clone, Debug)]
pub struct PlacementGroupBuilder {
    options: types::PlacementGroupOptions,
}

impl PlacementGroupBuilder {
    /// Registers the group under `name` (see [`get_placement_group`]).
    pub fn name(mut self, name: &str) -> Self {
        self.options.name = Some(name.to_string());
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.options.namespace = Some(namespace.to_string());
        self
    }

    /// Keeps the group when the job ends (until it is removed).
    pub fn detached(mut self) -> Self {
        self.options.detached = true;
        self
    }

    /// Creates the group; its bundles are reserved as soon as there is room
    /// ([`PlacementGroup::ready`]). Fails at once when the cluster could
    /// never hold it.
    pub fn create(self) -> Result<PlacementGroup> {
        let bundles = self.options.bundles.len();
        let id = host::create_placement_group(&self.options)?;
        Ok(PlacementGroup {
            id: id_from_wit(id),
            bundles,
        })
    }
}

impl PlacementGroup {
    /// A group of `bundles` placed by `strategy` (Ray's `placement_group`).
    pub fn builder(bundles: Vec<Resources>, strategy: PlacementStrategy) -> PlacementGroupBuilder {
        PlacementGroupBuilder {
            options: types::PlacementGroupOptions {
                bundles: bundles.iter().map(Resources::to_wit).collect(),
                strategy: strategy.to_wit(),
                name: None,
                namespace: None,
                detached: false,
            },
        }
    }

    pub fn id(&self) -> u128 {
        self.id
    }

    /// How many bundles it has.
    pub fn bundle_count(&self) -> usize {
        self.bundles
    }

    /// Resolves once every bundle is reserved (each call a new reference:
    /// after a node holding bundles died, a new one waits for them again);
    /// fails when the group is removed.
    pub fn ready(&self) -> Result<ObjectRef<()>> {
        Ok(ObjectRef::from_handle(host::placement_group_ready(
            id_to_wit(self.id),
        )?))
    }

    /// Whether every bundle was reserved within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let ready = self.ready()?;
        let (done, _) = crate::wait(std::slice::from_ref(&ready), 1, Some(timeout))?;
        match done.first() {
            Some(r) => crate::get(r).map(|()| true),
            None => Ok(false),
        }
    }

    /// Run in bundle `index`.
    pub fn bundle(&self, index: u32) -> Placement {
        Placement::Bundle {
            group: self.id,
            index: Some(index),
        }
    }

    /// Run in any of its bundles.
    pub fn any_bundle(&self) -> Placement {
        Placement::Bundle {
            group: self.id,
            index: None,
        }
    }

    /// What the group is and where its bundles are now.
    pub fn table(&self) -> Result<PlacementGroupTable> {
        Ok(table_of(host::placement_group_table(id_to_wit(self.id))?))
    }
}

fn table_of(info: types::PlacementGroupInfo) -> PlacementGroupTable {
    PlacementGroupTable {
        id: id_from_wit(info.id),
        name: info.name,
        strategy: PlacementStrategy::from_wit(info.strategy),
        bundles: info.bundles.into_iter().map(Resources::from_wit).collect(),
        bundle_nodes: info.bundle_nodes,
        state: match info.state {
            types::GroupState::Pending => GroupState::Pending,
            types::GroupState::Created => GroupState::Created,
            types::GroupState::Rescheduling => GroupState::Rescheduling,
            types::GroupState::Removed => GroupState::Removed,
        },
    }
}

/// Removes `group`: frees its bundles, fails the work queued in it and
/// stops its actors.
pub fn remove_placement_group(group: &PlacementGroup) -> Result<()> {
    host::remove_placement_group(id_to_wit(group.id))?;
    Ok(())
}

/// The group registered under `name` in the job's namespace (or
/// `namespace`).
pub fn get_placement_group(name: &str, namespace: Option<&str>) -> Result<PlacementGroup> {
    let info = host::get_placement_group(name, namespace)?;
    Ok(PlacementGroup {
        id: id_from_wit(info.id),
        bundles: info.bundles.len(),
    })
}
