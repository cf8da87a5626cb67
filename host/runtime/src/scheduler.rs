//! The local scheduler: admits work by its declared resources, fairly
//! between tenants and within their quotas.
//!
//! A node has a fixed [`ResourceSet`]. Work asks for a demand on behalf of a
//! tenant; when it fits the free set (and the tenant's quota) it gets a
//! [`Lease`] at once, otherwise it waits in a FIFO queue of its tenant and
//! shape (work with the same demand), so a queue of GPU tasks never holds up
//! CPU tasks behind it. Dropping a lease gives its resources back and admits
//! whatever now fits, one at a time, always from the tenant holding the
//! smallest share of the node (its dominant share, as in DRF), so a tenant
//! that floods the queue does not starve one that asks for little. A guest
//! that blocks in `get` or `wait` hands its CPUs back for as long as it
//! waits ([`Lease::block`]), which is what keeps nested tasks from
//! deadlocking a small node. Within one queue the jobs take turns, and of a
//! job's work the deepest in its task tree goes first (a task a task
//! submitted before one its driver submitted; in submission order at one
//! depth): the ancestors of deep work each hold an instance while they wait
//! for it, so running it first keeps the instances in use near the tree's
//! depth times the CPUs, not its width, and taking turns keeps one job's
//! deep tree from holding up another job's shallow work.
//!
//! ```
//! use fabric_runtime::scheduler::Scheduler;
//! use fabric_runtime::resources::ResourceSet;
//! let sched = Scheduler::new(ResourceSet::default().with_cpus(1.0), 0);
//! let one_cpu = ResourceSet::default().with_cpus(1.0);
//! let lease = sched.try_acquire(&one_cpu, &"acme".into()).unwrap();
//! assert!(sched.try_acquire(&one_cpu, &"acme".into()).is_none());
//! drop(lease);
//! assert!(sched.try_acquire(&one_cpu, &"acme".into()).is_some());
//! ```

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bundles::RESERVED;
use crate::error::FabricError;
use crate::ids::GroupId;
use crate::quota::ResourceCap;

mod reserve;
use crate::resources::{ResourceSet, UNIT};
pub use reserve::Reservation;

/// Runs admitted work; called with the lease, outside the scheduler's lock,
/// or with why it will never get one (the placement group it was placed in
/// was removed).
pub type StartFn = Box<dyn FnOnce(Result<Lease, FabricError>) + Send>;

/// The tenant work runs for.
pub type Tenant = Arc<str>;

/// Queued work that may be called off before it starts (a cancelled task, a
/// task of a finished job): it is dropped when it reaches the queue's front.
pub trait Cancellable: Send + Sync {
    fn is_cancelled(&self) -> bool;
}

impl Cancellable for AtomicBool {
    fn is_cancelled(&self) -> bool {
        self.load(Ordering::Acquire)
    }
}

struct Waiter {
    start: StartFn,
    cancelled: Option<Arc<dyn Cancellable>>,
    order: Order,
}

/// Where queued work stands among the work of its queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Order {
    /// Work of one group (a job) takes turns with other groups' work.
    pub group: u128,
    /// Levels down a task tree (0: submitted by a driver or an actor):
    /// within a group, deeper work goes first.
    pub depth: u32,
}

/// The waiters of one group, deepest first, in submission order at one
/// depth.
struct Group {
    id: u128,
    by_depth: BTreeMap<u32, VecDeque<Waiter>>,
}

impl Group {
    fn front(&self) -> Option<&Waiter> {
        self.by_depth.last_key_value().and_then(|(_, q)| q.front())
    }

    fn pop_front(&mut self) -> Option<Waiter> {
        let mut deepest = self.by_depth.last_entry()?;
        let w = deepest.get_mut().pop_front();
        if deepest.get().is_empty() {
            deepest.remove();
        }
        w
    }
}

/// The waiters of one queue: groups take turns, each deepest first.
#[derive(Default)]
struct Levels {
    groups: VecDeque<Group>,
}

impl Levels {
    fn push_back(&mut self, w: Waiter) {
        let id = w.order.group;
        let group = match self.groups.iter_mut().position(|g| g.id == id) {
            Some(i) => &mut self.groups[i],
            None => {
                self.groups.push_back(Group {
                    id,
                    by_depth: BTreeMap::new(),
                });
                self.groups.back_mut().expect("just pushed")
            }
        };
        group
            .by_depth
            .entry(w.order.depth)
            .or_default()
            .push_back(w);
    }

    /// The next waiter: the deepest of the group whose turn it is.
    fn front(&self) -> Option<&Waiter> {
        self.groups.front().and_then(Group::front)
    }

