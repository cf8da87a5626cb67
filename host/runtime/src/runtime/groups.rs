//! Placement groups of a node in no cluster: their records, and the one
//! reservation that holds each group's bundles here.
//!
//! A group waits in the node's scheduler queue (fairly, within its
//! tenant's quota, like an actor) for room for all of its bundles at once,
//! then holds them as one [`Reservation`]; work placed in it asks for the
//! bundles' own names (see [`crate::bundles`]). Removing the group drops the
//! reservation, fails the work still queued for it and stops its actors.
//! A group belongs to the job that created it and goes with it, unless it
//! is detached. In a cluster the cluster's port keeps groups instead; the
//! types here are what both speak.
//!
//! ```no_run
//! use fabric_runtime::{Node, NodeConfig};
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::default())?;
//! assert!(node.core().groups().is_empty());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::bundles::{
    BundlePlacement, BundleStrategy, bundle_resources, place_bundles, removed, sum,
};
use crate::error::FabricError;
use crate::ids::{ActorId, GroupId, JobId, NodeId};
use crate::placement::Candidate;
use crate::resources::ResourceSet;
use crate::scheduler::Reservation;

use super::NodeCore;
use super::actor;
use super::job::{Job, shown_namespace};

/// The most placement groups one tenant may keep at once on a lone node.
pub const MAX_GROUPS_PER_TENANT: usize = 1024;

/// The most bundles of all its groups one tenant may keep on a lone node:
/// each adds its names to the scheduler's sets.
pub const MAX_BUNDLES_PER_TENANT: usize = 4096;

/// The most `placement-group-ready` calls waiting on one group at once.
pub const MAX_READY_WAITERS: usize = 1024;

/// A placement group to create.
#[derive(Clone)]
pub struct GroupSpec {
    pub id: GroupId,
    pub job: Arc<Job>,
    /// `(tenant-scoped namespace, name)`.
    pub name: Option<(String, String)>,
    pub detached: bool,
    pub strategy: BundleStrategy,
    pub bundles: Vec<ResourceSet>,
}

/// Where a group stands (Ray's states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// Waiting for room for its bundles.
    Pending,
    /// Every bundle is reserved.
    Created,
    /// A node holding bundles died; they are being reserved again.
    Rescheduling,
    /// Removed (or its job ended): its bundles are free.
    Removed,
}

/// What a group is and where its bundles are.
#[derive(Clone, Debug)]
pub struct GroupInfo {
    pub id: GroupId,
    pub tenant: Arc<str>,
    pub job: JobId,
    pub name: Option<(String, String)>,
    pub detached: bool,
    pub strategy: BundleStrategy,
    pub bundles: Vec<ResourceSet>,
    /// The node of each bundle, while it is reserved.
    pub nodes: Vec<Option<NodeId>>,
    pub state: GroupState,
}

impl GroupInfo {
    /// A new group's record: pending, no bundle placed.
    pub fn of(spec: &GroupSpec) -> Self {
        GroupInfo {
            id: spec.id,
            tenant: spec.job.tenant.clone(),
            job: spec.job.id,
            name: spec.name.clone(),
            detached: spec.detached,
            strategy: spec.strategy,
            bundles: spec.bundles.clone(),
            nodes: vec![None; spec.bundles.len()],
            state: GroupState::Pending,
        }
    }

    /// The bundle `index` (any when `None`) that work of `demand` would
    /// run in, or why it never can.
    pub fn check_fits(&self, index: Option<u32>, demand: &ResourceSet) -> Result<(), FabricError> {
        let bundles: Vec<&ResourceSet> = match index {
            Some(i) => vec![self.bundles.get(i as usize).ok_or_else(|| {
                FabricError::InvalidArgument(format!(
                    "placement group {} has {} bundles; there is no bundle {i}",
                    self.id,
                    self.bundles.len()
                ))
            })?],
            None => self.bundles.iter().collect(),
        };
        if bundles.iter().any(|b| b.contains(demand)) {
            return Ok(());
        }
        let which = index.map_or("any bundle".to_string(), |i| format!("bundle {i}"));
        Err(FabricError::ResourcesInfeasible(format!(
            "{{{demand}}} does not fit in {which} of placement group {}: {}",
            self.id,
            bundles[0].missing(demand).join(", ")
        )))
    }
}

/// One group kept here.
struct Kept {
    info: GroupInfo,
    /// Its bundles, once reserved.
    reservation: Option<Reservation>,
    /// The task waiting for room for them.
    reserving: Option<tokio::task::AbortHandle>,
    /// The GPUs of each bundle, once reserved.
    gpu_ids: Vec<Vec<u32>>,
    state: watch::Sender<GroupState>,
}

/// The placement groups of a lone node.
#[derive(Default)]
pub struct Groups {
    kept: Mutex<HashMap<GroupId, Kept>>,
}

