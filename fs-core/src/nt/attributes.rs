//! FILE_ATTRIBUTE_* bits, from what the engine keeps.
//!
//! The engine keeps a Unix mode, not Windows attributes: READONLY is the mode without write
//! bits (and setting it clears them, which a flush writes back as a mode where the share takes
//! one); HIDDEN is a name starting with a dot (Samba's rule for the same files); ARCHIVE is
//! on for every file, as Windows sets it on any change. Other bits a program sets are not kept.

use crate::backing::EntryKind;
use crate::engine::Attr;

pub const READONLY: u32 = 0x1;
pub const HIDDEN: u32 = 0x2;
pub const SYSTEM: u32 = 0x4;
pub const DIRECTORY: u32 = 0x10;
pub const ARCHIVE: u32 = 0x20;
pub const NORMAL: u32 = 0x80;
/// "No change" in a request to set attributes.
pub const INVALID: u32 = u32::MAX;

/// The attributes Windows is shown for an entry named `name`.
pub fn of(attr: &Attr, name: &str) -> u32 {
    let mut a = match attr.kind {
        EntryKind::Dir => DIRECTORY,
        _ => ARCHIVE,
    };
    if attr.kind != EntryKind::Dir && attr.mode & 0o222 == 0 {
        a |= READONLY;
    }
    if name.starts_with('.') {
        a |= HIDDEN;
    }
    a
}

/// The mode that gives `requested` attributes, or `None` when the mode stays as it is.
pub fn mode_for(mode: u32, kind: EntryKind, requested: u32) -> Option<u32> {
    if requested == INVALID || kind == EntryKind::Dir {
        return None;
    }
    let readonly = mode & 0o222 == 0;
    match (requested & READONLY != 0, readonly) {
        (true, false) => Some(mode & !0o222),
        (false, true) => Some(mode | 0o200),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: EntryKind, mode: u32) -> Attr {
        Attr {
            ino: 2,
            kind,
            size: 0,
            mtime_ns: 0,
            atime_ns: 0,
            ctime_ns: 0,
            mode,
            nlink: 1,
            owner: None,
            rdev: 0,
        }
    }

    #[test]
    fn readonly_hidden_archive_and_directory() {
        assert_eq!(of(&attr(EntryKind::File, 0o644), "a.csv"), ARCHIVE);
        assert_eq!(
            of(&attr(EntryKind::File, 0o444), "a.csv"),
            ARCHIVE | READONLY
        );
        assert_eq!(
            of(&attr(EntryKind::Dir, 0o555), ".snapshots"),
            DIRECTORY | HIDDEN
        );
        assert_eq!(of(&attr(EntryKind::File, 0o600), ".env"), ARCHIVE | HIDDEN);
    }

    #[test]
    fn setting_readonly_changes_only_the_write_bits() {
        assert_eq!(
            mode_for(0o664, EntryKind::File, READONLY | ARCHIVE),
            Some(0o444)
        );
        assert_eq!(mode_for(0o444, EntryKind::File, ARCHIVE), Some(0o644));
        assert_eq!(mode_for(0o644, EntryKind::File, ARCHIVE | HIDDEN), None);
        assert_eq!(mode_for(0o644, EntryKind::File, INVALID), None);
        assert_eq!(mode_for(0o755, EntryKind::Dir, READONLY), None);
    }
}
