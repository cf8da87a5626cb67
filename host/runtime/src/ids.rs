//! Newtype identifiers for the things a node tracks.
//!
//! Every id is 128 bits drawn from a cryptographic random source, so ids are
//! unique across a cluster without coordination and cannot be guessed: an id
//! is not a capability, but knowing one reveals nothing about the others.
//!
//! ```
//! use fabric_runtime::ids::ObjectId;
//! let a = ObjectId::random();
//! assert_ne!(a, ObjectId::random());
//! assert_eq!(a.to_string().len(), 32);
//! assert_eq!(a.to_string().parse::<ObjectId>().unwrap(), a);
//! ```

use crate::bindings::fabric::core::types::Id as WitId;

macro_rules! id128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u128);

        impl $name {
            /// A fresh id from the thread's cryptographic random generator.
            pub fn random() -> Self {
                Self(rand::random())
            }

            pub const fn from_u128(raw: u128) -> Self {
                Self(raw)
            }

            pub const fn as_u128(self) -> u128 {
                self.0
            }

            /// The first 8 hex digits: enough to tell ids apart in logs.
            pub fn short(self) -> String {
                format!("{:08x}", (self.0 >> 96) as u32)
            }

            #[allow(dead_code)]
            pub(crate) fn to_wit(self) -> WitId {
                WitId { hi: (self.0 >> 64) as u64, lo: self.0 as u64 }
            }

            #[allow(dead_code)]
            pub(crate) fn from_wit(id: WitId) -> Self {
                Self((u128::from(id.hi) << 64) | u128::from(id.lo))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:032x}", self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                u128::from_str_radix(s, 16).map(Self)
            }
        }
    };
}

/// A concurrent map keyed by one of these ids, hashed by folding the id.
///
/// Why no SipHash: every id a map stores was drawn by a host from a
/// cryptographic generator (guests never choose ids; they only look them
/// up), so its bits are already uniform and an attacker cannot make keys
/// collide. Folding costs a multiply where SipHash cost several percent of
/// a small host call.
pub type IdMap<K, V> = dashmap::DashMap<K, V, IdHash>;

/// Shrinks `map` when it holds under a quarter of what it has room for: a
/// map that once held a million entries keeps their room until told.
pub fn shrink_if_sparse<K, V, S>(map: &dashmap::DashMap<K, V, S>)
where
    K: Eq + std::hash::Hash,
    S: std::hash::BuildHasher + Clone,
{
    let room = map.capacity();
    if room > 4096 && map.len() < room / 4 {
        map.shrink_to_fit();
        // What was a large table goes back to the system now.
        crate::allocator::trim(room > 1 << 20);
    }
}

/// The hasher of [`IdMap`].
#[derive(Clone, Copy, Default)]
pub struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[doc(hidden)]
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write_u128(&mut self, id: u128) {
        // An odd multiplier is a bijection: uniform bits stay uniform, and
        // small test ids still spread over the table.
        self.0 = ((id >> 64) as u64 ^ id as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(16) {
            let mut b = [0u8; 16];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u128(u128::from_le_bytes(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

id128!(
    /// An immutable object in the object store.
    ObjectId
);
id128!(
    /// An actor, addressable from anywhere in the cluster.
    ActorId
);
id128!(
    /// One task invocation.
    TaskId
);
id128!(
    /// A job: one run of an application's driver and everything it started.
    JobId
);
id128!(
    /// A node (one `fabric` process).
    NodeId
);
id128!(
    /// A placement group: bundles of resources reserved together.
    GroupId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_find_what_they_hold() {
        let map: IdMap<ObjectId, u32> = IdMap::default();
        let ids: Vec<ObjectId> = (0..1000u128).map(ObjectId::from_u128).collect();
        for (i, id) in ids.iter().enumerate() {
            map.insert(*id, i as u32);
        }
        assert!(
            ids.iter()
                .enumerate()
                .all(|(i, id)| map.get(id).is_some_and(|v| *v == i as u32))
        );
        assert!(map.get(&ObjectId::random()).is_none());
    }

    #[test]
    fn wit_round_trip_keeps_all_bits() {
        let id = ObjectId::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(ObjectId::from_wit(id.to_wit()), id);
        assert_eq!(id.short(), "01234567");
    }
}
