//! [`ObjectRef`]: a counted reference to an object, and what it tells about
//! the object (where its value is, what it nests, who waits on it).

use super::*;

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
    pub(super) fn account(&self) -> Option<&Arc<TenantAccount>> {
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
    pub(super) fn fetch_if_elsewhere(&self) {
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
pub struct Pinned(pub(super) Option<ObjectRef>);

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
