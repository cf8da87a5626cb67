//! Object references, `put`, `get`, `get-many`, `wait` and `adopt`.

use std::time::Duration;

use bytes::Bytes;
use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource, ResourceType, WasmList};

use super::{HostCall, convert_nested, to_wasm};
use crate::bindings::fabric::core::types::Id;
use crate::error::FabricError;
use crate::ids::ObjectId;
use crate::limits::exceeded;
use crate::object_store::{ObjectRef, ReadyCounter};
use crate::runtime::instance::InstanceState;
use crate::runtime::instance::Role;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.resource(
        "object-ref",
        ResourceType::host::<ObjectRef>(),
        |mut store, rep| {
            // Dropping the guard releases the guest's reference.
            store
                .data_mut()
                .take_ref(Resource::<ObjectRef>::new_own(rep))?;
            Ok(())
        },
    )?;
    host.func_wrap(
        "[method]object-ref.id",
        |store: Ctx, (this,): (Resource<ObjectRef>,)| {
            Ok((store.data().table.get(&this)?.id().to_wit(),))
        },
    )?;
    host.func_wrap(
        "[method]object-ref.clone",
        |mut store: Ctx, (this,): (Resource<ObjectRef>,)| {
            let state = store.data_mut();
            let copy = state.table.get(&this)?.clone();
            Ok((state.push_ref(copy)?,))
        },
    )?;
    host.func_wrap(
        "put",
        |mut store: Ctx, (value, nested): (WasmList<u8>, Vec<Resource<ObjectRef>>)| {
            Ok((to_wasm(put(&mut store, &[value], nested))?,))
        },
    )?;
    host.func_wrap(
        "put-bytes",
        |mut store: Ctx, (header, data): (WasmList<u8>, WasmList<u8>)| {
            if let Err(e) = check_bin_header(header.as_le_slice(&store), data.len()) {
                return Ok((Err(e.to_wit()),));
            }
            Ok((to_wasm(put(&mut store, &[header, data], Vec::new()))?,))
        },
    )?;
    host.func_wrap_async(
        "get",
        |mut store: Ctx, (obj, timeout): (Resource<ObjectRef>, Option<u64>)| {
            Box::new(async move { Ok((to_wasm(get(store.data_mut(), obj, timeout).await)?,)) })
        },
    )?;
    host.func_wrap_async(
        "get-many",
        |mut store: Ctx, (objs, timeout): (Vec<Resource<ObjectRef>>, Option<u64>)| {
            Box::new(
                async move { Ok((to_wasm(get_many(store.data_mut(), objs, timeout).await)?,)) },
            )
        },
    )?;
    host.func_wrap_async(
        "wait",
        |mut store: Ctx,
         (objs, num_ready, timeout): (Vec<Resource<ObjectRef>>, u32, Option<u64>)| {
            Box::new(async move {
                Ok((to_wasm(
                    wait(store.data_mut(), objs, num_ready, timeout).await,
                )?,))
            })
        },
    )?;
    host.func_wrap("adopt", |mut store: Ctx, (id,): (Id,)| {
        Ok((to_wasm(adopt(store.data_mut(), id))?,))
    })?;
    host.func_wrap("adopt-many", |mut store: Ctx, (ids,): (Vec<Id>,)| {
        Ok((to_wasm(adopt_many(store.data_mut(), ids))?,))
    })?;
    Ok(())
}

/// Stores the concatenation of `parts`, copied once out of guest memory.
fn put(
    store: &mut Ctx,
    parts: &[WasmList<u8>],
    nested: Vec<Resource<ObjectRef>>,
) -> HostCall<Resource<ObjectRef>> {
    let state = store.data();
    let exec = state.exec()?;
    let (objects, job) = (exec.core.objects().clone(), exec.job.id);
    let max = exec.job.limits.object_bytes;
    let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
    if len > max {
        let e = exceeded("object-bytes", max, format!("the object is {len} bytes"));
        return Err(e.into());
    }
    let nested = convert_nested(&state.table, &nested)?;
    let slices: Vec<&[u8]> = parts.iter().map(|p| p.as_le_slice(&*store)).collect();
    let stored = objects.put_parts(job, &slices, nested)?;
    Ok(store.data_mut().push_ref(stored)?)
}

