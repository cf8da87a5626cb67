//! `next-event`, `yield-call-item` and `finish-call`: the host calls a
//! concurrent actor's executor makes (see `runtime/concurrent.rs`).

use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource, WasmList};

use super::streams::{check_item, deliver};
use super::{HostCall, convert_nested, to_wasm};
use crate::bindings::fabric::core::host::{ActorEvent, IncomingCall, Returned as WitReturned};
use crate::bindings::fabric::core::types::Error as WitError;
use crate::error::FabricError;
use crate::limits::exceeded;
use crate::object_store::{ObjectRef, ReadyCounter};
use crate::runtime::concurrent::{ConcurrentCalls, Event, Streaming};
use crate::runtime::instance::InstanceState;

type Ctx<'a> = StoreContextMut<'a, InstanceState>;

/// Most objects one `next-event` may watch.
const MAX_WATCHED: usize = 65_536;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "next-event",
        |mut store: Ctx, (watch, timeout): (Vec<Resource<ObjectRef>>, Option<u64>)| {
            Box::new(
                async move { Ok((to_wasm(next_event(store.data_mut(), watch, timeout).await)?,)) },
            )
        },
    )?;
    host.func_wrap_async(
        "yield-call-item",
        |mut store: Ctx, (call, value, nested, wait): YieldParams| {
            Box::new(async move {
                Ok((to_wasm(
                    yield_call_item(&mut store, call, value, nested, wait).await,
                )?,))
            })
        },
    )?;
    host.func_wrap(
        "finish-call",
        |mut store: Ctx, (call, outcome): (u64, Result<WitReturned, WitError>)| {
            finish_call(store.data_mut(), call, outcome)
        },
    )?;
    Ok(())
}

async fn next_event(
    state: &mut InstanceState,
    watch: Vec<Resource<ObjectRef>>,
    timeout: Option<u64>,
) -> HostCall<ActorEvent> {
    if watch.len() > MAX_WATCHED {
        return Err(FabricError::InvalidArgument(format!(
            "next-event: {} objects watched (at most {MAX_WATCHED})",
            watch.len()
        ))
        .into());
    }
    let refs = watch
        .iter()
        .map(|r| Ok(state.table.get(r)?.clone()))
        .collect::<wasmtime::Result<Vec<ObjectRef>>>()?;
    let Some(in_flight) = state.concurrent.as_ref().map(|c| c.in_flight()) else {
        return Err(FabricError::InvalidArgument(
            "next-event: only a concurrent actor's `actor-run` takes events".into(),
        )
        .into());
    };
    // Waiting only on what its calls await: its CPUs go back meanwhile (an
    // idle actor keeps them, as a sequential one does).
    let blocked = match in_flight {
        0 => None,
        _ => state.exec()?.lease.as_ref().and_then(|l| l.block()),
    };
    // Nothing below fails until it is put back.
    let mut calls = state.concurrent.take().expect("checked just now");
    // The guest ran since its last event: that is its tenant's CPU time.
    calls.bill();
    // Each stretch of guest code between two events gets the CPU-time
    // limit afresh: no stretch runs longer.
    state.reset_ticks();
    let waited = std::time::Instant::now();
    let event = wait_for_event(&mut calls, &refs, timeout).await;
    drop(blocked);
    state.blocked += waited.elapsed();
    calls.since = std::time::Instant::now();
    state.concurrent = Some(calls);
    Ok(event)
}

type YieldParams = (u64, WasmList<u8>, Vec<Resource<ObjectRef>>, bool);

/// What became of an item before it goes.
enum Room {
    /// It may go now, as item `index` of `stream`, to `reply`.
    Now(crate::ids::ObjectId, u64, crate::runtime::task::Reply),
    /// The caller has it already (a retried call): skipped.
    Had,
    /// No room: the guest waits for it.
    Wait,
    /// No room, and the guest will not wait.
    Refused,
}

