//! Support code for what the `#[fabric::...]` macros generate. Not a stable API.

use std::any::Any;
use std::cell::RefCell;
use std::io::Write;
use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use inventory;
pub use wit_bindgen::rt as wit_bindgen_rt;

pub use crate::actor::{ActorMethod, create as create_actor};
pub use crate::remote::{ArgList, submit};

use crate::__bindings::exports::fabric::core::guest::Output;
use crate::__bindings::fabric::core::host;
use crate::__bindings::fabric::core::types::{Error as WitError, FailureKind};
use crate::error::failure;
use crate::value::{self, Encoded};

/// Why a generated function could not produce a value.
pub enum CallError {
    /// The user's function returned `Err`; its `Display` text.
    App(String),
    /// The user's function returned a [`crate::Error`] (say, with `?` on a
    /// call that failed): it reaches the caller as itself, not as text.
    Fabric(crate::Error),
    /// An argument or the result could not be decoded or encoded.
    Value(String),
    /// No method of that name.
    UnknownMethod,
}

/// An encoded result.
pub struct Returned(Encoded);

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

/// An actor class, registered by `#[fabric::actor]` on its `impl`.
pub struct ActorClassEntry {
    pub name: &'static str,
    pub new: NewFn,
    pub call: MethodFn,
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
pub fn ret<T: Serialize>(v: &T) -> Result<Returned, CallError> {
    value::encode(v)
        .map(Returned)
        .map_err(|e| CallError::Value(format!("result: {e}")))
}

/// Encodes a `Result` return value: `Err` is the function's failure.
pub fn ret_result<T: Serialize, E: std::fmt::Display + 'static>(
    r: Result<T, E>,
) -> Result<Returned, CallError> {
    match r {
        Ok(v) => ret(&v),
        Err(e) => Err(app_error(e)),
    }
}

/// A constructor's `Self` or `Result<Self, E>`.
pub fn ctor_result<T: 'static, E: std::fmt::Display + 'static>(
    r: Result<T, E>,
) -> Result<Box<dyn Any>, CallError> {
    match r {
        Ok(v) => Ok(Box::new(v)),
        Err(e) => Err(app_error(e)),
    }
}

/// The failure of a function that returned `Err(e)`: a fabric error (also
/// inside a `Box<dyn Error>`) as itself, anything else as its text.
fn app_error<E: std::fmt::Display + 'static>(e: E) -> CallError {
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
        None => CallError::App(e.to_string()),
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

fn to_output(r: Returned) -> Output {
    Output {
        value: r.0.bytes,
        nested: r.0.nested.iter().map(|n| n.handle().clone()).collect(),
    }
}

fn to_wit(function: &str, e: CallError) -> WitError {
    match e {
        CallError::App(m) => failure(function, FailureKind::ApplicationError, m),
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

thread_local! {
    /// This instance's actor: its class entry and its state.
    static ACTOR: RefCell<Option<(&'static ActorClassEntry, Box<dyn Any>)>> = const { RefCell::new(None) };
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
    ACTOR.with(|a| *a.borrow_mut() = Some((entry, state)));
    Ok(())
}

/// The `actor-call` export.
pub fn actor_call(method: String, args: Vec<Vec<u8>>) -> Result<Output, WitError> {
    init_instance();
    ACTOR.with(|a| {
        let mut slot = a.borrow_mut();
        let Some((entry, state)) = slot.as_mut() else {
            return Err(failure(
                &method,
                FailureKind::System,
                "this instance holds no actor".into(),
            ));
        };
        let what = format!("{}.{method}", entry.name);
        let r = (entry.call)(state.as_mut(), &method, args);
        flush_output();
        r.map(to_output).map_err(|e| match e {
            CallError::UnknownMethod => failure(
                &what,
                FailureKind::UnknownFunction,
                format!("actor `{}` has no method `{method}`", entry.name),
            ),
            e => to_wit(&what, e),
        })
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
