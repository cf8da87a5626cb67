//! Streaming generators (Ray's `num_returns="streaming"`): a remote
//! function or actor method that returns a [`Generator`] hands its items to
//! its caller one by one, each its own object, and the caller takes them
//! from an [`ObjectStream`] as they are produced.
//!
//! ```no_run
//! use fabric::Generator;
//!
//! /// The squares of 0..n, one item each.
//! #[fabric::remote]
//! fn squares(n: u64) -> Generator<u64> {
//!     Generator::new((0..n).map(|i| i * i))
//! }
//!
//! # fn main() -> fabric::Result<()> {
//! let mut sum = 0;
//! for item in squares::remote(10u64)? {
//!     sum += fabric::get(&item?)?;
//! }
//! assert_eq!(sum, 285);
//! # Ok(()) }
//! ```
//!
//! The generator runs ahead of its caller by at most its backpressure
//! (`#[fabric::remote(backpressure = n)]`, or per call with
//! [`crate::TaskOptions::backpressure`]; 64 items by default): then it
//! waits until the caller takes one. A generator whose items are
//! `Result`s ([`Generator::fallible`]) ends at its first `Err`, which the
//! caller gets after the items before it (typed, as any application
//! error: see [`crate::Error::app_error`]). Dropping the stream stops the
//! generator. If the node running it dies, the generator runs again (with
//! retries left) and the caller still sees each item once, in order.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::fabric::core::host;
use crate::__rt::CallError;
use crate::error::{Error, Result};
use crate::object::ObjectRef;
use crate::remote::ArgList;
use crate::value;

/// What a streaming generator returns: the items it yields, produced one
/// at a time as its caller takes them. In an actor method it may borrow
/// the actor (`Generator<'_, T>`, or `Generator<T>` with the lifetime
/// elided); a remote function's generator owns what it uses (written
/// `Generator<T>`, it is `Generator<'static, T>`).
pub struct Generator<'a, T, E = Error> {
    items: Box<dyn Iterator<Item = std::result::Result<T, E>> + 'a>,
}

impl<'a, T: 'a, E: 'a> Generator<'a, T, E> {
    /// Yields every item of `items`.
    pub fn new<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: 'a,
    {
        Generator {
            items: Box::new(items.into_iter().map(Ok)),
        }
    }

    /// Yields the items of `items` up to the first `Err`, which ends the
    /// stream with that error.
    pub fn fallible<I>(items: I) -> Self
    where
        I: IntoIterator<Item = std::result::Result<T, E>>,
        I::IntoIter: 'a,
    {
        Generator {
            items: Box::new(items.into_iter()),
        }
    }
}

/// Hands each item of `generator` to the caller (generated code calls
/// this): `Ok(Err(e))` when an item was the error `e`, `Err` when the host
/// refused an item (say, the caller dropped the stream).
#[doc(hidden)]
pub fn drain<T: Serialize, E>(
    generator: Generator<'_, T, E>,
) -> std::result::Result<std::result::Result<(), E>, CallError> {
    for item in generator.items {
        match item {
            Ok(v) => yield_item(&v).map_err(CallError::Fabric)?,
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

/// Hands one item to the caller of the running generator. In a
/// concurrent actor the item goes to the call that runs now, waiting for
/// room as a plain method would (the actor's other calls wait meanwhile).
fn yield_item<T: Serialize>(v: &T) -> Result<()> {
    let enc = value::encode(v)?;
    let nested: Vec<&host::ObjectRef> = enc.nested.iter().map(|r| r.handle()).collect();
    match crate::concurrent::current_call() {
        Some(call) => {
            host::yield_call_item(call, &enc.bytes, &nested, true)?;
        }
        None => host::yield_item(&enc.bytes, &nested)?,
    }
    Ok(())
}

/// The items of a streaming generator, as its caller takes them: an
/// iterator of references, each item its own object, in the order they
/// were yielded. A failed generator gives its error once, after its last
/// item, and the iteration ends. Dropping the stream stops the generator
/// and frees the items not taken.
pub struct ObjectStream<T> {
    handle: host::ItemStream,
    ended: bool,
    _t: PhantomData<fn() -> T>,
}

impl<T> ObjectStream<T> {
    fn new(handle: host::ItemStream) -> Self {
        ObjectStream {
            handle,
            ended: false,
            _t: PhantomData,
        }
    }

    /// The next item, waiting for it as long as it takes; `None` at the end.
    pub fn next_ref(&mut self) -> Result<Option<ObjectRef<T>>> {
        self.next_within(None)
    }

    /// The next item, waiting for it up to `timeout`
    /// ([`Error::Timeout`] after: the stream goes on).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<ObjectRef<T>>> {
        self.next_within(Some(timeout.as_millis().min(u128::from(u64::MAX)) as u64))
    }

    fn next_within(&mut self, timeout_ms: Option<u64>) -> Result<Option<ObjectRef<T>>> {
        if self.ended {
            return Ok(None);
        }
        match self.handle.next(timeout_ms) {
            Ok(Some(h)) => Ok(Some(ObjectRef::from_handle(h))),
            Ok(None) => {
                self.ended = true;
                Ok(None)
            }
            Err(e) => {
                let e = Error::from(e);
                self.ended = !matches!(e, Error::Timeout);
                Err(e)
            }
        }
    }
}

impl<T: DeserializeOwned> ObjectStream<T> {
    /// The items' values, each read as it comes.
    pub fn values(self) -> impl Iterator<Item = Result<T>> {
        self.map(|r| r.and_then(|r| crate::get(&r)))
    }
}

impl<T> Iterator for ObjectStream<T> {
    type Item = Result<ObjectRef<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().transpose()
    }
}

/// Submits the streaming generator `function` (generated code calls this).
#[doc(hidden)]
pub fn submit_stream<T>(
    function: &str,
    args: ArgList,
    options: &crate::TaskOptions,
) -> Result<ObjectStream<T>> {
    let opts = options.to_wit();
    let handle = args.with_wit(|a, n| host::submit_stream(function, a, n, &opts))?;
    Ok(ObjectStream::new(handle))
}

/// A call of an actor's generator method, not yet queued: `.remote()`
/// queues it and returns its stream.
#[must_use = "call `.remote()` to run the method"]
pub struct ActorStreamMethod<T> {
    actor: crate::actor::ActorRef,
    method: &'static str,
    args: Result<ArgList>,
    backpressure: Option<u32>,
    _t: PhantomData<fn() -> T>,
}

impl<T> ActorStreamMethod<T> {
    #[doc(hidden)]
    pub fn new(actor: crate::actor::ActorRef, method: &'static str, args: Result<ArgList>) -> Self {
        ActorStreamMethod {
            actor,
            method,
            args,
            backpressure: None,
            _t: PhantomData,
        }
    }

    /// At most `items` yielded and not yet taken (default 64).
    pub fn backpressure(mut self, items: u32) -> Self {
        self.backpressure = Some(items);
        self
    }

    /// Queues the call; returns the stream of its items.
    pub fn remote(self) -> Result<ObjectStream<T>> {
        let args = self.args?;
        let actor = self.actor.handle();
        let handle = args.with_wit(|a, n| {
            host::call_actor_stream(actor, self.method, a, n, self.backpressure)
        })?;
        Ok(ObjectStream::new(handle))
    }
}