/// Hands the next item of streaming call `call` to its caller: `false`
/// when there is no room and the guest does not `wait`.
async fn yield_call_item(
    store: &mut Ctx<'_>,
    call: u64,
    value: WasmList<u8>,
    nested: Vec<Resource<ObjectRef>>,
    wait: bool,
) -> HostCall<bool> {
    let exec = store.data().exec()?;
    let core = exec.core.clone();
    check_item(exec.job.limits.result_bytes, value.len() as u64)?;
    let len = value.len() as u64;
    let mut room = room_for(store.data_mut(), call, len, wait)?;
    while let Room::Wait = room {
        wait_for_room(store.data_mut(), call, len).await?;
        room = room_for(store.data_mut(), call, len, wait)?;
    }
    let (stream, index, reply) = match room {
        Room::Now(stream, index, reply) => (stream, index, reply),
        Room::Had => return Ok(true),
        Room::Refused | Room::Wait => return Ok(false),
    };
    let nested = convert_nested(&store.data().table, &nested)?;
    let value = core.objects().copy_in(&[value.as_le_slice(&*store)]);
    deliver(&core, stream, index, reply, value, nested).await?;
    // Counted once on its way: after a failed send, the next yield is
    // this item again.
    if let Some(calls) = store.data_mut().concurrent.as_mut()
        && let Streaming::Running(g) = calls.streaming(call)
    {
        g.sent(len);
    }
    Ok(true)
}

/// Where call `call`'s next item of `len` bytes stands.
fn room_for(state: &mut InstanceState, call: u64, len: u64, wait: bool) -> HostCall<Room> {
    let Some(calls) = state.concurrent.as_mut() else {
        let e = "yield-call-item: only a concurrent actor's `actor-run` has calls";
        return Err(FabricError::InvalidArgument(e.into()).into());
    };
    let g = match calls.streaming(call) {
        Streaming::Running(g) => g,
        Streaming::NotAsked => {
            let e = format!(
                "yield-call-item: call {call} is not streaming (its caller did not ask for a stream)"
            );
            return Err(FabricError::InvalidArgument(e).into());
        }
        Streaming::Ended => return Err(FabricError::Cancelled.into()),
        Streaming::Unknown => {
            return Err(
                wasmtime::format_err!("yield-call-item: call {call} was never handed out").into(),
            );
        }
    };
    if g.credit.is_closed() {
        // Told now: no `room` is owed for it any more.
        calls.clear_want(call);
        return Err(FabricError::Cancelled.into());
    }
    let index = g.next;
    let room = if g.credit.has(index) {
        g.next += 1;
        Room::Had
    } else if g.has_room(len) {
        Room::Now(g.stream, index, g.reply)
    } else if wait {
        Room::Wait
    } else {
        calls.want_room(call, len);
        return Ok(Room::Refused);
    };
    // Refused before, but yielding again without waiting for `room`: no
    // `room` is owed for it.
    calls.clear_want(call);
    Ok(room)
}

/// Waits, with the instance's CPUs handed back, until call `call`'s
/// caller makes room for an item of `len` bytes, its stream closes, or the
/// call ends (past its wall time: the host fails it). The actor's other
/// calls wait meanwhile (the guest asked to wait), but those past their
/// wall time are failed as they would be in `next-event`; the wait is no
/// CPU time of its tenant's.
async fn wait_for_room(state: &mut InstanceState, call: u64, len: u64) -> HostCall<()> {
    let blocked = state.exec()?.lease.as_ref().and_then(|l| l.block());
    let waited = Instant::now();
    let Some(calls) = state.concurrent.as_mut() else {
        return Ok(());
    };
    calls.bill();
    loop {
        calls.expire();
        let Streaming::Running(g) = calls.streaming(call) else {
            break;
        };
        let credit = g.credit.clone();
        let changed = credit.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if credit.is_closed() || g.has_room(len) {
            break;
        }
        let Some(wake) = calls.next_deadline() else {
            break;
        };
        tokio::select! {
            _ = changed => {},
            _ = tokio::time::sleep_until(wake) => {},
        }
    }
    calls.since = Instant::now();
    drop(blocked);
    state.blocked += waited.elapsed();
    Ok(())
}

