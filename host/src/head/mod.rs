//! The head: membership, death detection, the actor directory, jobs.
//!
//! The head keeps what must be agreed cluster-wide and nothing per task:
//! which nodes are alive and what they have (from heartbeats), which actors
//! exist where and under which names, and the jobs submitted to it. Each of
//! those has one owner here: the [`nodes`] table, the [`actors`] directory
//! and the [`jobs`] registry, each behind its own lock and holding the
//! head's own [`records`] (protobuf appears only in [`wire`], at the edge).
//! The gRPC services are thin adapters over [`Head`]: `Head` for peers
//! ([`service`]) and `Control` for clients ([`control`], behind its
//! [`gate`]). Drivers run through the [`Drivers`] port, so the head holds no
//! node.
//!
//! With a state file (see [`store`]) the nodes, actors and jobs survive a
//! restart of the head: a head started again on the same data directory
//! gives every worker it knew one death timeout to heartbeat (the previous
//! head's own node is dead at once: this process replaced it), keeps
//! serving the actor directory (named and detached actors on live workers
//! answer as before), and records the jobs whose drivers it was running as
//! failed.
//!
//! ```no_run
//! use fabric_host::{Node, NodeConfig, cluster::{ClusterConfig, join}};
//! use fabric_host::security::{ClusterSecurity, Tokens};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! let tokens = std::sync::Arc::new(Tokens::in_memory("admin-token"));
//! let config = ClusterConfig::head("127.0.0.1:0".parse()?, ClusterSecurity::generate()?, tokens);
//! let joined = join(&node, config).await?;
//! let head = joined.head().expect("this node founded the cluster");
//! println!("{} nodes, {:?} calls served", head.nodes().len(), head.rpc_counts());
//! # Ok(()) }
//! ```

mod actors;
pub(crate) mod control;
pub mod dashboard;
mod drivers;
mod error;
pub(crate) mod gate;
mod groups;
mod job_control;
mod jobs;
mod members;
mod nodes;
mod placing;
mod records;
pub mod rest;
mod serve_dir;
mod serve_rpc;
pub(crate) mod service;
mod store;
mod submit;
mod task_query;
mod usage;
mod wire;

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::ids::NodeId;
use crate::security::Tokens;

pub use drivers::{Drivers, Pending};
pub use error::HeadError;
pub use gate::SUBMIT_JOB_PATH;
pub use nodes::FindError;
pub use placing::{BundleFuture, BundleNodes};
pub use records::{
    ActorRecord, ActorState, JobRecord, JobStatus, LogLine, NodeLoad, NodeRecord, NodeState,
    Record, ServeLoad, TenantLoad,
};
pub use serve_dir::{
    MAX_BYTES_PER_TENANT, MAX_DEPLOYMENTS_PER_TENANT, RouteClaim, ServeError, ServeRecord,
    ServeRules, ServeSet, claims_overlap,
};
pub use store::{HeadStore, Loaded};
pub use task_query::{JobTasks, TaskNodes};
pub use usage::TenantUsage;
/// A kept deployment from the wire (for the cluster's side of the watch).
pub(crate) use wire::serve_from_pb as wire_serve_from_pb;
pub(crate) use wire::serve_load_to_pb as wire_serve_load_to_pb;

pub(crate) use actors::ActorDirectory;
pub(crate) use jobs::{JobRegistry, JobSlot};
pub(crate) use nodes::NodeTable;

/// How often and how patiently the head listens for nodes.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often nodes heartbeat.
    pub heartbeat: Duration,
    /// A node silent for this long is declared dead.
    pub node_timeout: Duration,
}

/// The head's state: one owner for each kind of cluster-wide record.
pub struct Head {
    /// This head, for work that outlives a call (placing groups).
    me: std::sync::Weak<Head>,
    drivers: Arc<dyn Drivers>,
    timing: Timing,
    nodes: NodeTable,
    actors: ActorDirectory,
    jobs: Arc<JobRegistry>,
    /// Client tokens and tenants (with their quotas).
    tokens: Arc<Tokens>,
    /// Calls served, by RPC name.
    rpcs: Mutex<BTreeMap<&'static str, u64>>,
    /// Where the state above is saved (none: in memory only).
    store: Option<Arc<HeadStore>>,
    /// Placement groups, and how the head reaches nodes to reserve them.
    groups: groups::GroupDirectory,
    bundle_nodes: std::sync::OnceLock<Arc<dyn placing::BundleNodes>>,
    /// Submissions being received or compiled, per tenant.
    submissions: gate::Submissions,
    /// Questions about jobs' tasks being asked of the nodes.
    task_queries: task_query::TaskQueries,
    /// The Serve deployments it keeps for the nodes' ingresses.
    serve: Arc<serve_dir::ServeDirectory>,
}

