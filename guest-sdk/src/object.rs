//! Object references and the calls that use them: `put`, `get`, `wait`.

use std::cell::{Cell, OnceCell};
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::__bindings::fabric::core::host;
use crate::__bindings::fabric::core::types::Id;
use crate::error::Result;
use crate::value::{self, EXT_OBJECT_REF};

/// The 128-bit id of an object.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub u128);

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectId({:08x})", (self.0 >> 96) as u32)
    }
}

pub(crate) fn id_from_wit(id: Id) -> u128 {
    (u128::from(id.hi) << 64) | u128::from(id.lo)
}

pub(crate) fn id_to_wit(id: u128) -> Id {
    Id {
        hi: (id >> 64) as u64,
        lo: id as u64,
    }
}

/// The host handle behind an [`ObjectRef`]; dropping it releases the reference.
pub(crate) struct RefInner {
    /// Set at once, or (for a reference decoded from a value) by the
    /// decoder, which adopts all of a value's references in one host call.
    handle: OnceCell<host::ObjectRef>,
    id: Cell<Option<u128>>,
}

impl RefInner {
    pub(crate) fn new(handle: host::ObjectRef) -> Rc<Self> {
        Rc::new(RefInner {
            handle: OnceCell::from(handle),
            id: Cell::new(None),
        })
    }

    /// A reference to `id` whose handle [`value::decode`] adopts later.
    pub(crate) fn unadopted(id: u128) -> Rc<Self> {
        Rc::new(RefInner {
            handle: OnceCell::new(),
            id: Cell::new(Some(id)),
        })
    }

    /// Gives an unadopted reference its handle (a second one is dropped).
    pub(crate) fn set_handle(&self, handle: host::ObjectRef) {
        let _ = self.handle.set(handle);
    }

    pub(crate) fn handle(&self) -> &host::ObjectRef {
        // Only code running inside a `Deserialize` can see a reference
        // before its decoder adopted it; adopt it alone then.
        self.handle.get_or_init(|| {
            host::adopt(id_to_wit(self.id())).unwrap_or_else(|e| {
                panic!(
                    "object {:032x} cannot be adopted: {}",
                    self.id(),
                    crate::Error::from(e)
                )
            })
        })
    }

    pub(crate) fn id(&self) -> u128 {
        if let Some(id) = self.id.get() {
            return id;
        }
        let id = id_from_wit(self.handle().id());
        self.id.set(Some(id));
        id
    }
}

/// A reference to an immutable object that holds (or will hold) a `T`.
///
/// Cloning is cheap and shares the reference; the object lives while any
/// reference to it does, here or in another task.
pub struct ObjectRef<T> {
    pub(crate) inner: Rc<RefInner>,
    _t: PhantomData<fn() -> T>,
}

impl<T> ObjectRef<T> {
    pub(crate) fn from_handle(handle: host::ObjectRef) -> Self {
        Self::from_inner(RefInner::new(handle))
    }

    pub(crate) fn from_inner(inner: Rc<RefInner>) -> Self {
        ObjectRef {
            inner,
            _t: PhantomData,
        }
    }

    pub fn id(&self) -> ObjectId {
        ObjectId(self.inner.id())
    }

    /// The value, waiting for it if needed. Same as [`get`].
    pub fn get(&self) -> Result<T>
    where
        T: DeserializeOwned,
    {
        get(self)
    }
}

impl<T> Clone for ObjectRef<T> {
    fn clone(&self) -> Self {
        Self::from_inner(self.inner.clone())
    }
}

impl<T> std::fmt::Debug for ObjectRef<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectRef({:?})", self.id())
    }
}

impl<T> PartialEq for ObjectRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl<T> Serialize for ObjectRef<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        value::note_nested(&self.inner);
        value::serialize_id(EXT_OBJECT_REF, self.inner.id(), s)
    }
}

impl<'de, T> Deserialize<'de> for ObjectRef<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let id = value::deserialize_id(EXT_OBJECT_REF, d)?;
        let inner = value::adopt_later(id).map_err(D::Error::custom)?;
        Ok(ObjectRef::from_inner(inner))
    }
}

/// Stores `value` in the object store and returns a reference to it.
pub fn put<T: Serialize>(value: &T) -> Result<ObjectRef<T>> {
    let enc = value::encode(value)?;
    let nested: Vec<&host::ObjectRef> = enc.nested.iter().map(|r| r.handle()).collect();
    let handle = host::put(&enc.bytes, &nested)?;
    Ok(ObjectRef::from_handle(handle))
}

/// Stores a byte buffer without encoding it first: the host copies it once,
/// straight out of this instance's memory. The fastest way to share large
/// binary data; read it back as a `serde_bytes::ByteBuf` (or any type that
/// decodes from MessagePack `bin`).
pub fn put_bytes(data: &[u8]) -> Result<ObjectRef<serde_bytes::ByteBuf>> {
    let handle = host::put_bytes(&bin_header(data.len())?, data)?;
    Ok(ObjectRef::from_handle(handle))
}

