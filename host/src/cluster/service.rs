//! The `Node` gRPC service every node serves to its peers, and the server
//! that hosts it (with `Head` too, on the head).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use wasmfabric_proto::v1 as pb;
use wasmfabric_proto::v1::head_server::HeadServer;
use wasmfabric_proto::v1::node_server::{Node as NodeService, NodeServer};

use super::{Cluster, MAX_MESSAGE};
use crate::error::NodeError;
use crate::head::Head;
use crate::head::control::ControlService;
use crate::head::service::HeadService;
use crate::ids::NodeId;
use crate::security::RequireSecret;
use crate::wire::{node_id, object_id, parse_id};
use tonic::codegen::InterceptedService;
use wasmfabric_proto::v1::control_server::ControlServer;

/// Serves, over TLS, on `listener` until `stop`: to peers, `Node` (and on
/// the head `Head`), both only to callers with the cluster secret; to
/// clients, on the head, `Control` behind its gate (see [`super::ingress`]).
pub(super) fn serve(
    cluster: Arc<Cluster>,
    head: Option<Arc<Head>>,
    listener: tokio::net::TcpListener,
    stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let security = cluster.config.security.clone();
    let limits = cluster.config.ingress.clone();
    let acceptor = super::ingress::acceptor(&security)?;
    let (peers_tx, peers_rx) = mpsc::channel(64);
    let clients = head.clone().map(|h| {
        let (tx, rx) = mpsc::channel(64);
        let timed = crate::meters::TimeRpcs(cluster.meters.clone());
        serve_clients(h, timed, &limits, rx, stop.clone());
        tx
    });
    serve_peers(cluster, head, &security, peers_rx, stop.clone());
    let routes = super::ingress::Routes {
        peers: peers_tx,
        clients,
    };
    super::ingress::accept(listener, acceptor, limits, routes, stop);
    Ok(())
}

type Connections = mpsc::Receiver<std::io::Result<super::ingress::Conn>>;

/// The peers' server: windows sized for object transfers.
fn serve_peers(
    cluster: Arc<Cluster>,
    head: Option<Arc<Head>>,
    security: &crate::security::ClusterSecurity,
    connections: Connections,
    mut stop: watch::Receiver<bool>,
) {
    let secret = RequireSecret(security.secret.as_str().into());
    let timed = crate::meters::TimeRpcs(cluster.meters.clone());
    let node = InterceptedService::new(
        NodeServer::new(Service {
            cluster,
            order: Default::default(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE),
        secret.clone(),
    );
    let head = head.map(|h| {
        InterceptedService::new(
            HeadServer::new(HeadService(h))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            secret,
        )
    });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        let result = tonic::transport::Server::builder()
            .initial_stream_window_size(super::peers::STREAM_WINDOW)
            .initial_connection_window_size(super::peers::CONNECTION_WINDOW)
            .max_frame_size(super::peers::MAX_FRAME)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
            .layer(timed)
            .add_service(node)
            .add_optional_service(head)
            .serve_with_incoming_shutdown(ReceiverStream::new(connections), shutdown)
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the node's peer server stopped");
        }
    });
}

/// The clients' server (on the head): small windows, few streams, and the
/// gate before `Control`.
fn serve_clients(
    head: Arc<Head>,
    timed: crate::meters::TimeRpcs,
    limits: &crate::config::IngressLimits,
    connections: Connections,
    mut stop: watch::Receiver<bool>,
) {
    let control = ControlServer::new(ControlService { head: head.clone() })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let builder = tonic::transport::Server::builder()
        .initial_stream_window_size(limits.client_stream_window)
        .initial_connection_window_size(limits.client_connection_window)
        .max_concurrent_streams(limits.client_streams)
        .http2_max_header_list_size(16 << 10)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.changed().await;
        };
        let result = { builder }
            .layer(crate::head::gate::GateLayer::new(head))
            .layer(timed)
            .add_service(control)
            .serve_with_incoming_shutdown(ReceiverStream::new(connections), shutdown)
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the node's client server stopped");
        }
    });
}

