//! Streaming generators: a call that yields values one by one, each its own
//! object, to a caller that takes them as they come (Ray's
//! `num_returns="streaming"`).
//!
//! The caller's node owns the stream: an [`OwnedStream`], registered in the
//! node's [`Streams`] by the id of the call's result object. That object
//! completes when the generator returns (its value is the number of items
//! it yielded) or fails. Item `i` of the stream is the object
//! [`item_id`]`(stream, i)`, made on the caller's node as the item arrives
//! and charged to the caller's job.
//!
//! The generator runs wherever its call was placed. Each `yield-item` goes
//! into the owned stream when that is on the same node, else through the
//! cluster port ([`super::port::ClusterPort::send_item`]), in order.
//! Backpressure: the generator waits at a `yield-item` while `bound` items
//! it yielded are not yet taken (and, to a caller elsewhere, while
//! [`MAX_UNTAKEN_BYTES`] are); a [`Credit`] says how many the caller took
//! (the stream's own when the caller is here, else one the caller's node
//! updates with acknowledgements).
//!
//! A retried generator (its node died, or its instance trapped) runs from
//! its first item again: the caller's node tells it which items it already
//! has, which it skips, and drops any that still come, by index; so the
//! caller sees every item once, in order. Dropping the stream closes it:
//! the generator's next `yield-item` fails with `cancelled`, a generator
//! task is cancelled, and the items not taken are freed.
//!
//! ```
//! use fabric_runtime::ids::ObjectId;
//! use fabric_runtime::runtime::streams::item_id;
//! let s = ObjectId::random();
//! assert_ne!(item_id(s, 0), item_id(s, 1));
//! assert_eq!(item_id(s, 7), item_id(s, 7));
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::{FabricError, FailureKind};
use crate::ids::{IdMap, NodeId, ObjectId};
use crate::object_store::{Location, ObjectRef};
use crate::runtime::NodeCore;
use crate::runtime::job::Job;
use crate::runtime::task::Reply;

/// Items a generator may yield ahead of its caller unless told otherwise.
pub const DEFAULT_BACKPRESSURE: u32 = 64;
/// The most items a generator may be told to yield ahead of its caller.
pub const MAX_BACKPRESSURE: u32 = 1 << 16;
/// Bytes a generator running on another node than its caller may have
/// sent and not yet had taken (at least one item always goes): what its
/// items can hold in the queue to the caller's node and on the way.
pub const MAX_UNTAKEN_BYTES: u64 = 64 << 20;
/// How long a caller waits, once its generator returned, for items still
/// on their way before it fails the stream (they cannot come any more).
const LAST_ITEMS_GRACE: Duration = Duration::from_secs(30);

