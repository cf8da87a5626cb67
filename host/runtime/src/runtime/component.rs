//! Loading an application: bytes to a compiled, pre-instantiated component.
//!
//! Loading checks what the bytes are before compiling them, so a user who
//! passes a text file, a core module or a component built for another world
//! is told which it is. A loaded [`AppComponent`] holds the compiled code and
//! an `InstancePre` (imports resolved once), so starting a task costs one
//! instantiation from the pool and nothing else. Components are cached by
//! content digest: running the same `.wasm` twice compiles it once.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use crate::bindings::exports::fabric::core::guest::Output;
use crate::bindings::fabric::core::types::Error as WitError;
use crate::error::LoadError;
use crate::runtime::instance::InstanceState;

/// The interface every application exports.
pub const GUEST_INTERFACE: &str = "fabric:core/guest@0.1.0";

/// Export indices of the `guest` interface, looked up once per component.
#[derive(Clone)]
pub(crate) struct GuestExports {
    pub dispatch: ComponentExportIndex,
    pub actor_new: ComponentExportIndex,
    pub actor_call: ComponentExportIndex,
    pub main: ComponentExportIndex,
    /// A concurrent actor's loop; optional, so a component built without
    /// it (or in a language that has none) still runs everything else.
    pub actor_run: Option<ComponentExportIndex>,
}

/// A compiled application, ready to instantiate.
pub struct AppComponent {
    digest: String,
    /// The component as loaded (without custom sections), to hand to other
    /// nodes.
    bytes: bytes::Bytes,
    /// Host memory it holds: its bytes and its compiled code.
    held: u64,
    pub(crate) pre: InstancePre<InstanceState>,
    pub(crate) exports: GuestExports,
    /// Slots of the instance pool each of its instances takes.
    pub(crate) slot_weight: u64,
}

impl std::fmt::Debug for AppComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppComponent")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl AppComponent {
    /// Hex SHA-256 of the component bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The component's bytes.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    /// Host memory it holds: its bytes and its compiled code.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }
}

/// The SHA-256 digest of `bytes`, in hex.
pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tells a component from a core module from something else by its header.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Err(LoadError::CoreModule),
        // Component binaries: version 0x0d, layer 1.
        [_, _, 1, 0] => Ok(()),
        other => Err(LoadError::Invalid(format!(
            "unknown WebAssembly version/layer bytes {other:?}"
        ))),
    }
}

/// Compiles and links `bytes`. CPU heavy: call it from a blocking thread of
/// a tokio runtime (it instantiates once to check the export types).
pub(crate) fn load(
    engine: &wasmtime::Engine,
    linker: &Linker<InstanceState>,
    bytes: &[u8],
) -> Result<Arc<AppComponent>, LoadError> {
    check_header(bytes)?;
    let component =
        Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
    prepare(engine, linker, bytes, component)
}

/// Loads a component compiled by a bounded compiler process.
pub(crate) fn load_precompiled(
    engine: &wasmtime::Engine,
    linker: &Linker<InstanceState>,
    bytes: &[u8],
    artifact: &[u8],
) -> Result<Arc<AppComponent>, LoadError> {
    // SAFETY: `artifact` is what this engine's compiler made for `bytes`:
    // our own bounded compiler process (the `fabric` binary, same wasmtime,
    // same engine settings) just now over a pipe, this process, or either
    // of those earlier, read back from the node's private disk cache, whose
    // files only the node's user can write and whose checksum was checked
    // (see `disk_cache`); wasmtime also checks it was made for this
    // engine's configuration.
    let component = unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| LoadError::Compile(format!("the compiled artifact does not load: {e:#}")))?;
    prepare(engine, linker, bytes, component)
}

/// Links a compiled component and checks it implements the app world.
fn prepare(
    engine: &wasmtime::Engine,
    linker: &Linker<InstanceState>,
    bytes: &[u8],
    component: Component,
) -> Result<Arc<AppComponent>, LoadError> {
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        LoadError::WorldMismatch(format!(
            "{e:#} (a wasmfabric application may import only `fabric:core/host` and WASI 0.2)"
        ))
    })?;
    let guest = component
        .get_export_index(None, GUEST_INTERFACE)
        .ok_or_else(|| {
            LoadError::WorldMismatch(format!(
                "it does not export `{GUEST_INTERFACE}`; mark the driver with `#[fabric::main]` \
             and build with the wasmfabric SDK"
            ))
        })?;
    let lookup = |name: &str| {
        component
            .get_export_index(Some(&guest), name)
            .ok_or_else(|| {
                LoadError::WorldMismatch(format!("`{GUEST_INTERFACE}` has no `{name}` export"))
            })
    };
    let exports = GuestExports {
        dispatch: lookup("dispatch")?,
        actor_new: lookup("actor-new")?,
        actor_call: lookup("actor-call")?,
        main: lookup("main")?,
        actor_run: component.get_export_index(Some(&guest), "actor-run"),
    };
    typecheck(engine, &pre, &exports)?;
    let slot_weight = crate::runtime::engine::slot_weight(&component);
    let image = component.image_range();
    let code = (image.end as usize).saturating_sub(image.start as usize);
    Ok(Arc::new(AppComponent {
        digest: digest(bytes),
        bytes: bytes::Bytes::copy_from_slice(bytes),
        held: (code + bytes.len()) as u64,
        pre,
        exports,
        slot_weight,
    }))
}

/// Checks the export signatures once, so each call can skip the check.
fn typecheck(
    engine: &wasmtime::Engine,
    pre: &InstancePre<InstanceState>,
    exports: &GuestExports,
) -> Result<(), LoadError> {
    let mismatch = |name: &str, e: wasmtime::Error| {
        LoadError::WorldMismatch(format!(
            "export `{name}` has the wrong type (built with another SDK version?): {e:#}"
        ))
    };
    let mut store = Store::new(engine, InstanceState::detached());
    // Nothing runs here but instantiation; give it the time it needs.
    store.set_epoch_deadline(100);
    let instance = tokio::runtime::Handle::current()
        .block_on(pre.instantiate_async(&mut store))
        .map_err(|e| {
            let message = format!("{e:#}");
            // A full instance pool is the node's state, not the component's.
            if message.contains("maximum concurrent") || message.contains("limit of") {
                LoadError::Busy(message)
            } else {
                LoadError::WorldMismatch(format!("it cannot be instantiated: {message}"))
            }
        })?;
    instance
        .get_typed_func::<(&str, &[bytes::Bytes]), (Result<Output, WitError>,)>(
            &mut store,
            &exports.dispatch,
        )
        .map_err(|e| mismatch("dispatch", e))?;
    instance
        .get_typed_func::<(&str, &[bytes::Bytes]), (Result<Output, WitError>,)>(
            &mut store,
            &exports.actor_call,
        )
        .map_err(|e| mismatch("actor-call", e))?;
    instance
        .get_typed_func::<(&str, &[bytes::Bytes]), (Result<(), WitError>,)>(
            &mut store,
            &exports.actor_new,
        )
        .map_err(|e| mismatch("actor-new", e))?;
    instance
        .get_typed_func::<(&[String],), (Result<(), String>,)>(&mut store, &exports.main)
        .map_err(|e| mismatch("main", e))?;
    if let Some(run) = &exports.actor_run {
        instance
            .get_typed_func::<(), (Result<(), WitError>,)>(&mut store, run)
            .map_err(|e| mismatch("actor-run", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_header(b"\0asm\x0d\0\x02\0"),
            Err(LoadError::Invalid(_))
        ));
    }
}
