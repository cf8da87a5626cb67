//! Bundles of placement groups this node holds for the head (issue 15,
//! work in progress): reserved all or none when the head asks, freed when
//! it says so. Work placed in a bundle asks for the bundle's own resource
//! names, which only the reservation here adds (see `bundles.rs`).

use std::collections::HashMap;

use parking_lot::Mutex;
use tonic::Status;
use wasmfabric_proto::v1 as pb;

use super::Cluster;
use crate::group_wire::group_from_pb;
use crate::ids::GroupId;
use crate::runtime::groups::GroupInfo;
use fabric_runtime::bundles::bundle_resources;
use fabric_runtime::scheduler::Reservation;

/// The bundles this node holds, by group.
#[derive(Default)]
pub(super) struct HeldBundles {
    held: Mutex<HashMap<GroupId, Held>>,
}

struct Held {
    info: GroupInfo,
    reservations: Vec<(u32, Reservation)>,
}

impl Cluster {
    /// Reserves the bundles the head asks for, all or none.
    pub(super) fn reserve_bundles(
        &self,
        req: &pb::ReserveBundlesRequest,
    ) -> Result<pb::ReserveBundlesReply, Status> {
        let info = group_from_pb(
            req.group
                .as_ref()
                .ok_or_else(|| Status::invalid_argument("a reservation without its group"))?,
        )?;
        let core = self
            .core()
            .ok_or_else(|| Status::unavailable("the node stopped"))?;
        let sched = core.scheduler();
        let mut wanted: Vec<u32> = req.indexes.clone();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.iter().any(|i| *i as usize >= info.bundles.len()) {
            return Err(Status::invalid_argument("a bundle the group does not have"));
        }
        // Asked again (an answer the head did not get): what is held stays.
        let have: Vec<u32> = self
            .bundles
            .held
            .lock()
            .get(&info.id)
            .map(|h| h.reservations.iter().map(|(i, _)| *i).collect())
            .unwrap_or_default();
        wanted.retain(|i| !have.contains(i));
        sched.open_group(info.id);
        let mut got = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            let bundle = &info.bundles[i as usize];
            let named = bundle_resources(info.id, i, bundle);
            match sched.reserve_now(bundle, named, &info.tenant) {
                Some(r) => got.push((i, r)),
                None => {
                    drop(got);
                    if !self.bundles.held.lock().contains_key(&info.id) {
                        sched.close_group(info.id);
                    }
                    return Ok(pb::ReserveBundlesReply {
                        reserved: false,
                        why: format!("no room now for bundle {i} {{{bundle}}}"),
                    });
                }
            }
        }
        let mut held = self.bundles.held.lock();
        let entry = held.entry(info.id).or_insert_with(|| Held {
            info: info.clone(),
            reservations: Vec::new(),
        });
        entry.info = info;
        entry.reservations.extend(got);
        Ok(pb::ReserveBundlesReply {
            reserved: true,
            why: String::new(),
        })
    }

    /// Frees bundles `indexes` of `group` held here (all when empty);
    /// with the last one, fails the work queued in the group here and
    /// stops its actors here.
    pub(super) fn release_bundles(&self, group: GroupId, indexes: &[u32]) {
        let (gone, last) = {
            let mut held = self.bundles.held.lock();
            match held.get_mut(&group) {
                Some(h) if !indexes.is_empty() => {
                    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut h.reservations)
                        .into_iter()
                        .partition(|(i, _)| indexes.contains(i));
                    h.reservations = kept;
                    let last = h.reservations.is_empty();
                    if last {
                        held.remove(&group);
                    }
                    (gone, last)
                }
                _ => (
                    held.remove(&group)
                        .map(|h| h.reservations)
                        .unwrap_or_default(),
                    true,
                ),
            }
        };
        drop(gone);
        if last && let Some(core) = self.core() {
            crate::runtime::groups::release_work(&core, group);
        }
    }

    /// A group of `tenant` whose bundles this node holds.
    pub(crate) fn held_group(&self, group: GroupId, tenant: &str) -> Option<GroupInfo> {
        let held = self.bundles.held.lock();
        held.get(&group)
            .filter(|h| &*h.info.tenant == tenant)
            .map(|h| h.info.clone())
    }
}

/// How the head, on this node, reaches nodes to reserve and free bundles:
/// over the peers' connections (this node's own bundles directly).
pub(super) struct HeadLink(pub(super) std::sync::Weak<Cluster>);

impl crate::head::BundleNodes for HeadLink {
    fn reserve(
        &self,
        node: crate::ids::NodeId,
        group: pb::GroupInfo,
        indexes: Vec<u32>,
    ) -> crate::head::BundleFuture<'_, bool> {
        Box::pin(async move {
            let Some(c) = self.0.upgrade() else {
                return false;
            };
            let req = pb::ReserveBundlesRequest {
                group: Some(group),
                indexes,
            };
            if node == c.id {
                return c.reserve_bundles(&req).is_ok_and(|r| r.reserved);
            }
            let Ok(peer) = c.peer(node) else {
                return false;
            };
            match peer.client().reserve_bundles(req).await {
                Ok(r) => r.into_inner().reserved,
                Err(s) => {
                    tracing::debug!(node = %node.short(), error = %s.message(), "reserving bundles failed");
                    false
                }
            }
        })
    }

    fn release(
        &self,
        node: crate::ids::NodeId,
        group: GroupId,
        indexes: Vec<u32>,
    ) -> crate::head::BundleFuture<'_, ()> {
        Box::pin(async move {
            let Some(c) = self.0.upgrade() else { return };
            if node == c.id {
                return c.release_bundles(group, &indexes);
            }
            if let Ok(peer) = c.peer(node) {
                let req = pb::ReleaseBundlesRequest {
                    group_id: crate::wire::id_bytes(group.as_u128()),
                    indexes,
                };
                if let Err(s) = peer.client().release_bundles(req).await {
                    tracing::warn!(node = %node.short(), error = %s.message(), "freeing bundles failed");
                }
            }
        })
    }
}

impl crate::head::TaskNodes for HeadLink {
    fn job_tasks(
        &self,
        node: crate::ids::NodeId,
        job: crate::ids::JobId,
        limit: u32,
    ) -> crate::head::BundleFuture<'_, Result<crate::task_events::JobTasksHere, String>> {
        Box::pin(async move {
            let c = self.0.upgrade().ok_or("this node is leaving")?;
            if node == c.id {
                let core = c.core().ok_or("this node is leaving")?;
                return Ok(core.job_tasks(job, limit as usize));
            }
            let peer = c.peer(node).map_err(|e| e.to_string())?;
            let req = pb::JobTasksRequest {
                job_id: crate::wire::id_bytes(job.as_u128()),
                limit,
            };
            let reply = peer.client().job_tasks(req).await;
            let answer = reply.map_err(|s| s.message().to_string())?.into_inner();
            let read = crate::task_wire::from_pb(answer).map_err(|s| s.message().to_string())?;
            read.answer
        })
    }
}
