//! [`ActorPool`]: Ray's `ray.util.ActorPool`, work spread over a fixed set
//! of actors, one call per actor at a time.
//!
//! ```no_run
//! use fabric::util::ActorPool;
//!
//! #[fabric::actor]
//! struct Worker;
//!
//! #[fabric::actor]
//! impl Worker {
//!     fn new() -> Self {
//!         Worker
//!     }
//!
//!     fn square(&self, x: u64) -> u64 {
//!         x * x
//!     }
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let workers = (0..4)
//!     .map(|_| Worker::remote())
//!     .collect::<fabric::Result<Vec<_>>>()?;
//! let mut pool = ActorPool::new(workers);
//! // In the order of the inputs:
//! let squares: Vec<u64> = pool
//!     .map(|w, x| w.square(x).remote(), 0..100u64)
//!     .collect::<fabric::Result<_>>()?;
//! // Or as they finish:
//! for r in pool.map_unordered(|w, x| w.square(x).remote(), 0..100u64) {
//!     println!("{}", r?);
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::actor::{ActorClass, ActorHandle};
use crate::error::{Error, Result};
use crate::object::ObjectRef;

/// A call not yet given to an actor (every actor was busy).
type Pending<A, R> = Box<dyn FnOnce(&ActorHandle<A>) -> Result<ObjectRef<R>>>;

/// A fixed set of actors of class `A` that calls returning `R` are spread
/// over: a call goes to an idle actor, or waits for one.
pub struct ActorPool<A: ActorClass, R> {
    idle: VecDeque<ActorHandle<A>>,
    /// Calls running, by submission index: their result and their actor.
    running: HashMap<u64, (ObjectRef<R>, ActorHandle<A>)>,
    /// Calls waiting for an idle actor, in submission order.
    waiting: VecDeque<(u64, Pending<A, R>)>,
    /// Calls that failed to start (their error is their result).
    failed: HashMap<u64, Error>,
    next_index: u64,
    /// The next index `get_next` returns.
    next_return: u64,
}

