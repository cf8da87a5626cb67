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
    unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len()) };
    Ok(part.len() as u64)
}
