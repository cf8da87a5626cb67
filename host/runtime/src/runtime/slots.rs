//! The node's instance pool, shared between tenants: who holds how many of
//! its slots, and who may take another.
//!
//! Every live instance (a running task, an actor for its whole life, a
//! driver) holds an [`InstanceSlot`] from the moment it is admitted until
//! its store is gone. Taking one checks, in this order, and takes nothing
//! when one says no:
//!
//! 1. the job's `live-instances` (and, for an actor, `live-actors`) limit
//!    on this node;
//! 2. the tenant's `instances` (and `actors`) quota, less what it holds on
//!    the other nodes as of the last heartbeat;
//! 3. the pool: each tenant may hold its guaranteed share (set by the
//!    operator, `[instances.guaranteed]`) at any time, and beyond it only
//!    what is free of the part nobody is guaranteed. Others can never take
//!    a guaranteed part, so a tenant within its share always gets a slot,
//!    and nothing live is ever evicted to make room.
//!
//! Each breach is a `limit-exceeded` naming the limit, quota or share.
//! A component with several memories or many tables weighs more than one
//! slot (it uses that much of the engine's pool), so no component shape
//! can outgrow the pool behind the ledger's back.
//!
//! ```
//! use fabric_runtime::runtime::slots::InstancePool;
//! let pool = InstancePool::new(10, &[("victim".into(), 4)]).unwrap();
//! for _ in 0..6 {
//!     pool.take("flooder", 1).unwrap();
//! }
//! let full = pool.take("flooder", 1).unwrap_err();
//! assert!(full.to_string().contains("instance-share"), "{full}");
//! for _ in 0..4 {
//!     pool.take("victim", 1).unwrap(); // its share is still there
//! }
//! assert_eq!(pool.live(), 10);
//! ```

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::FabricError;
use crate::tenants::JobBooks;

/// What holds a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Task,
    Actor,
    Driver,
}

/// The pool's books: per tenant, the slots held.
#[derive(Default)]
struct PoolState {
    held: HashMap<Arc<str>, u64>,
    /// Slots held beyond their holders' guaranteed shares.
    shared_used: u64,
    live: u64,
}

/// The slots of an engine's instance pool, by tenant.
pub struct InstancePool {
    total: u64,
    guaranteed: HashMap<Arc<str>, u64>,
    /// `total` less every guaranteed share: what tenants take turns at.
    shared: u64,
    state: Mutex<PoolState>,
    peak: AtomicU64,
}

impl InstancePool {
    /// A pool of `total` slots with these guaranteed shares, which must
    /// sum to no more than `total`.
    pub fn new(total: u32, guaranteed: &[(Arc<str>, u32)]) -> Result<Self, String> {
        let sum: u64 = guaranteed.iter().map(|(_, n)| u64::from(*n)).sum();
        if sum > u64::from(total) {
            return Err(format!(
                "the guaranteed instance shares sum to {sum}, more than the pool's {total} \
                 instances"
            ));
        }
        Ok(InstancePool {
            total: total.into(),
            guaranteed: guaranteed
                .iter()
                .map(|(t, n)| (t.clone(), u64::from(*n)))
                .collect(),
            shared: u64::from(total) - sum,
            state: Mutex::default(),
            peak: AtomicU64::new(0),
        })
    }

    /// Slots held now.
    pub fn live(&self) -> u64 {
        self.state.lock().live
    }

    /// The most slots held at once since the node started.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Slots in the pool.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Slots `tenant` holds now.
    pub fn held_by(&self, tenant: &str) -> u64 {
        self.state.lock().held.get(tenant).copied().unwrap_or(0)
    }

    /// `tenant`'s guaranteed share.
    pub fn guaranteed(&self, tenant: &str) -> u64 {
        self.guaranteed.get(tenant).copied().unwrap_or(0)
    }

    /// Takes `weight` slots for `tenant`, or says which bound stops it.
    pub fn take(&self, tenant: &str, weight: u64) -> Result<(), FabricError> {
        let share = self.guaranteed(tenant);
        let mut st = self.state.lock();
        let held = st.held.get(tenant).copied().unwrap_or(0);
        let beyond = (held + weight).saturating_sub(share) - held.saturating_sub(share);
        if st.shared_used + beyond > self.shared {
            return Err(self.refusal(tenant, held, share));
        }
        st.shared_used += beyond;
        st.live += weight;
        match st.held.get_mut(tenant) {
            Some(h) => *h += weight,
            None => {
                st.held.insert(tenant.into(), weight);
            }
        }
        self.peak.fetch_max(st.live, Ordering::Relaxed);
        Ok(())
    }

