//! Collectives among a group of actors (Ray's `ray.util.collective`):
//! `allreduce`, `allgather`, `broadcast` and `barrier`, called by every
//! member of the group in the same order.
//!
//! ```no_run
//! use fabric::util::collective::{self, ReduceOp};
//!
//! #[fabric::actor]
//! struct Worker {
//!     grads: Vec<f32>,
//! }
//!
//! #[fabric::actor]
//! impl Worker {
//!     fn new(grads: Vec<f32>) -> Self {
//!         Worker { grads }
//!     }
//!
//!     /// The sum of every worker's gradients.
//!     fn sum(&self) -> fabric::Result<Vec<f32>> {
//!         collective::allreduce(self.grads.clone(), "grads", ReduceOp::Sum)
//!     }
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let workers = (0..4)
//!     .map(|i| Worker::remote(vec![i as f32; 3]))
//!     .collect::<fabric::Result<Vec<_>>>()?;
//! collective::create_collective_group(&workers, "grads")?;
//! let sums = workers
//!     .iter()
//!     .map(|w| w.sum().remote())
//!     .collect::<fabric::Result<Vec<_>>>()?;
//! for s in fabric::get_all(&sums)? {
//!     assert_eq!(s, vec![6.0; 3]);
//! }
//! # Ok(()) }
//! ```
//!
//! How it works: the driver's [`create_collective_group`] starts the
//! group's actor (named after the group, in the job's namespace), which
//! ranks the members in the order given and watches each of them
//! ([`ActorHandle::watch`]). In a collective, each member `put`s its value
//! where it runs and hands the group's actor the reference; once every
//! rank's has come, each member gets them all and fetches the values it
//! needs straight from the nodes that hold them, never through the driver
//! or the group's actor. A member that ends (killed, crashed, its node
//! gone, or restarted) breaks the group: the collectives waiting on it, and
//! every later one, fail with [`Error::ActorDied`] on every other member;
//! a node's death is known once the cluster declares it (its node timeout).
//!
//! Every member must call the same collectives in the same order, one at
//! a time (as with Ray's); a member that calls another one breaks the group
//! with [`Error::InvalidArgument`], and one whose collective fails some
//! other way (its call ran out of time, say) breaks it with a system
//! failure, so no member waits in vain. A collective blocks its member
//! while it waits (a concurrent actor runs none of its other calls
//! meanwhile). The group's actor trusts the rank a member of the job
//! states: collectives are a tool within one job, not a boundary.
//! [`destroy_collective_group`] returns once the group's actor is dead
//! (destroy a group when no member is inside one of its collectives), and
//! members that knew it find a group made anew under the same name. Each member fetches every other
//! member's value (`allreduce` and `allgather`), so a collective moves
//! about `(n - 1) × size` bytes into each member: fine for gradients of
//! models that fit in one node, not a ring allreduce. Floating-point sums
//! add the ranks' values in rank order on every member, so all members get
//! the very same result.

mod group;
mod reduce;

use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::actor::{ActorClass, ActorHandle};
use crate::error::{Error, Result};
use crate::object::ObjectRef;
use crate::options::ActorOptions;

use group::{AnyActor, Broken, Collective, CollectiveGroupActor};
pub use reduce::{Reduce, ReduceOp};

/// The most members a group may have.
pub const MAX_GROUP_SIZE: usize = 4096;

/// This member's view of a group it has used: the group's actor, its
/// rank, the group's size and the next collective's number.
struct Joined {
    group: ActorHandle<CollectiveGroupActor>,
    /// Fails once the group's actor is gone (the name is looked up again).
    gone: ObjectRef<()>,
    rank: u32,
    size: u32,
    next: u64,
}

thread_local! {
    static JOINED: RefCell<HashMap<String, Joined>> = RefCell::new(HashMap::new());
}

/// The name of group `group`'s actor.
fn actor_name(group: &str) -> String {
    format!("fabric.collective.{group}")
}

