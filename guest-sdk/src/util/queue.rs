//! [`Queue`]: Ray's `ray.util.queue.Queue`, a bounded first-in first-out
//! queue that tasks and actors anywhere in the cluster share.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use fabric::util::Queue;
//!
//! /// Puts `n` lines on `q`, waiting while it is full.
//! #[fabric::remote]
//! fn produce(q: Queue<String>, n: u64) -> fabric::Result<()> {
//!     for i in 0..n {
//!         q.put(&format!("line {i}"))?;
//!     }
//!     Ok(())
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let q: Queue<String> = Queue::new(100)?;
//! let producer = produce::remote(q.clone(), 10u64)?;
//! while let Ok(line) = q.get_timeout(Duration::from_secs(5)) {
//!     println!("{line}");
//! }
//! fabric::get(&producer)?;
//! # Ok(()) }
//! ```
//!
//! The queue lives in a concurrent actor ([`QueueActor`]): a `get` on an
//! empty queue (or a `put` on a full one) waits inside the actor, without
//! holding up the calls that would let it go on. Items are objects: the
//! actor keeps references, not copies, so an item costs the queue a few
//! bytes however large it is, and references nested in items stay alive.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::actor::ActorHandle;
use crate::concurrent::Registration;
use crate::error::{Error, Result};
use crate::object::ObjectRef;
use crate::options::ActorOptions;

/// Why a queue operation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueError {
    /// The queue was full (a `put` that did not wait, or waited in vain).
    Full,
    /// The queue was empty (a `get` that did not wait, or waited in vain).
    Empty,
}

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueueError::Full => "the queue is full",
            QueueError::Empty => "the queue is empty",
        })
    }
}

impl QueueError {
    /// The queue error `e` is, if it is one.
    pub fn of(e: &Error) -> Option<QueueError> {
        e.app_error()
    }
}

/// The actor behind a [`Queue`]: its items, its bound, and the calls
/// waiting for room or for an item.
#[crate::actor]
pub struct QueueActor {
    items: RefCell<VecDeque<ObjectRef<()>>>,
    /// 0: unbounded.
    maxsize: u64,
    getters: Waiters,
    putters: Waiters,
}

#[crate::actor]
impl QueueActor {
    fn new(maxsize: u64) -> Self {
        QueueActor {
            items: RefCell::new(VecDeque::new()),
            maxsize,
            getters: Waiters::default(),
            putters: Waiters::default(),
        }
    }

    /// Adds `item` (one reference), waiting for room up to `wait_ms`
    /// (forever when unset; not at all when 0).
    async fn put(
        &self,
        item: Vec<ObjectRef<()>>,
        wait_ms: Option<u64>,
    ) -> std::result::Result<(), QueueError> {
        let deadline = deadline(wait_ms);
        while self.is_full() {
            if past(deadline) {
                return Err(QueueError::Full);
            }
            self.putters.wait(deadline).await;
        }
        self.items.borrow_mut().extend(item);
        self.getters.wake_all();
        Ok(())
    }

    /// Takes the oldest item, waiting for one up to `wait_ms`.
    async fn get(
        &self,
        wait_ms: Option<u64>,
    ) -> std::result::Result<Vec<ObjectRef<()>>, QueueError> {
        let deadline = deadline(wait_ms);
        loop {
            if let Some(item) = self.items.borrow_mut().pop_front() {
                self.putters.wake_all();
                return Ok(vec![item]);
            }
            if past(deadline) {
                return Err(QueueError::Empty);
            }
            self.getters.wait(deadline).await;
        }
    }

    /// Items queued now.
    fn qsize(&self) -> u64 {
        self.items.borrow().len() as u64
    }
}

impl QueueActor {
    fn is_full(&self) -> bool {
        self.maxsize > 0 && self.items.borrow().len() as u64 >= self.maxsize
    }
}