    /// Takes [`Levels::front`]; its group's turn passes to the next one.
    fn pop_front(&mut self) -> Option<Waiter> {
        let mut group = self.groups.pop_front()?;
        let w = group.pop_front();
        if !group.by_depth.is_empty() {
            self.groups.push_back(group);
        }
        w
    }

    fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

struct ShapeQueue {
    tenant: Tenant,
    demand: ResourceSet,
    waiters: Levels,
}

/// What one tenant holds here and may hold.
#[derive(Default)]
struct TenantUse {
    held: ResourceSet,
    cap: ResourceCap,
}

struct State {
    free: ResourceSet,
    /// What the bundles reserved here add, under their own names (see
    /// [`crate::bundles`]): the total of those names.
    named: ResourceSet,
    /// The placement groups whose work may run or wait here; work of any
    /// other group fails at once (its group is gone, or never was).
    groups: HashSet<GroupId>,
    /// Bundles of removed groups that running work still uses: their
    /// resources come back when that work ends.
    draining: Vec<reserve::Draining>,
    /// Free fraction of each GPU, in 1/10,000 units.
    gpu_free: Vec<i64>,
    queues: Vec<ShapeQueue>,
    tenants: HashMap<Tenant, TenantUse>,
    /// Where the next admission scan starts, so equal shares take turns.
    next_queue: usize,
    queued: usize,
}

impl State {
    /// GPU ids for `demand` if they are free: whole GPUs for a request of one
    /// or more, a share of the fullest-fitting GPU for a fraction.
    fn pick_gpus(&self, demand: &ResourceSet) -> Option<Vec<u32>> {
        if demand.gpu <= 0 {
            return Some(Vec::new());
        }
        if demand.gpu < UNIT {
            return self
                .gpu_free
                .iter()
                .enumerate()
                .filter(|(_, f)| **f >= demand.gpu)
                .min_by_key(|(_, f)| **f)
                .map(|(i, _)| vec![i as u32]);
        }
        let want = demand.gpu_slots();
        let ids: Vec<u32> = self
            .gpu_free
            .iter()
            .enumerate()
            .filter(|(_, f)| **f >= UNIT)
            .map(|(i, _)| i as u32)
            .take(want)
            .collect();
        (ids.len() == want).then_some(ids)
    }

    fn within_quota(&self, tenant: &Tenant, demand: &ResourceSet) -> bool {
        self.tenants
            .get(tenant)
            .is_none_or(|t| t.cap.admits(&t.held, demand))
    }

    fn take(&mut self, demand: &ResourceSet, tenant: &Tenant) -> Option<Vec<u32>> {
        if !self.free.contains(demand)
            || !self.within_quota(tenant, demand)
            || self.closed_group(demand).is_some()
        {
            return None;
        }
        let gpus = self.pick_gpus(demand)?;
        self.free.subtract(demand);
        let share = if demand.gpu < UNIT { demand.gpu } else { UNIT };
        for id in &gpus {
            self.gpu_free[*id as usize] -= share;
        }
        let held = &mut self.tenants.entry(tenant.clone()).or_default().held;
        held.cpu += demand.cpu;
        held.gpu += demand.gpu;
        held.memory += demand.memory;
        Some(gpus)
    }

    fn give_back(&mut self, demand: &ResourceSet, gpus: &[u32], tenant: &Tenant) {
        self.free.add(demand);
        if !demand.custom.is_empty() {
            self.prune_named();
            self.settle_draining();
        }
        let share = if demand.gpu < UNIT { demand.gpu } else { UNIT };
        for id in gpus {
            self.gpu_free[*id as usize] += share;
        }
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.held.cpu -= demand.cpu;
            t.held.gpu -= demand.gpu;
            t.held.memory -= demand.memory;
        }
    }

    /// A tenant's dominant share of `total`, in parts per million.
    fn share(&self, tenant: &Tenant, total: &ResourceSet) -> i64 {
        let Some(t) = self.tenants.get(tenant) else {
            return 0;
        };
        let part = |held: i64, total: i64| {
            if total > 0 {
                held.max(0) * 1_000_000 / total
            } else {
                0
            }
        };
        part(t.held.cpu, total.cpu)
            .max(part(t.held.gpu, total.gpu))
            .max(part(t.held.memory, total.memory))
    }

    fn has_queue(&self, tenant: &Tenant, demand: &ResourceSet) -> bool {
        self.queues
            .iter()
            .any(|q| q.demand == *demand && q.tenant == *tenant && !q.waiters.is_empty())
    }
}

struct Inner {
    total: ResourceSet,
    state: Mutex<State>,
}

