//! Connections to peers: a gRPC client per node, and one ordered stream of
//! messages to it.
//!
//! Every message a node sends another (forwarded tasks, actor calls,
//! results, borrow bookkeeping, logs) goes through one queue per peer, which
//! a pump drains in batches into one `Deliver` call. So the receiver sees a
//! sender's messages in the order they were sent: an actor's calls from one
//! node run in order, and a result always arrives before the sender gives
//! back the borrows it held for it.

use dashmap::DashMap;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::node_client::NodeClient;

use super::{Cluster, MAX_MESSAGE};
use crate::error::{FabricError, FailureKind, NodeError};
use crate::ids::NodeId;
use crate::resources::ResourceSet;
use crate::security::{AddSecret, ClusterSecurity};
use crate::wire::id_bytes;

/// Messages per `Deliver` batch, and bytes (a single larger message goes
/// alone, up to [`MAX_MESSAGE`]).
const BATCH: usize = 256;
const BATCH_BYTES: usize = 4 << 20;

/// HTTP/2 flow-control windows for peer connections.
pub(crate) const STREAM_WINDOW: u32 = 16 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 64 << 20;
/// Largest HTTP/2 frame (the protocol's maximum is 16 MiB - 1).
pub(crate) const MAX_FRAME: u32 = (1 << 24) - 1;

/// A channel to another node, with the cluster secret on every call.
pub(crate) type NodeChannel = InterceptedService<Channel, AddSecret>;

/// A lazy TLS channel to the node at `address` (`host:port`) that sends
/// the cluster secret with every call.
pub(crate) fn channel(address: &str, security: &ClusterSecurity) -> Result<NodeChannel, NodeError> {
    let endpoint = Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| NodeError::Config(format!("`{address}` is not a valid address: {e}")))?
        // As a peer: with the cluster's node certificate, so the other
        // node serves this connection as a peer's (see `ingress`).
        .tls_config(security.peer_tls())
        .map_err(|e| NodeError::Config(format!("bad TLS settings: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        // Objects stream in 1 MiB chunks: HTTP/2's default 64 KiB windows
        // would stall every transfer on round trips.
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        AddSecret::new(&security.secret)?,
    ))
}

/// One peer: a client for its calls, and the queue of messages to it.
pub(crate) struct Peer {
    client: NodeClient<NodeChannel>,
    outbound: mpsc::UnboundedSender<pb::PeerMessage>,
    /// Resources of the tasks sent since its free resources last came in
    /// a view, and when the first of them was sent.
    in_flight: Mutex<(ResourceSet, Option<Instant>)>,
}

impl Peer {
    /// A client for calls to the peer (clients share one connection).
    pub(crate) fn client(&self) -> NodeClient<NodeChannel> {
        self.client.clone()
    }

    pub(crate) fn send(&self, msg: pb::peer_message::Kind) -> bool {
        self.outbound
            .send(pb::PeerMessage { kind: Some(msg) })
            .is_ok()
    }

    fn in_flight(&self) -> ResourceSet {
        self.in_flight.lock().0.clone()
    }

    pub(crate) fn add_in_flight(&self, demand: &ResourceSet) {
        let mut sent = self.in_flight.lock();
        sent.0.add(demand);
        sent.1.get_or_insert_with(Instant::now);
    }
}

/// The connections to peers, made on first use. Only this module touches
/// the map.
#[derive(Default)]
pub(super) struct Peers(DashMap<NodeId, Arc<Peer>>);

impl Peers {
    /// Resources of the tasks sent to `node` since the last view update.
    pub(super) fn in_flight(&self, node: NodeId) -> ResourceSet {
        self.0.get(&node).map(|p| p.in_flight()).unwrap_or_default()
    }

    /// A view came: what was sent to a node is part of its free
    /// resources once they came in a view (`arrived`, or every node's for
    /// a whole view) or once `max_age` has passed since it was sent (the
    /// longest a change of them can take to reach a view: they did not
    /// change, so it ran or went elsewhere).
    pub(super) fn settle_in_flight(
        &self,
        whole: bool,
        arrived: &HashSet<NodeId>,
        max_age: Duration,
    ) {
        for p in self.0.iter() {
            let mut sent = p.in_flight.lock();
            if settles(whole, arrived.contains(p.key()), sent.1, max_age) {
                *sent = (ResourceSet::default(), None);
            }
        }
    }

    /// `node` died: its connection goes.
    pub(super) fn remove(&self, node: NodeId) {
        self.0.remove(&node);
    }
}

