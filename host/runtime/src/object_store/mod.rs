//! The node-local object store: immutable values shared by reference.
//!
//! An object is created pending (the result of a task that has not finished)
//! or ready (a `put`). Its bytes are a [`Bytes`] buffer: every reader shares
//! the one buffer the value was received into, and nothing on the host copies
//! it again. Objects are reference counted by [`ObjectRef`] guards: a guest's
//! handle, a queued task's argument and an object that nests another all hold
//! one, and the object is freed when the last guard drops. The store is
//! bounded by a byte budget, which counts each object's host overhead
//! ([`OBJECT_OVERHEAD`]) as well as its value; a value that does not fit is
//! refused with a `limit-exceeded` error naming `object-store-memory`.
//!
//! In a cluster an object has one owner: the node that created it. Another
//! node that holds a reference keeps a *borrowed* entry for it, whose value
//! lives elsewhere until someone here reads it; then the bytes are fetched
//! (through [`RemoteObjects`]) and kept as a local copy. When the last local
//! reference to a borrowed entry goes, the borrow is given back to the owner;
//! when an owned object is freed, the copies other nodes keep for it are
//! dropped too.
//!
//! ```
//! use fabric_runtime::object_store::ObjectStore;
//! use fabric_runtime::ids::{JobId, ObjectId};
//! # tokio_test_block_on(async {
//! let store = ObjectStore::new(1 << 20);
//! let r = store.put(JobId::random(), "hello".into(), Vec::new()).unwrap();
//! assert_eq!(&r.get(None).await.unwrap()[..], b"hello");
//! // Its 5 bytes and what the store itself spends on an object.
//! assert_eq!(store.used_bytes(), 5 + fabric_runtime::object_store::OBJECT_OVERHEAD);
//! drop(r); // the last reference: the object is freed
//! assert_eq!(store.used_bytes(), 0);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::buffers::BufferPool;
use crate::error::FabricError;
use crate::ids::{JobId, NodeId, ObjectId};
use crate::spill::{Spill, SpillDir};
use crate::tenants::{JobBooks, TenantAccount, TenantLedger};

mod anchor;
mod cascade;
mod inner;
mod ready;
mod reference;

pub use anchor::AnchorFreed;
pub(crate) use ready::ReadyCounter;
pub use reference::{Location, Pinned};

thread_local! {
    /// Entries whose last reference went during a release on this thread.
    static RELEASES: cascade::Queue<(Arc<Inner>, Arc<Entry>)> = const { std::cell::RefCell::new(None) };
    /// Listeners woken during a wake-up on this thread.
    static WAKEUPS: cascade::Queue<Arc<dyn ReadyListener>> = const { std::cell::RefCell::new(None) };
}

/// Frees `entry` (its last reference went), and, in the same loop, what
/// that frees in turn: a chain of nested objects never recurses.
fn release(store: &Arc<Inner>, entry: &Arc<Entry>) {
    cascade::run(
        &RELEASES,
        (store.clone(), entry.clone()),
        |(store, entry)| store.release(&entry),
    );
}

/// Wakes `listeners`; a wake-up that completes another object (and so wakes
/// its listeners) is queued, not nested.
fn wake(listeners: Vec<Listener>) {
    for l in listeners {
        cascade::run(&WAKEUPS, l.listener, |l| l.on_ready());
    }
}

/// Called once when a pending object becomes ready (or fails).
pub trait ReadyListener: Send + Sync {
    fn on_ready(&self);

    /// True once nobody waits on this listener any more: the store may
    /// drop it unfired (so a guest that waits with a timeout in a loop
    /// cannot grow an object's listener list without bound).
    fn is_done(&self) -> bool {
        false
    }
}

/// Adds `l` to `listeners`, first dropping listeners nobody waits on when
/// the list reaches a power of two (amortized O(1) per push).
fn push_listener(listeners: &mut Vec<Listener>, l: Listener) {
    if listeners.len() >= 16 && listeners.len().is_power_of_two() {
        listeners.retain(|l| !l.listener.is_done());
    }
    listeners.push(l);
}

/// What the store needs from the cluster: fetching values that live on other
/// nodes, and telling owners and holders of copies when references go.
pub trait RemoteObjects: Send + Sync {
    /// Fetches the value of `id` from one of `at`, then calls
    /// [`ObjectStore::fill`] (with an error if no node has it).
    fn fetch(&self, id: ObjectId, at: Vec<NodeId>);
    /// The last local reference to a borrowed object is gone: give
    /// `registrations` borrows back to its owner `home`.
    fn released_borrow(&self, id: ObjectId, home: NodeId, registrations: u32);
    /// An object owned here was freed: drop the copies `holders` keep for it.
    fn freed_copies(&self, id: ObjectId, holders: Vec<NodeId>);
}

