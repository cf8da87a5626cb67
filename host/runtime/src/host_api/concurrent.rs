//! `next-event` and `finish-call`: the host calls a concurrent actor's
//! executor makes (see `runtime/concurrent.rs`).

use std::time::Duration;

use wasmtime::StoreContextMut;
use wasmtime::component::{LinkerInstance, Resource};

use super::{HostCall, to_wasm};
use crate::bindings::fabric::core::host::{ActorEvent, IncomingCall, Returned as WitReturned};
use crate::bindings::fabric::core::types::Error as WitError;
use crate::error::FabricError;
use crate::limits::exceeded;
use crate::object_store::{ObjectRef, ReadyCounter};
use crate::runtime::concurrent::{ConcurrentCalls, Event};
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

/// The first of: watched objects ready, a call to start (its arguments
/// here), the timeout. Calls past their wall time fail meanwhile.
async fn wait_for_event(
    calls: &mut ConcurrentCalls,
    refs: &[ObjectRef],
    timeout: Option<u64>,
) -> ActorEvent {
    let now = tokio::time::Instant::now();
    let deadline = timeout.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
    loop {
        calls.expire();
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
