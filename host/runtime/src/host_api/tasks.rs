//! `submit` and `cancel`.

use wasmtime::component::{LinkerInstance, Resource};

use super::{
    Ctx, HostResult, RawArg, check_name, convert_args, convert_nested, demand_of, fail,
    reserve_result, strategy_of,
};
use crate::bindings::fabric::core::types::TaskOptions;
use crate::error::FabricError;
use crate::object_store::ObjectRef;
use crate::runtime::instance::InstanceState;
use crate::runtime::task::{self, TaskSpec};

/// Retries after a system failure when the caller does not say (Ray's default).
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 3;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap(
        "submit",
        |mut store: Ctx,
         (function, args, nested, options): (
            String,
            Vec<RawArg>,
            Vec<Resource<ObjectRef>>,
            TaskOptions,
        )| { Ok((submit(&mut store, function, args, nested, options)?,)) },
    )?;
    host.func_wrap(
        "cancel",
        |mut store: Ctx, (obj,): (Resource<ObjectRef>,)| Ok((cancel(store.data_mut(), obj)?,)),
    )?;
    Ok(())
}

fn submit(
    store: &mut Ctx<'_>,
    function: String,
    args: Vec<RawArg>,
    nested: Vec<Resource<ObjectRef>>,
    options: TaskOptions,
) -> HostResult<Resource<ObjectRef>> {
    let exec = store.data().exec()?;
    let core = exec.core.clone();
    let job = exec.job.clone();
    if let Err(e) = check_name("function", &function) {
        return fail(e);
    }
    // The display name is not kept, but bounded like every name.
    if let Some(Err(e)) = options.name.as_deref().map(|n| check_name("task", n)) {
        return fail(e);
    }
    let demand = match demand_of(&options.resources, 1.0) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let strategy = match strategy_of(options.placement) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = core.check_feasible(&demand, &job.account) {
        return fail(e);
    }
    if job.is_finished() {
        return fail(FabricError::Cancelled);
    }
    let function: std::sync::Arc<str> = function.into();
    // Charged before the arguments are copied out of the guest.
    let result_ref = match reserve_result(store, &args, function.clone())? {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let result = result_ref.id();
    let args = match convert_args(store, args)? {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let spec = TaskSpec {
        nested: convert_nested(&store.data().table, &nested)?,
        demand,
        strategy,
        max_retries: options.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_exceptions: options.retry_exceptions,
        ..TaskSpec::new(job, function, args, result)
    };
    // Refused when the job has its limit of tasks in flight: what stops a
    // task that submits itself without end.
    if let Err(e) = task::submit(&core, spec) {
        return fail(e);
    }
    Ok(Ok(store.data_mut().push_ref(result_ref)?))
}

fn cancel(state: &mut InstanceState, obj: Resource<ObjectRef>) -> HostResult<()> {
    let id = state.table.get(&obj)?.id();
    let core = &state.exec()?.core;
    if let Some(control) = core.tasks().remove(id) {
        control.cancel();
        core.port().cancel_forwarded(id);
        core.objects()
            .fulfill(id, Err(FabricError::Cancelled), Vec::new());
    }
    Ok(Ok(()))
}