fn deadline(wait_ms: Option<u64>) -> Option<Instant> {
    wait_ms.map(|ms| Instant::now() + Duration::from_millis(ms))
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Calls waiting inside the actor; woken all at once (each checks again),
/// so a waiter that gave up never swallows a wake-up meant for another.
/// A waiter that gave up (its call timed out or ended) is dropped from it.
#[derive(Default)]
struct Waiters(RefCell<Vec<(Waker, Registration)>>);

impl Waiters {
    fn wake_all(&self) {
        for (w, live) in self.0.take() {
            if live.get() {
                w.wake();
            }
        }
    }

    /// Resolves at the next wake-up or at `deadline`.
    fn wait(&self, deadline: Option<Instant>) -> impl Future<Output = ()> + '_ {
        WakeUp {
            waiters: self,
            deadline,
            waited: Cell::new(false),
            live: Vec::new(),
        }
    }
}

struct WakeUp<'a> {
    waiters: &'a Waiters,
    deadline: Option<Instant>,
    waited: Cell<bool>,
    /// Its registrations (with the waiters, and its timer): withdrawn when
    /// it is dropped.
    live: Vec<Registration>,
}

impl Future for WakeUp<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waited.replace(true) {
            return Poll::Ready(());
        }
        let live = Rc::new(Cell::new(true));
        {
            let mut waiters = self.waiters.0.borrow_mut();
            waiters.retain(|(_, l)| l.get());
            waiters.push((cx.waker().clone(), live.clone()));
        }
        self.live.push(live);
        if let Some(d) = self.deadline {
            let timer = crate::concurrent::wake_at(d, cx.waker().clone());
            self.live.push(timer);
        }
        Poll::Pending
    }
}

impl Drop for WakeUp<'_> {
    fn drop(&mut self) {
        for l in &self.live {
            l.set(false);
        }
    }
}

/// A bounded FIFO queue of `T`s shared by tasks and actors anywhere in the
/// cluster (Ray's `ray.util.queue.Queue`). Clone it or pass it to tasks
/// and actors: every copy is the same queue, which lives while any does.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct Queue<T> {
    actor: ActorHandle<QueueActor>,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            actor: self.actor.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Result<Self> {
        Self::with_options(maxsize, ActorOptions::new())
    }

    /// A queue whose actor is created with `options` (placement, name, ..).
    /// It runs up to 10,000 calls at once (unless `options` say otherwise):
    /// that many `get`s waiting on an empty queue (or `put`s on a full one)
    /// take every slot, and a `put` (or `get`) waits until one leaves.
    pub fn with_options(maxsize: usize, options: ActorOptions) -> Result<Self> {
        let options = ActorOptions::new().max_concurrency(10_000).merge(options);
        let actor = QueueActor::options(options).remote(maxsize as u64)?;
        Ok(Queue {
            actor,
            _t: PhantomData,
        })
    }

    /// Adds `item`, waiting for room.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_within(item, None)
    }

    /// Adds `item`, waiting for room at most `timeout` (then
    /// [`QueueError::Full`]).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_within(item, Some(timeout.as_millis() as u64))
    }

    /// Adds `item` if there is room now, else [`QueueError::Full`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.put_within(item, Some(0))
    }

    fn put_within(&self, item: &T, wait_ms: Option<u64>) -> Result<()> {
        let r: ObjectRef<()> = ObjectRef::from_inner(crate::put(item)?.inner);
        crate::get(&self.actor.put(vec![r], wait_ms).remote()?)
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.get_within(None)
    }

    /// Takes the oldest item, waiting at most `timeout` (then
    /// [`QueueError::Empty`]).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_within(Some(timeout.as_millis() as u64))
    }

    /// Takes the oldest item if there is one now, else [`QueueError::Empty`].
    pub fn get_nowait(&self) -> Result<T> {
        self.get_within(Some(0))
    }

    fn get_within(&self, wait_ms: Option<u64>) -> Result<T> {
        let item = crate::get(&self.actor.get(wait_ms).remote()?)?;
        let r: ObjectRef<T> = ObjectRef::from_inner(item[0].inner.clone());
        crate::get(&r)
    }

    /// Items queued now.
    pub fn qsize(&self) -> Result<usize> {
        Ok(crate::get(&self.actor.qsize().remote()?)? as usize)
    }

    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }
}
