//! What differs between Linux's FUSE and macFUSE in the requests themselves, one function
//! per difference, so that `fs.rs` reads the same on both: rename flags (`renameat2`'s on
//! Linux, `renamex_np`'s on macOS) and space reservation (`fallocate` on Linux,
//! `F_PREALLOCATE` on macOS).

use fuser::RenameFlags;

/// Whether a rename's flags ask that it not replace; `None` for what sipfs does not do
/// (exchanging two names, whiteouts).
#[cfg(target_os = "linux")]
pub(crate) fn no_replace(flags: RenameFlags) -> Option<bool> {
    if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
        return None;
    }
    Some(flags.contains(RenameFlags::RENAME_NOREPLACE))
}

/// macOS's `renamex_np` flags, which fuser passes on as they come: `RENAME_EXCL` is the
/// rename that does not replace; `RENAME_SWAP` and the rest are not done.
#[cfg(not(target_os = "linux"))]
pub(crate) fn no_replace(flags: RenameFlags) -> Option<bool> {
    #[cfg(target_os = "macos")]
    const EXCL: u32 = libc::RENAME_EXCL;
    #[cfg(not(target_os = "macos"))]
    const EXCL: u32 = 0;
    match flags.bits() {
        0 => Some(false),
        b if EXCL != 0 && b == EXCL => Some(true),
        _ => None,
    }
}

/// `fallocate(2)` on the cache copy, as the program asked.
#[cfg(target_os = "linux")]
pub(crate) fn allocate(
    file: &std::fs::File,
    offset: u64,
    length: u64,
    mode: i32,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as the handle is.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            mode,
            offset as libc::off_t,
            length as libc::off_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// macFUSE forwards a program's `F_PREALLOCATE` (asked for with `FUSE_ALLOCATE`): space is
/// reserved on the cache copy the same way, and the size stays, as `F_PREALLOCATE` leaves it.
#[cfg(target_os = "macos")]
pub(crate) fn allocate(
    file: &std::fs::File,
    offset: u64,
    length: u64,
    _mode: i32,
) -> std::io::Result<()> {
    fs_core::sys::preallocate(file, offset, length)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn allocate(
    _file: &std::fs::File,
    _offset: u64,
    _length: u64,
    _mode: i32,
) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}
