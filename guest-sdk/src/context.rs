//! Where the running code is: job, node, task or actor, GPUs.

use crate::__bindings::fabric::core::host;
use crate::object::id_from_wit;

/// Where and as what the current code runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeContext {
    pub job_id: String,
    pub node_id: String,
    /// Set inside a task.
    pub task_id: Option<String>,
    /// Set inside an actor.
    pub actor_id: Option<u128>,
    /// GPUs given to this task or actor (like Ray's `get_gpu_ids()`).
    pub gpu_ids: Vec<u32>,
}

/// The current runtime context.
pub fn context() -> RuntimeContext {
    let c = host::context();
    RuntimeContext {
        job_id: c.job_id,
        node_id: c.node_id,
        task_id: c.task_id,
        actor_id: c.actor_id.map(id_from_wit),
        gpu_ids: c.gpu_ids,
    }
}
