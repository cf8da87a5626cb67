//! Creating, calling, killing and finding actors. In a cluster these go
//! through the node's cluster port: an actor may live on another node.

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource};

use super::{
    HostResult, RawArg, check_name, convert_args, convert_nested, demand_of, fail, reserve_result,
    strategy_of,
};
use crate::bindings::fabric::core::types::{ActorOptions, Id};
use crate::error::FabricError;
use crate::ids::ActorId;
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::actor::{self, ActorCall, ActorRecord, ActorSpec, Restarts};
use crate::runtime::instance::{InstanceState, Role};
use crate::runtime::job::scoped_namespace;
use crate::runtime::task::{Reply, TaskArg};
use std::sync::Arc;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "create-actor",
        |mut store: Ctx,
         (class, args, nested, options): (
            String,
            Vec<RawArg>,
            Vec<Resource<ObjectRef>>,
            ActorOptions,
        )| {
            Box::new(async move {
                let args = match convert_args(&store, args)? {
                    Ok(a) => a,
                    Err(e) => return Ok((Err(e.to_wit()),)),
                };
                Ok((create(store.data_mut(), class, args, nested, options).await?,))
            })
        },
    )?;
    host.func_wrap_async(
        "call-actor",
        |mut store: Ctx,
         (actor, method, args, nested): (Id, String, Vec<RawArg>, Vec<Resource<ObjectRef>>)| {
            Box::new(async move {
                if let Err(e) = check_name("method", &method) {
                    return Ok((Err(e.to_wit()),));
                }
                let method: Arc<str> = method.into();
                // Charged before the arguments are copied out of the guest.
                let result_ref = match reserve_result(&store, &args, method.clone())? {
                    Ok(r) => r,
                    Err(e) => return Ok((Err(e.to_wit()),)),
                };
                let args = match convert_args(&store, args)? {
                    Ok(a) => a,
                    Err(e) => return Ok((Err(e.to_wit()),)),
                };
                let call = ActorCall {
                    method,
                    args,
                    nested: convert_nested(&store.data().table, &nested)?,
                    result: result_ref.id(),
                    reply: Reply::Local,
                };
                Ok((send_call(store.data_mut(), actor, call, result_ref).await?,))
            })
        },
    )?;
    host.func_wrap_async("kill-actor", |mut store: Ctx, (actor,): (Id,)| {
        Box::new(async move { Ok((kill(store.data_mut(), actor).await?,)) })
    })?;
    host.func_wrap("save-checkpoint", |mut store: Ctx, (state,): (Vec<u8>,)| {
        Ok((save_checkpoint(store.data_mut(), state)?,))
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
            Box::new(async move { Ok((lookup(store.data_mut(), name, namespace).await?,)) })
        },
    )?;
    Ok(())
}

async fn create(
    state: &mut InstanceState,
    class: String,
    args: Vec<TaskArg>,
    nested: Vec<Resource<ObjectRef>>,
    options: ActorOptions,
) -> HostResult<Id> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let job = exec.job.clone();
    if let Err(e) = check_name("actor class", &class) {
        return fail(e);
    }
    // Like Ray, an actor holds no CPU unless it asks for one.
    let demand = match demand_of(&options.resources, 0.0) {
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
    let name = match options.name {
        None => None,
        Some(name) => {
            if let Err(e) = check_name("actor", &name) {
                return fail(e);
            }
            let ns = options.namespace.unwrap_or_else(|| job.namespace.clone());
            if let Err(e) = check_name("namespace", &ns) {
                return fail(e);
            }
            Some((scoped_namespace(&job.tenant, &ns), name))
        }
    };
    let policy = Restarts {
        max_restarts: options.max_restarts.unwrap_or(0),
        max_task_retries: options.max_task_retries.unwrap_or(0),
    };
    let spec = ActorSpec::new(
        ActorId::random(),
        job,
        class.into(),
        args,
        convert_nested(&state.table, &nested)?,
        demand,
        name,
        options.detached,
        policy,
    );
    let created = core
        .port()
        .create_actor(spec, strategy, options.get_if_exists)
        .await;
    Ok(created.map(|id| id.to_wit()).map_err(|e| e.to_wit()))
}

/// Sends `call` to `actor` (here or on its node); the caller gets its
/// pending result.
async fn send_call(
    state: &mut InstanceState,
    actor: Id,
    call: ActorCall,
    result_ref: ObjectRef,
) -> HostResult<Resource<ObjectRef>> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let tenant = exec.job.tenant.clone();
    let id = ActorId::from_wit(actor);
    let local = local_actor(&core, id, &tenant);
    let routed = match local {
        Some(record) => {
            record.call(&core, call);
            Ok(())
        }
        None => core.port().call_actor(id, &tenant, call).await,
    };
    match routed {
        Ok(()) => Ok(Ok(state.push_ref(result_ref)?)),
        Err(e) => fail(e),
    }
}

async fn kill(state: &mut InstanceState, actor: Id) -> HostResult<()> {
    let exec = state.exec()?;
    let (core, tenant) = (exec.core.clone(), exec.job.tenant.clone());
    let id = ActorId::from_wit(actor);
    let local = local_actor(&core, id, &tenant);
    let killed = match local {
        Some(record) => {
            actor::kill(
                &core,
                &record,
                format!("actor {}({}) was killed", record.class, id.short()),
            );
            Ok(())
        }
        None => core.port().kill_actor(id, &tenant).await,
    };
    Ok(killed.map_err(|e| e.to_wit()))
}

/// Largest checkpoint (it travels in one message to the creating node and
/// in the message that restarts the actor).
const MAX_CHECKPOINT: u64 = 64 << 20;

fn save_checkpoint(state: &mut InstanceState, bytes: Vec<u8>) -> HostResult<()> {
    let exec = state.exec()?;
    let Role::Actor { id, .. } = &exec.role else {
        return fail(FabricError::InvalidArgument(
            "only an actor can save a checkpoint".into(),
        ));
    };
    let max = exec.job.limits.result_bytes.min(MAX_CHECKPOINT);
    let len = bytes.len() as u64;
    if len > max {
        return fail(FabricError::limit(
            "checkpoint-bytes",
            max,
            format!("a checkpoint of {len} bytes"),
        ));
    }
    let Some(record) = exec.core.actors().get(id).map(|r| r.clone()) else {
        return fail(FabricError::ActorDied(format!("actor {id} is gone")));
    };
    record.save_checkpoint(&exec.core, bytes.into());
    Ok(Ok(()))
}

async fn lookup(
    state: &mut InstanceState,
    name: String,
    namespace: Option<String>,
) -> HostResult<Id> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let shown = namespace.unwrap_or_else(|| exec.job.namespace.clone());
    if let Err(e) = check_name("actor", &name).and_then(|()| check_name("namespace", &shown)) {
        return fail(e);
    }
    let ns = scoped_namespace(&exec.job.tenant, &shown);
    if let Some(id) = core.named_actors().get(&(ns.clone(), name.clone())) {
        return Ok(Ok(id.to_wit()));
    }
    let found = core.port().lookup_actor(&ns, &name).await;
    Ok(found.map(|id| id.to_wit()).map_err(|e| e.to_wit()))
}

/// An actor hosted here that belongs to `tenant`. Another tenant's actor is
/// not found, exactly as a missing one (no existence oracle).
fn local_actor(core: &NodeCore, id: ActorId, tenant: &str) -> Option<Arc<ActorRecord>> {
    core.actors()
        .get(&id)
        .filter(|r| &*r.job.tenant == tenant)
        .map(|r| r.clone())
}
