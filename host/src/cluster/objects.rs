//! Objects across nodes: lending references, fetching values, and giving
//! borrows and copies back.
//!
//! Rule: before a node sends a reference to another node, the object's
//! owner counts the receiver as a borrower (the sender does it itself when
//! it is the owner, else asks the owner with `AddBorrower`). The receiver
//! gives the borrows back when its last local reference goes. A value moves
//! only when someone reads it: `FetchObject` streams it in chunks of one
//! buffer shared with the store (never a second copy on the sender), into
//! one pooled buffer on the receiver; between nodes on one machine a large
//! value goes over a local socket instead (see [`super::same_host`]).

use std::sync::{Arc, Weak};
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
use crate::object_store::{Location, ObjectRef, Pinned, RemoteObjects};
use crate::wire::{error_from_pb, error_to_pb, id_bytes, node_id, object_id, rpc_failure};
use dashmap::DashMap;

/// References being lent to one node for one message: if the message is
/// not sent (an error part way), dropping the loan takes the borrows back.
pub(crate) struct Loan<'a> {
    cluster: &'a Cluster,
    to: NodeId,
    lent: Vec<pb::ObjectRef>,
    committed: bool,
}

impl Loan<'_> {
    pub(crate) async fn lend(&mut self, r: &ObjectRef) -> Result<pb::ObjectRef, FabricError> {
        let msg = self.cluster.lend(r, self.to).await?;
        self.lent.push(msg.clone());
        Ok(msg)
    }

    /// The message goes out: the borrows stand.
    pub(crate) fn commit(mut self) -> Vec<pb::ObjectRef> {
        self.committed = true;
        std::mem::take(&mut self.lent)
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if !self.committed {
            for r in &self.lent {
                self.cluster.unlend(r, self.to);
            }
        }
    }
}

/// Bytes per chunk of an object transfer.
pub(crate) const CHUNK: usize = 1 << 20;

/// Objects this node lends to others and copies it keeps for them. Only
/// this module touches the maps.
#[derive(Default)]
pub(super) struct Lending {
    /// Objects owned here that other nodes borrow: (object, node) to the
    /// reference held for them and how many borrows they hold.
    borrowers: DashMap<(ObjectId, NodeId), (ObjectRef, u32)>,
    /// Copies kept here for their owners (large results of work run here).
    kept: DashMap<ObjectId, Pinned>,
}

impl Lending {
    /// Keeps `copy` (of `id`) here for its owner until it is freed.
    pub(super) fn keep(&self, id: ObjectId, copy: Pinned) {
        self.kept.insert(id, copy);
    }

    /// The copy of `id` kept here is no longer needed.
    pub(super) fn drop_kept(&self, id: ObjectId) {
        self.kept.remove(&id);
    }

    /// The copies kept here, with their owners.
    pub(super) fn kept(&self) -> Vec<(ObjectId, Option<NodeId>)> {
        self.kept
            .iter()
            .map(|k| (*k.key(), k.value().home()))
            .collect()
    }

    /// `node` died: its borrows end, and copies kept for it serve no one.
    pub(super) fn forget_node(&self, node: NodeId) {
        self.borrowers.retain(|(_, n), _| *n != node);
        self.kept.retain(|_, pinned| pinned.home() != Some(node));
    }
}

/// The object store's way back to the cluster.
pub(crate) struct StoreLink(pub Weak<Cluster>);

impl RemoteObjects for StoreLink {
    fn fetch(&self, id: ObjectId, at: Vec<NodeId>) {
        if let Some(c) = self.0.upgrade() {
            tokio::spawn(async move { c.fetch(id, at).await });
        }
    }

    fn released_borrow(&self, id: ObjectId, home: NodeId, registrations: u32) {
        if let Some(c) = self.0.upgrade() {
            c.send_to(
                home,
                pb::peer_message::Kind::RemoveBorrower(pb::RemoveBorrower {
                    object_id: id_bytes(id.as_u128()),
                    count: registrations,
                    borrower: Default::default(),
                }),
            );
        }
    }