/// Resolves once one of `changes` fires.
async fn any_change(changes: &mut [Pin<Box<tokio::sync::futures::Notified<'_>>>]) {
    std::future::poll_fn(|cx| {
        for n in changes.iter_mut() {
            if n.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// The first of: watched objects ready, a call to start (its arguments
/// here), room for a streaming call that waits for it, the timeout. Calls
/// past their wall time fail meanwhile.
async fn wait_for_event(
    calls: &mut ConcurrentCalls,
    refs: &[ObjectRef],
    timeout: Option<u64>,
) -> ActorEvent {
    let now = tokio::time::Instant::now();
    let deadline = timeout.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
    loop {
        calls.expire();
        // Enabled before looking, so that room made in between is seen.
        let credits = calls.waiting_credits();
        let mut changes: Vec<_> = credits.iter().map(|c| Box::pin(c.changed())).collect();
        for c in &mut changes {
            c.as_mut().enable();
        }
        let room = calls.room_ready();
        if !room.is_empty() {
            return ActorEvent::Room(room);
        }
        let counter = ReadyCounter::new(0, 1);
        let ready: Vec<u32> = refs
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.on_ready(counter.clone()))
            .map(|(i, _)| i as u32)
            .collect();
        if !ready.is_empty() {
            counter.close();
            return ActorEvent::Ready(ready);
        }
        if let Some(call) = calls.unpark(&counter) {
            counter.close();
            match calls.admit(call) {
                Some(event) => return to_wit(event),
                None => continue,
            }
        }
        if calls.has_room()
            && let Some(call) = calls.try_take()
        {
            counter.close();
            calls.park(call);
            continue;
        }
        if calls.stopping && calls.in_flight() == 0 && refs.is_empty() && deadline.is_none() {
            // Nothing can come: say so again rather than wait forever.
            counter.close();
            return ActorEvent::Stop;
        }
        let room = calls.has_room();
        let wake = [deadline, calls.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match wake {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let timed_out = tokio::select! {
            call = calls.take(), if room => {
                if let Some(call) = call {
                    calls.park(call);
                }
                false
            },
            _ = counter.wait() => false,
            _ = any_change(&mut changes), if !changes.is_empty() => false,
            _ = sleep => deadline.is_some_and(|d| tokio::time::Instant::now() >= d),
        };
        counter.close();
        if timed_out {
            calls.expire();
            return ActorEvent::Timeout;
        }
    }
}

fn to_wit(event: Event) -> ActorEvent {
    match event {
        Event::Call { call, method, args } => ActorEvent::Call(IncomingCall {
            call,
            method: method.to_string(),
            args: args.iter().map(|a| a.to_vec()).collect(),
        }),
        Event::Stop => ActorEvent::Stop,
    }
}

fn finish_call(
    state: &mut InstanceState,
    call: u64,
    outcome: Result<WitReturned, WitError>,
) -> wasmtime::Result<()> {
    let max = state.exec()?.job.limits.result_bytes;
    let outcome = match outcome {
        Ok(r) => {
            let mut nested = Vec::with_capacity(r.nested.len());
            for h in r.nested {
                nested.push(state.take_ref(h)?);
            }
            let len = r.value.len() as u64;
            match len > max {
                true => Err(exceeded(
                    "result-bytes",
                    max,
                    format!("the result is {len} bytes"),
                )),
                false => Ok((bytes::Bytes::from(r.value), nested)),
            }
        }
        Err(e) => Err(FabricError::from_wit(e)),
    };
    let Some(calls) = state.concurrent.as_mut() else {
        wasmtime::bail!("finish-call outside a concurrent actor's `actor-run`");
    };
    if !calls.finish(call, outcome) {
        wasmtime::bail!("finish-call: call {call} is not in flight");
    }
    Ok(())
}
