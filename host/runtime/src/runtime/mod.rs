//! The node's runtime: instances, tasks, actors and jobs on this node.
//!
//! [`NodeCore`] (in [`core`]) is shared, behind an `Arc`, by every
//! instance's store data, so a host call reaches the object store, the
//! scheduler, the task table and the engine without locks on the way. Work
//! that involves other nodes goes through the node's [`port::ClusterPort`].
//! The public face of all this is [`crate::node::Node`].

pub mod actor;
pub(crate) mod call_record;
pub mod compile;
pub mod compile_stats;
pub mod component;
pub mod component_cache;
pub(crate) mod concurrent;
pub mod core;
pub mod cpu_share;
pub mod disk_cache;
pub mod engine;
pub mod engine_settings;
pub mod function_pack;
pub mod groups;
mod handles;
pub mod instance;
pub mod job;
pub(crate) mod limiter;
pub(crate) mod output;
pub mod port;
pub mod routers;
pub mod service;
pub mod slots;
pub mod streams;
pub mod strip;
pub mod task;
pub mod task_table;
pub mod wasi_http;
mod watch;

pub use self::core::NodeCore;
pub use self::watch::{MAX_WATCHES, UNWATCH};