/// The value of a ready object, or why it has none.
pub type ObjectValue = Result<Bytes, FabricError>;

/// Someone waiting for an object: for its value to be here, or only for it
/// to be computed (wherever its value ends up).
struct Listener {
    listener: Arc<dyn ReadyListener>,
    wants_value_here: bool,
}

enum State {
    /// Being computed here.
    Pending { listeners: Vec<Listener> },
    /// Ready (or pending at its owner), but the bytes are on the nodes `at`.
    Elsewhere {
        at: Vec<NodeId>,
        /// The value's size when known (0 when not).
        size: u64,
        listeners: Vec<Listener>,
        fetching: bool,
    },
    Ready {
        value: ObjectValue,
        /// References encoded inside the value: kept alive with it.
        nested: Vec<ObjectRef>,
    },
    /// Ready, with its value written to a spill file to make room; reading
    /// it loads it back.
    Spilled {
        file: std::path::PathBuf,
        len: usize,
        nested: Vec<ObjectRef>,
    },
    /// The last reference went; nothing may complete it any more.
    Freed,
}

/// Values smaller than this are not worth a spill file.
const SPILL_MIN: usize = 64 << 10;

/// Host memory one object costs besides its value: its entry and its slot
/// in the store's map. (A guest's handle to it costs the guest's instance
/// another `HANDLE_OVERHEAD`, 256 bytes.) Measured by holding up to two
/// million empty objects (`tests/all/footprint.rs`): 500 to 720 bytes for
/// an object and its handle, the most just after the maps and handle tables
/// double.
/// Every object is charged this much on top of its bytes, against the
/// store's capacity and its tenant's quota, so a flood of empty objects
/// meets the same limits as a flood of large ones.
pub const OBJECT_OVERHEAD: u64 = 512;

struct Entry {
    id: ObjectId,
    job: JobId,
    /// The job's books here: its tenant is charged for the object's bytes
    /// and overhead, the job for one object (none for a job this node never
    /// saw).
    books: Option<Arc<JobBooks>>,
    /// The task or method whose result this is, when it was made here as
    /// one (for errors that name it).
    producer: Option<Arc<str>>,
    /// An actor's handle object whose freeing the store reports (see
    /// [`ObjectStore::anchor`]).
    anchor: bool,
    /// The owner, when the object is borrowed from another node.
    home: Option<NodeId>,
    /// Borrows the owner counted for this node (given back on release).
    registrations: AtomicU32,
    /// For an owned object: nodes that keep a copy on its behalf.
    copies: Mutex<Vec<NodeId>>,
    refs: AtomicUsize,
    /// References that only keep a copy for its owner ([`Pinned`]); they do
    /// not count as this node using the object.
    pins: AtomicUsize,
    /// Bytes charged to the store for this object.
    charged: AtomicI64,
    state: Mutex<State>,
    ready: Notify,
    /// When it was last read or stored, on the store's clock (for LRU).
    last_used: AtomicU64,
}

struct Inner {
    entries: crate::ids::IdMap<ObjectId, Arc<Entry>>,
    used: AtomicI64,
    capacity: i64,
    buffers: BufferPool,
    remote: OnceLock<Arc<dyn RemoteObjects>>,
    ledger: Option<Arc<TenantLedger>>,
    /// Where values go when they do not fit.
    spill: Spill,
    /// The spill directory, made at the first spill.
    spill_dir: OnceLock<Result<SpillDir, String>>,
    /// Told when an actor's counted handle object is freed.
    anchor_freed: OnceLock<Arc<dyn AnchorFreed>>,
    /// Counts reads and stores: the LRU order.
    clock: AtomicU64,
}

/// The node's object store. Cheap to clone.
#[derive(Clone)]
pub struct ObjectStore {
    inner: Arc<Inner>,
}

/// A counted reference to an object. Cloning adds a reference; dropping the
/// last one frees the object.
pub struct ObjectRef {
    entry: Arc<Entry>,
    store: Arc<Inner>,
}

impl ObjectStore {
    /// A store that holds at most `capacity` bytes of values.
    pub fn new(capacity: u64) -> Self {
        Self::build(capacity, None, Spill::Off)
    }

    /// A store that spills what does not fit as `spill` says.
    pub fn with_spill(capacity: u64, spill: Spill) -> Self {
        Self::build(capacity, None, spill)
    }

