//! What a guest can see of its cluster (Ray's `ray.cluster_resources()`,
//! `ray.available_resources()` and `ray.nodes()`), and its own tenant's
//! quota and usage.
//!
//! Unless the operator shows the cluster's load, what is free is what the
//! caller's own tenant may still take, and nodes come without their free
//! resources: one tenant does not learn how busy the others are.
//!
//! ```no_run
//! # fn main() -> fabric::Result<()> {
//! let total = fabric::cluster_resources();
//! let free = fabric::available_resources();
//! assert!(free.num_cpus <= total.num_cpus);
//! for node in fabric::nodes() {
//!     println!("{} alive={} {:?}", node.node_id, node.alive, node.resources.num_cpus);
//! }
//! # Ok(()) }
//! ```

use crate::__bindings::fabric::core::host;
use crate::Resources;

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub node_id: String,
    /// Where peers reach it: empty on a node in no cluster, and unless the
    /// operator shows the cluster's load.
    pub address: String,
    pub alive: bool,
    pub is_head: bool,
    /// Everything it has.
    pub resources: Resources,
    /// What it has free, when the operator shows the cluster's load.
    pub available: Option<Resources>,
    pub labels: Vec<(String, String)>,
}

/// The caller's tenant: its quota (`None`: no limit) and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantResources {
    pub quota_cpus: Option<f64>,
    pub quota_gpus: Option<f64>,
    pub quota_memory: Option<u64>,
    pub used: Resources,
}

/// Everything the cluster's live nodes have.
pub fn cluster_resources() -> Resources {
    Resources::from_wit(host::cluster_resources())
}

/// What is free (see the module's note on what that shows).
pub fn available_resources() -> Resources {
    Resources::from_wit(host::available_resources())
}

/// The cluster's nodes.
pub fn nodes() -> Vec<NodeInfo> {
    host::nodes()
        .into_iter()
        .map(|n| NodeInfo {
            node_id: n.node_id,
            address: n.address,
            alive: n.alive,
            is_head: n.is_head,
            resources: Resources::from_wit(n.resources),
            available: n.available.map(Resources::from_wit),
            labels: n.labels,
        })
        .collect()
}

/// The caller's tenant's quota and usage.
pub fn tenant_resources() -> TenantResources {
    let t = host::tenant_resources();
    TenantResources {
        quota_cpus: t.quota_cpus,
        quota_gpus: t.quota_gpus,
        quota_memory: t.quota_memory,
        used: Resources::from_wit(t.used),
    }
}
