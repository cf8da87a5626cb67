//! Components uploaded through the Jobs API, kept by the head for the jobs
//! that name them: each tenant's own (one tenant cannot run or see
//! another's upload by its digest), bounded per tenant in number and bytes
//! and in all, the room taken before a body byte is read, and forgotten
//! after an hour unused.
//!
//! ```
//! use fabric_host::head::rest::uploads::{Uploads, MAX_UPLOADS};
//! let uploads = Uploads::default();
//! let room = uploads.reserve("acme", 8).unwrap();
//! let digest = uploads.keep(room, b"\0asm\x0d\0\x01\0".as_slice().into());
//! assert!(uploads.get("acme", &digest).is_some());
//! assert!(uploads.get("other", &digest).is_none());
//! assert!(MAX_UPLOADS >= 4);
//! ```

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::error::FabricError;

/// Components one tenant may keep uploaded.
pub const MAX_UPLOADS: usize = 8;
/// Bytes one tenant may keep uploaded (and be uploading).
pub const TENANT_BYTES: u64 = 512 << 20;
/// Bytes all tenants together may keep uploaded: room for eight tenants'
/// full shares (a body must arrive at a minimum rate, so a reservation
/// whose bytes never come is soon given back).
pub const TOTAL_BYTES: u64 = 4 << 30;
/// An upload no job named for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(3600);

struct Upload {
    bytes: Bytes,
    used: Instant,
}

#[derive(Default)]
struct TenantUploads {
    kept: BTreeMap<String, Upload>,
    /// Bytes of uploads being received.
    arriving: u64,
    arriving_count: usize,
}

impl TenantUploads {
    fn bytes(&self) -> u64 {
        self.kept
            .values()
            .map(|u| u.bytes.len() as u64)
            .sum::<u64>()
            + self.arriving
    }
}

#[derive(Default)]
struct State {
    tenants: HashMap<Arc<str>, TenantUploads>,
}

impl State {
    fn total(&self) -> u64 {
        self.tenants.values().map(TenantUploads::bytes).sum()
    }

    fn forget_idle(&mut self) {
        for t in self.tenants.values_mut() {
            t.kept.retain(|_, u| u.used.elapsed() < IDLE);
        }
        self.tenants
            .retain(|_, t| !t.kept.is_empty() || t.arriving_count > 0);
    }
}

/// The head's uploaded components.
#[derive(Default)]
pub struct Uploads(Arc<Mutex<State>>);

/// Room for one upload of a tenant, taken before its body is read; given
/// back if it is dropped unkept.
pub struct Room {
    state: Arc<Mutex<State>>,
    tenant: Arc<str>,
    bytes: u64,
}

impl Drop for Room {
    fn drop(&mut self) {
        let mut s = self.state.lock();
        if let Some(t) = s.tenants.get_mut(&self.tenant) {
            t.arriving -= self.bytes;
            t.arriving_count -= 1;
        }
    }
}

fn refused(message: String, value: u64) -> FabricError {
    FabricError::limit("uploads", value, message)
}

impl Uploads {
    /// Takes room for `bytes` of `tenant`'s, or says why there is none.
    pub fn reserve(&self, tenant: &str, bytes: u64) -> Result<Room, FabricError> {
        let mut s = self.0.lock();
        s.forget_idle();
        let total = s.total();
        let t = s.tenants.entry(tenant.into()).or_default();
        if t.kept.len() + t.arriving_count >= MAX_UPLOADS {
            return Err(refused(
                format!("tenant `{tenant}` keeps {MAX_UPLOADS} uploaded components: delete one"),
                MAX_UPLOADS as u64,
            ));
        }
        if t.bytes() + bytes > TENANT_BYTES {
            return Err(refused(
                format!(
                    "tenant `{tenant}` would keep more than {} of uploaded components",
                    crate::resources::fmt_bytes(TENANT_BYTES as i64)
                ),
                TENANT_BYTES,
            ));
        }
        if total + bytes > TOTAL_BYTES {
            return Err(refused(
                "the head keeps as many uploaded components as it may: try later".into(),
                TOTAL_BYTES,
            ));
        }
        t.arriving += bytes;
        t.arriving_count += 1;
        Ok(Room {
            state: self.0.clone(),
            tenant: tenant.into(),
            bytes,
        })
    }

    /// Keeps an upload that arrived whole in its room; returns its digest
    /// (SHA-256, hex).
    pub fn keep(&self, room: Room, bytes: Bytes) -> String {
        let digest = digest_of(&bytes);
        self.keep_digested(room, bytes, digest.clone());
        digest
    }

    /// [`Uploads::keep`] with its [`digest_of`] already computed (off the
    /// async workers: hashing 256 MiB takes a while).
    pub fn keep_digested(&self, room: Room, bytes: Bytes, digest: String) {
        let mut s = self.0.lock();
        let t = s.tenants.entry(room.tenant.clone()).or_default();
        t.kept.insert(
            digest.clone(),
            Upload {
                bytes,
                used: Instant::now(),
            },
        );
        drop(s);
        drop(room);
    }

    /// `tenant`'s upload with `digest` (now counted as used).
    pub fn get(&self, tenant: &str, digest: &str) -> Option<Bytes> {
        let mut s = self.0.lock();
        let u = s.tenants.get_mut(tenant)?.kept.get_mut(digest)?;
        u.used = Instant::now();
        Some(u.bytes.clone())
    }

    /// `tenant`'s uploads: (digest, bytes).
    pub fn list(&self, tenant: &str) -> Vec<(String, u64)> {
        let mut s = self.0.lock();
        s.forget_idle();
        s.tenants
            .get(tenant)
            .map(|t| {
                t.kept
                    .iter()
                    .map(|(d, u)| (d.clone(), u.bytes.len() as u64))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets `tenant`'s upload `digest`; `false` when it had none.
    pub fn remove(&self, tenant: &str, digest: &str) -> bool {
        let mut s = self.0.lock();
        s.tenants
            .get_mut(tenant)
            .is_some_and(|t| t.kept.remove(digest).is_some())
    }
}

/// The digest an upload is known by: its SHA-256, hex.
pub fn digest_of(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_bounded_in_count_and_bytes_and_gets_room_back() {
        let u = Uploads::default();
        let rooms: Vec<Room> = (0..MAX_UPLOADS)
            .map(|_| u.reserve("acme", 1).unwrap())
            .collect();
        assert!(u.reserve("acme", 1).is_err());
        // Another tenant is not held back by acme's.
        assert!(u.reserve("other", 1).is_ok());
        drop(rooms);
        assert!(u.reserve("acme", TENANT_BYTES + 1).is_err());
        let big = u.reserve("acme", TENANT_BYTES).unwrap();
        assert!(u.reserve("acme", 1).is_err());
        drop(big);
        assert!(u.reserve("acme", 1).is_ok());
    }

    #[test]
    fn the_same_bytes_have_one_digest_per_tenant_and_can_be_removed() {
        let u = Uploads::default();
        let a = u.keep(u.reserve("a", 3).unwrap(), Bytes::from_static(b"abc"));
        let b = u.keep(u.reserve("b", 3).unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(a, b);
        assert!(u.remove("a", &a));
        assert!(u.get("a", &a).is_none());
        assert_eq!(u.get("b", &b).unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(u.list("b"), [(b, 3)]);
    }
}
