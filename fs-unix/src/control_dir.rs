//! The `.sipfs/` directory at the root of a mount: `control` (write `flush [LABEL]` or
//! `refresh`) and `status` (read JSON). It is not listed in directory listings, so copies and
//! snapshots of the project never pick it up, but it can be opened by name.

use fs_core::{Attr, EntryKind};

/// Inode numbers far above anything the engine hands out.
pub const DIR_INO: u64 = u64::MAX - 16;
pub const CONTROL_INO: u64 = DIR_INO + 1;
pub const STATUS_INO: u64 = DIR_INO + 2;
/// `.metadata_never_index` at the root, macOS only: an empty file Spotlight looks for at a
/// volume's root before it indexes it. The mount is the share's project, which the Mac has no
/// business indexing (every file would be read, and fetched, for it); the file is sipfs's own
/// and never reaches the share.
pub const NEVER_INDEX_INO: u64 = DIR_INO + 3;
pub const NEVER_INDEX: &str = ".metadata_never_index";

pub fn is_control(ino: u64) -> bool {
    (DIR_INO..=NEVER_INDEX_INO).contains(&ino)
}

/// What a name at the root is, when it is one of sipfs's own.
pub fn lookup_at_root(name: &str) -> Option<u64> {
    match name {
        fs_core::ignore_rules::CONTROL_DIR => Some(DIR_INO),
        NEVER_INDEX if cfg!(target_os = "macos") => Some(NEVER_INDEX_INO),
        _ => None,
    }
}

pub fn attr(ino: u64, mtime_ns: i64) -> Option<Attr> {
    let (kind, mode) = match ino {
        DIR_INO => (EntryKind::Dir, 0o755),
        // Writable by everyone: a step in a container may run as any user.
        CONTROL_INO => (EntryKind::File, 0o666),
        STATUS_INO | NEVER_INDEX_INO => (EntryKind::File, 0o444),
        _ => return None,
    };
    Some(Attr {
        ino,
        kind,
        size: 0,
        mtime_ns,
        atime_ns: mtime_ns,
        ctime_ns: mtime_ns,
        mode,
        nlink: if kind == EntryKind::Dir { 2 } else { 1 },
        owner: None,
        rdev: 0,
    })
}

pub fn lookup(name: &str) -> Option<u64> {
    match name {
        fs_core::control::CONTROL_FILE => Some(CONTROL_INO),
        fs_core::control::STATUS_FILE => Some(STATUS_INO),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipfs_names_at_the_root() {
        assert_eq!(lookup_at_root(".sipfs"), Some(DIR_INO));
        assert_eq!(lookup_at_root("data.csv"), None);
        // Spotlight's opt-out is served on macOS only; elsewhere the name is the project's.
        assert_eq!(
            lookup_at_root(NEVER_INDEX),
            cfg!(target_os = "macos").then_some(NEVER_INDEX_INO)
        );
        let a = attr(NEVER_INDEX_INO, 0).unwrap();
        assert_eq!((a.kind, a.size, a.mode), (EntryKind::File, 0, 0o444));
        assert!(is_control(NEVER_INDEX_INO) && !is_control(DIR_INO - 1));
    }
}
