//! One sandboxed instance: its store data, and how it is created and called.
//!
//! Every task invocation gets a fresh [`Store`] and instance, every actor one
//! long-lived store, every driver one store. The store's data,
//! [`InstanceState`], holds the instance's WASI context (stdout and stderr
//! wired to the job's log sink; files, environment and sockets only as the
//! job's manifest grants them), its resource table (the object references it
//! holds), its [`Limiter`], its CPU accounting, and its [`ExecContext`]:
//! which node, job and role it runs as, and the resource lease it holds.
//!
//! Every limit a guest can break is recorded here when it is broken, so the
//! trap it causes comes back as a typed `limit-exceeded` error naming it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::{ComponentType, Instance, Lift, Resource, ResourceTable, TypedFunc};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::bindings::fabric::core::types::Error as WitError;
use crate::error::{FabricError, FailureKind};
use crate::ids::{ActorId, ObjectId, TaskId};
use crate::limits::{Limits, exceeded};
use crate::logs::{GuestOutput, LogSource, Stream};
use crate::manifest::DirMode;
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::component::AppComponent;
use crate::runtime::engine::EPOCH_TICK;
use crate::runtime::job::Job;
use crate::runtime::limiter::{Limiter, MemoryCharge};
use crate::runtime::slots::InstanceSlot;
use crate::scheduler::Lease;

/// What an instance runs as.
#[derive(Clone, Debug)]
pub(crate) enum Role {
    Driver,
    Task {
        id: TaskId,
        function: Arc<str>,
        result: ObjectId,
        /// Its other results (`num-returns`): none for most tasks.
        more_results: Box<[ObjectId]>,
        /// How deep in its task tree it runs (see [`crate::runtime::task::TaskSpec::depth`]).
        depth: u32,
    },
    Actor {
        id: ActorId,
        class: Arc<str>,
    },
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
    limiter: Limiter,
    pub(crate) exec: Option<ExecContext>,
    /// The message of a panic the guest reported just before it aborted.
    pub(crate) panic: Option<String>,
    /// A limit broken by a host call (the guest traps on it).
    pub(crate) breach: Option<FabricError>,
    /// Epoch ticks of running wasm in the current call, and the most allowed.
    ticks: u64,
    max_ticks: u64,
    /// Time the current call spent waiting in `get` or `wait`.
    pub(crate) blocked: Duration,
    /// Set when a call ended without returning (a trap, a panic, a broken
    /// limit, a timeout): the instance cannot be entered again. An error the
    /// guest returned does not set it.
    pub(crate) poisoned: bool,
    /// Object references in the handle table now, and the most it held.
    handles: usize,
    most_handles: usize,
    /// The streaming call running now, if it is one.
    pub(crate) generator: Option<super::streams::Generator>,
    /// A concurrent actor's calls, while its `actor-run` runs.
    pub(crate) concurrent: Option<super::concurrent::ConcurrentCalls>,
    /// What its `wasi:nn` models and tensors may hold, and hold: made at
    /// its first `wasi:nn` call, so instances that make none pay nothing.
    nn: Option<crate::wasi_nn::NnState>,
}

/// Host memory a guest's handle to an object costs (its slots in the
/// instance's handle tables), charged to the instance's memory for as long
/// as the instance lives: the tables keep their room when handles go.
pub(crate) const HANDLE_OVERHEAD: u64 = 256;

