//! A job's tasks, as the nodes kept them. The head holds no task: when a
//! client asks (the dashboard's task view, the Jobs API, `fabric
//! timeline`), it asks every live node through the [`TaskNodes`] port and
//! hands back their answers, holding them only for that request. Queries
//! are bounded: each tenant may have [`QUERIES_PER_TENANT`] in flight (the
//! next is refused), and the head [`QUERIES`] in all (the next waits).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::placing::BundleFuture;
use super::records::JobRecord;
use super::{Head, HeadError};
use crate::ids::{JobId, NodeId};
use crate::limits::exceeded;
use crate::security::Principal;
use crate::task_events::JobTasksHere;
use crate::task_view::NodeTasks;

/// How the head asks a node what it kept of a job's tasks.
pub trait TaskNodes: Send + Sync {
    fn job_tasks(&self, node: NodeId, job: JobId)
    -> BundleFuture<'_, Result<JobTasksHere, String>>;
}

/// Queries one tenant may have in flight.
pub const QUERIES_PER_TENANT: usize = 2;
/// Queries the head runs at once.
pub const QUERIES: usize = 8;
/// How long the head waits for one node's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A job's record and what each live node answered about its tasks.
#[derive(Debug)]
pub struct JobTasks {
    pub job: JobRecord,
    pub nodes: Vec<NodeTasks>,
}

/// The queries in flight.
pub(crate) struct TaskQueries {
    per_tenant: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    all: tokio::sync::Semaphore,
    port: std::sync::OnceLock<Arc<dyn TaskNodes>>,
}

impl Default for TaskQueries {
    fn default() -> Self {
        TaskQueries {
            per_tenant: Default::default(),
            all: tokio::sync::Semaphore::new(QUERIES),
            port: Default::default(),
        }
    }
}

/// A tenant's query in flight (its place goes back on drop).
struct Turn {
    per_tenant: Arc<Mutex<HashMap<Arc<str>, usize>>>,
    tenant: Arc<str>,
}

impl Turn {
    fn take(queries: &TaskQueries, tenant: &str) -> Result<Turn, HeadError> {
        let mut held = queries.per_tenant.lock();
        let n = held.entry(tenant.into()).or_default();
        if *n >= QUERIES_PER_TENANT {
            let max = QUERIES_PER_TENANT as u64;
            let why = format!("{tenant} already has {max} task queries in flight");
            return Err(HeadError::Refused(exceeded("task-queries", max, why)));
        }
        *n += 1;
        Ok(Turn {
            per_tenant: queries.per_tenant.clone(),
            tenant: tenant.into(),
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut held = self.per_tenant.lock();
        if let Some(n) = held.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

impl Head {
    /// Where the head asks nodes about tasks (set once, by its own node).
    pub fn set_task_nodes(&self, port: Arc<dyn TaskNodes>) {
        let _ = self.task_queries.port.set(port);
    }

    /// Job `id` (if `who` may see it) and what every live node kept of
    /// its tasks; a node that does not answer in time is listed as such.
    pub async fn job_tasks(&self, id: JobId, who: &Principal) -> Result<JobTasks, HeadError> {
        let job = self.job_for(id, who)?;
        let queries = &self.task_queries;
        let _turn = Turn::take(queries, who.tenant())?;
        let _place = queries.all.acquire().await.expect("never closed");
        let Some(port) = queries.port.get() else {
            return Ok(JobTasks {
                job,
                nodes: Vec::new(),
            });
        };
        let mut asks = tokio::task::JoinSet::new();
        for node in self.nodes.alive() {
            let port = port.clone();
            asks.spawn(async move {
                let asked = tokio::time::timeout(ASK_TIMEOUT, port.job_tasks(node, id)).await;
                let answer = asked.unwrap_or_else(|_| {
                    Err(format!("no answer within {} s", ASK_TIMEOUT.as_secs()))
                });
                NodeTasks { node, answer }
            });
        }
        let mut nodes = asks.join_all().await;
        nodes.sort_by_key(|n| n.node);
        Ok(JobTasks { job, nodes })
    }
}