/// Makes `members` a collective group named `group` (Ray's declarative
/// `create_collective_group`): rank `i` is `members[i]`. Call it once, from
/// the driver (or any task or actor of the job), before the members use
/// it. The group does not keep its members alive.
pub fn create_collective_group<A: ActorClass>(
    members: &[ActorHandle<A>],
    group: &str,
) -> Result<()> {
    if members.is_empty() || members.len() > MAX_GROUP_SIZE {
        return Err(Error::InvalidArgument(format!(
            "a collective group has 1 to {MAX_GROUP_SIZE} members, got {}",
            members.len()
        )));
    }
    let mut ids: Vec<u128> = members.iter().map(ActorHandle::id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::InvalidArgument(
            "an actor is in the collective group twice".into(),
        ));
    }
    let members: Vec<ActorHandle<AnyActor>> = members.iter().map(ActorHandle::cast).collect();
    // One call per member waits at a time, besides lookups.
    let slots = (members.len() as u32).saturating_mul(2).saturating_add(16);
    let options = ActorOptions::new()
        .name(&actor_name(group))
        .max_concurrency(slots.min(10_000));
    // A group just destroyed may keep its name a moment longer (the
    // cluster hears of its death after it died): wait for that, not for a
    // live group of the same name.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let made = CollectiveGroupActor::options(options.clone()).remote(members.clone());
        match made {
            Err(Error::InvalidArgument(m))
                if m.contains("already exists")
                    && std::time::Instant::now() < deadline
                    && name_is_dying(group) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            made => return made.map(drop),
        }
    }
}

/// Whether the actor holding group `group`'s name has ended (or is gone).
fn name_is_dying(group: &str) -> bool {
    let Ok(actor) = crate::get_actor::<CollectiveGroupActor>(&actor_name(group)) else {
        return true;
    };
    let ended = actor
        .watch()
        .map(|w| crate::get_timeout(&w, std::time::Duration::from_millis(100)));
    matches!(ended, Ok(Err(Error::ActorDied(_))))
}