/// The node's resource scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// Resources held by running work. Dropping it gives them back.
pub struct Lease {
    sched: Arc<Inner>,
    demand: ResourceSet,
    gpus: Vec<u32>,
    tenant: Tenant,
}

/// A lease's CPUs (a bundle's, for work in one), handed back while its
/// holder waits; taken back on drop.
pub struct Blocked {
    sched: Arc<Inner>,
    cpus: ResourceSet,
    tenant: Tenant,
}

/// What one tenant holds on a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantHeld {
    pub tenant: Tenant,
    pub held: ResourceSet,
}

impl Scheduler {
    /// A scheduler over `total`, with `num_gpus` GPUs numbered from 0.
    pub fn new(total: ResourceSet, num_gpus: usize) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: total.clone(),
                    named: ResourceSet::default(),
                    groups: HashSet::new(),
                    draining: Vec::new(),
                    gpu_free: vec![UNIT; num_gpus],
                    queues: Vec::new(),
                    tenants: HashMap::new(),
                    next_queue: 0,
                    queued: 0,
                }),
                total,
            }),
        }
    }

    pub fn total(&self) -> &ResourceSet {
        &self.inner.total
    }

    /// Resources not leased now (may be briefly negative, see [`Lease::block`]).
    pub fn free(&self) -> ResourceSet {
        self.inner.state.lock().free.clone()
    }

    /// Work waiting for resources.
    pub fn queued(&self) -> usize {
        self.inner.state.lock().queued
    }

    /// What each tenant holds here now.
    pub fn held(&self) -> Vec<TenantHeld> {
        let st = self.inner.state.lock();
        st.tenants
            .iter()
            .map(|(t, u)| TenantHeld {
                tenant: t.clone(),
                held: u.held.clone(),
            })
            .collect()
    }

    /// Sets how much `tenant` may hold here (its quota less what it holds
    /// elsewhere), and admits what now fits.
    pub fn set_cap(&self, tenant: &Tenant, cap: ResourceCap) {
        let started = {
            let mut st = self.inner.state.lock();
            let t = st.tenants.entry(tenant.clone()).or_default();
            if t.cap == cap {
                return;
            }
            t.cap = cap;
            self.inner.admit(&mut st)
        };
        for (start, lease) in started {
            start(Ok(lease));
        }
    }

    /// Fails fast when `demand` could never fit on this node.
    pub fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError> {
        if demand.gpu > UNIT && demand.gpu % UNIT != 0 {
            return Err(FabricError::InvalidArgument(format!(
                "num_gpus above 1 must be a whole number, got {}",
                demand.gpu as f64 / UNIT as f64
            )));
        }
        let missing = if demand.custom.iter().any(|(n, _)| n.starts_with(RESERVED)) {
            let mut have = self.inner.total.clone();
            have.add(&self.inner.state.lock().named);
            have.missing(demand)
        } else {
            self.inner.total.missing(demand)
        };
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FabricError::ResourcesInfeasible(format!(
                "no node can ever satisfy {{{demand}}}: {}",
                missing.join(", ")
            )))
        }
    }

    /// A lease now, if `demand` fits (node and quota) and nothing of the
    /// tenant's with its shape is queued.
    pub fn try_acquire(&self, demand: &ResourceSet, tenant: &Tenant) -> Option<Lease> {
        let mut st = self.inner.state.lock();
        if st.has_queue(tenant, demand) {
            return None;
        }
        let gpus = st.take(demand, tenant)?;
        Some(Lease {
            sched: self.inner.clone(),
            demand: demand.clone(),
            gpus,
            tenant: tenant.clone(),
        })
    }

    /// Runs `start` with a lease for `demand` now or when it fits. A set
    /// `cancelled` flag drops the work instead of starting it. The demand must
    /// have passed [`Scheduler::check_feasible`].
    pub fn submit(
        &self,
        demand: ResourceSet,
        tenant: &Tenant,
        start: StartFn,
        cancelled: Option<Arc<dyn Cancellable>>,
    ) {
        self.submit_at(Order::default(), demand, tenant, start, cancelled);
    }

    /// [`Scheduler::submit`] for work placed by `order` among the work of
    /// its queue (see [`Order`]).
    pub fn submit_at(
        &self,
        order: Order,
        demand: ResourceSet,
        tenant: &Tenant,
        start: StartFn,
        cancelled: Option<Arc<dyn Cancellable>>,
    ) {
        let lease = {
            let mut st = self.inner.state.lock();
            if let Some(group) = st.closed_group(&demand) {
                drop(st);
                return start(Err(reserve::removed(group)));
            }
            let queued = st.has_queue(tenant, &demand);
            match (!queued).then(|| st.take(&demand, tenant)).flatten() {
                Some(gpus) => Lease {
                    sched: self.inner.clone(),
                    demand,
                    gpus,
                    tenant: tenant.clone(),
                },
                None => {
                    let waiter = Waiter {
                        start,
                        cancelled,
                        order,
                    };
                    match st
                        .queues
                        .iter_mut()
                        .find(|q| q.demand == demand && q.tenant == *tenant)
                    {
                        Some(q) => q.waiters.push_back(waiter),
                        None => {
                            let mut waiters = Levels::default();
                            waiters.push_back(waiter);
                            st.queues.push(ShapeQueue {
                                tenant: tenant.clone(),
                                demand,
                                waiters,
                            });
                        }
                    }
                    st.queued += 1;
                    return;
                }
            }
        };
        start(Ok(lease));
    }
}

