//! Values between nodes: fetching one into the local store, and serving a
//! fetch to another node. `FetchObject` streams a value in chunks of one
//! buffer shared with the store (never a second copy on the sender), into
//! one pooled buffer on the receiver; between nodes on one machine a large
//! value goes over a local socket instead (see [`super::same_host`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::same_host::LocalError;
use crate::error::FabricError;
use crate::ids::{JobId, NodeId, ObjectId};
use crate::object_store::{Location, ObjectRef};
use crate::wire::{error_from_pb, error_to_pb, id_bytes, node_id, rpc_failure};

/// Bytes per chunk of an object transfer.
const CHUNK: usize = 1 << 20;

impl Cluster {
    /// Fetches the value of `id` from the first of `at` that has it, into
    /// the local store; records the failure if none does.
    ///
    /// When every copy it was sent to fails: the owner rebuilds the value
    /// from its lineage if it can; a borrower whose owner redirected it to a
    /// node that is gone asks the owner again (which rebuilds it, or says it
    /// is lost once it learns the node died).
    pub(crate) async fn fetch(self: Arc<Self>, id: ObjectId, at: Vec<NodeId>) {
        let Some(core) = self.core() else { return };
        let owner = core.objects().lookup(id).and_then(|r| r.home());
        let deadline = Instant::now() + self.restart_wait();
        let mut at = at;
        let last = loop {
            let mut last = FabricError::ObjectLost(format!("object {id} is on no live node"));
            let mut redirected_and_failed = false;
            let mut tried = 0;
            while let Some(node) = (!at.is_empty()).then(|| at.remove(0)) {
                tried += 1;
                if tried > 8 {
                    break;
                }
                match self.fetch_from(id, node).await {
                    Ok(Fetched::Value(bytes, nested)) => {
                        return core.objects().fill(id, Ok(bytes), nested);
                    }
                    Ok(Fetched::Redirect(next)) => at.insert(0, next),
                    Ok(Fetched::Failed(e)) => return core.objects().fill(id, Err(e), Vec::new()),
                    Err(e) => {
                        redirected_and_failed |= Some(node) != owner;
                        last = e;
                    }
                }
            }
            match owner {
                None => match self.rebuild(id) {
                    Ok(true) => return,
                    Ok(false) => break last,
                    Err(e) => break e,
                },
                Some(o) if redirected_and_failed && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    at = vec![o];
                }
                Some(o) => {
                    break FabricError::ObjectLost(format!(
                        "object {id} is lost: its owner, node {}, cannot serve it ({last})",
                        o.short()
                    ));
                }
            }
        };
        core.objects().fill(id, Err(last), Vec::new());
    }

    /// Fetches `id` from `node`: over its local socket when it offers
    /// that, else (or when the socket fails us) in gRPC chunks.
    async fn fetch_from(&self, id: ObjectId, node: NodeId) -> Result<Fetched, FabricError> {
        let machine = self
            .local
            .as_ref()
            .map(|l| l.machine_for(node))
            .unwrap_or_default();
        let e = match self.fetch_once(id, node, machine).await? {
            Attempt::Done(fetched) => return Ok(fetched),
            Attempt::LocalFailed(e) => e,
        };
        if let (LocalError::Unreachable(_), Some(l)) = (&e, &self.local) {
            tracing::info!(node = %node.short(), error = %e, "a node's local object socket cannot be used: fetching from it over TLS for now");
            l.mark_unreachable(node);
        } else {
            tracing::debug!(node = %node.short(), object = %id, error = %e, "fetching a value over TLS instead");
        }
        match self.fetch_once(id, node, Bytes::new()).await? {
            Attempt::Done(fetched) => Ok(fetched),
            Attempt::LocalFailed(e) => Err(FabricError::ObjectLost(e.to_string())),
        }
    }

    async fn fetch_once(
        &self,
        id: ObjectId,
        node: NodeId,
        machine: Bytes,
    ) -> Result<Attempt, FabricError> {
        let peer = self.peer(node)?;
        let mut stream = peer
            .client()
            .fetch_object(pb::FetchObjectRequest {
                object_id: id_bytes(id.as_u128()),
                requester: id_bytes(self.id.as_u128()),
                machine,
            })
            .await
            .map_err(|s| {
                // Placement (of a rebuild, say) should not pick it for now.
                self.suspect(node);
                rpc_failure("FetchObject", &s)
            })?
            .into_inner();
        let lost = |m: &str| {
            FabricError::ObjectLost(format!(
                "fetching object {id} from node {}: {m}",
                node.short()
            ))
        };
        let first = stream
            .message()
            .await
            .map_err(|s| lost(s.message()))?
            .ok_or_else(|| lost("empty stream"))?;
        let (size, nested) = match first.kind {
            Some(pb::object_chunk::Kind::Header(h)) => (h.size as usize, h.nested),
            Some(pb::object_chunk::Kind::Redirect(to)) => {
                return Ok(Attempt::Done(Fetched::Redirect(
                    node_id(&to).map_err(|s| lost(s.message()))?,
                )));
            }
            Some(pb::object_chunk::Kind::Error(e)) => {
                return Ok(Attempt::Done(Fetched::Failed(error_from_pb(&e))));
            }
            _ => return Err(lost("no header")),
        };
        let core = self.core().ok_or_else(|| lost("the node is stopping"))?;
        // The references inside were lent to us: take them now, so they are
        // given back even if the transfer fails.
        let job = core
            .objects()
            .lookup(id)
            .map(|r| r.job())
            .unwrap_or(JobId::from_u128(0));
        let nested = self
            .receive_refs(&nested, job)
            .map_err(|s| lost(s.message()))?;
        if size as u64 > core.objects().capacity_bytes() {
            return Err(lost(&format!(
                "its size ({size} bytes) is beyond this node's object store"
            )));
        }
        let buf = core.objects().buffer(size);
        let read = read_value(&mut stream, buf, size, &lost).await?;
        Ok(match read {
            Read::Chunks(buf) => {
                self.meters.received(size);
                Attempt::Done(Fetched::Value(core.objects().seal(buf), nested))
            }
            Read::Failed(e) => Attempt::Done(Fetched::Failed(e)),
            Read::Local(local, buf) => match super::same_host::receive(local, size, buf).await {
                Ok(buf) => {
                    self.meters.received_local(size);
                    Attempt::Done(Fetched::Value(core.objects().seal(buf), nested))
                }
                // The references lent with it go back as `nested` drops; a
                // fetch again is lent them anew.
                Err(e) => Attempt::LocalFailed(e),
            },
        })
    }

    /// Serves `FetchObject`: the value in chunks, a redirect to where it is,
    /// or an error.
    pub(crate) fn serve_fetch(
        self: Arc<Self>,
        id: ObjectId,
        requester: NodeId,
        machine: Bytes,
    ) -> ReceiverStream<Result<pb::ObjectChunk, Status>> {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let chunk = |kind| Ok(pb::ObjectChunk { kind: Some(kind) });
            let found = self.core().and_then(|c| c.objects().lookup(id));
            let Some(r) = found else {
                let e = FabricError::ObjectLost(format!(
                    "object {id} is not on node {}",
                    self.id.short()
                ));
                let _ = tx
                    .send(chunk(pb::object_chunk::Kind::Error(error_to_pb(&e))))
                    .await;
                return;
            };
            // The owner serves a value still being computed once it is done
            // (or rebuilt).
            let location = loop {
                r.settled().await;
                match r.location() {
                    Location::Elsewhere(at, _)
                        if !at.iter().any(|n| *n == self.id || self.is_live(*n)) =>
                    {
                        match self.rebuild(id) {
                            Ok(true) => continue,
                            Ok(false) => {
                                break Location::Ready(Err(FabricError::ObjectLost(format!(
                                    "object {id} was lost with node {} and cannot be rebuilt (made by put, or its lineage was not kept)",
                                    at.first().map(|n| n.short()).unwrap_or_default()
                                ))));
                            }
                            Err(e) => break Location::Ready(Err(e)),
                        }
                    }
                    other => break other,
                }
            };
            match location {
                Location::Ready(Ok(bytes)) => {
                    self.send_value(&tx, bytes, &r.nested(), requester, &machine)
                        .await;
                }
                Location::Ready(Err(e)) => {
                    let _ = tx
                        .send(chunk(pb::object_chunk::Kind::Error(error_to_pb(&e))))
                        .await;
                }
                Location::Elsewhere(at, _) => {
                    let next = at.into_iter().find(|n| *n != requester && *n != self.id);
                    let kind = match next {
                        Some(n) => pb::object_chunk::Kind::Redirect(id_bytes(n.as_u128())),
                        None => pb::object_chunk::Kind::Error(error_to_pb(
                            &FabricError::ObjectLost(format!("object {id} has no copy left")),
                        )),
                    };
                    let _ = tx.send(chunk(kind)).await;
                }
                Location::Pending => unreachable!("settled"),
            }
            drop(r);
        });
        ReceiverStream::new(rx)
    }
}

