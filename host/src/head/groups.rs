//! The head's placement groups (issue 15): their records, names and
//! states, and where their unplaced bundles go (`placing.rs` asks the
//! nodes). Not yet kept in the head's store: a restarted head forgets them.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::FabricError;
use crate::ids::{GroupId, NodeId};
use crate::placement::Candidate;
use crate::runtime::groups::{
    GroupInfo, GroupState, MAX_BUNDLES_PER_TENANT, MAX_GROUPS_PER_TENANT,
};
use fabric_runtime::bundles::{BundlePlacement, place_bundles};

use super::records::NodeRecord;

/// One group and who waits on its state.
struct Entry {
    info: GroupInfo,
    state: watch::Sender<GroupState>,
    /// A placement loop runs for it (one at a time: two could reserve one
    /// bundle twice).
    placing: bool,
}

/// Every placement group of the cluster. Its records are saved while its
/// lock is held, so the store sees them in the order they changed.
#[derive(Default)]
pub(crate) struct GroupDirectory {
    groups: Mutex<HashMap<GroupId, Entry>>,
    store: Option<std::sync::Arc<super::HeadStore>>,
}

/// Which bundles to reserve on which node, to place a group now.
pub(crate) type Plan = Vec<(NodeId, Vec<u32>)>;

impl GroupDirectory {
    /// A directory saving to `store`.
    pub(crate) fn new(store: Option<std::sync::Arc<super::HeadStore>>) -> Self {
        GroupDirectory {
            groups: Mutex::default(),
            store,
        }
    }

    fn save(&self, record: super::Record) {
        if let Some(s) = &self.store {
            s.save_later(vec![record]);
        }
    }

    /// Records a new group (pending, nothing placed), unless its id or name
    /// is taken or no arrangement of the nodes could ever hold it.
    pub(crate) fn create(
        &self,
        mut info: GroupInfo,
        nodes: &[NodeRecord],
    ) -> Result<GroupInfo, FabricError> {
        info.state = GroupState::Pending;
        info.nodes = vec![None; info.bundles.len()];
        if let BundlePlacement::Infeasible(e) = plan_on(&info, nodes) {
            return Err(e);
        }
        let mut groups = self.groups.lock();
        if groups.contains_key(&info.id) {
            return Err(FabricError::InvalidArgument(format!(
                "placement group {} exists",
                info.id
            )));
        }
        let (count, bundles) = groups
            .values()
            .filter(|e| e.info.tenant == info.tenant)
            .fold((0, 0), |(g, b), e| (g + 1, b + e.info.bundles.len()));
        if count >= MAX_GROUPS_PER_TENANT {
            return Err(FabricError::limit(
                "placement-groups",
                MAX_GROUPS_PER_TENANT as u64,
                format!("tenant `{}` keeps {count} placement groups", info.tenant),
            ));
        }
        if bundles + info.bundles.len() > MAX_BUNDLES_PER_TENANT {
            return Err(FabricError::limit(
                "placement-group-bundles",
                MAX_BUNDLES_PER_TENANT as u64,
                format!("tenant `{}` keeps {bundles} bundles", info.tenant),
            ));
        }
        if let Some((ns, name)) = &info.name
            && groups
                .values()
                .any(|e| e.info.name.as_ref() == Some(&(ns.clone(), name.clone())))
        {
            return Err(FabricError::InvalidArgument(format!(
                "a placement group named `{name}` already exists in namespace `{}`",
                crate::runtime::job::shown_namespace(ns)
            )));
        }
        let state = watch::Sender::new(info.state);
        self.save(super::Record::Group(info.clone()));
        groups.insert(
            info.id,
            Entry {
                info: info.clone(),
                state,
                placing: false,
            },
        );
        Ok(info)
    }

    /// Marks a placement loop for `id` as running; false when one runs.
    pub(crate) fn start_placing(&self, id: GroupId) -> bool {
        let mut groups = self.groups.lock();
        match groups.get_mut(&id) {
            Some(e) if !e.placing => {
                e.placing = true;
                true
            }
            _ => false,
        }
    }

    /// The loop for `id` ends: whether the group still needs one (a node
    /// died after the loop's last look).
    pub(crate) fn stop_placing(&self, id: GroupId) -> bool {
        let mut groups = self.groups.lock();
        match groups.get_mut(&id) {
            Some(e) => {
                e.placing = false;
                e.info.state != GroupState::Created
            }
            None => false,
        }
    }

