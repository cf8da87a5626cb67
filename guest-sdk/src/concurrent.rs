//! Concurrent actors: `async fn` methods that take turns on one state.
//!
//! A class with `async fn` methods is a concurrent actor (Ray's async
//! actors): the host hands it up to `max_concurrency` calls at once (default
//! 1,000) and they interleave. A call runs until it awaits something the
//! host provides ([`get_async`], [`ready`], [`sleep`]); meanwhile the
//! others run. The state is one value all calls share, so methods take
//! `&self`; keep what changes in a `Cell` or `RefCell` (and hold no
//! `RefCell` borrow across an `.await`).
//!
//! ```no_run
//! use std::cell::Cell;
//! use std::time::Duration;
//!
//! #[fabric::actor]
//! struct Napper {
//!     naps: Cell<u64>,
//! }
//!
//! #[fabric::actor]
//! impl Napper {
//!     fn new() -> Self {
//!         Napper { naps: Cell::new(0) }
//!     }
//!
//!     /// Sleeps 100 ms: ten calls at once take about 100 ms, not a second.
//!     async fn nap(&self) -> u64 {
//!         fabric::sleep(Duration::from_millis(100)).await;
//!         self.naps.set(self.naps.get() + 1);
//!         self.naps.get()
//!     }
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let napper = Napper::remote()?;
//! let naps = (0..10)
//!     .map(|_| napper.nap().remote())
//!     .collect::<fabric::Result<Vec<_>>>()?;
//! fabric::get_all(&naps)?;
//! # Ok(()) }
//! ```
//!
//! A method that returns a [`crate::Generator`] streams from a concurrent
//! actor too. Like a plain method it runs to its end when called: while it
//! waits for its caller to take items (past its backpressure), the actor's
//! other calls wait.
//!
//! How it runs: the host calls the guest's `actor-run` once; [`run`] is its
//! executor. It polls the calls that can make progress, then asks the host
//! for the next event (`next-event`: a new call, some awaited objects are
//! ready, a timer), and hands each outcome back with `finish-call`. Outside
//! a concurrent actor (a task, a plain actor, the driver) the same futures
//! work through [`block_on`], which waits with the host's `wait`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::__bindings::fabric::core::host;
use crate::error::Result;
use crate::object::{ObjectRef, RefInner};

/// A method call in flight, as generated code returns it.
pub type CallFuture = Pin<
    Box<dyn Future<Output = std::result::Result<crate::__rt::Returned, crate::__rt::CallError>>>,
>;

/// A registration in the reactor: true while the future that made it waits
/// on it (false once it fired, or the future was dropped: it is pruned).
pub(crate) type Registration = Rc<Cell<bool>>;

/// What pending futures wait for: objects and deadlines.
#[derive(Default)]
struct Reactor {
    watched: Vec<(Rc<RefInner>, Waker, Registration)>,
    timers: Vec<(Instant, Waker, Registration)>,
}

thread_local! {
    static REACTOR: RefCell<Reactor> = RefCell::new(Reactor::default());
    /// The host's id of the concurrent actor's call that runs now: where
    /// a generator method's items go (`yield-call-item`).
    static CURRENT_CALL: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The concurrent actor's call running now, if any.
pub(crate) fn current_call() -> Option<u64> {
    CURRENT_CALL.with(Cell::get)
}

/// Runs `f` as part of call `call` (so its generator's items go to it).
fn in_call<R>(call: u64, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT_CALL.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT_CALL.with(|c| c.replace(Some(call))));
    f()
}

impl Reactor {
    /// The handles to watch and how long to wait at most (rounded up to a
    /// millisecond, so a timer never fires early).
    fn snapshot() -> (Vec<Rc<RefInner>>, Option<u64>) {
        REACTOR.with(|r| {
            let mut r = r.borrow_mut();
            // Whoever made them no longer waits: forget them (and let go of
            // the objects they kept alive).
            r.watched.retain(|(_, _, live)| live.get());
            r.timers.retain(|(_, _, live)| live.get());
            let now = Instant::now();
            let next = r.timers.iter().map(|(t, _, _)| *t).min();
            let timeout = next.map(|t| {
                let left = t.saturating_duration_since(now);
                left.as_millis() as u64 + u64::from(left.subsec_nanos() % 1_000_000 != 0)
            });
            (
                r.watched.iter().map(|(h, _, _)| h.clone()).collect(),
                timeout,
            )
        })
    }

