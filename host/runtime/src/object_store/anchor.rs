//! Actor handles as objects: an actor's *handle object* has the actor's id
//! as its object id, so a reference to it is a handle the store counts like
//! any other (held by guests, nested in objects, lent to other nodes). When
//! the handle object of an actor that lives by reference is freed (its last
//! handle anywhere in the cluster went), the store tells its
//! [`AnchorFreed`] hook, which stops the actor.
//!
//! ```
//! use fabric_runtime::object_store::{AnchorFreed, ObjectStore};
//! use fabric_runtime::ids::{ActorId, JobId};
//! use std::sync::{Arc, Mutex};
//!
//! struct Seen(Mutex<Vec<ActorId>>);
//! impl AnchorFreed for Seen {
//!     fn freed(&self, actor: ActorId, _job: JobId) {
//!         self.0.lock().unwrap().push(actor);
//!     }
//! }
//! let store = ObjectStore::new(1 << 20);
//! let seen = Arc::new(Seen(Mutex::new(Vec::new())));
//! store.set_anchor_hook(seen.clone());
//! let actor = ActorId::random();
//! let handle = store.anchor(actor, JobId::random(), true).unwrap();
//! let copy = handle.clone();
//! drop(handle);
//! assert!(seen.0.lock().unwrap().is_empty());
//! drop(copy); // the last handle
//! assert_eq!(*seen.0.lock().unwrap(), vec![actor]);
//! ```

use super::*;
use crate::ids::ActorId;

/// Told when the handle object of an actor that lives by reference is
/// freed on the node that owns it.
pub trait AnchorFreed: Send + Sync {
    fn freed(&self, actor: ActorId, job: JobId);
}

/// The value of a handle object: MessagePack `nil` (what a handle says is
/// its id; a guest that reads the object learns nothing more).
const ANCHOR_VALUE: &[u8] = &[0xc0];

impl ObjectStore {
    /// Connects the hook told when counted handle objects are freed (once).
    pub fn set_anchor_hook(&self, hook: Arc<dyn AnchorFreed>) {
        let _ = self.inner.anchor_freed.set(hook);
    }

    /// A reference to the handle object of `actor` (for `job`): the live
    /// one when this node has it, else a new one owned here. `counted`:
    /// freeing it stops the actor (an actor that is neither named nor
    /// detached; its handle object is made once, when it is created). A new
    /// one is charged to the job like any object.
    pub fn anchor(
        &self,
        actor: ActorId,
        job: JobId,
        counted: bool,
    ) -> Result<ObjectRef, FabricError> {
        let id = ObjectId::from_u128(actor.as_u128());
        if let Some(live) = self.lookup(id) {
            return Ok(live);
        }
        let books = self.inner.books_of(job);
        let len = ANCHOR_VALUE.len() as i64;
        self.inner.admit(books.as_ref(), len)?;
        let state = State::Ready {
            value: Ok(Bytes::from_static(ANCHOR_VALUE)),
            nested: Vec::new(),
        };
        let (r, fresh) = self.get_or_insert(id, || {
            let mut entry = Self::new_entry(id, job, books.clone(), None, state, len);
            Arc::get_mut(&mut entry).expect("just made").anchor = counted;
            entry
        });
        if !fresh {
            // Another thread made it first: give back what was admitted.
            unadmit(&self.inner, books.as_ref(), len);
        }
        Ok(r)
    }
}

/// Takes back what [`Inner::admit`] charged for an object never stored.
fn unadmit(inner: &Inner, books: Option<&Arc<JobBooks>>, value: i64) {
    let bytes = value + OBJECT_OVERHEAD as i64;
    inner.used.fetch_sub(bytes, Ordering::AcqRel);
    if let Some(b) = books {
        b.account.uncharge_objects(bytes as u64);
        if b.remove_object()
            && let Some(ledger) = &inner.ledger
        {
            ledger.forget(b);
        }
    }
}
