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

mod cascade;

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
    /// Counts reads and stores: the LRU order.
    clock: AtomicU64,
}

impl Inner {
    /// The last reference to `entry` is gone: unmap it, give back its bytes,
    /// and tell the cluster.
    fn release(&self, entry: &Arc<Entry>) {
        // A borrow may already have replaced a dying entry under the same id.
        self.entries
            .remove_if(&entry.id, |_, e| Arc::ptr_eq(e, entry));
        // Freed first, under the lock: nothing can complete (and charge) it after.
        let state = std::mem::replace(&mut *entry.state.lock(), State::Freed);
        let charged = entry.charged.swap(0, Ordering::AcqRel);
        if let State::Spilled { file, .. } = &state {
            // Its bytes left memory when it spilled; only the file remains.
            self.remove_spill_file(file);
        } else {
            self.used.fetch_sub(charged, Ordering::AcqRel);
        }
        self.used
            .fetch_sub(OBJECT_OVERHEAD as i64, Ordering::AcqRel);
        if let Some(books) = &entry.books {
            books
                .account
                .uncharge_objects(charged.max(0) as u64 + OBJECT_OVERHEAD);
            if books.remove_object()
                && let Some(ledger) = &self.ledger
            {
                ledger.forget(books);
            }
        }
        let large = matches!(&state, State::Ready { value: Ok(b), .. } if b.len() >= crate::buffers::LARGE_FREE);
        // Dropping the state drops nested references, which may free more objects.
        drop(state);
        if large {
            // Its memory goes back to the system now, not at the
            // allocator's leisure (a pooled buffer stays in the pool).
            crate::allocator::trim(true);
        }
        self.return_borrows(entry);
        if let Some(remote) = self.remote.get() {
            let copies = std::mem::take(&mut *entry.copies.lock());
            if !copies.is_empty() {
                remote.freed_copies(entry.id, copies);
            }
        }
    }

    /// Gives the owner back the borrows it counted for this node.
    fn return_borrows(&self, entry: &Entry) {
        if let (Some(home), Some(remote)) = (entry.home, self.remote.get()) {
            let n = entry.registrations.swap(0, Ordering::AcqRel);
            if n > 0 {
                remote.released_borrow(entry.id, home, n);
            }
        }
    }

