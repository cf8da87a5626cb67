//! wasmfabric host: nodes that run untrusted WebAssembly components as
//! Ray-style tasks and actors, alone or in a cluster.
//!
//! The runtime of one node (instances, the object store, the scheduler,
//! tasks, actors, jobs) is the `wasmfabric-runtime` crate, re-exported here;
//! it knows nothing of other nodes. This crate adds what a cluster needs:
//! the [`cluster`] (membership, work and objects across nodes), the
//! [`head`] (the nodes, actors and jobs the whole cluster agrees on) and
//! [`security`] (TLS, the cluster secret, tokens). A node joins a
//! cluster with [`cluster::join`]. The `fabric` binary (`host/cli`) is the
//! command line on top.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fabric_host::{Node, NodeConfig, logs::MemorySink};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig { num_cpus: Some(2.0), ..NodeConfig::default() })?;
//! let app = node.load(&std::fs::read("examples/target/wasm32-wasip2/release/add.wasm")?).await?;
//! let logs = Arc::new(MemorySink::default());
//! node.run_job(app, vec![], logs.clone()).await.result?;
//! assert_eq!(logs.stdout(), "3\n");
//! # Ok(()) }
//! ```

pub mod cluster;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod group_wire;
pub mod head;
pub mod http2;
pub mod https;
pub mod meters;
pub mod metrics;
pub mod security;
pub mod serve;
pub mod task_view;
pub mod task_wire;
pub(crate) mod wire;

pub use wire::error_from_pb;

// What a cluster user or embedder needs of the runtime; its internals
// (buffers, directory grants, the scheduler, the bindings) stay in it.
pub use fabric_runtime::{
    AppComponent, JobOptions, JobOutcome, MemoryReport, Node, NodeConfig, NodeStats, allocator,
    config, error, ids, limits, logs, manifest, object_store, outcomes, placement, quota,
    resources, runtime, spill, task_events, tenants, wasi_nn,
};
