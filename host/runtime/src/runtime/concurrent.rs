//! Concurrent actors (Ray's `max_concurrency`): calls that take turns on
//! one actor's state while others wait on the host.
//!
//! A component instance runs one call at a time (entering a busy instance
//! traps), so concurrency here is interleaving, driven by the guest: the host
//! calls the guest's `actor-run` export once per instance, and the guest's
//! executor asks the host for work with `next-event` (a new call, some of the
//! objects its calls await are ready, a timer) and hands each outcome back
//! with `finish-call`. Between two `next-event`s one call runs; a call that
//! awaits an object yields to the executor, which runs another. The guest's
//! state is one value all calls share, so there is no copy to keep coherent.
//!
//! This module holds the host's half: [`ConcurrentCalls`], kept in the
//! instance's state while `actor-run` runs, owns the actor's mailbox for
//! that time and the calls in flight. Whatever way the run ends (a stop, a
//! trap, a kill that drops the instance), no call is left unanswered: the
//! calls in flight fail with the reason and queued ones stay queued for a
//! restarted instance, or fail with the actor.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::FabricError;
use crate::ids::ObjectId;
use crate::limits::exceeded;
use crate::object_store::{ObjectRef, ReadyCounter};
use crate::runtime::NodeCore;
use crate::runtime::actor::{ActorCall, ActorRecord, CallReceiver};
use crate::runtime::call_record::{ActorTag, CallRecord};
use crate::runtime::instance::Returned;
use crate::runtime::job::Job;
use crate::runtime::streams::{Credit, Generator, count_value};
use crate::runtime::task::{Reply, TaskArg, resolve_args};

/// Most calls a concurrent actor may have in flight.
pub const MAX_CONCURRENCY: u32 = 10_000;

/// A call the guest is running.
struct InFlight {
    result: ObjectId,
    reply: Reply,
    /// When the job's wall-time limit fails it, unless it finished.
    deadline: tokio::time::Instant,
    /// Its arguments' objects, held until it finishes.
    _held: (Vec<TaskArg>, Vec<ObjectRef>),
    /// Its method and event, recorded when it ends (when its job keeps
    /// events).
    ran: Option<(Arc<str>, CallRecord)>,
    /// A streaming call's generator: where its items go.
    generator: Option<Generator>,
}

/// What a concurrent actor's next event is, before it becomes the WIT's.
pub(crate) enum Event {
    Call {
        call: u64,
        method: Arc<str>,
        args: Vec<bytes::Bytes>,
    },
    Stop,
}

/// The host's side of a running `actor-run`.
pub(crate) struct ConcurrentCalls {
    core: Arc<NodeCore>,
    record: Arc<ActorRecord>,
    /// What its calls' events say of it.
    tag: ActorTag,
    job: Arc<Job>,
    /// The actor's mailbox, while the run has it (given back at its end).
    rx: Option<CallReceiver>,
    max: usize,
    in_flight: HashMap<u64, InFlight>,
    /// Calls taken from the mailbox whose object arguments are not all
    /// here yet: handed out once they are (they count against `max`).
    parked: VecDeque<ActorCall>,
    next_call: u64,
    /// Calls that wanted room and ended before it came (past their wall
    /// time): `room` names them, so the guest's next yield learns it.
    ended_waiting: Vec<u64>,
    /// The calls in flight that want room, with the bytes of the item a
    /// `yield-call-item` that could not wait refused: `next-event` looks at
    /// these alone, and says `room` once the item fits.
    wanting_room: HashMap<u64, u64>,
    /// A stop was handed out: no more calls.
    pub(crate) stopping: bool,
    /// Since when the guest has run without being billed.
    pub(crate) since: std::time::Instant,
}

impl ConcurrentCalls {
    pub(crate) fn new(
        core: Arc<NodeCore>,
        record: Arc<ActorRecord>,
        job: Arc<Job>,
        rx: CallReceiver,
        max: u32,
    ) -> Self {
        ConcurrentCalls {
            core,
            tag: ActorTag::of(&record),
            record,
            job,
            rx: Some(rx),
            max: max.clamp(1, MAX_CONCURRENCY) as usize,
            in_flight: HashMap::new(),
            parked: VecDeque::new(),
            next_call: 0,
            ended_waiting: Vec::new(),
            wanting_room: HashMap::new(),
            stopping: false,
            since: std::time::Instant::now(),
        }
    }

