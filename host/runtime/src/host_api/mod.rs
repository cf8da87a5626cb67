//! The `fabric:core/host` interface: the host side of every guest import.
//!
//! Each capability links its own functions: [`objects`] (object references,
//! `put`, `get`, `wait`), `bytes` (reading a byte object into a guest's
//! buffer), [`tasks`] (`submit`, `cancel`), [`actors`]
//! (create, call, kill, look up), [`context`] (where the code runs, panic
//! reports) and `memory` (zeroing a large block of guest memory); new tasks
//! and actors pass one [`admit`] check. The functions are linked by hand rather than through generated
//! traits so that `get` can hand the store's shared [`bytes::Bytes`] straight
//! to the guest's memory, with no copy on the way.
//!
//! A guest that breaks the interface contract (a stale handle, say) traps:
//! only its own instance fails. Everything a well-formed guest can get wrong
//! comes back as a typed `error`.

pub(crate) mod actors;
mod admission;
mod bytes;
mod concurrent;
pub(crate) mod context;
mod groups;
mod introspect;
mod memory;
pub(crate) mod objects;
mod random;
mod streams;
pub(crate) mod tasks;

use wasmtime::component::{ComponentType, Lift, Linker, Resource, ResourceTable, WasmList};

use crate::bindings::fabric::core::types::{Error as WitError, Placement, Resources};
use crate::error::FabricError;
use crate::ids::NodeId;
use crate::limits::exceeded;
use crate::object_store::ObjectRef;
use crate::placement::Strategy;
use crate::resources::{ResourceSet, to_fixed};
use crate::runtime::instance::InstanceState;
use crate::runtime::task::{MAX_OBJECTS_PER_ARG, TaskArg};

pub(crate) const HOST_INTERFACE: &str = "fabric:core/host@0.1.0";
const TYPES_INTERFACE: &str = "fabric:core/types@0.1.0";

/// Longest function, class or actor name accepted.
const MAX_NAME: usize = 256;

/// Links WASI 0.2, `fabric:core/host` and `wasi:nn` (see
/// [`crate::wasi_nn`]) into `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    random::add_to_linker(linker)?;
    linker.instance(TYPES_INTERFACE)?;
    let mut host = linker.instance(HOST_INTERFACE)?;
    objects::add_to_linker(&mut host)?;
    bytes::add_to_linker(&mut host)?;
    tasks::add_to_linker(&mut host)?;
    streams::add_to_linker(&mut host)?;
    actors::add_to_linker(&mut host)?;
    concurrent::add_to_linker(&mut host)?;
    context::add_to_linker(&mut host)?;
    groups::add_to_linker(&mut host)?;
    introspect::add_to_linker(&mut host)?;
    memory::add_to_linker(&mut host)?;
    crate::wasi_nn::add_to_linker(linker)
}

pub(crate) use admission::{Creating, admit};

/// Why a host call returns no value: a typed error the guest gets back (it
/// got something wrong that a well-formed guest can), or a broken contract
/// (a stale handle, say) that traps its instance. Host calls return
/// [`HostCall`] and use `?` on both kinds; [`to_wasm`] splits them at the
/// linker.
#[derive(Debug)]
pub(crate) enum HostError {
    Guest(FabricError),
    Trap(wasmtime::Error),
}

impl From<FabricError> for HostError {
    fn from(e: FabricError) -> Self {
        HostError::Guest(e)
    }
}

impl From<wasmtime::Error> for HostError {
    fn from(e: wasmtime::Error) -> Self {
        HostError::Trap(e)
    }
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        HostError::Trap(e.into())
    }
}

/// What a host call returns inside the host.
pub(crate) type HostCall<T> = Result<T, HostError>;

/// A host call's outcome as the guest sees it: a value or a typed error,
/// or (a broken contract) a trap.
pub(crate) fn to_wasm<T>(r: HostCall<T>) -> wasmtime::Result<Result<T, WitError>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(HostError::Guest(e)) => Ok(Err(e.to_wit())),
        Err(HostError::Trap(t)) => Err(t),
    }
}

/// An argument as the guest passes it: a value is read straight out of the
/// guest's memory (after its size is checked), not copied by the lift.
#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum RawArg {
    #[component(name = "value")]
    Value(WasmList<u8>),
    #[component(name = "object")]
    Object(Resource<ObjectRef>),
    #[component(name = "objects")]
    Objects(Vec<Resource<ObjectRef>>),
}

/// Converts guest arguments: values become shared bytes (one copy, checked
/// against the job's argument limit first), object handles counted
/// references.
pub(crate) fn convert_args(store: &Ctx<'_>, args: Vec<RawArg>) -> HostCall<Vec<TaskArg>> {
    let state = store.data();
    let exec = state.exec()?;
    check_argument_bytes(exec.job.limits.argument_bytes, &args)?;
    check_argument_refs(&args)?;
    let objects = &exec.core.objects();
    let mut out = Vec::with_capacity(args.len());
    for a in args {
        out.push(match a {
            RawArg::Value(v) => TaskArg::Value(objects.copy_in(&[v.as_le_slice(store)])),
            RawArg::Object(r) => TaskArg::Object(state.table.get(&r)?.clone()),
            RawArg::Objects(refs) => TaskArg::Objects(convert_nested(&state.table, &refs)?),
        });
    }
    Ok(out)
}

/// Refuses a call that passes more than [`MAX_OBJECTS_PER_ARG`] objects in
/// `objects` arguments, all of them together.
fn check_argument_refs(args: &[RawArg]) -> Result<(), FabricError> {
    let refs = objects_in(args);
    if refs > MAX_OBJECTS_PER_ARG {
        return Err(FabricError::InvalidArgument(format!(
            "a call passing {refs} objects in `objects` arguments (at most {MAX_OBJECTS_PER_ARG})"
        )));
    }
    Ok(())
}

