//! Options of a task or an actor: one builder for what both have (resources,
//! name, placement), and each kind's own policy (retries for a task;
//! restarts, namespace and lifetime for an actor).
//!
//! ```
//! use fabric::{ActorOptions, TaskOptions};
//! let task = TaskOptions::new().num_cpus(2.0).resource("ssd", 1.0).max_retries(5);
//! let actor = ActorOptions::new().num_gpus(1.0).name("ps").max_restarts(2).detached();
//! assert_eq!(task.resources.num_cpus, Some(2.0));
//! assert_eq!(actor.policy.max_restarts, Some(2));
//! ```

use crate::__bindings::fabric::core::types;

/// Where a task or actor should run (unset: here if it fits, else on a node
/// where it fits, preferring one that holds its arguments).
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Deal out round-robin over the nodes that fit.
    Spread,
    /// On the node with this id (from [`crate::context`]); with `soft`,
    /// elsewhere when that node has no room.
    Node { node_id: String, soft: bool },
    /// On nodes labelled `key=value`; with `soft`, elsewhere when none has room.
    Label {
        key: String,
        value: String,
        soft: bool,
    },
    /// In bundle `index` of a placement group (any of its bundles when
    /// `None`); see [`crate::util::PlacementGroup::bundle`].
    Bundle { group: u128, index: Option<u32> },
}

impl Placement {
    pub(crate) fn to_wit(&self) -> types::Placement {
        match self {
            Placement::Spread => types::Placement::Spread,
            Placement::Node { node_id, soft } => types::Placement::Node(types::NodeAffinity {
                node_id: node_id.clone(),
                soft: *soft,
            }),
            Placement::Label { key, value, soft } => {
                types::Placement::Label(types::LabelAffinity {
                    key: key.clone(),
                    value: value.clone(),
                    soft: *soft,
                })
            }
            Placement::Bundle { group, index } => types::Placement::Bundle(types::BundleTarget {
                group: crate::object::id_to_wit(*group),
                index: *index,
            }),
        }
    }
}

/// What a task or actor holds while it runs (unset: the declared value,
/// then the fabric's default: 1 CPU for a task, none for an actor).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub num_cpus: Option<f64>,
    pub num_gpus: Option<f64>,
    /// Bytes of memory to reserve.
    pub memory: Option<u64>,
    /// Custom resources by name (e.g. `"ssd"`).
    pub custom: Vec<(String, f64)>,
}

impl Resources {
    /// No resources (add them with the builder methods).
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cpus(mut self, n: f64) -> Self {
        self.num_cpus = Some(n);
        self
    }

    pub fn gpus(mut self, n: f64) -> Self {
        self.num_gpus = Some(n);
        self
    }

    /// Bytes of memory.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// `amount` of custom resource `name`.
    pub fn custom(mut self, name: &str, amount: f64) -> Self {
        self.set_custom(name, amount);
        self
    }

    pub(crate) fn from_wit(r: types::Resources) -> Self {
        Resources {
            num_cpus: r.num_cpus,
            num_gpus: r.num_gpus,
            memory: r.memory,
            custom: r.custom,
        }
    }

    fn set_custom(&mut self, name: &str, amount: f64) {
        self.custom.retain(|(n, _)| n != name);
        self.custom.push((name.to_string(), amount));
    }

    fn merge(&mut self, over: Resources) {
        self.num_cpus = over.num_cpus.or(self.num_cpus);
        self.num_gpus = over.num_gpus.or(self.num_gpus);
        self.memory = over.memory.or(self.memory);
        for (n, a) in over.custom {
            self.set_custom(&n, a);
        }
    }

    pub(crate) fn to_wit(&self) -> types::Resources {
        types::Resources {
            num_cpus: self.num_cpus,
            num_gpus: self.num_gpus,
            memory: self.memory,
            custom: self.custom.clone(),
        }
    }
}

/// What only one kind (task or actor) has, and how two of them merge.
pub trait Policy: Clone + Default {
    /// `self` with every field that `over` sets replaced by `over`'s.
    fn merge(&mut self, over: Self);
}

/// Options of a task ([`TaskOptions`]) or an actor ([`ActorOptions`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options<P> {
    pub resources: Resources,
    /// A task's display name, or the name an actor is registered under
    /// (findable with [`crate::get_actor`]).
    pub name: Option<String>,
    pub placement: Option<Placement>,
    /// What only this kind has.
    pub policy: P,
}

/// A task's retry policy. Unset: the declared value, then the fabric's
/// default (3 retries of system failures).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPolicy {
    pub max_retries: Option<u32>,
    pub retry_exceptions: Option<bool>,
    /// Values the function returns, each its own object (for a function
    /// declared with `num_returns`).
    pub num_returns: Option<u32>,
    /// For a streaming generator: at most this many items yielded and not
    /// yet taken by the caller (default 64).
    pub backpressure: Option<u32>,
}

/// An actor's naming, restarts and lifetime.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActorPolicy {
    pub namespace: Option<String>,
    /// With a name: return the existing actor instead of failing.
    pub get_if_exists: bool,
    /// Restarts after a trap, panic or node death (default 0).
    pub max_restarts: Option<u32>,
    /// Resends of a call lost with the actor's node (default 0).
    pub max_task_retries: Option<u32>,
    /// Keep the actor when its job ends (until it is killed).
    pub detached: bool,
    /// Calls it runs at once, interleaved (a concurrent actor).
    pub max_concurrency: Option<u32>,
}

/// Resources and retry policy of a task.
pub type TaskOptions = Options<TaskPolicy>;
/// Resources, placement, naming and restarts of an actor.
pub type ActorOptions = Options<ActorPolicy>;

