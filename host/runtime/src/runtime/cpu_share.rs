//! The node's threads shared between tenants: while several tenants have
//! work running here, each runs on at most its share of the threads at
//! once, so one tenant's many requests cannot fill every thread (and so
//! every core) while another tenant's request waits behind them.
//!
//! Tokio runs whatever is ready, first come first served: a tenant with 64
//! requests in flight has 64 futures ready for every one of a tenant with
//! one, and takes the threads (on two cores, a flood of 64 connections on
//! a deployment with 64 places cut another tenant's route from about
//! 12,000 to 1,250 requests a second, its p99 8-21x: benches/README.md).
//! A [`Shared`] future runs (is polled) only while its tenant holds fewer
//! than its share of polls at once; past that it waits, at no cost, until
//! one of its tenant's polls ends. While other tenants were busy in the
//! last [`BUSY_WITHIN`] too, a tenant is sure of the threads divided among
//! the busy tenants (at least one), and may run on more only while a thread
//! stays free for each other busy tenant: a tenant alone has every thread,
//! two tenants on two threads one each, and on 16 threads a flooder beside
//! nine quiet tenants seven, while two flooders beside a third keep two
//! threads free for it. So another tenant's next request finds a thread
//! free, and threads no one needs do not sit idle.
//! Only polls count: a request waiting on I/O, a timer or another
//! deployment holds nothing, so a tenant's waits never slow it. Where it
//! is used: the instances of stateless (`wasi:http`) deployments' requests
//! (replicas, tasks and actors hold the CPUs the scheduler gives them).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use fabric_runtime::runtime::cpu_share::CpuShares;
//! let shares = CpuShares::new(2);
//! let acme = shares.tenant("acme");
//! assert_eq!(acme.run(async { 6 * 7 }).await, 42);
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How recently a tenant ran for it to count as busy: long enough to span
/// the gap between a closed-loop client's requests, short enough that a
/// tenant gone idle gives its share back at once to the eye.
pub const BUSY_WITHIN: Duration = Duration::from_millis(50);

/// How often the busy tenants are counted again (by whoever polls).
const RECOUNT_EVERY: Duration = Duration::from_millis(5);

/// The polls each of `busy` tenants is sure of on `threads`.
fn sure_share(threads: usize, busy: usize) -> usize {
    (threads / busy.max(1)).max(1)
}

/// Whether a tenant with `own` polls running may start another, with
/// `total` running in all: within its sure share, or past it into a thread
/// that still leaves one free for each other busy tenant. Alone, a tenant
/// never waits (nor pays for a wakeup).
fn may_run(threads: usize, busy: usize, total: usize, own: usize) -> bool {
    own < sure_share(threads, busy) || busy <= 1 || total + busy - 1 < threads
}

/// `TenantShare::last_busy` of a tenant that has not run yet.
const NEVER: u64 = u64::MAX;

/// The node's shares: one per tenant that ran here.
pub struct CpuShares {
    inner: Arc<Inner>,
}

struct Inner {
    threads: usize,
    started: Instant,
    /// Tenants by name; the entries of tenants no one holds go at a recount.
    tenants: Mutex<HashMap<Arc<str>, Weak<TenantShare>>>,
    /// Tenants busy within [`BUSY_WITHIN`] at the last count (at least 1).
    busy: AtomicUsize,
    /// Polls running now, every tenant's.
    running: AtomicUsize,
    /// When that count was made (ms since `started`).
    counted_at: AtomicU64,
}

impl CpuShares {
    /// Shares of `threads` (at least one).
    pub fn new(threads: usize) -> Self {
        CpuShares {
            inner: Arc::new(Inner {
                threads: threads.max(1),
                started: Instant::now(),
                tenants: Mutex::new(HashMap::new()),
                busy: AtomicUsize::new(1),
                running: AtomicUsize::new(0),
                counted_at: AtomicU64::new(0),
            }),
        }
    }