/// Handle-table growth is charged in steps of this many handles (one
/// tenant-meter update per step, not per handle).
const HANDLE_CHARGE_STEP: usize = 1024;

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
            limiter: Limiter::new(&Limits::default(), MemoryCharge::new(None)),
            exec: None,
            panic: None,
            breach: None,
            ticks: 0,
            max_ticks: u64::MAX,
            blocked: Duration::ZERO,
            poisoned: false,
            handles: 0,
            most_handles: 0,
            generator: None,
            concurrent: None,
            nn: None,
        }
    }

    /// Its `wasi:nn` state, the resource table its models live in, and the
    /// call's CPU time, which their native work counts in, and its work
    /// (whose GPUs a model may run on).
    pub(crate) fn nn_parts(
        &mut self,
    ) -> (
        &mut crate::wasi_nn::NnState,
        &mut ResourceTable,
        crate::wasi_nn::CpuClock<'_>,
    ) {
        let clock = crate::wasi_nn::CpuClock {
            ticks: &mut self.ticks,
            max_ticks: self.max_ticks,
            breach: &mut self.breach,
            exec: self.exec.as_ref(),
        };
        let (exec, limiter) = (&self.exec, &self.limiter);
        let nn = self.nn.get_or_insert_with(|| {
            let (granted, backend, tenant) = exec.as_ref().map_or((false, None, "".into()), |e| {
                let nn = e.core.config().nn.clone();
                (e.job.granted.nn, nn, e.job.tenant.clone())
            });
            crate::wasi_nn::NnState::new(granted, backend, limiter.charge().clone(), tenant)
        });
        (nn, &mut self.table, clock)
    }

    /// A new stretch of one call's running time begins (a concurrent
    /// actor's executor took an event): the CPU-time limit starts afresh.
    pub(crate) fn reset_ticks(&mut self) {
        self.ticks = 0;
    }

    pub(crate) fn exec(&self) -> wasmtime::Result<&ExecContext> {
        self.exec.as_ref().ok_or_else(|| {
            wasmtime::format_err!("host call from an instance with no execution context")
        })
    }

    /// The limits of this instance's job.
    pub(crate) fn limits(&self) -> Option<&Limits> {
        self.exec.as_ref().map(|e| &e.job.limits)
    }

    /// Hands the guest a reference: a new entry in its handle table, whose
    /// growth is charged to the instance.
    pub(crate) fn push_ref(&mut self, r: ObjectRef) -> wasmtime::Result<Resource<ObjectRef>> {
        self.push_counted(r)
    }

    /// Hands the guest a host resource, counted and charged as references
    /// are (see [`InstanceState::push_ref`]); [`InstanceState::take_counted`]
    /// takes it back.
    pub(crate) fn push_counted<T: Send + 'static>(
        &mut self,
        r: T,
    ) -> wasmtime::Result<Resource<T>> {
        let handle = self.table.push(r)?;
        self.handles += 1;
        if self.handles > self.most_handles {
            self.most_handles = self.handles;
            // Each full step of new room, once (a few handles are free).
            if self.most_handles.is_multiple_of(HANDLE_CHARGE_STEP) {
                self.limiter
                    .charge_more(HANDLE_CHARGE_STEP as u64 * HANDLE_OVERHEAD);
            }
        }
        Ok(handle)
    }

    /// Takes a reference out of the guest's handle table (it dropped it, or
    /// returned it inside a value).
    pub(crate) fn take_ref(&mut self, handle: Resource<ObjectRef>) -> wasmtime::Result<ObjectRef> {
        self.take_counted(handle)
    }

    /// Takes a resource [`InstanceState::push_counted`] handed out.
    pub(crate) fn take_counted<T: 'static>(&mut self, handle: Resource<T>) -> wasmtime::Result<T> {
        let r = self.table.delete(handle)?;
        self.handles -= 1;
        Ok(r)
    }

    /// Why the instance stopped, if a limit did it.
    fn take_breach(&mut self) -> Option<FabricError> {
        self.breach.take().or_else(|| self.limiter.take_breach())
    }
}

