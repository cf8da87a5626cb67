//! Bundles of placement groups reserved on this node.
//!
//! A reservation is a lease that never runs anything: its resources stay
//! out of the free set (and count against its tenant's quota) for as long
//! as the bundle is reserved, and the bundle's own names (see
//! [`crate::bundles`]) are added to the free set, for the work placed in
//! it. Dropping the reservation takes the names away; work still running
//! in the bundle gives its names back to a set that no longer has them,
//! which leaves them at zero. The bundle's own resources come back when the
//! last such work ends (until then they stay its tenant's), so removing a
//! group never lets its work run beyond what its tenant holds. Work of a
//! group the scheduler does not know (see [`Scheduler::open_group`]) fails
//! at once instead of waiting: its group is gone.
//!
//! ```
//! use fabric_runtime::bundles::{bundle_demand, bundle_resources};
//! use fabric_runtime::ids::GroupId;
//! use fabric_runtime::resources::ResourceSet;
//! use fabric_runtime::scheduler::Scheduler;
//! let sched = Scheduler::new(ResourceSet::default().with_cpus(2.0), 0);
//! let one = ResourceSet::default().with_cpus(1.0);
//! let group = GroupId::random();
//! sched.open_group(group);
//! let bundle = sched
//!     .reserve_now(&one, bundle_resources(group, 0, &one), &"acme".into())
//!     .unwrap();
//! assert_eq!(sched.free().without_named(), one);
//! let inside = bundle_demand(group, Some(0), &one);
//! let running = sched.try_acquire(&inside, &"acme".into()).unwrap();
//! assert!(sched.try_acquire(&inside, &"acme".into()).is_none());
//! drop((running, bundle));
//! assert!(sched.check_feasible(&inside).is_err());
//! sched.close_group(group);
//! assert_eq!(sched.free(), ResourceSet::default().with_cpus(2.0));
//! ```

use std::sync::Arc;

use super::{Inner, Lease, Scheduler, State, Tenant};
pub(super) use crate::bundles::removed;
use crate::bundles::{RESERVED, group_of, group_prefix};
use crate::ids::GroupId;
use crate::resources::ResourceSet;

/// A removed bundle's resources, held until the work in it ends.
pub(super) struct Draining {
    named: ResourceSet,
    demand: ResourceSet,
    gpus: Vec<u32>,
    tenant: Tenant,
}

/// A bundle reserved on this node; dropping it frees the bundle.
pub struct Reservation {
    sched: Arc<Inner>,
    /// Holds the bundle's resources (taken, then never released until drop).
    lease: Option<Lease>,
    /// What the reservation added under the bundle's names.
    named: ResourceSet,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({})", self.named)
    }
}

impl ResourceSet {
    /// The set without the bundles' names (what a node shows others).
    pub fn without_named(mut self) -> Self {
        self.custom.retain(|(n, _)| !n.starts_with(RESERVED));
        self
    }

    /// Its CPUs: plain ones and a bundle's (what blocked work hands back).
    pub(super) fn cpus_only(&self) -> ResourceSet {
        ResourceSet {
            cpu: self.cpu,
            custom: self
                .custom
                .iter()
                .filter(|(n, _)| n.starts_with(RESERVED) && n.ends_with(":CPU"))
                .cloned()
                .collect(),
            ..ResourceSet::default()
        }
    }
}

impl State {
    /// The group `demand` is placed in, when the scheduler does not know it.
    pub(super) fn closed_group(&self, demand: &ResourceSet) -> Option<GroupId> {
        if demand.custom.is_empty() {
            return None;
        }
        group_of(demand).filter(|g| !self.groups.contains(g))
    }

    /// Whether running work still holds any of `named`.
    fn in_use(&self, named: &ResourceSet) -> bool {
        named.custom.iter().any(|(n, _)| self.free.custom(n) < 0)
    }

    /// Gives back the removed bundles no running work uses any more.
    pub(super) fn settle_draining(&mut self) {
        let mut i = 0;
        while i < self.draining.len() {
            if self.in_use(&self.draining[i].named) {
                i += 1;
                continue;
            }
            let d = self.draining.swap_remove(i);
            self.give_back(&d.demand, &d.gpus, &d.tenant);
        }
    }

    /// Drops the bundle names that nothing has or holds any more.
    pub(super) fn prune_named(&mut self) {
        let named = &self.named;
        self.free
            .custom
            .retain(|(n, v)| !n.starts_with(RESERVED) || *v != 0 || named.custom(n) != 0);
        self.named.custom.retain(|(_, v)| *v != 0);
    }
}

impl Scheduler {
    /// Lets work of `group` run and wait here (before its bundles are
    /// reserved: work may be queued for them first).
    pub fn open_group(&self, group: GroupId) {
        self.inner.state.lock().groups.insert(group);
    }

    /// Reserves `bundle` now if it fits (and `tenant`'s quota), adding
    /// `named` for the work placed in it.
    pub fn reserve_now(
        &self,
        bundle: &ResourceSet,
        named: ResourceSet,
        tenant: &Tenant,
    ) -> Option<Reservation> {
        let lease = self.try_acquire(bundle, tenant)?;
        Some(self.reserve(lease, named))
    }

    /// Turns `lease` into a reservation that adds `named`.
    pub fn reserve(&self, lease: Lease, named: ResourceSet) -> Reservation {
        let started = {
            let mut st = self.inner.state.lock();
            st.free.add(&named);
            st.named.add(&named);
            self.inner.admit(&mut st)
        };
        for (start, lease) in started {
            start(Ok(lease));
        }
        Reservation {
            sched: self.inner.clone(),
            lease: Some(lease),
            named,
        }
    }