/// `put-bytes` stores `header` and `data` as one MessagePack value: the
/// header must be a `bin` header (`bin 8`, `bin 16` or `bin 32`) whose
/// length is exactly `data`'s, or the object would not be the value the
/// caller says it is.
pub(crate) fn check_bin_header(header: &[u8], data_len: usize) -> Result<(), FabricError> {
    let bad = |why: String| {
        Err(FabricError::InvalidArgument(format!(
            "put-bytes: the header must be the MessagePack `bin` header of the data ({why})"
        )))
    };
    let (width, stated) = match header.first() {
        Some(0xc4) => (1, header.get(1..2).map(|b| u64::from(b[0]))),
        Some(0xc5) => (
            2,
            header
                .get(1..3)
                .map(|b| u64::from(u16::from_be_bytes([b[0], b[1]]))),
        ),
        Some(0xc6) => (
            4,
            header
                .get(1..5)
                .map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        ),
        Some(other) => return bad(format!("it starts with 0x{other:02x}")),
        None => return bad("it is empty".into()),
    };
    match stated {
        _ if header.len() != 1 + width => bad(format!("it is {} bytes long", header.len())),
        Some(n) if n == data_len as u64 => Ok(()),
        Some(n) => bad(format!("it says {n} bytes, the data is {data_len}")),
        None => bad("it is cut short".into()),
    }
}

/// A task that waits for one of its own results waits forever: refuse it.
fn not_own_result(state: &InstanceState, r: &ObjectRef) -> Result<(), FabricError> {
    match state.exec().map(|e| &e.role) {
        Ok(Role::Task {
            result,
            more_results,
            ..
        }) if *result == r.id() || more_results.contains(&r.id()) => {
            Err(FabricError::InvalidArgument(
                "a task cannot get its own result: it would wait for itself forever".into(),
            ))
        }
        _ => Ok(()),
    }
}

fn timeout_of(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

pub(super) async fn get(
    state: &mut InstanceState,
    obj: Resource<ObjectRef>,
    timeout: Option<u64>,
) -> HostCall<Bytes> {
    let r = state.table.get(&obj)?.clone();
    not_own_result(state, &r)?;
    if let Some(v) = r.try_get() {
        return Ok(v?);
    }
    // Waiting: give this instance's CPUs back meanwhile.
    let waited = std::time::Instant::now();
    let blocked = state.exec()?.lease.as_ref().and_then(|l| l.block());
    let value = r.get(timeout_of(timeout)).await;
    drop(blocked);
    state.blocked += waited.elapsed();
    Ok(value?)
}

async fn get_many(
    state: &mut InstanceState,
    objs: Vec<Resource<ObjectRef>>,
    timeout: Option<u64>,
) -> HostCall<Vec<Bytes>> {
    let refs = objs
        .iter()
        .map(|o| Ok(state.table.get(o)?.clone()))
        .collect::<wasmtime::Result<Vec<ObjectRef>>>()?;
    refs.iter().try_for_each(|r| not_own_result(state, r))?;
    let mut out = Vec::with_capacity(refs.len());
    let mut blocked = None;
    let waited = std::time::Instant::now();
    let deadline = timeout_of(timeout).map(|t| tokio::time::Instant::now() + t);
    for r in &refs {
        let value = match r.try_get() {
            Some(v) => v,
            None => {
                if blocked.is_none() {
                    blocked = state.exec()?.lease.as_ref().and_then(|l| l.block());
                }
                let left =
                    deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
                r.get(left).await
            }
        };
        match value {
            Ok(b) => out.push(b),
            Err(e) => {
                if blocked.take().is_some() {
                    state.blocked += waited.elapsed();
                }
                return Err(e.into());
            }
        }
    }
    if blocked.take().is_some() {
        state.blocked += waited.elapsed();
    }
    Ok(out)
}

async fn wait(
    state: &mut InstanceState,
    objs: Vec<Resource<ObjectRef>>,
    num_ready: u32,
    timeout: Option<u64>,
) -> HostCall<Vec<u32>> {
    if num_ready as usize > objs.len() {
        return Err(FabricError::InvalidArgument(format!(
            "num_ready ({num_ready}) is larger than the number of objects ({})",
            objs.len()
        ))
        .into());
    }
    let needed = num_ready as usize;
    // Fast path: enough are ready already. Scan in order and stop at the
    // `needed`-th, without taking references or registering listeners (a
    // loop of `wait(.., 1)` over tasks finishing in order stays O(1) here).
    let mut ready = Vec::with_capacity(needed);
    for (i, o) in objs.iter().enumerate() {
        if ready.len() == needed {
            break;
        }
        if state.table.get(o)?.is_ready() {
            ready.push(i as u32);
        }
    }
    if ready.len() == needed {
        return Ok(ready);
    }
    let refs = objs
        .iter()
        .map(|o| Ok(state.table.get(o)?.clone()))
        .collect::<wasmtime::Result<Vec<ObjectRef>>>()?;
    let counter = ReadyCounter::new(0, needed);
    let already = refs.iter().filter(|r| !r.on_ready(counter.clone())).count();
    counter.add_ready(already);
    if already < needed {
        let waited = std::time::Instant::now();
        let blocked = state.exec()?.lease.as_ref().and_then(|l| l.block());
        let waiting = counter.wait();
        match timeout_of(timeout) {
            Some(t) => {
                let _ = tokio::time::timeout(t, waiting).await;
            }
            None => waiting.await,
        }
        drop(blocked);
        state.blocked += waited.elapsed();
    }
    counter.close();
    let ready = refs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_ready())
        .map(|(i, _)| i as u32)
        .take(needed)
        .collect();
    Ok(ready)
}

