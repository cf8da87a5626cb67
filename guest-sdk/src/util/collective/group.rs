//! The actor behind a collective group: it pairs the members' rounds and
//! hands each member the references the others contributed, and it
//! watches the members, so a member that ends breaks the group.
//!
//! It never reads a value: members `put` theirs and fetch each other's
//! straight from the node that holds them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use serde::{Deserialize, Serialize};

use crate::actor::{ActorClass, ActorHandle, ActorRef};
use crate::concurrent::{is_ready, wake_when_ready};
use crate::error::{Error, FailureKind};
use crate::object::ObjectRef;

/// Any actor, as a member of a group: only its handle is used.
pub struct AnyActor;

/// An [`AnyActor`] has no methods the group calls.
#[derive(Clone)]
pub struct NoMethods;

impl From<ActorRef> for NoMethods {
    fn from(_: ActorRef) -> Self {
        NoMethods
    }
}

impl ActorClass for AnyActor {
    const NAME: &'static str = "";
    type Methods = NoMethods;
}

/// Which collective a round is: every member must call the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Collective {
    Allreduce,
    Allgather,
    /// From this rank.
    Broadcast(u32),
    Barrier,
}

/// Why a round failed: the group is broken (every member's round fails
/// the same way from then on).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Broken {
    /// A member ended (killed, dead, its node gone, or restarted).
    MemberDied(String),
    /// The members did not call the same collectives in the same order.
    Mismatch(String),
    /// A member's collective failed otherwise (its call ran out of time,
    /// say), so the others cannot count on it.
    Aborted(String),
}

impl Broken {
    /// The error a member of `group` sees.
    pub fn into_error(self, group: &str) -> Error {
        let what = format!("collective group `{group}` is broken");
        match self {
            Broken::MemberDied(why) => Error::ActorDied(format!("{what}: {why}")),
            Broken::Mismatch(why) => Error::InvalidArgument(format!("{what}: {why}")),
            Broken::Aborted(why) => Error::TaskFailed {
                function: "collective".into(),
                kind: FailureKind::System,
                message: format!("{what}: {why}"),
                retryable: false,
                value: None,
            },
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::MemberDied(why) | Broken::Mismatch(why) | Broken::Aborted(why) => {
                f.write_str(why)
            }
        }
    }
}

/// One round: what each rank contributed (a reference, or none), and how
/// many have been answered (the round goes once all have).
struct Round {
    what: Collective,
    values: Vec<Option<Vec<ObjectRef<()>>>>,
    arrived: usize,
    answered: usize,
}

/// Wakes the rounds that wait: on an arrival, and when a member's watch
/// fails (the reactor wakes it as a `Waker`, which marks a death).
#[derive(Default)]
struct Signal {
    died: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Signal {
    fn wake_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.lock().expect("one thread"));
        waiting.into_iter().for_each(Waker::wake);
    }
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.died.store(true, Ordering::Release);
        self.wake_all();
    }
}

/// The group's actor (see the module docs of `fabric::util::collective`).
#[crate::actor]
pub struct CollectiveGroupActor {
    /// Member actor ids, by rank.
    members: Vec<u128>,
    /// Fails when the member of that rank ends.
    watches: Vec<ObjectRef<()>>,
    signal: Arc<Signal>,
    broken: RefCell<Option<Broken>>,
    rounds: RefCell<HashMap<u64, Round>>,
}

#[crate::actor]
impl CollectiveGroupActor {
    fn new(members: Vec<ActorHandle<AnyActor>>) -> crate::Result<Self> {
        let watches = members
            .iter()
            .map(ActorHandle::watch)
            .collect::<crate::Result<Vec<_>>>()?;
        let signal = Arc::new(Signal::default());
        let waker = Waker::from(signal.clone());
        for w in &watches {
            // Registered for the actor's life: the one-shot registration
            // fires at most once per member, and one death ends the group.
            drop(wake_when_ready(w.inner.clone(), waker.clone()));
        }
        Ok(CollectiveGroupActor {
            members: members.iter().map(ActorHandle::id).collect(),
            watches,
            signal,
            broken: RefCell::new(None),
            rounds: RefCell::new(HashMap::new()),
        })
    }

    /// The rank of actor `member` and the group's size, if it is a member.
    fn rank_of(&self, member: u128) -> Option<(u32, u32)> {
        let rank = self.members.iter().position(|m| *m == member)?;
        Some((rank as u32, self.members.len() as u32))
    }

