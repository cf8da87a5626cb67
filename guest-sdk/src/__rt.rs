//! Support code for what the `#[fabric::...]` macros generate. Not a stable API.

use std::any::Any;
use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use inventory;
pub use wit_bindgen::rt as wit_bindgen_rt;

pub use crate::actor::{ActorMethod, ActorRef, create as create_actor};
pub use crate::concurrent::CallFuture;
pub use crate::remote::{ArgList, submit, submit_each};
pub use crate::stream::{drain, submit_stream};
pub use crate::value::Encoded;

use crate::__bindings::exports::fabric::core::guest::{Output, OutputParts};
use crate::__bindings::fabric::core::host;
use crate::__bindings::fabric::core::types::{Error as WitError, FailureKind};
use crate::error::failure;
use crate::value;

/// Why a generated function could not produce a value.
pub enum CallError {
    /// The user's function returned `Err`: its `Display` text, and the
    /// error itself encoded when its type can be ([`ErrValue`]).
    App(String, Option<Vec<u8>>),
    /// The user's function returned a [`crate::Error`] (say, with `?` on a
    /// call that failed): it reaches the caller as itself, not as text.
    Fabric(crate::Error),
    /// An argument or the result could not be decoded or encoded.
    Value(String),
    /// No method of that name.
    UnknownMethod,
}

/// An encoded result: one value, or several (see the WIT `output` and
/// `output-parts`).
pub struct Returned {
    bytes: Vec<u8>,
    nested: Vec<std::rc::Rc<crate::object::RefInner>>,
    ends: Vec<u32>,
    nested_ends: Vec<u32>,
}

impl Returned {
    fn one(e: Encoded) -> Self {
        Returned {
            bytes: e.bytes,
            nested: e.nested,
            ends: Vec::new(),
            nested_ends: Vec::new(),
        }
    }

    /// Several values, each encoded on its own, as one output.
    fn several(values: Vec<Encoded>) -> Result<Self, CallError> {
        let too_large = || CallError::Value("the values are over 4 GiB together".into());
        let mut out = Returned {
            bytes: Vec::with_capacity(values.iter().map(|v| v.bytes.len()).sum()),
            nested: Vec::new(),
            ends: Vec::with_capacity(values.len()),
            nested_ends: Vec::with_capacity(values.len()),
        };
        for v in values {
            out.bytes.extend_from_slice(&v.bytes);
            out.nested.extend(v.nested);
            out.ends
                .push(u32::try_from(out.bytes.len()).map_err(|_| too_large())?);
            out.nested_ends
                .push(u32::try_from(out.nested.len()).map_err(|_| too_large())?);
        }
        Ok(out)
    }
}

/// A remote function, registered by `#[fabric::remote]`.
pub struct RemoteFn {
    pub name: &'static str,
    pub call: fn(Vec<Vec<u8>>) -> Result<Returned, CallError>,
}
inventory::collect!(RemoteFn);

/// Constructs an actor's state from encoded arguments.
pub type NewFn = fn(Vec<Vec<u8>>) -> Result<Box<dyn Any>, CallError>;
/// Runs a method (by name) on an actor's state.
pub type MethodFn = fn(&mut dyn Any, &str, Vec<Vec<u8>>) -> Result<Returned, CallError>;

/// Starts a call of an `async fn` method (by name) on an actor's shared
/// state: the future the concurrent actor's executor runs.
pub type AsyncMethodFn = fn(
    std::rc::Rc<dyn Any>,
    &str,
    Vec<Vec<u8>>,
) -> Result<crate::concurrent::CallFuture, CallError>;

/// An actor class, registered by `#[fabric::actor]` on its `impl`.
pub struct ActorClassEntry {
    pub name: &'static str,
    pub new: NewFn,
    pub call: MethodFn,
    /// Set for a class with `async fn` methods (a concurrent actor).
    pub call_async: Option<AsyncMethodFn>,
}
inventory::collect!(ActorClassEntry);

