//! Draining: a worker leaves the cluster without losing anyone's work.
//!
//! `fabric drain NODE` makes the head mark the node *draining*; every node
//! learns it from its next heartbeat and stops placing work there (the
//! draining node itself included: it offers no room, so what its own tasks
//! and actors submit goes elsewhere). The draining node then
//!
//! 1. moves the tasks still queued in its scheduler to nodes with room and
//!    lets those that run finish (and those it owns elsewhere come back),
//!    and lets the calls queued on its actors run, up to [`DRAIN_TIMEOUT`];
//! 2. hands every result it keeps for another node (a large value made
//!    here) to that owner, which fetches it, so no sole copy leaves with it;
//! 3. leaves the cluster (its actors then restart elsewhere from their
//!    checkpoints if they may, or die) and its `fabric start` process exits.
//!
//! Objects this node *owns* (made by its own tasks' `put`) leave with it,
//! as they would when it stops: ownership does not move.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::error::FabricError;
use crate::ids::{NodeId, ObjectId};
use crate::wire::{id_bytes, object_id, rpc_failure};

/// The longest a drain waits for running work before it leaves anyway.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

impl Cluster {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The head said this node drains: start, once.
    pub(super) fn start_drain(&self) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(me.drain());
        }
    }

    async fn drain(self: Arc<Self>) {
        let Some(core) = self.core() else { return };
        let started = Instant::now();
        tracing::info!("draining: no new work comes here; running work finishes");
        let mut last_report = Instant::now();
        loop {
            self.move_queued_tasks();
            let calls: usize = core.actors().iter().map(|a| a.busy()).sum();
            let busy = core.tasks().len() + self.tasks.arriving() + calls;
            if busy == 0 {
                break;
            }
            if started.elapsed() > DRAIN_TIMEOUT {
                tracing::warn!(
                    tasks = busy,
                    "drain timed out: leaving with work unfinished (it is retried elsewhere)"
                );
                break;
            }
            if last_report.elapsed() > Duration::from_secs(5) {
                tracing::info!(busy, "draining: waiting for tasks and actor calls");
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(core);
        let (moved, failed) = self.hand_back_kept().await;
        tracing::info!(
            moved,
            failed,
            seconds = started.elapsed().as_secs_f64(),
            "drained: leaving the cluster"
        );
        self.leave().await;
    }

    /// Gives every value kept here for another node to that node.
    async fn hand_back_kept(&self) -> (usize, usize) {
        let kept = self.lending.kept();
        let (mut moved, mut failed) = (0, 0);
        for (id, owner) in kept {
            let Some(owner) = owner else { continue };
            match self.hand_to(owner, id).await {
                Ok(()) => {
                    moved += 1;
                    self.lending.drop_kept(id);
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(object = %id, owner = %owner.short(), error = %e, "could not hand a result to its owner");
                }
            }
        }
        (moved, failed)
    }

    async fn hand_to(&self, owner: NodeId, id: ObjectId) -> Result<(), FabricError> {
        let peer = self.peer(owner)?;
        peer.client()
            .take_object(pb::TakeObjectRequest {
                object_id: id_bytes(id.as_u128()),
            })
            .await
            .map_err(|s| rpc_failure("TakeObject", &s))?;
        Ok(())
    }

    /// A draining node hands this node (the owner) a value it kept: fetch it
    /// now, while it is still there. Answers once the value is here (or the
    /// object is gone, and nobody needs it).
    pub(crate) async fn on_take_object(&self, id: &[u8]) -> Result<(), Status> {
        let id = object_id(id)?;
        let Some(r) = self.core().and_then(|c| c.objects().lookup(id)) else {
            return Ok(());
        };
        match r.get(Some(Duration::from_secs(600))).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Status::unavailable(format!(
                "could not take object {id}: {e}"
            ))),
        }
    }
}