impl Inner {
    /// Admits queued work that fits, one at a time, each from the tenant
    /// with the smallest dominant share (ties: round-robin over queues).
    fn admit(self: &Arc<Self>, st: &mut State) -> Vec<(StartFn, Lease)> {
        let mut started = Vec::new();
        loop {
            let n = st.queues.len();
            let mut best: Option<(i64, usize)> = None;
            for k in 0..n {
                let i = (st.next_queue + k) % n;
                // Work called off before it started leaves the queue here.
                while st.queues[i]
                    .waiters
                    .front()
                    .is_some_and(|w| w.cancelled.as_ref().is_some_and(|c| c.is_cancelled()))
                {
                    st.queues[i].waiters.pop_front();
                    st.queued -= 1;
                }
                let q = &st.queues[i];
                if q.waiters.is_empty()
                    || !st.free.contains(&q.demand)
                    || !st.within_quota(&q.tenant, &q.demand)
                    || st.pick_gpus(&q.demand).is_none()
                {
                    continue;
                }
                let share = st.share(&q.tenant, &self.total);
                if best.is_none_or(|(s, _)| share < s) {
                    best = Some((share, i));
                }
            }
            let Some((_, i)) = best else { break };
            let (demand, tenant) = (st.queues[i].demand.clone(), st.queues[i].tenant.clone());
            let gpus = st.take(&demand, &tenant).expect("checked to fit above");
            let w = st.queues[i].waiters.pop_front().expect("front exists");
            st.queued -= 1;
            st.next_queue = (i + 1) % n;
            started.push((
                w.start,
                Lease {
                    sched: self.clone(),
                    demand,
                    gpus,
                    tenant,
                },
            ));
        }
        st.queues.retain(|q| !q.waiters.is_empty());
        if st.next_queue >= st.queues.len() {
            st.next_queue = 0;
        }
        started
    }

    fn release(self: &Arc<Self>, demand: &ResourceSet, gpus: &[u32], tenant: &Tenant) {
        let started = {
            let mut st = self.state.lock();
            st.give_back(demand, gpus, tenant);
            if st.queued == 0 {
                return;
            }
            self.admit(&mut st)
        };
        for (start, lease) in started {
            start(Ok(lease));
        }
    }

    /// Hands `cpus` back (`give`) or takes them again.
    fn change_cpus(self: &Arc<Self>, cpus: &ResourceSet, give: bool, tenant: &Tenant) {
        if give {
            self.release(cpus, &[], tenant);
        } else {
            let mut st = self.state.lock();
            st.free.subtract(cpus);
            if let Some(t) = st.tenants.get_mut(tenant) {
                t.held.cpu += cpus.cpu;
            }
        }
    }
}

impl Lease {
    pub fn demand(&self) -> &ResourceSet {
        &self.demand
    }

    /// The GPUs this lease holds.
    pub fn gpu_ids(&self) -> &[u32] {
        &self.gpus
    }

    /// Hands this lease's CPUs back until the returned guard drops. The CPUs
    /// come back even if others took them meanwhile (the node is briefly
    /// oversubscribed), so a woken waiter never waits twice.
    pub fn block(&self) -> Option<Blocked> {
        let cpus = self.demand.cpus_only();
        if cpus.cpu <= 0 && cpus.custom.is_empty() {
            return None;
        }
        self.sched.change_cpus(&cpus, true, &self.tenant);
        Some(Blocked {
            sched: self.sched.clone(),
            cpus,
            tenant: self.tenant.clone(),
        })
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.sched.change_cpus(&self.cpus, false, &self.tenant);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.sched.release(&self.demand, &self.gpus, &self.tenant);
    }
}

#[cfg(test)]
mod tests;
