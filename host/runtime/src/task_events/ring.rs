//! One job's record as it is kept: compact events in a ring, their names
//! (functions, methods, classes) kept once per job. An event holds no
//! reference-counted name, so replacing the oldest touches only its slot
//! (the ring is written in order) and frees nothing but a failure's text.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::{CallKind, TaskEvent};
use crate::ids::ActorId;
use crate::outcomes::Outcome;

/// The most distinct names one job's record keeps; others show as
/// [`OTHER_NAME`].
pub const MAX_NAMES: usize = 1024;
/// What a name past [`MAX_NAMES`] shows as.
pub const OTHER_NAME: &str = "(another name: past the record's bound)";
/// What a name weighs beyond its text.
pub(super) const NAME_OVERHEAD: u64 = 64;
/// No class: not an actor's call.
const NO_CLASS: u32 = u32::MAX;

/// An event as the ring keeps it.
struct Stored {
    id: u128,
    actor: u128,
    queued_us: u64,
    started_us: u64,
    finished_us: u64,
    bytes_in: u64,
    bytes_out: u64,
    error: Option<Box<str>>,
    function: u32,
    class: u32,
    attempt: u32,
    kind: CallKind,
    outcome: Outcome,
}

/// What a kept event weighs without its failure text.
pub(super) const STORED_BYTES: u64 = std::mem::size_of::<Stored>() as u64;

impl Stored {
    fn weight(&self) -> u64 {
        STORED_BYTES + self.error.as_deref().map_or(0, str::len) as u64
    }
}

/// A job's names, each kept once.
#[derive(Default)]
struct Names {
    list: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
    /// The last one asked for (a run of calls mostly names one).
    last: u32,
}

impl Names {
    /// What keeping `name` would newly weigh (0 when known, or when no
    /// more are kept).
    fn cost(&self, name: &str) -> u64 {
        let known = self
            .list
            .get(self.last as usize)
            .is_some_and(|l| **l == *name)
            || self.index.contains_key(name)
            || self.list.len() > MAX_NAMES;
        if known { 0 } else { Self::weight(name) }
    }

    fn weight(name: &str) -> u64 {
        name.len() as u64 * 2 + NAME_OVERHEAD
    }

    /// `name`'s number, and what keeping it newly weighs (0 when known).
    fn intern(&mut self, name: &Arc<str>) -> (u32, u64) {
        if let Some(last) = self.list.get(self.last as usize)
            && **last == **name
        {
            return (self.last, 0);
        }
        if let Some(&i) = self.index.get(&**name) {
            self.last = i;
            return (i, 0);
        }
        if self.list.is_empty() {
            self.list.push(OTHER_NAME.into());
        }
        if self.list.len() > MAX_NAMES {
            return (0, 0);
        }
        let i = self.list.len() as u32;
        self.list.push(name.clone());
        self.index.insert(name.clone(), i);
        self.last = i;
        (i, Self::weight(name))
    }
}

/// One job's kept events.
#[derive(Default)]
pub(super) struct Ring {
    events: VecDeque<Stored>,
    names: Names,
    /// What it holds, events and names, in the tenant's room.
    pub(super) bytes: u64,
    pub(super) dropped: u64,
    /// Gone from the log: nothing more is kept.
    pub(super) closed: bool,
}

impl Ring {
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// What keeping `e` would weigh now (with the names it would add).
    pub(super) fn weigh(&self, e: &TaskEvent) -> u64 {
        let class = e.actor.as_ref().map_or(0, |(_, c)| self.names.cost(c));
        let error = e.error.as_deref().map_or(0, str::len) as u64;
        STORED_BYTES + error + self.names.cost(&e.function) + class
    }

    /// Keeps `e` (its names numbered); what it weighs, as [`Ring::weigh`]
    /// said just before.
    pub(super) fn push(&mut self, e: TaskEvent) -> u64 {
        let (function, mut weight) = self.names.intern(&e.function);
        let (actor, class) = match &e.actor {
            Some((id, class)) => {
                let (c, w) = self.names.intern(class);
                weight += w;
                (id.as_u128(), c)
            }
            None => (0, NO_CLASS),
        };
        let stored = Stored {
            id: e.id,
            actor,
            queued_us: e.queued_us,
            started_us: e.started_us,
            finished_us: e.finished_us,
            bytes_in: e.bytes_in,
            bytes_out: e.bytes_out,
            error: e.error,
            function,
            class,
            attempt: e.attempt,
            kind: e.kind,
            outcome: e.outcome,
        };
        weight += stored.weight();
        self.bytes += weight;
        self.events.push_back(stored);
        weight
    }

    /// Drops the oldest event; what it weighed.
    pub(super) fn pop_oldest(&mut self) -> Option<u64> {
        let w = self.events.pop_front()?.weight();
        self.bytes -= w;
        self.dropped += 1;
        Some(w)
    }

    /// Drops every event and name; what they weighed.
    pub(super) fn clear(&mut self) -> u64 {
        self.dropped += self.events.len() as u64;
        self.events = VecDeque::new();
        self.names = Names::default();
        std::mem::take(&mut self.bytes)
    }

    pub(super) fn shrink(&mut self) {
        self.events.shrink_to_fit();
    }

    /// The newest `max` events, and how many it dropped or left out.
    pub(super) fn read_newest(&self, max: usize) -> (Vec<TaskEvent>, u64) {
        let skip = self.events.len().saturating_sub(max);
        let names = &self.names.list;
        let name = |i: u32| {
            names
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| OTHER_NAME.into())
        };
        let events = self.events.iter().skip(skip).map(|s| TaskEvent {
            kind: s.kind,
            id: s.id,
            function: name(s.function),
            actor: (s.class != NO_CLASS).then(|| (ActorId::from_u128(s.actor), name(s.class))),
            attempt: s.attempt,
            queued_us: s.queued_us,
            started_us: s.started_us,
            finished_us: s.finished_us,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            outcome: s.outcome,
            error: s.error.clone(),
        });
        (events.collect(), self.dropped + skip as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_once_and_bounded() {
        let mut ring = Ring::default();
        let a = TaskEvent::new(CallKind::Task, 1, "square".into());
        let b = TaskEvent::new(CallKind::Task, 2, "square".into());
        let wa = ring.weigh(&a);
        assert_eq!(ring.push(a), wa);
        let wb = ring.weigh(&b);
        assert!(wa > wb, "the name weighs once");
        assert_eq!(ring.push(b), wb);
        for i in 0..(MAX_NAMES as u128 + 10) {
            let e = TaskEvent::new(CallKind::Task, i, format!("f{i}").into());
            let w = ring.weigh(&e);
            assert_eq!(ring.push(e), w);
        }
        assert!(ring.names.list.len() <= MAX_NAMES + 1);
        let (events, _) = ring.read_newest(usize::MAX);
        assert_eq!(&*events[0].function, "square");
        assert_eq!(&*events.last().unwrap().function, OTHER_NAME);
        let all = ring.bytes;
        assert_eq!(ring.clear(), all);
    }
}
