//! The node-local object store: immutable values shared by reference.
//!
//! An object is created pending (the result of a task that has not finished)
//! or ready (a `put`). Its bytes are a [`Bytes`] buffer: every reader shares
//! the one buffer the value was received into, and nothing on the host copies
//! it again. Objects are reference counted by [`ObjectRef`] guards: a guest's
//! handle, a queued task's argument and an object that nests another all hold
//! one, and the object is freed when the last guard drops. The store is
//! bounded by a byte budget; a value that does not fit is refused with a
//! `limit-exceeded` error naming `object-store-memory`.
//!
//! ```
//! use fabric_host::object_store::ObjectStore;
//! use fabric_host::ids::{JobId, ObjectId};
//! # tokio_test_block_on(async {
//! let store = ObjectStore::new(1 << 20);
//! let r = store.put(JobId::random(), "hello".into(), Vec::new()).unwrap();
//! assert_eq!(&r.get(None).await.unwrap()[..], b"hello");
//! assert_eq!(store.used_bytes(), 5);
//! drop(r); // the last reference: the object is freed
//! assert_eq!(store.used_bytes(), 0);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::buffers::BufferPool;
use crate::error::FabricError;
use crate::ids::{JobId, ObjectId};

/// Called once when a pending object becomes ready (or fails).
pub trait ReadyListener: Send + Sync {
    fn on_ready(&self);
}

/// The value of a ready object, or why it has none.
pub type ObjectValue = Result<Bytes, FabricError>;

enum State {
    Pending {
        listeners: Vec<Arc<dyn ReadyListener>>,
    },
    Ready {
        value: ObjectValue,
        /// References encoded inside the value: kept alive with it.
        _nested: Vec<ObjectRef>,
    },
}

struct Entry {
    id: ObjectId,
    owner: JobId,
    refs: AtomicUsize,
    /// Bytes charged to the store for this object.
    charged: AtomicI64,
    state: Mutex<State>,
    ready: Notify,
}

impl Entry {
    fn value(&self) -> Option<ObjectValue> {
        match &*self.state.lock().unwrap() {
            State::Ready { value, .. } => Some(value.clone()),
            State::Pending { .. } => None,
        }
    }
}

struct Inner {
    entries: DashMap<ObjectId, Arc<Entry>>,
    used: AtomicI64,
    capacity: i64,
    buffers: BufferPool,
}

impl Inner {
    fn release(&self, entry: &Arc<Entry>) {
        // Remove only if nobody revived it (see `adopt`); then give back its bytes.
        if let Some((_, e)) = self
            .entries
            .remove_if(&entry.id, |_, e| e.refs.load(Ordering::Acquire) == 0)
        {
            self.used
                .fetch_sub(e.charged.swap(0, Ordering::AcqRel), Ordering::AcqRel);
            // Dropping the state drops nested references, which may free more objects.
            let state = std::mem::replace(
                &mut *e.state.lock().unwrap(),
                State::Pending {
                    listeners: Vec::new(),
                },
            );
            drop(state);
        }
    }

    fn charge(&self, bytes: i64) -> Result<(), FabricError> {
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.capacity {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(FabricError::limit(
                "object-store-memory",
                self.capacity as u64,
                format!(
                    "an object of {} does not fit: {} of {} in use",
                    crate::resources::fmt_bytes(bytes),
                    crate::resources::fmt_bytes(before),
                    crate::resources::fmt_bytes(self.capacity)
                ),
            ));
        }
        Ok(())
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
        ObjectStore {
            inner: Arc::new(Inner {
                entries: DashMap::new(),
                used: AtomicI64::new(0),
                capacity: capacity.min(i64::MAX as u64) as i64,
                // Keep up to an eighth of the store (at most 1 GiB) in
                // recycled large buffers.
                buffers: BufferPool::new((capacity / 8).min(1 << 30) as usize),
            }),
        }
    }

    fn insert(&self, id: ObjectId, owner: JobId, state: State, charged: i64) -> ObjectRef {
        let entry = Arc::new(Entry {
            id,
            owner,
            refs: AtomicUsize::new(1),
            charged: AtomicI64::new(charged),
            state: Mutex::new(state),
            ready: Notify::new(),
        });
        self.inner.entries.insert(id, entry.clone());
        ObjectRef {
            entry,
            store: self.inner.clone(),
        }
    }