    fn freed_copies(&self, id: ObjectId, holders: Vec<NodeId>) {
        if let Some(c) = self.0.upgrade() {
            c.lineage.forget(id);
            for node in holders {
                if node == c.id {
                    c.lending.drop_kept(id);
                } else {
                    c.send_to(
                        node,
                        pb::peer_message::Kind::FreeObject(pb::FreeObject {
                            object_id: id_bytes(id.as_u128()),
                        }),
                    );
                }
            }
        }
    }
}

impl Cluster {
    /// Counts `node` as borrowing `r` (owned here) once more.
    pub(crate) fn add_borrower(&self, r: &ObjectRef, node: NodeId) {
        self.lending
            .borrowers
            .entry((r.id(), node))
            .and_modify(|(_, n)| *n += 1)
            .or_insert_with(|| (r.clone(), 1));
    }

    /// `node` gave back `count` borrows of `id`.
    pub(crate) fn remove_borrower(&self, id: ObjectId, node: NodeId, count: u32) {
        self.lending
            .borrowers
            .remove_if_mut(&(id, node), |_, (_, n)| {
                *n = n.saturating_sub(count);
                *n == 0
            });
    }

    /// Makes `r` safe to send to `to`: the owner counts `to` as a borrower.
    pub(crate) async fn lend(
        &self,
        r: &ObjectRef,
        to: NodeId,
    ) -> Result<pb::ObjectRef, FabricError> {
        let owner = r.home().unwrap_or(self.id);
        if owner == self.id {
            self.add_borrower(r, to);
        } else {
            let peer = self.peer(owner)?;
            let ok = peer
                .client()
                .add_borrower(pb::AddBorrowerRequest {
                    object_id: id_bytes(r.id().as_u128()),
                    borrower: id_bytes(to.as_u128()),
                })
                .await
                .map_err(|s| rpc_failure("AddBorrower", &s))?
                .into_inner()
                .ok;
            if !ok {
                return Err(FabricError::ObjectLost(format!(
                    "object {} is gone from its owner",
                    r.id()
                )));
            }
        }
        Ok(pb::ObjectRef {
            id: id_bytes(r.id().as_u128()),
            owner: id_bytes(owner.as_u128()),
        })
    }

    /// Lends every reference in `refs` to `to`, all or none.
    pub(crate) async fn lend_all(
        &self,
        refs: &[ObjectRef],
        to: NodeId,
    ) -> Result<Vec<pb::ObjectRef>, FabricError> {
        let mut loan = self.loan(to);
        for r in refs {
            loan.lend(r).await?;
        }
        Ok(loan.commit())
    }

