//! How the files a flush stages become durable before it renames them into place.
//!
//! A flush promises that no crash leaves a half-written file under a real name: each
//! temporary is on stable storage before the burst renames it. An fsync per file is what a
//! network share needs (each is the server's own sync, and they run in parallel). On a share
//! folder that is a local disk file system (a USB disk, a second disk, the tests' shares), 50
//! fsyncs are 50 journal commits one after another for each worker, and most of a small
//! flush's time. There one `syncfs` after the last temporary is written gives the same
//! promise for all of them at once: the file system's dirty data and its journal, written and
//! waited for (Linux reports writeback errors from `syncfs` since 5.8).
//!
//! Which way a file goes is decided by the file system it is on, asked once per file system
//! (`fstatfs` on the staged file's handle). A share whose first staged file is not on a local
//! disk is taken to be a network share throughout, so no per-file `fstat` (a round trip on
//! FUSE after a write) is spent finding out which file system the others are on. Outside
//! Linux every file is synced on its own.

use std::fs::File;
use std::io;
use std::path::Path;

#[cfg(target_os = "linux")]
use parking_lot::Mutex;

/// The durability bookkeeping of one share folder ([`crate::backing::DirBacking`]).
/// Shared by the clones of one backing (`Arc`): they are one share.
#[derive(Debug, Default)]
pub(crate) struct StageSync {
    /// Whether the first staged file was on a local disk file system.
    #[cfg(target_os = "linux")]
    local_root: std::sync::OnceLock<bool>,
    /// Per device seen: a folder open on it when it is a local disk (what `syncfs` is called
    /// on), or `None` when its files are synced one by one. A folder, not the staged file:
    /// holding a file open would keep a deleted file's space taken.
    #[cfg(target_os = "linux")]
    devices: Mutex<Vec<(u64, Option<File>)>>,
}

impl StageSync {
    /// Called with the open handle of a file just written at `path` (not yet renamed): syncs
    /// it now, or leaves it to [`StageSync::sync_staged`].
    pub(crate) fn staged(&self, file: &File, path: &Path) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            if self.deferred(file, path)? {
                return Ok(());
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = path;
        file.sync_all()
    }

    /// Makes every file [`StageSync::staged`] left unsynced durable: one `syncfs` per local
    /// file system seen. Each call syncs them all, so a file staged by a concurrent caller
    /// before this call began is covered too.
    pub(crate) fn sync_staged(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            for (_, dir) in self.devices.lock().iter() {
                let Some(dir) = dir else { continue };
                // SAFETY: the descriptor is open for as long as `dir` lives.
                if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }

    /// Whether `file` may wait for [`StageSync::sync_staged`]: it is on a local disk.
    #[cfg(target_os = "linux")]
    fn deferred(&self, file: &File, path: &Path) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        if !*self.local_root.get_or_init(|| on_local_disk(file)) {
            return Ok(false);
        }
        let dev = file.metadata()?.dev();
        let mut devices = self.devices.lock();
        if let Some((_, dir)) = devices.iter().find(|(d, _)| *d == dev) {
            return Ok(dir.is_some());
        }
        let dir = match on_local_disk(file) {
            true => path.parent().and_then(|p| File::open(p).ok()),
            false => None,
        };
        let deferred = dir.is_some();
        devices.push((dev, dir));
        Ok(deferred)
    }
}

/// Whether `file` is on a file system `syncfs` makes durable by itself: one on a local block
/// device (or in memory). Network and FUSE file systems are not: their `syncfs` may not reach
/// the server's disk.
#[cfg(target_os = "linux")]
fn on_local_disk(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // f_type values from linux/magic.h.
    const LOCAL: &[i64] = &[
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0xF2F5_2010, // f2fs
        0xCA45_1A4E, // bcachefs
        0x0102_1994, // tmpfs
        0x2011_BAB0, // exfat
        0x4D44,      // vfat
        0x7366_746E, // ntfs3
        0x3153_464A, // jfs
        0x2FC1_2FC1, // zfs
    ];
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a valid buffer for one statfs; the descriptor is open.
    if unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it filled `st`.
    // The field's type differs between architectures (`__fsword_t`).
    #[allow(clippy::unnecessary_cast)]
    let f_type = unsafe { st.assume_init() }.f_type as i64;
    LOCAL.contains(&f_type)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_file_on_a_local_disk_waits_for_one_syncfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        let sync = StageSync::default();
        sync.staged(&f, &path).unwrap();
        let local = on_local_disk(&f);
        // The tests' temporary folder is a local disk (ext4 or tmpfs) on every CI machine.
        assert!(local, "the test folder should be on a local disk");
        assert_eq!(sync.devices.lock().len(), 1);
        assert!(sync.devices.lock()[0].1.is_some());
        sync.sync_staged().unwrap();
    }

    #[test]
    fn a_share_that_is_not_a_local_disk_syncs_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        let sync = StageSync::default();
        // As if the first file had been on a network share.
        sync.local_root.set(false).unwrap();
        sync.staged(&f, &path).unwrap();
        assert!(
            sync.devices.lock().is_empty(),
            "no fstat asked of a network share"
        );
    }
}
