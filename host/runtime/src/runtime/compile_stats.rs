//! What an engine's compiles did: counts kept as atomics, read as
//! [`CompileStats`] (the node's metrics and `fabric status` show them).
//!
//! ```
//! use fabric_runtime::runtime::compile_stats::CompileStats;
//! let s = CompileStats { started: 2, running: 0, most_at_once: 1, from_disk: 1,
//!     functions_reused: 0, functions_compiled: 0 };
//! assert!(s.from_disk <= s.started);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the engine compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileStats {
    /// Compiles started (each component once, unless it was dropped from
    /// the cache and loaded again).
    pub started: u64,
    /// Compiles running now.
    pub running: u64,
    /// The most that ran at once.
    pub most_at_once: u64,
    /// Of those started, how many found their artifact in the disk cache
    /// (see [`super::disk_cache`]) and so compiled nothing.
    pub from_disk: u64,
    /// Functions the compiles took from their tenant's function pack
    /// (see [`super::function_pack`]), and functions they compiled.
    pub functions_reused: u64,
    pub functions_compiled: u64,
}

#[derive(Default)]
pub(crate) struct CompileCounts {
    started: AtomicU64,
    /// Shared with each running compile's guard, which may outlive the
    /// load that started it (see [`super::engine::FabricEngine::load_for`]).
    running: Arc<AtomicU64>,
    most_at_once: AtomicU64,
    pub(crate) from_disk: AtomicU64,
    pub(crate) functions_reused: AtomicU64,
    pub(crate) functions_compiled: AtomicU64,
}

impl CompileCounts {
    /// Counts a compile until the guard drops.
    pub(crate) fn start(&self) -> impl Drop + Send + 'static {
        self.started.fetch_add(1, Ordering::Relaxed);
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.most_at_once.fetch_max(now, Ordering::AcqRel);
        struct Running(Arc<AtomicU64>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        Running(self.running.clone())
    }

    pub(crate) fn stats(&self) -> CompileStats {
        CompileStats {
            started: self.started.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
            most_at_once: self.most_at_once.load(Ordering::Relaxed),
            from_disk: self.from_disk.load(Ordering::Relaxed),
            functions_reused: self.functions_reused.load(Ordering::Relaxed),
            functions_compiled: self.functions_compiled.load(Ordering::Relaxed),
        }
    }
}
