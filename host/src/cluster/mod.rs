//! Clusters: nodes that share work over gRPC.
//!
//! A cluster is one head and any number of workers, each a full node. The
//! head serves membership (registration, heartbeats, death detection), the
//! actor directory and job submission; every node serves its peers (see
//! [`service`]). What runs where is decided by the node that has the work,
//! from its own view of the cluster, refreshed by heartbeats: a task that
//! fits locally never leaves the node and costs no RPC at all.
//!
//! Objects are owned by the node that created them (see
//! [`crate::object_store`]). A node that sends a reference to another first
//! has the owner count the receiver as a borrower; the receiver gives the
//! borrow back when its last local reference goes. So an object lives while
//! any node references it, and copies die with the borrows that made them.
//!
//! ```no_run
//! use fabric_host::{Node, NodeConfig, cluster::{ClusterConfig, join}};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fabric_host::security::{ClusterSecurity, Tokens};
//! let security = ClusterSecurity::generate()?;
//! let tokens = std::sync::Arc::new(Tokens::in_memory("admin-token"));
//! let head = Node::start(NodeConfig::default())?;
//! let config = ClusterConfig::head("127.0.0.1:6380".parse()?, security.clone(), tokens);
//! let joined = join(&head, config).await?;
//! let worker = Node::start(NodeConfig::default())?;
//! let config = ClusterConfig::worker("127.0.0.1:0".parse()?, joined.address(), security);
//! join(&worker, config).await?;
//! # Ok(()) }
//! ```

mod actors;
mod bundles;
mod drain;
mod fetch;
mod groups;
mod ingress;
mod jobs;
mod lineage;
mod membership;
mod objects;
mod peers;
mod port;
mod quotas;
mod routed;
pub mod same_host;
mod service;
mod streams;
mod tasks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use wasmfabric_proto::v1::head_client::HeadClient;

use self::peers::NodeChannel;
use crate::error::NodeError;
use crate::head::{Head, HeadStore, Timing};
use crate::ids::NodeId;
use crate::runtime::NodeCore;
use crate::security::{ClusterSecurity, Tokens};

pub use crate::config::IngressLimits;
pub use crate::head::SUBMIT_JOB_PATH;
pub use membership::PeerView;

/// Largest message a node accepts (a forwarded task's inline values, a
/// component). Bigger values travel as objects, in chunks.
pub const MAX_MESSAGE: usize = 256 << 20;

/// How a node joins (or founds) a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The host name or IP peers use to reach this node (default: the listen
    /// IP, or 127.0.0.1 when listening on all interfaces).
    pub advertise_host: Option<String>,
    /// The head's address; `None` makes this node the head.
    pub head: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub heartbeat_interval: Duration,
    /// A node silent for this long is declared dead (head only).
    pub node_timeout: Duration,
    /// The cluster's TLS identity and node secret.
    pub security: ClusterSecurity,
    /// The client tokens (the head's; workers have none).
    pub tokens: Option<Arc<Tokens>>,
    /// Where the head keeps its durable state (a redb file); `None` keeps it
    /// in memory only, lost when the head stops.
    pub state_file: Option<std::path::PathBuf>,
    /// What an unauthenticated caller can make this node hold.
    pub ingress: IngressLimits,
    /// Takes large objects from nodes on this machine over a local socket
    /// (see [`same_host`]) rather than TLS.
    pub local_transfers: bool,
    /// On a head: the Serve layer's rules, so it takes deployments (set
    /// before the head serves anyone; see `head::ServeRules`).
    pub serve_rules: Option<ServeRulesPort>,
}

impl ClusterConfig {
    /// Settings for a head listening on `listen`.
    pub fn head(listen: SocketAddr, security: ClusterSecurity, tokens: Arc<Tokens>) -> Self {
        ClusterConfig {
            listen,
            security,
            tokens: Some(tokens),
            advertise_host: None,
            head: None,
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_millis(500),
            node_timeout: Duration::from_secs(3),
            state_file: None,
            ingress: IngressLimits::default(),
            local_transfers: true,
            serve_rules: None,
        }
    }

    /// Settings for a worker joining the head at `head`.
    pub fn worker(listen: SocketAddr, head: impl Into<String>, security: ClusterSecurity) -> Self {
        ClusterConfig {
            listen,
            advertise_host: None,
            head: Some(head.into()),
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_millis(500),
            node_timeout: Duration::from_secs(3),
            security,
            tokens: None,
            state_file: None,
            ingress: IngressLimits::default(),
            local_transfers: true,
            serve_rules: None,
        }
    }
}

