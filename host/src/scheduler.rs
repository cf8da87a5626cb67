//! The local scheduler: admits work by its declared resources.
//!
//! A node has a fixed [`ResourceSet`]. Work asks for a demand; when it fits
//! the free set it gets a [`Lease`] at once, otherwise it waits in a FIFO
//! queue of its own shape (work with the same demand), so a queue of GPU
//! tasks never holds up CPU tasks behind it. Dropping a lease gives its
//! resources back and admits whatever now fits. A guest that blocks in `get`
//! or `wait` hands its CPUs back for as long as it waits ([`Lease::block`]),
//! which is what keeps nested tasks from deadlocking a small node.
//!
//! ```
//! use fabric_host::scheduler::Scheduler;
//! use fabric_host::resources::ResourceSet;
//! let sched = Scheduler::new(ResourceSet::default().with_cpus(1.0), 0);
//! let one_cpu = ResourceSet::default().with_cpus(1.0);
//! let lease = sched.try_acquire(&one_cpu).unwrap();
//! assert!(sched.try_acquire(&one_cpu).is_none());
//! drop(lease);
//! assert!(sched.try_acquire(&one_cpu).is_some());
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::FabricError;
use crate::resources::{ResourceSet, UNIT};

/// Runs admitted work; called with the lease, outside the scheduler's lock.
pub type StartFn = Box<dyn FnOnce(Lease) + Send>;

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
}

struct ShapeQueue {
    demand: ResourceSet,
    waiters: VecDeque<Waiter>,
}

struct State {
    free: ResourceSet,
    /// Free fraction of each GPU, in 1/10,000 units.
    gpu_free: Vec<i64>,
    queues: Vec<ShapeQueue>,
    /// Where the next admission round starts, so no shape starves another.
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

    fn take(&mut self, demand: &ResourceSet) -> Option<Vec<u32>> {
        if !self.free.contains(demand) {
            return None;
        }
        let gpus = self.pick_gpus(demand)?;
        self.free.subtract(demand);
        let share = if demand.gpu < UNIT { demand.gpu } else { UNIT };
        for id in &gpus {
            self.gpu_free[*id as usize] -= share;
        }
        Some(gpus)
    }

    fn give_back(&mut self, demand: &ResourceSet, gpus: &[u32]) {
        self.free.add(demand);
        let share = if demand.gpu < UNIT { demand.gpu } else { UNIT };
        for id in gpus {
            self.gpu_free[*id as usize] += share;
        }
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
}

/// A lease's CPUs, handed back while its holder waits; taken back on drop.
pub struct Blocked {
    sched: Arc<Inner>,
    cpu: i64,
}

impl Scheduler {
    /// A scheduler over `total`, with `num_gpus` GPUs numbered from 0.
    pub fn new(total: ResourceSet, num_gpus: usize) -> Self {
        Scheduler {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    free: total.clone(),
                    gpu_free: vec![UNIT; num_gpus],
                    queues: Vec::new(),
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
        self.inner.state.lock().unwrap().free.clone()
    }

    /// Work waiting for resources.
    pub fn queued(&self) -> usize {
        self.inner.state.lock().unwrap().queued
    }

    /// Fails fast when `demand` could never fit on this node.
    pub fn check_feasible(&self, demand: &ResourceSet) -> Result<(), FabricError> {
        if demand.gpu > UNIT && demand.gpu % UNIT != 0 {
            return Err(FabricError::InvalidArgument(format!(
                "num_gpus above 1 must be a whole number, got {}",
                demand.gpu as f64 / UNIT as f64
            )));
        }
        let missing = self.inner.total.missing(demand);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FabricError::ResourcesInfeasible(format!(
                "no node can ever satisfy {{{demand}}}: {}",
                missing.join(", ")
            )))
        }
    }

    /// A lease now, if `demand` fits and nothing of its shape is queued.
    pub fn try_acquire(&self, demand: &ResourceSet) -> Option<Lease> {
        let mut st = self.inner.state.lock().unwrap();
        if st
            .queues
            .iter()
            .any(|q| q.demand == *demand && !q.waiters.is_empty())
        {
            return None;
        }
        let gpus = st.take(demand)?;
        Some(Lease {
            sched: self.inner.clone(),
            demand: demand.clone(),
            gpus,
        })
    }

    /// Runs `start` with a lease for `demand` now or when it fits. A set
    /// `cancelled` flag drops the work instead of starting it. The demand must
    /// have passed [`Scheduler::check_feasible`].
    pub fn submit(
        &self,
        demand: ResourceSet,
        start: StartFn,
        cancelled: Option<Arc<dyn Cancellable>>,
    ) {
        let lease = {
            let mut st = self.inner.state.lock().unwrap();
            let queued = st
                .queues
                .iter()
                .any(|q| q.demand == demand && !q.waiters.is_empty());
            match (!queued).then(|| st.take(&demand)).flatten() {
                Some(gpus) => Lease {
                    sched: self.inner.clone(),
                    demand,
                    gpus,
                },
                None => {
                    let waiter = Waiter { start, cancelled };
                    match st.queues.iter_mut().find(|q| q.demand == demand) {
                        Some(q) => q.waiters.push_back(waiter),
                        None => st.queues.push(ShapeQueue {
                            demand,
                            waiters: VecDeque::from([waiter]),
                        }),
                    }
                    st.queued += 1;
                    return;
                }
            }
        };
        start(lease);
    }
}