    /// `tenant`'s share, the one every holder of it runs under.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantShare> {
        let mut tenants = self.inner.tenants.lock();
        if let Some(share) = tenants.get(tenant).and_then(Weak::upgrade) {
            return share;
        }
        let share = Arc::new(TenantShare {
            shares: self.inner.clone(),
            last_busy: AtomicU64::new(NEVER),
            state: Mutex::new(RunState::default()),
            next_id: AtomicU64::new(0),
        });
        tenants.insert(tenant.into(), Arc::downgrade(&share));
        share
    }

    /// Polls a busy tenant is sure of now.
    pub fn share_now(&self) -> usize {
        sure_share(self.inner.threads, self.inner.busy())
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How many tenants are busy (counted again every [`RECOUNT_EVERY`]).
    fn busy(&self) -> usize {
        let now = self.now_ms();
        let counted = self.counted_at.load(Ordering::Relaxed);
        if now.saturating_sub(counted) >= RECOUNT_EVERY.as_millis() as u64
            && self
                .counted_at
                .compare_exchange(counted, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.recount(now);
        }
        self.busy.load(Ordering::Relaxed).max(1)
    }

    /// Whether a tenant with `own` polls running may start another now.
    fn may_run(&self, busy: usize, own: usize) -> bool {
        may_run(
            self.threads,
            busy,
            self.running.load(Ordering::Relaxed),
            own,
        )
    }

    fn recount(&self, now: u64) {
        let within = BUSY_WITHIN.as_millis() as u64;
        let mut busy = 0;
        self.tenants
            .lock()
            .retain(|_, share| match share.upgrade() {
                Some(share) => {
                    let last = share.last_busy.load(Ordering::Relaxed);
                    busy += usize::from(last != NEVER && now.saturating_sub(last) <= within);
                    true
                }
                None => false,
            });
        self.busy.store(busy.max(1), Ordering::Relaxed);
    }
}

/// One tenant's polls: how many run now, and who waits for a turn.
pub struct TenantShare {
    shares: Arc<Inner>,
    last_busy: AtomicU64,
    state: Mutex<RunState>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct RunState {
    running: usize,
    /// Futures waiting for a turn, first come first served.
    waiting: VecDeque<(u64, Waker)>,
    /// Futures given a turn (woken) that have not polled since: a turn
    /// given to one that is dropped first goes on to the next.
    woken: Vec<u64>,
}

impl TenantShare {
    /// `future`, polled only within this tenant's share.
    pub fn run<F: Future>(self: &Arc<Self>, future: F) -> Shared<F> {
        Shared {
            future: Box::pin(future),
            share: self.clone(),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Takes a turn for `id`, or queues `waker` for one.
    fn enter(&self, id: u64, waker: &Waker) -> bool {
        self.last_busy
            .store(self.shares.now_ms(), Ordering::Relaxed);
        let busy = self.shares.busy();
        let shares = &self.shares;
        let mut state = self.state.lock();
        state.woken.retain(|&w| w != id);
        if shares.may_run(busy, state.running) {
            state.running += 1;
            shares.running.fetch_add(1, Ordering::Relaxed);
            // A share grown since (a tenant went idle) is taken up by the
            // waiters one after another.
            let next = shares
                .may_run(busy, state.running)
                .then(|| state.give_turn())
                .flatten();
            drop(state);
            if let Some(next) = next {
                next.wake();
            }
            return true;
        }
        match state.waiting.iter_mut().find(|(w, _)| *w == id) {
            Some((_, queued)) => queued.clone_from(waker),
            None => state.waiting.push_back((id, waker.clone())),
        }
        false
    }

    /// Ends a turn, giving the next waiter its own.
    fn leave(&self) {
        self.shares.running.fetch_sub(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        state.running -= 1;
        let next = state.give_turn();
        drop(state);
        if let Some(next) = next {
            next.wake();
        }
    }

    /// Forgets `id`, which is dropped: a turn it was given goes on.
    fn forget(&self, id: u64) {
        let mut state = self.state.lock();
        state.waiting.retain(|(w, _)| *w != id);
        let had_turn = state.woken.iter().position(|&w| w == id);
        let next = had_turn.and_then(|at| {
            state.woken.swap_remove(at);
            state.give_turn()
        });
        drop(state);
        if let Some(next) = next {
            next.wake();
        }
    }

    /// Polls of this tenant running now.
    pub fn running(&self) -> usize {
        self.state.lock().running
    }
}

impl RunState {
    fn give_turn(&mut self) -> Option<Waker> {
        let (id, waker) = self.waiting.pop_front()?;
        self.woken.push(id);
        Some(waker)
    }
}

thread_local! {
    /// The tenant whose turn this thread is polling in, if any.
    static IN_TURN: std::cell::Cell<*const TenantShare> = const { std::cell::Cell::new(std::ptr::null()) };
}

/// A future polled within its tenant's share (see the module docs).
pub struct Shared<F> {
    future: Pin<Box<F>>,
    share: Arc<TenantShare>,
    id: u64,
}

impl<F: Future> Future for Shared<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let share = Arc::as_ptr(&this.share);
        // Polled from within a turn of its own tenant (a shared future
        // awaiting another inline): that turn is its own.
        if IN_TURN.get() == share {
            // Were it queued for a turn of its own, the turn goes on.
            this.share.forget(this.id);
            return this.future.as_mut().poll(cx);
        }
        if !this.share.enter(this.id, cx.waker()) {
            return Poll::Pending;
        }
        // The turn ends however the poll does, a panic included.
        struct Turn<'a>(&'a TenantShare, *const TenantShare);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                IN_TURN.set(self.1);
                self.0.leave();
            }
        }
        let _turn = Turn(&this.share, IN_TURN.replace(share));
        this.future.as_mut().poll(cx)
    }
}