fn not_found(id: GroupId) -> FabricError {
    FabricError::NotFound(format!("placement group {id}"))
}

impl Groups {
    /// No group is kept here.
    pub fn is_empty(&self) -> bool {
        self.kept.lock().is_empty()
    }

    /// A group of `tenant` (another tenant's is not found, exactly as a
    /// missing one).
    pub fn info(&self, id: GroupId, tenant: &str) -> Option<GroupInfo> {
        let kept = self.kept.lock();
        kept.get(&id)
            .filter(|k| &*k.info.tenant == tenant)
            .map(|k| k.info.clone())
    }

    /// The group named `name` in the (tenant-scoped) `namespace`.
    pub fn lookup(&self, namespace: &str, name: &str) -> Result<GroupInfo, FabricError> {
        let kept = self.kept.lock();
        kept.values()
            .find(|k| {
                k.info
                    .name
                    .as_ref()
                    .is_some_and(|(ns, n)| ns == namespace && n == name)
            })
            .map(|k| k.info.clone())
            .ok_or_else(|| {
                FabricError::NotFound(format!(
                    "no placement group named `{name}` in namespace `{}`",
                    shown_namespace(namespace)
                ))
            })
    }

    /// Records a group and starts reserving its bundles here.
    pub(crate) fn create(&self, core: &Arc<NodeCore>, spec: GroupSpec) -> Result<(), FabricError> {
        let node_total = core.scheduler().total().clone();
        let me = [Candidate::new(
            core.id(),
            &node_total,
            node_total.clone(),
            true,
        )];
        // No node can join a lone node: too few nodes is never, not later.
        if let BundlePlacement::Infeasible(e) =
            place_bundles(&spec.bundles, spec.strategy, &me, &[], false)
        {
            return Err(e);
        }
        let total = sum(&spec.bundles);
        // All of a lone node's bundles are here: they must fit together
        // (and within the tenant's quota).
        core.check_feasible(&total, &spec.job.account)?;
        let mut kept = self.kept.lock();
        let tenant = &spec.job.tenant;
        let (groups, bundles) = kept
            .values()
            .filter(|k| &k.info.tenant == tenant)
            .fold((0, 0), |(g, b), k| (g + 1, b + k.info.bundles.len()));
        if groups >= MAX_GROUPS_PER_TENANT {
            return Err(FabricError::limit(
                "placement-groups",
                MAX_GROUPS_PER_TENANT as u64,
                format!("tenant `{tenant}` keeps {MAX_GROUPS_PER_TENANT} placement groups"),
            ));
        }
        if bundles + spec.bundles.len() > MAX_BUNDLES_PER_TENANT {
            return Err(FabricError::limit(
                "placement-group-bundles",
                MAX_BUNDLES_PER_TENANT as u64,
                format!(
                    "tenant `{tenant}` keeps {bundles} bundles; {} more would pass {MAX_BUNDLES_PER_TENANT}",
                    spec.bundles.len()
                ),
            ));
        }
        if let Some((ns, name)) = &spec.name
            && kept
                .values()
                .any(|k| k.info.name.as_ref() == Some(&(ns.clone(), name.clone())))
        {
            return Err(FabricError::InvalidArgument(format!(
                "a placement group named `{name}` already exists in namespace `{}`",
                shown_namespace(ns)
            )));
        }
        // Checked again under the lock: a job that ended meanwhile has
        // already removed its groups, and would never remove this one.
        if spec.job.is_finished() {
            return Err(FabricError::Cancelled);
        }
        let id = spec.id;
        core.scheduler().open_group(id);
        let reserving = core
            .runtime()
            .spawn(reserve(core.clone(), spec.clone(), total));
        kept.insert(
            id,
            Kept {
                info: GroupInfo::of(&spec),
                reservation: None,
                reserving: Some(reserving.abort_handle()),
                gpu_ids: Vec::new(),
                state: watch::Sender::new(GroupState::Pending),
            },
        );
        Ok(())
    }

    /// Waits until group `id` of `tenant` has all its bundles reserved;
    /// fails when it is (or was) removed.
    pub async fn ready(&self, id: GroupId, tenant: &str) -> Result<(), FabricError> {
        let mut state = {
            let kept = self.kept.lock();
            // (`placement-group-ready` found the group when it was called:
            // gone now, it was removed since.)
            let Some(k) = kept.get(&id).filter(|k| &*k.info.tenant == tenant) else {
                return Err(removed(id));
            };
            // Each waiter is a receiver of the group's state: bounded.
            if k.state.receiver_count() >= MAX_READY_WAITERS {
                return Err(FabricError::limit(
                    "placement-group-waiters",
                    MAX_READY_WAITERS as u64,
                    format!("{MAX_READY_WAITERS} calls already wait for placement group {id}"),
                ));
            }
            k.state.subscribe()
        };
        let settled = state
            .wait_for(|s| matches!(s, GroupState::Created | GroupState::Removed))
            .await
            .map(|s| *s);
        match settled {
            Ok(GroupState::Created) => Ok(()),
            _ => Err(removed(id)),
        }
    }

