//! `wasi:random/random`'s `get-random-bytes`, filled in one call.
//!
//! wasmtime-wasi's own draws one `u32` from a boxed generator per byte it
//! returns. A Python component reseeds Python's `random` module when an
//! instance starts (componentize-py does, so that instances of one snapshot
//! do not share a sequence): 2,496 bytes, ten calls of 256 through
//! wasi-libc's `getentropy`. A Python task is a fresh instance, and this
//! was 4-5% of its time.
//! This one fills the buffer from the thread's generator (`rand::rng()`, a
//! ChaCha12 generator seeded from the operating system and reseeded every
//! 64 KiB; wasmtime-wasi's is a ChaCha12 seeded from it once per instance),
//! with the same size limit, lowered to the guest's memory limit (a longer
//! list could not be copied into the guest anyway). It replaces
//! wasmtime-wasi's definition after that is linked; the other functions of
//! the interface stay wasmtime-wasi's.

use rand::RngCore;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::runtime::instance::InstanceState;

/// The interface as wasmtime-wasi 48 defines it (a component importing an
/// earlier 0.2 release is linked to it by semver).
const RANDOM_INTERFACE: &str = "wasi:random/random@0.2.12";

/// wasmtime-wasi's limit on one call (`DEFAULT_MAX_SIZE`): a call asking
/// for more traps, as it did there.
const MAX_RANDOM_BYTES: u64 = 64 << 20;

/// Replaces `get-random-bytes` in `linker`, which must already hold
/// wasmtime-wasi's definition of the interface: defining it without
/// shadowing must fail, or the name (its version) has moved, and a
/// component importing that version would get an interface with this one
/// function in it.
pub(crate) fn add_to_linker(linker: &mut Linker<InstanceState>) -> wasmtime::Result<()> {
    if linker
        .instance(RANDOM_INTERFACE)?
        .func_wrap("get-random-bytes", get_random_bytes)
        .is_ok()
    {
        wasmtime::bail!(
            "wasmtime-wasi no longer defines {RANDOM_INTERFACE}: update RANDOM_INTERFACE"
        );
    }
    linker.allow_shadowing(true);
    let linked = linker
        .instance(RANDOM_INTERFACE)
        .and_then(|mut random| random.func_wrap("get-random-bytes", get_random_bytes));
    linker.allow_shadowing(false);
    linked
}

fn get_random_bytes(
    store: StoreContextMut<'_, InstanceState>,
    (len,): (u64,),
) -> wasmtime::Result<(Vec<u8>,)> {
    // More than the guest's memory could hold cannot be handed to it:
    // refuse before the host allocates it.
    let memory = store.data().limits().map_or(u64::MAX, |l| l.memory);
    random_bytes(len, MAX_RANDOM_BYTES.min(memory)).map(|b| (b,))
}

fn random_bytes(len: u64, most: u64) -> wasmtime::Result<Vec<u8>> {
    if len > most {
        wasmtime::bail!("requested len {len} exceeds limit {most}");
    }
    let mut bytes = vec![0; len as usize];
    rand::rng().fill_bytes(&mut bytes);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_what_is_asked_and_refuses_too_much() {
        let a = random_bytes(256, MAX_RANDOM_BYTES).unwrap();
        let b = random_bytes(256, MAX_RANDOM_BYTES).unwrap();
        assert_eq!(a.len(), 256);
        assert_ne!(a, b, "two draws of 256 bytes were equal");
        assert!(a.iter().any(|&x| x != 0));
        assert!(random_bytes(0, MAX_RANDOM_BYTES).unwrap().is_empty());
        assert!(random_bytes(MAX_RANDOM_BYTES + 1, MAX_RANDOM_BYTES).is_err());
        assert!(random_bytes(4097, 4096).is_err());
    }
}