    /// A pending object that [`ObjectStore::fulfill`] will complete.
    pub fn create_pending(&self, id: ObjectId, owner: JobId) -> ObjectRef {
        self.insert(
            id,
            owner,
            State::Pending {
                listeners: Vec::new(),
            },
            0,
        )
    }

    /// Stores a ready value under a fresh id.
    pub fn put(
        &self,
        owner: JobId,
        value: Bytes,
        nested: Vec<ObjectRef>,
    ) -> Result<ObjectRef, FabricError> {
        let len = value.len() as i64;
        self.inner.charge(len)?;
        Ok(self.insert(
            ObjectId::random(),
            owner,
            State::Ready {
                value: Ok(value),
                _nested: nested,
            },
            len,
        ))
    }

    /// Stores the concatenation of `parts` (e.g. a value read straight out of
    /// a guest's memory): one copy, into a recycled buffer when large. The
    /// budget is checked before anything is copied.
    pub fn put_parts(
        &self,
        owner: JobId,
        parts: &[&[u8]],
        nested: Vec<ObjectRef>,
    ) -> Result<ObjectRef, FabricError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.inner.charge(len as i64)?;
        let value = self.inner.buffers.copy_parts(parts);
        Ok(self.insert(
            ObjectId::random(),
            owner,
            State::Ready {
                value: Ok(value),
                _nested: nested,
            },
            len as i64,
        ))
    }

    /// Completes a pending object. A value that does not fit becomes a
    /// `limit-exceeded` error. Completing a freed or already ready object does
    /// nothing (its task finished after it was cancelled or forgotten).
    pub fn fulfill(&self, id: ObjectId, value: ObjectValue, nested: Vec<ObjectRef>) {
        let Some(entry) = self.inner.entries.get(&id).map(|e| e.clone()) else {
            return;
        };
        let (value, nested) = match value {
            Ok(bytes) => {
                let len = bytes.len() as i64;
                match self.inner.charge(len) {
                    Ok(()) => {
                        entry.charged.fetch_add(len, Ordering::AcqRel);
                        (Ok(bytes), nested)
                    }
                    Err(e) => (Err(e), Vec::new()),
                }
            }
            Err(e) => (Err(e), Vec::new()),
        };
        let listeners = {
            let mut state = entry.state.lock().unwrap();
            match &mut *state {
                State::Ready { .. } => {
                    // Lost the race with a cancel: give back what we charged.
                    if let Ok(b) = &value {
                        let len = b.len() as i64;
                        entry.charged.fetch_sub(len, Ordering::AcqRel);
                        self.inner.used.fetch_sub(len, Ordering::AcqRel);
                    }
                    return;
                }
                State::Pending { listeners } => {
                    let listeners = std::mem::take(listeners);
                    *state = State::Ready {
                        value,
                        _nested: nested,
                    };
                    listeners
                }
            }
        };
        entry.ready.notify_waiters();
        for l in listeners {
            l.on_ready();
        }
    }

    /// A new reference to an object found by id inside a value. Fails with
    /// not-found when the object was freed or belongs to another owner scope.
    pub fn adopt(&self, id: ObjectId) -> Result<ObjectRef, FabricError> {
        let entry = self
            .inner
            .entries
            .get(&id)
            .map(|e| e.clone())
            .ok_or_else(|| FabricError::NotFound(format!("object {id}")))?;
        // Revive only a live object: a count of zero means it is being freed.
        entry
            .refs
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                (c > 0).then_some(c + 1)
            })
            .map_err(|_| FabricError::NotFound(format!("object {id}")))?;
        Ok(ObjectRef {
            entry,
            store: self.inner.clone(),
        })
    }

    /// Bytes of values held now.
    pub fn used_bytes(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire).max(0) as u64
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.inner.capacity as u64
    }

    /// Objects held now (ready or pending).
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

impl ObjectRef {
    pub fn id(&self) -> ObjectId {
        self.entry.id
    }

    /// The job that created the object.
    pub fn owner(&self) -> JobId {
        self.entry.owner
    }