    /// Starts lending references to `to`; what is not committed is undone.
    pub(crate) fn loan(&self, to: NodeId) -> Loan<'_> {
        Loan {
            cluster: self,
            to,
            lent: Vec::new(),
            committed: false,
        }
    }

    /// Takes back one borrow counted for `to` (it never got the reference).
    fn unlend(&self, r: &pb::ObjectRef, to: NodeId) {
        let (Ok(id), Ok(owner)) = (object_id(&r.id), node_id(&r.owner)) else {
            return;
        };
        if owner == self.id {
            self.remove_borrower(id, to, 1);
        } else {
            self.send_to(
                owner,
                pb::peer_message::Kind::RemoveBorrower(pb::RemoveBorrower {
                    object_id: r.id.clone(),
                    count: 1,
                    borrower: id_bytes(to.as_u128()),
                }),
            );
        }
    }

    /// A local reference for a reference that arrived (already lent to us).
    pub(crate) fn receive_ref(&self, r: &pb::ObjectRef, job: JobId) -> Result<ObjectRef, Status> {
        let id = object_id(&r.id)?;
        let owner = node_id(&r.owner)?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        if owner == self.id {
            // Our own object came back: hold it here, and drop the borrow
            // the sender registered for us.
            let local = core.objects().lookup(id);
            self.remove_borrower(id, self.id, 1);
            return local.ok_or_else(|| Status::not_found(format!("object {id} is gone")));
        }
        Ok(core.objects().borrow(id, owner, job))
    }

    /// Takes every reference that arrived, even past a bad one, so that all
    /// the borrows lent with them are given back if the message fails.
    pub(crate) fn receive_refs(
        &self,
        refs: &[pb::ObjectRef],
        job: JobId,
    ) -> Result<Vec<ObjectRef>, Status> {
        let mut out = Vec::with_capacity(refs.len());
        let mut failed = None;
        for r in refs {
            match self.receive_ref(r, job) {
                Ok(x) => out.push(x),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The arguments of a forwarded task or call, with [`Cluster::receive_refs`]'s guarantee.
    pub(crate) fn receive_args(
        &self,
        args: &[pb::Arg],
        job: JobId,
    ) -> Result<Vec<crate::runtime::task::TaskArg>, Status> {
        use crate::runtime::task::TaskArg;
        let mut out = Vec::with_capacity(args.len());
        let mut failed = None;
        for a in args {
            let arg = match &a.kind {
                Some(pb::arg::Kind::Value(b)) => Ok(TaskArg::Value(b.clone())),
                Some(pb::arg::Kind::Object(r)) => self.receive_ref(r, job).map(TaskArg::Object),
                Some(pb::arg::Kind::Objects(o)) => {
                    if o.refs.len() > crate::runtime::task::MAX_OBJECTS_PER_ARG {
                        // Still taken, so that dropping them gives the loans back.
                        drop(self.receive_refs(&o.refs, job));
                        Err(Status::invalid_argument("an argument of too many objects"))
                    } else {
                        self.receive_refs(&o.refs, job).map(TaskArg::Objects)
                    }
                }
                None => Err(Status::invalid_argument("an empty argument")),
            };
            match arg {
                Ok(x) => out.push(x),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Prepares arguments for `to`: small values inline; large ones become
    /// objects here (fetched in chunks); objects are lent. All or none.
    pub(crate) async fn send_args(
        &self,
        args: &[crate::runtime::task::TaskArg],
        nested: &[ObjectRef],
        job: JobId,
        to: NodeId,
    ) -> Result<(Vec<pb::Arg>, Vec<pb::ObjectRef>), FabricError> {
        use crate::runtime::task::TaskArg;
        let core = self.core().ok_or(FabricError::Cancelled)?;
        let mut loan = self.loan(to);
        let mut out = Vec::with_capacity(args.len());
        let mut inline = 0usize;
        for a in args {
            let kind = match a {
                TaskArg::Value(b)
                    if b.len() <= super::tasks::INLINE_MAX
                        && inline + b.len() <= super::tasks::INLINE_TOTAL =>
                {
                    inline += b.len();
                    pb::arg::Kind::Value(b.clone())
                }
                TaskArg::Value(b) => {
                    let r = core.objects().put(job, b.clone(), Vec::new())?;
                    pb::arg::Kind::Object(loan.lend(&r).await?)
                }
                TaskArg::Object(r) => pb::arg::Kind::Object(loan.lend(r).await?),
                TaskArg::Objects(refs) => {
                    let mut lent = Vec::with_capacity(refs.len());
                    for r in refs {
                        lent.push(loan.lend(r).await?);
                    }
                    pb::arg::Kind::Objects(pb::ObjectRefs { refs: lent })
                }
            };
            out.push(pb::Arg { kind: Some(kind) });
        }
        let mut nested_msgs = Vec::with_capacity(nested.len());
        for r in nested {
            nested_msgs.push(loan.lend(r).await?);
        }
        loan.commit();
        Ok((out, nested_msgs))
    }

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
