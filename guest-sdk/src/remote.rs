//! Arguments and options of remote calls, and task submission.

use std::rc::Rc;

use serde::Serialize;

use crate::__bindings::fabric::core::host;
use crate::error::{Error, Result};
use crate::object::{ObjectRef, RefInner};
use crate::options::TaskOptions;
use crate::returns::Returns;
use crate::value;

/// An argument of a remote call: a value, or a reference to one. The host
/// resolves a reference before the callee runs, so the callee gets a `T`.
pub enum Arg<T> {
    Value(T),
    Ref(ObjectRef<T>),
    /// For a `Vec<U>` parameter: references to its elements (see [`Refs`]).
    /// The host resolves every one before the callee runs.
    Refs(RefList),
}

/// The references of an [`Arg::Refs`], whatever their type.
#[doc(hidden)]
pub struct RefList(Vec<Rc<RefInner>>);

/// References passed as one `Vec` argument (Ray's `f.remote(*refs)`): the
/// host waits for all of them and the callee gets their values, in order,
/// without holding an instance meanwhile (unlike a task that calls
/// [`crate::get_all`] itself).
///
/// ```no_run
/// use fabric::prelude::*;
///
/// #[fabric::remote]
/// fn total(parts: Vec<u64>) -> u64 { parts.iter().sum() }
///
/// #[fabric::remote]
/// fn count(n: u64) -> u64 { n }
///
/// # fn main() -> fabric::Result<()> {
/// let parts: Vec<ObjectRef<u64>> = (0..10).map(count::remote).collect::<Result<_, _>>()?;
/// let sum = fabric::get(&total::remote(Refs(parts))?)?;
/// # let _ = sum;
/// # Ok(())
/// # }
/// ```
pub struct Refs<T>(pub Vec<ObjectRef<T>>);

impl<T> From<Refs<T>> for Arg<Vec<T>> {
    fn from(r: Refs<T>) -> Self {
        Arg::Refs(RefList(r.0.into_iter().map(|r| r.inner).collect()))
    }
}

impl<T> From<&[ObjectRef<T>]> for Refs<T> {
    fn from(refs: &[ObjectRef<T>]) -> Self {
        Refs(refs.to_vec())
    }
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
    Refs(Vec<Rc<RefInner>>),
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
            Arg::Refs(refs) => self.args.push(EncodedArg::Refs(refs.0)),
        }
        Ok(())
    }

    /// Calls `f` with the arguments and nested references as the host takes them.
    pub(crate) fn with_wit<R>(
        self,
        f: impl FnOnce(&[host::Arg<'_>], &[&host::ObjectRef]) -> R,
    ) -> R {
        let ArgList { args, nested } = self;
        // The references the WIT arguments borrow, in order, kept here while
        // they do (no allocation when there are none).
        let held: Vec<Rc<RefInner>> = args
            .iter()
            .flat_map(|a| match a {
                EncodedArg::Ref(r) => std::slice::from_ref(r),
                EncodedArg::Refs(refs) => refs.as_slice(),
                EncodedArg::Value(_) => &[],
            })
            .cloned()
            .collect();
        let mut next = held.iter();
        let args: Vec<host::Arg<'_>> = args
            .into_iter()
            .map(|a| match a {
                EncodedArg::Value(v) => host::Arg::Value(v),
                EncodedArg::Ref(_) => host::Arg::Object(next.next().expect("held").handle()),
                EncodedArg::Refs(refs) => {
                    host::Arg::Objects(next.by_ref().take(refs.len()).map(|r| r.handle()).collect())
                }
            })
            .collect();
        let nested: Vec<&host::ObjectRef> = nested.iter().map(|r| r.handle()).collect();
        f(&args, &nested)
    }
}

/// Submits remote function `function` (generated code calls this).
#[doc(hidden)]
pub fn submit<R>(function: &str, args: ArgList, options: &TaskOptions) -> Result<ObjectRef<R>> {
    if options.policy.num_returns.is_some_and(|n| n != 1) {
        return Err(Error::InvalidArgument(format!(
            "`{function}` returns one value: declare `#[fabric::remote(num_returns = ..)]` to return several"
        )));
    }
    let opts = options.to_wit();
    let handle = args.with_wit(|a, n| host::submit(function, a, n, &opts))?;
    Ok(ObjectRef::from_handle(handle))
}

/// Submits remote function `function`, declared with `num_returns`: one
/// reference per value.
#[doc(hidden)]
pub fn submit_each<R: Returns>(
    function: &str,
    args: ArgList,
    options: &TaskOptions,
) -> Result<R::Refs> {
    let n = match (options.policy.num_returns, R::FIXED) {
        (Some(n), Some(fixed)) if n != fixed => {
            return Err(Error::InvalidArgument(format!(
                "`{function}` returns {fixed} values, not {n}"
            )));
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => {
            return Err(Error::InvalidArgument(format!(
                "`{function}` returns a Vec: say how many values with num_returns"
            )));
        }
    };
    let mut opts = options.to_wit();
    opts.num_returns = Some(n);
    let handles = args.with_wit(|a, nested| host::submit_returns(function, a, nested, &opts))?;
    if handles.len() != n as usize {
        return Err(Error::Value(format!(
            "the host returned {} references for {n} values",
            handles.len()
        )));
    }
    Ok(R::refs(handles))
}
