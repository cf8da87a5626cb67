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
//! cache lives in a directory only the node's user may change
//! ([`private_dir`] refuses one owned by another user or writable by
//! others, and one under a directory another user could rename it out of,
//! as OpenSSH checks its files); its files are opened without following
//! links and must be the node's user's own regular files, writable by no
//! one else; each file carries the SHA-256 of its artifact, checked before
//! the artifact is handed to wasmtime (a torn or corrupted file is
//! discarded and the component compiled again); and files are written
//! whole (a temporary file, then a rename). Only the node's user (or root)
//! can then put a file there, and they can already run code as that user.
//! SECURITY.md records the decision.
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
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    /// covers wasmtime's version and its flags). Fails when another user could
    /// change what is in `dir` (see [`private_dir`]).
    pub fn open(dir: &Path, max_bytes: u64, settings: &str) -> Result<Self, String> {
        private_dir(dir)?;
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

    /// Compiled components kept, and the bytes of every file kept (theirs
    /// and the function packs'), read from the directory: other nodes of
    /// this user may share it.
    pub fn size(&self) -> (u64, u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (0, 0);
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
            .filter_map(|e| {
                let pack = e.file_name().to_string_lossy().starts_with("functions-");
                Some((pack, e.metadata().ok()?.len()))
            })
            .fold((0, 0), |(n, bytes), (pack, len)| {
                (n + u64::from(!pack), bytes + len)
            })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The artifact stored for the component with `digest`, when there is
    /// one, it is the node's user's own file, and it is whole. A file that
    /// fails its check is removed.
    pub fn load(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.path(digest);
        let mut bytes = read_own_file(&path)?;
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
        let stale = SystemTime::now() - std::time::Duration::from_secs(3600);
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let Ok(modified) = m.modified() else { continue };
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".cwasm") {
                files.push((modified, m.len(), e.path()));
            } else if name.starts_with(".tmp-") && modified < stale {
                // Left by a writer that died mid-write.
                let _ = std::fs::remove_file(e.path());
            }
        }
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

/// Creates `dir` (mode 0700) if it is missing, and checks that only this
/// process's user can change what is in it: it is a directory (not a
/// link) that user owns and no one else may write (one others could read
/// is made private), and every directory above it is owned by that user or
/// root and writable by no one else unless sticky (as `/tmp` is), so no one
/// can rename it away and put another in its place.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    // Created private whatever the umask (a umask of 002 would make them
    // group-writable, and so refused below).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "{} is not a directory (or is a link)",
            dir.display()
        ));
    }
    if meta.uid() != me {
        return Err(format!(
            "{} belongs to user {}, not to this process's user {me}: machine code is loaded \
             from it, so it must be this user's own",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by other users (mode {:o}): files planted there would be run; \
             remove it or choose another directory",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    let absolute = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    for parent in absolute.ancestors().skip(1) {
        let m = std::fs::metadata(parent)
            .map_err(|e| format!("cannot read {}: {e}", parent.display()))?;
        let sticky = m.mode() & 0o1000 != 0;
        if (m.uid() != me && m.uid() != 0) || (m.mode() & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{} is under {}, which another user could change (owner {}, mode {:o}): \
                 choose a directory of this user's own",
                dir.display(),
                parent.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// The bytes of `path` when it is a regular file (not a link) of this
/// process's user that no one else may write, with one name.
fn read_own_file(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !m.is_file() || m.uid() != me || m.mode() & 0o022 != 0 || m.nlink() != 1 {
        tracing::warn!(path = %path.display(), "ignoring a compiled component that is not this user's own file");
        return None;
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    f.read_to_end(&mut bytes).ok()?;
    Some(bytes)
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
    fn a_directory_others_may_write_is_refused_and_a_readable_one_made_private() {
        let dir = temp_dir("modes");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = DiskCache::open(&dir, 1 << 20, "a").unwrap_err();
        assert!(refused.contains("writable by other users"), "{refused}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cache = DiskCache::open(&dir, 1 << 20, "a").unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // A link in the cache is not followed, even to a whole artifact.
        cache.store("real", b"code");
        std::os::unix::fs::symlink(cache.path("real"), cache.path("linked")).unwrap();
        assert_eq!(cache.load("linked"), None);
        assert_eq!(cache.load("real").unwrap(), b"code");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_least_recently_used_go_past_the_bound() {
        let dir = temp_dir("bound");
        let cache = DiskCache::open(&dir, 3 * (HEADER as u64 + 100), "a").unwrap();
        let epoch = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..5u64 {
            cache.store(&format!("d{i}"), &[i as u8; 100]);
            // Distinct modification times, so the order is the store order.
            if let Ok(f) = std::fs::File::options()
                .write(true)
                .open(cache.path(&format!("d{i}")))
            {
                f.set_modified(epoch + std::time::Duration::from_secs(i))
                    .unwrap();
            }
        }
        // The bound holds after each store: the last store evicted d1
        // (d0 went at the fourth).
        let kept: Vec<bool> = (0..5)
            .map(|i| cache.path(&format!("d{i}")).exists())
            .collect();
        assert_eq!(kept, [false, false, true, true, true]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