    /// Removes group `id` of `tenant`: frees its bundles, fails the work
    /// queued in them and stops its actors.
    pub(crate) fn remove(
        &self,
        core: &NodeCore,
        id: GroupId,
        tenant: &str,
    ) -> Result<(), FabricError> {
        let gone = {
            let mut kept = self.kept.lock();
            if kept.get(&id).is_none_or(|k| &*k.info.tenant != tenant) {
                return Err(not_found(id));
            }
            kept.remove(&id).expect("just found")
        };
        let _ = gone.state.send_replace(GroupState::Removed);
        if let Some(task) = &gone.reserving {
            task.abort();
        }
        drop(gone.reservation);
        release_work(core, id);
        Ok(())
    }

    /// A job ended: its groups that are not detached go.
    pub(crate) fn job_ended(&self, core: &NodeCore, job: JobId) {
        let ids: Vec<(GroupId, Arc<str>)> = self
            .kept
            .lock()
            .values()
            .filter(|k| k.info.job == job && !k.info.detached)
            .map(|k| (k.info.id, k.info.tenant.clone()))
            .collect();
        for (id, tenant) in ids {
            let _ = self.remove(core, id, &tenant);
        }
    }

    /// The GPUs given to work in bundle `index` of group `id` (all of the
    /// group's for work in any of its bundles).
    pub fn gpu_ids(&self, id: GroupId, index: Option<u32>) -> Vec<u32> {
        let kept = self.kept.lock();
        let Some(k) = kept.get(&id) else {
            return Vec::new();
        };
        match index {
            Some(i) => k.gpu_ids.get(i as usize).cloned().unwrap_or_default(),
            None => {
                let mut all: Vec<u32> = k.gpu_ids.iter().flatten().copied().collect();
                all.sort_unstable();
                all.dedup();
                all
            }
        }
    }

    fn reserved(&self, id: GroupId, node: NodeId, reservation: Reservation, gpus: &[u32]) {
        let mut kept = self.kept.lock();
        // Removed while it waited: dropping the reservation frees it.
        let Some(k) = kept.get_mut(&id) else { return };
        k.gpu_ids = split_gpus(&k.info.bundles, gpus);
        k.reservation = Some(reservation);
        k.reserving = None;
        k.info.nodes = vec![Some(node); k.info.bundles.len()];
        k.info.state = GroupState::Created;
        let _ = k.state.send_replace(GroupState::Created);
    }
}

/// Waits for room for all of a group's bundles, then holds them.
async fn reserve(core: Arc<NodeCore>, spec: GroupSpec, total: ResourceSet) {
    // Marked as the group's, so that its removal takes it out of the queue.
    let demand = crate::bundles::as_reservation(spec.id, total);
    let Ok(lease) = core.acquire(demand, &spec.job).await else {
        return;
    };
    let mut named = ResourceSet::default();
    for (i, b) in spec.bundles.iter().enumerate() {
        named.add(&bundle_resources(spec.id, i as u32, b));
    }
    let gpus = lease.gpu_ids().to_vec();
    let reservation = core.scheduler().reserve(lease, named);
    core.groups()
        .reserved(spec.id, core.id(), reservation, &gpus);
}

/// Deals the GPUs the group's lease holds to its bundles in order: a
/// bundle of `n` GPUs takes the next `n`, one with a fraction shares the
/// next one (the last, when fractions added up to fewer whole GPUs).
fn split_gpus(bundles: &[ResourceSet], gpus: &[u32]) -> Vec<Vec<u32>> {
    let mut next = 0;
    bundles
        .iter()
        .map(|b| {
            let want = b.gpu_slots();
            let ids: Vec<u32> = (0..want)
                .filter_map(|k| gpus.get(next + k).or(gpus.last()).copied())
                .collect();
            if b.gpu >= crate::resources::UNIT {
                next += want;
            }
            ids
        })
        .collect()
}

/// Fails the work queued in a group that is gone and stops its actors here.
pub fn release_work(core: &NodeCore, id: GroupId) {
    core.scheduler().close_group(id);
    let in_group: Vec<ActorId> = core
        .actors()
        .iter()
        .filter(|a| a.group == Some(id))
        .map(|a| *a.key())
        .collect();
    for actor in in_group {
        // Killed as `kill-actor` kills: later calls fail with the reason.
        // (The map's guard must be gone before the kill, which may remove it.)
        let found = core.actors().get(&actor).map(|r| r.clone());
        if let Some(rec) = found {
            let why = format!(
                "actor {}({}) stopped: its placement group {id} was removed",
                rec.class,
                actor.short()
            );
            actor::kill(core, &rec, why);
        }
    }
}