impl Inner {
    /// Admits queued work that fits, round-robin over shapes.
    fn admit(self: &Arc<Self>, st: &mut State) -> Vec<(StartFn, Lease)> {
        let mut started = Vec::new();
        let n = st.queues.len();
        for k in 0..n {
            let i = (st.next_queue + k) % n;
            loop {
                let q = &mut st.queues[i];
                let Some(front) = q.waiters.front() else {
                    break;
                };
                if front.cancelled.as_ref().is_some_and(|c| c.is_cancelled()) {
                    q.waiters.pop_front();
                    st.queued -= 1;
                    continue;
                }
                let demand = q.demand.clone();
                let Some(gpus) = st.take(&demand) else { break };
                let q = &mut st.queues[i];
                let w = q.waiters.pop_front().expect("front exists");
                st.queued -= 1;
                started.push((
                    w.start,
                    Lease {
                        sched: self.clone(),
                        demand,
                        gpus,
                    },
                ));
            }
        }
        if n > 0 {
            st.next_queue = (st.next_queue + 1) % n;
        }
        st.queues.retain(|q| !q.waiters.is_empty());
        started
    }

    fn release(self: &Arc<Self>, demand: &ResourceSet, gpus: &[u32]) {
        let started = {
            let mut st = self.state.lock().unwrap();
            st.give_back(demand, gpus);
            if st.queued == 0 {
                return;
            }
            self.admit(&mut st)
        };
        for (start, lease) in started {
            start(lease);
        }
    }

    fn change_cpu(self: &Arc<Self>, cpu: i64) {
        let delta = ResourceSet {
            cpu,
            ..ResourceSet::default()
        };
        if cpu >= 0 {
            self.release(&delta, &[]);
        } else {
            let mut st = self.state.lock().unwrap();
            st.free.cpu += cpu;
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
        if self.demand.cpu <= 0 {
            return None;
        }
        self.sched.change_cpu(self.demand.cpu);
        Some(Blocked {
            sched: self.sched.clone(),
            cpu: self.demand.cpu,
        })
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.sched.change_cpu(-self.cpu);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.sched.release(&self.demand, &self.gpus);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn cpus(n: f64) -> ResourceSet {
        ResourceSet::default().with_cpus(n)
    }

    #[test]
    fn queued_work_starts_in_order_when_resources_return() {
        let sched = Scheduler::new(cpus(1.0), 0);
        let (tx, rx) = mpsc::channel();
        let first = sched.try_acquire(&cpus(1.0)).unwrap();
        for i in 0..3 {
            let tx = tx.clone();
            sched.submit(
                cpus(1.0),
                Box::new(move |lease| tx.send((i, lease)).unwrap()),
                None,
            );
        }
        assert_eq!(sched.queued(), 3);
        drop(first);
        let (i, lease) = rx.try_recv().unwrap();
        assert_eq!(i, 0);
        assert!(rx.try_recv().is_err(), "one CPU, one task");
        drop(lease);
        assert_eq!(rx.try_recv().unwrap().0, 1);
    }

    #[test]
    fn a_blocked_shape_does_not_hold_up_another() {
        let sched = Scheduler::new(cpus(2.0).with_gpus(1.0), 1);
        let gpu = cpus(1.0).with_gpus(1.0);
        let held = sched.try_acquire(&gpu).unwrap();
        assert_eq!(held.gpu_ids(), &[0]);
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        sched.submit(
            gpu.clone(),
            Box::new(move |l| t.send(("gpu", l)).unwrap()),
            None,
        );
        sched.submit(
            cpus(1.0),
            Box::new(move |l| tx.send(("cpu", l)).unwrap()),
            None,
        );
        assert_eq!(rx.try_recv().unwrap().0, "cpu");
        drop(held);
        let (what, lease) = rx.try_recv().unwrap();
        assert_eq!((what, lease.gpu_ids()), ("gpu", &[0u32][..]));
    }

    #[test]
    fn blocking_hands_back_cpus_and_fractional_gpus_share() {
        let sched = Scheduler::new(cpus(1.0).with_gpus(1.0), 1);
        let lease = sched.try_acquire(&cpus(1.0)).unwrap();
        {
            let _b = lease.block().unwrap();
            let inner = sched
                .try_acquire(&cpus(1.0))
                .expect("CPU free while blocked");
            drop(inner);
        }
        assert_eq!(sched.free().cpu, 0);
        let half = ResourceSet::default().with_gpus(0.5);
        let a = sched.try_acquire(&half).unwrap();
        let b = sched.try_acquire(&half).unwrap();
        assert_eq!((a.gpu_ids(), b.gpu_ids()), (&[0u32][..], &[0u32][..]));
        assert!(sched.try_acquire(&half).is_none());
    }

    #[test]
    fn infeasible_demands_name_the_missing_resource() {
        let sched = Scheduler::new(cpus(2.0), 0);
        let err = sched
            .check_feasible(&ResourceSet::default().with_gpus(1.0))
            .unwrap_err();
        assert!(err.to_string().contains("GPU: 1 (node has 0)"), "{err}");
        assert!(
            sched
                .check_feasible(&ResourceSet::default().with_gpus(1.5))
                .is_err()
        );
        assert!(sched.check_feasible(&cpus(2.0)).is_ok());
    }

    #[test]
    fn cancelled_waiters_are_dropped() {
        let sched = Scheduler::new(cpus(1.0), 0);
        let held = sched.try_acquire(&cpus(1.0)).unwrap();
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Lease>();
        sched.submit(
            cpus(1.0),
            Box::new(move |l| tx.send(l).unwrap()),
            Some(flag.clone()),
        );
        flag.store(true, Ordering::Release);
        drop(held);
        assert!(rx.try_recv().is_err());
        assert_eq!(sched.queued(), 0);
    }
}