/// A node's membership in a cluster: who it is to the others, and the
/// parts that each own one kind of cross-node bookkeeping (their maps are
/// private to their modules: each is changed only through its methods).
pub(crate) struct Cluster {
    /// This cluster state itself, for tasks that must not keep it alive.
    me: Weak<Cluster>,
    core: Weak<NodeCore>,
    id: NodeId,
    address: String,
    head: HeadClient<NodeChannel>,
    config: ClusterConfig,
    /// Who is in the cluster, as this node sees it.
    members: membership::Membership,
    /// Connections to peers.
    peers: peers::Peers,
    /// Tasks sent to other nodes and arriving from them.
    tasks: tasks::RemoteTasks,
    /// Actors across nodes: where they live, calls sent, restarts owed.
    actors: actors::RemoteActors,
    /// Objects lent to other nodes, and copies kept for them.
    lending: objects::Lending,
    /// Specs of results owned here that live on other nodes, to rebuild
    /// them if those nodes are lost.
    lineage: lineage::Lineage,
    /// Jobs whose work came here from other nodes.
    jobs: jobs::JobsHere,
    /// Placement-group bundles held here for the head.
    bundles: bundles::HeldBundles,
    /// Placement groups this node saw.
    groups: groups::GroupCache,
    /// Places this node's routers gave to calls from other nodes.
    routed: routed::RoutedPlaces,
    /// Set once the head asked this node to drain.
    draining: std::sync::atomic::AtomicBool,
    stop: watch::Sender<bool>,
    /// Set once this node has registered and knows the cluster: peer
    /// messages wait for it (their replies need the senders' addresses).
    registered: watch::Sender<bool>,
    /// Its traffic, for its metrics.
    meters: Arc<crate::meters::ClusterMeters>,
    /// Its local socket for objects to nodes on this machine, if it has one.
    local: Option<Arc<same_host::LocalChannel>>,
    /// What its ingress serves, if it runs one (sent with each heartbeat).
    serve_report: std::sync::OnceLock<ServeReport>,
}

/// Reads the deployments a node's ingress runs now (see
/// [`ClusterHandle::report_serve`]).
pub type ServeReport = Arc<dyn Fn() -> Vec<crate::head::ServeLoad> + Send + Sync>;

impl Cluster {
    /// Leaves the cluster: deregisters, then stops serving and heartbeating.
    pub(crate) async fn leave(&self) {
        let req = wasmfabric_proto::v1::DeregisterRequest {
            node_id: crate::wire::id_bytes(self.id.as_u128()),
        };
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.head.clone().deregister(req)).await;
        let _ = self.stop.send(true);
    }

    /// Waits until this node has registered with the head.
    pub(crate) async fn wait_registered(&self) {
        let mut rx = self.registered.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub(crate) fn weak(&self) -> Weak<Cluster> {
        self.me.clone()
    }

    /// A node is gone or unreachable: retry (or fail) the tasks and the
    /// actor calls sent to it.
    pub(crate) fn fail_remote_work(&self, node: NodeId) {
        self.fail_tasks_sent_to(node);
        self.fail_calls_sent_to(node);
    }

    /// What this node's ingress runs, for its heartbeat.
    pub(crate) fn serve_loads(&self) -> Vec<wasmfabric_proto::v1::ServeLoad> {
        match self.serve_report.get() {
            Some(report) => report()
                .iter()
                .map(crate::head::wire_serve_load_to_pb)
                .collect(),
            None => Vec::new(),
        }
    }

    /// The node this cluster state belongs to (alive as long as it is used).
    pub(crate) fn core(&self) -> Option<Arc<NodeCore>> {
        self.core.upgrade()
    }
}

/// The Serve layer's rules for a head, as [`ClusterConfig`] holds them.
#[derive(Clone)]
pub struct ServeRulesPort(pub Arc<dyn crate::head::ServeRules>);

impl std::fmt::Debug for ServeRulesPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServeRulesPort(..)")
    }
}

/// A call to the head failed (it is down, or refused).
#[derive(Debug, thiserror::Error)]
#[error("the head: {0}")]
pub struct HeadCallError(pub String);

