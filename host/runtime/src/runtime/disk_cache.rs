//! Compiled components kept on disk, so a node compiles each component once
//! across restarts, and the nodes and tests of one machine share the work.
//!
//! A Python component embeds CPython: compiling it takes seconds of
//! Cranelift on two cores, against about a tenth of a millisecond to load
//! wasmtime's serialized artifact. So after a compile the node writes the
//! artifact here, under the component's content digest and a digest of
//! every engine setting that shapes compiled code (and wasmtime's version);
//! the next load of the same bytes on an engine configured the same way
//! reads it back instead of compiling.
//!
//! Loading a serialized artifact trusts it: it is machine code. So the
//! cache lives in a directory only the node's user may read or write
//! ([`DiskCache::open`] refuses one that is not owned by that user or is
//! open to others), each file carries the SHA-256 of its artifact, checked
//! before the artifact is handed to wasmtime (a torn or corrupted file is
//! discarded and the component compiled again), and files are written
//! whole (a temporary file, then a rename). Anyone who can write this
//! directory can already run code as the node's user. SECURITY.md records
//! the decision.
//!
//! The cache is bounded in bytes: past the bound the least recently used
//! files go (a hit refreshes a file's modification time).
//!
//! ```
//! use fabric_runtime::runtime::disk_cache::DiskCache;
//! let dir = std::env::temp_dir().join(format!("fabric-doc-cache-{}", std::process::id()));
//! let cache = DiskCache::open(&dir, 1 << 30, "settings").unwrap();
//! cache.store("abc", b"artifact");
//! assert_eq!(cache.load("abc").as_deref(), Some(&b"artifact"[..]));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The first bytes of every cache file (the format's version is in it).
const MAGIC: &[u8; 8] = b"FABRICC1";
/// Magic, then the artifact's SHA-256.
const HEADER: usize = MAGIC.len() + 32;
/// The default bound on the cache's bytes.
pub const DEFAULT_BYTES: u64 = 4 << 30;

/// A private directory of compiled artifacts.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    /// Digest of the engine settings and wasmtime's version: part of
    /// every file name, so engines configured differently never share.
    engine_key: String,
}

impl DiskCache {
    /// Opens (creating it, mode 0700) the cache in `dir`, keeping at most
    /// `max_bytes`. `settings` names everything about the engine that shapes
    /// compiled code (its settings and wasmtime's compatibility hash, which
    /// covers wasmtime's version and its flags). Fails when `dir` belongs to another user or others may
    /// read or write it.
    pub fn open(dir: &Path, max_bytes: u64, settings: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the compile cache {}: {e}", dir.display()))?;
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "the compile cache {} is not a directory",
                dir.display()
            ));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(format!(
                "the compile cache {} belongs to user {}, not to this node's user {me}: \
                 a node loads machine code from it, so it must be the node's own",
                dir.display(),
                meta.uid()
            ));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                format!(
                    "cannot make the compile cache {} private: {e}",
                    dir.display()
                )
            })?;
        }
        let key = Sha256::digest(settings);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            max_bytes,
            engine_key: hex(&key[..8]),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The artifact stored for the component with `digest`, when there is
    /// one and it is whole. A file that fails its check is removed.
    pub fn load(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let mut bytes = std::fs::read(&path).ok()?;
        let whole = bytes.len() >= HEADER
            && &bytes[..MAGIC.len()] == MAGIC
            && Sha256::digest(&bytes[HEADER..])[..] == bytes[MAGIC.len()..HEADER];
        if !whole {
            tracing::warn!(path = %path.display(), "discarding a damaged compiled component");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Refresh its place in the least-recently-used order.
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        bytes.drain(..HEADER);
        Some(bytes)
    }

    /// Removes what is stored for `digest` (an artifact that would not load).
    pub fn forget(&self, digest: &str) {
        let _ = std::fs::remove_file(self.path(digest));
    }

    /// Stores the artifact of the component with `digest`. Failing to
    /// store only costs a compile later, so errors are logged, not returned.
    pub fn store(&self, digest: &str, artifact: &[u8]) {
        if let Err(e) = self.write(digest, artifact) {
            tracing::warn!(dir = %self.dir.display(), "cannot keep a compiled component: {e}");
            return;
        }
        self.evict();
    }

    fn write(&self, digest: &str, artifact: &[u8]) -> std::io::Result<()> {
        let tmp = self
            .dir
            .join(format!(".tmp-{digest}-{:016x}", rand::random::<u64>()));
        let written = (|| {
            let mut f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&Sha256::digest(artifact))?;
            f.write_all(artifact)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.path(digest))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the least recently used files until the rest fit the bound.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "fabric-cache-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ))
    }

    #[test]
    fn a_stored_artifact_loads_and_a_damaged_one_is_discarded() {
        let dir = temp_dir("damage");
        let cache = DiskCache::open(&dir, 1 << 20, "a").unwrap();
        assert_eq!(cache.load("d1"), None);
        cache.store("d1", b"machine code");
        assert_eq!(cache.load("d1").unwrap(), b"machine code");
        // Engines configured differently do not share files.
        let other = DiskCache::open(&dir, 1 << 20, "b").unwrap();
        assert_eq!(other.load("d1"), None);
        // Flip one byte of the artifact: the checksum catches it.
        let path = cache.path("d1");
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.load("d1"), None);
        assert!(!path.exists(), "a damaged file is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_directory_is_made_private_and_the_bound_holds() {
        let dir = temp_dir("bound");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = DiskCache::open(&dir, 3 * (HEADER as u64 + 100), "a").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for i in 0..5 {
            cache.store(&format!("d{i}"), &[i as u8; 100]);
            // Distinct modification times, so the order is the store order.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kept: Vec<bool> = (0..5)
            .map(|i| cache.path(&format!("d{i}")).exists())
            .collect();
        assert_eq!(kept, [false, false, true, true, true]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