    /// Whether a new call may be taken from the mailbox now.
    pub(crate) fn has_room(&self) -> bool {
        !self.stopping && self.in_flight.len() + self.parked.len() < self.max && self.rx.is_some()
    }

    /// Calls in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bills the guest's running time since the last bill to its tenant.
    pub(crate) fn bill(&mut self) {
        let now = std::time::Instant::now();
        self.job.account.add_cpu(now - self.since);
        self.since = now;
    }

    /// A queued call, without waiting.
    pub(crate) fn try_take(&mut self) -> Option<ActorCall> {
        self.rx.as_mut()?.try_recv().ok().map(|c| *c)
    }

    /// The next queued call, waiting for one (`None`: the mailbox closed;
    /// it is dropped then, so no one waits on it again).
    pub(crate) async fn take(&mut self) -> Option<ActorCall> {
        let call = self.rx.as_mut()?.recv().await;
        if call.is_none() {
            self.rx = None;
        }
        call.map(|c| *c)
    }

    /// Parks `call` until its object arguments are here.
    pub(crate) fn park(&mut self, call: ActorCall) {
        self.parked.push_back(call);
    }

    /// The first parked call whose arguments are all here; `listener` is
    /// told when an argument of a call still parked arrives.
    pub(crate) fn unpark(&mut self, listener: &Arc<ReadyCounter>) -> Option<ActorCall> {
        let at = self.parked.iter().position(|c| args_ready(c, listener))?;
        self.parked.remove(at)
    }