    /// A store that also charges each tenant (by the job that made an
    /// object) against its quota, and meters its bytes.
    pub fn with_ledger(capacity: u64, ledger: Arc<TenantLedger>, spill: Spill) -> Self {
        Self::build(capacity, Some(ledger), spill)
    }

    fn build(capacity: u64, ledger: Option<Arc<TenantLedger>>, spill: Spill) -> Self {
        ObjectStore {
            inner: Arc::new(Inner {
                entries: Default::default(),
                used: AtomicI64::new(0),
                capacity: capacity.min(i64::MAX as u64) as i64,
                // Keep up to a quarter of the store (at most 4 GiB) in recycled
                // large buffers: a fresh one costs more in page faults and
                // zeroing than the copy into it.
                buffers: BufferPool::new((capacity / 4).min(4 << 30) as usize),
                remote: OnceLock::new(),
                ledger,
                spill,
                spill_dir: OnceLock::new(),
                anchor_freed: OnceLock::new(),
                clock: AtomicU64::new(0),
            }),
        }
    }

    /// Connects the store to its cluster (once).
    pub fn set_remote(&self, remote: Arc<dyn RemoteObjects>) {
        let _ = self.inner.remote.set(remote);
    }

    fn new_entry(
        id: ObjectId,
        job: JobId,
        books: Option<Arc<JobBooks>>,
        home: Option<NodeId>,
        state: State,
        charged: i64,
    ) -> Arc<Entry> {
        Arc::new(Entry {
            id,
            job,
            books,
            producer: None,
            anchor: false,
            home,
            registrations: AtomicU32::new(0),
            copies: Mutex::new(Vec::new()),
            refs: AtomicUsize::new(1),
            pins: AtomicUsize::new(0),
            charged: AtomicI64::new(charged),
            state: Mutex::new(state),
            ready: Notify::new(),
            last_used: AtomicU64::new(0),
        })
    }

    /// Stores a new, admitted entry under a fresh id (no other entry can
    /// have it).
    fn insert(
        &self,
        id: ObjectId,
        job: JobId,
        books: Option<Arc<JobBooks>>,
        state: State,
        charged: i64,
    ) -> ObjectRef {
        self.insert_entry(Self::new_entry(id, job, books, None, state, charged))
    }

    fn insert_entry(&self, entry: Arc<Entry>) -> ObjectRef {
        entry.last_used.store(self.inner.tick(), Ordering::Relaxed);
        self.inner.entries.insert(entry.id, entry.clone());
        ObjectRef {
            entry,
            store: self.inner.clone(),
        }
    }

    /// A reference to the live entry for `id`, or to a new one made by
    /// `make`, atomically (two arrivals of one id share one entry).
    fn get_or_insert(&self, id: ObjectId, make: impl FnOnce() -> Arc<Entry>) -> (ObjectRef, bool) {
        let entry = match self.inner.entries.entry(id) {
            dashmap::Entry::Occupied(mut slot) => {
                if let Some(r) = self.inner.revive(slot.get().clone()) {
                    return (r, false);
                }
                // The old entry is dying; its releaser skips the map.
                let entry = make();
                slot.insert(entry.clone());
                entry
            }
            dashmap::Entry::Vacant(slot) => {
                let entry = make();
                slot.insert(entry.clone());
                entry
            }
        };
        let store = self.inner.clone();
        (ObjectRef { entry, store }, true)
    }

    /// A pending object that [`ObjectStore::fulfill`] will complete with the
    /// result of `producer` (a task or method name). Until then it is also
    /// charged `held` bytes (the arguments its task keeps); refused when the
    /// job or the store cannot take one more object, or the bytes.
    pub fn create_pending(
        &self,
        id: ObjectId,
        job: JobId,
        producer: Arc<str>,
        held: u64,
    ) -> Result<ObjectRef, FabricError> {
        let books = self.inner.books_of(job);
        let held = held.min(i64::MAX as u64) as i64;
        self.inner.admit(books.as_ref(), held)?;
        let state = State::Pending {
            listeners: Vec::new(),
        };
        let mut entry = Self::new_entry(id, job, books, None, state, held);
        Arc::get_mut(&mut entry).expect("just made").producer = Some(producer);
        Ok(self.insert_entry(entry))
    }

