//! wasmfabric patch: turns off the kernel's fault-around for a slot's
//! memory image.
//!
//! A read fault on a file-backed private mapping (the copy-on-write image of
//! a linear memory) makes Linux map up to 16 neighbouring page-cache pages
//! with it ("fault-around"). They stay mapped in the pool slot for every
//! later instance, and each present page costs the `PAGEMAP_SCAN` that
//! resets the slot a lookup of its `struct page` (is it still the file's
//! page?) after every instance. A CPython slot measured 1,203 such pages of
//! which most were never read. The kernel skips fault-around in a range
//! registered with userfaultfd for write protection (`mm/memory.c`,
//! `uffd_disable_fault_around`), so the image range is registered with a
//! process-wide userfaultfd in `WP` mode and nothing is ever
//! write-protected: no fault is ever delivered to the descriptor, faults
//! are handled as before, one page each.
//!
//! Where userfaultfd is not available (before Linux 5.11 for unprivileged
//! processes, before 5.19 for write protection of shmem, or a seccomp
//! filter that refuses it, as Docker's default one does) this does nothing
//! and fault-around stays on.
//!
//! What keeps this safe: nothing in the process ever write-protects a page
//! (no `UFFDIO_WRITEPROTECT`, no `PM_SCAN_WP_MATCHING`, and neither
//! `UFFD_FEATURE_WP_ASYNC` nor `UFFD_FEATURE_WP_UNPOPULATED` is asked for),
//! and this module is the only holder of the descriptor. A page with the
//! write-protect bit would block the thread that writes it, since no one
//! reads the descriptor; the slot reset in `pagemap.rs` does not rely on
//! the bit being clear (it does not filter on `WRITTEN`).

use rustix::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::LazyLock;

/// `UFFD_USER_MODE_ONLY`: faults from user space only, which unprivileged
/// processes may ask for.
const UFFD_USER_MODE_ONLY: libc::c_int = 1;
/// `UFFD_FEATURE_WP_HUGETLBFS_SHMEM`: write-protect registration of shmem
/// (memfd) mappings, which the images are.
const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u64 = 1 << 12;
const UFFD_API: u64 = 0xaa;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

/// The process's userfaultfd, when the kernel lets us have one with the
/// features registration needs.
static UFFD: LazyLock<Option<OwnedFd>> = LazyLock::new(|| {
    // SAFETY: a plain system call; the descriptor it returns is owned here.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_userfaultfd,
            libc::O_CLOEXEC | libc::O_NONBLOCK | UFFD_USER_MODE_ONLY,
        )
    };
    if fd < 0 {
        log::debug!("userfaultfd unavailable: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: `fd` was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
        ioctls: 0,
    };
    // SAFETY: `api` is the structure this ioctl reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api) };
    if rc != 0 || api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM == 0 {
        log::debug!("userfaultfd lacks write-protect for shmem: fault-around stays on");
        return None;
    }
    Some(fd)
});

/// Stops fault-around in `[ptr, ptr + len)`, a freshly mapped image.
/// Best effort: on failure the range behaves as before.
pub fn disable_fault_around(ptr: *mut u8, len: usize) {
    let Some(fd) = UFFD.as_ref() else { return };
    let mut register = UffdioRegister {
        start: ptr as u64,
        len: len as u64,
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: `register` is the structure this ioctl reads and writes;
    // registration changes no page's contents or protection.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER, &mut register) };
    if rc != 0 {
        log::debug!("userfaultfd register: {}", std::io::Error::last_os_error());
    }
}