/// A joined node: where it listens, and how to leave.
pub struct ClusterHandle {
    address: String,
    node_id: NodeId,
    head: Option<Arc<Head>>,
    cluster: Arc<Cluster>,
}

impl ClusterHandle {
    /// The address peers and clients reach this node at (`host:port`).
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The head, if this node founded the cluster.
    pub fn head(&self) -> Option<&Arc<Head>> {
        self.head.as_ref()
    }

    /// Leaves the cluster: tells the head, stops serving and heartbeating.
    pub async fn leave(&self) {
        self.cluster.leave().await;
    }

    /// Resolves once this node has left the cluster (it was drained, or
    /// [`ClusterHandle::leave`] was called).
    pub async fn left(&self) {
        let mut stop = self.cluster.stop.subscribe();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Sends what `report` reads with each heartbeat, for the head's
    /// dashboard (once; a later call is ignored).
    pub fn report_serve(&self, report: ServeReport) {
        let _ = self.cluster.serve_report.set(report);
    }

    /// The nodes this node knows of.
    pub fn peers(&self) -> Vec<PeerView> {
        self.cluster.members.all()
    }

    /// What this node counted of its cluster traffic.
    pub fn meters(&self) -> &Arc<crate::meters::ClusterMeters> {
        &self.cluster.meters
    }

    /// The Serve deployments the head keeps (their claims and revisions),
    /// once they differ from (`epoch`, `version`), which this node holds;
    /// `None` if they did not within `wait`.
    pub async fn serve_watch(
        &self,
        epoch: u64,
        version: u64,
        wait: Duration,
    ) -> Result<Option<crate::head::ServeSet>, HeadCallError> {
        let request = wasmfabric_proto::v1::ServeWatchRequest {
            epoch,
            version,
            wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
        };
        let reply = self
            .cluster
            .head
            .clone()
            .serve_watch(request)
            .await
            .map_err(|s| HeadCallError(s.message().to_string()))?
            .into_inner();
        if !reply.changed {
            return Ok(None);
        }
        let (deployments, unreadable) = serve_records(reply.deployments);
        Ok(Some(crate::head::ServeSet {
            epoch: reply.epoch,
            version: reply.version,
            deployments,
            reserved_hosts: reply.reserved_hosts,
            unreadable,
        }))
    }

    /// A kept deployment, whole, if it is still at `revision`.
    pub async fn serve_fetch(
        &self,
        tenant: &str,
        name: &str,
        revision: &str,
    ) -> Result<crate::head::ServeRecord, HeadCallError> {
        let request = wasmfabric_proto::v1::ServeFetchRequest {
            tenant: tenant.to_string(),
            name: name.to_string(),
            revision: revision.to_string(),
            reads_token_sha256: true,
        };
        let call = |s: tonic::Status| HeadCallError(s.message().to_string());
        let reply = self
            .cluster
            .head
            .clone()
            .serve_fetch(request)
            .await
            .map_err(call)?;
        crate::head::wire_serve_from_pb(reply.into_inner()).map_err(call)
    }
}

/// The deployments of a watch reply that this node can read, and those it
/// cannot (a record this node's rules refuse: tenant, name and why). One
/// unreadable record no longer fails the whole reply: the others, and
/// every later change, still reach the ingress.
fn serve_records(
    deployments: Vec<wasmfabric_proto::v1::ServeDeployment>,
) -> (Vec<crate::head::ServeRecord>, Vec<(String, String, String)>) {
    let mut read = Vec::with_capacity(deployments.len());
    let mut unreadable = Vec::new();
    for d in deployments {
        let (tenant, name) = (d.tenant.clone(), d.name.clone());
        match crate::head::wire_serve_from_pb(d) {
            Ok(record) => read.push(record),
            Err(e) => unreadable.push((tenant, name, e.message().to_string())),
        }
    }
    (read, unreadable)
}

/// Joins (or founds) a cluster: serves the node's gRPC services, registers
/// with the head and starts heartbeats.
pub async fn join(node: &crate::Node, config: ClusterConfig) -> Result<ClusterHandle, NodeError> {
    let core = node.core();
    if core.in_cluster() {
        return Err(NodeError::Config(
            "this node already belongs to a cluster".into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| NodeError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| NodeError::Config(format!("cannot read the listen address: {e}")))?;
    let host = config.advertise_host.clone().unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        }
    });
    let address = format!("{host}:{}", local.port());
    let head_address = config.head.clone().unwrap_or_else(|| address.clone());
    let (stop, stop_rx) = watch::channel(false);
    let cluster = Cluster::new(core, address.clone(), &head_address, config.clone(), stop)?;
    let head = start_head(node, &config)?;
    service::serve(cluster.clone(), head.clone(), listener, stop_rx.clone())?;
    if let Some(h) = &head {
        h.start_death_watch(stop_rx.clone());
        h.set_bundle_nodes(Arc::new(bundles::HeadLink(Arc::downgrade(&cluster))));
        h.set_task_nodes(Arc::new(bundles::HeadLink(Arc::downgrade(&cluster))));
    }
    core.join_cluster(cluster.clone())
        .map_err(|e| NodeError::Config(e.to_string()))?;
    core.objects()
        .set_remote(Arc::new(objects::StoreLink(Arc::downgrade(&cluster))));
    cluster.register().await?;
    cluster.registered.send_replace(true);
    cluster.clone().start_heartbeats(stop_rx);
    tracing::info!(node = %core.id().short(), %address, head = %head_address, "joined the cluster");
    Ok(ClusterHandle {
        address,
        node_id: core.id(),
        head,
        cluster,
    })
}

