//! `submit`, `submit-returns` and `cancel`.

use std::sync::Arc;

use wasmtime::component::{LinkerInstance, Resource};

use super::{
    Creating, Ctx, HostCall, RawArg, admit, check_name, convert_args, convert_nested,
    reserve_result, to_wasm,
};
use crate::bindings::fabric::core::types::TaskOptions;
use crate::error::FabricError;
use crate::object_store::ObjectRef;
use crate::runtime::instance::{InstanceState, Role};
use crate::runtime::streams::OwnedStream;
use crate::runtime::task::{self, TaskSpec};

/// Retries after a system failure when the caller does not say (Ray's default).
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 3;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap(
        "submit",
        |mut store: Ctx, (function, args, nested, options): SubmitParams| {
            let submitted = single(&options, "submit-returns")
                .and_then(|()| submit(&mut store, function, args, nested, options, None));
            let first = submitted.and_then(|(mut refs, _)| {
                Ok(store.data_mut().push_ref(refs.pop().expect("one result"))?)
            });
            Ok((to_wasm(first)?,))
        },
    )?;
    host.func_wrap(
        "submit-returns",
        |mut store: Ctx, (function, args, nested, options): SubmitParams| {
            let submitted = submit(&mut store, function, args, nested, options, None);
            let handles = submitted.and_then(|(refs, _)| {
                let state = store.data_mut();
                let handles = refs.into_iter().map(|r| state.push_ref(r));
                Ok(handles.collect::<wasmtime::Result<Vec<_>>>()?)
            });
            Ok((to_wasm(handles)?,))
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

/// What `submit`, `submit-returns` and `submit-stream` take.
pub(crate) type SubmitParams = (String, Vec<RawArg>, Vec<Resource<ObjectRef>>, TaskOptions);

/// Refuses `num-returns` over 1 where one reference comes back.
pub(crate) fn single(options: &TaskOptions, instead: &str) -> HostCall<()> {
    if options.num_returns.unwrap_or(1) == 1 {
        return Ok(());
    }
    let e = format!("num_returns over 1 needs `{instead}`");
    Err(FabricError::InvalidArgument(e).into())
}

/// Submits a task: the references to its results, in order, and, for a
/// streaming generator (`stream` is its backpressure), its stream, opened
/// before the task can yield into it.
pub(crate) fn submit(
    store: &mut Ctx<'_>,
    function: String,
    args: Vec<RawArg>,
    nested: Vec<Resource<ObjectRef>>,
    options: TaskOptions,
    stream: Option<u32>,
) -> HostCall<(Vec<ObjectRef>, Option<Arc<OwnedStream>>)> {
    let exec = store.data().exec()?;
    let (core, job) = (exec.core.clone(), exec.job.clone());
    let depth = match &exec.role {
        Role::Task { depth, .. } => depth.saturating_add(1),
        Role::Driver | Role::Actor { .. } => 1,
    };
    // `part/function` runs in another component of the job; a bare name,
    // in the caller's own.
    check_name("function", &function)?;
    let function = job.qualify(&exec.role, function)?;
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
    let function: Arc<str> = function.into();
    // Charged before the arguments are copied out of the guest.
    let result_ref = reserve_result(store, &args, function.clone())?;
    let result = result_ref.id();
    // Its other values' objects cost only their own overhead.
    let more_refs = (1..num_returns)
        .map(|_| reserve_result(store, &[], function.clone()))
        .collect::<HostCall<Vec<ObjectRef>>>()?;
    let args = convert_args(store, args)?;
    let opened = stream.map(|bound| {
        let r = result_ref.clone();
        core.streams().open(job.clone(), r, function.clone(), bound)
    });
    let spec = TaskSpec {
        depth,
        nested: convert_nested(&store.data().table, &nested)?,
        demand: admitted.demand,
        strategy: admitted.strategy,
        max_retries: options.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
        retry_exceptions: options.retry_exceptions,
        more_results: more_refs.iter().map(ObjectRef::id).collect(),
        stream,
        ..TaskSpec::new(job, function, args, result)
    };
    let mut refs = Vec::with_capacity(num_returns as usize);
    refs.push(result_ref);
    refs.extend(more_refs);
    // Refused when the job has its limit of tasks in flight: what stops a
    // task that submits itself without end.
    if let Err(e) = task::submit(&core, spec) {
        core.streams().forget(result);
        return Err(e.into());
    }
    Ok((refs, opened))
}

fn cancel(state: &mut InstanceState, obj: Resource<ObjectRef>) -> HostCall<()> {
    let id = state.table.get(&obj)?.id();
    // Any of a task's results names it.
    task::cancel(&state.exec()?.core, id);
    Ok(())
}
