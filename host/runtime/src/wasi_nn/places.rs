//! The node's places for ONNX Runtime's work (loading and running models):
//! at most one per CPU the node offers, and at most half of them (at least
//! one) held by one tenant at once, so one tenant's models (a load cannot
//! be stopped midway) always leave the others places.
//!
//! ```text
//! node of 4 CPUs: 4 places; a tenant holds at most 2 of them at once
//! node of 1 CPU:  1 place;  a tenant holds at most 1
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::errors::Error;

pub(crate) struct Places {
    node: Arc<Semaphore>,
    /// The most one tenant holds at once.
    share: usize,
    /// Places held now, by tenant (only tenants that hold some).
    held: parking_lot::Mutex<HashMap<Arc<str>, usize>>,
    /// Wakes tenants waiting for their share when a place is given back.
    freed: Notify,
}

impl std::fmt::Debug for Places {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Places")
            .field("free", &self.node.available_permits())
            .field("share", &self.share)
            .finish()
    }
}

/// A place, given back when dropped.
pub(crate) struct Place {
    _node: OwnedSemaphorePermit,
    _share: Share,
}

/// One of a tenant's share of places.
struct Share {
    places: Arc<Places>,
    tenant: Arc<str>,
}

impl Places {
    pub(crate) fn new(count: usize) -> Arc<Places> {
        let count = count.max(1);
        Arc::new(Places {
            node: Arc::new(Semaphore::new(count)),
            share: (count / 2).max(1),
            held: Default::default(),
            freed: Notify::new(),
        })
    }

    /// Waits for a place for `tenant`: one of its share, then one of the
    /// node's.
    pub(crate) async fn take(self: &Arc<Self>, tenant: &Arc<str>) -> Result<Place, Error> {
        let share = loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a place given back between the
            // check and the wait still wakes it.
            freed.as_mut().enable();
            if let Some(share) = self.share_of(tenant) {
                break share;
            }
            freed.await;
        };
        let node = self
            .node
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::runtime("the node is stopping"))?;
        Ok(Place {
            _node: node,
            _share: share,
        })
    }

    fn share_of(self: &Arc<Self>, tenant: &Arc<str>) -> Option<Share> {
        let mut held = self.held.lock();
        let n = held.entry(tenant.clone()).or_insert(0);
        if *n >= self.share {
            return None;
        }
        *n += 1;
        Some(Share {
            places: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.places.held.lock();
        if let Some(n) = held.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
        drop(held);
        self.places.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share_and_others_still_get_places() {
        let places = Places::new(8); // a share of 4
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let mut held_by_a = Vec::new();
        for _ in 0..4 {
            held_by_a.push(places.take(&a).await.unwrap());
        }
        let waiting = tokio::spawn({
            let (places, a) = (places.clone(), a.clone());
            async move { places.take(&a).await.map(drop) }
        });
        let _b = places.take(&b).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // The node has places free, but `a`'s share is full.
        assert_eq!(places.node.available_permits(), 3);
        assert!(!waiting.is_finished(), "a fifth place for `a`");
        held_by_a.pop();
        waiting.await.unwrap().unwrap();
        assert_eq!(places.held.lock().get(&a), Some(&3));
        drop(held_by_a);
        assert_eq!(
            places.held.lock().get(&a),
            None,
            "no entry for a tenant holding none"
        );
    }
}
