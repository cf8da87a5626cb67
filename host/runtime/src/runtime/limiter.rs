//! What an instance may grow to, and who is charged for its memory.
//!
//! A [`Limiter`] bounds an instance's linear memory, tables and core
//! instances, and remembers which bound stopped it (so the trap comes back
//! as `limit-exceeded` naming it). The memory an instance grows is charged
//! to its tenant through a [`MemoryCharge`], which gives it back only when
//! the last holder lets go: the store's limiter, and the
//! [`super::instance::Sandbox`] that outlives the store, so the charge ends
//! after the pool has decommitted the instance's memory, never before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

use crate::error::FabricError;
use crate::limits::{Limits, exceeded};
use crate::tenants::TenantAccount;

/// Linear memory charged to a tenant for one instance.
pub(crate) struct MemoryCharge {
    account: Option<Arc<TenantAccount>>,
    held: AtomicUsize,
}

impl MemoryCharge {
    pub(crate) fn new(account: Option<Arc<TenantAccount>>) -> Arc<Self> {
        Arc::new(MemoryCharge {
            account,
            held: AtomicUsize::new(0),
        })
    }

    /// Bytes charged now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire) as u64
    }

    fn grow(&self, bytes: usize) {
        self.held.fetch_add(bytes, Ordering::AcqRel);
        if let Some(a) = &self.account {
            a.memory_changed(bytes as i64);
        }
    }

    /// Charges `bytes` of host memory the instance holds outside its linear
    /// memory (`wasi:nn` models and tensors), until [`MemoryCharge::shrink_by`].
    pub(crate) fn grow_by(&self, bytes: u64) {
        self.grow(bytes.min(usize::MAX as u64) as usize);
    }

    /// Gives back what [`MemoryCharge::grow_by`] charged.
    pub(crate) fn shrink_by(&self, bytes: u64) {
        let bytes = bytes.min(usize::MAX as u64) as usize;
        self.held.fetch_sub(bytes, Ordering::AcqRel);
        if let Some(a) = &self.account {
            a.memory_changed(-(bytes as i64));
        }
    }
}

impl Drop for MemoryCharge {
    fn drop(&mut self) {
        if let Some(a) = &self.account {
            a.memory_changed(-(*self.held.get_mut() as i64));
        }
    }
}

/// Bounds an instance's memories, tables and instances, and remembers
/// which bound stopped it.
pub(crate) struct Limiter {
    memory: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    breach: Option<FabricError>,
    charge: Arc<MemoryCharge>,
}

impl Limiter {
    pub(crate) fn new(l: &Limits, charge: Arc<MemoryCharge>) -> Self {
        Limiter {
            memory: l.memory.min(usize::MAX as u64) as usize,
            table_elements: l.table_elements as usize,
            instances: l.instances as usize,
            tables: l.tables as usize,
            breach: None,
            charge,
        }
    }

    /// Charges `bytes` more of host memory the instance holds until it ends
    /// (its handle tables).
    pub(crate) fn charge_more(&self, bytes: u64) {
        self.charge.grow(bytes as usize);
    }

    /// Who is charged for the instance's memory.
    pub(crate) fn charge(&self) -> &Arc<MemoryCharge> {
        &self.charge
    }

    /// The bound that stopped the instance, if one did.
    pub(crate) fn take_breach(&mut self) -> Option<FabricError> {
        self.breach.take()
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.breach = Some(exceeded(
                "memory",
                self.memory as u64,
                format!("the guest asked for {desired} bytes of linear memory"),
            ));
            wasmtime::bail!("linear memory limit reached");
        }
        self.charge.grow(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.breach = Some(exceeded(
                "table-elements",
                self.table_elements as u64,
                format!("the guest asked for a table of {desired} elements"),
            ));
            wasmtime::bail!("table limit reached");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.instances
    }
}
