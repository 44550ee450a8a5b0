//! Putting a file at a name on the share only if nothing is there: the last step of a flush's
//! commit (see `flush/capture.rs`). A plain rename replaces whatever took the name since we
//! looked, and the version it replaces is lost; this one fails with
//! [`io::ErrorKind::AlreadyExists`] instead, and the flush keeps both.
//!
//! Who decides matters: a check made by the client from its own cache (the Linux CIFS
//! client's `RENAME_NOREPLACE`, or a stat before the rename) has a window in which another
//! machine's write is replaced. So, by what the share can do:
//! - **Exclusive rename** on a local disk: `renameat2(RENAME_NOREPLACE)` on Linux,
//!   `renamex_np(RENAME_EXCL)` on macOS's APFS and HFS+, decided by the file system itself;
//!   on Windows, on any share, `MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`, which the
//!   server decides (SMB2's rename with ReplaceIfExists false).
//! - **Link, then unlink** elsewhere: `link(from, to)` fails if `to` exists, and the server
//!   decides it (SMB2, NFS, SFTP's `hardlink@openssh.com`, NTFS). Then `from` is removed.
//! - **Checked**, where the share has neither (no hard links: SMB through rclone, FAT): a stat,
//!   then a rename. The window between the two is real; such a share is named "weak" in
//!   `status` and in the flush report (`NoReplace::Checked`).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// How a share puts a file at a name without replacing what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoReplace {
    /// `renameat2(RENAME_NOREPLACE)` (`renamex_np(RENAME_EXCL)` on macOS) by the file system
    /// itself; on Windows, `MoveFileExW` without replacing, by the server.
    ExclusiveRename,
    /// `link` then `unlink`, the server refusing a taken name.
    LinkThenUnlink,
    /// A stat, then a rename: a version written in between is replaced (weak).
    Checked,
}

/// What `status` and the flush report say about a weak share.
pub const WEAK_WARNING: &str = "this share has no hard links, so a flush can only check a name just before it writes there: a version someone writes on the share in that instant can be replaced (weak; see USER_GUIDE.md, \"One project, several places\")";

impl NoReplace {
    /// True where a version written by someone else at the very moment of a commit can be
    /// replaced: what `status` and the flush report call weak.
    pub fn is_weak(self) -> bool {
        self == NoReplace::Checked
    }
}

// 0: not learned yet.
const EXCLUSIVE: u8 = 1;
const LINK: u8 = 2;
const CHECKED: u8 = 3;

/// What a share folder was found to do, learned at its first use and kept.
#[derive(Debug, Default)]
pub struct NoReplaceMode(AtomicU8);

impl NoReplaceMode {
    /// The way known so far, or the one first tried on a share at `root`.
    pub fn get(&self, root: &Path) -> NoReplace {
        match self.0.load(Ordering::SeqCst) {
            EXCLUSIVE => NoReplace::ExclusiveRename,
            LINK => NoReplace::LinkThenUnlink,
            CHECKED => NoReplace::Checked,
            _ => {
                let first = first_way(root);
                self.set(first);
                first
            }
        }
    }

    /// The way learned so far, without asking the share anything.
    pub fn known(&self) -> Option<NoReplace> {
        match self.0.load(Ordering::SeqCst) {
            EXCLUSIVE => Some(NoReplace::ExclusiveRename),
            LINK => Some(NoReplace::LinkThenUnlink),
            CHECKED => Some(NoReplace::Checked),
            _ => None,
        }
    }

    fn set(&self, way: NoReplace) {
        let v = match way {
            NoReplace::ExclusiveRename => EXCLUSIVE,
            NoReplace::LinkThenUnlink => LINK,
            NoReplace::Checked => CHECKED,
        };
        self.0.store(v, Ordering::SeqCst);
    }

    /// Renames `from` to `to` unless something is at `to` (`AlreadyExists`). `root` is the
    /// share folder, for the first use.
    pub fn rename(&self, root: &Path, from: &Path, to: &Path) -> io::Result<()> {
        match self.get(root) {
            NoReplace::ExclusiveRename => match rename_exclusive(from, to) {
                // Not on this file system after all (an overlay, an old kernel).
                Err(e) if unsupported(&e) => {
                    self.set(NoReplace::LinkThenUnlink);
                    self.rename(root, from, to)
                }
                r => r,
            },
            NoReplace::LinkThenUnlink => match fs::hard_link(from, to) {
                Ok(()) => match remove_link(from, to) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
                Err(e) if unsupported(&e) => {
                    tracing::warn!(
                        share = %root.display(),
                        error = %e,
                        "the share has no hard links: a version written on it at the very moment of a flush can be replaced (weak)"
                    );
                    self.set(NoReplace::Checked);
                    self.rename(root, from, to)
                }
                // Some clients answer a link they cannot make with EIO (rclone's SMB client,
                // for a name the server refuses): a checked rename says what is wrong. If it
                // works where the link did not, the share has no usable hard links.
                Err(e) if is_io_error(&e) => {
                    let checked = checked_rename(from, to);
                    if checked.is_ok() {
                        tracing::warn!(
                            share = %root.display(),
                            error = %e,
                            "the share's hard links fail: a version written on it at the very moment of a flush can be replaced (weak)"
                        );
                        self.set(NoReplace::Checked);
                    }
                    checked
                }
                Err(e) => Err(e),
            },
            NoReplace::Checked => checked_rename(from, to),
        }
    }
}