    /// Counts `bytes` against the store's capacity and the tenant's quota.
    fn charge(&self, bytes: i64, account: Option<&Arc<TenantAccount>>) -> Result<(), FabricError> {
        self.charge_store(bytes)?;
        if let Some(a) = account
            && let Err(e) = a.charge_objects(bytes.max(0) as u64)
        {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    fn books_of(&self, job: JobId) -> Option<Arc<JobBooks>> {
        self.ledger.as_ref().and_then(|l| l.books_of(job))
    }

    /// Charges a new object: one object to its job, its `value` bytes and
    /// its overhead to the store and its tenant. Refused past a limit.
    fn admit(&self, books: Option<&Arc<JobBooks>>, value: i64) -> Result<(), FabricError> {
        if let Some(b) = books {
            b.add_object()?;
        }
        let account = books.map(|b| &b.account);
        if let Err(e) = self.charge(value + OBJECT_OVERHEAD as i64, account) {
            if let Some(b) = books {
                b.remove_object();
            }
            return Err(e);
        }
        Ok(())
    }

    /// Gives back what `entry` was charged besides its overhead (under its
    /// state lock).
    fn discharge_held(&self, entry: &Entry) {
        let held = entry.charged.swap(0, Ordering::AcqRel);
        if held != 0 {
            self.used.fetch_sub(held, Ordering::AcqRel);
            if let Some(a) = entry.account() {
                a.uncharge_objects(held.max(0) as u64);
            }
        }
    }

    /// Charges a new object that must be held whatever the limits (a
    /// reference another node sent, a copy kept for its owner).
    fn admit_anyway(&self, books: Option<&Arc<JobBooks>>) {
        self.used
            .fetch_add(OBJECT_OVERHEAD as i64, Ordering::AcqRel);
        if let Some(b) = books {
            b.force_object();
            b.account.force_objects(OBJECT_OVERHEAD);
        }
    }

    fn charge_store(&self, bytes: i64) -> Result<(), FabricError> {
        let mut spill_error = None;
        for attempt in 0..2 {
            let before = self.used.fetch_add(bytes, Ordering::AcqRel);
            if before + bytes <= self.capacity {
                return Ok(());
            }
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            if attempt == 0 {
                match self.make_room(before + bytes - self.capacity) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => spill_error = Some(e),
                }
            }
            return Err(FabricError::limit(
                "object-store-memory",
                self.capacity as u64,
                format!(
                    "an object of {} does not fit: {} of {} in use{}",
                    crate::resources::fmt_bytes(bytes),
                    crate::resources::fmt_bytes(before),
                    crate::resources::fmt_bytes(self.capacity),
                    spill_error
                        .map(|e| format!(", and spilling to disk failed: {e}"))
                        .unwrap_or_default()
                ),
            ));
        }
        unreachable!("the loop returns")
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn spill_dir(&self) -> Result<&SpillDir, String> {
        self.spill_dir
            .get_or_init(|| {
                match &self.spill {
                    Spill::Temporary => SpillDir::temporary(),
                    Spill::Dir(p) => SpillDir::at(p.clone()),
                    Spill::Off => return Err("spilling is off".into()),
                }
                .map_err(|e| format!("cannot make the spill directory: {e}"))
            })
            .as_ref()
            .map_err(|e| e.clone())
    }

    fn remove_spill_file(&self, file: &std::path::Path) {
        if let Ok(dir) = self.spill_dir() {
            dir.remove(file);
        }
    }

    /// Spills least recently used ready values until `needed` bytes are
    /// free. `Ok(false)`: not enough to spill. Entries locked by others
    /// (e.g. the one being completed) are skipped. A value being read right
    /// now (a guest's `get`, a transfer) stays valid for that reader: its
    /// bytes are shared, and go when the reader is done.
    fn make_room(&self, needed: i64) -> Result<bool, String> {
        if self.spill == Spill::Off || needed > self.capacity {
            return Ok(false);
        }
        let mut candidates: Vec<(u64, Arc<Entry>)> = self
            .entries
            .iter()
            .filter_map(|e| {
                let entry = e.value();
                let state = entry.state.try_lock()?;
                match &*state {
                    State::Ready { value: Ok(b), .. } if b.len() >= SPILL_MIN => {
                        Some((entry.last_used.load(Ordering::Relaxed), entry.clone()))
                    }
                    _ => None,
                }
            })
            .collect();
        candidates.sort_by_key(|(t, _)| *t);
        let mut freed = 0i64;
        for (_, entry) in candidates {
            if freed >= needed {
                break;
            }
            let Some(mut state) = entry.state.try_lock() else {
                continue;
            };
            let State::Ready { value: Ok(b), .. } = &*state else {
                continue;
            };
            let file = self
                .spill_dir()?
                .write(entry.id.as_u128(), b)
                .map_err(|e| e.to_string())?;
            let len = b.len();
            let State::Ready { nested, .. } = std::mem::replace(&mut *state, State::Freed) else {
                unreachable!("matched above")
            };
            *state = State::Spilled { file, len, nested };
            drop(state);
            self.used.fetch_sub(len as i64, Ordering::AcqRel);
            freed += len as i64;
            tracing::debug!(object = %entry.id.short(), bytes = len, "spilled an object to disk");
        }
        Ok(freed >= needed)
    }

    /// The value of a ready or spilled `entry` (loading a spilled one back
    /// into memory, or, when memory is full of values in use, reading it
    /// from its file without keeping it), `None` when it is not here.
    fn value_of(&self, entry: &Entry) -> Option<ObjectValue> {
        let (file, len) = match &*entry.state.lock() {
            State::Ready { value, .. } => {
                entry.last_used.store(self.tick(), Ordering::Relaxed);
                return Some(value.clone());
            }
            State::Spilled { file, len, .. } => (file.clone(), *len),
            _ => return None,
        };
        let loaded = self
            .spill_dir()
            .and_then(|d| d.read(&file, len).map_err(|e| e.to_string()));
        let bytes = match loaded {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                // Another reader may have loaded it meanwhile.
                if let State::Ready { value, .. } = &*entry.state.lock() {
                    return Some(value.clone());
                }
                return Some(Err(FabricError::ObjectLost(format!(
                    "object {} was spilled to disk and cannot be read back: {e}",
                    entry.id
                ))));
            }
        };
        if self.charge_store(len as i64).is_ok() {
            let mut state = entry.state.lock();
            match &mut *state {
                State::Spilled {
                    file: f, nested, ..
                } if *f == file => {
                    let nested = std::mem::take(nested);
                    *state = State::Ready {
                        value: Ok(bytes.clone()),
                        nested,
                    };
                    drop(state);
                    entry.last_used.store(self.tick(), Ordering::Relaxed);
                    self.remove_spill_file(&file);
                }
                // Loaded by another reader, or freed: give the charge back.
                _ => {
                    drop(state);
                    self.used.fetch_sub(len as i64, Ordering::AcqRel);
                }
            }
        }
        Some(Ok(bytes))
    }

    /// A new reference to a live entry; `None` if it is dying.
    fn revive(self: &Arc<Self>, entry: Arc<Entry>) -> Option<ObjectRef> {
        entry
            .refs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 0).then_some(c + 1)
            })
            .ok()?;
        Some(ObjectRef {
            entry,
            store: self.clone(),
        })
    }

    /// Makes `entry` ready with `value` (charging its bytes) if its state is
    /// one `allowed` accepts, and wakes everyone waiting for it. Returns
    /// whether it did. Charging happens under the state lock, so a release
    /// can never miss (or double-refund) it.
    fn complete(
        &self,
        entry: &Entry,
        value: ObjectValue,
        nested: Vec<ObjectRef>,
        allowed: fn(&State) -> bool,
    ) -> bool {
        let listeners = {
            let mut state = entry.state.lock();
            if !allowed(&state) {
                return false;
            }
            // What a pending result held (its task's arguments) goes: the
            // value is charged instead.
            self.discharge_held(entry);
            let (value, nested) = match value {
                Ok(bytes) => match self.charge(bytes.len() as i64, entry.account()) {
                    Ok(()) => {
                        entry
                            .charged
                            .fetch_add(bytes.len() as i64, Ordering::AcqRel);
                        (Ok(bytes), nested)
                    }
                    Err(e) => (Err(e), Vec::new()),
                },
                Err(e) => {
                    // An error is kept too: its text is charged (whatever
                    // the quota: the outcome must be stored).
                    let bytes = e.text_bytes() as i64;
                    self.used.fetch_add(bytes, Ordering::AcqRel);
                    if let Some(a) = entry.account() {
                        a.force_objects(bytes as u64);
                    }
                    entry.charged.fetch_add(bytes, Ordering::AcqRel);
                    (Err(e), Vec::new())
                }
            };
            let listeners = match &mut *state {
                State::Pending { listeners } | State::Elsewhere { listeners, .. } => {
                    std::mem::take(listeners)
                }
                State::Ready { .. } | State::Spilled { .. } | State::Freed => Vec::new(),
            };
            *state = State::Ready { value, nested };
            entry.last_used.store(self.tick(), Ordering::Relaxed);
            listeners
        };
        entry.ready.notify_waiters();
        wake(listeners);
        true
    }
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
                _ => return,
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

