//! The few calls whose macOS form differs from Linux's, behind one name each, so that the
//! engine and the adapters do not repeat the target tests:
//! - [`clone_to`]: a copy that costs nothing where both ends are on one APFS volume
//!   (`fclonefileat`); elsewhere it says [`io::ErrorKind::Unsupported`] and the caller copies;
//! - [`preallocate`]: space reserved for a file, `F_PREALLOCATE` (Linux's `fallocate` is
//!   called by the FUSE adapter itself, with the program's own mode).
//!
//! Durability needs nothing here: std's `sync_all` and `sync_data` are `fcntl(F_FULLFSYNC)` on
//! macOS, which (unlike a plain `fsync` there) flushes the drive's own cache too.

use std::fs::File;
use std::io;
use std::path::Path;

/// Makes `dest` (which must not exist) a clone of `src`: same content, sharing the disk
/// blocks until either is written. `Unsupported` where the OS or the volumes cannot (another
/// volume, a network share, not macOS): the caller then copies.
#[cfg(target_os = "macos")]
pub fn clone_to(src: &File, dest: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let d = std::ffi::CString::new(dest.as_os_str().as_bytes())?;
    // SAFETY: a valid descriptor and C string; AT_FDCWD resolves dest as a path.
    if unsafe { libc::fclonefileat(src.as_raw_fd(), libc::AT_FDCWD, d.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // Another volume, a file system without clones (HFS+, smbfs), or none allowed here.
        Some(libc::EXDEV | libc::ENOTSUP | libc::EINVAL | libc::ENOSYS | libc::EPERM) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, e))
        }
        _ => Err(e),
    }
}

#[cfg(not(target_os = "macos"))]
pub fn clone_to(_src: &File, _dest: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Reserves room for `file` up to `offset + length` without changing its size
/// (`F_PREALLOCATE`): all of it, contiguous if the volume can, else in pieces.
#[cfg(target_os = "macos")]
pub fn preallocate(file: &File, offset: u64, length: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let end = offset
        .checked_add(length)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
    // F_PREALLOCATE counts from the end of the file's allocation (F_PEOFPOSMODE) rather than
    // from an offset: what lies below the end of the file is allocated already, or a hole
    // that the write filling it allocates.
    let more = end.saturating_sub(file.metadata()?.len());
    if more == 0 {
        return Ok(());
    }
    let mut store = libc::fstore_t {
        fst_flags: libc::F_ALLOCATECONTIG | libc::F_ALLOCATEALL,
        fst_posmode: libc::F_PEOFPOSMODE,
        fst_offset: 0,
        fst_length: libc::off_t::try_from(more)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?,
        fst_bytesalloc: 0,
    };
    let fd = file.as_raw_fd();
    // SAFETY: a valid descriptor and a filled fstore_t the call may update.
    if unsafe { libc::fcntl(fd, libc::F_PREALLOCATE, &mut store) } == 0 {
        return Ok(());
    }
    store.fst_flags = libc::F_ALLOCATEALL;
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_PREALLOCATE, &mut store) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
