//! A job's tasks, as the nodes kept them. The head holds no task: when a
//! client asks (the dashboard's task view, the Jobs API, `fabric
//! timeline`), it asks every live node through the [`TaskNodes`] port,
//! turns their answers into what the client gets, and lets them go.
//! Queries are bounded: each tenant may have [`QUERIES_PER_TENANT`] in
//! flight (the next is refused), the head [`QUERIES`] in all (the next
//! waits, up to [`QUEUE_WAIT`]), each at most [`QUERY_EVENTS`] events
//! (shared out between the nodes: each sends its newest), and all of that
//! holds until the answer is built.

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
    /// What `node` kept of `job`, at most `limit` events (its newest).
    fn job_tasks(
        &self,
        node: NodeId,
        job: JobId,
        limit: u32,
    ) -> BundleFuture<'_, Result<JobTasksHere, String>>;
}

/// Queries one tenant may have in flight.
pub const QUERIES_PER_TENANT: usize = 2;
/// Queries the head runs at once.
pub const QUERIES: usize = 4;
/// How long a query waits for its turn before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// The most events one query gathers from all nodes.
pub const QUERY_EVENTS: usize = 50_000;

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
    all: Arc<tokio::sync::Semaphore>,
    port: std::sync::OnceLock<Arc<dyn TaskNodes>>,
}

impl Default for TaskQueries {
    fn default() -> Self {
        TaskQueries {
            per_tenant: Default::default(),
            all: Arc::new(tokio::sync::Semaphore::new(QUERIES)),
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
    /// its tasks, made into `view` (on a blocking thread, while the query
    /// still holds its turn); a node that does not answer in time is
    /// listed as such.
    pub async fn job_tasks<R: Send + 'static>(
        &self,
        id: JobId,
        who: &Principal,
        view: impl FnOnce(JobTasks) -> R + Send + 'static,
    ) -> Result<R, HeadError> {
        let job = self.job_for(id, who)?;
        let queries = &self.task_queries;
        let turn = Turn::take(queries, who.tenant())?;
        let busy = || {
            let why = format!("the head is busy with task queries (more than {QUEUE_WAIT:?})");
            HeadError::Refused(exceeded("task-queries", QUERIES as u64, why))
        };
        let place = tokio::time::timeout(QUEUE_WAIT, queries.all.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .expect("never closed");
        let nodes = match queries.port.get() {
            Some(port) => self.ask_nodes(port, id).await,
            None => Vec::new(),
        };
        let tasks = JobTasks { job, nodes };
        // The turn and the place go with the answers (they hold until the
        // view is made, even if the caller went away meanwhile).
        let made = tokio::task::spawn_blocking(move || {
            let _held = (turn, place);
            view(tasks)
        });
        made.await.map_err(|e| {
            tracing::error!(job = %id.short(), error = %e, "making a task view failed");
            HeadError::Refused(crate::error::FabricError::failure(
                "job-tasks",
                crate::error::FailureKind::System,
                "the head could not make the view",
            ))
        })
    }

    async fn ask_nodes(&self, port: &Arc<dyn TaskNodes>, id: JobId) -> Vec<NodeTasks> {
        let alive = self.nodes.alive();
        let limit = (QUERY_EVENTS / alive.len().max(1)).max(1) as u32;
        let mut asks = tokio::task::JoinSet::new();
        for node in alive {
            let port = port.clone();
            asks.spawn(async move {
                let asked = tokio::time::timeout(ASK_TIMEOUT, port.job_tasks(node, id, limit));
                let answer = asked.await.unwrap_or_else(|_| {
                    Err(format!("no answer within {} s", ASK_TIMEOUT.as_secs()))
                });
                NodeTasks { node, answer }
            });
        }
        let mut nodes = asks.join_all().await;
        nodes.sort_by_key(|n| n.node);
        nodes
    }
}