impl Head {
    /// A head running drivers on `drivers`, restoring what a previous run
    /// saved in `restored`.
    pub fn new(
        drivers: Arc<dyn Drivers>,
        timing: Timing,
        tokens: Arc<Tokens>,
        restored: Option<(Arc<HeadStore>, Loaded)>,
    ) -> Arc<Self> {
        let (store, loaded) = match restored {
            Some((s, l)) => (Some(s), l),
            None => (None, Loaded::default()),
        };
        let head = Arc::new_cyclic(|me| Head {
            me: me.clone(),
            drivers,
            timing,
            nodes: NodeTable::default(),
            actors: ActorDirectory::default(),
            jobs: Arc::default(),
            tokens,
            rpcs: Mutex::new(BTreeMap::new()),
            groups: groups::GroupDirectory::new(store.clone()),
            store,
            bundle_nodes: Default::default(),
            submissions: Default::default(),
            task_queries: Default::default(),
            serve: Arc::new(serve_dir::ServeDirectory::new()),
        });
        head.restore(loaded);
        head
    }

    /// Takes back the state a previous run of the head saved.
    fn restore(&self, loaded: Loaded) {
        let (n_nodes, n_actors, n_jobs) =
            (loaded.nodes.len(), loaded.actors.len(), loaded.jobs.len());
        self.restore_groups(loaded.groups);
        // What an older head saved with a route token itself is saved
        // again with its digest alone.
        let plain: Vec<Record> = loaded
            .serve
            .iter()
            .filter(|r| {
                let key = (r.tenant.clone(), r.name.clone());
                loaded.serve_plain_tokens.contains(&key)
            })
            .map(|r| Record::Serve(Box::new(r.clone())))
            .collect();
        if !plain.is_empty() {
            tracing::warn!(
                deployments = plain.len(),
                "route tokens an older head kept are saved again as their digests; \
                 the state file's freed pages may keep the old bytes: rotate those tokens"
            );
        }
        self.serve.restore(loaded.serve);
        self.save_later(plain);
        if n_nodes + n_actors + n_jobs == 0 {
            return;
        }
        let mut old_heads = Vec::new();
        for mut node in loaded.nodes {
            if node.is_head && node.state.is_up() {
                // The head that saved this state ran on this data directory
                // and this address: its process is gone (this one replaced
                // it), so it is dead now, not in a death timeout (peers
                // would send it work meanwhile, and reach this process).
                node.state = NodeState::Dead;
                old_heads.push(node.id);
            }
            node.is_head = false;
            self.nodes.restore(node);
        }
        self.save_later(self.actors.restore(loaded.actors));
        self.save_later(self.jobs.restore(loaded.jobs));
        for id in old_heads {
            self.node_gone(id, false, "the head it ran on stopped");
        }
        tracing::info!(
            nodes = n_nodes,
            actors = n_actors,
            jobs = n_jobs,
            "restored the head's state"
        );
    }

    /// Saves `records` soon (in order with every other save).
    fn save_later(&self, records: Vec<Record>) {
        if let Some(s) = &self.store {
            s.save_later(records);
        }
    }

    /// Saves `records` before the caller answers anyone.
    async fn save(&self, records: Vec<Record>) -> Result<(), HeadError> {
        match &self.store {
            Some(s) => s.save(records).await.map_err(HeadError::Unsaved),
            None => Ok(()),
        }
    }

    /// Declares nodes dead once they miss heartbeats for the timeout.
    pub(crate) fn start_death_watch(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let head = self.clone();
        let timing = self.timing;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(timing.heartbeat.min(Duration::from_millis(250)));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                for node in head.nodes.expire(timing.node_timeout) {
                    tracing::warn!(node = %node.id.short(), timeout = ?timing.node_timeout, "node missed its heartbeats: declared dead");
                    head.save_later(vec![Record::Node(node.clone())]);
                    head.actors_of_gone_node(node.id, "its node died");
                }
            }
        });
    }

    /// A node is gone (`left`: it deregistered): its record says so, and
    /// its actors restart elsewhere or die.
    fn node_gone(&self, id: NodeId, left: bool, why: &str) {
        if let Some(node) = self.nodes.mark_dead(id, left) {
            self.save_later(vec![Record::Node(node)]);
        }
        self.actors_of_gone_node(id, why);
    }

    fn actors_of_gone_node(&self, id: NodeId, why: &str) {
        let alive = self.nodes.alive();
        self.save_later(self.actors.node_gone(id, why, &alive));
        self.groups_of_gone_node(id);
    }

    pub(crate) fn count(&self, rpc: &'static str) {
        *self.rpcs.lock().entry(rpc).or_default() += 1;
    }

    /// Calls the head has served, by RPC name (shows what reaches the head).
    pub fn rpc_counts(&self) -> BTreeMap<String, u64> {
        self.rpcs
            .lock()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Every node the head knows (dead ones included).
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.nodes.all()
    }

    /// The jobs the head remembers, in the order they started.
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.jobs.all()
    }

    /// Every actor in the directory (recently dead ones included).
    pub fn actors(&self) -> Vec<ActorRecord> {
        self.actors.all()
    }

    pub(crate) fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// The node drivers run on (this head's own).
    pub(crate) fn node_id(&self) -> NodeId {
        self.drivers.node_id()
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.timing.heartbeat
    }
}