    /// Stores a ready value under a fresh id.
    pub fn put(
        &self,
        job: JobId,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> Result<ObjectRef, FabricError> {
        let books = self.inner.books_of(job);
        self.inner.admit(books.as_ref(), value.len() as i64)?;
        Ok(self.insert_ready(job, books, value, nested))
    }

    /// Stores the concatenation of `parts` (e.g. a value read straight out of
    /// a guest's memory): one copy, into a recycled buffer when large. The
    /// budget is checked before anything is copied.
    pub fn put_parts(
        &self,
        job: JobId,
        parts: &[&[u8]],
        nested: Vec<ObjectRef>,
    ) -> Result<ObjectRef, FabricError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let books = self.inner.books_of(job);
        self.inner.admit(books.as_ref(), len as i64)?;
        let value = self.inner.buffers.copy_parts(parts);
        Ok(self.insert_ready(job, books, value, nested))
    }

    /// Stores an admitted value under a fresh id.
    fn insert_ready(
        &self,
        job: JobId,
        books: Option<Arc<JobBooks>>,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> ObjectRef {
        let len = value.len() as i64;
        let state = State::Ready {
            value: Ok(value),
            nested,
        };
        self.insert(ObjectId::random(), job, books, state, len)
    }

    /// One copy of `parts`, back to back, into a buffer from the recycled
    /// pool (for values read out of a guest).
    pub fn copy_in(&self, parts: &[&[u8]]) -> Bytes {
        self.inner.buffers.copy_parts(parts)
    }
    /// A buffer for `len` bytes from the recycled pool (to receive an object).
    pub fn buffer(&self, len: usize) -> Vec<u8> {
        self.inner.buffers.take(len)
    }

    /// Wraps a filled [`ObjectStore::buffer`] so it returns to the pool.
    pub fn seal(&self, buf: Vec<u8>) -> Bytes {
        self.inner.buffers.seal(buf)
    }

    /// Completes a pending object. A value that does not fit becomes a
    /// `limit-exceeded` error. Completing a freed or already ready object does
    /// nothing (its task finished after it was cancelled or forgotten).
    pub fn fulfill(&self, id: ObjectId, value: ObjectValue, nested: Vec<ObjectRef>) {
        if let Some(entry) = self.entry(id) {
            self.inner.complete(&entry, value, nested, |s| {
                matches!(s, State::Pending { .. })
            });
        }
    }

    /// Completes a pending object whose value stayed on the nodes `at` (a
    /// large result of a task that ran there); they keep it until this
    /// object is freed.
    pub fn fulfill_elsewhere(&self, id: ObjectId, at: Vec<NodeId>, size: u64) {
        let freed_meanwhile = |at: Vec<NodeId>| {
            // The holders must drop their copies now.
            if let Some(remote) = self.inner.remote.get() {
                remote.freed_copies(id, at);
            }
        };
        let Some(entry) = self.entry(id) else {
            return freed_meanwhile(at);
        };
        let settled = {
            let mut state = entry.state.lock();
            let listeners = match &mut *state {
                State::Pending { listeners } => listeners,
                State::Freed => {
                    drop(state);
                    return freed_meanwhile(at);
                }
                State::Elsewhere { at: holders, .. } => {
                    // Settled already elsewhere (a task run again to rebuild
                    // another of its values): the new copies join the old,
                    // whose nodes may be gone.
                    let mut copies = entry.copies.lock();
                    for n in at {
                        if !holders.contains(&n) {
                            holders.push(n);
                            copies.push(n);
                        }
                    }
                    return;
                }
                _ => {
                    // Here already: new copies are not needed (and an object
                    // that is here needs no lineage). A node it knows as a
                    // holder keeps its copy.
                    let known = entry.copies.lock().clone();
                    drop(state);
                    let extra: Vec<NodeId> =
                        at.into_iter().filter(|n| !known.contains(n)).collect();
                    if !extra.is_empty() {
                        freed_meanwhile(extra);
                    }
                    return;
                }
            };
            let (here, settled): (Vec<Listener>, Vec<Listener>) = std::mem::take(listeners)
                .into_iter()
                .partition(|l| l.wants_value_here);
            // Under the state lock: a release (which sets Freed first) sees them.
            entry.copies.lock().extend(at.iter().copied());
            self.inner.discharge_held(&entry);
            *state = State::Elsewhere {
                at,
                size,
                listeners: here,
                fetching: false,
            };
            settled
        };
        // Waiters for the value must come and fetch it; the others go on.
        entry.ready.notify_waiters();
        wake(settled);
        let wanted_here = matches!(&*entry.state.lock(), State::Elsewhere { listeners, .. } if !listeners.is_empty());
        if wanted_here && let Some(r) = self.inner.revive(entry) {
            r.fetch_if_elsewhere();
        }
    }

    /// An object owned here whose value was only on nodes that are gone goes
    /// back to pending, to be computed again (lineage reconstruction). Its
    /// waiters stay. False unless its value is elsewhere (it is here, being
    /// rebuilt already, or freed).
    pub fn rebuild_pending(&self, id: ObjectId) -> bool {
        let Some(entry) = self.entry(id) else {
            return false;
        };
        let mut state = entry.state.lock();
        let State::Elsewhere { at, listeners, .. } = &mut *state else {
            return false;
        };
        let lost = std::mem::take(at);
        let listeners = std::mem::take(listeners);
        entry.copies.lock().retain(|n| !lost.contains(n));
        *state = State::Pending { listeners };
        true
    }

    /// Gives a fetched copy to a borrowed (or remotely stored) object.
    pub fn fill(&self, id: ObjectId, value: ObjectValue, nested: Vec<ObjectRef>) {
        if let Some(entry) = self.entry(id) {
            self.inner.complete(&entry, value, nested, |s| {
                matches!(s, State::Elsewhere { .. })
            });
        }
    }

    /// A reference to an object owned by `home`, whose owner has counted this
    /// node as one more borrower.
    pub fn borrow(&self, id: ObjectId, home: NodeId, job: JobId) -> ObjectRef {
        let (r, _) = self.get_or_insert(id, || {
            let state = State::Elsewhere {
                at: vec![home],
                size: 0,
                listeners: Vec::new(),
                fetching: false,
            };
            let books = self.inner.books_of(job);
            self.inner.admit_anyway(books.as_ref());
            Self::new_entry(id, job, books, Some(home), state, 0)
        });
        r.entry.registrations.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Keeps the value of an object owned by `home` here on its behalf (a
    /// large result of a task that ran here) until it is unpinned. If this
    /// node already references the object (it borrowed it), that entry gets
    /// the value.
    pub fn keep_copy(
        &self,
        id: ObjectId,
        home: NodeId,
        job: JobId,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> Result<Pinned, FabricError> {
        let len = value.len() as i64;
        let (r, fresh) = self.get_or_insert(id, || {
            let state = State::Elsewhere {
                at: vec![home],
                size: len as u64,
                listeners: Vec::new(),
                fetching: true,
            };
            let books = self.inner.books_of(job);
            self.inner.admit_anyway(books.as_ref());
            Self::new_entry(id, job, books, Some(home), state, 0)
        });
        let accept = |s: &State| matches!(s, State::Elsewhere { .. } | State::Pending { .. });
        if !self.inner.complete(&r.entry, Ok(value), nested, accept) && fresh {
            return Err(FabricError::ObjectLost(format!(
                "object {id} could not be kept"
            )));
        }
        if let Some(Err(e)) = r.try_get() {
            return Err(e);
        }
        r.entry.pins.fetch_add(1, Ordering::AcqRel);
        Ok(Pinned(Some(r)))
    }

    fn entry(&self, id: ObjectId) -> Option<Arc<Entry>> {
        self.inner.entries.get(&id).map(|e| e.clone())
    }

    /// A new reference to an object found by id inside a value. Fails with
    /// not-found when the object was freed.
    pub fn adopt(&self, id: ObjectId) -> Result<ObjectRef, FabricError> {
        self.lookup(id)
            .ok_or_else(|| FabricError::NotFound(format!("object {id}")))
    }

    /// A new reference to a live object, if there is one.
    pub fn lookup(&self, id: ObjectId) -> Option<ObjectRef> {
        self.inner.revive(self.entry(id)?)
    }

    /// Bytes held now: values in memory, and each object's overhead.
    pub fn used_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire).max(0) as u64
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.inner.capacity as u64
    }

    /// What this store spilled and read back so far (zero before its
    /// first spill).
    pub fn spill_counts(&self) -> crate::spill::SpillCounts {
        match self.inner.spill_dir.get() {
            Some(Ok(dir)) => dir.counts(),
            _ => Default::default(),
        }
    }

    /// Bytes of freed large buffers kept for reuse.
    pub fn cached_buffer_bytes(&self) -> u64 {
        self.inner.buffers.cached_bytes() as u64
    }

    /// Gives back memory that finished work left: recycled buffers nobody
    /// reused within `idle`, and the room of a map that once held far more
    /// objects than it does now.
    pub fn give_back(&self, idle: std::time::Duration) {
        self.inner.buffers.trim(idle);
        crate::ids::shrink_if_sparse(&self.inner.entries);
    }

    /// Objects held now (ready, pending, or borrowed).
    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    /// Whether the object is still in the store.
    pub fn contains(&self, id: ObjectId) -> bool {
        self.inner.entries.contains_key(&id)
    }
}

#[cfg(test)]
mod tests;
