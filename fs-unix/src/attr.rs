//! Engine attributes as FUSE wants them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fs_core::{Attr, EntryKind};
use fuser::{FileAttr, FileType, INodeNo};

pub fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

pub fn ns_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

pub fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
    }
}

/// The owner an entry shows when the engine recorded none for it: the user who mounted.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

pub fn file_attr(a: &Attr, owner: Owner) -> FileAttr {
    let t = system_time(a.mtime_ns);
    let at = system_time(a.atime_ns);
    let ct = system_time(a.ctime_ns);
    let (uid, gid) = crate::owners::shown(a, owner);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: at,
        mtime: t,
        ctime: ct,
        crtime: t,
        kind: file_type(a.kind),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid,
        gid,
        // The kernel's encoding, as mknod passed it (the same as `dev_t` for majors below 4096).
        rdev: a.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

/// The reply to a LOOKUP of a name that does not exist, cached by the kernel for the entry's
/// time to live: inode 0 means "no such entry".
pub fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}