impl<A: ActorClass, R: DeserializeOwned + 'static> ActorPool<A, R> {
    /// A pool over `actors`.
    pub fn new(actors: impl IntoIterator<Item = ActorHandle<A>>) -> Self {
        ActorPool {
            idle: actors.into_iter().collect(),
            running: HashMap::new(),
            waiting: VecDeque::new(),
            failed: HashMap::new(),
            next_index: 0,
            next_return: 0,
        }
    }

    /// Schedules `call(actor)` on the next idle actor (now, or when one
    /// becomes idle). Its result comes from `get_next` (in submission
    /// order) or `get_next_unordered`.
    /// A call that fails to start (say, its arguments cannot be encoded)
    /// has that error as its result.
    pub fn submit(&mut self, call: impl FnOnce(&ActorHandle<A>) -> Result<ObjectRef<R>> + 'static) {
        let index = self.next_index;
        self.next_index += 1;
        match self.idle.pop_front() {
            Some(actor) => self.start(index, actor, Box::new(call)),
            None => self.waiting.push_back((index, Box::new(call))),
        }
    }

    fn start(&mut self, index: u64, actor: ActorHandle<A>, call: Pending<A, R>) {
        match call(&actor) {
            Ok(r) => {
                self.running.insert(index, (r, actor));
            }
            Err(e) => {
                self.failed.insert(index, e);
                // The actor is free for the next call.
                self.push(actor);
            }
        }
    }

    /// Whether a result is still to come.
    pub fn has_next(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty() || !self.failed.is_empty()
    }

    /// Whether an actor is idle (a `submit` would start at once).
    pub fn has_free(&self) -> bool {
        !self.idle.is_empty() && self.waiting.is_empty()
    }

    /// The next result in submission order, waiting for it.
    pub fn get_next(&mut self) -> Result<R> {
        self.get_next_timeout(None)
    }

    /// [`ActorPool::get_next`], waiting at most `timeout` (then
    /// [`Error::Timeout`], and the result is still to come).
    pub fn get_next_timeout(&mut self, timeout: Option<Duration>) -> Result<R> {
        // Past the calls `get_next_unordered` already returned.
        while self.next_return < self.next_index && !self.pending(self.next_return) {
            self.next_return += 1;
        }
        let index = self.next_return;
        if let Some(e) = self.failed.remove(&index) {
            self.next_return += 1;
            return Err(e);
        }
        let r = match self.running.get(&index) {
            Some((r, _)) => r.clone(),
            None if self.has_next() => {
                return Err(Error::InvalidArgument(
                    "get_next: the next call has not started (mixing get_next and \
                     get_next_unordered?)"
                        .into(),
                ));
            }
            None => {
                return Err(Error::InvalidArgument(
                    "get_next: no call is pending".into(),
                ));
            }
        };
        let value = match timeout {
            Some(t) => crate::get_timeout(&r, t),
            None => crate::get(&r),
        };
        if matches!(value, Err(Error::Timeout)) {
            return value;
        }
        self.next_return += 1;
        self.finished(index);
        value
    }

    /// The result that finishes first, waiting for one.
    pub fn get_next_unordered(&mut self) -> Result<R> {
        self.get_next_unordered_timeout(None)
    }

    /// [`ActorPool::get_next_unordered`], waiting at most `timeout`.
    pub fn get_next_unordered_timeout(&mut self, timeout: Option<Duration>) -> Result<R> {
        if let Some(&index) = self.failed.keys().next() {
            let e = self.failed.remove(&index).expect("just seen");
            if index == self.next_return {
                self.next_return += 1;
            }
            return Err(e);
        }
        if self.running.is_empty() {
            return Err(Error::InvalidArgument(
                "get_next_unordered: no call is pending".into(),
            ));
        }
        let (indices, refs): (Vec<u64>, Vec<ObjectRef<R>>) = self
            .running
            .iter()
            .map(|(i, (r, _))| (*i, r.clone()))
            .unzip();
        let (ready, _) = crate::wait(&refs, 1, timeout)?;
        let Some(first) = ready.first() else {
            return Err(Error::Timeout);
        };
        let at = refs
            .iter()
            .position(|r| r.id() == first.id())
            .expect("a ready ref is one of those waited on");
        let index = indices[at];
        let value = crate::get(first);
        // Unordered results move the ordered cursor past them.
        if index == self.next_return {
            self.next_return += 1;
        }
        self.finished(index);
        value
    }

    /// Whether call `index` has a result still to return.
    fn pending(&self, index: u64) -> bool {
        self.running.contains_key(&index)
            || self.failed.contains_key(&index)
            || self.waiting.iter().any(|(i, _)| *i == index)
    }

    /// Call `index` is done: its actor takes the next waiting call, or idles.
    fn finished(&mut self, index: u64) {
        if let Some((_, actor)) = self.running.remove(&index) {
            self.push(actor);
        }
    }

    /// Adds an actor to the pool (it takes a waiting call at once).
    pub fn push(&mut self, actor: ActorHandle<A>) {
        match self.waiting.pop_front() {
            Some((next, call)) => self.start(next, actor, call),
            None => self.idle.push_back(actor),
        }
    }

    /// Takes an idle actor out of the pool.
    pub fn pop_idle(&mut self) -> Option<ActorHandle<A>> {
        self.idle.pop_front()
    }

    /// Applies `call(actor, value)` to each of `values` over the pool's
    /// actors; the results come in the order of `values`.
    pub fn map<V: 'static>(
        &mut self,
        call: impl Fn(&ActorHandle<A>, V) -> Result<ObjectRef<R>> + Clone + 'static,
        values: impl IntoIterator<Item = V>,
    ) -> impl Iterator<Item = Result<R>> + '_ {
        self.submit_all(call, values, true)
    }

    /// [`ActorPool::map`], with the results in the order they finish.
    pub fn map_unordered<V: 'static>(
        &mut self,
        call: impl Fn(&ActorHandle<A>, V) -> Result<ObjectRef<R>> + Clone + 'static,
        values: impl IntoIterator<Item = V>,
    ) -> impl Iterator<Item = Result<R>> + '_ {
        self.submit_all(call, values, false)
    }

    /// Submits a call per value; their results, in order or as they finish.
    fn submit_all<V: 'static>(
        &mut self,
        call: impl Fn(&ActorHandle<A>, V) -> Result<ObjectRef<R>> + Clone + 'static,
        values: impl IntoIterator<Item = V>,
        ordered: bool,
    ) -> Results<'_, A, R> {
        for v in values {
            let call = call.clone();
            self.submit(move |a| call(a, v));
        }
        Results {
            pool: self,
            ordered,
        }
    }
}

/// The results of a `map`, until none is pending.
struct Results<'a, A: ActorClass, R> {
    pool: &'a mut ActorPool<A, R>,
    ordered: bool,
}

impl<A: ActorClass, R: DeserializeOwned + 'static> Iterator for Results<'_, A, R> {
    type Item = Result<R>;
    fn next(&mut self) -> Option<Result<R>> {
        if !self.pool.has_next() {
            return None;
        }
        Some(match self.ordered {
            true => self.pool.get_next(),
            false => self.pool.get_next_unordered(),
        })
    }
}
