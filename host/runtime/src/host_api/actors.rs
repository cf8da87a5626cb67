//! Creating, calling, killing and finding actors. In a cluster these go
//! through the node's cluster port: an actor may live on another node.
//!
//! A guest holds an actor through a handle: a counted reference to the
//! actor's handle object, whose id is the actor's (`ObjectStore::anchor`).
//! The host takes the actor's id from the handle, never from a value the
//! guest wrote, so a guest can call only actors it was handed.

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource};

use super::{
    Creating, HostCall, RawArg, admit, check_name, convert_args, convert_nested, reserve_result,
    to_wasm,
};
use crate::bindings::fabric::core::types::ActorOptions;
use crate::error::FabricError;
use crate::ids::ActorId;
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::actor::{self, ActorCall, ActorRecord, ActorSpec, MAX_CONCURRENCY, Restarts};
use crate::runtime::instance::{InstanceState, Role};
use crate::runtime::job::Job;
use crate::runtime::job::scoped_namespace;
use crate::runtime::routers::{CallRouter, RemoteRouter, SERVE_NAMESPACE, is_router_id};
use crate::runtime::streams::OwnedStream;
use crate::runtime::task::Reply;
use std::sync::Arc;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "create-actor",
        |store: Ctx,
         (class, args, nested, options): (
            String,
            Vec<RawArg>,
            Vec<Resource<ObjectRef>>,
            ActorOptions,
        )| {
            Box::new(async move {
                let mut store = store;
                let created = create(&mut store, class, args, nested, options).await;
                let handle = created.and_then(|r| Ok(store.data_mut().push_ref(r)?));
                Ok((to_wasm(handle)?,))
            })
        },
    )?;
    host.func_wrap_async(
        "call-actor",
        |store: Ctx,
         (actor, method, args, nested): (
            Resource<ObjectRef>,
            String,
            Vec<RawArg>,
            Vec<Resource<ObjectRef>>,
        )| {
            Box::new(async move {
                let mut store = store;
                let called = call(&mut store, actor, method, args, nested, None).await;
                let handle = called.and_then(|(r, _)| Ok(store.data_mut().push_ref(r)?));
                Ok((to_wasm(handle)?,))
            })
        },
    )?;
    host.func_wrap_async(
        "call-actor-stream",
        |store: Ctx, (actor, method, args, nested, backpressure): CallStreamParams| {
            Box::new(async move {
                let mut store = store;
                let called = match super::streams::backpressure(backpressure) {
                    Ok(bound) => call(&mut store, actor, method, args, nested, Some(bound)).await,
                    Err(e) => Err(e),
                };
                let handle = called.and_then(|(_, stream)| {
                    let stream = stream.expect("a streaming call opens its stream");
                    super::streams::hand_out(store.data_mut(), stream)
                });
                Ok((to_wasm(handle)?,))
            })
        },
    )?;
    add_lifecycle(host)
}

/// Killing, watching, saving and finding actors.
fn add_lifecycle(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "kill-actor",
        |mut store: Ctx, (actor,): (Resource<ObjectRef>,)| {
            Box::new(async move { Ok((to_wasm(kill(store.data_mut(), actor).await)?,)) })
        },
    )?;
    host.func_wrap_async(
        "watch-actor",
        |store: Ctx, (actor,): (Resource<ObjectRef>,)| {
            Box::new(async move {
                let mut store = store;
                let watched = watch(&mut store, actor).await;
                let handle = watched.and_then(|r| Ok(store.data_mut().push_ref(r)?));
                Ok((to_wasm(handle)?,))
            })
        },
    )?;
    host.func_wrap("save-checkpoint", |mut store: Ctx, (state,): (Vec<u8>,)| {
        Ok((to_wasm(save_checkpoint(store.data_mut(), state))?,))
    })?;
    host.func_wrap("load-checkpoint", |store: Ctx, (): ()| {
        let exec = store.data().exec()?;
        let saved = match &exec.role {
            Role::Actor { id, .. } => exec.core.actors().get(id).and_then(|r| r.checkpoint()),
            _ => None,
        };
        Ok((saved.map(|b| b.to_vec()),))
    })?;
    host.func_wrap_async(
        "get-actor",
        |mut store: Ctx, (name, namespace): (String, Option<String>)| {
            Box::new(async move {
                let found = lookup(store.data_mut(), name, namespace).await;
                let handle = found.and_then(|r| Ok(store.data_mut().push_ref(r)?));
                Ok((to_wasm(handle)?,))
            })
        },
    )?;
    Ok(())
}