    /// The earliest wall-time deadline of a call in flight.
    pub(crate) fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.in_flight.values().map(|c| c.deadline).min()
    }

    /// Fails the calls in flight past their wall-time deadline.
    pub(crate) fn expire(&mut self) {
        let now = tokio::time::Instant::now();
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let ms = self.job.limits.wall_time.as_millis() as u64;
        for id in late {
            if self.wanting_room.contains_key(&id) {
                // The guest waits for room that no longer matters: `room`
                // tells it, and its next yield learns the call ended.
                self.ended_waiting.push(id);
            }
            let e = exceeded(
                "wall-time",
                ms,
                format!("the call did not finish within {ms} ms"),
            );
            self.finish(id, Err(e));
        }
    }

    /// Turns a call whose arguments are here into an event for the guest,
    /// or answers it here (`None`: a generator method, an argument that
    /// failed).
    pub(crate) fn admit(&mut self, call: ActorCall) -> Option<Event> {
        if call.is_stop() {
            self.stopping = true;
            self.answer(
                call.result,
                call.reply,
                Ok((bytes::Bytes::new(), Vec::new())),
            );
            self.record
                .mark_dead("stopped: its last handle was dropped");
            return Some(Event::Stop);
        }
        let what = format!("{}.{}", self.record.class, call.method);
        let args = match resolve_args(&self.job, &what, &call.args) {
            Ok(a) => a,
            Err(e) => {
                self.answer(call.result, call.reply, Err(e));
                return None;
            }
        };
        let ran = self.job.events.is_on().then(|| {
            let mut ran = CallRecord::start(&call);
            ran.bytes_in = args.iter().map(|a| a.len() as u64).sum();
            (call.method.clone(), ran)
        });
        let id = self.next_call;
        self.next_call += 1;
        let method = call.method.clone();
        let generator = call
            .stream
            .map(|bound| Generator::start(&self.core, call.result, call.reply, bound));
        self.in_flight.insert(
            id,
            InFlight {
                result: call.result,
                reply: call.reply,
                deadline: tokio::time::Instant::now() + self.job.limits.wall_time,
                _held: (call.args, call.nested),
                ran,
                generator,
            },
        );
        Some(Event::Call {
            call: id,
            method,
            args,
        })
    }

    /// What `yield-call-item` finds of call `id`.
    pub(crate) fn streaming(&mut self, id: u64) -> Streaming<'_> {
        match self.in_flight.get_mut(&id) {
            Some(InFlight {
                generator: Some(g), ..
            }) => Streaming::Running(g),
            Some(_) => Streaming::NotAsked,
            None if id < self.next_call => Streaming::Ended,
            None => Streaming::Unknown,
        }
    }

    /// Call `id`'s item of `len` bytes found no room: `next-event` says
    /// `room` once it fits (or the stream closed).
    pub(crate) fn want_room(&mut self, id: u64, len: u64) {
        if self.in_flight.contains_key(&id) {
            self.wanting_room.insert(id, len);
        }
    }

    /// Call `id` yields again without waiting for `room` (its item fit
    /// after all, or it waits in the host): it wants no room now.
    pub(crate) fn clear_want(&mut self, id: u64) {
        self.wanting_room.remove(&id);
    }

    /// The credits of the calls that wait for room: a change to one of
    /// them may be room.
    pub(crate) fn waiting_credits(&self) -> Vec<Arc<Credit>> {
        let waiting = self
            .wanting_room
            .keys()
            .filter_map(|id| self.in_flight.get(id));
        waiting
            .filter_map(|c| c.generator.as_ref().map(|g| g.credit.clone()))
            .collect()
    }

    /// The calls that waited for room and have it now (or whose stream
    /// closed, or which ended): no longer waiting.
    pub(crate) fn room_ready(&mut self) -> Vec<u64> {
        let mut ready = std::mem::take(&mut self.ended_waiting);
        for (&id, &len) in &self.wanting_room {
            let Some(g) = self
                .in_flight
                .get_mut(&id)
                .and_then(|c| c.generator.as_mut())
            else {
                continue;
            };
            if g.credit.is_closed() || g.has_room(len) {
                ready.push(id);
            }
        }
        for id in &ready {
            self.wanting_room.remove(id);
        }
        ready
    }

    /// The guest finished call `id`. A call the host already failed (past
    /// its wall time) is ignored; `false` for an id never handed out.
    pub(crate) fn finish(&mut self, id: u64, outcome: Result<Returned, FabricError>) -> bool {
        match self.in_flight.remove(&id) {
            Some(call) => {
                if !self.wanting_room.is_empty() {
                    self.wanting_room.remove(&id);
                }
                let outcome = match &call.generator {
                    // A generator's value is the number of items it yielded.
                    Some(g) => outcome.map(|_| (count_value(g.next), Vec::new())),
                    None => outcome,
                };
                let bytes_out = outcome.as_ref().map_or(0, |(v, _)| v.len() as u64);
                let tag = &self.tag;
                let event = call
                    .ran
                    .map(|(m, ran)| ran.ended(tag, Some(m), &outcome, bytes_out));
                self.answer(call.result, call.reply, outcome);
                if let Some(event) = event {
                    self.tag.keep(event);
                }
                true
            }
            None => id < self.next_call,
        }
    }

    fn answer(&self, result: ObjectId, reply: Reply, outcome: Result<Returned, FabricError>) {
        self.core.complete(result, reply, outcome);
        self.record.done_one();
    }

    /// The run ended: the calls in flight fail with `why`, parked ones go
    /// back to the front of the mailbox's order (for a restarted instance),
    /// and the mailbox goes back.
    pub(crate) fn end(mut self, why: &FabricError) -> Option<Receiver> {
        self.fail_in_flight(why);
        let parked = std::mem::take(&mut self.parked);
        let rx = self.rx.take();
        Some(Receiver { parked, rx: rx? })
    }

    fn fail_in_flight(&mut self, why: &FabricError) {
        self.wanting_room.clear();
        for (_, call) in std::mem::take(&mut self.in_flight) {
            let failed = Err(why.clone());
            let event = call
                .ran
                .map(|(m, ran)| ran.ended(&self.tag, Some(m), &failed, 0));
            self.answer(call.result, call.reply, failed);
            if let Some(event) = event {
                self.tag.keep(event);
            }
        }
    }
}