/// The MessagePack `bin` header for `len` bytes.
fn bin_header(len: usize) -> Result<Vec<u8>> {
    Ok(match len {
        0..=0xff => vec![0xc4, len as u8],
        0x100..=0xffff => {
            let mut h = vec![0xc5];
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h
        }
        _ => {
            let len = u32::try_from(len).map_err(|_| {
                crate::Error::InvalidArgument("a byte object must be under 4 GiB".into())
            })?;
            let mut h = vec![0xc6];
            h.extend_from_slice(&len.to_be_bytes());
            h
        }
    })
}

fn millis(t: Option<Duration>) -> Option<u64> {
    t.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// The value of an object, waiting for it as long as it takes.
///
/// A task that waits here gives its CPU back to the node meanwhile, so
/// nested tasks can run even on a one-CPU node.
pub fn get<T: DeserializeOwned>(r: &ObjectRef<T>) -> Result<T> {
    let bytes = host::get(r.inner.handle(), None)?;
    value::decode(&bytes)
}

/// Like [`get`], failing with [`crate::Error::Timeout`] after `timeout`.
pub fn get_timeout<T: DeserializeOwned>(r: &ObjectRef<T>, timeout: Duration) -> Result<T> {
    let bytes = host::get(r.inner.handle(), millis(Some(timeout)))?;
    value::decode(&bytes)
}

/// The values of several objects, in order, in one host call.
pub fn get_all<T: DeserializeOwned>(refs: &[ObjectRef<T>]) -> Result<Vec<T>> {
    get_all_inner(refs, None)
}

/// Like [`get_all`], failing with [`crate::Error::Timeout`] after `timeout`.
pub fn get_all_timeout<T: DeserializeOwned>(
    refs: &[ObjectRef<T>],
    timeout: Duration,
) -> Result<Vec<T>> {
    get_all_inner(refs, Some(timeout))
}

fn get_all_inner<T: DeserializeOwned>(
    refs: &[ObjectRef<T>],
    timeout: Option<Duration>,
) -> Result<Vec<T>> {
    let handles: Vec<&host::ObjectRef> = refs.iter().map(|r| r.inner.handle()).collect();
    let values = host::get_many(&handles, millis(timeout))?;
    values.iter().map(|b| value::decode(b)).collect()
}

/// `(ready, not ready)`, as [`wait`] returns them.
pub type ReadySplit<T> = (Vec<ObjectRef<T>>, Vec<ObjectRef<T>>);

/// Waits until `num_ready` of `refs` are ready, or `timeout` passes, and
/// splits them into (ready, not ready), keeping their order. At most
/// `num_ready` are returned as ready.
pub fn wait<T>(
    refs: &[ObjectRef<T>],
    num_ready: usize,
    timeout: Option<Duration>,
) -> Result<ReadySplit<T>> {
    let handles: Vec<&host::ObjectRef> = refs.iter().map(|r| r.inner.handle()).collect();
    let num = u32::try_from(num_ready)
        .map_err(|_| crate::Error::InvalidArgument("num_ready is too large".into()))?;
    let ready_idx = host::wait(&handles, num, millis(timeout))?;
    let mut is_ready = vec![false; refs.len()];
    for i in ready_idx {
        if let Some(slot) = is_ready.get_mut(i as usize) {
            *slot = true;
        }
    }
    let (ready, pending): (Vec<_>, Vec<_>) =
        refs.iter().cloned().zip(is_ready).partition(|(_, r)| *r);
    Ok((
        ready.into_iter().map(|(r, _)| r).collect(),
        pending.into_iter().map(|(r, _)| r).collect(),
    ))
}

/// Cancels the task that produces `r`: it never starts, or stops now.
pub fn cancel<T>(r: &ObjectRef<T>) -> Result<()> {
    host::cancel(r.inner.handle())?;
    Ok(())
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "fabric:core/host@0.1.0")]
unsafe extern "C" {
    // The core-ABI form of `read-bytes: func(obj: borrow<object-ref>,
    // offset: u64, into: list<u8>) -> u64`. Declared by hand because the
    // host writes into `into`, which must not be passed as a `&[u8]`.
    #[link_name = "read-bytes"]
    fn read_bytes_raw(obj: i32, offset: i64, ptr: *mut u8, len: usize) -> i64;
}

#[cfg(not(target_arch = "wasm32"))]
unsafe fn read_bytes_raw(_obj: i32, _offset: i64, _ptr: *mut u8, _len: usize) -> i64 {
    unreachable!("guests run as wasm32 components")
}