/// Creates an actor (here or on another node): admitted before its
/// arguments are copied out of the guest.
async fn create(
    store: &mut Ctx<'_>,
    class: String,
    args: Vec<RawArg>,
    nested: Vec<Resource<ObjectRef>>,
    options: ActorOptions,
) -> HostCall<ObjectRef> {
    let exec = store.data().exec()?;
    let (core, job) = (exec.core.clone(), exec.job.clone());
    check_name("class", &class)?;
    let class = job.qualify(&exec.role, class)?;
    let what = match (&options.name, options.get_if_exists) {
        (Some(_), true) => Creating::ActorIfAbsent,
        _ => Creating::Actor,
    };
    let admitted = admit(
        &core,
        &job,
        what,
        &class,
        &options.resources,
        options.placement,
    )?;
    let name = match options.name {
        None => None,
        Some(name) => {
            check_name("actor", &name)?;
            let ns = options.namespace.unwrap_or_else(|| job.namespace.clone());
            check_name("namespace", &ns)?;
            if ns == SERVE_NAMESPACE {
                let why = format!("the namespace `{SERVE_NAMESPACE}` holds Serve's deployments");
                return Err(FabricError::InvalidArgument(why).into());
            }
            Some((scoped_namespace(&job.tenant, &ns), name))
        }
    };
    let args = convert_args(store, args)?;
    let max_concurrency = match options.max_concurrency {
        None => 0,
        Some(n @ 1..=MAX_CONCURRENCY) => n,
        Some(n) => {
            return Err(FabricError::InvalidArgument(format!(
                "max-concurrency must be 1 to {MAX_CONCURRENCY}, got {n}"
            ))
            .into());
        }
    };
    let policy = Restarts {
        max_restarts: options.max_restarts.unwrap_or(0),
        max_task_retries: options.max_task_retries.unwrap_or(0),
        max_concurrency,
    };
    // Named and detached actors live until killed (or their job ends);
    // any other lives while a handle to it does.
    let counted = name.is_none() && !options.detached;
    let spec = ActorSpec::new(
        ActorId::random(),
        job.clone(),
        class.into(),
        args,
        convert_nested(&store.data().table, &nested)?,
        admitted.demand,
        name,
        options.detached,
        policy,
    );
    let created = core
        .port()
        .create_actor(spec, admitted.strategy, options.get_if_exists)
        .await?;
    match core.objects().anchor(created, job.id, counted) {
        Ok(handle) => Ok(handle),
        Err(e) => {
            // No handle to give: the actor must not live on unreachable.
            if counted {
                let _ =
                    kill_by_id(&core, created, &job.tenant, "its handle could not be made").await;
            }
            Err(e.into())
        }
    }
}

/// What `call-actor-stream` takes.
type CallStreamParams = (
    Resource<ObjectRef>,
    String,
    Vec<RawArg>,
    Vec<Resource<ObjectRef>>,
    Option<u32>,
);

