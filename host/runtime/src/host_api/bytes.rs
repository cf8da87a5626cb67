//! `bytes-len` and `read-bytes`: reading a byte object's data (an object
//! stored as one MessagePack `bin` value, as `put-bytes` stores it) straight
//! into a buffer the guest allocated, once, with no header to decode.
//!
//! A `get` of such an object hands the guest the encoded value, which the
//! SDK then decodes into a second buffer: two copies in the guest, and two
//! passes over the data. Here the guest asks for the length (waiting for
//! the object as `get` does), allocates, and lends the buffer; the host
//! copies the data into it.

use wasmtime::component::{LinkerInstance, Resource, WasmList};

use super::{Ctx, to_wasm};
use crate::error::FabricError;
use crate::object_store::ObjectRef;
use crate::runtime::instance::InstanceState;

pub(crate) fn add_to_linker(host: &mut LinkerInstance<'_, InstanceState>) -> wasmtime::Result<()> {
    host.func_wrap_async(
        "bytes-len",
        |mut store: Ctx, (obj, timeout): (Resource<ObjectRef>, Option<u64>)| {
            Box::new(async move {
                let len = super::objects::get(store.data_mut(), obj, timeout)
                    .await
                    .and_then(|v| Ok(bin_payload(&v)?.len() as u64));
                Ok((to_wasm(len)?,))
            })
        },
    )?;
    host.func_wrap(
        "read-bytes",
        |mut store: Ctx, (obj, offset, into): (Resource<ObjectRef>, u64, WasmList<u8>)| {
            Ok((read_bytes(&mut store, obj, offset, into)?,))
        },
    )?;
    Ok(())
}

/// The data of a byte object: its value must be one MessagePack `bin`
/// value (as `put-bytes` stores it).
fn bin_payload(value: &[u8]) -> Result<&[u8], FabricError> {
    let (width, len) = match value.first() {
        Some(0xc4) => (1, value.get(1..2).map(|b| b[0] as usize)),
        Some(0xc5) => (
            2,
            value
                .get(1..3)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize),
        ),
        Some(0xc6) => (
            4,
            value
                .get(1..5)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize),
        ),
        _ => (0, None),
    };
    match len {
        Some(n) if value.len() == 1 + width + n => Ok(&value[1 + width..]),
        _ => Err(FabricError::InvalidArgument(
            "not a byte object (one MessagePack `bin` value, as `put-bytes` stores it)".into(),
        )),
    }
}

/// `read-bytes`: copies part of a ready byte object's data straight into
/// the region of guest memory the guest lent (the canonical ABI checked it
/// lies inside its memory). 0 when it cannot (see the WIT).
fn read_bytes(
    store: &mut Ctx,
    obj: Resource<ObjectRef>,
    offset: u64,
    into: WasmList<u8>,
) -> wasmtime::Result<u64> {
    let r = store.data().table.get(&obj)?.clone();
    let Some(Ok(value)) = r.try_get() else {
        return Ok(0);
    };
    let Ok(data) = bin_payload(&value) else {
        return Ok(0);
    };
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let Some(part) = start
        .checked_add(into.len())
        .and_then(|end| data.get(start..end))
    else {
        return Ok(0);
    };
    let region = into.as_le_slice(&*store);
    let dst = region.as_ptr() as *mut u8;
    // SAFETY: `dst..dst + part.len()` is the lent region inside this
    // guest's linear memory (the lift checked it; `part` is exactly its
    // length), which no Rust reference holds now (`region` is not used
    // again) and which only this guest, blocked in this call, uses. The
    // source is host memory, so the two do not overlap.
    unsafe {
        if part.len() >= CHUNK && mostly_fresh(dst, part.len()) {
            copy_into_fresh(part, dst);
        } else {
            std::ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len());
        }
    }
    Ok(part.len() as u64)
}

/// How much is faulted in, then copied, at a time: the pages just faulted
/// in (zeroed by the kernel) are still in cache when the copy writes them.
const CHUNK: usize = 2 << 20;

/// The system's page size.
fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a system setting.
    *PAGE.get_or_init(|| (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as usize)
}

/// The whole pages of `len` bytes at `dst`, as (start, end) addresses.
fn whole_pages(dst: *mut u8, len: usize) -> (usize, usize) {
    let page = page_size();
    let start = (dst as usize).next_multiple_of(page);
    let end = (dst as usize + len) & !(page - 1);
    (start, end.max(start))
}

/// Whether most pages of `len` bytes at `dst` are not in memory yet (a
/// fresh buffer of the guest's, which the copy would fault in page by
/// page).
///
/// # Safety
/// `dst..dst + len` must be mapped memory of this process.
unsafe fn mostly_fresh(dst: *mut u8, len: usize) -> bool {
    let (start, end) = whole_pages(dst, len);
    let pages = (end - start) / page_size();
    let mut resident = vec![0u8; pages];
    // SAFETY: `start..end` is mapped and page-aligned, and `resident` has
    // a byte for each of its pages.
    let asked = unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            end - start,
            resident.as_mut_ptr(),
        )
    };
    let missing = resident.iter().filter(|&&r| r & 1 == 0).count();
    asked == 0 && missing * 2 > pages
}

/// Copies `part` to `dst` a chunk at a time, each chunk's pages faulted in
/// first with one `MADV_POPULATE_WRITE`: less than a page fault per page
/// as the copy first touches each, and the pages are still in cache when
/// the copy writes them. (Into memory already there, one copy is faster:
/// a large copy streams past the cache.) Best effort: a kernel without it
/// (before 5.14) leaves the faults to the copy.
///
/// # Safety
/// `dst..dst + part.len()` must be writable memory of this process that
/// nothing else uses and that does not overlap `part`.
unsafe fn copy_into_fresh(part: &[u8], dst: *mut u8) {
    for at in (0..part.len()).step_by(CHUNK) {
        let n = CHUNK.min(part.len() - at);
        let (start, end) = whole_pages(unsafe { dst.add(at) }, n);
        // SAFETY: the caller's region; populating it changes no contents,
        // and the copy then writes inside it.
        unsafe {
            if end > start {
                libc::madvise(
                    start as *mut libc::c_void,
                    end - start,
                    libc::MADV_POPULATE_WRITE,
                );
            }
            std::ptr::copy_nonoverlapping(part.as_ptr().add(at), dst.add(at), n);
        }
    }
}
