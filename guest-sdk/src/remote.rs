//! Arguments and options of remote calls, and task submission.

use std::rc::Rc;

use serde::Serialize;

use crate::__bindings::fabric::core::host;
use crate::error::Result;
use crate::object::{ObjectRef, RefInner};
use crate::options::TaskOptions;
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
