//! Ray's `ray.util` pieces: [`ActorPool`] spreads calls over a set of
//! actors, [`Queue`] is a bounded queue shared across the cluster,
//! [`collective`] has the collectives (allreduce, allgather, broadcast,
//! barrier) of a group of actors, and [`PlacementGroup`] reserves bundles
//! of resources together.

pub mod collective;
mod placement_group;
mod pool;
mod queue;

pub use placement_group::{
    GroupState, PlacementGroup, PlacementGroupBuilder, PlacementGroupTable, PlacementStrategy,
    get_placement_group, remove_placement_group,
};
pub use pool::ActorPool;
pub use queue::{Queue, QueueActor, QueueError};
