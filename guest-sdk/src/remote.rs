//! Arguments and options of remote calls, and task submission.

use std::rc::Rc;

use serde::Serialize;

use crate::__bindings::fabric::core::{host, types};
use crate::error::Result;
use crate::object::{ObjectRef, RefInner};
use crate::value;

/// An argument of a remote call: a value, or a reference to one. The host
/// resolves a reference before the callee runs, so the callee gets a `T`.
pub enum Arg<T> {
    Value(T),
    Ref(ObjectRef<T>),
}

impl<T> From<T> for Arg<T> {
    fn from(v: T) -> Self {
        Arg::Value(v)
    }
}

impl<T> From<ObjectRef<T>> for Arg<T> {
    fn from(r: ObjectRef<T>) -> Self {
        Arg::Ref(r)
    }
}

impl<T> From<&ObjectRef<T>> for Arg<T> {
    fn from(r: &ObjectRef<T>) -> Self {
        Arg::Ref(r.clone())
    }
}

/// Where a task or actor should run (unset: here if it fits, else on a node
/// where it fits, preferring one that holds its arguments).
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Deal tasks out round-robin over the nodes that fit.
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
        }
    }
}

/// Resources and retry policy of a task. Unset fields keep the function's
/// declared value, then the fabric's default (1 CPU, 3 retries).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskOptions {
    pub num_cpus: Option<f64>,
    pub num_gpus: Option<f64>,
    /// Bytes of memory to reserve.
    pub memory: Option<u64>,
    pub resources: Vec<(String, f64)>,
    pub max_retries: Option<u32>,
    pub retry_exceptions: Option<bool>,
    pub name: Option<String>,
    pub placement: Option<Placement>,
}

impl TaskOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn num_cpus(mut self, n: f64) -> Self {
        self.num_cpus = Some(n);
        self
    }

    pub fn num_gpus(mut self, n: f64) -> Self {
        self.num_gpus = Some(n);
        self
    }

    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = Some(bytes);
        self
    }

    /// Asks for `amount` of custom resource `name` (e.g. `"ssd"`).
    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        self.resources.retain(|(n, _)| n != name);
        self.resources.push((name.to_string(), amount));
        self
    }

    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Also retry when the function returns an error or panics.
    pub fn retry_exceptions(mut self, yes: bool) -> Self {
        self.retry_exceptions = Some(yes);
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

    /// Deal these tasks out round-robin over the nodes (Ray's `SPREAD`).
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
    pub fn merge(mut self, over: TaskOptions) -> Self {
        self.num_cpus = over.num_cpus.or(self.num_cpus);
        self.num_gpus = over.num_gpus.or(self.num_gpus);
        self.memory = over.memory.or(self.memory);
        for (n, a) in over.resources {
            self = self.resource(&n, a);
        }
        self.max_retries = over.max_retries.or(self.max_retries);
        self.retry_exceptions = over.retry_exceptions.or(self.retry_exceptions);
        self.name = over.name.or(self.name);
        self.placement = over.placement.or(self.placement);
        self
    }

    pub(crate) fn to_wit(&self) -> types::TaskOptions {
        types::TaskOptions {
            resources: resources_to_wit(self.num_cpus, self.num_gpus, self.memory, &self.resources),
            placement: self.placement.as_ref().map(Placement::to_wit),
            max_retries: self.max_retries,
            retry_exceptions: self.retry_exceptions.unwrap_or(false),
            name: self.name.clone(),
        }
    }
}

pub(crate) fn resources_to_wit(
    cpus: Option<f64>,
    gpus: Option<f64>,
    memory: Option<u64>,
    custom: &[(String, f64)],
) -> types::Resources {
    types::Resources {
        num_cpus: cpus,
        num_gpus: gpus,
        memory,
        custom: custom.to_vec(),
    }
}

enum EncodedArg {
    Value(Vec<u8>),
    Ref(Rc<RefInner>),
}

/// Encoded arguments of one call, with the references they nest.
#[doc(hidden)]
#[derive(Default)]
pub struct ArgList {
    args: Vec<EncodedArg>,
    nested: Vec<Rc<RefInner>>,
}

impl ArgList {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push<T: Serialize>(&mut self, arg: Arg<T>) -> Result<()> {
        match arg {
            Arg::Value(v) => {
                let enc = value::encode(&v)?;
                self.nested.extend(enc.nested);
                self.args.push(EncodedArg::Value(enc.bytes));
            }
            Arg::Ref(r) => self.args.push(EncodedArg::Ref(r.inner)),
        }
        Ok(())
    }

    /// Calls `f` with the arguments and nested references as the host takes them.
    pub(crate) fn with_wit<R>(
        self,
        f: impl FnOnce(&[host::Arg<'_>], &[&host::ObjectRef]) -> R,
    ) -> R {
        let ArgList { args, nested } = self;
        let refs: Vec<Rc<RefInner>> = args
            .iter()
            .filter_map(|a| match a {
                EncodedArg::Ref(r) => Some(r.clone()),
                EncodedArg::Value(_) => None,
            })
            .collect();
        let mut next_ref = refs.iter();
        let args: Vec<host::Arg<'_>> = args
            .into_iter()
            .filter_map(|a| match a {
                EncodedArg::Value(v) => Some(host::Arg::Value(v)),
                EncodedArg::Ref(_) => next_ref.next().map(|r| host::Arg::Object(r.handle())),
            })
            .collect();
        let nested: Vec<&host::ObjectRef> = nested.iter().map(|r| r.handle()).collect();
        f(&args, &nested)
    }
}

/// Submits remote function `function` (generated code calls this).
#[doc(hidden)]
pub fn submit<R>(function: &str, args: ArgList, options: &TaskOptions) -> Result<ObjectRef<R>> {
    let opts = options.to_wit();
    let handle = args.with_wit(|a, n| host::submit(function, a, n, &opts))?;
    Ok(ObjectRef::from_handle(handle))
}
