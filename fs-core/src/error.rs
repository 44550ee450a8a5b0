//! Errors of the engine, and the classification of share errors into reasons a user can act on.

use std::io;

use serde::{Deserialize, Serialize};

use crate::relpath::RelPath;

/// An error from a namespace or file operation, as an adapter will report it to a program.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{0}: no such file or directory")]
    NotFound(RelPath),
    #[error("{0}: already exists")]
    Exists(RelPath),
    #[error("{0}: not a directory")]
    NotDir(RelPath),
    #[error("{0}: is a directory")]
    IsDir(RelPath),
    #[error("{0}: directory not empty")]
    NotEmpty(RelPath),
    #[error("invalid name {0:?}")]
    InvalidName(String),
    #[error("name too long: {0:?}...")]
    NameTooLong(String),
    #[error("{0}: a directory cannot be moved into itself")]
    MoveIntoSelf(RelPath),
    #[error("{0} is not supported")]
    NotSupported(&'static str),
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("{0}: no extended attribute {1:?}")]
    NoAttribute(RelPath, String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("unknown inode {0}")]
    StaleInode(u64),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path}: local cache: {source}")]
    Cache {
        path: RelPath,
        #[source]
        source: io::Error,
    },
    #[error("{path}: share: {reason}: {source}")]
    Share {
        path: RelPath,
        reason: Reason,
        #[source]
        source: io::Error,
    },
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
}

/// "No such attribute": `ENODATA` on Linux, `ENOATTR` on macOS and the BSDs.
#[cfg(target_os = "linux")]
const NO_ATTRIBUTE: i32 = libc::ENODATA;
#[cfg(all(unix, not(target_os = "linux")))]
const NO_ATTRIBUTE: i32 = libc::ENOATTR;
#[cfg(not(unix))]
const NO_ATTRIBUTE: i32 = 61;

impl FsError {
    pub fn cache(path: &RelPath, source: io::Error) -> Self {
        FsError::Cache {
            path: path.clone(),
            source,
        }
    }

    pub fn share(path: &RelPath, source: io::Error) -> Self {
        FsError::Share {
            path: path.clone(),
            reason: Reason::classify(&source),
            source,
        }
    }

    /// The POSIX errno an adapter returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound(_) => libc::ENOENT,
            FsError::Exists(_) => libc::EEXIST,
            FsError::NotDir(_) => libc::ENOTDIR,
            FsError::IsDir(_) => libc::EISDIR,
            FsError::NotEmpty(_) => libc::ENOTEMPTY,
            FsError::NameTooLong(_) => libc::ENAMETOOLONG,
            FsError::InvalidName(_) | FsError::MoveIntoSelf(_) | FsError::InvalidArgument(_) => {
                libc::EINVAL
            }
            FsError::NotSupported(_) => libc::ENOTSUP,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::NoAttribute(..) => NO_ATTRIBUTE,
            FsError::OutOfRange(_) => libc::ERANGE,
            FsError::StaleInode(_) => STALE,
            // Local cache errors keep their own code: ENOSPC must reach the program as ENOSPC.
            FsError::Cache { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            FsError::Share { reason, .. } => match reason {
                Reason::PermissionDenied => libc::EACCES,
                Reason::NoSpace => libc::ENOSPC,
                Reason::TimedOut => libc::ETIMEDOUT,
                _ => libc::EIO,
            },
            // The journal's disk is the cache's: a full disk is ENOSPC to programs, as on any disk.
            FsError::Journal(JournalError::Sqlite(e))
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                libc::ENOSPC
            }
            FsError::Journal(JournalError::Io { source, .. }) => {
                source.raw_os_error().unwrap_or(libc::EIO)
            }
            FsError::Journal(_) => libc::EIO,
        }
    }
}

/// Errors of the crash-safe journal store.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cache at {0} is in use by another sipfs process")]
    InUse(std::path::PathBuf),
    #[error("the cache at {cache} belongs to share {recorded}, not {requested}")]
    OtherBacking {
        cache: std::path::PathBuf,
        recorded: String,
        requested: String,
    },
}

/// Why a change could not be written to the share. Shown to users next to the path,
/// with advice on what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Unreachable,
    TimedOut,
    PermissionDenied,
    Locked,
    NameNotAllowed,
    NoSpace,
    Conflict,
    NotEmpty,
    Waiting,
    Other,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

impl Reason {
    /// Maps an I/O error from the share to a reason. Transient reasons are retried.
    pub fn classify(err: &io::Error) -> Reason {
        if let Some(code) = err.raw_os_error() {
            if let Some(r) = classify_os(code) {
                return r;
            }
        }
        match err.kind() {
            io::ErrorKind::PermissionDenied => Reason::PermissionDenied,
            io::ErrorKind::TimedOut => Reason::TimedOut,
            io::ErrorKind::NotConnected
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown => Reason::Unreachable,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Reason::NoSpace,
            io::ErrorKind::InvalidFilename => Reason::NameNotAllowed,
            io::ErrorKind::DirectoryNotEmpty => Reason::NotEmpty,
            _ => Reason::Other,
        }
    }