    /// Breaks the group: a member's collective failed in a way the others
    /// cannot see (`why`).
    fn abort(&self, why: String) {
        if self.broken.borrow().is_none() {
            self.break_group(Broken::Aborted(why));
        }
    }

    /// Rank `rank`'s part in round `round` (its value's reference, if
    /// any): answers with every rank's once all have arrived.
    async fn exchange(
        &self,
        round: u64,
        rank: u32,
        what: Collective,
        value: Vec<ObjectRef<()>>,
    ) -> Result<Vec<Vec<ObjectRef<()>>>, Broken> {
        self.check()?;
        self.arrive(round, rank as usize, what, value)?;
        loop {
            self.check()?;
            if let Some(all) = self.answer(round) {
                return Ok(all);
            }
            Changed::new(&self.signal).await;
        }
    }
}

impl CollectiveGroupActor {
    /// Fails once the group is broken; finds the member that ended when a
    /// watch fired.
    fn check(&self) -> Result<(), Broken> {
        if let Some(b) = self.broken.borrow().clone() {
            return Err(b);
        }
        if !self.signal.died.load(Ordering::Acquire) {
            return Ok(());
        }
        let dead = self
            .watches
            .iter()
            .enumerate()
            .find(|(_, w)| is_ready(&w.inner));
        let why = match dead.map(|(rank, w)| (rank, crate::get(w))) {
            Some((rank, Err(e))) => format!("member rank {rank} of the collective group: {e}"),
            Some((rank, Ok(()))) => format!("member rank {rank} of the collective group ended"),
            None => "a member of the collective group ended".to_string(),
        };
        Err(self.break_group(Broken::MemberDied(why)))
    }

    /// Marks the group broken for good: every waiting round fails, and the
    /// references they kept go.
    fn break_group(&self, why: Broken) -> Broken {
        *self.broken.borrow_mut() = Some(why.clone());
        self.rounds.borrow_mut().clear();
        self.signal.wake_all();
        why
    }

    fn arrive(
        &self,
        round: u64,
        rank: usize,
        what: Collective,
        value: Vec<ObjectRef<()>>,
    ) -> Result<(), Broken> {
        let world = self.members.len();
        let mut rounds = self.rounds.borrow_mut();
        let r = rounds.entry(round).or_insert_with(|| Round {
            what,
            values: (0..world).map(|_| None).collect(),
            arrived: 0,
            answered: 0,
        });
        let clash = if rank >= world {
            Some(format!("rank {rank} is not in a group of {world}"))
        } else if r.what != what {
            Some(format!(
                "rank {rank} called {what:?} as collective {round}, another member {:?}",
                r.what
            ))
        } else if r.values[rank].is_some() {
            Some(format!("rank {rank} joined collective {round} twice"))
        } else {
            None
        };
        if let Some(why) = clash {
            drop(rounds);
            return Err(self.break_group(Broken::Mismatch(why)));
        }
        r.values[rank] = Some(value);
        r.arrived += 1;
        let complete = r.arrived == world;
        drop(rounds);
        if complete {
            self.signal.wake_all();
        }
        Ok(())
    }

    /// Every rank's contribution once all have arrived; the round goes
    /// after its last member has been answered.
    fn answer(&self, round: u64) -> Option<Vec<Vec<ObjectRef<()>>>> {
        let mut rounds = self.rounds.borrow_mut();
        let r = rounds.get_mut(&round)?;
        if r.arrived < r.values.len() {
            return None;
        }
        let all = r.values.iter().map(|v| v.clone().unwrap_or_default());
        let all = all.collect();
        r.answered += 1;
        if r.answered == r.values.len() {
            rounds.remove(&round);
        }
        Some(all)
    }
}

/// Resolves at the next wake-up of the group's signal (an arrival, a
/// death, the group breaking).
struct Changed<'a> {
    signal: &'a Signal,
    waited: bool,
}

impl<'a> Changed<'a> {
    fn new(signal: &'a Signal) -> Self {
        Changed {
            signal,
            waited: false,
        }
    }
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.waited || self.signal.died.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waited = true;
        let mut waiting = self.signal.waiting.lock().expect("one thread");
        waiting.push(cx.waker().clone());
        Poll::Pending
    }
}