pub fn check_arity(args: &[Vec<u8>], expected: usize) -> Result<(), CallError> {
    if args.len() == expected {
        Ok(())
    } else {
        Err(CallError::Value(format!(
            "expected {expected} arguments, got {}",
            args.len()
        )))
    }
}

pub fn decode_arg<T: DeserializeOwned>(
    args: &[Vec<u8>],
    index: usize,
    name: &str,
) -> Result<T, CallError> {
    value::decode(&args[index]).map_err(|e| {
        let detail = match e {
            crate::Error::Value(m) => m,
            other => other.to_string(),
        };
        CallError::Value(format!("argument {index} (`{name}`): {detail}"))
    })
}

/// Encodes a plain return value.
pub fn ret_value<T: Serialize>(v: T) -> Result<Returned, CallError> {
    ret(&v)
}

/// Encodes a plain return value.
pub fn ret<T: Serialize>(v: &T) -> Result<Returned, CallError> {
    value::encode(v)
        .map(Returned::one)
        .map_err(|e| CallError::Value(format!("result: {e}")))
}

/// What generated code returns for a function's `Result`: its value (each
/// of its values, with `num_returns`) or its failure, the error encoded
/// when its type can be. A macro because the choice of [`EncodeErr`] is
/// made where the error's type is known.
#[macro_export]
#[doc(hidden)]
macro_rules! __ret_result {
    ($out:expr, $ret:path) => {
        match $out {
            ::std::result::Result::Ok(v) => $ret(v),
            ::std::result::Result::Err(e) => {
                #[allow(unused_imports)]
                use $crate::__rt::{EncodeErr as _, NoErrValue as _};
                let value = (&$crate::__rt::ErrValue(&e)).encode_err();
                ::std::result::Result::Err($crate::__rt::app_error(e, value))
            }
        }
    };
}

/// Encodes the values of a function declared with `num_returns`, each on
/// its own.
pub fn ret_each<T: crate::Returns>(v: T) -> Result<Returned, CallError> {
    let values = v
        .encode_each()
        .map_err(|e| CallError::Value(format!("result: {e}")))?;
    Returned::several(values)
}

/// An application error, wrapped so that generated code can ask whether
/// its type can be encoded: `(&ErrValue(&e)).encode_err()` finds
/// [`EncodeErr`] (on `ErrValue`, whose `&self` is the receiver as written)
/// when `E: Serialize`, and else [`NoErrValue`] (on `&ErrValue`, reached
/// only by the next, auto-referenced, lookup step).
pub struct ErrValue<'a, E>(pub &'a E);

/// An error type that can be encoded.
pub trait EncodeErr {
    fn encode_err(&self) -> Option<Vec<u8>>;
}

impl<E: Serialize> EncodeErr for ErrValue<'_, E> {
    fn encode_err(&self) -> Option<Vec<u8>> {
        rmp_serde::to_vec_named(self.0).ok()
    }
}

/// An error type that cannot be encoded: only its text travels.
pub trait NoErrValue {
    fn encode_err(&self) -> Option<Vec<u8>> {
        None
    }
}

impl<E> NoErrValue for &ErrValue<'_, E> {}

/// A constructor's `Self`, boxed.
pub fn boxed<T: 'static>(v: T) -> Result<Box<dyn Any>, CallError> {
    Ok(Box::new(v))
}

/// The failure of a function that returned `Err(e)` (`value`: `e` encoded,
/// when its type can be): a fabric error (also inside a `Box<dyn Error>`)
/// as itself, anything else as its text and value.
pub fn app_error<E: std::fmt::Display + 'static>(e: E, value: Option<Vec<u8>>) -> CallError {
    let any: &dyn Any = &e;
    let fabric = any
        .downcast_ref::<crate::Error>()
        .or_else(|| {
            any.downcast_ref::<Box<dyn std::error::Error + Send + Sync>>()
                .and_then(|b| b.downcast_ref::<crate::Error>())
        })
        .or_else(|| {
            any.downcast_ref::<Box<dyn std::error::Error>>()
                .and_then(|b| b.downcast_ref::<crate::Error>())
        });
    match fabric {
        Some(f) => CallError::Fabric(f.clone()),
        None => CallError::App(e.to_string(), value),
    }
}

