//! Objects across nodes: lending references, fetching values, and giving
//! borrows and copies back.
//!
//! Rule: before a node sends a reference to another node, the object's
//! owner counts the receiver as a borrower (the sender does it itself when
//! it is the owner, else asks the owner with `AddBorrower`). The receiver
//! gives the borrows back when its last local reference goes. A value moves
//! only when someone reads it (see [`super::fetch`]).

use std::sync::Weak;

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::FabricError;
use crate::ids::{JobId, NodeId, ObjectId};
use crate::object_store::{ObjectRef, Pinned, RemoteObjects};
use crate::wire::{id_bytes, node_id, object_id, rpc_failure};
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
}
