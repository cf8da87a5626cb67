//! Asking the process's allocator to give freed memory back to the system.
//!
//! Allocators keep freed memory for a while before returning it (mimalloc:
//! until a purge delay passes and it next runs); a node that has just freed
//! a large instance or a million objects, and then goes quiet, would keep
//! that memory with nothing accounting for it. The program that embeds the
//! node says how to ask (the `fabric` binary does, for mimalloc); without
//! that, the node relies on the allocator alone.
//!
//! ```
//! fn trim(_force: bool) {}
//! fabric_runtime::allocator::set_trim(trim);
//! ```

use std::sync::OnceLock;

static TRIM: OnceLock<fn(bool)> = OnceLock::new();

/// Sets how to make the allocator return freed memory: `trim(false)` is the
/// cheap pass a node makes often, `trim(true)` the thorough one it makes
/// after freeing something large. Only the first call takes effect.
pub fn set_trim(trim: fn(bool)) {
    let _ = TRIM.set(trim);
}

/// Asks the allocator to return freed memory (thoroughly when `force`).
pub(crate) fn trim(force: bool) {
    if let Some(trim) = TRIM.get() {
        trim(force);
    }
}
