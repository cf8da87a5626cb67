//! Spilling: where the object store puts values that do not fit in memory.
//!
//! When a new value does not fit, the store writes its least recently used
//! ready values to files here and forgets their bytes; reading one loads it
//! back (or, when memory is full of values in use, reads it from the file
//! without keeping it). Writing happens in the call that needed the room:
//! a put that spills waits for the disk. A file lives exactly as
//! long as its object: freeing the object deletes it, and dropping the
//! store removes the directory it created.
//!
//! ```
//! use fabric_runtime::spill::SpillDir;
//! let dir = SpillDir::temporary().unwrap();
//! let path = dir.write(7, b"value").unwrap();
//! assert_eq!(&dir.read(&path, 5).unwrap()[..], b"value");
//! assert_eq!(dir.counts().on_disk_bytes, 5);
//! dir.remove(&path);
//! assert!(!path.exists());
//! assert_eq!(dir.counts().on_disk_bytes, 0);
//! assert_eq!((dir.counts().spilled, dir.counts().restored), (1, 1));
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where spilled values go.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Spill {
    /// A fresh directory under the system's temporary directory.
    #[default]
    Temporary,
    /// This directory (made if missing).
    Dir(PathBuf),
    /// Never spill: a value that does not fit is refused.
    Off,
}

/// A directory of spilled values, one file per object.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    /// Whether this directory was made for this store (and goes with it).
    owned: bool,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    spilled: AtomicU64,
    spilled_bytes: AtomicU64,
    restored: AtomicU64,
    restored_bytes: AtomicU64,
    on_disk: AtomicU64,
}

/// What a store spilled and read back so far, and what its files hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillCounts {
    pub spilled: u64,
    pub spilled_bytes: u64,
    /// Values read back from their files (loaded again, or read once).
    pub restored: u64,
    pub restored_bytes: u64,
    pub on_disk_bytes: u64,
}

impl SpillDir {
    /// A new directory under the system's temporary directory.
    pub fn temporary() -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "wasmfabric-spill-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        private_dir(&path)?;
        Ok(SpillDir {
            path,
            owned: true,
            counts: Counts::default(),
        })
    }

    /// `path`, made if missing.
    pub fn at(path: PathBuf) -> std::io::Result<Self> {
        private_dir(&path)?;
        Ok(SpillDir {
            path,
            owned: false,
            counts: Counts::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the value of object `id` and returns its file. A partial file
    /// (a full disk) is removed before the error returns.
    pub fn write(&self, id: u128, value: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path.join(format!("{id:032x}"));
        let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(value));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let c = &self.counts;
        c.spilled.fetch_add(1, Ordering::Relaxed);
        c.spilled_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        c.on_disk.fetch_add(value.len() as u64, Ordering::Relaxed);
        Ok(path)
    }

    /// Reads a spilled value of `len` bytes back.
    pub fn read(&self, path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(path)?;
        if bytes.len() != len {
            return Err(std::io::Error::other(format!(
                "spill file {} holds {} bytes, not {len}",
                path.display(),
                bytes.len()
            )));
        }
        self.counts.restored.fetch_add(1, Ordering::Relaxed);
        self.counts
            .restored_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Deletes a spill file (its object was freed or loaded back).
    pub fn remove(&self, path: &Path) {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(path) {
            Ok(()) => {
                let _ =
                    self.counts
                        .on_disk
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            Some(n.saturating_sub(len))
                        });
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a spill file")
            }
        }
    }

    /// What went through this directory so far.
    pub fn counts(&self) -> SpillCounts {
        let c = &self.counts;
        SpillCounts {
            spilled: c.spilled.load(Ordering::Relaxed),
            spilled_bytes: c.spilled_bytes.load(Ordering::Relaxed),
            restored: c.restored.load(Ordering::Relaxed),
            restored_bytes: c.restored_bytes.load(Ordering::Relaxed),
            on_disk_bytes: c.on_disk.load(Ordering::Relaxed),
        }
    }
}

/// Makes `path` (mode 0700: spilled values are tenants' data, for no other
/// local user to read).
fn private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
