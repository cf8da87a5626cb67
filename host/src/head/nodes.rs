//! The node table: every node the head knows, its state and load, the
//! per-tenant loads it last reported, and which nodes left (rather than
//! died), all under one lock so that a reader never sees a node's state
//! without its loads.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::records::{NodeLoad, NodeRecord, NodeState, TenantLoad};
use crate::ids::NodeId;

#[derive(Default)]
struct Table {
    records: BTreeMap<NodeId, NodeRecord>,
    /// The latest per-tenant loads each node reported.
    loads: HashMap<NodeId, Vec<TenantLoad>>,
    /// Nodes that left by deregistering (rather than dying).
    departed: HashSet<NodeId>,
}

/// Why [`NodeTable::find`] found no single node.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error("name a node (its id or a prefix of it)")]
    Empty,
    #[error("no live node has an id starting with `{0}`")]
    None(String),
    #[error("{1} live nodes have ids starting with `{0}`: give more of it")]
    Many(String, usize),
}

/// The head's nodes.
#[derive(Default)]
pub(crate) struct NodeTable(Mutex<Table>);

impl NodeTable {
    /// Records a node that (re)registered: alive, heard from now.
    pub(crate) fn register(&self, record: NodeRecord) {
        let mut t = self.0.lock();
        t.departed.remove(&record.id);
        t.records.insert(record.id, record);
    }

    /// Takes back a saved node (on restore).
    pub(crate) fn restore(&self, record: NodeRecord) {
        self.0.lock().records.insert(record.id, record);
    }

    /// A heartbeat: the node's load and its tenants' loads. A node declared
    /// dead stays dead (its work was already failed over). Returns whether
    /// the node is known.
    pub(crate) fn heartbeat(&self, id: NodeId, load: NodeLoad, tenants: Vec<TenantLoad>) -> bool {
        let mut t = self.0.lock();
        let Some(rec) = t.records.get_mut(&id) else {
            return false;
        };
        if rec.state.is_up() {
            rec.last_seen = Instant::now();
            rec.load = load;
        }
        t.loads.insert(id, tenants);
        true
    }

    /// Marks a node dead; `left` when it deregistered. Returns its record.
    pub(crate) fn mark_dead(&self, id: NodeId, left: bool) -> Option<NodeRecord> {
        let mut t = self.0.lock();
        if left {
            t.departed.insert(id);
        }
        let rec = t.records.get_mut(&id)?;
        rec.state = NodeState::Dead;
        Some(rec.clone())
    }

    /// Marks dead (and returns) the up nodes silent for over `timeout`.
    pub(crate) fn expire(&self, timeout: Duration) -> Vec<NodeRecord> {
        let mut t = self.0.lock();
        t.records
            .values_mut()
            .filter(|r| r.state.is_up() && r.last_seen.elapsed() > timeout)
            .map(|r| {
                r.state = NodeState::Dead;
                r.clone()
            })
            .collect()
    }

    /// Marks an up node draining; `None` if it is not up.
    pub(crate) fn start_draining(&self, id: NodeId) -> Option<NodeRecord> {
        let mut t = self.0.lock();
        let rec = t.records.get_mut(&id).filter(|r| r.state.is_up())?;
        rec.state = NodeState::Draining;
        Some(rec.clone())
    }

    /// Whether the node is gone: `Some(true)` if it left (deregistered),
    /// `Some(false)` if it died, `None` while it is up.
    pub(crate) fn has_left(&self, id: NodeId) -> Option<bool> {
        let t = self.0.lock();
        let up = t.records.get(&id).is_some_and(|r| r.state.is_up());
        (!up).then(|| t.departed.contains(&id))
    }

    pub(crate) fn all(&self) -> Vec<NodeRecord> {
        self.0.lock().records.values().cloned().collect()
    }

    pub(crate) fn alive(&self) -> HashSet<NodeId> {
        let t = self.0.lock();
        t.records
            .values()
            .filter(|r| r.state.is_up())
            .map(|r| r.id)
            .collect()
    }

    /// Calls `f` with every tenant load reported, each with its node and
    /// whether that node is up (under the table's lock: nothing is copied).
    pub(crate) fn with_loads<R>(
        &self,
        f: impl FnOnce(&mut dyn Iterator<Item = (NodeId, bool, &TenantLoad)>) -> R,
    ) -> R {
        let t = self.0.lock();
        let mut all = t.loads.iter().flat_map(|(id, ls)| {
            let up = t.records.get(id).is_some_and(|r| r.state.is_up());
            ls.iter().map(move |l| (*id, up, l))
        });
        f(&mut all)
    }

    /// The up node whose id is `prefix`, or the only one whose id starts
    /// with it (hex).
    pub(crate) fn find(&self, prefix: &str) -> Result<NodeId, FindError> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() {
            return Err(FindError::Empty);
        }
        let t = self.0.lock();
        let matches: Vec<NodeId> = t
            .records
            .values()
            .filter(|r| r.state.is_up() && r.id.to_string().starts_with(&prefix))
            .map(|r| r.id)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(FindError::None(prefix)),
            _ => Err(FindError::Many(prefix, matches.len())),
        }
    }
}