/// Ends group `group`: its actor stops, and collectives waiting in it fail
/// with [`Error::ActorDied`].
pub fn destroy_collective_group(group: &str) -> Result<()> {
    forget(group);
    let actor = crate::get_actor::<CollectiveGroupActor>(&actor_name(group))?;
    let gone = actor.watch()?;
    actor.kill()?;
    // Dead where it ran before this returns (its name is freed with it).
    match crate::get_timeout(&gone, std::time::Duration::from_secs(10)) {
        Err(Error::ActorDied(_)) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// This actor's rank in `group` (0 to size - 1).
pub fn get_rank(group: &str) -> Result<usize> {
    joined(group).map(|(_, rank, _)| rank as usize)
}

/// How many members `group` has.
pub fn get_collective_group_size(group: &str) -> Result<usize> {
    joined(group).map(|(_, _, size)| size as usize)
}

/// The group's actor, this actor's rank and the group's size: asked of the
/// group's actor once, then remembered.
fn joined(group: &str) -> Result<(ActorHandle<CollectiveGroupActor>, u32, u32)> {
    let known = JOINED.with(|j| {
        j.borrow()
            .get(group)
            .map(|m| (m.group.clone(), m.gone.clone(), m.rank, m.size))
    });
    if let Some((actor, gone, rank, size)) = known {
        // A group destroyed since (and maybe made anew): look it up again.
        // Its collectives in flight failed; none is sent to it any more.
        if !crate::concurrent::is_ready(&gone.inner) {
            return Ok((actor, rank, size));
        }
        forget(group);
    }
    let Some(me) = crate::context().actor_id else {
        return Err(Error::InvalidArgument(format!(
            "collectives of group `{group}` run inside its member actors"
        )));
    };
    let actor = crate::get_actor::<CollectiveGroupActor>(&actor_name(group))
        .map_err(|e| Error::NotFound(format!("no collective group `{group}`: {e}")))?;
    let Some((rank, size)) = crate::get(&actor.rank_of(me).remote()?)? else {
        return Err(Error::InvalidArgument(format!(
            "this actor is not a member of collective group `{group}`"
        )));
    };
    let joined = Joined {
        group: actor.clone(),
        gone: actor.watch()?,
        rank,
        size,
        next: 0,
    };
    JOINED.with(|j| j.borrow_mut().insert(group.to_string(), joined));
    Ok((actor, rank, size))
}

/// This member's rank, and every rank's contribution to a collective.
type Exchanged = (usize, Vec<Vec<ObjectRef<()>>>);

/// This member's part in the next collective of `group` (`value`: what it
/// gives, if anything, or why it could not): every rank's contribution,
/// and this member's rank. Once joined, a member whose part fails breaks
/// the group, so no other member waits in vain for it.
fn exchange(
    group: &str,
    what: Collective,
    value: Result<Option<ObjectRef<()>>>,
) -> Result<Exchanged> {
    let (actor, rank, _) = joined(group)?;
    let round = JOINED.with(|j| {
        let mut j = j.borrow_mut();
        let m = j.get_mut(group).expect("joined above");
        m.next += 1;
        m.next - 1
    });
    let answer = value.and_then(|v| {
        let v: Vec<ObjectRef<()>> = v.into_iter().collect();
        crate::get(&actor.exchange(round, rank, what, v).remote()?)
    });
    let e = match answer {
        Ok(all) => return Ok((rank as usize, all)),
        Err(e) => e,
    };
    if let Some(broken) = e.app_error::<Broken>() {
        return Err(broken.into_error(group));
    }
    // Not waited for: its actor may be unreachable, or gone.
    let why = format!("rank {rank} failed in collective {round}: {e}");
    drop(actor.abort(why).remote());
    Err(match e {
        Error::ActorDied(why) => Error::ActorDied(format!("collective group `{group}`: {why}")),
        e => e,
    })
}

/// Forgets what this member knew of `group`.
fn forget(group: &str) {
    JOINED.with(|j| j.borrow_mut().remove(group));
}

/// Puts `value` where this member runs, for the others to fetch.
fn share<T: Serialize>(value: &T) -> Result<ObjectRef<()>> {
    Ok(ObjectRef::from_inner(crate::put(value)?.inner))
}

/// The values of every rank but `rank`, fetched from wherever they are
/// (`None` at `rank` and where a rank gave none). A value lost with its
/// node means its member is gone.
fn fetch_others<T: DeserializeOwned>(
    all: &[Vec<ObjectRef<()>>],
    rank: usize,
) -> Result<Vec<Option<T>>> {
    let mut wanted = Vec::new();
    for (i, refs) in all.iter().enumerate() {
        if let (true, Some(r)) = (i != rank, refs.first()) {
            wanted.push((i, ObjectRef::<T>::from_inner(r.inner.clone())));
        }
    }
    let refs: Vec<ObjectRef<T>> = wanted.iter().map(|(_, r)| r.clone()).collect();
    let values = crate::get_all(&refs).map_err(|e| match e {
        Error::ObjectLost(why) => {
            Error::ActorDied(format!("a member's value was lost with its node: {why}"))
        }
        e => e,
    })?;
    let mut out: Vec<Option<T>> = all.iter().map(|_| None).collect();
    for ((i, _), v) in wanted.into_iter().zip(values) {
        out[i] = Some(v);
    }
    Ok(out)
}

/// Every member's `value` combined with `op`, on every member (Ray's
/// `allreduce`). The ranks' values are combined in rank order.
pub fn allreduce<T: Reduce>(value: T, group: &str, op: ReduceOp) -> Result<T> {
    let (rank, all) = exchange(group, Collective::Allreduce, share(&value).map(Some))?;
    let mut mine = Some(value);
    let mut total: Option<T> = None;
    for (i, v) in fetch_others::<T>(&all, rank)?.into_iter().enumerate() {
        let v = match (i == rank, v) {
            (true, _) => mine.take(),
            (false, v) => v,
        };
        let Some(v) = v else {
            return Err(Error::InvalidArgument(format!(
                "rank {i} gave no value to allreduce"
            )));
        };
        match total.as_mut() {
            None => total = Some(v),
            Some(t) => t.reduce(v, op)?,
        }
    }
    total.ok_or_else(|| Error::InvalidArgument("an empty collective group".into()))
}

/// Every member's `value`, by rank, on every member (Ray's `allgather`).
pub fn allgather<T: Serialize + DeserializeOwned>(value: T, group: &str) -> Result<Vec<T>> {
    let (rank, all) = exchange(group, Collective::Allgather, share(&value).map(Some))?;
    let mut mine = Some(value);
    fetch_others::<T>(&all, rank)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let v = if i == rank { mine.take() } else { v };
            v.ok_or_else(|| Error::InvalidArgument(format!("rank {i} gave no value to allgather")))
        })
        .collect()
}

/// Rank `src_rank`'s `value` on every member (Ray's `broadcast`): the
/// other members' `value` is not sent (pass anything of the type, as a
/// Ray member passes its receiving tensor).
pub fn broadcast<T: Serialize + DeserializeOwned>(
    value: T,
    src_rank: usize,
    group: &str,
) -> Result<T> {
    let (_, rank, size) = joined(group)?;
    if src_rank >= size as usize {
        return Err(Error::InvalidArgument(format!(
            "broadcast from rank {src_rank} in a group of {size}"
        )));
    }
    let from_me = rank as usize == src_rank;
    let shared = if from_me {
        share(&value).map(Some)
    } else {
        Ok(None)
    };
    let (rank, all) = exchange(group, Collective::Broadcast(src_rank as u32), shared)?;
    if rank == src_rank {
        return Ok(value);
    }
    let mut values = fetch_others::<T>(&all, rank)?;
    values[src_rank]
        .take()
        .ok_or_else(|| Error::InvalidArgument(format!("rank {src_rank} broadcast nothing")))
}

/// Returns once every member of `group` has called it (Ray's `barrier`).
pub fn barrier(group: &str) -> Result<()> {
    exchange(group, Collective::Barrier, Ok(None)).map(drop)
}