/// Where an object's value is, as seen from this node.
#[derive(Debug)]
pub enum Location {
    /// Being computed here.
    Pending,
    /// Here (or failed).
    Ready(ObjectValue),
    /// On these nodes (with its size, 0 if unknown).
    Elsewhere(Vec<NodeId>, u64),
}

impl Entry {
    fn account(&self) -> Option<&Arc<TenantAccount>> {
        self.books.as_ref().map(|b| &b.account)
    }
}

impl ObjectRef {
    pub fn id(&self) -> ObjectId {
        self.entry.id
    }

    /// The job that created the object.
    pub fn job(&self) -> JobId {
        self.entry.job
    }

    /// The owning node, if the object is borrowed from another node.
    pub fn home(&self) -> Option<NodeId> {
        self.entry.home
    }

    /// The task or method this object is the result of, when it was made
    /// here as one.
    pub fn producer(&self) -> Option<&str> {
        self.entry.producer.as_deref()
    }

    /// Why the object failed, if it is ready here with an error.
    pub fn failure(&self) -> Option<FabricError> {
        match &*self.entry.state.lock() {
            State::Ready { value: Err(e), .. } => Some(e.clone()),
            _ => None,
        }
    }

    /// The value if it is here.
    pub fn try_get(&self) -> Option<ObjectValue> {
        self.store.value_of(&self.entry)
    }

