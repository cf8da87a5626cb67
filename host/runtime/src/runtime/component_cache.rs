//! The compiled components a node keeps, and how many it compiles at once.
//!
//! A component in use (by a running job, an actor) is held by its users and
//! stays findable by digest for as long as they hold it. Beyond that, the
//! node keeps recently used components so that running one again does not
//! compile it again, within a byte budget for the node and one for each
//! tenant (the tenant whose load compiled it is charged for it): the least
//! recently used go first. Compiling is CPU-heavy and memory-hungry, so the
//! node runs a bounded number of compiles at once, and each tenant a bounded
//! number of those; a load past either bound waits its turn.
//!
//! ```
//! use fabric_runtime::runtime::component_cache::ComponentBounds;
//! let bounds = ComponentBounds::default();
//! assert!(bounds.cache_bytes_per_tenant <= bounds.cache_bytes);
//! ```

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::runtime::component::AppComponent;

/// What a node may hold in compiled components and spend compiling them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentBounds {
    /// Bytes of components kept after their last user is done.
    pub cache_bytes: u64,
    /// Of those, bytes charged to one tenant.
    pub cache_bytes_per_tenant: u64,
    /// Compiles running at once on the node.
    pub compiles: usize,
    /// Compiles running at once for one tenant.
    pub compiles_per_tenant: usize,
}

impl Default for ComponentBounds {
    fn default() -> Self {
        ComponentBounds {
            cache_bytes: 512 << 20,
            cache_bytes_per_tenant: 128 << 20,
            compiles: 2,
            compiles_per_tenant: 1,
        }
    }
}

/// The node's compiled components: those in use, and recent ones.
pub(crate) struct ComponentCache {
    bounds: ComponentBounds,
    live: Mutex<Live>,
    recent: Mutex<Recent>,
    compiles: Arc<Semaphore>,
    tenant_compiles: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

/// Every component someone still holds, by digest.
#[derive(Default)]
struct Live {
    by_digest: HashMap<String, Weak<AppComponent>>,
    /// Size at which dead entries are swept next.
    sweep_at: usize,
}

/// Components kept after use, least recently used first.
#[derive(Default)]
struct Recent {
    kept: HashMap<String, Kept>,
    order: BTreeMap<u64, String>,
    bytes: u64,
    by_tenant: HashMap<Arc<str>, u64>,
    clock: u64,
}

struct Kept {
    app: Arc<AppComponent>,
    tenant: Arc<str>,
    stamp: u64,
}

/// Permission to compile: one of the node's slots and one of the tenant's.
pub(crate) struct CompileSlot {
    _node: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

impl ComponentCache {
    pub(crate) fn new(bounds: ComponentBounds) -> Self {
        ComponentCache {
            compiles: Arc::new(Semaphore::new(bounds.compiles.max(1))),
            bounds,
            live: Mutex::default(),
            recent: Mutex::default(),
            tenant_compiles: Mutex::default(),
        }
    }

    /// The component with `digest`, if someone holds it or it was kept.
    pub(crate) fn get(&self, digest: &str) -> Option<Arc<AppComponent>> {
        if let Some(app) = self.recent.lock().touch(digest) {
            return Some(app);
        }
        let live = self.live.lock();
        live.by_digest.get(digest).and_then(Weak::upgrade)
    }

    /// Registers a component `tenant` just compiled: findable while held,
    /// and kept after, within the budgets.
    pub(crate) fn keep(&self, app: &Arc<AppComponent>, tenant: &str) {
        {
            let mut live = self.live.lock();
            live.by_digest
                .insert(app.digest().to_string(), Arc::downgrade(app));
            if live.by_digest.len() >= live.sweep_at {
                live.by_digest.retain(|_, w| w.strong_count() > 0);
                live.sweep_at = (live.by_digest.len() * 2).max(64);
            }
        }
        let mut recent = self.recent.lock();
        if app.held_bytes() > self.bounds.cache_bytes_per_tenant {
            return; // too large to keep beyond its use
        }
        recent.insert(app.clone(), tenant.into());
        recent.evict(&self.bounds, tenant);
    }

    /// Waits for a compile slot of the node and of `tenant`.
    pub(crate) async fn compile_slot(&self, tenant: &str) -> CompileSlot {
        let per_tenant = {
            let mut slots = self.tenant_compiles.lock();
            // Tenants with nothing compiling or waiting need no semaphore
            // (a permit or a waiter holds a reference to it).
            slots.retain(|_, s| Arc::strong_count(s) > 1);
            let max = self.bounds.compiles_per_tenant.max(1);
            slots
                .entry(tenant.into())
                .or_insert_with(|| Arc::new(Semaphore::new(max)))
                .clone()
        };
        let tenant = per_tenant.acquire_owned().await.expect("never closed");
        let node = self
            .compiles
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        CompileSlot {
            _node: node,
            _tenant: tenant,
        }
    }

    /// Bytes of kept components charged to `tenant`.
    pub(crate) fn bytes_of(&self, tenant: &str) -> u64 {
        let recent = self.recent.lock();
        recent.by_tenant.get(tenant).copied().unwrap_or(0)
    }

    /// Bytes of kept components, all tenants.
    pub(crate) fn kept_bytes(&self) -> u64 {
        self.recent.lock().bytes
    }
}

impl Recent {
    fn touch(&mut self, digest: &str) -> Option<Arc<AppComponent>> {
        self.clock += 1;
        let stamp = self.clock;
        let kept = self.kept.get_mut(digest)?;
        self.order.remove(&kept.stamp);
        kept.stamp = stamp;
        self.order.insert(stamp, digest.to_string());
        Some(kept.app.clone())
    }

    fn insert(&mut self, app: Arc<AppComponent>, tenant: Arc<str>) {
        let digest = app.digest().to_string();
        if self.touch(&digest).is_some() {
            return;
        }
        let bytes = app.held_bytes();
        self.bytes += bytes;
        *self.by_tenant.entry(tenant.clone()).or_default() += bytes;
        self.order.insert(self.clock, digest.clone());
        let stamp = self.clock;
        self.kept.insert(digest, Kept { app, tenant, stamp });
    }

    /// Drops least recently used components until `tenant` and the node
    /// are within their budgets.
    fn evict(&mut self, bounds: &ComponentBounds, tenant: &str) {
        while self.by_tenant.get(tenant).copied().unwrap_or(0) > bounds.cache_bytes_per_tenant {
            let oldest = self
                .order
                .values()
                .find(|d| self.kept.get(*d).is_some_and(|k| &*k.tenant == tenant))
                .cloned();
            match oldest {
                Some(d) => self.remove(&d),
                None => break,
            }
        }
        while self.bytes > bounds.cache_bytes {
            let Some(d) = self.order.values().next().cloned() else {
                break;
            };
            self.remove(&d);
        }
    }

    fn remove(&mut self, digest: &str) {
        let Some(kept) = self.kept.remove(digest) else {
            return;
        };
        self.order.remove(&kept.stamp);
        let bytes = kept.app.held_bytes();
        self.bytes -= bytes;
        if let Some(b) = self.by_tenant.get_mut(&kept.tenant) {
            *b -= bytes;
            if *b == 0 {
                self.by_tenant.remove(&kept.tenant);
            }
        }
    }
}