    /// Group `id`, whoever's it is.
    pub(crate) fn info(&self, id: GroupId) -> Option<GroupInfo> {
        self.groups.lock().get(&id).map(|e| e.info.clone())
    }

    /// The group named `name` in (tenant-scoped) `namespace`.
    pub(crate) fn by_name(&self, namespace: &str, name: &str, tenant: &str) -> Option<GroupInfo> {
        let groups = self.groups.lock();
        groups
            .values()
            .find(|e| {
                &*e.info.tenant == tenant
                    && e.info
                        .name
                        .as_ref()
                        .is_some_and(|(ns, n)| ns == namespace && n == name)
            })
            .map(|e| e.info.clone())
    }

    /// The groups of `job` that are not detached, with their tenants.
    pub(crate) fn of_job(&self, job: crate::ids::JobId) -> Vec<(GroupId, std::sync::Arc<str>)> {
        let groups = self.groups.lock();
        groups
            .values()
            .filter(|e| e.info.job == job && !e.info.detached)
            .map(|e| (e.info.id, e.info.tenant.clone()))
            .collect()
    }

    /// Takes back the groups a previous run of the head saved.
    pub(crate) fn restore(&self, saved: Vec<GroupInfo>) {
        let mut groups = self.groups.lock();
        for info in saved {
            let state = watch::Sender::new(info.state);
            groups.insert(
                info.id,
                Entry {
                    info,
                    state,
                    placing: false,
                },
            );
        }
    }

    /// The groups not yet created (to place).
    pub(crate) fn unplaced(&self) -> Vec<GroupId> {
        let groups = self.groups.lock();
        groups
            .values()
            .filter(|e| e.info.state != GroupState::Created)
            .map(|e| e.info.id)
            .collect()
    }

    /// Group `id` of `tenant`.
    pub(crate) fn get(&self, id: GroupId, tenant: &str) -> Option<GroupInfo> {
        let groups = self.groups.lock();
        groups
            .get(&id)
            .filter(|e| &*e.info.tenant == tenant)
            .map(|e| e.info.clone())
    }

    /// Where the group's unplaced bundles go now, by node (`Ok(None)`: no
    /// room now, try again later).
    pub(crate) fn plan(
        &self,
        id: GroupId,
        nodes: &[NodeRecord],
    ) -> Result<Option<Plan>, FabricError> {
        let Some(info) = self.groups.lock().get(&id).map(|e| e.info.clone()) else {
            return Ok(None);
        };
        match plan_on(&info, nodes) {
            BundlePlacement::Placed(placed) => {
                let mut plan: Plan = Vec::new();
                for (i, node) in placed.into_iter().enumerate() {
                    if info.nodes[i].is_some() {
                        continue;
                    }
                    match plan.iter_mut().find(|(n, _)| *n == node) {
                        Some((_, idx)) => idx.push(i as u32),
                        None => plan.push((node, vec![i as u32])),
                    }
                }
                Ok(Some(plan))
            }
            BundlePlacement::Wait(_) => Ok(None),
            BundlePlacement::Infeasible(e) => Err(e),
        }
    }

    /// The bundles of `plan` are reserved: the group is created once all
    /// are. Those on a node that is not `alive` now (it died meanwhile)
    /// stay unplaced.
    pub(crate) fn placed(
        &self,
        id: GroupId,
        plan: &Plan,
        alive: &std::collections::HashSet<NodeId>,
    ) -> Option<GroupInfo> {
        let mut groups = self.groups.lock();
        let e = groups.get_mut(&id)?;
        for (node, idx) in plan.iter().filter(|(n, _)| alive.contains(n)) {
            for i in idx {
                if let Some(slot) = e.info.nodes.get_mut(*i as usize) {
                    *slot = Some(*node);
                }
            }
        }
        if e.info.nodes.iter().all(Option::is_some) {
            e.info.state = GroupState::Created;
            e.state.send_replace(GroupState::Created);
        }
        let info = e.info.clone();
        self.save(super::Record::Group(info.clone()));
        Some(info)
    }

    /// A node died: the bundles it held are placed again. The groups
    /// changed, to save and to place.
    pub(crate) fn node_gone(&self, node: NodeId) -> Vec<GroupInfo> {
        let mut groups = self.groups.lock();
        let mut changed = Vec::new();
        for e in groups.values_mut() {
            let mut hit = false;
            for n in e.info.nodes.iter_mut().filter(|n| **n == Some(node)) {
                *n = None;
                hit = true;
            }
            if hit {
                e.info.state = GroupState::Rescheduling;
                e.state.send_replace(GroupState::Rescheduling);
                self.save(super::Record::Group(e.info.clone()));
                changed.push(e.info.clone());
            }
        }
        changed
    }

