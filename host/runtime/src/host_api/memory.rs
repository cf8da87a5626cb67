//! `zero-memory`: zeroing a large region of the guest's own memory by
//! giving its pages back to the kernel instead of writing zeros.
//!
//! WebAssembly has no way to return memory, so a guest allocator that
//! reuses a freed block for `calloc` must `memset` it; a large zeroed
//! allocation (Ray's `np.zeros`, Rust's `vec![0; n]`) then costs a write of
//! every byte, and a later copy of it a read of every byte. Native code
//! gets fresh, lazily zeroed pages from `mmap` instead. This call gives a
//! guest the same: the whole pages of the region are dropped with
//! `MADV_DONTNEED` and mapped to the kernel's shared zero page with
//! `MADV_POPULATE_READ` (they read as zeros until written), and only the
//! partial pages at its ends are written.
//!
//! The region is a `list<u8>` the guest lends, so the canonical ABI checks
//! that it lies inside the guest's memory; nothing outside it is touched.
//! (A guest that points it at its own initial data gets that data back:
//! the pages of a copy-on-write memory image revert to the image. That
//! harms only the guest itself; the SDK only zeroes heap blocks.)

use wasmtime::component::{LinkerInstance, WasmList};

use crate::runtime::instance::InstanceState;

/// Regions smaller than this are written with zeros: a system call and the
/// page faults after it cost more than writing a few pages.
const DISCARD_MIN: usize = 256 << 10;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap(
        "zero-memory",
        |store: wasmtime::StoreContextMut<'_, InstanceState>, (region,): (WasmList<u8>,)| {
            let slice = region.as_le_slice(&store);
            let (ptr, len) = (slice.as_ptr() as *mut u8, slice.len());
            // SAFETY: `ptr..ptr + len` lies inside this guest's linear
            // memory (the lift checked it), which no Rust reference holds
            // now (`slice` is not used again) and which only this guest,
            // which is blocked in this call, reads or writes.
            unsafe { zero_in_place(ptr, len) };
            Ok(())
        },
    )
}

/// Sets `len` bytes at `ptr` to zero.
///
/// # Safety
/// `ptr..ptr + len` must be writable memory of an anonymous private
/// mapping that nothing else accesses during the call.
unsafe fn zero_in_place(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    if len >= DISCARD_MIN {
        const PAGE: usize = 4096;
        let start = ptr as usize;
        let end = start + len;
        let first = (start + PAGE - 1) & !(PAGE - 1);
        let last = end & !(PAGE - 1);
        // SAFETY: [first, last) lies inside the region; MADV_DONTNEED on an
        // anonymous private mapping makes those pages read as zeros.
        let dropped = unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_DONTNEED,
            )
        } == 0;
        if dropped {
            // Map the shared zero page over the whole range in one call,
            // rather than in one page fault per page when it is next read
            // (as when the block is copied into an object). Best effort:
            // kernels before 5.14 lack it.
            // SAFETY: as above; populating only maps the zero page.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_POPULATE_READ,
                )
            };
            // SAFETY: the two ends lie inside the region.
            unsafe {
                std::ptr::write_bytes(ptr, 0, first - start);
                std::ptr::write_bytes(last as *mut u8, 0, end - last);
            }
            return;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroes_every_byte_of_the_region_and_nothing_else() {
        for (offset, len) in [(0, 100), (3, 1 << 20), (4096, 2 << 20), (1, (1 << 20) + 5)] {
            let mut buf = vec![0xabu8; (4 << 20) + 64];
            // SAFETY: the region lies inside `buf`, which nothing else uses.
            unsafe { zero_in_place(buf.as_mut_ptr().add(offset), len) };
            assert!(buf[..offset].iter().all(|b| *b == 0xab));
            assert!(buf[offset..offset + len].iter().all(|b| *b == 0));
            assert!(buf[offset + len..].iter().all(|b| *b == 0xab));
        }
    }
}