impl Cluster {
    /// Sends a value: its header (with its nested references, lent to the
    /// requester), then its bytes in chunks, or an offer of them on the
    /// local socket to a requester on this machine (which counts them as
    /// sent).
    async fn send_value(
        &self,
        tx: &mpsc::Sender<Result<pb::ObjectChunk, Status>>,
        bytes: Bytes,
        nested: &[ObjectRef],
        requester: NodeId,
        machine: &[u8],
    ) {
        let chunk = |kind| Ok(pb::ObjectChunk { kind: Some(kind) });
        let nested = match self.lend_all(nested, requester).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx
                    .send(chunk(pb::object_chunk::Kind::Error(error_to_pb(&e))))
                    .await;
                return;
            }
        };
        let header = pb::object_chunk::Header {
            size: bytes.len() as u64,
            nested,
        };
        if tx
            .send(chunk(pb::object_chunk::Kind::Header(header)))
            .await
            .is_err()
        {
            return;
        }
        match self.local.as_ref().and_then(|l| l.offer(&bytes, machine)) {
            Some(local) => {
                let sent = tx.send(chunk(pb::object_chunk::Kind::Local(local.clone())));
                if sent.await.is_err()
                    && let Some(l) = &self.local
                {
                    l.withdraw(&local);
                }
            }
            None => send_chunks(tx, bytes, &self.meters).await,
        }
    }
}

