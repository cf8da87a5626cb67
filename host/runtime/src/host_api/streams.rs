//! Streaming generators: `submit-stream`, `yield-item` and the
//! `item-stream` resource (see [`crate::runtime::streams`] for how items
//! travel and how backpressure works).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource, ResourceType, WasmList};

use super::tasks::{SubmitParams, single, submit};
use super::{HostCall, convert_nested, to_wasm};
use crate::error::FabricError;
use crate::ids::ObjectId;
use crate::limits::exceeded;
use crate::object_store::ObjectRef;
use crate::runtime::NodeCore;
use crate::runtime::instance::InstanceState;
use crate::runtime::streams::{
    DEFAULT_BACKPRESSURE, Item, MAX_BACKPRESSURE, OwnedStream, StreamHandle,
};
use crate::runtime::task::Reply;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.resource(
        "item-stream",
        ResourceType::host::<StreamHandle>(),
        |mut store, rep| {
            // Dropping the handle closes the stream.
            let handle = Resource::<StreamHandle>::new_own(rep);
            store.data_mut().take_counted(handle)?;
            Ok(())
        },
    )?;
    host.func_wrap_async(
        "[method]item-stream.next",
        |mut store: Ctx, (this, timeout): (Resource<StreamHandle>, Option<u64>)| {
            Box::new(async move { Ok((to_wasm(next(store.data_mut(), this, timeout).await)?,)) })
        },
    )?;
    host.func_wrap(
        "submit-stream",
        |mut store: Ctx, (function, args, nested, options): SubmitParams| {
            let opened = single(&options, "submit-returns")
                .and_then(|()| backpressure(options.backpressure))
                .and_then(|bound| submit(&mut store, function, args, nested, options, Some(bound)))
                .and_then(|(_, stream)| {
                    let stream = stream.expect("a streaming call opens its stream");
                    hand_out(store.data_mut(), stream)
                });
            Ok((to_wasm(opened)?,))
        },
    )?;
    host.func_wrap_async(
        "yield-item",
        |mut store: Ctx, (value, nested): (WasmList<u8>, Vec<Resource<ObjectRef>>)| {
            Box::new(async move { Ok((to_wasm(yield_item(&mut store, value, nested).await)?,)) })
        },
    )?;
    Ok(())
}

/// The backpressure a guest asked for, checked.
pub(crate) fn backpressure(asked: Option<u32>) -> HostCall<u32> {
    match asked.unwrap_or(DEFAULT_BACKPRESSURE) {
        n @ 1..=MAX_BACKPRESSURE => Ok(n),
        n => Err(FabricError::InvalidArgument(format!(
            "backpressure must be 1 to {MAX_BACKPRESSURE} items, got {n}"
        ))
        .into()),
    }
}

/// Gives the caller its stream, as an `item-stream` handle.
pub(crate) fn hand_out(
    state: &mut InstanceState,
    stream: Arc<OwnedStream>,
) -> HostCall<Resource<StreamHandle>> {
    let core = state.exec()?.core.clone();
    Ok(state.push_counted(StreamHandle { stream, core })?)
}

/// The stream's next item, waiting for it with the instance's CPUs handed
/// back.
async fn next(
    state: &mut InstanceState,
    this: Resource<StreamHandle>,
    timeout: Option<u64>,
) -> HostCall<Option<Resource<ObjectRef>>> {
    let handle = state.table.get(&this)?;
    let (stream, core) = (handle.stream.clone(), handle.core.clone());
    let waited = Instant::now();
    let blocked = state.exec()?.lease.as_ref().and_then(|l| l.block());
    let item = stream.next(&core, timeout.map(Duration::from_millis)).await;
    drop(blocked);
    state.blocked += waited.elapsed();
    match item? {
        Some(r) => Ok(Some(state.push_ref(r)?)),
        None => Ok(None),
    }
}

/// Hands the next item of the running generator to its caller: waits for
/// room first (backpressure), then copies the value out of the guest once.
async fn yield_item(
    store: &mut Ctx<'_>,
    value: WasmList<u8>,
    nested: Vec<Resource<ObjectRef>>,
) -> HostCall<()> {
    let state = store.data();
    let exec = state.exec()?;
    let core = exec.core.clone();
    let max = exec.job.limits.result_bytes;
    let len = value.len() as u64;
    check_item(max, len)?;
    let Some(g) = &state.generator else {
        let e = "yield-item outside a streaming call (submit it with `submit-stream`)";
        return Err(FabricError::InvalidArgument(e.into()).into());
    };
    let (stream, index, reply) = (g.stream, g.next, g.reply);
    let credit = g.credit.clone();
    if credit.is_closed() {
        return Err(FabricError::Cancelled.into());
    }
    if !credit.has(index) {
        // Waiting for the caller: this instance's CPUs go back meanwhile.
        let waited = Instant::now();
        let blocked = exec.lease.as_ref().and_then(|l| l.block());
        let state = store.data_mut();
        let generator = state.generator.as_mut().expect("checked");
        let room = generator.room_for(len).await;
        drop(blocked);
        state.blocked += waited.elapsed();
        room?;
    }
    if credit.has(index) {
        // A retried generator: the caller has this item already (checked
        // again: what it has may have come in while this one waited).
        store.data_mut().generator.as_mut().expect("checked").next += 1;
        return Ok(());
    }
    let nested = convert_nested(&store.data().table, &nested)?;
    let value = core.objects().copy_in(&[value.as_le_slice(&*store)]);
    deliver(&core, stream, index, reply, value, nested).await?;
    // Counted once on its way: after a failed send, the next `yield-item`
    // is this item again.
    if let Some(g) = store.data_mut().generator.as_mut() {
        g.sent(len);
    }
    Ok(())
}

/// Checks an item's size against the job's result limit.
pub(super) fn check_item(max: u64, len: u64) -> HostCall<()> {
    if len > max {
        let e = exceeded("result-bytes", max, format!("an item of {len} bytes"));
        return Err(e.into());
    }
    Ok(())
}

/// Hands item `index` of `stream` to its caller: into this node's
/// streams, or sent to the caller's node.
pub(super) async fn deliver(
    core: &Arc<NodeCore>,
    stream: ObjectId,
    index: u64,
    reply: Reply,
    value: bytes::Bytes,
    nested: Vec<ObjectRef>,
) -> HostCall<()> {
    match reply {
        Reply::Local => {
            let item = Item::Here(value, nested);
            core.streams().push(core, stream, index, None, item);
        }
        Reply::Remote { owner, job } => {
            let sent = core
                .port()
                .send_item(owner, job, stream, index, value, nested);
            sent.await?;
        }
    }
    Ok(())
}
