//! What a share on Windows can do in one call that elsewhere takes two: a rename that never
//! replaces (`MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`, refused by the server over
//! SMB2 when the name is taken) and a capture made through one handle (issue 27, item 2).
//!
//! Type-checked for msvc and built for gnu on Linux; the gnu build runs under Wine in the
//! Windows tests (`tests/tests/windows.rs`), whose flushes go through both.

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use windows_sys::Win32::Storage::FileSystem::{
    FileRenameInfo, MoveFileExW, SetFileInformationByHandle, DELETE, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_READ_ATTRIBUTES, FILE_RENAME_INFO, FILE_SHARE_READ,
};

use crate::backing::Stat;

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// Renames `from` to `to` unless something is at `to` (`AlreadyExists`), decided by the file
/// system or the server.
pub(crate) fn rename_exclusive(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (wide(from.as_os_str()), wide(to.as_os_str()));
    // SAFETY: two NUL-terminated wide strings that live across the call.
    if unsafe { MoveFileExW(f.as_ptr(), t.as_ptr(), 0) } != 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the file at `target` to the new name `cap` and returns its stat (`None`: nothing was
/// there). The file is opened with DELETE access and shared for reading only, so that from the
/// moment it is checked to the moment it is renamed nobody can open it to write or delete it;
/// the stat and the rename go through that handle, so they concern the same file. A program
/// holding the file open without sharing (Excel with a workbook) makes the open fail with a
/// sharing violation, which a flush reports as "locked" and keeps pending.
pub(crate) fn capture(target: &Path, cap: &Path) -> io::Result<Option<Stat>> {
    let file = match OpenOptions::new()
        .access_mode(DELETE | FILE_READ_ATTRIBUTES)
        .share_mode(FILE_SHARE_READ)
        // A folder or a link at the name moves as itself, not what it points to.
        .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT)
        .open(target)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = Stat::from_metadata(&file.metadata()?);
    rename_handle(&file, cap)?;
    Ok(Some(st))
}

/// `SetFileInformationByHandle(FileRenameInfo)`: renames the open file, never over a taken
/// name.
fn rename_handle(file: &std::fs::File, to: &Path) -> io::Result<()> {
    let name: Vec<u16> = to.as_os_str().encode_wide().collect();
    let name_bytes = name.len() * 2;
    // The struct ends in a one-element array the name runs on from; a buffer of u64s keeps it
    // aligned for the handle inside.
    let size = std::mem::size_of::<FILE_RENAME_INFO>() + name_bytes;
    let mut buf = vec![0u64; size.div_ceil(8)];
    let info = buf.as_mut_ptr().cast::<FILE_RENAME_INFO>();
    // SAFETY: `buf` is zeroed, aligned for FILE_RENAME_INFO and holds it plus the name (and a
    // NUL, from the array's own element); fields are written through the raw pointer.
    unsafe {
        (*info).Anonymous.ReplaceIfExists = false;
        (*info).RootDirectory = std::ptr::null_mut();
        (*info).FileNameLength = name_bytes as u32;
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::addr_of_mut!((*info).FileName).cast::<u16>(),
            name.len(),
        );
    }
    // SAFETY: a valid handle and the buffer above, with its size.
    let ok = unsafe {
        SetFileInformationByHandle(
            file.as_raw_handle(),
            FileRenameInfo,
            info.cast(),
            (buf.len() * 8) as u32,
        )
    };
    if ok != 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