/// What `main` may return: `()` or a `Result` whose error displays.
pub trait MainResult {
    fn into_result(self) -> Result<(), String>;
}

impl MainResult for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> MainResult for Result<(), E> {
    fn into_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Per instance: report panics to the host before the instance aborts.
fn init_instance() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "Box<dyn Any>".to_string());
            let msg = match info.location() {
                Some(l) => format!("{payload} (at {}:{}:{})", l.file(), l.line(), l.column()),
                None => payload,
            };
            host::report_panic(&msg);
        }));
    });
}

/// Flushes the guest's buffered stdout so partial lines are not lost.
fn flush_output() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

/// The `output` of a call: a lone value when nothing else goes with it.
fn to_output(r: Returned) -> Output {
    if r.nested.is_empty() && r.ends.is_empty() && r.nested_ends.is_empty() {
        return Output::Value(r.bytes);
    }
    Output::Parts(OutputParts {
        value: r.bytes,
        nested: r.nested.iter().map(|n| n.handle().clone()).collect(),
        ends: r.ends,
        nested_ends: r.nested_ends,
    })
}

fn to_wit(function: &str, e: CallError) -> WitError {
    match e {
        CallError::App(m, value) => {
            let mut e = failure(function, FailureKind::ApplicationError, m);
            if let WitError::TaskFailed(f) = &mut e {
                f.value = value;
            }
            e
        }
        CallError::Fabric(e) => e.into_wit(function),
        CallError::Value(m) => failure(function, FailureKind::BadValue, m),
        CallError::UnknownMethod => failure(
            function,
            FailureKind::UnknownFunction,
            "the actor has no such method".into(),
        ),
    }
}