/// The data of a byte object (one stored by [`put_bytes`]), waiting for it
/// as [`get`] does: copied once, straight into a buffer allocated here,
/// with no MessagePack header to decode (a [`get`] into a `ByteBuf` holds
/// the encoded value and the decoded buffer at once). Any other object is
/// [`crate::Error::InvalidArgument`].
///
/// ```no_run
/// let r = fabric::put_bytes(&[7u8; 1 << 20])?;
/// let data: Vec<u8> = fabric::get_bytes(&r)?;
/// assert_eq!(data.len(), 1 << 20);
/// # Ok::<(), fabric::Error>(())
/// ```
pub fn get_bytes(r: &ObjectRef<serde_bytes::ByteBuf>) -> Result<Vec<u8>> {
    let len = host::bytes_len(r.inner.handle(), None)?;
    let len = usize::try_from(len)
        .map_err(|_| crate::Error::InvalidArgument("the object is too large here".into()))?;
    // Not zeroed first: the copy below is the only pass over the block (a
    // zeroed one would have the host drop its pages, which the copy would
    // then fault in again).
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| {
        crate::Error::InvalidArgument(format!("no room here for a byte object of {len} bytes"))
    })?;
    // SAFETY: the spare capacity is `len` bytes of this instance's memory
    // that nothing else uses.
    unsafe { read_raw(r, 0, buf.as_mut_ptr(), len)? };
    // SAFETY: `read_raw` succeeded, so the host wrote all `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

/// Copies a byte object's data from byte `offset` on into `buf` (all of
/// it), a buffer the caller allocated and may reuse; returns the object's
/// length. Waits for the object as [`get`] does. Reading past its end is
/// [`crate::Error::InvalidArgument`].
pub fn get_bytes_into(
    r: &ObjectRef<serde_bytes::ByteBuf>,
    offset: u64,
    buf: &mut [u8],
) -> Result<u64> {
    let len = host::bytes_len(r.inner.handle(), None)?;
    if offset
        .checked_add(buf.len() as u64)
        .is_none_or(|end| end > len)
    {
        return Err(crate::Error::InvalidArgument(format!(
            "{} bytes from offset {offset} pass the end of the object's {len} bytes",
            buf.len()
        )));
    }
    read_into(r, offset, buf)?;
    Ok(len)
}

/// `read-bytes` of a ready byte object whose range was checked.
fn read_into(r: &ObjectRef<serde_bytes::ByteBuf>, offset: u64, buf: &mut [u8]) -> Result<()> {
    // SAFETY: `buf` is memory of this instance that this call borrows
    // mutably.
    unsafe { read_raw(r, offset, buf.as_mut_ptr(), buf.len()) }
}

/// `read-bytes` of `len` bytes into `ptr`: all of them written, or an error.
///
/// # Safety
/// `ptr..ptr + len` must be memory of this instance that nothing else uses
/// meanwhile (it may be uninitialised: the host only writes it).
unsafe fn read_raw(
    r: &ObjectRef<serde_bytes::ByteBuf>,
    offset: u64,
    ptr: *mut u8,
    len: usize,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let handle = r.inner.handle().handle() as i32;
    // SAFETY: the caller's region; the host writes at most `len` bytes.
    let copied = unsafe { read_bytes_raw(handle, offset as i64, ptr, len) };
    if copied as u64 != len as u64 {
        return Err(crate::Error::ObjectLost(
            "the byte object is no longer readable here".into(),
        ));
    }
    Ok(())
}

/// Refs of different types, fetched together by [`get_each`]: a tuple of
/// `&ObjectRef`s.
pub trait GetEach {
    /// The tuple of values.
    type Values;
    #[doc(hidden)]
    fn handles(&self) -> Vec<&host::ObjectRef>;
    #[doc(hidden)]
    fn decode(values: Vec<Vec<u8>>) -> Result<Self::Values>;
}

macro_rules! get_each_tuple {
    ($($t:ident $v:ident),+) => {
        impl<$($t: DeserializeOwned),+> GetEach for ($(&ObjectRef<$t>,)+) {
            type Values = ($($t,)+);

            fn handles(&self) -> Vec<&host::ObjectRef> {
                let ($($v,)+) = self;
                vec![$($v.inner.handle()),+]
            }

            fn decode(values: Vec<Vec<u8>>) -> Result<Self::Values> {
                let mut it = values.into_iter();
                Ok(($({
                    let _: Option<$t> = None;
                    let bytes = it.next().ok_or_else(|| {
                        crate::Error::Value("the host returned too few values".into())
                    })?;
                    value::decode::<$t>(&bytes)?
                },)+))
            }
        }
    };
}

get_each_tuple!(A a);
get_each_tuple!(A a, B b);
get_each_tuple!(A a, B b, C c);
get_each_tuple!(A a, B b, C c, D d);
get_each_tuple!(A a, B b, C c, D d, E e);
get_each_tuple!(A a, B b, C c, D d, E e, F f);
get_each_tuple!(A a, B b, C c, D d, E e, F f, G g);
get_each_tuple!(A a, B b, C c, D d, E e, F f, G g, H h);

/// The values of references of different types, in one host call (Ray's
/// `ray.get([a, b])` over objects of different types):
///
/// ```no_run
/// let name = fabric::put(&"ada".to_string())?;
/// let age = fabric::put(&36u32)?;
/// let (n, a): (String, u32) = fabric::get_each((&name, &age))?;
/// # Ok::<(), fabric::Error>(())
/// ```
pub fn get_each<G: GetEach>(refs: G) -> Result<G::Values> {
    let handles = refs.handles();
    let values = host::get_many(&handles, None)?;
    G::decode(values)
}