    /// Wakes the watchers of the objects at `ready` (indices into the last
    /// snapshot, which nothing changed since) and every expired timer.
    fn fire(ready: &[u32]) {
        let woken: Vec<Waker> = REACTOR.with(|r| {
            let mut r = r.borrow_mut();
            let mut woken = Vec::new();
            let mut idx: Vec<usize> = ready.iter().map(|&i| i as usize).collect();
            idx.sort_unstable_by(|a, b| b.cmp(a));
            idx.dedup();
            for i in idx {
                if i < r.watched.len() {
                    let (_, waker, live) = r.watched.swap_remove(i);
                    live.set(false);
                    woken.push(waker);
                }
            }
            let now = Instant::now();
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut r.timers)
                .into_iter()
                .partition(|(t, _, _)| *t <= now);
            r.timers = later;
            for (_, waker, live) in due {
                live.set(false);
                woken.push(waker);
            }
            woken
        });
        woken.into_iter().for_each(Waker::wake);
    }
}

/// Wakes `waker` at `deadline` (a wait with a timeout inside an actor).
pub(crate) fn wake_at(deadline: Instant, waker: Waker) -> Registration {
    let live = Rc::new(Cell::new(true));
    REACTOR.with(|r| r.borrow_mut().timers.push((deadline, waker, live.clone())));
    live
}

/// Wakes `waker` once the object behind `inner` is ready (or failed).
pub(crate) fn wake_when_ready(inner: Rc<RefInner>, waker: Waker) -> Registration {
    let live = Rc::new(Cell::new(true));
    REACTOR.with(|r| r.borrow_mut().watched.push((inner, waker, live.clone())));
    live
}

/// Keeps a future's one registration: made when it first waits, made
/// again only after it fired, and withdrawn when the future is dropped.
#[derive(Default)]
struct Registered(Option<Registration>);

impl Registered {
    /// Whether the registration is still waiting.
    fn waiting(&self) -> bool {
        self.0.as_ref().is_some_and(|l| l.get())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(l) = &self.0 {
            l.set(false);
        }
    }
}

/// Whether the object behind `inner` is ready (or failed), asked without
/// waiting.
pub(crate) fn is_ready(inner: &RefInner) -> bool {
    host::wait(&[inner.handle()], 1, Some(0)).map_or(true, |r| !r.is_empty())
}

/// Resolves once the object `r` refers to is ready (or failed): awaiting
/// it lets the actor's other calls run.
pub fn ready<T>(r: &ObjectRef<T>) -> impl Future<Output = ()> + use<T> {
    Ready {
        inner: r.inner.clone(),
        registered: Registered::default(),
    }
}

struct Ready {
    inner: Rc<RefInner>,
    registered: Registered,
}

impl Future for Ready {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if is_ready(&self.inner) {
            return Poll::Ready(());
        }
        if !self.registered.waiting() {
            let live = Rc::new(Cell::new(true));
            let w = (self.inner.clone(), cx.waker().clone(), live.clone());
            REACTOR.with(|r| r.borrow_mut().watched.push(w));
            self.registered.0 = Some(live);
        }
        Poll::Pending
    }
}

/// The value of `r`, awaited: other calls of a concurrent actor run while
/// it is not ready.
pub async fn get_async<T: DeserializeOwned>(r: &ObjectRef<T>) -> Result<T> {
    ready(r).await;
    crate::get(r)
}

/// Resolves after `d`: other calls of a concurrent actor run meanwhile.
pub fn sleep(d: Duration) -> impl Future<Output = ()> {
    Sleep {
        until: Instant::now() + d,
        registered: Registered::default(),
    }
}

struct Sleep {
    until: Instant,
    registered: Registered,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.until {
            return Poll::Ready(());
        }
        if !self.registered.waiting() {
            let live = wake_at(self.until, cx.waker().clone());
            self.registered.0 = Some(live);
        }
        Poll::Pending
    }
}

/// Wakes a task by putting its key on the ready queue.
struct TaskWaker {
    key: u64,
    queue: Arc<Mutex<VecDeque<u64>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.queue.lock().expect("one thread").push_back(self.key);
    }
}

