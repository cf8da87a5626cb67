//! Encoding values as MessagePack, and the references nested inside them.
//!
//! When a value that contains [`crate::ObjectRef`]s is encoded, each one is
//! written as MessagePack extension type 1 and also collected here, so the
//! call that ships the value can tell the host which objects it must keep
//! alive. Decoding an extension-1 value asks the host for a new reference to
//! that object ([`crate::__bindings::fabric::core::host::adopt`]).

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::__bindings::fabric::core::host;
use crate::error::{Error, Result};
use crate::object::RefInner;

/// MessagePack extension type of a nested object reference.
pub(crate) const EXT_OBJECT_REF: i8 = 1;
/// MessagePack extension type of a nested actor handle.
pub(crate) const EXT_ACTOR: i8 = 2;

thread_local! {
    static NESTED: RefCell<Option<Vec<Rc<RefInner>>>> = const { RefCell::new(None) };
    /// References decoded by the running [`decode`], adopted when it ends.
    static UNADOPTED: RefCell<Option<Vec<Rc<RefInner>>>> = const { RefCell::new(None) };
}

/// An encoded value and the references it nests.
#[doc(hidden)]
pub struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) nested: Vec<Rc<RefInner>>,
}

/// Encodes `value`, collecting the object references inside it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded> {
    let outer = NESTED.with(|n| n.borrow_mut().replace(Vec::new()));
    let bytes = rmp_serde::to_vec_named(value);
    let nested = NESTED
        .with(|n| std::mem::replace(&mut *n.borrow_mut(), outer))
        .unwrap_or_default();
    let bytes = bytes.map_err(|e| Error::Value(format!("cannot encode value: {e}")))?;
    Ok(Encoded { bytes, nested })
}

/// Called by `ObjectRef`'s `Serialize`: remember a nested reference.
pub(crate) fn note_nested(r: &Rc<RefInner>) {
    NESTED.with(|n| {
        if let Some(list) = n.borrow_mut().as_mut() {
            list.push(r.clone());
        }
    });
}

/// Decodes a value; the object references inside it are adopted together,
/// in one host call, once it is decoded.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let outer = UNADOPTED.with(|u| u.borrow_mut().replace(Vec::new()));
    let value = rmp_serde::from_slice(bytes);
    let unadopted = UNADOPTED
        .with(|u| std::mem::replace(&mut *u.borrow_mut(), outer))
        .unwrap_or_default();
    let value = value.map_err(|e| {
        Error::Value(format!(
            "cannot decode value as {}: {e}",
            std::any::type_name::<T>()
        ))
    })?;
    if !unadopted.is_empty() {
        let ids: Vec<_> = unadopted
            .iter()
            .map(|r| crate::object::id_to_wit(r.id()))
            .collect();
        let handles = host::adopt_many(&ids)?;
        for (r, h) in unadopted.iter().zip(handles) {
            r.set_handle(h);
        }
    }
    Ok(value)
}

/// Called by `ObjectRef`'s `Deserialize`: a reference to `id`, adopted at
/// the end of the running [`decode`] (or now, outside one).
pub(crate) fn adopt_later(id: u128) -> Result<Rc<RefInner>> {
    let deferred = UNADOPTED.with(|u| {
        u.borrow_mut().as_mut().map(|list| {
            let r = RefInner::unadopted(id);
            list.push(r.clone());
            r
        })
    });
    match deferred {
        Some(r) => Ok(r),
        None => Ok(RefInner::new(host::adopt(crate::object::id_to_wit(id))?)),
    }
}

/// The MessagePack extension wrapper rmp-serde recognizes by name.
#[derive(Serialize, Deserialize)]
#[serde(rename = "_ExtStruct")]
pub(crate) struct Ext(pub (i8, serde_bytes::ByteBuf));

/// Writes a 128-bit id as extension `tag`.
pub(crate) fn serialize_id<S: serde::Serializer>(
    tag: i8,
    id: u128,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    Ext((tag, serde_bytes::ByteBuf::from(id.to_be_bytes().to_vec()))).serialize(s)
}

/// Reads a 128-bit id written by [`serialize_id`] with `tag`.
pub(crate) fn deserialize_id<'de, D: serde::Deserializer<'de>>(
    tag: i8,
    d: D,
) -> std::result::Result<u128, D::Error> {
    use serde::de::Error as _;
    let Ext((t, bytes)) = Ext::deserialize(d)?;
    if t != tag {
        return Err(D::Error::custom(format!(
            "expected MessagePack extension type {tag}, got {t}"
        )));
    }
    let raw: [u8; 16] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| D::Error::custom("an id must be 16 bytes"))?;
    Ok(u128::from_be_bytes(raw))
}