    /// Closes `group`: its queued work fails now, and any that comes later
    /// fails at once.
    pub fn close_group(&self, group: GroupId) {
        let prefix = group_prefix(group);
        let why = removed(group);
        let failed = {
            let mut st = self.inner.state.lock();
            st.groups.remove(&group);
            let mut failed = Vec::new();
            let mut i = 0;
            while i < st.queues.len() {
                let hit = st.queues[i]
                    .demand
                    .custom
                    .iter()
                    .any(|(n, _)| n.starts_with(&prefix));
                if hit {
                    let mut q = st.queues.remove(i);
                    while let Some(w) = q.waiters.pop_front() {
                        st.queued -= 1;
                        failed.push(w);
                    }
                } else {
                    i += 1;
                }
            }
            if st.next_queue >= st.queues.len() {
                st.next_queue = 0;
            }
            failed
        };
        for w in failed {
            (w.start)(Err(why.clone()));
        }
    }
}

impl Lease {
    /// Its demand, GPUs and tenant, without giving anything back.
    fn into_parts(mut self) -> (ResourceSet, Vec<u32>, Tenant) {
        let parts = (
            std::mem::take(&mut self.demand),
            std::mem::take(&mut self.gpus),
            self.tenant.clone(),
        );
        // What is left (nothing) goes back on drop.
        parts
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let (demand, gpus, tenant) = lease.into_parts();
        let now = {
            let mut st = self.sched.state.lock();
            st.free.subtract(&self.named);
            st.named.subtract(&self.named);
            st.prune_named();
            if st.in_use(&self.named) {
                st.draining.push(Draining {
                    named: std::mem::take(&mut self.named),
                    demand,
                    gpus,
                    tenant,
                });
                None
            } else {
                Some((demand, gpus, tenant))
            }
        };
        // Gives the bundle's resources back and admits what now fits.
        if let Some((demand, gpus, tenant)) = now {
            self.sched.release(&demand, &gpus, &tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundles::{bundle_demand, bundle_resources};
    use crate::ids::GroupId;
    use std::sync::mpsc;

    fn cpus(n: f64) -> ResourceSet {
        ResourceSet::default().with_cpus(n)
    }

    #[test]
    fn work_in_a_bundle_waits_for_the_bundle_and_fails_when_it_goes() {
        let sched = Scheduler::new(cpus(2.0), 0);
        let t: Tenant = "t".into();
        let g = GroupId::random();
        sched.open_group(g);
        let bundle = sched
            .reserve_now(&cpus(1.0), bundle_resources(g, 0, &cpus(1.0)), &t)
            .unwrap();
        // Outside the bundle only one CPU is left.
        assert!(sched.try_acquire(&cpus(2.0), &t).is_none());
        let (tx, rx) = mpsc::channel();
        for i in 0..2 {
            let tx = tx.clone();
            sched.submit(
                bundle_demand(g, Some(0), &cpus(1.0)),
                &t,
                Box::new(move |l| tx.send((i, l.map(drop))).unwrap()),
                None,
            );
        }
        // The first ran and gave its lease back; the second then ran.
        assert_eq!(rx.try_recv().unwrap(), (0, Ok(())));
        assert_eq!(rx.try_recv().unwrap(), (1, Ok(())));
        let held = sched
            .try_acquire(&bundle_demand(g, None, &cpus(1.0)), &t)
            .unwrap();
        sched.submit(
            bundle_demand(g, Some(0), &cpus(1.0)),
            &t,
            Box::new({
                let tx = tx.clone();
                move |l| tx.send((2, l.map(drop))).unwrap()
            }),
            None,
        );
        assert!(rx.try_recv().is_err());
        drop(bundle);
        // The bundle's CPU stays out while work in it runs.
        assert_eq!(sched.free().without_named(), cpus(1.0));
        sched.close_group(g);
        assert_eq!(rx.try_recv().unwrap(), (2, Err(removed(g))));
        // Work of a closed group fails at once, and takes nothing.
        sched.submit(
            bundle_demand(g, None, &cpus(0.0)),
            &t,
            Box::new(move |l| tx.send((3, l.map(drop))).unwrap()),
            None,
        );
        assert_eq!(rx.try_recv().unwrap(), (3, Err(removed(g))));
        assert!(
            sched
                .try_acquire(&bundle_demand(g, None, &cpus(0.0)), &t)
                .is_none()
        );
        drop(held);
        // Nothing of the group is left, and both CPUs are free.
        assert_eq!(sched.free(), cpus(2.0));
        assert_eq!(sched.queued(), 0);
    }

    #[test]
    fn work_blocked_in_a_bundle_lends_the_bundles_cpu_to_its_children() {
        let sched = Scheduler::new(cpus(1.0), 0);
        let t: Tenant = "t".into();
        let g = GroupId::random();
        sched.open_group(g);
        let bundle = sched
            .reserve_now(&cpus(1.0), bundle_resources(g, 0, &cpus(1.0)), &t)
            .unwrap();
        let inside = bundle_demand(g, Some(0), &cpus(1.0));
        let parent = sched.try_acquire(&inside, &t).unwrap();
        assert!(sched.try_acquire(&inside, &t).is_none());
        let blocked = parent.block().unwrap();
        let child = sched.try_acquire(&inside, &t).unwrap();
        drop((child, blocked, parent, bundle));
        sched.close_group(g);
        assert_eq!(sched.free(), cpus(1.0));
    }
}