fn function_names() -> String {
    let mut names: Vec<&str> = inventory::iter::<RemoteFn>().map(|f| f.name).collect();
    names.sort_unstable();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The `dispatch` export.
pub fn dispatch(function: String, args: Vec<Vec<u8>>) -> Result<Output, WitError> {
    init_instance();
    let Some(f) = inventory::iter::<RemoteFn>().find(|f| f.name == function) else {
        return Err(failure(
            &function,
            FailureKind::UnknownFunction,
            format!(
                "no remote function named `{function}` (this component has: {})",
                function_names()
            ),
        ));
    };
    let r = (f.call)(args);
    flush_output();
    r.map(to_output).map_err(|e| to_wit(&function, e))
}

/// An actor's state: owned by the instance (plain methods take `&mut`), or
/// shared by the calls in flight (a class with `async fn` methods).
enum ActorState {
    Owned(Box<dyn Any>),
    Shared(std::rc::Rc<dyn Any>),
}

thread_local! {
    /// This instance's actor: its class entry and its state.
    static ACTOR: RefCell<Option<(&'static ActorClassEntry, ActorState)>> = const { RefCell::new(None) };
}

/// The `actor-new` export.
pub fn actor_new(class: String, args: Vec<Vec<u8>>) -> Result<(), WitError> {
    init_instance();
    let what = format!("{class}.new");
    let Some(entry) = inventory::iter::<ActorClassEntry>().find(|c| c.name == class) else {
        return Err(failure(
            &what,
            FailureKind::UnknownFunction,
            format!("no actor class named `{class}`"),
        ));
    };
    let r = (entry.new)(args);
    flush_output();
    let state = r.map_err(|e| to_wit(&what, e))?;
    let state = match entry.call_async {
        Some(_) => ActorState::Shared(std::rc::Rc::from(state)),
        None => ActorState::Owned(state),
    };
    ACTOR.with(|a| *a.borrow_mut() = Some((entry, state)));
    Ok(())
}

/// A method's failure as the caller sees it.
fn method_error(entry: &ActorClassEntry, method: &str, e: CallError) -> WitError {
    let what = format!("{}.{method}", entry.name);
    match e {
        CallError::UnknownMethod => failure(
            &what,
            FailureKind::UnknownFunction,
            format!("actor `{}` has no method `{method}`", entry.name),
        ),
        e => to_wit(&what, e),
    }
}

/// The `actor-run` export: a concurrent actor's executor
/// ([`crate::concurrent`]), until the host says stop.
pub fn actor_run() -> Result<(), WitError> {
    init_instance();
    let Some((entry, state)) = ACTOR.with(|a| a.borrow_mut().take()) else {
        return Err(failure(
            "run",
            FailureKind::System,
            "this instance holds no actor".into(),
        ));
    };
    let finish = |call: u64, method: &str, outcome: Result<Returned, CallError>| {
        flush_output();
        let outcome = outcome
            .map(|r| host::Returned {
                value: r.bytes,
                nested: r.nested.iter().map(|n| n.handle().clone()).collect(),
            })
            .map_err(|e| method_error(entry, method, e));
        host::finish_call(call, outcome);
    };
    match (state, entry.call_async) {
        (ActorState::Shared(state), Some(start)) => {
            let start = |m: &str, args| start(state.clone(), m, args);
            crate::concurrent::run(crate::concurrent::Methods::Async(&start), &finish)
        }
        (ActorState::Owned(mut state), _) => {
            let mut call = |m: &str, args| (entry.call)(state.as_mut(), m, args);
            crate::concurrent::run(crate::concurrent::Methods::Sync(&mut call), &finish)
        }
        (ActorState::Shared(_), None) => unreachable!("a shared state comes with async methods"),
    }
}

/// The `actor-call` export.
pub fn actor_call(method: String, args: Vec<Vec<u8>>) -> Result<Output, WitError> {
    init_instance();
    ACTOR.with(|a| {
        let mut slot = a.borrow_mut();
        let Some((entry, ActorState::Owned(state))) = slot.as_mut() else {
            return Err(failure(
                &method,
                FailureKind::System,
                "this instance holds no actor that runs one call at a time".into(),
            ));
        };
        let r = (entry.call)(state.as_mut(), &method, args);
        flush_output();
        r.map(to_output)
            .map_err(|e| method_error(entry, &method, e))
    })
}

/// The `main` export: runs the function marked `#[fabric::main]`.
pub fn run_main<R: MainResult>(_args: Vec<String>, main: fn() -> R) -> Result<(), String> {
    init_instance();
    let mut seen = std::collections::HashSet::new();
    for f in inventory::iter::<RemoteFn>() {
        if !seen.insert(f.name) {
            return Err(format!(
                "two remote functions are named `{}`; give one `#[fabric::remote(name = \"...\")]`",
                f.name
            ));
        }
    }
    let r = main().into_result();
    flush_output();
    r
}

/// Exports the `guest` interface from the application crate; expanded by
/// `#[fabric::main]`.
#[macro_export]
#[doc(hidden)]
macro_rules! __export_guest {
    ($main:path) => {
        const _: () = {
            struct __FabricGuest;
            impl $crate::__bindings::exports::fabric::core::guest::Guest for __FabricGuest {
                fn dispatch(
                    function: ::std::string::String,
                    args: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<
                    $crate::__bindings::exports::fabric::core::guest::Output,
                    $crate::__bindings::fabric::core::types::Error,
                > {
                    $crate::__rt::dispatch(function, args)
                }
                fn actor_new(
                    class: ::std::string::String,
                    args: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<(), $crate::__bindings::fabric::core::types::Error>
                {
                    $crate::__rt::actor_new(class, args)
                }
                fn actor_call(
                    method: ::std::string::String,
                    args: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::std::result::Result<
                    $crate::__bindings::exports::fabric::core::guest::Output,
                    $crate::__bindings::fabric::core::types::Error,
                > {
                    $crate::__rt::actor_call(method, args)
                }
                fn actor_run()
                -> ::std::result::Result<(), $crate::__bindings::fabric::core::types::Error>
                {
                    $crate::__rt::actor_run()
                }
                fn main(
                    args: ::std::vec::Vec<::std::string::String>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__rt::run_main(args, $main)
                }
            }
    $crate::__bindings::__export_app!(__FabricGuest with_types_in $crate::__bindings);
        };
    };
}
