//! The `.sipfs/` directory at the root of a mount: `control` (write `flush [LABEL]` or
//! `refresh`) and `status` (read JSON). It is not listed in directory listings, so copies and
//! snapshots of the project never pick it up, but it can be opened by name.

use fs_core::{Attr, EntryKind};

/// Inode numbers far above anything the engine hands out.
pub const DIR_INO: u64 = u64::MAX - 16;
pub const CONTROL_INO: u64 = DIR_INO + 1;
pub const STATUS_INO: u64 = DIR_INO + 2;

pub fn is_control(ino: u64) -> bool {
    (DIR_INO..=STATUS_INO).contains(&ino)
}

pub fn attr(ino: u64, mtime_ns: i64) -> Option<Attr> {
    let (kind, mode) = match ino {
        DIR_INO => (EntryKind::Dir, 0o755),
        // Writable by everyone: a step in a container may run as any user.
        CONTROL_INO => (EntryKind::File, 0o666),
        STATUS_INO => (EntryKind::File, 0o444),
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
