//! Ray's `ray.util` pieces built on actors: [`ActorPool`] spreads calls over
//! a set of actors, [`Queue`] is a bounded queue shared across the cluster,
//! and [`collective`] has the collectives (allreduce, allgather, broadcast,
//! barrier) of a group of actors.

pub mod collective;
mod pool;
mod queue;

pub use pool::ActorPool;
pub use queue::{Queue, QueueActor, QueueError};