impl<F> Drop for Shared<F> {
    fn drop(&mut self) {
        self.share.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A future that notes it runs, and yields `polls` times first.
    async fn busy(running: Arc<AtomicUsize>, most: Arc<AtomicUsize>, polls: usize) {
        for _ in 0..polls {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
            running.fetch_sub(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
    }

    /// Keeps `tenant` busy (a poll every millisecond) until `stop`.
    fn keep_busy(share: Arc<TenantShare>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(share.clone().run(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn a_busy_tenant_runs_on_its_share_of_the_threads_and_alone_on_all() {
        let shares = CpuShares::new(3);
        let (a, b) = (shares.tenant("a"), shares.tenant("b"));
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // Alone, tenant a runs on all three threads at once.
        let alone: Vec<_> = (0..16)
            .map(|_| tokio::spawn(a.run(busy(running.clone(), most.clone(), 20))))
            .collect();
        for t in alone {
            t.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) > 2, "alone: {most:?}");
        // With tenant b busy too, a leaves b a thread: at most two.
        most.store(0, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let b_keeps_busy = keep_busy(b, stop.clone());
        tokio::time::sleep(RECOUNT_EVERY * 2).await;
        let shared: Vec<_> = (0..16)
            .map(|_| tokio::spawn(a.run(busy(running.clone(), most.clone(), 20))))
            .collect();
        for t in shared {
            t.await.unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        b_keeps_busy.await.unwrap();
        assert!(most.load(Ordering::SeqCst) <= 2, "shared: {most:?}");
        assert_eq!(a.running(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_waiter_passes_its_turn_on() {
        // Two threads, two busy tenants: one turn each.
        let shares = CpuShares::new(2);
        let (a, b) = (shares.tenant("a"), shares.tenant("b"));
        let stop = Arc::new(AtomicBool::new(false));
        let b_keeps_busy = keep_busy(b, stop.clone());
        // Tenant a is counted busy once it ran and a count was made since.
        a.run(async {}).await;
        tokio::time::sleep(RECOUNT_EVERY * 2).await;
        // Many futures of tenant a, half dropped while they wait: the
        // others all finish, one at a time.
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..40)
            .map(|_| tokio::spawn(a.run(busy(running.clone(), most.clone(), 5))))
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            if i % 2 == 0 {
                t.abort();
            } else {
                tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .expect("a waiter was left without a turn")
                    .unwrap();
            }
        }
        stop.store(true, Ordering::SeqCst);
        b_keeps_busy.await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(a.state.lock().waiting.is_empty());
    }

    #[test]
    fn a_tenant_is_sure_of_its_share_and_takes_more_only_where_others_keep_a_thread() {
        // Two threads, two busy tenants: one each, never more.
        assert!(may_run(2, 2, 1, 0));
        assert!(!may_run(2, 2, 1, 1));
        // Alone: every thread and more (the threads bound it anyway).
        assert!(may_run(2, 1, 2, 2));
        // 16 threads, a flooder beside nine quiet tenants: seven.
        assert!(may_run(16, 10, 6, 6));
        assert!(!may_run(16, 10, 7, 7));
        // Two flooders beside a third on 16: each sure of five, and both
        // together stop where two threads are still free.
        assert!(may_run(16, 3, 13, 7));
        assert!(!may_run(16, 3, 14, 7));
        // The third tenant's first poll goes in whatever the flooders hold.
        assert!(may_run(16, 3, 16, 0));
        assert_eq!(sure_share(16, 3), 5);
        assert_eq!(sure_share(2, 5), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_shared_future_awaiting_another_of_its_tenant_inline_runs() {
        let shares = CpuShares::new(1);
        let a = shares.tenant("a");
        let inner = a.run(async { 7 });
        let outer = a.run(async move { inner.await * 6 });
        let answer = tokio::time::timeout(Duration::from_secs(5), outer).await;
        assert_eq!(
            answer.expect("the inner future waited for the outer's turn"),
            42
        );
    }
}