/// Removes `from`, a second name of the file now also at `to`. Windows refuses to delete a
/// read-only file (POSIX does not mind): the attribute belongs to the file, so it is cleared
/// for the delete and set again, the file being at `to` alone by then. (WinFsp's
/// create_fileattr_test, ported in fs-windows/tests/wine, found a read-only file that could
/// never be flushed.)
#[cfg_attr(not(windows), allow(unused_variables))]
fn remove_link(from: &Path, to: &Path) -> io::Result<()> {
    match fs::remove_file(from) {
        #[cfg(windows)]
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mut perms = fs::metadata(from)?.permissions();
            if !perms.readonly() {
                return Err(e);
            }
            #[allow(clippy::permissions_set_readonly_false)] // Windows: the attribute only
            perms.set_readonly(false);
            fs::set_permissions(from, perms.clone())?;
            let removed = fs::remove_file(from);
            perms.set_readonly(true);
            fs::set_permissions(to, perms)?;
            removed
        }
        r => r,
    }
}

/// The weak way: a look, then a rename.
fn checked_rename(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

fn is_io_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    return e.raw_os_error() == Some(libc::EIO);
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// An error that says the way itself is not available here (not that the name is taken or
/// the share is away).
fn unsupported(e: &io::Error) -> bool {
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return matches!(
            code,
            libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM | libc::EXDEV
        ) || code == libc::ENOTSUP;
    }
    // Windows: ERROR_INVALID_FUNCTION, ERROR_NOT_SAME_DEVICE, ERROR_NOT_SUPPORTED (a volume
    // or share without hard links).
    #[cfg(windows)]
    if matches!(e.raw_os_error(), Some(1 | 17 | 50)) {
        return true;
    }
    e.kind() == io::ErrorKind::Unsupported
}

/// The first way to try on a share at `root`: an exclusive rename where the share is a local
/// file system that decides it itself; otherwise link, then unlink.
fn first_way(root: &Path) -> NoReplace {
    // Windows: `MoveFileExW` without replacing, which the server decides over SMB2 (a rename
    // with ReplaceIfExists false), on any volume, with or without hard links.
    if cfg!(windows)
        || (cfg!(any(target_os = "linux", target_os = "macos")) && is_local_file_system(root))
    {
        NoReplace::ExclusiveRename
    } else {
        NoReplace::LinkThenUnlink
    }
}

/// Whether `root` is on a file system that is not a network client or FUSE: its
/// `RENAME_NOREPLACE` is decided by the file system, not from a client's cache.
#[cfg(target_os = "linux")]
fn is_local_file_system(root: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const FUSE: i64 = 0x6573_5546;
    const NFS: i64 = 0x6969;
    const SMB: i64 = 0x517b;
    const SMB2: i64 = 0xfe53_4d42;
    const CIFS: i64 = 0xff53_4d42;
    const CODA: i64 = 0x7375_7245;
    const AFS: i64 = 0x5346_414f;
    const CEPH: i64 = 0x00c3_6400;
    let Ok(c) = std::ffi::CString::new(root.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statfs buffer the call fills.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between libcs
    let kind = st.f_type as i64;
    ![FUSE, NFS, SMB, SMB2, CIFS, CODA, AFS, CEPH].contains(&kind)
}

/// On macOS: a volume of this machine by statfs (APFS, HFS+), not a network client or FUSE.
/// APFS and HFS+ decide `RENAME_EXCL` themselves; a local volume that cannot (exFAT) says
/// `ENOTSUP`, and the next way is taken.
#[cfg(target_os = "macos")]
fn is_local_file_system(root: &Path) -> bool {
    crate::volume::statfs(root).is_ok_and(|v| v.kind() == crate::volume::VolumeKind::Local)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn is_local_file_system(_root: &Path) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn rename_exclusive(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let t = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid C strings; AT_FDCWD resolves them as paths.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(windows)]
fn rename_exclusive(from: &Path, to: &Path) -> io::Result<()> {
    crate::win_share::rename_exclusive(from, to)
}

/// `renamex_np(RENAME_EXCL)`: macOS's rename that fails with `EEXIST` rather than replace.
#[cfg(target_os = "macos")]
fn rename_exclusive(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let t = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid C strings.
    if unsafe { libc::renamex_np(f.as_ptr(), t.as_ptr(), libc::RENAME_EXCL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn rename_exclusive(_from: &Path, _to: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn each_way(check: impl Fn(&NoReplaceMode, &Path)) {
        for way in [
            NoReplace::ExclusiveRename,
            NoReplace::LinkThenUnlink,
            NoReplace::Checked,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mode = NoReplaceMode::default();
            mode.set(way);
            check(&mode, dir.path());
        }
    }

    #[test]
    fn a_free_name_is_taken_and_the_source_is_gone() {
        each_way(|mode, d| {
            fs::write(d.join("tmp"), "ours").unwrap();
            mode.rename(d, &d.join("tmp"), &d.join("name")).unwrap();
            assert_eq!(fs::read_to_string(d.join("name")).unwrap(), "ours");
            assert!(!d.join("tmp").exists());
        });
    }

    #[test]
    fn a_taken_name_is_never_replaced() {
        each_way(|mode, d| {
            fs::write(d.join("tmp"), "ours").unwrap();
            fs::write(d.join("name"), "theirs").unwrap();
            let e = mode.rename(d, &d.join("tmp"), &d.join("name")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            assert_eq!(fs::read_to_string(d.join("name")).unwrap(), "theirs");
            assert_eq!(fs::read_to_string(d.join("tmp")).unwrap(), "ours");
        });
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn a_local_disk_decides_it_itself() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            NoReplaceMode::default().get(dir.path()),
            NoReplace::ExclusiveRename
        );
    }
}
