//! Cranelift's per-function cache, kept as one pack per tenant, so a
//! tenant's second Python component compiles in a fraction of the first's
//! time.
//!
//! Every Python component embeds the same CPython: tens of thousands of
//! functions that differ from one application to the next only in their
//! data. Cranelift can skip compiling a function it compiled before when
//! given a store of earlier results keyed by a hash of the function
//! (wasmtime's incremental cache). The node keeps that store as a *pack*:
//! one file in its private disk cache ([`super::disk_cache`], with its
//! checks: the node's user's own file, its SHA-256 verified) per tenant and
//! engine. Before a compile the node reads the tenant's pack and hands it to
//! the compiler process with the component; the compiler answers with the
//! artifact and the pack it would keep next (what this compile used or made
//! first, then older entries, within [`PACK_BYTES`]), which the node writes
//! back. The compiler process touches no file.
//!
//! One pack per tenant, not one for the node: a pack's entries are machine
//! code the next compile copies without checking, so no tenant's compile
//! ever reads what another tenant's compile wrote, and no tenant can learn
//! from a compile's speed what another tenant compiled. Each pack is
//! bounded; the disk cache's own bound covers all of them.
//!
//! ```
//! use fabric_runtime::runtime::function_pack::FunctionPack;
//! use wasmtime::CacheStore;
//! let pack = FunctionPack::decode(&[]).unwrap();
//! assert!(pack.insert(b"key", b"compiled".to_vec()));
//! let next = pack.encode();
//! let again = FunctionPack::decode(&next).unwrap();
//! assert_eq!(again.get(b"key").as_deref(), Some(&b"compiled"[..]));
//! ```

use parking_lot::Mutex;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// The most a tenant's pack holds (a Python component's functions take
/// about 25 MiB): bounded so that what the node reads, pipes and writes
/// for one compile stays small next to the compile itself.
pub const PACK_BYTES: usize = 64 << 20;

/// The name a tenant's pack has in the disk cache.
pub fn pack_name(tenant: &str) -> String {
    let digest = crate::runtime::component::digest(tenant.as_bytes());
    format!("functions-{}", &digest[..32])
}

/// Earlier compiles' functions, and what this compile adds.
#[derive(Debug, Default)]
pub struct FunctionPack {
    /// Entries in the order the pack held them.
    kept: Vec<Entry>,
    by_key: HashMap<Box<[u8]>, usize>,
    /// Kept entries this compile used.
    used: Mutex<HashSet<usize>>,
    /// Entries this compile made, with their bytes.
    made: Mutex<Made>,
}

/// A function's key and its compiled form.
type Entry = (Box<[u8]>, Box<[u8]>);

#[derive(Debug, Default)]
struct Made {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    keys: HashSet<Vec<u8>>,
    bytes: usize,
}

impl FunctionPack {
    /// Reads a pack (empty bytes: an empty pack). A malformed one is an
    /// error, and the compile goes on without it.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, String> {
        let mut pack = FunctionPack::default();
        while !bytes.is_empty() {
            let key = take(&mut bytes)?;
            let value = take(&mut bytes)?;
            let key: Box<[u8]> = key.into();
            if pack.by_key.contains_key(&key) {
                return Err("a key appears twice".into());
            }
            pack.by_key.insert(key.clone(), pack.kept.len());
            pack.kept.push((key, value.into()));
        }
        Ok(pack)
    }

    /// The pack to keep next: what this compile made and used, then the
    /// rest of what was kept, as long as it fits [`PACK_BYTES`].
    pub fn encode(&self) -> Vec<u8> {
        let used = self.used.lock();
        let made = self.made.lock();
        let mut out = Vec::with_capacity(PACK_BYTES.min(self.kept_bytes() + made.bytes + 1024));
        let mut put = |key: &[u8], value: &[u8]| {
            let size = 8 + key.len() + value.len();
            if out.len() + size > PACK_BYTES {
                return;
            }
            for part in [key, value] {
                out.extend_from_slice(&(part.len() as u32).to_le_bytes());
                out.extend_from_slice(part);
            }
        };
        for (key, value) in &made.entries {
            put(key, value);
        }
        let mut used: Vec<usize> = used.iter().copied().collect();
        used.sort_unstable();
        for &i in &used {
            if !made.keys.contains(&self.kept[i].0[..]) {
                put(&self.kept[i].0, &self.kept[i].1);
            }
        }
        let used: HashSet<usize> = used.into_iter().collect();
        for (i, (key, value)) in self.kept.iter().enumerate() {
            // What this compile made anew supersedes what was kept.
            if !used.contains(&i) && !made.keys.contains(&key[..]) {
                put(key, value);
            }
        }
        out
    }

    fn kept_bytes(&self) -> usize {
        self.kept.iter().map(|(k, v)| 8 + k.len() + v.len()).sum()
    }

    /// Whether this compile added enough to write the pack again: at
    /// least a sixteenth of what it holds, so a tenant's stream of small
    /// new components does not rewrite a large pack each time (what is
    /// written stays within 17 times what the pack grows by).
    pub fn changed(&self) -> bool {
        let made = self.made.lock().bytes;
        made > 0 && made * 16 >= self.kept_bytes()
    }

    /// (Kept entries used, entries made) so far.
    pub fn counts(&self) -> (usize, usize) {
        (self.used.lock().len(), self.made.lock().entries.len())
    }
}

/// One length-prefixed part off the front of `bytes`.
fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or("a pack ends inside a length")?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err("a pack ends inside an entry".into());
    }
    let (part, rest) = rest.split_at(len);
    *bytes = rest;
    Ok(part)
}

impl wasmtime::CacheStore for FunctionPack {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let &i = self.by_key.get(key)?;
        self.used.lock().insert(i);
        Some(Cow::Borrowed(&self.kept[i].1))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut made = self.made.lock();
        // Identical functions (a module may have many) are one entry. A
        // key that was kept is compiled again only when its entry did not
        // decode: the new one takes its place.
        if made.keys.contains(key) {
            return true;
        }
        let size = key.len() + value.len();
        // Past the bound the compile goes on; its functions are not kept.
        if made.bytes + size > PACK_BYTES {
            return false;
        }
        made.bytes += size;
        made.keys.insert(key.to_vec());
        made.entries.push((key.to_vec(), value));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn what_a_compile_used_or_made_comes_first_and_damage_is_refused() {
        let first = FunctionPack::decode(&[]).unwrap();
        for k in [b"a", b"b", b"c"] {
            first.insert(k, k.repeat(3));
        }
        let second = FunctionPack::decode(&first.encode()).unwrap();
        assert_eq!(second.get(b"c").as_deref(), Some(&b"ccc"[..]));
        assert!(second.get(b"zz").is_none());
        second.insert(b"d", b"ddd".to_vec());
        second.insert(b"d", b"ddd".to_vec());
        // Compiled again (its kept entry did not decode): replaced.
        second.insert(b"a", b"AAA".to_vec());
        let third = FunctionPack::decode(&second.encode()).unwrap();
        let order: Vec<&[u8]> = third.kept.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(order, [&b"d"[..], b"a", b"c", b"b"]);
        assert_eq!(third.get(b"a").as_deref(), Some(&b"AAA"[..]));
        let bytes = second.encode();
        assert!(FunctionPack::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(FunctionPack::decode(&[9, 0, 0]).is_err());
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes);
        assert!(FunctionPack::decode(&twice).is_err());
    }
}
