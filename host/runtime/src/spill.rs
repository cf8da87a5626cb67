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
//! dir.remove(&path);
//! assert!(!path.exists());
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

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
        Ok(SpillDir { path, owned: true })
    }

    /// `path`, made if missing.
    pub fn at(path: PathBuf) -> std::io::Result<Self> {
        private_dir(&path)?;
        Ok(SpillDir { path, owned: false })
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
        Ok(bytes)
    }

    /// Deletes a spill file (its object was freed or loaded back).
    pub fn remove(&self, path: &Path) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete a spill file");
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