/// Calls `method` of `actor` (here or on its node); the caller gets its
/// pending result, and for a generator method (`stream` is its
/// backpressure) its stream, opened before the call is queued.
async fn call(
    store: &mut Ctx<'_>,
    actor: Resource<ObjectRef>,
    method: String,
    args: Vec<RawArg>,
    nested: Vec<Resource<ObjectRef>>,
    stream: Option<u32>,
) -> HostCall<(ObjectRef, Option<Arc<OwnedStream>>)> {
    check_name("method", &method)?;
    let keep = store.data().table.get(&actor)?.clone();
    let id = ActorId::from_u128(keep.id().as_u128());
    let method: Arc<str> = method.into();
    // Charged before the arguments are copied out of the guest.
    let result_ref = reserve_result(store, &args, method.clone())?;
    let args = convert_args(store, args)?;
    let exec = store.data().exec()?;
    let core = exec.core.clone();
    let tenant = exec.job.tenant.clone();
    // The router this handle names, and whether it is this node's.
    let router = match core.routers().get(&id, &tenant) {
        Some(router) => Some((router, true)),
        None => remote_router(&core, &exec.job, id).map(|r| (r, false)),
    };
    let caller = match &exec.role {
        Role::Actor { id, .. } => Some(*id),
        _ => None,
    };
    let opened = stream.map(|bound| {
        let job = exec.job.clone();
        core.streams()
            .open(job, result_ref.clone(), method.clone(), bound)
    });
    let call = ActorCall {
        method,
        args,
        nested: convert_nested(&store.data().table, &nested)?,
        result: result_ref.id(),
        reply: Reply::Local,
        stream,
        queued_us: 0,
        keep: Some(keep),
    };
    let delivered = match router {
        None => deliver(&core, id, &tenant, call).await,
        Some((router, here)) => {
            let actor = (!here).then_some(id);
            let how = (&*router, caller, actor);
            deliver_routed(&core, how, &tenant, call, &result_ref).await
        }
    };
    if let Err(e) = delivered {
        core.streams().forget(result_ref.id());
        return Err(e.into());
    }
    Ok((result_ref, opened))
}