    fn refusal(&self, tenant: &str, held: u64, share: u64) -> FabricError {
        if self.guaranteed.is_empty() {
            return FabricError::limit(
                "instances",
                self.total,
                format!(
                    "every one of the node's {} instance slots is in use",
                    self.total
                ),
            );
        }
        FabricError::limit(
            "instance-share",
            share,
            format!(
                "tenant `{tenant}` holds {held} instances on this node, its guaranteed share \
                 is {share}, and the {} slots nobody is guaranteed are in use",
                self.shared
            ),
        )
    }

    /// Gives back `weight` slots of `tenant`.
    fn give_back(&self, tenant: &str, weight: u64) {
        let share = self.guaranteed(tenant);
        let mut st = self.state.lock();
        let Some(h) = st.held.get_mut(tenant) else {
            debug_assert!(false, "slots given back by a tenant holding none");
            return;
        };
        let held = *h;
        *h = held.saturating_sub(weight);
        if *h == 0 {
            st.held.remove(tenant);
        }
        let beyond = held.saturating_sub(share) - held.saturating_sub(weight).saturating_sub(share);
        st.shared_used -= beyond;
        st.live -= weight;
    }
}

/// A live instance's slot: counted against its job, its tenant and the
/// pool until dropped (after the instance's store, whose pool slots it
/// stands for).
pub struct InstanceSlot {
    pool: Arc<InstancePool>,
    books: Arc<JobBooks>,
    holder: Holder,
    weight: u64,
}

impl InstanceSlot {
    /// Takes a slot of `pool` for `holder`, of weight `weight`, charged to
    /// the job whose books are `books` (limits `live_instances` and
    /// `live_actors`), or says which bound stops it.
    pub(crate) fn take(
        pool: &Arc<InstancePool>,
        books: &Arc<JobBooks>,
        limits: (u64, u64),
        holder: Holder,
        weight: u64,
    ) -> Result<Self, FabricError> {
        let actor = holder == Holder::Actor;
        books.take_live(limits, actor)?;
        if let Err(e) = books.account.take_live(actor) {
            books.give_back_live(actor);
            return Err(e);
        }
        if let Err(e) = pool.take(&books.account.name, weight) {
            books.account.give_back_live(actor);
            books.give_back_live(actor);
            return Err(e);
        }
        Ok(InstanceSlot {
            pool: pool.clone(),
            books: books.clone(),
            holder,
            weight,
        })
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        let actor = self.holder == Holder::Actor;
        self.pool.give_back(&self.books.account.name, self.weight);
        self.books.account.give_back_live(actor);
        self.books.give_back_live(actor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_must_fit_the_pool() {
        assert!(InstancePool::new(10, &[("a".into(), 6), ("b".into(), 5)]).is_err());
        assert!(InstancePool::new(10, &[("a".into(), 6), ("b".into(), 4)]).is_ok());
    }

    #[test]
    fn a_tenant_past_its_share_uses_the_shared_part_and_gives_it_back() {
        let pool = InstancePool::new(10, &[("a".into(), 3), ("b".into(), 3)]).unwrap();
        for _ in 0..7 {
            pool.take("a", 1).unwrap();
        }
        // a holds its 3 and the 4 shared; b keeps its 3, c gets nothing.
        assert!(pool.take("c", 1).is_err());
        assert!(pool.take("a", 1).is_err());
        for _ in 0..3 {
            pool.take("b", 1).unwrap();
        }
        assert!(pool.take("b", 1).is_err());
        pool.give_back("a", 1);
        pool.take("c", 1).unwrap();
        assert_eq!((pool.live(), pool.peak()), (10, 10));
        for _ in 0..6 {
            pool.give_back("a", 1);
        }
        assert_eq!(pool.held_by("a"), 0);
        // The shared part is free again but for c's one, and a's share is
        // still a's.
        for _ in 0..3 {
            pool.take("b", 1).unwrap();
        }
        assert!(pool.take("b", 1).is_err());
        pool.take("a", 3).unwrap();
        assert!(pool.take("a", 1).is_err());
        assert_eq!(pool.live(), 10);
    }

    #[test]
    fn without_shares_a_full_pool_names_its_size() {
        let pool = InstancePool::new(2, &[]).unwrap();
        pool.take("a", 2).unwrap();
        let e = pool.take("a", 1).unwrap_err();
        assert!(
            matches!(&e, FabricError::LimitExceeded { name, value: 2, .. } if name == "instances"),
            "{e}"
        );
    }
}