/// Objects passed in `objects` arguments.
fn objects_in(args: &[RawArg]) -> usize {
    args.iter()
        .map(|a| match a {
            RawArg::Objects(refs) => refs.len(),
            _ => 0,
        })
        .sum()
}

/// Host memory one object of an `objects` argument holds while the call is
/// pending (its counted reference and the listener waiting for it).
const OBJECT_ARG_OVERHEAD: u64 = 96;

/// Refuses arguments whose values pass the job's argument limit (`max`).
fn check_argument_bytes(max: u64, args: &[RawArg]) -> Result<(), FabricError> {
    let total = value_bytes(args);
    if total > max {
        return Err(exceeded(
            "argument-bytes",
            max,
            format!("the call's arguments are {total} bytes"),
        ));
    }
    Ok(())
}

pub(crate) type Ctx<'a> = wasmtime::StoreContextMut<'a, InstanceState>;

/// The pending result of a call of `producer` with `args` (not read from
/// the guest yet): its value arguments, while the call is pending, and its
/// own overhead are charged to the job before anything is copied. Refused
/// past the argument limit, the job's objects limit, the store's capacity or
/// the tenant's quota.
pub(crate) fn reserve_result(
    store: &Ctx<'_>,
    args: &[RawArg],
    producer: std::sync::Arc<str>,
) -> HostCall<ObjectRef> {
    let exec = store.data().exec()?;
    check_argument_bytes(exec.job.limits.argument_bytes, args)?;
    check_argument_refs(args)?;
    let id = crate::ids::ObjectId::random();
    let total = value_bytes(args) + objects_in(args) as u64 * OBJECT_ARG_OVERHEAD;
    Ok(exec
        .core
        .objects()
        .create_pending(id, exec.job.id, producer, total)?)
}

/// Bytes of the value arguments among `args`.
fn value_bytes(args: &[RawArg]) -> u64 {
    args.iter()
        .map(|a| match a {
            RawArg::Value(v) => v.len() as u64,
            RawArg::Object(_) | RawArg::Objects(_) => 0,
        })
        .sum()
}

/// Counted references for the handles a value nests.
pub(crate) fn convert_nested(
    table: &ResourceTable,
    nested: &[Resource<ObjectRef>],
) -> wasmtime::Result<Vec<ObjectRef>> {
    nested.iter().map(|r| Ok(table.get(r)?.clone())).collect()
}

/// Checks a name a guest gives (of a function, class, method, actor,
/// namespace, resource or label): every string a guest hands the host that
/// the host keeps is bounded.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), FabricError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(FabricError::InvalidArgument(format!(
            "{kind} name must be 1 to {MAX_NAME} bytes, got {}",
            name.len()
        )));
    }
    // The host's own calls to actors (a stop, a watch) have names no guest
    // can write.
    if name.contains('\0') {
        return Err(FabricError::InvalidArgument(format!(
            "{kind} name must not contain a NUL character"
        )));
    }
    Ok(())
}

/// A placement strategy from the WIT `placement` option.
pub(crate) fn strategy_of(p: Option<Placement>) -> Result<Strategy, FabricError> {
    let node = |s: &str| {
        s.parse::<NodeId>().map_err(|_| {
            FabricError::InvalidArgument(format!(
                "`{s}` is not a node id (32 hex digits, as `context` reports)"
            ))
        })
    };
    Ok(match p {
        None => Strategy::Default,
        Some(Placement::Spread) => Strategy::Spread,
        Some(Placement::Node(a)) => Strategy::Node {
            node: node(&a.node_id)?,
            soft: a.soft,
        },
        Some(Placement::Label(l)) => {
            check_name("label key", &l.key)?;
            check_name("label value", &l.value)?;
            Strategy::Label {
                key: l.key,
                value: l.value,
                soft: l.soft,
            }
        }
        Some(Placement::Bundle(b)) => Strategy::Bundle {
            group: crate::ids::GroupId::from_wit(b.group),
            index: b.index,
        },
    })
}

/// A demand from the WIT `resources` record, with `default_cpus` when unset.
pub(crate) fn demand_of(r: &Resources, default_cpus: f64) -> Result<ResourceSet, FabricError> {
    let bad = FabricError::InvalidArgument;
    let mut set = ResourceSet {
        cpu: to_fixed("num_cpus", r.num_cpus.unwrap_or(default_cpus)).map_err(bad)?,
        gpu: to_fixed("num_gpus", r.num_gpus.unwrap_or(0.0)).map_err(bad)?,
        memory: r.memory.unwrap_or(0).min(i64::MAX as u64) as i64,
        custom: Vec::new(),
    };
    for (name, amount) in &r.custom {
        check_name("resource", name)?;
        if name.starts_with(crate::bundles::RESERVED) {
            return Err(bad(format!(
                "resource names starting with `{}` are the host's own, got `{name}`",
                crate::bundles::RESERVED
            )));
        }
        if matches!(name.as_str(), "CPU" | "GPU" | "memory") {
            return Err(bad(format!(
                "`{name}` has its own option, not a custom resource"
            )));
        }
        let fixed = to_fixed(name, *amount).map_err(bad)?;
        set = set.with_custom(name, 0.0);
        let i = set
            .custom
            .iter()
            .position(|(n, _)| **n == **name)
            .expect("just inserted");
        set.custom[i].1 = fixed;
    }
    Ok(set)
}