struct Service {
    cluster: Arc<Cluster>,
    /// One lock per sender: a reconnected stream waits for the old one's
    /// message in progress, so a sender's messages never run out of order.
    order: dashmap::DashMap<NodeId, Arc<tokio::sync::Mutex<()>>>,
}

impl Service {
    /// Handles one peer message, timing it by kind.
    async fn handle(&self, from: NodeId, msg: pb::PeerMessage) -> Result<(), Status> {
        let started = std::time::Instant::now();
        let kind = message_kind(&msg);
        let handled = self.dispatch(from, msg).await;
        let meters = &self.cluster.meters.peer_messages;
        meters.get(kind).observe(started.elapsed());
        handled
    }

    async fn dispatch(&self, from: NodeId, msg: pb::PeerMessage) -> Result<(), Status> {
        use pb::peer_message::Kind;
        let c = &self.cluster;
        match msg.kind {
            Some(Kind::Task(t)) => c.on_forward_task(from, t).await,
            Some(Kind::Result(r)) => c.on_result(from, r),
            Some(Kind::CreateActor(a)) => c.on_create_actor(from, a).await,
            Some(Kind::ActorCall(a)) => c.on_actor_call(from, a),
            Some(Kind::KillActor(k)) => {
                c.on_kill_actor(k);
                Ok(())
            }
            Some(Kind::RemoveBorrower(r)) => {
                let borrower = if r.borrower.is_empty() {
                    from
                } else {
                    node_id(&r.borrower)?
                };
                c.remove_borrower(object_id(&r.object_id)?, borrower, r.count);
                Ok(())
            }
            Some(Kind::FreeObject(f)) => {
                c.lending.drop_kept(object_id(&f.object_id)?);
                Ok(())
            }
            Some(Kind::JobFinished(j)) => c.on_job_finished(j),
            Some(Kind::Logs(l)) => c.on_logs(l),
            Some(Kind::ActorState(a)) => c.on_actor_state(from, a),
            Some(Kind::StreamItem(m)) => c.on_stream_item(from, m),
            Some(Kind::StreamAck(a)) => c.on_stream_ack(a),
            Some(Kind::CancelTask(t)) => {
                c.on_cancel_task(object_id(&t.result_id)?);
                Ok(())
            }
            None => Err(Status::invalid_argument("an empty peer message")),
        }
    }
}

/// The name a peer message's latency is counted under.
fn message_kind(msg: &pb::PeerMessage) -> &'static str {
    use pb::peer_message::Kind;
    match &msg.kind {
        Some(Kind::Task(_)) => "task",
        Some(Kind::Result(_)) => "result",
        Some(Kind::CreateActor(_)) => "create_actor",
        Some(Kind::ActorCall(_)) => "actor_call",
        Some(Kind::KillActor(_)) => "kill_actor",
        Some(Kind::RemoveBorrower(_)) => "remove_borrower",
        Some(Kind::FreeObject(_)) => "free_object",
        Some(Kind::JobFinished(_)) => "job_finished",
        Some(Kind::Logs(_)) => "logs",
        Some(Kind::ActorState(_)) => "actor_state",
        Some(Kind::StreamItem(_)) => "stream_item",
        Some(Kind::StreamAck(_)) => "stream_ack",
        Some(Kind::CancelTask(_)) => "cancel_task",
        None => "empty",
    }
}

#[tonic::async_trait]
impl NodeService for Service {
    async fn deliver(
        &self,
        request: Request<Streaming<pb::DeliverRequest>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut stream = request.into_inner();
        self.cluster.wait_registered().await;
        while let Some(batch) = stream.message().await? {
            let from = node_id(&batch.from)?;
            if !batch.from_address.is_empty() {
                self.cluster.members.learn(from, batch.from_address.clone());
            }
            let lock = self.order.entry(from).or_default().clone();
            let _in_order = lock.lock().await;
            for msg in batch.messages {
                // One bad message must not stop the messages behind it.
                if let Err(s) = self.handle(from, msg).await {
                    tracing::warn!(from = %from.short(), error = %s.message(), "a peer message failed");
                }
            }
        }
        Ok(Response::new(pb::Empty {}))
    }

