//! What a mirror folder entry looked like when the engine last accounted for it, and the exact
//! test of whether it changed since.
//!
//! Change detection compares the entry's size, modification time, file id (device and inode;
//! volume serial and file index on Windows) and, on Unix, its inode change time — which no
//! program can set back, so a rewrite that restores the old mtime is still seen. Nothing is
//! compared with the clock: files written in a container with a skewed clock, or given an old
//! mtime on purpose, are judged by their own metadata only.
//!
//! One case metadata cannot settle: a file changed twice within one tick of the file system's
//! timestamps, with the stamp taken between the two writes. As git does with its index, a stamp
//! taken less than [`RACY_NS`] after the file last changed is "racy": it carries a hash of the
//! content, and the next comparison hashes the file again.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::backing::{self, EntryKind};

/// How long after its last change a file's stamp is not trusted on metadata alone. Covers
/// coarse timestamps (FAT's 2 s, network file shares, Docker Desktop's file sharing).
pub const RACY_NS: i64 = 3_000_000_000;

/// How a stamp decides that unchanged metadata means unchanged content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Metadata alone decides.
    Meta,
    /// Racy: the content must still hash to this.
    Hash(u64),
    /// The file changed while it was stamped: always taken for changed.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    /// Unix: the inode change time. 0 where there is none to read.
    pub ctime_ns: i64,
    pub file_id: (u64, u64),
    pub check: Check,
}

impl Stamp {
    /// The metadata part of a stamp, from `lstat`-like metadata.
    pub(super) fn of_metadata(md: &fs::Metadata, path: &Path) -> Stamp {
        // FIFOs, sockets and devices are told apart from files: their content is never read.
        let kind = EntryKind::from_std(md.file_type());
        Stamp {
            kind,
            size: if kind == EntryKind::Dir { 0 } else { md.len() },
            mtime_ns: backing::mtime_ns(md),
            ctime_ns: change_time_ns(md),
            file_id: file_id(md, path),
            check: Check::Meta,
        }
    }

    /// Reads an entry's metadata only (no hashing). `None` when nothing is there.
    pub fn read(path: &Path) -> io::Result<Option<Stamp>> {
        match fs::symlink_metadata(path) {
            Ok(md) => Ok(Some(Stamp::of_metadata(&md, path))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Completes a stamp read by [`Stamp::read`] into one that can be kept: racy files get a
    /// content hash. `now_ns` is the wall clock when the metadata was read.
    pub fn settle(mut self, path: &Path, now_ns: i64) -> Stamp {
        if self.kind != EntryKind::File || !self.is_racy(now_ns) {
            return self;
        }
        self.check = match hash_file(path) {
            // Read again after hashing: a change during the hash makes the stamp worthless.
            Ok(h) => match Stamp::read(path) {
                Ok(Some(again)) if again.same_metadata(&self) => Check::Hash(h),
                _ => Check::Always,
            },
            Err(_) => Check::Always,
        };
        self
    }

    /// The file's last change is too recent for its metadata to tell every later change.
    fn is_racy(&self, now_ns: i64) -> bool {
        // The change time is the kernel's own clock; where there is none, the mtime stands in,
        // and one in the future (a skewed clock) is racy as well.
        let changed = if self.ctime_ns != 0 {
            self.ctime_ns
        } else {
            self.mtime_ns
        };
        (now_ns - changed).abs() < RACY_NS
    }

    pub fn same_metadata(&self, other: &Stamp) -> bool {
        self.kind == other.kind
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.file_id == other.file_id
    }

    /// Whether the entry at `path`, whose metadata was just read as `now`, differs from what
    /// this stamp recorded.
    pub fn differs(&self, now: &Stamp, path: &Path) -> bool {
        if !self.same_metadata(now) {
            return true;
        }
        match self.check {
            Check::Meta => false,
            Check::Always => true,
            Check::Hash(h) => hash_file(path).map_or(true, |now| now != h),
        }
    }

    pub fn is_racy_stamp(&self) -> bool {
        self.check != Check::Meta
    }
}

/// The content hash of a local file (xxh3), as stamps and flushes compare versions by. Read
/// as a flush reads cache copies, without moving their access time.
pub(crate) fn hash_file(path: &Path) -> io::Result<u64> {
    let mut f = crate::backing::open_cache_copy(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest())
}

#[cfg(unix)]
fn change_time_ns(md: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    md.ctime() * 1_000_000_000 + md.ctime_nsec()
}

#[cfg(not(unix))]
fn change_time_ns(_md: &fs::Metadata) -> i64 {
    0
}

#[cfg(unix)]
fn file_id(md: &fs::Metadata, _path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (md.dev(), md.ino())
}

#[cfg(windows)]
fn file_id(_md: &fs::Metadata, path: &Path) -> (u64, u64) {
    use file_id::FileId;
    match file_id::get_file_id(path) {
        Ok(FileId::Inode {
            device_id,
            inode_number,
        }) => (device_id, inode_number),
        Ok(FileId::LowRes {
            volume_serial_number,
            file_index,
        }) => (volume_serial_number as u64, file_index),
        Ok(FileId::HighRes {
            volume_serial_number,
            file_id,
        }) => (
            volume_serial_number,
            file_id as u64 ^ (file_id >> 64) as u64,
        ),
        // No id: every comparison falls back to size, times and the racy hash.
        Err(_) => (0, 0),
    }
}

#[cfg(not(any(unix, windows)))]
fn file_id(_md: &fs::Metadata, _path: &Path) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_racy_stamp_sees_a_same_size_rewrite_within_one_tick() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"aaaa").unwrap();
        let t = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_file_mtime(&p, t).unwrap();
        let now = crate::engine::now_ns();
        let stamp = Stamp::read(&p).unwrap().unwrap().settle(&p, now);
        assert!(matches!(stamp.check, Check::Hash(_)), "{stamp:?}");
        // Same size, mtime put back: only the content (and the ctime, where the kernel's
        // timestamps are fine enough) tells.
        fs::write(&p, b"bbbb").unwrap();
        filetime::set_file_mtime(&p, t).unwrap();
        let again = Stamp::read(&p).unwrap().unwrap();
        assert!(stamp.differs(&again, &p));
        // With timestamps too coarse to see it (same metadata), the hash still does.
        let coarse = Stamp {
            check: stamp.check,
            ..again
        };
        assert!(coarse.differs(&again, &p));
        assert!(!Stamp {
            check: Check::Meta,
            ..again
        }
        .differs(&again, &p));
        // Unchanged content with the same metadata is not a change.
        let stamp = Stamp::read(&p).unwrap().unwrap().settle(&p, now);
        assert!(!stamp.differs(&Stamp::read(&p).unwrap().unwrap(), &p));
    }

    #[test]
    fn an_old_file_is_judged_by_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, b"aaaa").unwrap();
        let later = crate::engine::now_ns() + 10 * RACY_NS;
        let stamp = Stamp::read(&p).unwrap().unwrap().settle(&p, later);
        assert_eq!(stamp.check, Check::Meta);
        fs::write(&p, b"aaaaa").unwrap();
        assert!(stamp.differs(&Stamp::read(&p).unwrap().unwrap(), &p));
    }
}
