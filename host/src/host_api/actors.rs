//! Creating, calling, killing and finding actors.

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource};

use super::{HostResult, check_name, convert_args, convert_nested, demand_of, fail};
use crate::bindings::fabric::core::host::Arg;
use crate::bindings::fabric::core::types::{ActorOptions, Id};
use crate::error::FabricError;
use crate::ids::{ActorId, ObjectId};
use crate::object_store::ObjectRef;
use crate::runtime::actor::{self, ActorCall, ActorSpec};
use crate::runtime::instance::InstanceState;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap(
        "create-actor",
        |mut store: Ctx,
         (class, args, nested, options): (
            String,
            Vec<Arg>,
            Vec<Resource<ObjectRef>>,
            ActorOptions,
        )| { Ok((create(store.data_mut(), class, args, nested, options)?,)) },
    )?;
    host.func_wrap(
        "call-actor",
        |mut store: Ctx,
         (actor, method, args, nested): (Id, String, Vec<Arg>, Vec<Resource<ObjectRef>>)| {
            Ok((call(store.data_mut(), actor, method, args, nested)?,))
        },
    )?;
    host.func_wrap("kill-actor", |mut store: Ctx, (actor,): (Id,)| {
        Ok((kill(store.data_mut(), actor)?,))
    })?;
    host.func_wrap(
        "get-actor",
        |mut store: Ctx, (name, namespace): (String, Option<String>)| {
            Ok((lookup(store.data_mut(), name, namespace)?,))
        },
    )?;
    Ok(())
}

fn create(
    state: &mut InstanceState,
    class: String,
    args: Vec<Arg>,
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
    if let Err(e) = core.scheduler.check_feasible(&demand) {
        return fail(e);
    }
    if job.is_finished() {
        return fail(FabricError::Cancelled);
    }
    let id = ActorId::random();
    let name = match options.name {
        None => None,
        Some(name) => {
            if let Err(e) = check_name("actor", &name) {
                return fail(e);
            }
            let key = (
                options.namespace.unwrap_or_else(|| job.namespace.clone()),
                name,
            );
            match core.named_actors.entry(key.clone()) {
                dashmap::Entry::Occupied(existing) => {
                    if options.get_if_exists {
                        return Ok(Ok(existing.get().to_wit()));
                    }
                    return fail(FabricError::InvalidArgument(format!(
                        "an actor named `{}` already exists in namespace `{}`",
                        key.1, key.0
                    )));
                }
                dashmap::Entry::Vacant(slot) => {
                    slot.insert(id);
                }
            }
            Some(key)
        }
    };
    let args = convert_args(&state.table, args)?;
    let nested = convert_nested(&state.table, &nested)?;
    actor::spawn(
        &core,
        ActorSpec {
            id,
            job,
            class: class.into(),
            args,
            nested,
            demand,
            name,
        },
    );
    Ok(Ok(id.to_wit()))
}

fn call(
    state: &mut InstanceState,
    actor: Id,
    method: String,
    args: Vec<Arg>,
    nested: Vec<Resource<ObjectRef>>,
) -> HostResult<Resource<ObjectRef>> {
    let exec = state.exec()?;
    let core = exec.core.clone();
    let job_id = exec.job.id;
    if let Err(e) = check_name("method", &method) {
        return fail(e);
    }
    let id = ActorId::from_wit(actor);
    let Some(record) = core.actors.get(&id).map(|r| r.clone()) else {
        return fail(FabricError::NotFound(format!("actor {id}")));
    };
    let args = convert_args(&state.table, args)?;
    let nested = convert_nested(&state.table, &nested)?;
    let result = ObjectId::random();
    let result_ref = core.objects.create_pending(result, job_id);
    record.call(
        &core,
        ActorCall {
            method: method.into(),
            args,
            nested,
            result,
        },
    );
    Ok(Ok(state.table.push(result_ref)?))
}

fn kill(state: &mut InstanceState, actor: Id) -> HostResult<()> {
    let core = &state.exec()?.core;
    let id = ActorId::from_wit(actor);
    let Some(record) = core.actors.get(&id).map(|r| r.clone()) else {
        return fail(FabricError::NotFound(format!("actor {id}")));
    };
    actor::kill(
        core,
        &record,
        format!("actor {}({}) was killed", record.class, id.short()),
    );
    Ok(Ok(()))
}

fn lookup(state: &mut InstanceState, name: String, namespace: Option<String>) -> HostResult<Id> {
    let exec = state.exec()?;
    let ns = namespace.unwrap_or_else(|| exec.job.namespace.clone());
    match exec.core.named_actors.get(&(ns.clone(), name.clone())) {
        Some(id) => Ok(Ok(id.to_wit())),
        None => fail(FabricError::NotFound(format!(
            "no actor named `{name}` in namespace `{ns}`"
        ))),
    }
}