/// Hands `call` to the actor `router` places it at for `caller` (after
/// waiting for a place, as the router bounds them), and gives the place
/// back once the call's `result` is in. A router on another node that
/// does not know the id (`actor`: it is an actor's, see `is_router_id`)
/// has the call delivered to that actor.
async fn deliver_routed(
    core: &Arc<NodeCore>,
    (router, caller, actor): (&dyn CallRouter, Option<ActorId>, Option<ActorId>),
    tenant: &str,
    call: ActorCall,
    result: &ObjectRef,
) -> Result<(), FabricError> {
    let place = match router.place(caller).await {
        Ok(place) => place,
        Err(FabricError::NotFound(_)) if let Some(id) = actor => {
            return deliver(core, id, tenant, call).await;
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = deliver(core, place.actor, tenant, call).await {
        (place.done)(Some(&e));
        return Err(e);
    }
    let (result, done) = (result.clone(), place.done);
    core.runtime().spawn(async move {
        // Settled, not fetched: the value stays where it is.
        result.settled().await;
        done(result.failure().as_ref());
    });
    Ok(())
}

/// The router `id` names, when it is marked as one and is not here: the
/// one the job's driver node registered (an actor of the job placed here
/// calls its serve node's deployment).
fn remote_router(core: &Arc<NodeCore>, job: &Job, id: ActorId) -> Option<Arc<dyn CallRouter>> {
    if !is_router_id(id) || job.driver == core.id() || local_actor(core, id, &job.tenant).is_some()
    {
        return None;
    }
    Some(Arc::new(RemoteRouter {
        core: core.clone(),
        node: job.driver,
        id,
        tenant: job.tenant.clone(),
    }))
}

/// Hands `call` to actor `id` of `tenant`, here or on its node.
pub(crate) async fn deliver(
    core: &Arc<NodeCore>,
    id: ActorId,
    tenant: &str,
    call: ActorCall,
) -> Result<(), FabricError> {
    match local_actor(core, id, tenant) {
        Some(record) => {
            record.call(core, call);
            Ok(())
        }
        None => core.port().call_actor(id, tenant, call).await,
    }
}

/// A reference that fails with `actor-died` once `actor` ends (see
/// `runtime/watch.rs`); charged to the caller's job like a call's result.
async fn watch(store: &mut Ctx<'_>, actor: Resource<ObjectRef>) -> HostCall<ObjectRef> {
    let id = actor_of(store.data(), &actor)?;
    let result_ref = reserve_result(store, &[], "watch-actor".into())?;
    let exec = store.data().exec()?;
    let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
    let call = ActorCall::watch(result_ref.id(), Reply::Local);
    deliver(&core, id, &tenant, call).await?;
    Ok(result_ref)
}

/// The actor a handle names (its handle object's id).
fn actor_of(state: &InstanceState, handle: &Resource<ObjectRef>) -> HostCall<ActorId> {
    Ok(ActorId::from_u128(state.table.get(handle)?.id().as_u128()))
}

async fn kill(state: &mut InstanceState, actor: Resource<ObjectRef>) -> HostCall<()> {
    let id = actor_of(state, &actor)?;
    let exec = state.exec()?;
    let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
    Ok(kill_by_id(&core, id, &tenant, "was killed").await?)
}

/// Kills actor `id` of `tenant`, here or on its node.
pub(crate) async fn kill_by_id(
    core: &Arc<NodeCore>,
    id: ActorId,
    tenant: &str,
    why: &str,
) -> Result<(), FabricError> {
    match local_actor(core, id, tenant) {
        Some(record) => {
            let why = format!("actor {}({}) {why}", record.class, id.short());
            actor::kill(core, &record, why);
            Ok(())
        }
        None => core.port().kill_actor(id, tenant).await,
    }
}

/// Largest checkpoint (it travels in one message to the creating node and
/// in the message that restarts the actor).
const MAX_CHECKPOINT: u64 = 64 << 20;

fn save_checkpoint(state: &mut InstanceState, bytes: Vec<u8>) -> HostCall<()> {
    let exec = state.exec()?;
    let Role::Actor { id, .. } = &exec.role else {
        return Err(
            FabricError::InvalidArgument("only an actor can save a checkpoint".into()).into(),
        );
    };
    let max = exec.job.limits.result_bytes.min(MAX_CHECKPOINT);
    let len = bytes.len() as u64;
    if len > max {
        let e = FabricError::limit(
            "checkpoint-bytes",
            max,
            format!("a checkpoint of {len} bytes"),
        );
        return Err(e.into());
    }
    let Some(record) = exec.core.actors().get(id).map(|r| r.clone()) else {
        return Err(FabricError::ActorDied(format!("actor {id} is gone")).into());
    };
    record.save_checkpoint(&exec.core, bytes.into());
    Ok(())
}

async fn lookup(
    state: &mut InstanceState,
    name: String,
    namespace: Option<String>,
) -> HostCall<ObjectRef> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let shown = namespace.unwrap_or_else(|| exec.job.namespace.clone());
    check_name("actor", &name)?;
    check_name("namespace", &shown)?;
    let ns = scoped_namespace(&exec.job.tenant, &shown);
    let local = core
        .named_actors()
        .get(&(ns.clone(), name.clone()))
        .map(|id| *id);
    let id = match local {
        Some(id) => id,
        // Deployments are their serve node's, the job's driver's (see
        // `runtime/routers.rs`).
        None if shown == SERVE_NAMESPACE && exec.job.driver != core.id() => {
            let (driver, tenant) = (exec.job.driver, &exec.job.tenant);
            core.port()
                .lookup_router(driver, tenant, &shown, &name)
                .await?
        }
        None if shown == SERVE_NAMESPACE => {
            return Err(FabricError::NotFound(format!(
                "no deployment `{name}` of this tenant is served from this node"
            ))
            .into());
        }
        None => core.port().lookup_actor(&ns, &name).await?,
    };
    // A named actor is not counted: its handle object here (the one this
    // node holds, or a new one) only carries its id.
    Ok(exec.core.objects().anchor(id, exec.job.id, false)?)
}

/// An actor hosted here that belongs to `tenant`. Another tenant's actor is
/// not found, exactly as a missing one (no existence oracle).
pub(crate) fn local_actor(core: &NodeCore, id: ActorId, tenant: &str) -> Option<Arc<ActorRecord>> {
    core.actors()
        .get(&id)
        .filter(|r| &*r.job.tenant == tenant)
        .map(|r| r.clone())
}