/// Runs `f` to its end here, waiting with the host's `wait` (outside a
/// concurrent actor: in a task, a plain actor or the driver).
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let waker = Waker::from(Arc::new(TaskWaker { key: 0, queue }));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let (watched, timeout) = Reactor::snapshot();
        let handles: Vec<&host::ObjectRef> = watched.iter().map(|h| h.handle()).collect();
        let ready = match (handles.is_empty(), timeout) {
            (true, None) => panic!("block_on: the future waits on nothing the host can wake"),
            (true, Some(ms)) => {
                std::thread::sleep(Duration::from_millis(ms));
                Vec::new()
            }
            (false, _) => host::wait(&handles, 1, timeout).unwrap_or_default(),
        };
        Reactor::fire(&ready);
    }
}

/// A call's outcome, as generated code returns it.
type Outcome = std::result::Result<crate::__rt::Returned, crate::__rt::CallError>;
/// Starts a call of a concurrent class: its future.
type StartFn<'a> =
    &'a dyn Fn(&str, Vec<Vec<u8>>) -> std::result::Result<CallFuture, crate::__rt::CallError>;
/// Runs a call of a plain class to its end.
type CallFn<'a> = &'a mut dyn FnMut(&str, Vec<Vec<u8>>) -> Outcome;
/// Hands a call's outcome to the host: its id, its method, the outcome.
type FinishFn<'a> = &'a dyn Fn(u64, &str, Outcome);

/// What [`run`] runs a call with.
pub(crate) enum Methods<'a> {
    /// A class with `async fn` methods: each call a future over the shared
    /// state.
    Async(StartFn<'a>),
    /// A class of plain methods: each call runs to its end when it comes.
    Sync(CallFn<'a>),
}

/// A call in flight: the host's id for it, its name for errors, its future.
struct Task {
    call: u64,
    method: String,
    future: CallFuture,
}

/// The executor of `actor-run`: until the host says stop and no call is in
/// flight. `finish(call, method, outcome)` hands an outcome to the host.
pub(crate) fn run(
    mut methods: Methods<'_>,
    finish: FinishFn<'_>,
) -> std::result::Result<(), host::Error> {
    let queue = Arc::new(Mutex::new(VecDeque::new()));
    let mut tasks: HashMap<u64, Task> = HashMap::new();
    let mut next_key = 0u64;
    let mut stopping = false;
    loop {
        poll_woken(&queue, &mut tasks, finish);
        if stopping && tasks.is_empty() {
            return Ok(());
        }
        let (watched, timeout) = Reactor::snapshot();
        let handles: Vec<&host::ObjectRef> = watched.iter().map(|h| h.handle()).collect();
        let event = host::next_event(&handles, timeout)?;
        drop(handles);
        let mut ready = Vec::new();
        match event {
            host::ActorEvent::Call(c) => match &mut methods {
                Methods::Async(start) => match in_call(c.call, || start(&c.method, c.args)) {
                    Ok(future) => {
                        next_key += 1;
                        tasks.insert(
                            next_key,
                            Task {
                                call: c.call,
                                method: c.method,
                                future,
                            },
                        );
                        queue.lock().expect("one thread").push_back(next_key);
                    }
                    Err(e) => finish(c.call, &c.method, Err(e)),
                },
                Methods::Sync(call) => {
                    let outcome = in_call(c.call, || call(&c.method, c.args));
                    finish(c.call, &c.method, outcome);
                }
            },
            host::ActorEvent::Ready(r) => ready = r,
            // Generator methods here wait for room in `yield-call-item`.
            host::ActorEvent::Timeout | host::ActorEvent::Room(_) => {}
            // Said twice: the host holds no call in flight, so the tasks
            // left here ran out of time (the host failed them) or wait for
            // something no call will provide; waiting on would spin.
            host::ActorEvent::Stop if stopping => return Ok(()),
            host::ActorEvent::Stop => stopping = true,
        }
        Reactor::fire(&ready);
    }
}

/// Polls every task that was woken, finishing those that end.
fn poll_woken(
    queue: &Arc<Mutex<VecDeque<u64>>>,
    tasks: &mut HashMap<u64, Task>,
    finish: FinishFn<'_>,
) {
    loop {
        let Some(key) = queue.lock().expect("one thread").pop_front() else {
            return;
        };
        let Some(task) = tasks.get_mut(&key) else {
            continue;
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            key,
            queue: queue.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        let polled = in_call(task.call, || task.future.as_mut().poll(&mut cx));
        if let Poll::Ready(outcome) = polled {
            let task = tasks.remove(&key).expect("polled just now");
            finish(task.call, &task.method, outcome);
        }
    }
}
