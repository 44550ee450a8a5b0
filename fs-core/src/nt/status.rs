//! NTSTATUS codes, and the one an engine error becomes for a Windows program.

use std::io;

use crate::error::{FsError, JournalError, Reason};

/// An NTSTATUS value, as Windows and WinFsp take it.
pub type NtStatus = i32;

// The codes are Windows' own (ntstatus.h); written out so that these rules build and are
// tested on every platform.
pub const STATUS_SUCCESS: NtStatus = 0;
// Errors have the severity bits set: negative as an i32.
const _: () = assert!(STATUS_ACCESS_DENIED < 0);
pub const STATUS_INVALID_DEVICE_REQUEST: NtStatus = 0xC000_0010_u32 as i32;
pub const STATUS_INVALID_PARAMETER: NtStatus = 0xC000_000D_u32 as i32;
pub const STATUS_END_OF_FILE: NtStatus = 0xC000_0011_u32 as i32;
pub const STATUS_ACCESS_DENIED: NtStatus = 0xC000_0022_u32 as i32;
pub const STATUS_OBJECT_NAME_INVALID: NtStatus = 0xC000_0033_u32 as i32;
pub const STATUS_OBJECT_NAME_NOT_FOUND: NtStatus = 0xC000_0034_u32 as i32;
pub const STATUS_OBJECT_NAME_COLLISION: NtStatus = 0xC000_0035_u32 as i32;
pub const STATUS_OBJECT_PATH_NOT_FOUND: NtStatus = 0xC000_003A_u32 as i32;
pub const STATUS_DISK_FULL: NtStatus = 0xC000_007F_u32 as i32;
pub const STATUS_FILE_IS_A_DIRECTORY: NtStatus = 0xC000_00BA_u32 as i32;
pub const STATUS_NOT_SUPPORTED: NtStatus = 0xC000_00BB_u32 as i32;
pub const STATUS_IO_TIMEOUT: NtStatus = 0xC000_00B5_u32 as i32;
pub const STATUS_UNEXPECTED_NETWORK_ERROR: NtStatus = 0xC000_00C4_u32 as i32;
pub const STATUS_DIRECTORY_NOT_EMPTY: NtStatus = 0xC000_0101_u32 as i32;
pub const STATUS_NOT_A_DIRECTORY: NtStatus = 0xC000_0103_u32 as i32;
pub const STATUS_NAME_TOO_LONG: NtStatus = 0xC000_0106_u32 as i32;
pub const STATUS_CANNOT_DELETE: NtStatus = 0xC000_0121_u32 as i32;
pub const STATUS_FILE_DELETED: NtStatus = 0xC000_0123_u32 as i32;
pub const STATUS_IO_DEVICE_ERROR: NtStatus = 0xC000_0185_u32 as i32;

/// What a Windows program is told for an engine error. Share errors while fetching say what
/// Windows says of a network drive that went away; a full cache disk is a full disk.
pub fn of_error(e: &FsError) -> NtStatus {
    match e {
        FsError::NotFound(_) => STATUS_OBJECT_NAME_NOT_FOUND,
        FsError::Exists(_) => STATUS_OBJECT_NAME_COLLISION,
        FsError::NotDir(_) => STATUS_NOT_A_DIRECTORY,
        FsError::IsDir(_) => STATUS_FILE_IS_A_DIRECTORY,
        FsError::NotEmpty(_) => STATUS_DIRECTORY_NOT_EMPTY,
        FsError::NameTooLong(_) => STATUS_NAME_TOO_LONG,
        FsError::InvalidName(_) => STATUS_OBJECT_NAME_INVALID,
        FsError::MoveIntoSelf(_) | FsError::InvalidArgument(_) => STATUS_INVALID_PARAMETER,
        FsError::NotSupported(_) => STATUS_NOT_SUPPORTED,
        FsError::NotPermitted(_) => STATUS_ACCESS_DENIED,
        FsError::NoAttribute(..) => STATUS_OBJECT_NAME_NOT_FOUND,
        FsError::OutOfRange(_) => STATUS_INVALID_PARAMETER,
        FsError::StaleInode(_) => STATUS_FILE_DELETED,
        FsError::Cache { source, .. } => of_io(source),
        FsError::Share { reason, .. } => match reason {
            Reason::PermissionDenied => STATUS_ACCESS_DENIED,
            Reason::NoSpace => STATUS_DISK_FULL,
            Reason::TimedOut => STATUS_IO_TIMEOUT,
            _ => STATUS_UNEXPECTED_NETWORK_ERROR,
        },
        FsError::Journal(JournalError::Sqlite(e))
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
        {
            STATUS_DISK_FULL
        }
        FsError::Journal(JournalError::Io { source, .. }) => of_io(source),
        FsError::Journal(_) => STATUS_IO_DEVICE_ERROR,
    }
}

fn of_io(e: &io::Error) -> NtStatus {
    match e.kind() {
        io::ErrorKind::StorageFull => STATUS_DISK_FULL,
        io::ErrorKind::PermissionDenied => STATUS_ACCESS_DENIED,
        io::ErrorKind::NotFound => STATUS_OBJECT_NAME_NOT_FOUND,
        _ => STATUS_IO_DEVICE_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RelPath;

    #[test]
    fn engine_errors_become_what_windows_programs_expect() {
        let p = RelPath::new("a/b").unwrap();
        assert_eq!(
            of_error(&FsError::NotFound(p.clone())),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(
            of_error(&FsError::NotEmpty(p.clone())),
            STATUS_DIRECTORY_NOT_EMPTY
        );
        assert_eq!(
            of_error(&FsError::Exists(p.clone())),
            STATUS_OBJECT_NAME_COLLISION
        );
        let full = io::Error::new(io::ErrorKind::StorageFull, "full");
        assert_eq!(of_error(&FsError::cache(&p, full)), STATUS_DISK_FULL);
        let gone = io::Error::from_raw_os_error(if cfg!(windows) { 53 } else { libc::ENOTCONN });
        assert_eq!(
            of_error(&FsError::share(&p, gone)),
            STATUS_UNEXPECTED_NETWORK_ERROR
        );
    }
}
