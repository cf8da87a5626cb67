//! Directory grants, opened once beneath the operator's policy without
//! following any link.
//!
//! A manifest names host directories to grant; the operator's policy names
//! the roots under which a grant may lie. Comparing the text of those paths
//! is not enough: a symbolic link inside an allowed root (one a tenant made
//! through a read-write grant, say) can point anywhere, and a path that was a
//! directory when it was checked can be a link when it is opened. So a grant
//! is opened when its job is admitted, as one `openat2` call from a
//! descriptor of the policy root that contains it, with `RESOLVE_BENEATH`
//! and `RESOLVE_NO_SYMLINKS`: the kernel walks every component, refuses any
//! link and any way out of the root, and the check and the open are the same
//! operation. The job keeps the descriptor, and each of its instances opens
//! the directory through it (`/proc/self/fd/N`), never by path again, so a
//! link swapped in later changes nothing for the job. Linux only (5.6 or
//! later, for `openat2`).
//!
//! ```
//! use fabric_runtime::dir_grants::open_grant;
//! use fabric_runtime::manifest::{DirGrant, DirMode};
//! let root = std::env::temp_dir().join(format!("grants-doc-{}", std::process::id()));
//! std::fs::create_dir_all(root.join("data")).unwrap();
//! std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
//! let grant = |host: &str| DirGrant {
//!     host: root.join(host),
//!     guest: "/d".into(),
//!     mode: DirMode::ReadOnly,
//! };
//! let policy = [root.clone()];
//! assert!(open_grant(&policy, &grant("data")).is_ok());
//! let refused = open_grant(&policy, &grant("etc-link")).unwrap_err();
//! assert!(refused.to_string().contains("symbolic link"), "{refused}");
//! assert!(open_grant(&policy, &grant("../outside")).is_err());
//! std::fs::remove_dir_all(&root).unwrap();
//! ```

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::FabricError;
use crate::manifest::{DirGrant, DirMode};

/// Directory grants one manifest may ask for (each holds a descriptor for
/// as long as its job runs).
pub const MAX_DIR_GRANTS: usize = 64;

/// A granted directory, open for as long as its job holds it.
#[derive(Debug)]
pub struct OpenedDir {
    fd: OwnedFd,
    /// The host path the manifest named (for messages).
    pub host: PathBuf,
    /// Where the guest sees it.
    pub guest: String,
    pub mode: DirMode,
}

impl OpenedDir {
    /// A path that opens exactly this directory, whatever its name now
    /// points at (the kernel's link to this process's descriptor).
    pub fn descriptor_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// Opens `grant` beneath the first root of `roots` that contains its path,
/// refusing any symbolic link on the way and any path outside the roots.
pub fn open_grant(roots: &[PathBuf], grant: &DirGrant) -> Result<OpenedDir, FabricError> {
    let refuse = |why: String| {
        FabricError::InvalidArgument(format!("directory grant {}: {why}", grant.host.display()))
    };
    let path = plain_absolute(&grant.host).map_err(refuse)?;
    let (root, rest) = roots
        .iter()
        .find_map(|root| beneath(root, &path).map(|rest| (root, rest)))
        .ok_or_else(|| refuse("the operator does not allow granting it".into()))?;
    // The operator's own root may itself be reached through links: it is
    // trusted. Everything below it is not.
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let root_fd = rustix::fs::open(root, flags, Mode::empty()).map_err(|e| {
        refuse(format!(
            "cannot open the allowed root {}: {e}",
            root.display()
        ))
    })?;
    let rest = if rest.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rest.as_path()
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    let fd = rustix::fs::openat2(&root_fd, rest, flags, Mode::empty(), resolve).map_err(|e| {
        refuse(match e {
            rustix::io::Errno::LOOP => "its path goes through a symbolic link".into(),
            rustix::io::Errno::XDEV => "its path leads out of the allowed root".into(),
            rustix::io::Errno::NOENT => "it does not exist on this node".into(),
            rustix::io::Errno::NOTDIR => "it is not a directory".into(),
            rustix::io::Errno::NOSYS => "this kernel has no openat2 (Linux 5.6 or later)".into(),
            other => format!("cannot open it: {other}"),
        })
    })?;
    let opened = OpenedDir {
        fd,
        host: grant.host.clone(),
        guest: grant.guest.clone(),
        mode: grant.mode,
    };
    // Instances open it through /proc: make sure they can, now.
    if !opened.descriptor_path().is_dir() {
        return Err(refuse(
            "/proc/self/fd is not available to open it through".into(),
        ));
    }
    Ok(opened)
}

/// Whether the text of `path` lies beneath one of `roots` (absolute, no
/// `..`). A first, early refusal only: [`open_grant`] decides.
pub fn allowed_by_text(roots: &[PathBuf], path: &Path) -> Result<(), String> {
    let path = plain_absolute(path)?;
    if roots.iter().any(|root| beneath(root, &path).is_some()) {
        Ok(())
    } else {
        Err("the operator does not allow granting it".into())
    }
}

/// `p` without `.` components; refused when relative or when it has `..`.
fn plain_absolute(p: &Path) -> Result<PathBuf, String> {
    if !p.is_absolute() {
        return Err("it must be an absolute path".into());
    }
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => return Err("it must not contain `..`".into()),
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The part of `path` below `root` (as written, or as resolved), if it is
/// below it.
fn beneath(root: &Path, path: &Path) -> Option<PathBuf> {
    let written = plain_absolute(root).ok()?;
    if let Ok(rest) = path.strip_prefix(&written) {
        return Some(rest.to_path_buf());
    }
    let resolved = std::fs::canonicalize(root).ok()?;
    path.strip_prefix(resolved).ok().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(host: &Path) -> DirGrant {
        DirGrant {
            host: host.to_path_buf(),
            guest: "/d".into(),
            mode: DirMode::ReadWrite,
        }
    }

    #[test]
    fn links_anywhere_below_the_root_are_refused_and_the_open_keeps_the_directory() {
        let base = std::env::temp_dir().join(format!("grants-unit-{}", std::process::id()));
        let root = base.join("allowed");
        std::fs::create_dir_all(root.join("rw/sub")).unwrap();
        std::fs::create_dir_all(base.join("secret")).unwrap();
        std::fs::write(root.join("rw/sub/file"), "inside").unwrap();
        std::fs::write(base.join("secret/file"), "SECRET").unwrap();
        std::os::unix::fs::symlink("../..", root.join("rw/up")).unwrap();
        let roots = [root.clone()];
        for bad in ["rw/up", "rw/up/secret", "rw/up/allowed/rw"] {
            let e = open_grant(&roots, &grant(&root.join(bad))).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{bad}: {e}");
        }
        assert!(open_grant(&roots, &grant(&base.join("secret"))).is_err());
        assert!(open_grant(&roots, &grant(Path::new("relative"))).is_err());
        // Opened once: swapping the directory for a link afterwards does
        // not move what the descriptor opens.
        let opened = open_grant(&roots, &grant(&root.join("rw/sub"))).unwrap();
        std::fs::rename(root.join("rw/sub"), root.join("rw/sub-moved")).unwrap();
        std::os::unix::fs::symlink("../../secret", root.join("rw/sub")).unwrap();
        let through = std::fs::read_to_string(opened.descriptor_path().join("file")).unwrap();
        assert_eq!(through, "inside");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