    /// The value if the object is ready.
    pub fn try_get(&self) -> Option<ObjectValue> {
        self.entry.value()
    }

    pub fn is_ready(&self) -> bool {
        matches!(&*self.entry.state.lock().unwrap(), State::Ready { .. })
    }

    /// Waits for the value, up to `timeout` (forever when `None`).
    pub async fn get(&self, timeout: Option<Duration>) -> ObjectValue {
        let wait = async {
            loop {
                let notified = self.entry.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(v) = self.entry.value() {
                    return v;
                }
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

    /// Calls `listener` once the object is ready; returns false (and does not
    /// register) when it already is.
    pub fn on_ready(&self, listener: Arc<dyn ReadyListener>) -> bool {
        match &mut *self.entry.state.lock().unwrap() {
            State::Pending { listeners } => {
                listeners.push(listener);
                true
            }
            State::Ready { .. } => false,
        }
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
        if self.entry.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.store.release(&self.entry);
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
}

impl ReadyCounter {
    pub(crate) fn new(already_ready: usize, needed: usize) -> Arc<Self> {
        Arc::new(ReadyCounter {
            ready: AtomicUsize::new(already_ready),
            needed,
            notify: Notify::new(),
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn refcount_frees_and_nested_refs_keep_alive() {
        let store = ObjectStore::new(1000);
        let job = JobId::random();
        let inner = store.put(job, Bytes::from_static(b"abc"), vec![]).unwrap();
        let inner_id = inner.id();
        let outer = store
            .put(job, Bytes::from_static(b"xy"), vec![inner.clone()])
            .unwrap();
        drop(inner);
        assert!(store.contains(inner_id), "nested reference keeps it alive");
        assert_eq!(store.used_bytes(), 5);
        let again = store.adopt(inner_id).unwrap();
        drop(outer);
        assert!(store.contains(inner_id));
        drop(again);
        assert!(!store.contains(inner_id));
        assert_eq!(store.used_bytes(), 0);
        assert!(matches!(
            store.adopt(inner_id),
            Err(FabricError::NotFound(_))
        ));
    }

    #[test]
    fn full_store_refuses_with_a_named_limit() {
        let store = ObjectStore::new(10);
        let _a = store
            .put(JobId::random(), Bytes::from(vec![0; 8]), vec![])
            .unwrap();
        let err = store
            .put(JobId::random(), Bytes::from(vec![0; 8]), vec![])
            .unwrap_err();
        assert!(
            matches!(&err, FabricError::LimitExceeded { name, value: 10, .. } if name == "object-store-memory")
        );
        // A task result that does not fit becomes an error value.
        let p = store.create_pending(ObjectId::random(), JobId::random());
        store.fulfill(p.id(), Ok(Bytes::from(vec![0; 8])), vec![]);
        assert!(matches!(
            p.try_get(),
            Some(Err(FabricError::LimitExceeded { .. }))
        ));
        assert_eq!(store.used_bytes(), 8);
    }

    #[test]
    fn get_waits_for_fulfil_and_times_out() {
        rt().block_on(async {
            let store = ObjectStore::new(1000);
            let p = store.create_pending(ObjectId::random(), JobId::random());
            assert_eq!(
                p.get(Some(Duration::from_millis(10))).await,
                Err(FabricError::Timeout)
            );
            let s2 = store.clone();
            let id = p.id();
            tokio::spawn(async move { s2.fulfill(id, Ok(Bytes::from_static(b"v")), vec![]) });
            assert_eq!(&p.get(None).await.unwrap()[..], b"v");
        });
    }

    #[test]
    fn listeners_fire_once_on_ready() {
        let store = ObjectStore::new(1000);
        let p = store.create_pending(ObjectId::random(), JobId::random());
        let counter = ReadyCounter::new(0, 1);
        assert!(p.on_ready(counter.clone()));
        store.fulfill(p.id(), Err(FabricError::Cancelled), vec![]);
        store.fulfill(p.id(), Ok(Bytes::new()), vec![]);
        assert_eq!(counter.ready.load(Ordering::Acquire), 1);
        assert!(!p.on_ready(counter.clone()), "already ready");
        assert_eq!(p.try_get(), Some(Err(FabricError::Cancelled)));
    }
}