/// Epoch ticks in `d` (at least one).
pub(crate) fn ticks_in(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// One epoch tick of a running guest (`what`: "call", "request"): counted
/// as CPU time, the guest stopped (its breach recorded) past `max_ticks`,
/// else it yields so others run.
pub(crate) fn count_tick(
    ticks: &mut u64,
    max_ticks: u64,
    breach: &mut Option<FabricError>,
    what: &str,
) -> wasmtime::Result<UpdateDeadline> {
    *ticks += 1;
    if *ticks > max_ticks {
        let ms = max_ticks * EPOCH_TICK.as_millis() as u64;
        *breach = Some(exceeded(
            "cpu-time",
            ms,
            format!("the {what} ran for over {ms} ms of CPU time"),
        ));
        wasmtime::bail!("CPU time limit reached");
    }
    Ok(UpdateDeadline::Yield(1))
}

/// An instance's store, and the charge for its linear memory, which is
/// given back only once the store (and so the instance's memory, which the
/// pool decommits as the store drops) is gone.
pub(crate) struct Sandbox {
    store: std::mem::ManuallyDrop<Store<InstanceState>>,
    charge: Arc<MemoryCharge>,
    /// The instance's slot of the pool, given back after the store (an
    /// actor holds its slot itself, across restarts).
    _slot: Option<InstanceSlot>,
}

/// An instance that held this much has its memory returned to the system
/// at once when it ends, before its charge is.
const LARGE_INSTANCE: u64 = 64 << 20;

impl Drop for Sandbox {
    fn drop(&mut self) {
        // SAFETY: dropped once, here, and never used after.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.store) };
        if self.charge.held() >= LARGE_INSTANCE {
            crate::allocator::trim(true);
        }
        // The charge goes when `self.charge` (its last holder) drops, the
        // slot with `self._slot`.
    }
}

impl std::ops::Deref for Sandbox {
    type Target = Store<InstanceState>;
    fn deref(&self) -> &Store<InstanceState> {
        &self.store
    }
}

impl std::ops::DerefMut for Sandbox {
    fn deref_mut(&mut self) -> &mut Store<InstanceState> {
        &mut self.store
    }
}

/// A store for `role`, with output wired to the job's logs and the job's
/// limits and capabilities applied.
pub(crate) fn new_store(
    core: &Arc<NodeCore>,
    job: &Arc<Job>,
    role: Role,
    lease: Option<Lease>,
    slot: Option<InstanceSlot>,
    args: &[String],
) -> Sandbox {
    let source = match &role {
        Role::Driver => LogSource::driver(),
        Role::Task { id, function, .. } => LogSource::task(function, &id.short()),
        Role::Actor { id, class } => LogSource::actor(class, &id.short()),
    };
    let limits = &job.limits;
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(GuestOutput::new(
        job.logs.clone(),
        source.clone(),
        Stream::Stdout,
        limits.log_bytes,
    ))
    .stderr(GuestOutput::new(
        job.logs.clone(),
        source,
        Stream::Stderr,
        limits.log_bytes,
    ))
    .args(args)
    .envs(&job.granted.env);
    grant(&mut wasi, job);
    // wasmtime caps live handles per store (100,000 by default) and host
    // table entries (1,000,000), which would trap a driver holding more refs
    // than that long before its pending-tasks limit: allow that limit plus
    // room for puts and actors, twice (a `get_all` of every ref it holds
    // lends each one again for the call).
    let handles = limits
        .pending_tasks
        .saturating_add(100_000)
        .saturating_mul(2)
        .min(1 << 27) as usize;
    let mut table = ResourceTable::new();
    table.set_max_capacity(handles);
    let charge = MemoryCharge::new(Some(job.account.clone()));
    let state = InstanceState {
        wasi: wasi.build(),
        table,
        limiter: Limiter::new(limits, charge.clone()),
        exec: Some(ExecContext {
            core: core.clone(),
            job: job.clone(),
            role,
            lease,
        }),
        panic: None,
        breach: None,
        ticks: 0,
        max_ticks: ticks_in(limits.cpu_time),
        blocked: Duration::ZERO,
        poisoned: false,
        handles: 0,
        most_handles: 0,
        generator: None,
        concurrent: None,
        nn: None,
    };
    let mut store = Store::new(core.engine().engine(), state);
    store.limiter(|s| &mut s.limiter);
    // Bounds what one host call can copy out of the guest; our own checks
    // name the exact limit below this.
    store.set_hostcall_fuel(limits.host_call_bytes().min(usize::MAX as u64) as usize);
    store.set_max_component_handles(handles);
    if core.engine().settings().fuel_metering {
        let _ = store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
    }
    // At every epoch tick: count the running guest's CPU time, stop it past
    // its limit, else yield so others run.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        count_tick(&mut s.ticks, s.max_ticks, &mut s.breach, "call")
    });
    Sandbox {
        store: std::mem::ManuallyDrop::new(store),
        charge,
        _slot: slot,
    }
}