/// How a value's bytes came after its header.
enum Read {
    /// In chunks, into the buffer.
    Chunks(Vec<u8>),
    /// Offered on the holder's local socket (the buffer still empty).
    Local(pb::object_chunk::Local, Vec<u8>),
    Failed(FabricError),
}

/// Reads what follows a value's header on `stream` into `buf` (empty, with
/// room for `size` bytes).
async fn read_value(
    stream: &mut tonic::Streaming<pb::ObjectChunk>,
    mut buf: Vec<u8>,
    size: usize,
    lost: &impl Fn(&str) -> FabricError,
) -> Result<Read, FabricError> {
    while let Some(chunk) = stream.message().await.map_err(|s| lost(s.message()))? {
        match chunk.kind {
            Some(pb::object_chunk::Kind::Local(local)) if buf.is_empty() => {
                return Ok(Read::Local(local, buf));
            }
            Some(pb::object_chunk::Kind::Data(d)) if buf.len() + d.len() <= size => {
                buf.extend_from_slice(&d)
            }
            Some(pb::object_chunk::Kind::Error(e)) => return Ok(Read::Failed(error_from_pb(&e))),
            _ => return Err(lost("unexpected chunk")),
        }
    }
    if buf.len() != size {
        return Err(lost(&format!("got {} of {size} bytes", buf.len())));
    }
    Ok(Read::Chunks(buf))
}

/// Streams `bytes` as slices of the one buffer (no copies).
/// Sends `bytes` in chunks, counting them as sent once all went (not when
/// the requester went away first).
async fn send_chunks(
    tx: &mpsc::Sender<Result<pb::ObjectChunk, Status>>,
    bytes: Bytes,
    meters: &crate::meters::ClusterMeters,
) {
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + CHUNK).min(bytes.len());
        let data = pb::object_chunk::Kind::Data(bytes.slice(offset..end));
        if tx
            .send(Ok(pb::ObjectChunk { kind: Some(data) }))
            .await
            .is_err()
        {
            return;
        }
        offset = end;
    }
    meters.sent(bytes.len());
}

enum Fetched {
    Value(Bytes, Vec<ObjectRef>),
    Redirect(NodeId),
    Failed(FabricError),
}

/// One try at fetching a value from a node.
enum Attempt {
    Done(Fetched),
    /// The holder offered its local socket, and taking the value from it
    /// failed: try again in chunks.
    LocalFailed(LocalError),
}
