//! The wasmfabric guest SDK: write Ray-style tasks and actors in Rust,
//! compile them to a WebAssembly component, run them on a fabric.
//!
//! ```no_run
//! // Build: cargo build --target wasm32-wasip2 --release
//! // Run:   fabric run target/wasm32-wasip2/release/app.wasm
//! use fabric::prelude::*;
//!
//! #[fabric::remote]
//! fn add(x: i64, y: i64) -> i64 { x + y }
//!
//! #[fabric::actor]
//! struct Counter { value: i64 }
//!
//! #[fabric::actor]
//! impl Counter {
//!     fn new() -> Self { Counter { value: 0 } }
//!     fn increment(&mut self) -> i64 { self.value += 1; self.value }
//! }
//!
//! #[fabric::main]
//! fn main() -> fabric::Result<()> {
//!     let r = add::remote(1, 2)?;                 // ObjectRef<i64>
//!     println!("{}", fabric::get(&r)?);           // 3
//!     let counter = Counter::remote()?;           // ActorHandle<Counter>
//!     println!("{}", fabric::get(&counter.increment().remote()?)?); // 1
//!     Ok(())
//! }
//! ```
//!
//! # How it works
//! `#[fabric::remote] fn add` keeps `add` as a plain function and adds a
//! module `add` with `add::remote(..)` (submit it as a task) and
//! `add::options(..)` (submit it with other resources). Arguments are any
//! value of the parameter's type or an [`ObjectRef`] to one: the host waits
//! for a referenced object and passes its value, as Ray does. Values travel
//! as MessagePack (`rmp-serde`), so guests in other languages can read them;
//! an [`ObjectRef`] nested inside a value is MessagePack extension type 1
//! holding its 16-byte id, an [`ActorHandle`] extension type 2.
//!
//! A panic in a task or actor method reaches the caller as
//! [`Error::TaskFailed`] with kind [`FailureKind::Panic`] and the panic
//! message.
//!
//! Ray's ways of returning and passing values: `num_returns` on
//! `#[fabric::remote]` gives one reference per value (see [`Returns`]);
//! [`Refs`] passes many references as one argument, resolved by the host;
//! [`get_each`] gets objects of different types at once; an `Err` whose
//! type implements `Serialize` comes back typed ([`Error::app_error`]);
//! [`get_bytes`] reads a byte object into the caller's memory once; a
//! function or actor method that returns a [`Generator`] streams its items
//! to the caller, who takes them from an [`ObjectStream`] as they come.
//!
//! The SDK sets the guest's global allocator (cargo feature `allocator`, on
//! by default): the system allocator, except that large zeroed blocks
//! (`vec![0u8; n]`) are zeroed by the host, which drops their pages instead
//! of writing them. A guest with an allocator of its own turns the feature
//! off (`default-features = false`).

extern crate self as fabric;

mod actor;
#[cfg(all(feature = "allocator", target_arch = "wasm32"))]
mod alloc;
pub mod checkpoint;
mod cluster;
mod concurrent;
mod context;
mod error;
mod foreign;
#[cfg(feature = "nn")]
pub mod nn;
mod object;
mod options;
mod remote;
mod returns;
pub mod serve;
mod stream;
pub mod util;
mod value;

#[doc(hidden)]
pub mod __rt;

#[cfg(all(feature = "allocator", target_arch = "wasm32"))]
#[global_allocator]
static ALLOCATOR: alloc::FabricAlloc = alloc::FabricAlloc;

/// Bindings generated from `wit/fabric.wit`. Not a stable API.
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "app",
        pub_export_macro: true,
        export_macro_name: "__export_app",
        default_bindings_module: "::fabric::__bindings",
        runtime_path: "::fabric::__rt::wit_bindgen_rt",
    });
}

pub use actor::{ActorClass, ActorHandle, ActorMethod, get_actor, get_actor_in, kill};
pub use cluster::{
    NodeInfo, TenantResources, available_resources, cluster_resources, nodes, tenant_resources,
};
pub use concurrent::{block_on, get_async, ready, sleep};
pub use context::{RuntimeContext, context};
pub use error::{Error, FailureKind, Result};
pub use foreign::{AnyActor, ForeignCall, ForeignClass, ForeignMethod, actor_class, function};
pub use object::{
    GetEach, ObjectId, ObjectRef, cancel, get, get_all, get_all_timeout, get_bytes, get_bytes_into,
    get_each, get_timeout, put, put_bytes, wait,
};
pub use options::{
    ActorOptions, ActorPolicy, Options, Placement, Policy, Resources, TaskOptions, TaskPolicy,
};
pub use remote::{Arg, Refs};
pub use returns::Returns;
/// Re-exported so `ObjectRef<serde_bytes::ByteBuf>` needs no extra dependency.
pub use serde_bytes;
pub use stream::{ActorStreamMethod, Generator, ObjectStream};
pub use wasmfabric_sdk_macros::{actor, main, remote};

/// What most programs need: `use fabric::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ActorHandle, ActorOptions, Arg, Generator, ObjectRef, ObjectStream, Placement, Refs,
        TaskOptions,
    };
}