    type FetchObjectStream = ReceiverStream<Result<pb::ObjectChunk, Status>>;

    async fn fetch_object(
        &self,
        request: Request<pb::FetchObjectRequest>,
    ) -> Result<Response<Self::FetchObjectStream>, Status> {
        let r = request.into_inner();
        let id = object_id(&r.object_id)?;
        let requester = node_id(&r.requester)?;
        Ok(Response::new(
            self.cluster.clone().serve_fetch(id, requester, r.machine),
        ))
    }

    type FetchModuleStream = ReceiverStream<Result<pb::ModuleChunk, Status>>;

    async fn fetch_module(
        &self,
        request: Request<pb::FetchModuleRequest>,
    ) -> Result<Response<Self::FetchModuleStream>, Status> {
        Ok(Response::new(
            self.cluster.serve_module(&request.into_inner().digest)?,
        ))
    }

    async fn take_object(
        &self,
        request: Request<pb::TakeObjectRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.cluster
            .on_take_object(&request.into_inner().object_id)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn reserve_bundles(
        &self,
        request: Request<pb::ReserveBundlesRequest>,
    ) -> Result<Response<pb::ReserveBundlesReply>, Status> {
        Ok(Response::new(
            self.cluster.reserve_bundles(&request.into_inner())?,
        ))
    }

    async fn job_tasks(
        &self,
        request: Request<pb::JobTasksRequest>,
    ) -> Result<Response<pb::NodeTasks>, Status> {
        let r = request.into_inner();
        let job = crate::wire::job_id(&r.job_id)?;
        let max = match r.limit {
            0 => usize::MAX,
            n => n as usize,
        };
        let core = self
            .cluster
            .core()
            .ok_or_else(|| Status::unavailable("this node is leaving"))?;
        let here = core.job_tasks(job, max);
        Ok(Response::new(crate::task_wire::here_to_pb(
            self.cluster.id,
            &here,
        )))
    }

    async fn lookup_router(
        &self,
        request: Request<pb::LookupRouterRequest>,
    ) -> Result<Response<pb::LookupRouterReply>, Status> {
        let reply = self.cluster.on_lookup_router(&request.into_inner());
        Ok(Response::new(reply))
    }

    async fn place_routed(
        &self,
        request: Request<pb::PlaceRoutedRequest>,
    ) -> Result<Response<pb::PlaceRoutedReply>, Status> {
        let reply = self.cluster.on_place_routed(request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn release_place(
        &self,
        request: Request<pb::ReleasePlaceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.cluster.on_release_place(request.into_inner())?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn release_bundles(
        &self,
        request: Request<pb::ReleaseBundlesRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.into_inner();
        let group = crate::ids::GroupId::from_u128(parse_id(&r.group_id)?);
        self.cluster.release_bundles(group, &r.indexes);
        Ok(Response::new(pb::Empty {}))
    }

    async fn add_borrower(
        &self,
        request: Request<pb::AddBorrowerRequest>,
    ) -> Result<Response<pb::AddBorrowerReply>, Status> {
        let r = request.into_inner();
        let id = object_id(&r.object_id)?;
        let borrower = node_id(&r.borrower)?;
        // A node the cluster declared dead could never give the borrow back.
        if borrower != self.cluster.id && self.cluster.peer_view(borrower).is_none() {
            return Ok(Response::new(pb::AddBorrowerReply { ok: false }));
        }
        let found = self.cluster.core().and_then(|c| c.objects().lookup(id));
        let ok = match found {
            Some(obj) => {
                self.cluster.add_borrower(&obj, borrower);
                true
            }
            None => false,
        };
        Ok(Response::new(pb::AddBorrowerReply { ok }))
    }
}
