//! The guest's global allocator: the system allocator, except that a large
//! zeroed block (`vec![0u8; n]`, `calloc`) is zeroed by the host, which
//! drops its whole pages instead of writing them (see `zero-memory` in
//! `wit/fabric.wit`). Writing zeros over a reused 80 MiB block, then
//! reading them back to store the block, was most of the cost of putting
//! fresh zeroed arrays; native code gets such blocks from `mmap` for free.
//!
//! On by default (cargo feature `allocator`); a guest with an allocator of
//! its own turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};

/// Zeroed blocks at least this large are zeroed by the host.
const HOST_ZEROED_MIN: usize = 1 << 20;

#[link(wasm_import_module = "fabric:core/host@0.1.0")]
unsafe extern "C" {
    // The core-ABI form of `zero-memory: func(region: list<u8>)`: a pointer
    // and a length. Declared by hand because the block is uninitialized
    // memory, which must not be passed as a `&[u8]`.
    #[link_name = "zero-memory"]
    fn zero_memory(ptr: *mut u8, len: usize);
}

/// See the module docs.
///
/// Only `alloc_zeroed` calls the host: `alloc` and `realloc` also serve
/// `cabi_realloc`, which runs while the host is lowering a value into this
/// instance, when calling an import traps ("cannot leave component
/// instance").
pub struct FabricAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments;
// `alloc_zeroed` returns a block `System` allocated for `layout`, zeroed.
unsafe impl GlobalAlloc for FabricAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() < HOST_ZEROED_MIN {
            return unsafe { System.alloc_zeroed(layout) };
        }
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            // SAFETY: `ptr..ptr + size` is the block just allocated, which
            // nothing else uses; the host only sets it to zero.
            unsafe { zero_memory(ptr, layout.size()) };
        }
        ptr
    }
}
