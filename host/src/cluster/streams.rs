//! Streaming generators across nodes: the items a generator running here
//! yields for a caller on another node, and the caller's acknowledgements
//! of the items it took (see `fabric_runtime::runtime::streams`).

use std::sync::Arc;

use bytes::Bytes;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use super::tasks::INLINE_TOTAL;
use crate::error::{FabricError, FailureKind};
use crate::ids::{JobId, NodeId, ObjectId};
use crate::object_store::ObjectRef;
use crate::runtime::streams::{Item, Pushed, item_id};
use crate::wire::{id_bytes, object_id};

impl Cluster {
    /// Sends item `index` of `stream` to `owner`, the caller's node: as a
    /// result is sent (a large value stays here, kept for the owner). The
    /// peer's messages keep their order, so the call's result, sent after
    /// its last item, arrives after it.
    pub(crate) async fn send_item(
        self: &Arc<Self>,
        owner: NodeId,
        job: JobId,
        stream: ObjectId,
        index: u64,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> Result<(), FabricError> {
        let id = item_id(stream, index);
        let mut inline_left = INLINE_TOTAL;
        let item = self
            .result_msg(owner, job, id, Ok((value, nested)), &mut inline_left)
            .await;
        let msg = pb::StreamItem {
            stream_id: id_bytes(stream.as_u128()),
            index,
            item: Some(item),
        };
        if self.send_to(owner, pb::peer_message::Kind::StreamItem(msg)) {
            return Ok(());
        }
        let e = format!("the caller's node {} is unreachable", owner.short());
        Err(FabricError::failure("yield-item", FailureKind::System, e))
    }

    /// Tells `node`, where a generator of `stream` runs, how many items its
    /// caller took and has.
    pub(crate) fn stream_ack(
        &self,
        node: NodeId,
        stream: ObjectId,
        taken: u64,
        have: u64,
        closed: bool,
    ) {
        let msg = pb::StreamAck {
            stream_id: id_bytes(stream.as_u128()),
            taken,
            closed,
            have,
        };
        self.send_to(node, pb::peer_message::Kind::StreamAck(msg));
    }

    /// The caller dropped `stream` before any item came: the node its call
    /// went to stops the generator.
    pub(crate) fn close_stream(&self, stream: ObjectId) {
        let sent = self
            .tasks
            .sent_to(stream)
            .or_else(|| self.actors.call_sent_to(stream));
        if let Some(node) = sent {
            self.stream_ack(node, stream, u64::MAX, u64::MAX, true);
        }
    }

    /// An item for a stream whose caller is here. Only the node the
    /// generator's call was sent to may send it, and only under the item's
    /// own id; an item nobody wants is given back.
    pub(crate) fn on_stream_item(&self, from: NodeId, m: pb::StreamItem) -> Result<(), Status> {
        let stream = object_id(&m.stream_id)?;
        let item = m
            .item
            .ok_or_else(|| Status::invalid_argument("a stream item without its value"))?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node is stopping"))?;
        let sender = self
            .tasks
            .sent_to(stream)
            .or_else(|| self.actors.call_sent_to(stream));
        let own_id = object_id(&item.result_id).ok() == Some(item_id(stream, m.index));
        let job = core.objects().lookup(stream).map(|r| r.job());
        let (Some(job), true, true) = (job, sender == Some(from), own_id) else {
            self.release_unused(&item);
            if own_id {
                // Its caller is gone: the generator stops.
                self.stream_ack(from, stream, u64::MAX, u64::MAX, true);
            }
            return Ok(());
        };
        let stored_at = match &item.outcome {
            Some(pb::task_result::Outcome::StoredAt(n)) => Some(crate::wire::node_id(n)?),
            _ => None,
        };
        let value = match (self.received_outcome(from, job, &item), stored_at) {
            (Some(Ok((v, nested))), _) => Item::Here(v, nested),
            (Some(Err(e)), _) => Item::Failed(e),
            (None, Some(at)) => Item::Elsewhere {
                at,
                size: item.size,
            },
            (None, None) => Item::Failed(FabricError::failure(
                "yield-item",
                FailureKind::System,
                format!("node {} sent an item without a value", from.short()),
            )),
        };
        let id = item_id(stream, m.index);
        let pushed = core
            .streams()
            .push(&core, stream, m.index, Some(from), value);
        if let (Pushed::Unwanted, Some(at)) = (pushed, stored_at) {
            if core.objects().lookup(id).is_some() {
                // A retried generator yielded this item again: its new
                // copy counts as one more holder of the item, freed with
                // it (and a spare when the item was lost).
                core.objects().fulfill_elsewhere(id, vec![at], item.size);
            } else {
                self.send_to(
                    at,
                    pb::peer_message::Kind::FreeObject(pb::FreeObject {
                        object_id: item.result_id,
                    }),
                );
            }
        }
        Ok(())
    }

    /// The caller of a stream whose generator runs here took items.
    pub(crate) fn on_stream_ack(&self, a: pb::StreamAck) -> Result<(), Status> {
        let stream = object_id(&a.stream_id)?;
        if let Some(core) = self.core() {
            core.streams().on_ack(stream, a.taken, a.have, a.closed);
        }
        Ok(())
    }
}