    /// Removes group `id` of `tenant`; the nodes that held its bundles.
    pub(crate) fn remove(
        &self,
        id: GroupId,
        tenant: &str,
    ) -> Result<(GroupInfo, Vec<NodeId>), FabricError> {
        let mut groups = self.groups.lock();
        if groups.get(&id).is_none_or(|e| &*e.info.tenant != tenant) {
            return Err(FabricError::NotFound(format!("placement group {id}")));
        }
        let mut e = groups.remove(&id).expect("just found");
        self.save(super::Record::ForgetGroup(id));
        e.state.send_replace(GroupState::Removed);
        let mut nodes: Vec<NodeId> = e.info.nodes.iter().flatten().copied().collect();
        nodes.sort();
        nodes.dedup();
        e.info.state = GroupState::Removed;
        Ok((e.info, nodes))
    }

    /// A receiver of group `id`'s state, for `GetGroup` with `wait_created`.
    pub(crate) fn watch(&self, id: GroupId, tenant: &str) -> Option<watch::Receiver<GroupState>> {
        let groups = self.groups.lock();
        groups
            .get(&id)
            .filter(|e| &*e.info.tenant == tenant)
            .map(|e| e.state.subscribe())
    }
}

/// Places `info`'s unplaced bundles on the up nodes that take work, from
/// what each had free at its last heartbeat.
fn plan_on(info: &GroupInfo, nodes: &[NodeRecord]) -> BundlePlacement {
    let up: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| matches!(n.state, super::NodeState::Alive))
        .collect();
    let candidates: Vec<Candidate<'_>> = up
        .iter()
        .map(|n| Candidate {
            id: n.id,
            total: &n.total,
            available: n.load.free.clone().without_named(),
            labels: Some(&n.labels),
            is_local: false,
        })
        .collect();
    // A bundle on a node that is gone is placed again.
    // (A draining node still holds its bundles: they stay.)
    let fixed: Vec<Option<NodeId>> = info
        .nodes
        .iter()
        .map(|n| n.filter(|n| nodes.iter().any(|u| u.id == *n && u.state.is_up())))
        .collect();
    place_bundles(&info.bundles, info.strategy, &candidates, &fixed, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;
    use crate::resources::ResourceSet;
    use fabric_runtime::bundles::BundleStrategy;

    fn node(cpus: f64) -> NodeRecord {
        let total = ResourceSet::default().with_cpus(cpus);
        NodeRecord {
            id: NodeId::random(),
            address: String::new(),
            total: total.clone(),
            labels: Default::default(),
            object_store_capacity: 0,
            is_head: false,
            state: super::super::NodeState::Alive,
            load: super::super::NodeLoad {
                free: total,
                ..Default::default()
            },
            last_seen: std::time::Instant::now(),
        }
    }

    #[test]
    fn a_strict_spread_group_is_placed_again_when_a_node_dies() {
        let nodes = vec![node(2.0), node(2.0), node(2.0)];
        let dir = GroupDirectory::default();
        let id = GroupId::random();
        let bundles = vec![ResourceSet::default().with_cpus(1.0); 2];
        let info = GroupInfo {
            id,
            tenant: "t".into(),
            job: JobId::random(),
            name: None,
            detached: false,
            strategy: BundleStrategy::StrictSpread,
            nodes: vec![None; 2],
            bundles,
            state: GroupState::Pending,
        };
        dir.create(info, &nodes).unwrap();
        let plan = dir.plan(id, &nodes).unwrap().unwrap();
        assert_eq!(plan.len(), 2);
        let all = |ns: &[NodeRecord]| ns.iter().map(|n| n.id).collect();
        let created = dir.placed(id, &plan, &all(&nodes)).unwrap();
        assert_eq!(created.state, GroupState::Created);
        let lost = created.nodes[1].unwrap();
        assert_eq!(dir.node_gone(lost).len(), 1);
        let left: Vec<NodeRecord> = nodes.into_iter().filter(|n| n.id != lost).collect();
        let again = dir.plan(id, &left).unwrap().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, vec![1]);
        assert_ne!(Some(again[0].0), created.nodes[0]);
        assert_eq!(
            dir.placed(id, &again, &all(&left)).unwrap().state,
            GroupState::Created
        );
        assert!(dir.get(id, "other").is_none());
        assert_eq!(dir.remove(id, "t").unwrap().1.len(), 2);
    }
}