/// A new reference to object `id` for the calling job. Another tenant's
/// object is not found, exactly as a missing one.
fn adopt_one(
    exec: &crate::runtime::instance::ExecContext,
    id: Id,
) -> Result<ObjectRef, FabricError> {
    let id = ObjectId::from_wit(id);
    exec.core
        .objects()
        .adopt(id)
        .and_then(|r| match exec.core.owned_by(&r, &exec.job) {
            true => Ok(r),
            false => Err(FabricError::NotFound(format!("object {id}"))),
        })
}

fn adopt(state: &mut InstanceState, id: Id) -> HostCall<Resource<ObjectRef>> {
    let r = adopt_one(state.exec()?, id)?;
    Ok(state.push_ref(r)?)
}

fn adopt_many(state: &mut InstanceState, ids: Vec<Id>) -> HostCall<Vec<Resource<ObjectRef>>> {
    let exec = state.exec()?;
    // All or nothing: take every reference before handing any out.
    let refs = ids
        .into_iter()
        .map(|id| adopt_one(exec, id))
        .collect::<Result<Vec<_>, _>>()?;
    let mut handles = Vec::with_capacity(refs.len());
    for r in refs {
        handles.push(state.push_ref(r)?);
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::check_bin_header;

    #[test]
    fn only_a_bin_header_of_the_datas_length_is_accepted() {
        assert!(check_bin_header(&[0xc4, 3], 3).is_ok());
        assert!(check_bin_header(&[0xc5, 0x01, 0x00], 256).is_ok());
        assert!(check_bin_header(&[0xc6, 0, 0x10, 0, 0], 1 << 20).is_ok());
        // A longer form than needed is still the data's bin header.
        assert!(check_bin_header(&[0xc6, 0, 0, 0, 3], 3).is_ok());
        for (header, len) in [
            (vec![], 0),
            (vec![0xc4], 0),
            (vec![0xc4, 4], 3),
            (vec![0xc4, 3, 0], 3),
            (vec![0x93, 1, 2], 0),
            (vec![0xc6, 0xff, 0xff, 0xff, 0xff], 3),
            (vec![0u8; 300 << 20], 0),
        ] {
            let e = check_bin_header(&header, len).unwrap_err().to_string();
            assert!(e.starts_with("invalid argument: put-bytes"), "{e}");
        }
    }
}