/// Applies the job's granted directories and network to a WASI context.
fn grant(wasi: &mut WasiCtxBuilder, job: &Job) {
    for d in &job.granted.dirs {
        let perms = match d.mode {
            DirMode::ReadOnly => FsPerms::ReadOnly,
            DirMode::ReadWrite => FsPerms::ReadWrite,
        };
        // Through the descriptor the job opened at admission, never by path.
        if let Err(e) = wasi.preopened_dir(d.descriptor_path(), &d.guest, perms) {
            tracing::warn!(dir = %d.host.display(), error = %e, "cannot open a granted directory");
        }
    }
    let allowed = job.granted.network.clone();
    if !allowed.is_empty() {
        // Sockets stay off (wasmtime-wasi's default) unless the job was
        // granted a destination; then only granted addresses pass the check.
        wasi.allow_tcp(true).allow_udp(true);
        wasi.allow_ip_name_lookup(job.granted.name_lookup);
        let allowed = Arc::new(allowed);
        wasi.socket_addr_check(move |addr, use_| {
            let ok = match use_ {
                // The implicit bind before a connect: any local address.
                SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                    addr.port() == 0 && addr.ip().is_unspecified()
                }
                SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                    allowed.contains(&addr)
                }
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
}

/// Instantiates `app`, a component of the store's job, in `store`.
pub(crate) async fn instantiate(
    store: &mut Store<InstanceState>,
    app: &AppComponent,
    what: &str,
) -> Result<Instance, FabricError> {
    app.pre.instantiate_async(&mut *store).await.map_err(|e| {
        if let Some(breach) = store.data_mut().take_breach() {
            return breach;
        }
        let msg = format!("{e:#}");
        if msg.contains("maximum concurrent") || msg.contains("limit of") {
            let max = store
                .data()
                .exec
                .as_ref()
                .map_or(0, |x| x.core.engine().settings().max_instances);
            exceeded(
                "instances",
                u64::from(max),
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

/// The guest's `output`, read straight out of its memory. The value is
/// copied out by the lift: wasmtime runs the guest's post-return (which
/// frees the list) before the call returns, so a borrowed `WasmList` would
/// point at freed memory.
#[derive(ComponentType, Lift)]
#[component(variant)]
enum RawOutput {
    #[component(name = "value")]
    Value(Vec<u8>),
    #[component(name = "parts")]
    Parts(RawParts),
}

/// The guest's `output-parts`.
#[derive(ComponentType, Lift)]
#[component(record)]
struct RawParts {
    #[component(name = "value")]
    value: Vec<u8>,
    #[component(name = "nested")]
    nested: Vec<Resource<ObjectRef>>,
    #[component(name = "ends")]
    ends: Vec<u32>,
    #[component(name = "nested-ends")]
    nested_ends: Vec<u32>,
}

impl RawOutput {
    fn into_parts(self) -> RawParts {
        match self {
            RawOutput::Value(value) => RawParts {
                value,
                nested: Vec::new(),
                ends: Vec::new(),
                nested_ends: Vec::new(),
            },
            RawOutput::Parts(parts) => parts,
        }
    }
}

/// One value a call returned, with the references inside it.
pub type Returned = (Bytes, Vec<ObjectRef>);

/// The result of a call that returns one value.
pub type CallResult = Result<Returned, FabricError>;

/// The result of a call that returns one or more values (a task with
/// `num-returns`), in order.
pub type CallOutputs = Result<Vec<Returned>, FabricError>;

/// Starts a call's CPU accounting.
fn begin_call(store: &mut Store<InstanceState>) -> Instant {
    let s = store.data_mut();
    s.ticks = 0;
    s.blocked = Duration::ZERO;
    Instant::now()
}

/// Charges the call's running time (less the time it waited in `get` or
/// `wait`, with its CPUs handed back) to its tenant.
fn end_call(store: &mut Store<InstanceState>, started: Instant) {
    let s = store.data();
    if let Some(exec) = &s.exec {
        exec.job
            .account
            .add_cpu(started.elapsed().saturating_sub(s.blocked));
    }
}

/// Runs `call` under the job's wall-clock limit.
async fn bounded<T>(
    wall: Duration,
    call: impl std::future::Future<Output = T>,
) -> Result<T, FabricError> {
    tokio::time::timeout(wall, call).await.map_err(|_| {
        let ms = wall.as_millis() as u64;
        exceeded(
            "wall-time",
            ms,
            format!("the call did not finish within {ms} ms"),
        )
    })
}

/// Calls `dispatch` or `actor-call` (same signature) and converts the
/// result with `values` (say, [`super::output::Parts::one`]), given the
/// guest's output, `what` and the job's result limit.
pub(crate) async fn call_output<R>(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    export: &wasmtime::component::ComponentExportIndex,
    name: &str,
    args: &[Bytes],
    what: &str,
    values: impl FnOnce(super::output::Parts, &str, u64) -> Result<R, FabricError>,
) -> Result<R, FabricError> {
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| FabricError::failure(what, FailureKind::System, "export vanished"))?;
    // SAFETY: the signature was checked when the component was loaded
    // (`component::typecheck`); `RawOutput` lifts the same `output` variant.
    let typed = unsafe {
        TypedFunc::<(&str, &[Bytes]), (Result<RawOutput, WitError>,)>::new_unchecked(func)
    };
    let limits = store
        .data()
        .exec
        .as_ref()
        .map(|e| e.job.limits.clone())
        .unwrap_or_default();
    let started = begin_call(store);
    let called = bounded(
        limits.wall_time,
        typed.call_async(&mut *store, (name, args)),
    )
    .await;
    end_call(store, started);
    store.data_mut().poisoned = !matches!(called, Ok(Ok(_)));
    match called {
        Ok(Ok((Ok(output),))) => {
            let output = output.into_parts();
            let mut nested = Vec::with_capacity(output.nested.len());
            for r in output.nested {
                let guard = store.data_mut().take_ref(r).map_err(|e| {
                    FabricError::failure(
                        what,
                        FailureKind::Trap,
                        format!("bad nested reference: {e}"),
                    )
                })?;
                nested.push(guard);
            }
            let parts = super::output::Parts {
                value: output.value,
                nested,
                ends: output.ends,
                nested_ends: output.nested_ends,
            };
            values(parts, what, limits.result_bytes)
        }
        Ok(Ok((Err(e),))) => Err(returned_error(e)),
        Ok(Err(e)) => Err(trap_failure(store, what, e)),
        Err(timeout) => Err(timeout),
    }
}

/// An error the guest returned (its own, or one it passed on with `?`):
/// it stays what it is, but is never a reason for the system to retry the
/// call (a child's lost node was the child's to retry).
pub(crate) fn returned_error(e: WitError) -> FabricError {
    match FabricError::from_wit(e).bounded() {
        FabricError::TaskFailed(mut f) => {
            f.retryable = false;
            FabricError::TaskFailed(f)
        }
        other => other,
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
    let wall = store
        .data()
        .limits()
        .map(|l| l.wall_time)
        .unwrap_or_default();
    let started = begin_call(store);
    let called = bounded(wall, typed.call_async(&mut *store, (class, args))).await;
    end_call(store, started);
    store.data_mut().poisoned = !matches!(called, Ok(Ok(_)));
    match called? {
        Ok((r,)) => r.map_err(returned_error),
        Err(e) => Err(trap_failure(store, &what, e)),
    }
}

/// Calls a concurrent actor's `actor-run`, which returns when the actor
/// stops. No wall-clock bound: the run is the actor's life (each stretch
/// between two events has the CPU-time limit, see `next-event`).
pub(crate) async fn call_run(
    store: &mut Store<InstanceState>,
    instance: &Instance,
    export: &wasmtime::component::ComponentExportIndex,
    what: &str,
) -> Result<(), FabricError> {
    let func = instance
        .get_func(&mut *store, export)
        .ok_or_else(|| FabricError::failure(what, FailureKind::System, "export vanished"))?;
    // SAFETY: checked at load (`component::typecheck`).
    let typed = unsafe { TypedFunc::<(), (Result<(), WitError>,)>::new_unchecked(func) };
    // Its CPU time is billed stretch by stretch (`next-event`), not here.
    begin_call(store);
    let called = typed.call_async(&mut *store, ()).await;
    store.data_mut().poisoned = true;
    match called {
        Ok((r,)) => r.map_err(returned_error),
        Err(e) => Err(trap_failure(store, what, e)),
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
    let wall = store
        .data()
        .limits()
        .map(|l| l.driver_wall_time)
        .unwrap_or_default();
    let started = begin_call(store);
    let called = bounded(wall, typed.call_async(&mut *store, (args,))).await;
    end_call(store, started);
    match called? {
        Ok((Ok(()),)) => Ok(()),
        Ok((Err(msg),)) => Err(FabricError::failure(
            "main",
            FailureKind::ApplicationError,
            msg,
        )),
        Err(e) => Err(trap_failure(store, "main", e)),
    }
}

/// Turns a trap into a typed failure: a broken limit names the limit, a
/// reported panic keeps its message.
pub(crate) fn trap_failure(
    store: &mut Store<InstanceState>,
    what: &str,
    err: wasmtime::Error,
) -> FabricError {
    if let Some(breach) = store.data_mut().take_breach() {
        return breach;
    }
    let state = store.data_mut();
    if let Some(message) = state.panic.take() {
        return FabricError::failure(what, FailureKind::Panic, message);
    }
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    if trap == Some(wasmtime::Trap::StackOverflow) {
        let max = state
            .exec
            .as_ref()
            .map_or(0, |e| e.core.engine().settings().max_wasm_stack as u64);
        return exceeded("wasm-stack", max, format!("{what} overflowed its stack"));
    }
    if trap == Some(wasmtime::Trap::OutOfFuel) {
        let fuel = state.limits().and_then(|l| l.fuel).unwrap_or(0);
        return exceeded("fuel", fuel, format!("{what} ran out of fuel"));
    }
    let message = format!("{err:#}");
    if message.contains("too much data is being copied between the host and the guest") {
        let max = state.limits().map_or(0, Limits::host_call_bytes);
        return exceeded(
            "host-call-bytes",
            max,
            format!("{what} tried to pass more than {max} bytes to the host in one call"),
        );
    }
    // `{:#}` is the error chain with the guest's wasm backtrace, never the
    // host's own backtrace (which would tell a tenant about the host).
    let message = match trap {
        Some(t) if !message.starts_with(&t.to_string()) => format!("{t}: {message}"),
        _ => message,
    };
    FabricError::failure(what, FailureKind::Trap, message)
}
