//! The `fabric` binary's allocator, mimalloc, set up to give freed memory
//! back promptly (the benchmarks use the same setup; see
//! `fabric_host::allocator`).

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e` of
/// mimalloc 3, which libmimalloc-sys does not name).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps freed memory before returning it to the system:
/// its default (1 s) let a node that had just freed a million objects stay
/// hundreds of MiB above what it accounts for.
const PURGE_DELAY_MS: std::ffi::c_long = 50;

/// Makes mimalloc purge what was freed (it otherwise waits for its next
/// allocation, which a quiet node may not make for a long time).
fn trim(force: bool) {
    // SAFETY: `mi_collect` only returns mimalloc's unused memory to the
    // system (`force`: now, whatever its purge delay).
    unsafe { libmimalloc_sys::mi_collect(force) }
}

/// Shortens mimalloc's purge delay and lets nodes ask it to purge.
pub fn configure() {
    // SAFETY: sets one of mimalloc's options; any value is valid.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    fabric_host::allocator::set_trim(trim);
}
