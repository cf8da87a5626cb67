//! The node table: every node the head knows, its state and load, the
//! per-tenant loads it last reported, and which nodes left (rather than
//! died), all under one lock so that a reader never sees a node's state
//! without its loads.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::records::{NodeLoad, NodeRecord, NodeState, TenantLoad};
use crate::ids::NodeId;

struct Table {
    records: BTreeMap<NodeId, NodeRecord>,
    /// This head's views: a random epoch (a restarted head starts a new
    /// one), the version of the latest change, and the version at which
    /// each node's place in the view last changed.
    epoch: u64,
    version: u64,
    changed: HashMap<NodeId, u64>,
    /// The same, by version: a view since version v is a range of it.
    by_version: BTreeMap<u64, NodeId>,
    /// When each node's free resources last went into the views, and
    /// whether a later change of them is still waiting (see
    /// [`load_interval`]).
    published: HashMap<NodeId, Published>,
    /// Nodes up, as last counted, and when (dead records stay in the
    /// table, so its length is not the cluster's size).
    up: (usize, Instant),
    /// The latest per-tenant loads each node reported.
    loads: HashMap<NodeId, Vec<TenantLoad>>,
    /// Nodes that left by deregistering (rather than dying).
    departed: HashSet<NodeId>,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            records: BTreeMap::new(),
            epoch: rand::random::<u64>() | 1,
            version: 0,
            changed: HashMap::new(),
            by_version: BTreeMap::new(),
            published: HashMap::new(),
            up: (0, Instant::now()),
            loads: HashMap::new(),
            departed: HashSet::new(),
        }
    }
}

/// The most nodes whose free resources may enter the views per second
/// when they change with every beat on every node: what keeps a busy cluster's
/// replies (and the head's work for each) from growing back to whole
/// views. Measured by `benches/head_scale.rs` (busy mode).
const LOAD_CHANGES_PER_S: f64 = 200.0;

/// The longest a node's changed free resources wait to enter the views.
const MAX_LOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How much earlier than its interval a node's heartbeat may publish its
/// load: beats jitter, and an interval of one beat (100 nodes at two
/// beats a second) must not become two because a beat came a little soon.
const LOAD_SLACK: Duration = Duration::from_millis(100);

/// How long a node's free resources stay as the views last showed them,
/// in a cluster of `nodes`: 0.5 s at 100 nodes (a beat), 5 s at 1,000, at
/// most [`MAX_LOAD_INTERVAL`]. Changes of a node's state (joined, draining,
/// dead) are never held back. Each reply says the interval, and a node
/// keeps counting what it sent a peer against the peer's free resources
/// until they come in a view or could have (see the cluster's
/// `Peers::settle_in_flight`), so a lagging view does not send a busy node
/// the same room again with every beat.
fn load_interval(nodes: usize) -> Duration {
    Duration::from_secs_f64(nodes as f64 / LOAD_CHANGES_PER_S).min(MAX_LOAD_INTERVAL)
}

/// When a node's free resources last went into the views.
struct Published {
    at: Instant,
    /// They changed since and have not gone out yet.
    pending: bool,
}

impl Table {
    /// `id`'s place in the view changed.
    fn touch(&mut self, id: NodeId) {
        if let Some(p) = self.published.get_mut(&id) {
            // The view now carries the record as it is, load and all.
            p.pending = false;
        }
        self.version += 1;
        if let Some(old) = self.changed.insert(id, self.version) {
            self.by_version.remove(&old);
        }
        self.by_version.insert(self.version, id);
    }

    /// The nodes up, counted again at most once a second (a heartbeat
    /// must not walk the table).
    fn up_count(&mut self) -> usize {
        if self.up.1.elapsed() >= Duration::from_secs(1) || self.up.0 == 0 {
            let n = self.records.values().filter(|r| r.state.is_up()).count();
            self.up = (n, Instant::now());
        }
        self.up.0
    }

    /// Whether `id`'s free resources go into the views now, given whether
    /// they `moved` with this heartbeat: a change waits until the node's
    /// last one has been out for [`load_interval`], and then goes with the
    /// node's next heartbeat.
    fn load_due(&mut self, id: NodeId, moved: bool) -> bool {
        let interval = load_interval(self.up_count());
        match self.published.get_mut(&id) {
            None => moved,
            Some(p) => {
                p.pending |= moved;
                p.pending && p.at.elapsed() + LOAD_SLACK >= interval
            }
        }
    }
}

