//! The store's books: what each object costs and who pays, room made by
//! spilling cold values to disk, reading a value back, and completing a
//! pending object (waking what waits on it).

use super::*;

impl Inner {
    /// The last reference to `entry` is gone: unmap it, give back its bytes,
    /// and tell the cluster.
    pub(super) fn release(&self, entry: &Arc<Entry>) {
        // A borrow may already have replaced a dying entry under the same id.
        self.entries
            .remove_if(&entry.id, |_, e| Arc::ptr_eq(e, entry));
        // Freed first, under the lock: nothing can complete (and charge) it after.
        let state = std::mem::replace(&mut *entry.state.lock(), State::Freed);
        let charged = entry.charged.swap(0, Ordering::AcqRel);
        let spilled = matches!(&state, State::Spilled { .. });
        if let State::Spilled { file, .. } = &state {
            // Its bytes left memory when it spilled; only the file remains.
            self.remove_spill_file(file);
        }
        let large = matches!(&state, State::Ready { value: Ok(b), .. } if b.len() >= crate::buffers::LARGE_FREE);
        // Dropping the state drops nested references, which may free more objects.
        drop(state);
        if large {
            // Its memory goes back to the system now, not at the
            // allocator's leisure (a pooled buffer stays in the pool).
            crate::allocator::trim(true);
        }
        // Uncharged only now that its memory is gone: what the node
        // accounts for never drops below what it holds.
        if !spilled {
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
        self.return_borrows(entry);
        if entry.anchor
            && entry.home.is_none()
            && let Some(hook) = self.anchor_freed.get()
        {
            hook.freed(
                crate::ids::ActorId::from_u128(entry.id.as_u128()),
                entry.job,
            );
        }
        if let Some(remote) = self.remote.get() {
            let copies = std::mem::take(&mut *entry.copies.lock());
            if !copies.is_empty() {
                remote.freed_copies(entry.id, copies);
            }
        }
    }

    /// Gives the owner back the borrows it counted for this node.
    pub(super) fn return_borrows(&self, entry: &Entry) {
        if let (Some(home), Some(remote)) = (entry.home, self.remote.get()) {
            let n = entry.registrations.swap(0, Ordering::AcqRel);
            if n > 0 {
                remote.released_borrow(entry.id, home, n);
            }
        }
    }

    /// Counts `bytes` against the store's capacity and the tenant's quota.
    pub(super) fn charge(
        &self,
        bytes: i64,
        account: Option<&Arc<TenantAccount>>,
    ) -> Result<(), FabricError> {
        self.charge_store(bytes)?;
        if let Some(a) = account
            && let Err(e) = a.charge_objects(bytes.max(0) as u64)
        {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn books_of(&self, job: JobId) -> Option<Arc<JobBooks>> {
        self.ledger.as_ref().and_then(|l| l.books_of(job))
    }

    /// Charges a new object: one object to its job, its `value` bytes and
    /// its overhead to the store and its tenant. Refused past a limit.
    pub(super) fn admit(
        &self,
        books: Option<&Arc<JobBooks>>,
        value: i64,
    ) -> Result<(), FabricError> {
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
    pub(super) fn discharge_held(&self, entry: &Entry) {
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
    pub(super) fn admit_anyway(&self, books: Option<&Arc<JobBooks>>) {
        self.used
            .fetch_add(OBJECT_OVERHEAD as i64, Ordering::AcqRel);
        if let Some(b) = books {
            b.force_object();
            b.account.force_objects(OBJECT_OVERHEAD);
        }
    }

    pub(super) fn charge_store(&self, bytes: i64) -> Result<(), FabricError> {
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

    pub(super) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn spill_dir(&self) -> Result<&SpillDir, String> {
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

    pub(super) fn remove_spill_file(&self, file: &std::path::Path) {
        if let Ok(dir) = self.spill_dir() {
            dir.remove(file);
        }
    }

    /// Spills least recently used ready values until `needed` bytes are
    /// free. `Ok(false)`: not enough to spill. Entries locked by others
    /// (e.g. the one being completed) are skipped. A value being read right
    /// now (a guest's `get`, a transfer) stays valid for that reader: its
    /// bytes are shared, and go when the reader is done.
    pub(super) fn make_room(&self, needed: i64) -> Result<bool, String> {
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
    pub(super) fn value_of(&self, entry: &Entry) -> Option<ObjectValue> {
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
    pub(super) fn revive(self: &Arc<Self>, entry: Arc<Entry>) -> Option<ObjectRef> {
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
    pub(super) fn complete(
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