    /// Transient reasons are worth retrying within a flush and in the background.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Reason::Unreachable | Reason::TimedOut | Reason::Locked
        )
    }

    pub fn describe(self) -> &'static str {
        match self {
            Reason::Unreachable => "the share cannot be reached",
            Reason::TimedOut => "the share did not answer in time",
            Reason::PermissionDenied => "permission denied on the share",
            Reason::Locked => "the file is locked or in use on the share",
            Reason::NameNotAllowed => "the share does not allow this name",
            Reason::NoSpace => "the share is full",
            Reason::Conflict => "changed on the share and here",
            Reason::NotEmpty => "the directory on the share still holds other files",
            Reason::Waiting => "waits for an earlier change that could not be written",
            Reason::Other => "the share refused the change",
        }
    }

    /// What the user can do about it, naming the file.
    pub fn advice_for(self, name: &str) -> String {
        match self {
            Reason::Locked | Reason::PermissionDenied => format!(
                "close {name} in any program that has it open on the share (Excel locks open workbooks) and check that you may write there, then run `sipfs flush` again"
            ),
            Reason::NameNotAllowed => format!(
                "rename {name} (Windows shares refuse names such as CON, aux.txt, names with : * ? \" < > | or a trailing dot or space), then run `sipfs flush` again"
            ),
            _ => self.advice().to_owned(),
        }
    }

    /// What the user can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Reason::Unreachable | Reason::TimedOut => {
                "check the network connection to the share, then run `sipfs flush` again"
            }
            Reason::PermissionDenied | Reason::Locked => {
                "close the file in any program that has it open on the share (Excel keeps workbooks locked) and check you may write there, then run `sipfs flush` again"
            }
            Reason::NameNotAllowed => {
                "rename the file (Windows shares refuse names such as CON, aux.txt, names with : or a trailing dot or space), then run `sipfs flush` again"
            }
            Reason::NoSpace => "free space on the share, then run `sipfs flush` again",
            Reason::Conflict => "compare the two versions and keep the right one",
            Reason::NotEmpty => {
                "remove what remains in the directory on the share, then run `sipfs flush` again"
            }
            Reason::Waiting => "fix the change it waits for; it is written right after",
            Reason::Other => "see the message, fix the cause, then run `sipfs flush` again",
        }
    }
}

/// An inode that no longer exists. Windows' C runtime has no ESTALE; its adapter maps errors
/// to NTSTATUS codes of its own, and the nearest errno there is "no such file".
#[cfg(unix)]
const STALE: i32 = libc::ESTALE;
#[cfg(not(unix))]
const STALE: i32 = libc::ENOENT;

#[cfg(unix)]
fn classify_os(code: i32) -> Option<Reason> {
    Some(match code {
        libc::EACCES | libc::EPERM | libc::EROFS => Reason::PermissionDenied,
        libc::EBUSY | libc::ETXTBSY => Reason::Locked,
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG => Reason::NoSpace,
        libc::ETIMEDOUT => Reason::TimedOut,
        libc::ENOTCONN
        | libc::ECONNREFUSED
        | libc::ECONNRESET
        | libc::ECONNABORTED
        | libc::EHOSTUNREACH
        | libc::ENETUNREACH
        | libc::ENETDOWN
        | libc::ESHUTDOWN
        | libc::ENODEV
        | libc::ENXIO
        | libc::EIO
        | libc::ESTALE => Reason::Unreachable,
        libc::EINVAL | libc::ENAMETOOLONG | libc::EILSEQ => Reason::NameNotAllowed,
        libc::ENOTEMPTY => Reason::NotEmpty,
        _ => return None,
    })
}

#[cfg(windows)]
fn classify_os(code: i32) -> Option<Reason> {
    // Win32 error codes as std reports them for SMB shares.
    Some(match code {
        5 | 19 => Reason::PermissionDenied, // ACCESS_DENIED, WRITE_PROTECT
        32 | 33 => Reason::Locked,          // SHARING_VIOLATION, LOCK_VIOLATION
        112 | 39 => Reason::NoSpace,        // DISK_FULL, HANDLE_DISK_FULL
        121 | 1460 => Reason::TimedOut,     // SEM_TIMEOUT, TIMEOUT
        53 | 59 | 64 | 67 | 1231 | 1222 => Reason::Unreachable, // BAD_NETPATH, UNEXP_NET_ERR, NETNAME_DELETED, BAD_NET_NAME, NETWORK_UNREACHABLE, NO_NETWORK
        123 | 161 | 206 => Reason::NameNotAllowed, // INVALID_NAME, BAD_PATHNAME, FILENAME_EXCED_RANGE
        145 => Reason::NotEmpty,                   // DIR_NOT_EMPTY
        _ => return None,
    })
}

#[cfg(not(any(unix, windows)))]
fn classify_os(_code: i32) -> Option<Reason> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_share_errors() {
        let e = |c| io::Error::from_raw_os_error(c);
        assert_eq!(Reason::classify(&e(libc::EACCES)), Reason::PermissionDenied);
        assert_eq!(Reason::classify(&e(libc::ENOTCONN)), Reason::Unreachable);
        assert_eq!(Reason::classify(&e(libc::ENOSPC)), Reason::NoSpace);
        assert_eq!(Reason::classify(&e(libc::EBUSY)), Reason::Locked);
        assert_eq!(Reason::classify(&e(libc::EINVAL)), Reason::NameNotAllowed);
        assert_eq!(
            Reason::classify(&io::Error::new(io::ErrorKind::TimedOut, "x")),
            Reason::TimedOut
        );
        assert!(Reason::Unreachable.is_transient());
        assert!(!Reason::PermissionDenied.is_transient());
    }

    #[test]
    fn cache_errors_keep_their_errno() {
        let err = FsError::cache(&RelPath::root(), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(err.errno(), libc::ENOSPC);
    }
}
