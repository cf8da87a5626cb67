//! What an instance's `wasi:nn` resources hold on the host, within its
//! bounds and charged to its tenant.
//!
//! Every resource a guest gets (a model, an execution context, a tensor, an
//! error) carries a [`Held`]: its bytes and its place among the instance's
//! [`MAX_ITEMS`], given back when the resource goes, so nothing the guest
//! can make in a loop is free. A model is held by its execution contexts
//! too, so it stays counted while any lives, whatever the guest dropped
//! first, and while an inference on it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::NnBackend;
use super::errors::Error;
use crate::runtime::limiter::MemoryCharge;

/// `wasi:nn` resources one instance may hold at once.
pub(crate) const MAX_ITEMS: u32 = 4096;

/// Host bytes an instance may hold beyond `[nn] max-held`, for its errors
/// and execution contexts (an ungranted guest gets its refusals from this).
const ALLOWANCE: u64 = 1 << 20;

/// Errors an instance may hold beyond [`MAX_ITEMS`]: a refusal for being
/// full has room to be told; a guest that keeps its refusals traps.
pub(crate) const ERROR_HEADROOM: u32 = 64;

/// What a hold is for, which decides the bounds it must fit.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    /// A tensor's data: within `[nn] max-held`.
    Data,
    /// A model: within `max-held` and `max-graphs`.
    Model,
    /// An execution context: within `max-held` and the allowance.
    Small,
    /// An error: within the allowance and the headroom of items.
    Error,
}

/// What a resource without data of its own costs the host.
pub(crate) const ITEM_BYTES: u64 = 256;

/// An instance's `wasi:nn` state: what it may use, and what it holds.
pub(crate) struct NnState {
    /// `None`: the job was not granted `wasi:nn`, or the node has none.
    pub(crate) backend: Option<Arc<NnBackend>>,
    /// ONNX Runtime's time not yet counted as a whole CPU-time tick.
    pub(crate) cpu_carry: std::time::Duration,
    /// Whether the job was granted it (so a refusal can say what is missing).
    pub(crate) granted: bool,
    /// Whose share of the node's places its native work takes.
    pub(crate) tenant: Arc<str>,
    ledger: Arc<Ledger>,
}

struct Ledger {
    charge: Arc<MemoryCharge>,
    max_held: u64,
    max_graphs: u32,
    held: AtomicU64,
    graphs: AtomicU32,
    items: AtomicU32,
}

/// A resource's part of its instance's bounds, given back when dropped.
pub(crate) struct Held {
    ledger: Arc<Ledger>,
    bytes: u64,
    graph: bool,
}

impl NnState {
    pub(crate) fn new(
        granted: bool,
        backend: Option<Arc<NnBackend>>,
        charge: Arc<MemoryCharge>,
        tenant: Arc<str>,
    ) -> Self {
        let backend = backend.filter(|_| granted);
        let (max_held, max_graphs) = backend
            .as_ref()
            .map_or((0, 0), |b| (b.settings.max_held, b.settings.max_graphs));
        NnState {
            backend,
            cpu_carry: std::time::Duration::ZERO,
            granted,
            tenant,
            ledger: Arc::new(Ledger {
                charge,
                max_held: max_held.saturating_add(ALLOWANCE),
                max_graphs,
                held: AtomicU64::new(0),
                graphs: AtomicU32::new(0),
                items: AtomicU32::new(0),
            }),
        }
    }

    /// Bytes of data (tensors) this instance may still take.
    pub(crate) fn room(&self) -> u64 {
        let l = &self.ledger;
        (l.max_held - ALLOWANCE).saturating_sub(l.held.load(Ordering::Acquire))
    }

    /// Takes `bytes` of host memory and a place among the instance's items
    /// (and a model's place, for a model) within the bounds of its `kind`.
    pub(crate) fn hold(&self, bytes: u64, kind: Kind, what: &str) -> Result<Held, Error> {
        let l = &self.ledger;
        let refuse = |why: String| Err(Error::too_large(format!("no room for {what}: {why}")));
        let (max_items, max_held) = match kind {
            Kind::Data | Kind::Model => (MAX_ITEMS, l.max_held - ALLOWANCE),
            Kind::Small => (MAX_ITEMS, l.max_held),
            Kind::Error => (MAX_ITEMS + ERROR_HEADROOM, l.max_held),
        };
        let graph = kind == Kind::Model;
        if l.items.fetch_add(1, Ordering::AcqRel) >= max_items {
            l.items.fetch_sub(1, Ordering::AcqRel);
            return refuse(format!("this instance holds {max_items} wasi-nn resources"));
        }
        // From here on, a refusal gives back what was taken when `held` drops.
        let mut held = Held {
            ledger: l.clone(),
            bytes: 0,
            graph: false,
        };
        if graph {
            if l.graphs.fetch_add(1, Ordering::AcqRel) >= l.max_graphs {
                l.graphs.fetch_sub(1, Ordering::AcqRel);
                return refuse(format!(
                    "this instance holds {} models, the node's [nn] max-graphs",
                    l.max_graphs
                ));
            }
            held.graph = true;
        }
        let before = l.held.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > max_held {
            l.held.fetch_sub(bytes, Ordering::AcqRel);
            return refuse(format!(
                "it would bring this instance's wasi-nn memory to {} bytes, past the node's \
                 [nn] max-held of {}",
                before.saturating_add(bytes),
                l.max_held - ALLOWANCE
            ));
        }
        l.charge.grow_by(bytes);
        held.bytes = bytes;
        Ok(held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let l = &self.ledger;
        l.held.fetch_sub(self.bytes, Ordering::AcqRel);
        l.charge.shrink_by(self.bytes);
        l.items.fetch_sub(1, Ordering::AcqRel);
        if self.graph {
            l.graphs.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