/// Whether what was sent to a node, the first of it at `since`, is part
/// of its free resources in the view just come (see
/// [`Peers::settle_in_flight`]).
fn settles(whole: bool, arrived: bool, since: Option<Instant>, max_age: Duration) -> bool {
    whole || arrived || since.is_some_and(|at| at.elapsed() >= max_age)
}

impl Cluster {
    /// The connection to a live peer, made on first use.
    pub(crate) fn peer(&self, node: NodeId) -> Result<Arc<Peer>, FabricError> {
        if let Some(p) = self.peers.0.get(&node) {
            return Ok(p.clone());
        }
        let address = self
            .peer_view(node)
            .map(|v| v.address)
            .or_else(|| self.members.learned_address(node));
        let address = address.ok_or_else(|| {
            FabricError::failure(
                "peer",
                FailureKind::System,
                format!("node {} is not a live member of the cluster", node.short()),
            )
        })?;
        let channel = channel(&address, &self.config.security)
            .map_err(|e| FabricError::failure("peer", FailureKind::System, e.to_string()))?;
        let client = NodeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        match self.peers.0.entry(node) {
            dashmap::Entry::Occupied(e) => Ok(e.get().clone()),
            dashmap::Entry::Vacant(slot) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let peer = Arc::new(Peer {
                    client: client.clone(),
                    outbound: tx,
                    in_flight: Mutex::new((ResourceSet::default(), None)),
                });
                slot.insert(peer.clone());
                tokio::spawn(pump(self.weak(), node, client, rx, self.stop.subscribe()));
                Ok(peer)
            }
        }
    }

    /// Sends a message to `node`; false when it cannot be reached.
    pub(crate) fn send_to(&self, node: NodeId, msg: pb::peer_message::Kind) -> bool {
        match self.peer(node) {
            Ok(p) => p.send(msg),
            Err(e) => {
                tracing::debug!(node = %node.short(), error = %e, "dropping a message to an unreachable node");
                false
            }
        }
    }
}

/// Drains the queue to `to` into `Deliver` calls, reconnecting after a
/// failure, until the queue or the node closes.
async fn pump(
    cluster: std::sync::Weak<Cluster>,
    to: NodeId,
    client: NodeClient<NodeChannel>,
    mut rx: mpsc::UnboundedReceiver<pb::PeerMessage>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use prost::Message as _;
    let Some((from, from_address)) = cluster
        .upgrade()
        .map(|c| (id_bytes(c.id.as_u128()), c.address.clone()))
    else {
        return;
    };
    // A message taken from the queue that did not fit the last batch.
    let mut carry: Option<pb::PeerMessage> = None;
    loop {
        let (tx, stream_rx) = mpsc::channel::<pb::DeliverRequest>(16);
        let mut call = {
            let mut client = client.clone();
            tokio::spawn(async move { client.deliver(ReceiverStream::new(stream_rx)).await })
        };
        let broken = loop {
            let first = match carry.take() {
                Some(m) => m,
                None => tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(m) => m,
                        None => return,
                    },
                    // The call ended (the peer closed it or the connection broke).
                    _ = &mut call => break true,
                    _ = stop.changed() => return,
                },
            };
            let mut bytes = first.encoded_len();
            if bytes > MAX_MESSAGE {
                tracing::error!(to = %to.short(), bytes, "dropping a message larger than the protocol allows");
                continue;
            }
            let mut messages = vec![first];
            while messages.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) if bytes + m.encoded_len() <= BATCH_BYTES => {
                        bytes += m.encoded_len();
                        messages.push(m);
                    }
                    Ok(m) => {
                        carry = Some(m);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let req = pb::DeliverRequest {
                from: from.clone(),
                messages,
                from_address: from_address.clone(),
            };
            if tx.send(req).await.is_err() {
                break true;
            }
        };
        if broken {
            tracing::debug!(to = %to.short(), "the stream to a peer broke");
            // What was in flight on it may be lost: fail over the work sent
            // to that node rather than let its callers wait forever.
            // It is suspect first, so the retries go to other nodes
            // rather than back to one that may have crashed.
            if let Some(c) = cluster.upgrade() {
                c.suspect(to);
                c.fail_remote_work(to);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node whose free resources the head holds back keeps counting
    /// what was sent to it until they come, or could have come.
    #[test]
    fn work_sent_counts_until_the_nodes_load_comes_or_could_have() {
        let max_age = Duration::from_secs(6);
        let just_now = Some(Instant::now());
        let long_ago = Instant::now().checked_sub(Duration::from_secs(7));
        assert!(!settles(false, false, just_now, max_age));
        assert!(settles(false, true, just_now, max_age));
        assert!(settles(true, false, just_now, max_age));
        assert!(settles(false, false, long_ago, max_age));
        assert!(!settles(false, false, None, max_age));
    }
}
