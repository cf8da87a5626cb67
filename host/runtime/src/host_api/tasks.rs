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
            let one = (options.num_returns.unwrap_or(1) == 1)
                .then_some(())
                .ok_or_else(|| {
                    FabricError::InvalidArgument("num_returns over 1 needs `submit-returns`".into())
                        .into()
                });
            let submitted = one.and_then(|()| submit(&mut store, function, args, nested, options));
            let first = submitted.map(|mut refs| refs.pop().expect("one result"));
            Ok((to_wasm(first)?,))
        },
    )?;
    host.func_wrap(
        "submit-returns",
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
) -> HostCall<Vec<Resource<ObjectRef>>> {
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
    let num_returns = options.num_returns.unwrap_or(1);
    if !(1..=task::MAX_NUM_RETURNS).contains(&num_returns) {
        return Err(FabricError::InvalidArgument(format!(
            "num_returns must be 1 to {}, got {num_returns}",
            task::MAX_NUM_RETURNS
        ))
        .into());
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
    // Its other values' objects cost only their own overhead.
    let more_refs = (1..num_returns)
        .map(|_| reserve_result(store, &[], function.clone()))
        .collect::<HostCall<Vec<ObjectRef>>>()?;
    let args = convert_args(store, args)?;
    let spec = TaskSpec {
        depth,
        nested: convert_nested(&store.data().table, &nested)?,
        demand: admitted.demand,
        strategy: admitted.strategy,
        max_retries: options.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_exceptions: options.retry_exceptions,
        more_results: more_refs.iter().map(ObjectRef::id).collect(),
        ..TaskSpec::new(job, function, args, result)
    };
    // Refused when the job has its limit of tasks in flight: what stops a
    // task that submits itself without end.
    task::submit(&core, spec)?;
    let state = store.data_mut();
    let mut handles = Vec::with_capacity(num_returns as usize);
    for r in std::iter::once(result_ref).chain(more_refs) {
        handles.push(state.push_ref(r)?);
    }
    Ok(handles)
}

fn cancel(state: &mut InstanceState, obj: Resource<ObjectRef>) -> HostCall<()> {
    let id = state.table.get(&obj)?.id();
    let core = &state.exec()?.core;
    // Any of a task's results names it.
    if let Some(control) = core.tasks().remove(id) {
        control.cancel();
        core.port().cancel_forwarded(control.result());
        for r in control.results() {
            core.objects()
                .fulfill(r, Err(FabricError::Cancelled), Vec::new());
        }
    }
    Ok(())
}