/// What `yield-call-item` finds of a call.
pub(crate) enum Streaming<'a> {
    /// A streaming call in flight: its generator.
    Running(&'a mut Generator),
    /// A call in flight that its caller did not ask to stream.
    NotAsked,
    /// A call that ended (the host failed it past its wall time).
    Ended,
    /// An id `next-event` never handed out.
    Unknown,
}

/// The mailbox at the end of a run, with the calls the run had parked.
pub(crate) struct Receiver {
    pub(crate) parked: VecDeque<ActorCall>,
    pub(crate) rx: CallReceiver,
}

/// Whether every object argument of `call` is here (registering
/// `listener` on those that are not).
fn args_ready(call: &ActorCall, listener: &Arc<ReadyCounter>) -> bool {
    let mut ready = true;
    for r in call.args.iter().flat_map(TaskArg::objects) {
        if r.on_ready(listener.clone()) {
            ready = false;
        }
    }
    ready
}

impl Drop for ConcurrentCalls {
    /// Dropped with its instance (the actor was killed, or its job ended):
    /// nothing in flight, parked or queued is left unanswered.
    fn drop(&mut self) {
        let reason = self.record.death().unwrap_or_else(|| {
            format!(
                "actor {}({}) stopped",
                self.record.class,
                self.record.id.short()
            )
        });
        self.fail_in_flight(&FabricError::ActorDied(reason.clone()));
        let mut queued: Vec<ActorCall> = self.parked.drain(..).collect();
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            while let Ok(call) = rx.try_recv() {
                queued.push(*call);
            }
        }
        for call in queued {
            let outcome = match call.is_stop() {
                true => Ok((bytes::Bytes::new(), Vec::new())),
                false => Err(FabricError::ActorDied(reason.clone())),
            };
            self.answer(call.result, call.reply, outcome);
        }
    }
}

/// Runs a concurrent actor's instance until it stops (`None`) or its run
/// fails (`Some(why)`: the instance is poisoned; restart it or die). The
/// mailbox is the run's meanwhile, and comes back at its end.
pub(super) async fn serve(
    core: &Arc<NodeCore>,
    job: &Arc<Job>,
    exports: &crate::runtime::component::GuestExports,
    store: &mut wasmtime::Store<crate::runtime::instance::InstanceState>,
    inst: &wasmtime::component::Instance,
    mailbox: &mut super::actor::Mailbox,
    max: u32,
) -> Option<String> {
    let record = mailbox.record.clone();
    let label = format!("actor {}({})", record.class, record.id.short());
    let export = exports.actor_run?;
    let (_, closed) = mpsc::unbounded_channel();
    let rx = std::mem::replace(&mut mailbox.rx, closed);
    let mut calls = ConcurrentCalls::new(core.clone(), record.clone(), job.clone(), rx, max);
    calls.parked = std::mem::take(&mut mailbox.parked);
    store.data_mut().concurrent = Some(calls);
    let what = format!("{}.run", record.class);
    let ran = super::instance::call_run(store, inst, &export, &what).await;
    let calls = store.data_mut().concurrent.take();
    let stopped = calls.as_ref().is_some_and(|c| c.stopping);
    let failure = match ran {
        Ok(()) if stopped => None,
        Ok(()) => Some(FabricError::ActorDied(format!(
            "{label} died: its `actor-run` returned before it was told to stop"
        ))),
        Err(e) => Some(e),
    };
    let why = failure
        .clone()
        .unwrap_or_else(|| FabricError::ActorDied(format!("{label} stopped")));
    if let Some(mut calls) = calls {
        calls.bill();
        if let Some(back) = calls.end(&why) {
            // Parked calls were taken first: they go first again.
            mailbox.parked = back.parked;
            mailbox.rx = back.rx;
        }
    }
    match failure {
        None => {
            // Stopped with its last handle: nothing can name it any more.
            core.actors()
                .remove_if(&record.id, |_, r| Arc::ptr_eq(r, &record));
            None
        }
        Some(e) => Some(format!("{label} died: {e}")),
    }
}
