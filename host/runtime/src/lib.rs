//! The wasmfabric runtime: a node that runs untrusted WebAssembly components
//! as Ray-style tasks and actors, alone or as part of a cluster.
//!
//! Each task invocation runs in its own wasmtime store, each actor in one
//! long-lived store; values move between them through a node-local,
//! reference-counted object store; a resource scheduler admits work by its
//! declared CPUs, GPUs, memory and custom resources. This crate knows
//! nothing of other nodes: whatever involves them goes through the node's
//! [`runtime::port::ClusterPort`], which the cluster crate
//! (`wasmfabric-host`) plugs in when the node joins a cluster.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fabric_runtime::{Node, NodeConfig, logs::MemorySink};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig { num_cpus: Some(2.0), ..NodeConfig::default() })?;
//! let app = node.load(&std::fs::read("examples/target/wasm32-wasip2/release/add.wasm")?).await?;
//! let logs = Arc::new(MemorySink::default());
//! node.run_job(app, vec![], logs.clone()).await.result?;
//! assert_eq!(logs.stdout(), "3\n");
//! # Ok(()) }
//! ```

pub mod allocator;
pub mod buffers;
pub mod bundles;
pub mod config;
pub mod dir_grants;
pub mod error;
mod host_api;
pub mod ids;
pub mod limits;
pub mod logs;
pub mod manifest;
pub mod node;
pub mod object_store;
pub mod outcomes;
pub mod placement;
pub mod quota;
pub mod resources;
pub mod runtime;
pub mod scheduler;
pub mod spill;
pub mod task_events;
pub mod tenants;
pub mod wasi_nn;

pub use config::NodeConfig;
pub use node::{JobOptions, JobOutcome, MemoryReport, Node, NodeStats};
pub use runtime::component::AppComponent;

/// Types generated from `wit/fabric.wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "app",
        with: { "fabric:core/host.object-ref": crate::object_store::ObjectRef },
    });
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
