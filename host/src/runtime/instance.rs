//! One sandboxed instance: its store data, and how it is created and called.
//!
//! Every task invocation gets a fresh [`Store`] and instance, every actor one
//! long-lived store, every driver one store. The store's data,
//! [`InstanceState`], holds the instance's WASI context (stdout and stderr
//! wired to the job's log sink; no files, environment or sockets), its
//! resource table (the object references it holds), its memory limits, and
//! its [`ExecContext`]: which node, job and role it runs as, and the resource
//! lease it holds.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{Instance, ResourceTable, TypedFunc};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::exports::fabric::core::guest::Output;
use crate::bindings::fabric::core::types::Error as WitError;
use crate::error::{FabricError, FailureKind};
use crate::ids::{ActorId, TaskId};
use crate::logs::{GuestOutput, LogSource, Stream};
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::job::Job;
use crate::scheduler::Lease;

/// What an instance runs as.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    Driver,
    Task { id: TaskId, function: Arc<str> },
    Actor { id: ActorId, class: Arc<str> },
}

/// Who an instance is, for the host calls it makes.
pub(crate) struct ExecContext {
    pub core: Arc<NodeCore>,
    pub job: Arc<Job>,
    pub role: Role,
    /// Resources held while it runs; its CPUs go back while it blocks.
    pub lease: Option<Lease>,
}

/// The data of every store.
pub struct InstanceState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limits: StoreLimits,
    pub(crate) exec: Option<ExecContext>,
    /// The message of a panic the guest reported just before it aborted.
    pub(crate) panic: Option<String>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl InstanceState {
    /// State for an instance that only type-checks exports and never runs.
    pub(crate) fn detached() -> Self {
        InstanceState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limits: StoreLimits::default(),
            exec: None,
            panic: None,
        }
    }

    pub(crate) fn exec(&self) -> wasmtime::Result<&ExecContext> {
        self.exec.as_ref().ok_or_else(|| {
            wasmtime::format_err!("host call from an instance with no execution context")
        })
    }
}

/// A store for `role`, with output wired to the job's logs.
pub(crate) fn new_store(
    core: &Arc<NodeCore>,
    job: &Arc<Job>,
    role: Role,
    lease: Option<Lease>,
    args: &[String],
) -> Store<InstanceState> {
    let source = match &role {
        Role::Driver => LogSource::driver(),
        Role::Task { id, function } => LogSource::task(function, &id.short()),
        Role::Actor { id, class } => LogSource::actor(class, &id.short()),
    };
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(GuestOutput::new(
        job.logs.clone(),
        source.clone(),
        Stream::Stdout,
    ))
    .stderr(GuestOutput::new(job.logs.clone(), source, Stream::Stderr))
    .args(args);
    let settings = core.engine.settings();
    let state = InstanceState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new()
            .memory_size(settings.max_instance_memory as usize)
            .trap_on_grow_failure(true)
            .build(),
        exec: Some(ExecContext {
            core: core.clone(),
            job: job.clone(),
            role,
            lease,
        }),
        panic: None,
    };
    let mut store = Store::new(core.engine.engine(), state);
    store.limiter(|s| &mut s.limits);
    // A single call may hand the host as much as the object store holds
    // (wasmtime's default allows 128 MiB per call).
    store.set_hostcall_fuel(core.objects.capacity_bytes().min(u64::from(u32::MAX)) as usize);
    // Yield to the async scheduler at every epoch tick.
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Instantiates the job's component in `store`.
pub(crate) async fn instantiate(
    store: &mut Store<InstanceState>,
    job: &Job,
    what: &str,
) -> Result<Instance, FabricError> {
    job.app
        .pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("maximum concurrent") || msg.contains("limit of") {
                FabricError::limit(
                    "instances",
                    u64::from(
                        store
                            .data()
                            .exec
                            .as_ref()
                            .map_or(0, |x| x.core.engine.settings().max_instances),
                    ),
                    format!("no instance slot free for {what}: {msg}"),
                )
            } else {
                FabricError::failure(
                    what,
                    FailureKind::System,
                    format!("instantiation failed: {msg}"),
                )
            }
        })
}

/// The result of a call that returns an `output`.
pub(crate) type CallResult = Result<(Bytes, Vec<ObjectRef>), FabricError>;

/// Calls `dispatch` or `actor-call` (same signature) and converts the result.
pub(crate) async fn call_output(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    export: &wasmtime::component::ComponentExportIndex,
    name: &str,
    args: &[Bytes],
    what: &str,
) -> CallResult {
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| FabricError::failure(what, FailureKind::System, "export vanished"))?;
    // SAFETY: the signature was checked when the component was loaded
    // (`component::typecheck`).
    let typed =
        unsafe { TypedFunc::<(&str, &[Bytes]), (Result<Output, WitError>,)>::new_unchecked(func) };
    match typed.call_async(&mut *store, (name, args)).await {
        Ok((Ok(output),)) => {
            let mut nested = Vec::with_capacity(output.nested.len());
            for r in output.nested {
                let guard = store.data_mut().table.delete(r).map_err(|e| {
                    FabricError::failure(
                        what,
                        FailureKind::Trap,
                        format!("bad nested reference: {e}"),
                    )
                })?;
                nested.push(guard);
            }
            Ok((Bytes::from(output.value), nested))
        }
        Ok((Err(e),)) => Err(FabricError::from_wit(e)),
        Err(e) => Err(trap_failure(what, e, store.data_mut().panic.take())),
    }
}

/// Calls `actor-new`.
pub(crate) async fn call_new(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    export: &wasmtime::component::ComponentExportIndex,
    class: &str,
    args: &[Bytes],
) -> Result<(), FabricError> {
    let what = format!("{class}.new");
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| FabricError::failure(&what, FailureKind::System, "export vanished"))?;
    // SAFETY: checked at load (`component::typecheck`).
    let typed =
        unsafe { TypedFunc::<(&str, &[Bytes]), (Result<(), WitError>,)>::new_unchecked(func) };
    match typed.call_async(&mut *store, (class, args)).await {
        Ok((r,)) => r.map_err(FabricError::from_wit),
        Err(e) => Err(trap_failure(&what, e, store.data_mut().panic.take())),
    }
}

/// Calls the driver's `main`.
pub(crate) async fn call_main(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    export: &wasmtime::component::ComponentExportIndex,
    args: &[String],
) -> Result<(), FabricError> {
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| FabricError::failure("main", FailureKind::System, "export vanished"))?;
    // SAFETY: checked at load (`component::typecheck`).
    let typed = unsafe { TypedFunc::<(&[String],), (Result<(), String>,)>::new_unchecked(func) };
    match typed.call_async(&mut *store, (args,)).await {
        Ok((Ok(()),)) => Ok(()),
        Ok((Err(msg),)) => Err(FabricError::failure(
            "main",
            FailureKind::ApplicationError,
            msg,
        )),
        Err(e) => Err(trap_failure("main", e, store.data_mut().panic.take())),
    }
}

/// Turns a trap into a typed failure: a reported panic keeps its message.
pub(crate) fn trap_failure(what: &str, err: wasmtime::Error, panic: Option<String>) -> FabricError {
    if let Some(message) = panic {
        return FabricError::failure(what, FailureKind::Panic, message);
    }
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let message = match trap {
        Some(t) => format!("{t}\n{err:?}"),
        None => format!("{err:#}"),
    };
    FabricError::failure(what, FailureKind::Trap, message)
}