    /// Whether the value is here.
    pub fn is_ready(&self) -> bool {
        matches!(
            &*self.entry.state.lock(),
            State::Ready { .. } | State::Spilled { .. }
        )
    }

    /// Where the value is now.
    pub fn location(&self) -> Location {
        let state = self.entry.state.lock();
        match &*state {
            State::Pending { .. } => Location::Pending,
            State::Ready { value, .. } => Location::Ready(value.clone()),
            State::Spilled { .. } => {
                drop(state);
                Location::Ready(self.store.value_of(&self.entry).unwrap_or(Err(
                    FabricError::ObjectLost(format!("object {} was freed", self.entry.id)),
                )))
            }
            State::Elsewhere { at, size, .. } => Location::Elsewhere(at.clone(), *size),
            // Unreachable while a reference exists; say so if it ever is.
            State::Freed => Location::Ready(Err(FabricError::ObjectLost(format!(
                "object {} was freed",
                self.entry.id
            )))),
        }
    }

    /// The references inside the value, when it is here.
    pub fn nested(&self) -> Vec<ObjectRef> {
        match &*self.entry.state.lock() {
            State::Ready { nested, .. } | State::Spilled { nested, .. } => nested.clone(),
            _ => Vec::new(),
        }
    }

    /// Starts fetching the value if it is elsewhere and nobody fetches it yet.
    fn fetch_if_elsewhere(&self) {
        let at = match &mut *self.entry.state.lock() {
            State::Elsewhere { at, fetching, .. } if !*fetching => {
                *fetching = true;
                at.clone()
            }
            _ => return,
        };
        match self.store.remote.get() {
            Some(remote) => remote.fetch(self.entry.id, at),
            None => {
                let lost = FabricError::ObjectLost(format!(
                    "object {} is on another node and this node is in no cluster",
                    self.entry.id
                ));
                self.store
                    .complete(&self.entry, Err(lost), Vec::new(), |s| {
                        matches!(s, State::Elsewhere { .. })
                    });
            }
        }
    }

    /// Waits for the value, fetching it if it is elsewhere, up to `timeout`
    /// (forever when `None`).
    pub async fn get(&self, timeout: Option<Duration>) -> ObjectValue {
        let wait = async {
            loop {
                let notified = self.entry.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(v) = self.store.value_of(&self.entry) {
                    return v;
                }
                self.fetch_if_elsewhere();
                notified.await;
            }
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .unwrap_or(Err(FabricError::Timeout)),
        }
    }

