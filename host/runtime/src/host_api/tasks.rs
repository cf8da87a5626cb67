//! `submit` and `cancel`.

use wasmtime::component::{LinkerInstance, Resource};

use super::{
    Creating, Ctx, HostCall, RawArg, admit, check_name, convert_args, convert_nested,
    reserve_result, to_wasm,
};
use crate::bindings::fabric::core::types::TaskOptions;
use crate::error::FabricError;
use crate::object_store::ObjectRef;
use crate::runtime::instance::{InstanceState, Role};
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
        )| {
            Ok((to_wasm(submit(
                &mut store, function, args, nested, options,
            ))?,))
        },
    )?;
    host.func_wrap(
        "cancel",
        |mut store: Ctx, (obj,): (Resource<ObjectRef>,)| {
            Ok((to_wasm(cancel(store.data_mut(), obj))?,))
        },
    )?;
    Ok(())
}

fn submit(
    store: &mut Ctx<'_>,
    function: String,
    args: Vec<RawArg>,
    nested: Vec<Resource<ObjectRef>>,
    options: TaskOptions,
) -> HostCall<Resource<ObjectRef>> {
    let exec = store.data().exec()?;
    let (core, job) = (exec.core.clone(), exec.job.clone());
    let depth = match &exec.role {
        Role::Task { depth, .. } => depth.saturating_add(1),
        Role::Driver | Role::Actor { .. } => 1,
    };
    // The display name is not kept, but bounded like every name.
    if let Some(name) = options.name.as_deref() {
        check_name("task", name)?;
    }
    let admitted = admit(
        &core,
        &job,
        Creating::Task,
        &function,
        &options.resources,
        options.placement,
    )?;
    let function: std::sync::Arc<str> = function.into();
    // Charged before the arguments are copied out of the guest.
    let result_ref = reserve_result(store, &args, function.clone())?;
    let result = result_ref.id();
    let args = convert_args(store, args)?;
    let spec = TaskSpec {
        depth,
        nested: convert_nested(&store.data().table, &nested)?,
        demand: admitted.demand,
        strategy: admitted.strategy,
        max_retries: options.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_exceptions: options.retry_exceptions,
        ..TaskSpec::new(job, function, args, result)
    };
    // Refused when the job has its limit of tasks in flight: what stops a
    // task that submits itself without end.
    task::submit(&core, spec)?;
    Ok(store.data_mut().push_ref(result_ref)?)
}

fn cancel(state: &mut InstanceState, obj: Resource<ObjectRef>) -> HostCall<()> {
    let id = state.table.get(&obj)?.id();
    let core = &state.exec()?.core;
    if let Some(control) = core.tasks().remove(id) {
        control.cancel();
        core.port().cancel_forwarded(id);
        core.objects()
            .fulfill(id, Err(FabricError::Cancelled), Vec::new());
    }
    Ok(())
}