/// The id of item `index` of the stream whose call result is `stream`:
/// the same on every node, and well mixed (ids are hashed by their low
/// bits).
pub fn item_id(stream: ObjectId, index: u64) -> ObjectId {
    let s = stream.as_u128();
    let mix = |x: u64| {
        // splitmix64's finalizer.
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hi = mix((s >> 64) as u64 ^ mix(index));
    let lo = mix(s as u64 ^ mix(index ^ hi));
    ObjectId::from_u128((u128::from(hi) << 64) | u128::from(lo))
}

/// The value of a generator's result object: how many items it yielded
/// (a MessagePack `uint 64`).
pub fn count_value(count: u64) -> Bytes {
    let mut v = Vec::with_capacity(9);
    v.push(0xcf);
    v.extend_from_slice(&count.to_be_bytes());
    Bytes::from(v)
}

/// The count in a generator's result object (any MessagePack unsigned).
fn count_of(value: &[u8]) -> Option<u64> {
    let be = |b: &[u8]| b.iter().fold(0u64, |n, x| (n << 8) | u64::from(*x));
    match value {
        [n] if *n < 0x80 => Some(u64::from(*n)),
        [0xcc, rest @ ..] if rest.len() == 1 => Some(be(rest)),
        [0xcd, rest @ ..] if rest.len() == 2 => Some(be(rest)),
        [0xce, rest @ ..] if rest.len() == 4 => Some(be(rest)),
        [0xcf, rest @ ..] if rest.len() == 8 => Some(be(rest)),
        _ => None,
    }
}

/// How many items of a stream its caller took and has, and whether it
/// dropped the stream: what a generator waits on.
#[derive(Default)]
pub struct Credit {
    taken: AtomicU64,
    /// The caller has the items below this one (a retried generator skips
    /// them).
    have: AtomicU64,
    closed: AtomicBool,
    changed: Notify,
}

impl Credit {
    /// The caller took `taken` items and has `have` (counts only grow),
    /// and dropped the stream when `closed`.
    pub fn update(&self, taken: u64, have: u64, closed: bool) {
        if closed {
            self.closed.store(true, Ordering::Release);
        }
        self.taken.fetch_max(taken, Ordering::AcqRel);
        self.have.fetch_max(have, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Items the caller took.
    pub fn taken(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Whether the caller already has item `index`.
    pub fn has(&self, index: u64) -> bool {
        index < self.have.load(Ordering::Acquire)
    }

    /// Waits until `ready(taken)` holds for the items the caller took.
    /// `cancelled` once the stream is closed.
    pub async fn wait(&self, mut ready: impl FnMut(u64) -> bool) -> Result<(), FabricError> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_closed() {
                return Err(FabricError::Cancelled);
            }
            if ready(self.taken()) {
                return Ok(());
            }
            changed.await;
        }
    }

    /// Waits until item `index` may be yielded: fewer than `bound` items
    /// before it are not taken.
    pub async fn room_for(&self, index: u64, bound: u32) -> Result<(), FabricError> {
        self.wait(|taken| fits(index, taken, bound)).await
    }

    /// Whether the caller dropped the stream (or it failed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves at the next change (enable it before looking, so that a
    /// change in between is not missed).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// Whether item `index` may be yielded once the caller took `taken`: fewer
/// than `bound` items before it are not taken.
fn fits(index: u64, taken: u64, bound: u32) -> bool {
    index < taken.saturating_add(u64::from(bound))
}

/// An item as it reaches the caller's node.
pub enum Item {
    /// Its value, with the references inside it.
    Here(Bytes, Vec<ObjectRef>),
    /// Its value stayed on the node `at` (it is `size` bytes).
    Elsewhere { at: NodeId, size: u64 },
    /// It could not be delivered: the stream fails at this item.
    Failed(FabricError),
}

/// What became of an arriving item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// It is in the stream.
    Taken,
    /// Nothing was kept of it (the stream is gone or failed, or already
    /// has this item): whatever holds its value may drop it, unless this
    /// node still has an object by its id.
    Unwanted,
}

/// The items of one stream on its caller's node.
pub struct OwnedStream {
    id: ObjectId,
    job: Arc<Job>,
    producer: Arc<str>,
    bound: u32,
    /// The call's result: its value is the number of items.
    done: ObjectRef,
    credit: Arc<Credit>,
    arrived: Notify,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<ObjectRef>,
    /// Items received so far (the index of the next one).
    received: u64,
    taken: u64,
    /// The last count of taken items told to the generator.
    acked: u64,
    /// The node the generator last yielded from, when not this one.
    generator: Option<NodeId>,
    /// Why the stream failed at item `received`.
    failed: Option<FabricError>,
}

impl OwnedStream {
    /// The id of the call's result object, which names the stream.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// How many items a generator may yield ahead of this stream's caller.
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// The next item, waiting up to `timeout`; `None` at the end.
    pub async fn next(
        &self,
        core: &NodeCore,
        timeout: Option<Duration>,
    ) -> Result<Option<ObjectRef>, FabricError> {
        let wait = async {
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(end) = self.take(core) {
                    return end;
                }
                if matches!(self.done.location(), Location::Pending) {
                    tokio::select! {
                        () = &mut arrived => {}
                        () = self.done.settled() => {}
                    }
                    continue;
                }
                if let Some(end) = self.ended().await {
                    return end;
                }
                // The generator returned: its last items are on their way,
                // or were lost with a broken connection.
                if tokio::time::timeout(LAST_ITEMS_GRACE, arrived)
                    .await
                    .is_err()
                {
                    return Err(self.fail(core, None, "its last items never arrived"));
                }
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .unwrap_or(Err(FabricError::Timeout)),
        }
    }

    /// The next item if one is here, or the failure at this point.
    fn take(&self, core: &NodeCore) -> Option<Result<Option<ObjectRef>, FabricError>> {
        let mut q = self.queue.lock();
        let Some(item) = q.items.pop_front() else {
            return q.failed.clone().map(Err);
        };
        q.taken += 1;
        // Acknowledged in steps of half the bound, and whenever the caller
        // has taken everything here: a generator that waits (for items or
        // for bytes) always has room coming.
        let step = u64::from(self.bound / 2).max(1);
        let due = q.taken - q.acked >= step || q.items.is_empty();
        let ack = due.then_some((q.taken, q.received));
        if let Some((taken, _)) = ack {
            q.acked = taken;
        }
        let generator = q.generator;
        drop(q);
        if let Some((taken, have)) = ack {
            self.credit.update(taken, have, false);
            if let Some(node) = generator {
                core.port().stream_ack(node, self.id, taken, have, false);
            }
        }
        Some(Ok(Some(item)))
    }

    /// The end of the stream once its generator returned and every item
    /// it yielded is here: `None` while items are still on their way.
    async fn ended(&self) -> Option<Result<Option<ObjectRef>, FabricError>> {
        match self.done.get(None).await {
            Err(e) => Some(Err(e)),
            Ok(v) => {
                let count = count_of(&v).unwrap_or(0);
                let received = self.queue.lock().received;
                (received >= count).then_some(Ok(None))
            }
        }
    }

    /// Adds item `index`, sent by `from` (another node, or `None`: here).
    fn push(&self, core: &NodeCore, index: u64, from: Option<NodeId>, item: Item) -> Pushed {
        let mut q = self.queue.lock();
        let new_sender = from.is_some() && q.generator != from;
        if from.is_some() {
            q.generator = from;
        }
        let closed = self.credit.is_closed();
        if let Some(node) = from.filter(|_| new_sender || index == 0) {
            // A generator that starts (again) learns what the caller took
            // and has: it skips what the caller has.
            core.port()
                .stream_ack(node, self.id, q.taken, q.received, closed);
        }
        if index != q.received || q.failed.is_some() || closed {
            if index > q.received && q.failed.is_none() {
                let why = format!("item {} arrived before item {}", index, q.received);
                drop(q);
                self.fail(core, from, &why);
            }
            return Pushed::Unwanted;
        }
        let id = item_id(self.id, index);
        // Admitted with its bytes: an item over the caller's quota fails
        // the stream here rather than becoming an object that holds an
        // error.
        let size = match &item {
            Item::Here(value, _) => value.len() as u64,
            Item::Elsewhere { .. } | Item::Failed(_) => 0,
        };
        let made = core
            .objects()
            .create_pending(id, self.job.id, self.producer.clone(), size);
        let failed = match (made, item) {
            (Ok(r), Item::Here(value, nested)) => {
                core.objects().fulfill(id, Ok(value), nested);
                q.items.push_back(r);
                None
            }
            (Ok(r), Item::Elsewhere { at, size }) => {
                core.objects().fulfill_elsewhere(id, vec![at], size);
                q.items.push_back(r);
                None
            }
            (Ok(_), Item::Failed(e)) | (Err(e), _) => Some(e),
        };
        q.received += 1;
        let have = q.received;
        drop(q);
        if let Some(e) = failed {
            // Nothing after a failure is wanted: the generator stops.
            self.fail_with(core, from, e);
            return Pushed::Unwanted;
        }
        // A generator here that runs again skips what the caller has.
        self.credit.update(0, have, false);
        self.arrived.notify_waiters();
        Pushed::Taken
    }

    /// Fails the stream at its next item with a system failure (`why`),
    /// and stops its generator.
    fn fail(&self, core: &NodeCore, from: Option<NodeId>, why: &str) -> FabricError {
        let e = FabricError::failure(&self.producer, FailureKind::System, why);
        self.fail_with(core, from, e.clone());
        e
    }

    fn fail_with(&self, core: &NodeCore, from: Option<NodeId>, e: FabricError) {
        let mut q = self.queue.lock();
        q.failed.get_or_insert(e);
        let (taken, have) = (q.taken, q.received);
        let generator = from.or(q.generator);
        drop(q);
        self.credit.update(taken, have, true);
        if let Some(node) = generator {
            core.port().stream_ack(node, self.id, taken, have, true);
        }
        self.arrived.notify_waiters();
    }
}

/// The streams whose caller is on this node, and the credits of generators
/// running here for callers elsewhere.
#[derive(Default)]
pub struct Streams {
    owned: IdMap<ObjectId, Weak<OwnedStream>>,
    credits: IdMap<ObjectId, Arc<Credit>>,
}

impl Streams {
    /// Opens the stream of a call whose result object is `done`.
    pub fn open(
        &self,
        job: Arc<Job>,
        done: ObjectRef,
        producer: Arc<str>,
        bound: u32,
    ) -> Arc<OwnedStream> {
        let stream = Arc::new(OwnedStream {
            id: done.id(),
            job,
            producer,
            bound,
            done,
            credit: Arc::default(),
            arrived: Notify::new(),
            queue: Mutex::default(),
        });
        self.owned.insert(stream.id, Arc::downgrade(&stream));
        stream
    }

    /// Item `index` of stream `stream` arrived (from `from`, another node,
    /// or `None`: here).
    pub fn push(
        &self,
        core: &NodeCore,
        stream: ObjectId,
        index: u64,
        from: Option<NodeId>,
        item: Item,
    ) -> Pushed {
        let owned = self.owned.get(&stream).and_then(|s| s.upgrade());
        match owned {
            Some(s) => s.push(core, index, from, item),
            None => {
                if let Some(node) = from {
                    // Its caller dropped it: the generator stops.
                    core.port()
                        .stream_ack(node, stream, u64::MAX, u64::MAX, true);
                }
                Pushed::Unwanted
            }
        }
    }

    /// Forgets a stream that was opened for a call that was then refused.
    pub fn forget(&self, stream: ObjectId) {
        self.owned.remove(&stream);
    }

    /// The caller's node of `stream` says it took `taken` items, has
    /// `have` (and dropped the stream when `closed`).
    pub fn on_ack(&self, stream: ObjectId, taken: u64, have: u64, closed: bool) {
        if let Some(c) = self.credits.get(&stream) {
            c.update(taken, have, closed);
        }
    }

    /// Streams and credits registered now.
    pub fn len(&self) -> usize {
        self.owned.len() + self.credits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn give_back(&self) {
        // A stream opened for a call that never reached its caller.
        self.owned.retain(|_, s| s.strong_count() > 0);
        crate::ids::shrink_if_sparse(&self.owned);
        crate::ids::shrink_if_sparse(&self.credits);
    }
}

/// A streaming call running in an instance: what `yield-item` needs.
pub(crate) struct Generator {
    pub stream: ObjectId,
    /// Where its items go: this node's streams, or the caller's node.
    pub reply: Reply,
    pub bound: u32,
    /// Items yielded so far (the index of the next one).
    pub next: u64,
    pub credit: Arc<Credit>,
    /// Items sent to a caller elsewhere and not yet taken: (index, bytes),
    /// and their bytes together.
    untaken: VecDeque<(u64, u64)>,
    untaken_bytes: u64,
    /// Unregisters the credit of a generator whose caller is elsewhere.
    registered: Option<(Arc<NodeCore>, ObjectId)>,
}

impl Generator {
    /// The generator of `stream` starts running here.
    pub(crate) fn start(core: &Arc<NodeCore>, stream: ObjectId, reply: Reply, bound: u32) -> Self {
        let streams = core.streams();
        let (credit, registered) = match reply {
            Reply::Local => {
                let credit = match streams.owned.get(&stream).and_then(|s| s.upgrade()) {
                    Some(s) => s.credit.clone(),
                    None => {
                        // Its caller dropped the stream already.
                        let gone = Credit::default();
                        gone.update(0, 0, true);
                        Arc::new(gone)
                    }
                };
                (credit, None)
            }
            Reply::Remote { .. } => {
                // Each attempt its own: an earlier one that ends late
                // cannot unregister it.
                let credit = Arc::new(Credit::default());
                streams.credits.insert(stream, credit.clone());
                (credit, Some((core.clone(), stream)))
            }
        };
        Generator {
            stream,
            reply,
            bound,
            next: 0,
            credit,
            untaken: VecDeque::new(),
            untaken_bytes: 0,
            registered,
        }
    }

    /// Waits until the next item, of `len` bytes, may go: fewer than
    /// `bound` items before it are not taken, and (to a caller elsewhere)
    /// the bytes not taken stay within [`MAX_UNTAKEN_BYTES`].
    pub(crate) async fn room_for(&mut self, len: u64) -> Result<(), FabricError> {
        let credit = self.credit.clone();
        credit.wait(|_| self.has_room(len)).await
    }

    /// Whether the next item, of `len` bytes, may go now (see
    /// [`Generator::room_for`]).
    pub(crate) fn has_room(&mut self, len: u64) -> bool {
        let taken = self.credit.taken();
        if !fits(self.next, taken, self.bound) {
            return false;
        }
        if matches!(self.reply, Reply::Local) {
            return true;
        }
        while let Some(&(i, bytes)) = self.untaken.front()
            && i < taken
        {
            self.untaken.pop_front();
            self.untaken_bytes -= bytes;
        }
        self.untaken.is_empty() || self.untaken_bytes.saturating_add(len) <= MAX_UNTAKEN_BYTES
    }

    /// The next item, of `len` bytes, went to the caller.
    pub(crate) fn sent(&mut self, len: u64) {
        if matches!(self.reply, Reply::Remote { .. }) {
            self.untaken.push_back((self.next, len));
            self.untaken_bytes += len;
        }
        self.next += 1;
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if let Some((core, stream)) = self.registered.take() {
            let mine = &self.credit;
            core.streams()
                .credits
                .remove_if(&stream, |_, c| Arc::ptr_eq(c, mine));
        }
    }
}

/// A caller's hold on a stream (the guest's `item-stream`): dropping it
/// closes the stream.
pub struct StreamHandle {
    pub stream: Arc<OwnedStream>,
    pub core: Arc<NodeCore>,
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let s = &self.stream;
        let generator = s.queue.lock().generator;
        s.credit.update(u64::MAX, u64::MAX, true);
        if let Some(node) = generator {
            self.core
                .port()
                .stream_ack(node, s.id, u64::MAX, u64::MAX, true);
        }
        // Also wherever the call went last (a retry may not have yielded
        // yet).
        self.core.port().close_stream(s.id);
        // A generator task stops now rather than at its next item.
        crate::runtime::task::cancel(&self.core, s.id);
        // The handle is the stream's one consumer: items that still come
        // are unwanted.
        self.core.streams().owned.remove(&s.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_in_every_width() {
        for n in [
            0u64,
            5,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX) + 1,
        ] {
            assert_eq!(count_of(&count_value(n)), Some(n));
        }
        assert_eq!(count_of(&[0x05]), Some(5));
        assert_eq!(count_of(&[0xcd, 1, 0]), Some(256));
        assert_eq!(count_of(&[0xc0]), None);
        assert_eq!(count_of(&[0xcf, 1]), None);
    }

    #[test]
    fn item_ids_differ_across_streams_and_indexes() {
        let (a, b) = (ObjectId::random(), ObjectId::random());
        let mut seen = std::collections::HashSet::new();
        for s in [a, b] {
            for i in 0..1000 {
                assert!(seen.insert(item_id(s, i)));
            }
        }
    }

    #[tokio::test]
    async fn a_generator_waits_until_its_caller_takes_items() {
        let credit = Arc::new(Credit::default());
        credit.room_for(3, 4).await.expect("room for items 0..4");
        let waiting = tokio::spawn({
            let c = credit.clone();
            async move { c.room_for(4, 4).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "item 4 waits until one is taken");
        credit.update(1, 5, false);
        waiting.await.unwrap().expect("room after one is taken");
        assert!(credit.has(4) && !credit.has(5));
        // Closing with the largest counts cannot overflow a waiter's sum.
        credit.update(u64::MAX, u64::MAX, true);
        assert!(matches!(
            credit.room_for(0, 4).await,
            Err(FabricError::Cancelled)
        ));
    }
}