/// What a heartbeat's reply tells a node of the cluster.
pub(crate) struct View {
    /// Every node, or only those changed since the node's version.
    pub nodes: Vec<NodeRecord>,
    pub partial: bool,
    pub epoch: u64,
    pub version: u64,
    /// How long a changed load may wait to enter the views now.
    pub load_interval: Duration,
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
        t.touch(record.id);
        t.records.insert(record.id, record);
    }

    /// Takes back a saved node (on restore).
    pub(crate) fn restore(&self, record: NodeRecord) {
        let mut t = self.0.lock();
        t.touch(record.id);
        t.records.insert(record.id, record);
    }

    /// A heartbeat: the node's load and its tenants' loads. A node declared
    /// dead stays dead (its work was already failed over). Returns whether
    /// the node is known.
    pub(crate) fn heartbeat(&self, id: NodeId, load: NodeLoad, tenants: Vec<TenantLoad>) -> bool {
        let mut t = self.0.lock();
        let Some(rec) = t.records.get_mut(&id) else {
            return false;
        };
        let mut moved = false;
        if rec.state.is_up() {
            rec.last_seen = Instant::now();
            // Only free resources count for the view; the rest of a load
            // is for status pages, read from the table itself.
            moved = rec.load.free != load.free;
            rec.load = load;
        }
        if t.load_due(id, moved) {
            t.touch(id);
            t.published.insert(
                id,
                Published {
                    at: Instant::now(),
                    pending: false,
                },
            );
        }
        t.loads.insert(id, tenants);
        true
    }

    /// The view for a node that holds (`epoch`, `version`): what changed
    /// since, or everything when that view is not this head's.
    pub(crate) fn view_since(&self, epoch: u64, version: u64) -> View {
        let mut t = self.0.lock();
        let load_interval = load_interval(t.up_count());
        let partial = epoch == t.epoch && version != 0 && version <= t.version;
        let nodes = if partial {
            t.by_version
                .range(version + 1..)
                .filter_map(|(_, id)| t.records.get(id).cloned())
                .collect()
        } else {
            t.records.values().cloned().collect()
        };
        View {
            nodes,
            partial,
            epoch: t.epoch,
            version: t.version,
            load_interval,
        }
    }

    /// Marks a node dead; `left` when it deregistered. Returns its record.
    pub(crate) fn mark_dead(&self, id: NodeId, left: bool) -> Option<NodeRecord> {
        let mut t = self.0.lock();
        if left {
            t.departed.insert(id);
        }
        let rec = t.records.get_mut(&id)?;
        rec.state = NodeState::Dead;
        let rec = rec.clone();
        t.touch(id);
        Some(rec)
    }

    /// Marks dead (and returns) the up nodes silent for over `timeout`.
    pub(crate) fn expire(&self, timeout: Duration) -> Vec<NodeRecord> {
        let mut t = self.0.lock();
        let dead: Vec<NodeRecord> = t
            .records
            .values_mut()
            .filter(|r| r.state.is_up() && r.last_seen.elapsed() > timeout)
            .map(|r| {
                r.state = NodeState::Dead;
                r.clone()
            })
            .collect();
        for r in &dead {
            t.touch(r.id);
        }
        dead
    }

    /// Marks an up node draining; `None` if it is not up.
    pub(crate) fn start_draining(&self, id: NodeId) -> Option<NodeRecord> {
        let mut t = self.0.lock();
        let rec = t.records.get_mut(&id).filter(|r| r.state.is_up())?;
        rec.state = NodeState::Draining;
        let rec = rec.clone();
        t.touch(id);
        Some(rec)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceSet;

    fn record(n: u128) -> NodeRecord {
        NodeRecord {
            id: NodeId::from_u128(n),
            address: format!("127.0.0.1:{n}"),
            total: ResourceSet::default(),
            labels: HashMap::new(),
            object_store_capacity: 0,
            is_head: false,
            state: NodeState::Alive,
            load: NodeLoad::default(),
            last_seen: Instant::now(),
        }
    }

    fn ids(view: &View) -> Vec<u128> {
        let mut ids: Vec<u128> = view.nodes.iter().map(|r| r.id.as_u128()).collect();
        ids.sort();
        ids
    }

    /// A node holding the head's view gets only what changed since; one
    /// that holds none, or another head's, gets it all.
    #[test]
    fn views_come_as_changes_to_a_node_that_holds_this_heads() {
        let table = NodeTable::default();
        for n in 1..=3 {
            table.register(record(n));
        }
        let full = table.view_since(0, 0);
        assert!(!full.partial);
        assert_eq!(ids(&full), [1, 2, 3]);
        let held = (full.epoch, full.version);
        // Nothing moved: nothing comes.
        let same = NodeLoad::default();
        assert!(table.heartbeat(NodeId::from_u128(2), same, Vec::new()));
        let none = table.view_since(held.0, held.1);
        assert!(none.partial && none.nodes.is_empty());
        assert_eq!(none.version, held.1);
        // Free resources moved on 2, 3 died: both come, nothing else.
        let busier = NodeLoad {
            free: ResourceSet {
                cpu: 1_000,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(table.heartbeat(NodeId::from_u128(2), busier, Vec::new()));
        table.mark_dead(NodeId::from_u128(3), false);
        let delta = table.view_since(held.0, held.1);
        assert!(delta.partial);
        assert_eq!(ids(&delta), [2, 3]);
        assert_eq!(
            delta
                .nodes
                .iter()
                .find(|r| r.id.as_u128() == 3)
                .unwrap()
                .state,
            NodeState::Dead
        );
        // Another head's view, or a version this head never made: all.
        assert!(!table.view_since(held.0 ^ 2, held.1).partial);
        assert!(!table.view_since(held.0, delta.version + 1).partial);
        assert_eq!(ids(&table.view_since(held.0 ^ 2, held.1)), [1, 2, 3]);
    }

    fn with_cpus(cpu: i64) -> NodeLoad {
        NodeLoad {
            free: ResourceSet {
                cpu,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// In a large cluster a node's free resources go into the views at
    /// most once per interval; a change held back goes out with the first
    /// heartbeat after it, and state changes are never held back.
    #[test]
    fn a_large_clusters_load_changes_are_paced_and_never_lost() {
        let table = NodeTable::default();
        for n in 1..=1_000 {
            table.register(record(n));
        }
        let interval = load_interval(1_000);
        assert_eq!(interval, Duration::from_secs(5));
        assert_eq!(load_interval(100), Duration::from_millis(500));
        let one = NodeId::from_u128(1);
        let held = table.view_since(0, 0);
        let cursor = |v: &View| (v.epoch, v.version);
        let (epoch, version) = cursor(&held);
        // The first change goes out at once.
        table.heartbeat(one, with_cpus(1_000), Vec::new());
        let first = table.view_since(epoch, version);
        assert_eq!(ids(&first), [1]);
        // The next, within the interval, waits...
        table.heartbeat(one, with_cpus(2_000), Vec::new());
        let (epoch, version) = cursor(&first);
        assert!(table.view_since(epoch, version).nodes.is_empty());
        // ...until the interval has passed: then the next heartbeat sends
        // it, though that heartbeat's load is the same as the last.
        table.0.lock().published.get_mut(&one).unwrap().at -= interval;
        table.heartbeat(one, with_cpus(2_000), Vec::new());
        let later = table.view_since(epoch, version);
        assert_eq!(ids(&later), [1]);
        assert_eq!(later.nodes[0].load.free.cpu, 2_000);
        // A node dying is in the next view, whatever its load waits for.
        let (epoch, version) = cursor(&later);
        table.heartbeat(one, with_cpus(3_000), Vec::new());
        table.mark_dead(one, false);
        let dead = table.view_since(epoch, version);
        assert_eq!(ids(&dead), [1]);
        assert_eq!(dead.nodes[0].state, NodeState::Dead);
        // The pace follows the nodes up, not the records the table keeps.
        for n in 2..=900 {
            table.mark_dead(NodeId::from_u128(n), false);
        }
        let mut t = table.0.lock();
        assert_eq!(t.up_count(), 1_000, "counted at most once a second");
        t.up.1 -= Duration::from_secs(1);
        assert_eq!(t.up_count(), 100);
    }
}