impl Policy for TaskPolicy {
    fn merge(&mut self, over: Self) {
        self.max_retries = over.max_retries.or(self.max_retries);
        self.retry_exceptions = over.retry_exceptions.or(self.retry_exceptions);
        self.num_returns = over.num_returns.or(self.num_returns);
        self.backpressure = over.backpressure.or(self.backpressure);
    }
}

impl Policy for ActorPolicy {
    fn merge(&mut self, over: Self) {
        self.namespace = over.namespace.or(self.namespace.take());
        self.get_if_exists |= over.get_if_exists;
        self.max_restarts = over.max_restarts.or(self.max_restarts);
        self.max_task_retries = over.max_task_retries.or(self.max_task_retries);
        self.detached |= over.detached;
        self.max_concurrency = over.max_concurrency.or(self.max_concurrency);
    }
}

impl<P: Policy> Options<P> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn num_cpus(mut self, n: f64) -> Self {
        self.resources.num_cpus = Some(n);
        self
    }

    pub fn num_gpus(mut self, n: f64) -> Self {
        self.resources.num_gpus = Some(n);
        self
    }

    /// Bytes of memory to reserve.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.resources.memory = Some(bytes);
        self
    }

    /// Asks for `amount` of custom resource `name` (e.g. `"ssd"`).
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.resources.set_custom(name, amount);
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = Some(placement);
        self
    }

    /// Deal these out round-robin over the nodes (Ray's `SPREAD`).
    pub fn spread(self) -> Self {
        self.placement(Placement::Spread)
    }

    /// Run on node `node_id` only (`soft`: there if it has room).
    pub fn on_node(self, node_id: &str, soft: bool) -> Self {
        self.placement(Placement::Node {
            node_id: node_id.to_string(),
            soft,
        })
    }

    /// Run on a node labelled `key=value` (`soft`: preferably).
    pub fn on_label(self, key: &str, value: &str, soft: bool) -> Self {
        self.placement(Placement::Label {
            key: key.to_string(),
            value: value.to_string(),
            soft,
        })
    }

    /// `self` with every field that `over` sets replaced by `over`'s.
    pub fn merge(mut self, over: Self) -> Self {
        self.resources.merge(over.resources);
        self.name = over.name.or(self.name);
        self.placement = over.placement.or(self.placement);
        self.policy.merge(over.policy);
        self
    }
}

impl Options<TaskPolicy> {
    /// Retries after a system failure (a node lost, say).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.policy.max_retries = Some(n);
        self
    }

    /// Also retry when the function returns an error or panics.
    pub fn retry_exceptions(mut self, yes: bool) -> Self {
        self.policy.retry_exceptions = Some(yes);
        self
    }

    /// How many values a function declared with `num_returns` returns on
    /// this call (Ray's `f.options(num_returns=n)`): for a function that
    /// returns a `Vec`, any number; for a tuple, its length.
    pub fn num_returns(mut self, n: u32) -> Self {
        self.policy.num_returns = Some(n);
        self
    }

    /// For a streaming generator (a function returning
    /// [`crate::Generator`]): at most `items` yielded and not yet taken by
    /// the caller (default 64, at most 65,536); the generator waits
    /// meanwhile (Ray's `_generator_backpressure_num_objects`).
    pub fn backpressure(mut self, items: u32) -> Self {
        self.policy.backpressure = Some(items);
        self
    }

    pub(crate) fn to_wit(&self) -> types::TaskOptions {
        types::TaskOptions {
            resources: self.resources.to_wit(),
            placement: self.placement.as_ref().map(Placement::to_wit),
            max_retries: self.policy.max_retries,
            retry_exceptions: self.policy.retry_exceptions.unwrap_or(false),
            name: self.name.clone(),
            num_returns: self.policy.num_returns,
            backpressure: self.policy.backpressure,
        }
    }
}

impl Options<ActorPolicy> {
    pub fn namespace(mut self, ns: &str) -> Self {
        self.policy.namespace = Some(ns.to_string());
        self
    }

    pub fn get_if_exists(mut self, yes: bool) -> Self {
        self.policy.get_if_exists = yes;
        self
    }

    pub fn max_restarts(mut self, n: u32) -> Self {
        self.policy.max_restarts = Some(n);
        self
    }

    /// Calls in flight when the actor's node dies are sent again, up to `n`
    /// times each, to the restarted actor (so such a call may run twice).
    pub fn max_task_retries(mut self, n: u32) -> Self {
        self.policy.max_task_retries = Some(n);
        self
    }

    /// Runs up to `n` calls at once (1 to 10,000; Ray's `max_concurrency`):
    /// a call that awaits (`fabric::get_async`, `fabric::sleep`) lets
    /// another run, all on the actor's one state. Only for classes with
    /// `async fn` methods, where it defaults to 1,000 (as in Ray); a class
    /// of plain methods still runs them one by one.
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.policy.max_concurrency = Some(n);
        self
    }

    /// Keep the actor alive after its job ends, until it is killed.
    pub fn detached(mut self) -> Self {
        self.policy.detached = true;
        self
    }

    pub(crate) fn to_wit(&self) -> types::ActorOptions {
        let p = &self.policy;
        types::ActorOptions {
            resources: self.resources.to_wit(),
            name: self.name.clone(),
            namespace: p.namespace.clone(),
            get_if_exists: p.get_if_exists,
            max_restarts: p.max_restarts,
            max_task_retries: p.max_task_retries,
            placement: self.placement.as_ref().map(Placement::to_wit),
            detached: p.detached,
            max_concurrency: p.max_concurrency,
        }
    }
}