    /// Calls `listener` once the object is no longer being computed here
    /// (ready here, or its value is elsewhere); returns false (and does not
    /// register) when it already is not.
    pub fn on_settled(&self, listener: Arc<dyn ReadyListener>) -> bool {
        match &mut *self.entry.state.lock() {
            State::Pending { listeners } => {
                push_listener(
                    listeners,
                    Listener {
                        listener,
                        wants_value_here: false,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Calls `listener` once the value is here (fetching it if it is
    /// elsewhere); returns false (and does not register) when it already is.
    pub fn on_ready(&self, listener: Arc<dyn ReadyListener>) -> bool {
        let registered = match &mut *self.entry.state.lock() {
            State::Pending { listeners } | State::Elsewhere { listeners, .. } => {
                push_listener(
                    listeners,
                    Listener {
                        listener,
                        wants_value_here: true,
                    },
                );
                true
            }
            State::Ready { .. } | State::Spilled { .. } | State::Freed => false,
        };
        if registered {
            self.fetch_if_elsewhere();
        }
        registered
    }

    /// Waits until the object is no longer being computed here.
    pub async fn settled(&self) {
        loop {
            let notified = self.entry.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !matches!(&*self.entry.state.lock(), State::Pending { .. }) {
                return;
            }
            notified.await;
        }
    }

    /// Records that `node` keeps a copy of this (owned) object, to be dropped
    /// when it is freed.
    pub fn add_copy(&self, node: NodeId) {
        let mut copies = self.entry.copies.lock();
        if !copies.contains(&node) {
            copies.push(node);
        }
    }

    /// Counts one more borrow the owner holds for this node (a reference
    /// that arrived again).
    pub fn add_registration(&self) {
        self.entry.registrations.fetch_add(1, Ordering::AcqRel);
    }
}

impl Clone for ObjectRef {
    fn clone(&self) -> Self {
        self.entry.refs.fetch_add(1, Ordering::AcqRel);
        ObjectRef {
            entry: self.entry.clone(),
            store: self.store.clone(),
        }
    }
}

impl Drop for ObjectRef {
    fn drop(&mut self) {
        let before = self.entry.refs.fetch_sub(1, Ordering::AcqRel);
        if before == 1 {
            release(&self.store, &self.entry);
        } else if before - 1 == self.entry.pins.load(Ordering::Acquire) {
            // Only copies kept for the owner remain: this node no longer
            // uses the object, so the owner gets its borrows back.
            self.store.return_borrows(&self.entry);
        }
    }
}

/// A reference that keeps a copy for the object's owner, until the owner
/// frees the object. It does not count as this node using the object, so
/// the borrows this node holds go back to the owner as soon as nothing else
/// here references it.
pub struct Pinned(Option<ObjectRef>);

impl Pinned {
    /// The node that owns the object.
    pub fn home(&self) -> Option<NodeId> {
        self.0.as_ref().and_then(|r| r.home())
    }
}
impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.entry.pins.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectRef({})", self.entry.id.short())
    }
}

/// Counts objects becoming ready and wakes one waiter when enough are.
pub(crate) struct ReadyCounter {
    ready: AtomicUsize,
    needed: usize,
    notify: Notify,
    /// Set when the waiter stopped waiting (done or timed out).
    closed: std::sync::atomic::AtomicBool,
}

impl ReadyCounter {
    pub(crate) fn new(already_ready: usize, needed: usize) -> Arc<Self> {
        Arc::new(ReadyCounter {
            ready: AtomicUsize::new(already_ready),
            needed,
            notify: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The waiter is gone: listeners still registered may be dropped.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn add_ready(&self, n: usize) {
        self.ready.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ready.load(Ordering::Acquire) >= self.needed {
                return;
            }
            notified.await;
        }
    }
}

impl ReadyListener for ReadyCounter {
    fn on_ready(&self) {
        if self.ready.fetch_add(1, Ordering::AcqRel) + 1 >= self.needed {
            self.notify.notify_one();
        }
    }

    fn is_done(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.ready.load(Ordering::Acquire) >= self.needed
    }
}

#[cfg(test)]
mod tests;
