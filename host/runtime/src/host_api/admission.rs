//! The one check every new task and actor passes before anything is copied
//! out of the guest or reserved for it: its name, its resource demand, its
//! placement, whether the demand can ever fit (and fits the tenant's
//! quota), whether its job still runs, and for an actor whether its tenant
//! and its job may hold one more (the node that hosts it counts it, see
//! [`crate::runtime::slots`]; a task takes its instance slot when it starts).
//! One place, so tasks and actors cannot drift.

use crate::bindings::fabric::core::types::{Placement, Resources};
use crate::bundles::bundle_demand;
use crate::error::FabricError;
use crate::placement::Strategy;
use crate::resources::ResourceSet;
use crate::runtime::NodeCore;
use crate::runtime::job::Job;

use super::{check_name, demand_of, strategy_of};

/// What is being created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Creating {
    Task,
    Actor,
    /// A named actor that may already exist (`get_if_exists`): the caps
    /// are checked only if it is created.
    ActorIfAbsent,
}

impl Creating {
    /// What its name is called in errors.
    fn name_kind(self) -> &'static str {
        match self {
            Creating::Task => "function",
            Creating::Actor | Creating::ActorIfAbsent => "actor class",
        }
    }

    /// CPUs it holds when it does not say: like Ray, a task one and an
    /// actor none.
    fn default_cpus(self) -> f64 {
        match self {
            Creating::Task => 1.0,
            Creating::Actor | Creating::ActorIfAbsent => 0.0,
        }
    }
}

/// A creation that passed [`admit`]: what it holds and where it may go.
pub(crate) struct Admitted {
    pub demand: ResourceSet,
    pub strategy: Strategy,
}

/// Admits a new task or actor of `job` (its function or class `name`,
/// asking for `resources` placed by `placement`), or says why not.
pub(crate) fn admit(
    core: &NodeCore,
    job: &Job,
    what: Creating,
    name: &str,
    resources: &Resources,
    placement: Option<Placement>,
) -> Result<Admitted, FabricError> {
    check_name(what.name_kind(), name)?;
    let demand = demand_of(resources, what.default_cpus())?;
    let strategy = strategy_of(placement)?;
    let demand = match &strategy {
        // Work in a bundle takes what the group reserved, not the node's
        // free resources: it fits if the bundle can hold it.
        Strategy::Bundle { group, index } => {
            let info = core
                .port()
                .known_group(*group, &job.tenant)
                .ok_or_else(|| FabricError::NotFound(format!("placement group {group}")))?;
            info.check_fits(*index, &demand)?;
            bundle_demand(*group, *index, &demand)
        }
        _ => {
            core.check_feasible(&demand, &job.account)?;
            demand
        }
    };
    if job.is_finished() {
        return Err(FabricError::Cancelled);
    }
    if what == Creating::Actor {
        let limits = (job.limits.live_instances, job.limits.live_actors);
        job.books.check_live(limits, true)?;
        job.account.check_live(true)?;
    }
    Ok(Admitted { demand, strategy })
}