/// The head's state, when this node founds the cluster (restored from its
/// state file, if it has one).
fn start_head(node: &crate::Node, config: &ClusterConfig) -> Result<Option<Arc<Head>>, NodeError> {
    match (&config.head, &config.tokens) {
        (Some(_), _) => Ok(None),
        (None, Some(tokens)) => {
            let restored = match &config.state_file {
                Some(path) => Some(HeadStore::open(path)?),
                None => None,
            };
            let timing = Timing {
                heartbeat: config.heartbeat_interval,
                node_timeout: config.node_timeout,
            };
            let head = Head::new(Arc::new(node.clone()), timing, tokens.clone(), restored);
            if let Some(rules) = &config.serve_rules {
                head.set_serve_rules(rules.0.clone());
            }
            Ok(Some(head))
        }
        (None, None) => Err(NodeError::Config(
            "a head needs its client tokens (ClusterConfig::head)".into(),
        )),
    }
}

impl Cluster {
    fn new(
        core: &Arc<NodeCore>,
        address: String,
        head_address: &str,
        config: ClusterConfig,
        stop: watch::Sender<bool>,
    ) -> Result<Arc<Cluster>, NodeError> {
        let head = HeadClient::new(peers::channel(head_address, &config.security)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let meters = Arc::<crate::meters::ClusterMeters>::default();
        let local = if config.local_transfers {
            same_host::LocalChannel::start(meters.clone(), stop.subscribe())
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "no local object socket: objects to nodes on this machine go over TLS");
                })
                .ok()
        } else {
            None
        };
        Ok(Arc::new_cyclic(|me| Cluster {
            me: me.clone(),
            core: Arc::downgrade(core),
            id: core.id(),
            address,
            head,
            members: membership::Membership::new(config.node_timeout),
            config,
            peers: Default::default(),
            tasks: Default::default(),
            actors: Default::default(),
            lending: Default::default(),
            lineage: Default::default(),
            jobs: Default::default(),
            bundles: Default::default(),
            routed: Default::default(),
            groups: Default::default(),
            draining: Default::default(),
            stop,
            registered: watch::channel(false).0,
            meters,
            local,
            serve_report: std::sync::OnceLock::new(),
        }))
    }
}

#[cfg(test)]
mod serve_watch_tests {
    use wasmfabric_proto::v1 as pb;

    fn record(name: &str, token_sha256: Vec<u8>) -> pb::ServeDeployment {
        pb::ServeDeployment {
            tenant: "t".into(),
            name: name.into(),
            route: "/x".into(),
            revision: "1".into(),
            token_sha256: token_sha256.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_this_node_cannot_read_is_left_out_not_the_whole_reply() {
        let empty_token = crate::serve::token_sha256("").to_vec();
        let (records, unreadable) = super::serve_records(vec![
            record("good", vec![7; 32]),
            record("bad-digest", vec![1, 2, 3]),
            record("empty-token", empty_token),
            record("public", Vec::new()),
        ]);
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["good", "public"]);
        let names: Vec<&str> = unreadable.iter().map(|u| u.1.as_str()).collect();
        assert_eq!(names, ["bad-digest", "empty-token"]);
    }
}
