//! What an actor's call or construction leaves in its job's record of what
//! ran (see [`crate::task_events`]): its times, bytes and outcome, however
//! it ends. A call cut short (its actor killed, its job ended: the actor's
//! task is dropped mid-call) is recorded as the actor's death by
//! [`Recording`]'s drop.

use std::sync::Arc;

use crate::error::FabricError;
use crate::runtime::actor::{ActorCall, ActorRecord};

/// What every event of one actor instance says of it, made once per
/// instance (its class a copy of its own: no other thread touches it).
pub(crate) struct ActorTag {
    id: crate::ids::ActorId,
    class: Arc<str>,
    /// Its restarts so far (which instance this is).
    incarnation: u32,
    /// Its job's record (none: the node keeps no events).
    events: Option<Arc<crate::task_events::JobEvents>>,
}

impl ActorTag {
    pub(crate) fn of(record: &ActorRecord) -> Self {
        let events = &record.job.events;
        ActorTag {
            id: record.id,
            class: Arc::from(&*record.class),
            incarnation: record.restarts(),
            events: events.is_on().then(|| events.clone()),
        }
    }

    /// Keeps the event of a call of this instance in its job's record.
    pub(crate) fn keep(&self, event: crate::task_events::TaskEvent) {
        if let Some(events) = &self.events {
            events.record(event);
        }
    }
}

/// An actor call as its event records it, from when it starts: a few
/// numbers while it runs (its event is made when it ends).
pub(crate) struct CallRecord {
    kind: crate::task_events::CallKind,
    id: u128,
    queued_us: u64,
    started_us: u64,
    pub(crate) bytes_in: u64,
}

impl CallRecord {
    /// `call` starts now.
    pub(crate) fn start(call: &ActorCall) -> Self {
        let now = crate::task_events::now_us();
        CallRecord {
            kind: crate::task_events::CallKind::ActorCall,
            id: call.result.as_u128(),
            queued_us: call.queued_us.min(now),
            started_us: now,
            bytes_in: 0,
        }
    }

    /// An instance of `tag`'s actor is built now (its constructor runs),
    /// since `queued_us`.
    pub(crate) fn creation(tag: &ActorTag, queued_us: u64, bytes_in: u64) -> Self {
        let now = crate::task_events::now_us();
        CallRecord {
            kind: crate::task_events::CallKind::ActorCreation,
            id: tag.id.as_u128(),
            queued_us: queued_us.min(now),
            started_us: now,
            bytes_in,
        }
    }

    /// The call (of `method`; none: the constructor) on `tag`'s instance
    /// ended now with `outcome` (`bytes_out` its value's size): its event,
    /// to record once the caller has its answer (off the call's path).
    pub(crate) fn ended<T>(
        self,
        tag: &ActorTag,
        method: Option<Arc<str>>,
        outcome: &Result<T, FabricError>,
        bytes_out: u64,
    ) -> crate::task_events::TaskEvent {
        let function = method.unwrap_or_else(|| "new".into());
        let mut event = crate::task_events::TaskEvent::new(self.kind, self.id, function);
        event = event.ended(outcome);
        event.actor = Some((tag.id, tag.class.clone()));
        event.attempt = tag.incarnation;
        event.queued_us = self.queued_us;
        event.started_us = self.started_us;
        event.bytes_in = self.bytes_in;
        event.bytes_out = bytes_out;
        event
    }
}

/// A [`CallRecord`] that is recorded however the call ends: its drop
/// records a call cut short.
pub(crate) struct Recording<'a> {
    tag: &'a ActorTag,
    /// The call (none for a construction).
    call: Option<&'a ActorCall>,
    ran: Option<CallRecord>,
}

impl<'a> Recording<'a> {
    /// Records what `ran` makes of `call` on `tag`'s instance (once its
    /// job keeps events: else nothing).
    pub(crate) fn new(
        tag: &'a ActorTag,
        call: Option<&'a ActorCall>,
        ran: impl FnOnce() -> CallRecord,
    ) -> Self {
        Recording {
            tag,
            call,
            ran: tag.events.is_some().then(ran),
        }
    }

    pub(crate) fn bytes_in(&mut self, bytes: u64) {
        if let Some(ran) = &mut self.ran {
            ran.bytes_in = bytes;
        }
    }

    /// The call ended: its record, to end with its method's name (the
    /// call is free to give it up now).
    pub(crate) fn finish(mut self) -> Option<CallRecord> {
        self.ran.take()
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        if let Some(ran) = self.ran.take() {
            let cut = FabricError::ActorDied("the actor stopped while it ran the call".into());
            let method = self.call.map(|c| c.method.clone());
            self.tag
                .keep(ran.ended(self.tag, method, &Err::<(), _>(cut), 0));
        }
    }
}
