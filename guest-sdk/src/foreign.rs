//! Calls into the job's other components, in any language.
//!
//! A job may be made of several components, named in its manifest's
//! `[components]` table (say a Rust driver and a Python `features`
//! component). A call names a function or an actor class as
//! `component/name`; it runs there with the same scheduling, retries and
//! errors as a call in the same component. Arguments and results travel as
//! MessagePack, which both SDKs read and write; references and actor
//! handles nest inside them as in any value.
//!
//! ```no_run
//! # fn main() -> fabric::Result<()> {
//! let score = fabric::function::<f64>("scoring", "score").arg(3).arg(4).remote()?;
//! let counter = fabric::actor_class("py", "Counter").remote()?;
//! let one = counter.method::<i64>("increment").remote()?;
//! println!("{} {}", fabric::get(&score)?, fabric::get(&one)?);
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::__bindings::fabric::core::host;
use crate::error::Result;
use crate::object::{ObjectRef, RefInner};
use crate::options::{ActorOptions, TaskOptions};
use crate::remote::{Arg, ArgList};
use crate::value::{self, EXT_ACTOR};

/// Arguments gathered one by one; the first that cannot be encoded is
/// reported by `remote`.
struct Args(Result<ArgList>);

impl Args {
    fn new() -> Self {
        Args(Ok(ArgList::new()))
    }

    fn push<T: Serialize>(&mut self, arg: Arg<T>) {
        if let Ok(list) = &mut self.0
            && let Err(e) = list.push(arg)
        {
            self.0 = Err(e);
        }
    }
}

/// The argument methods every builder here has: `.arg(value)` and
/// `.arg_ref(&object_ref)`, gathered in its `args`.
macro_rules! arg_methods {
    () => {
        /// The next argument: a value (a reference inside it stays a
        /// reference).
        pub fn arg<T: Serialize>(mut self, value: T) -> Self {
            self.args.push(Arg::Value(value));
            self
        }

        /// The next argument: the value of the object `r` refers to (the
        /// host waits until it is ready and passes its value, as for any
        /// call).
        pub fn arg_ref<T: Serialize>(mut self, r: &ObjectRef<T>) -> Self {
            self.args.push::<T>(Arg::Ref(r.clone()));
            self
        }
    };
}

/// The function `name` of the job's component `component`, returning `R`.
pub fn function<R>(component: &str, name: &str) -> ForeignCall<R> {
    ForeignCall {
        name: format!("{component}/{name}"),
        args: Args::new(),
        options: TaskOptions::new(),
        _r: PhantomData,
    }
}

/// A call of another component's function, built argument by argument:
/// `.arg(value)` or `.arg_ref(&object_ref)`, then `.remote()`.
#[must_use = "call `.remote()` to submit it"]
pub struct ForeignCall<R> {
    name: String,
    args: Args,
    options: TaskOptions,
    _r: PhantomData<fn() -> R>,
}

impl<R> ForeignCall<R> {
    arg_methods!();

    /// Resources, retries and placement, as for any task.
    pub fn options(mut self, options: TaskOptions) -> Self {
        self.options = options;
        self
    }

    /// Submits the task; returns a reference to its result.
    pub fn remote(self) -> Result<ObjectRef<R>> {
        crate::remote::submit(&self.name, self.args.0?, &self.options)
    }
}

/// The actor class `class` of the job's component `component`.
pub fn actor_class(component: &str, class: &str) -> ForeignClass {
    ForeignClass {
        name: format!("{component}/{class}"),
        args: Args::new(),
        options: ActorOptions::new(),
    }
}

/// An actor to create from another component's class: `.arg(..)` for
/// its constructor, `.options(..)`, then `.remote()`.
#[must_use = "call `.remote()` to create the actor"]
pub struct ForeignClass {
    name: String,
    args: Args,
    options: ActorOptions,
}

impl ForeignClass {
    arg_methods!();

    /// Name, namespace, resources, restarts, as for any actor.
    pub fn options(mut self, options: ActorOptions) -> Self {
        self.options = options;
        self
    }

    /// Creates the actor.
    pub fn remote(self) -> Result<AnyActor> {
        let opts = self.options.to_wit();
        let handle = self
            .args
            .0?
            .with_wit(|a, n| host::create_actor(&self.name, a, n, &opts))?;
        Ok(AnyActor(RefInner::new(handle)))
    }
}

/// A handle to an actor of any class, in any language, whose methods are
/// called by name. It travels inside values as any handle does (a Python
/// actor's handle decodes as one, and one passed to Python is a handle
/// there), and is counted like any handle.
#[derive(Clone)]
pub struct AnyActor(Rc<RefInner>);

impl AnyActor {
    /// The actor (or the deployment: see [`crate::serve::deployment`])
    /// registered as `name` in `namespace`, whatever its class.
    pub fn named(name: &str, namespace: &str) -> Result<AnyActor> {
        let handle = host::get_actor(name, Some(namespace))?;
        Ok(AnyActor(RefInner::new(handle)))
    }

    /// A call of `method`, returning `R`.
    pub fn method<R>(&self, method: &str) -> ForeignMethod<R> {
        ForeignMethod {
            actor: self.clone(),
            method: method.to_string(),
            args: Args::new(),
            _r: PhantomData,
        }
    }

    /// The actor's 128-bit id.
    pub fn id(&self) -> u128 {
        self.0.id()
    }

    /// Stops the actor; its queued calls fail with [`crate::Error::ActorDied`].
    pub fn kill(&self) -> Result<()> {
        host::kill_actor(self.0.handle())?;
        Ok(())
    }

    /// A reference that fails with [`crate::Error::ActorDied`] once the actor ends.
    pub fn watch(&self) -> Result<ObjectRef<()>> {
        Ok(ObjectRef::from_handle(host::watch_actor(self.0.handle())?))
    }
}

impl std::fmt::Debug for AnyActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyActor({:08x})", (self.id() >> 96) as u32)
    }
}

impl Serialize for AnyActor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        value::note_nested(&self.0);
        value::serialize_id(EXT_ACTOR, self.id(), s)
    }
}

impl<'de> Deserialize<'de> for AnyActor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let id = value::deserialize_id(EXT_ACTOR, d)?;
        Ok(AnyActor(value::adopt_later(id).map_err(D::Error::custom)?))
    }
}

/// A method call on an [`AnyActor`], built argument by argument.
#[must_use = "call `.remote()` to queue the call"]
pub struct ForeignMethod<R> {
    actor: AnyActor,
    method: String,
    args: Args,
    _r: PhantomData<fn() -> R>,
}

impl<R> ForeignMethod<R> {
    arg_methods!();

    /// Queues the call; returns a reference to its result.
    pub fn remote(self) -> Result<ObjectRef<R>> {
        let actor = self.actor.0.handle();
        let method = &self.method;
        let handle = self
            .args
            .0?
            .with_wit(|a, n| host::call_actor(actor, method, a, n))?;
        Ok(ObjectRef::from_handle(handle))
    }
}
