//! Lineage: how to compute again a task result that was lost with its node.
//!
//! A task's result lives where the task ran when it is too large to travel
//! inline; its owner (the node that submitted the task) then holds only its
//! location. For such results the owner keeps the task's spec (its function
//! and arguments, which keeps argument objects alive too) until the result
//! is freed. When the node holding the only copy is gone and someone reads
//! the result, the owner submits the task again; a lost argument is rebuilt
//! the same way, so a chain is rebuilt recursively. Results that came back
//! inline are stored at their owner and are lost only with it.
//!
//! Limits: a result is rebuilt at most `max_retries` times (0: never), and
//! the kept specs of a node take at most [`LINEAGE_BUDGET`] bytes (their
//! inline arguments, mostly), those of one tenant at most
//! [`LINEAGE_BUDGET_PER_TENANT`]; a result whose spec did not fit, an object made
//! by `put`, and an object whose owner died are not rebuilt: reading them
//! gives `object-lost`, saying why.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::Cluster;
use crate::error::FabricError;
use crate::ids::ObjectId;
use crate::runtime::task::{self, Reply, TaskArg, TaskSpec};

/// Bytes of task specs a node keeps for rebuilding results.
pub(crate) const LINEAGE_BUDGET: u64 = 256 << 20;
/// Of those, the bytes one tenant's specs may take (so one tenant's many
/// large results do not leave another's unrebuildable).
pub(crate) const LINEAGE_BUDGET_PER_TENANT: u64 = 64 << 20;

/// The specs of results owned here whose values live on other nodes.
#[derive(Default)]
pub(crate) struct Lineage {
    specs: DashMap<ObjectId, Kept>,
    bytes: AtomicU64,
    /// Bytes kept per tenant.
    by_tenant: parking_lot::Mutex<std::collections::HashMap<std::sync::Arc<str>, u64>>,
    /// Held while a task with several results is submitted again, so two
    /// of its lost results rebuilt at once run it once.
    rerunning: parking_lot::Mutex<()>,
}

struct Kept {
    spec: TaskSpec,
    bytes: u64,
    rebuilds: u32,
}

/// What keeping `spec` costs, roughly: its inline arguments and names.
fn cost(spec: &TaskSpec) -> u64 {
    let args: usize = spec
        .args
        .iter()
        .map(|a| match a {
            TaskArg::Value(b) => b.len() + 16,
            TaskArg::Object(_) => 64,
            TaskArg::Objects(refs) => 64 * refs.len(),
        })
        .sum();
    (args + spec.function.len() + 64 * spec.nested.len() + 256) as u64
}

impl Lineage {
    /// Keeps the spec of a task whose result `result` (one of its values)
    /// stayed on another node, if it fits the budget and the task may be
    /// rebuilt at all. Rebuilding runs the whole task again; its other
    /// values, already here or freed, are left as they are.
    pub(crate) fn keep(&self, result: ObjectId, mut spec: TaskSpec) {
        if spec.max_retries == 0 {
            return;
        }
        let bytes = cost(&spec);
        if !self.charge(&spec.job.tenant, bytes) {
            tracing::debug!(task = %spec.id.short(), "lineage budget full: this result cannot be rebuilt");
            return;
        }
        spec.attempt = 0;
        spec.reply = Reply::Local;
        let rebuilds = self
            .specs
            .remove(&result)
            .map(|(_, old)| {
                self.uncharge(&old.spec.job.tenant, old.bytes);
                old.rebuilds
            })
            .unwrap_or(0);
        self.specs.insert(
            result,
            Kept {
                spec,
                bytes,
                rebuilds,
            },
        );
    }

    /// Counts `bytes` more for `tenant`, unless the node's or the tenant's
    /// budget would be exceeded.
    fn charge(&self, tenant: &std::sync::Arc<str>, bytes: u64) -> bool {
        let mut by_tenant = self.by_tenant.lock();
        let mine = by_tenant.entry(tenant.clone()).or_default();
        let used = self.bytes.load(Ordering::Acquire);
        if used + bytes > LINEAGE_BUDGET || *mine + bytes > LINEAGE_BUDGET_PER_TENANT {
            if *mine == 0 {
                by_tenant.remove(tenant);
            }
            return false;
        }
        *mine += bytes;
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        true
    }

    fn uncharge(&self, tenant: &str, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        let mut by_tenant = self.by_tenant.lock();
        if let Some(mine) = by_tenant.get_mut(tenant) {
            *mine = mine.saturating_sub(bytes);
            if *mine == 0 {
                by_tenant.remove(tenant);
            }
        }
    }

    /// The result was freed: its spec goes.
    pub(crate) fn forget(&self, id: ObjectId) {
        if let Some((_, k)) = self.specs.remove(&id) {
            self.uncharge(&k.spec.job.tenant, k.bytes);
        }
    }
}

impl Cluster {
    /// Computes a lost result owned here again: true if it is being rebuilt
    /// (now or already), false if it cannot be.
    pub(crate) fn rebuild(&self, id: ObjectId) -> Result<bool, FabricError> {
        let Some(core) = self.core() else {
            return Ok(false);
        };
        let spec = {
            let Some(mut kept) = self.lineage.specs.get_mut(&id) else {
                return Ok(false);
            };
            if kept.rebuilds >= kept.spec.max_retries {
                return Err(FabricError::ObjectLost(format!(
                    "object {id} was lost again after {} rebuilds",
                    kept.rebuilds
                )));
            }
            if kept.spec.job.is_finished() {
                return Ok(false);
            }
            if !core.objects().rebuild_pending(id) {
                // Here already, or being rebuilt.
                return Ok(true);
            }
            kept.rebuilds += 1;
            kept.spec.clone()
        };
        tracing::warn!(object = %id, task = %spec.id.short(), function = %spec.function, "rebuilding a result lost with its node");
        let rerun_guard = (!spec.more_results.is_empty()).then(|| self.lineage.rerunning.lock());
        if rerun_guard.is_some() && core.tasks().is_unfinished(spec.result) {
            // Running again already for another of its results: that run
            // completes this one too (it is pending again).
            return Ok(true);
        }
        if let Err(e) = task::submit(&core, spec) {
            core.objects().fulfill(id, Err(e), Vec::new());
        }
        Ok(true)
    }
}
