//! The share, seen through a small trait.
//!
//! Everything the engine does to the share goes through [`Backing`], so that tests can inject
//! failures ([`crate::fault::FaultyBacking`]) around the real thing ([`DirBacking`], a directory
//! that is usually a network file system mounted by the OS: SMB, NFS, sshfs).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use filetime::FileTime;
use serde::{Deserialize, Serialize};

use crate::relpath::RelPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Special files: they have no content of their own to write back. The kernel serves a
    /// FIFO's data and a socket's connections itself; sipfs keeps the entry and its attributes
    /// (`Node::rdev` for devices). Shares that cannot hold them (SMB, sshfs) keep them local.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    pub fn from_std(ft: fs::FileType) -> EntryKind {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                return EntryKind::Fifo;
            } else if ft.is_socket() {
                return EntryKind::Socket;
            } else if ft.is_char_device() {
                return EntryKind::CharDevice;
            } else if ft.is_block_device() {
                return EntryKind::BlockDevice;
            }
        }
        if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        }
    }

    /// A FIFO, socket or device node.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::CharDevice | EntryKind::BlockDevice
        )
    }

    /// The kind a Unix mode's file type bits (`S_IFMT`) name.
    pub fn from_mode(mode: u32) -> Option<EntryKind> {
        Some(match mode & 0o170000 {
            0o100000 => EntryKind::File,
            0o040000 => EntryKind::Dir,
            0o120000 => EntryKind::Symlink,
            0o010000 => EntryKind::Fifo,
            0o140000 => EntryKind::Socket,
            0o020000 => EntryKind::CharDevice,
            0o060000 => EntryKind::BlockDevice,
            _ => return None,
        })
    }

    /// The file type bits of a Unix mode (`S_IFMT`).
    pub fn mode_bits(self) -> u32 {
        match self {
            EntryKind::File => 0o100000,
            EntryKind::Dir => 0o040000,
            EntryKind::Symlink => 0o120000,
            EntryKind::Fifo => 0o010000,
            EntryKind::Socket => 0o140000,
            EntryKind::CharDevice => 0o020000,
            EntryKind::BlockDevice => 0o060000,
        }
    }

    /// What to call it in a message.
    pub fn noun(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "folder",
            EntryKind::Symlink => "symbolic link",
            EntryKind::Fifo => "FIFO",
            EntryKind::Socket => "socket",
            EntryKind::CharDevice => "character device",
            EntryKind::BlockDevice => "block device",
        }
    }
}

/// What a stat of the share tells the engine. Modification times are nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    /// Device nodes: the device number; 0 for everything else.
    pub rdev: u64,
}

impl Stat {
    pub fn from_metadata(md: &fs::Metadata) -> Stat {
        Stat {
            kind: EntryKind::from_std(md.file_type()),
            size: md.len(),
            mtime_ns: mtime_ns(md),
            mode: mode_of(md),
            rdev: rdev_of(md),
        }
    }
}

#[cfg(unix)]
fn rdev_of(md: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    if md.file_type().is_file() || md.is_dir() {
        0
    } else {
        md.rdev()
    }
}

#[cfg(not(unix))]
fn rdev_of(_md: &fs::Metadata) -> u64 {
    0
}

pub fn mtime_ns(md: &fs::Metadata) -> i64 {
    let ft = FileTime::from_last_modification_time(md);
    ft.unix_seconds() * 1_000_000_000 + ft.nanoseconds() as i64
}

/// Opens a cached copy for writing it back. On Linux without touching its access time: that
/// belongs to the programs that read the file, not to sipfs copying it (the cache files are
/// sipfs's own, so `O_NOATIME` is allowed; where it is not, a plain open does).
pub fn open_cache_copy(path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if let Ok(f) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            return Ok(f);
        }
    }
    File::open(path)
}

pub fn atime_ns(md: &fs::Metadata) -> i64 {
    let ft = FileTime::from_last_access_time(md);
    ft.unix_seconds() * 1_000_000_000 + ft.nanoseconds() as i64
}

pub fn filetime_from_ns(ns: i64) -> FileTime {
    FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
}

#[cfg(unix)]
fn mode_of(md: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(md: &fs::Metadata) -> u32 {
    if md.is_dir() {
        0o755
    } else if md.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

/// Operations on the share. Paths are relative to the project folder on the share.
/// Errors are plain `io::Error`s; the engine classifies them with [`crate::Reason::classify`].
pub trait Backing: Send + Sync {
    /// A human-readable name of the share, for messages.
    fn describe(&self) -> String;
    /// Asks the share now whether it answers, whatever earlier calls saw: a flush the user
    /// asked for starts with it (`DeadlineBacking` keeps a share it saw stall refused until a
    /// probe; see `deadline.rs`). `Err` when it still does not answer. A share reached
    /// directly has nothing to find out.
    fn check_now(&self) -> io::Result<()> {
        Ok(())
    }
    /// `Ok(None)` when nothing exists at `path`.
    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>>;
    fn list(&self, dir: &RelPath) -> io::Result<Vec<(String, Stat)>>;
    /// Like [`Backing::stat`], but bypassing the client's attribute caches where it can:
    /// used to decide whether someone else changed a file, where a stale answer loses data.
    fn stat_fresh(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        self.stat(path)
    }
    /// Whether the file at `path` has other names on the share (hard links): removing this
    /// name then loses no version, since the others still hold it. `false` where the share
    /// cannot tell, which only ever keeps a copy too many.
    fn has_other_names(&self, _path: &RelPath) -> io::Result<bool> {
        Ok(false)
    }
    /// Copies the content of the file at `path` into the local file `dest` (created or truncated).
    fn fetch(&self, path: &RelPath, dest: &Path) -> io::Result<()>;
    /// As [`Backing::fetch`], and says which version was copied: its stat, or `None` if it was
    /// written into during the copy (copy again). Where the share allows, both stats are taken
    /// through the file being read (`DirBacking`), so a new version renamed over the name
    /// meanwhile does not spoil the copy of the one opened: under a writer that saves every
    /// few milliseconds, stats of the name before and after would rarely agree. This default
    /// stats the name before and after.
    fn fetch_version(&self, path: &RelPath, dest: &Path) -> io::Result<Option<Stat>> {
        let before = self.stat(path)?.ok_or(io::ErrorKind::NotFound)?;
        self.fetch(path, dest)?;
        let after = self.stat(path)?.ok_or(io::ErrorKind::NotFound)?;
        Ok((before == after).then_some(after))
    }
    /// Opens the file at `path` for reading ranges of it: a big file is fetched in ranges, the
    /// first ones while a program waits for them (`engine/partial.rs`). One open serves every
    /// range, so each costs one round trip, not an open and a close as well.
    fn open_read(&self, path: &RelPath) -> io::Result<Arc<dyn ShareReader>>;
    fn read_link(&self, path: &RelPath) -> io::Result<String>;
    /// Writes the local file `src` to the share as the new file `temp` (which must not exist),
    /// durably, with the given modification time and mode, ready to be renamed into place.
    fn stage(&self, src: &Path, temp: &RelPath, mtime_ns: i64, mode: u32) -> io::Result<()>;
    fn stage_symlink(&self, target: &str, temp: &RelPath) -> io::Result<()>;
    /// Makes `temp` a hard link of `existing` (another temporary of this flush): a second
    /// name of a hard-linked file. Shares without hard links (SMB) refuse.
    fn stage_link(&self, _existing: &RelPath, _temp: &RelPath) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Makes the special file `temp` (a FIFO, socket or device node, see
    /// [`EntryKind::is_special`]), ready to be renamed into place. Shares that cannot hold one
    /// (SMB, sshfs) refuse with `Unsupported`: the entry is then kept in the cache only.
    fn stage_special(
        &self,
        _kind: EntryKind,
        _rdev: u64,
        _mode: u32,
        _temp: &RelPath,
    ) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Renames `from` to `to`, replacing a file at `to`.
    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()>;
    /// Moves whatever is at `target` to the new name `cap` (a commit's capture,
    /// `flush/capture.rs`) and returns its stat; `None`: nothing was there. This default is a
    /// rename, then a stat of `cap`; on Windows a `DirBacking` holds the file through one
    /// handle from the check to the rename (`win_share::capture`).
    fn capture(&self, target: &RelPath, cap: &RelPath) -> io::Result<Option<Stat>> {
        match self.rename(target, cap) {
            Ok(()) => self.stat(cap),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Renames `from` to `to` only if nothing is at `to`: [`io::ErrorKind::AlreadyExists`]
    /// otherwise, and nothing changes. Decided by the share where it can
    /// ([`crate::noreplace`]); this default is the weak way, a stat and then a rename.
    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        if self.stat(to)?.is_some() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        self.rename(from, to)
    }
    /// How [`Backing::rename_noreplace`] is made on this share, once a flush has used it
    /// (`None` before: nothing is asked of the share to answer this).
    fn no_replace(&self) -> Option<crate::noreplace::NoReplace> {
        Some(crate::noreplace::NoReplace::Checked)
    }
    fn remove_file(&self, path: &RelPath) -> io::Result<()>;
    fn remove_dir(&self, path: &RelPath) -> io::Result<()>;
    fn create_dir(&self, path: &RelPath) -> io::Result<()>;
    fn set_mtime(&self, path: &RelPath, mtime_ns: i64) -> io::Result<()>;
    /// Sets the modification time of the regular file at `path`, but only if it is the
    /// version `expect` names: `Ok(None)`, with nothing changed, when someone else's version
    /// is there. `Ok(Some(st))`: set; `st` is the share's stat, with the size the file had
    /// when it was checked (a write into it since then is a change someone else made).
    ///
    /// A stat and then a `set_mtime` would give our time to a file someone put at the name
    /// between the two calls, and the share would then look like our version: a later flush
    /// would replace theirs. So the check and the change go through one open file where the
    /// share allows it (`DirBacking`); this default is that weak way.
    fn set_mtime_if(
        &self,
        path: &RelPath,
        expect: Expect,
        mtime_ns: i64,
    ) -> io::Result<Option<Stat>> {
        set_mtime_by_name(self, path, expect, mtime_ns)
    }
    fn set_mode(&self, path: &RelPath, mode: u32) -> io::Result<()>;
    /// Gives the entry at `path` (not following a link) an owner and group. Shares without
    /// Unix owners (SMB, an sshfs whose user may not chown) refuse it.
    fn set_owner(&self, _path: &RelPath, _uid: u32, _gid: u32) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Sets (`Some`) or removes (`None`; one not there is no error) the extended attribute
    /// `name` of the entry at `path`, not following a link. Shares that keep none (sshfs,
    /// most SMB clients) refuse with `Unsupported`.
    fn set_xattr(&self, _path: &RelPath, _name: &[u8], _value: Option<&[u8]>) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The versions of a file on the share a change is meant for ([`Backing::set_mtime_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The version last synced; `None`: any version (the file is not known on the share).
    pub base: Option<crate::pending::Base>,
    /// A second version that is ours too: for a name of a hard-linked entry, the entry as it
    /// is after another of its names was given its time a moment ago.
    pub also: Option<crate::pending::Base>,
}

impl Expect {
    pub fn matches(&self, st: &Stat) -> bool {
        self.base.is_none_or(|b| b.matches(st)) || self.also.is_some_and(|b| b.matches(st))
    }
}

/// A file on the share, open for reading ranges of it.
pub trait ShareReader: Send + Sync {
    /// Up to `len` bytes from `offset`; fewer only at the end of the file.
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// A local file as a [`ShareReader`].
struct FileReader(File);

impl ShareReader for FileReader {
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match read_at(&self.0, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, off)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, off)
}

/// A share reached as a directory of the local file system (a mapped drive, a mount point).
#[derive(Debug, Clone)]
pub struct DirBacking {
    root: PathBuf,
    /// How this share refuses a taken name, learned at first use.
    no_replace: Arc<crate::noreplace::NoReplaceMode>,
    /// Where the share is sshfs: its folders listed with their attributes, over SFTP. Left
    /// empty by [`DirBacking::with_sftp_listing`] to be found and started at the first listing,
    /// so a command that lists nothing starts no session; holds `None` otherwise.
    #[cfg(unix)]
    lister: Arc<std::sync::OnceLock<Option<crate::sftp::SftpLister>>>,
}

impl DirBacking {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirBacking {
            root: root.into(),
            no_replace: Arc::default(),
            #[cfg(unix)]
            lister: Arc::new(std::sync::OnceLock::from(None)),
        }
    }

    /// Folders are listed through `lister` where it can (see [`crate::sftp`]).
    #[cfg(unix)]
    pub fn with_lister(mut self, lister: Option<crate::sftp::SftpLister>) -> Self {
        self.lister = Arc::new(std::sync::OnceLock::from(lister));
        self
    }

    /// Folders are listed over SFTP if the share turns out to be sshfs: looked at, and the
    /// session started, at the first listing ([`crate::sftp::SftpLister::for_share`]).
    #[cfg(unix)]
    pub fn with_sftp_listing(mut self) -> Self {
        self.lister = Arc::default();
        self
    }

    /// The SFTP lister in use, if any.
    #[cfg(unix)]
    pub fn lister(&self) -> Option<&crate::sftp::SftpLister> {
        self.lister.get().and_then(Option::as_ref)
    }

    /// A listing with attributes from the SFTP server; `None` to list through the mount.
    #[cfg(unix)]
    fn list_over_sftp(&self, dir: &RelPath) -> Option<io::Result<Vec<(String, Stat)>>> {
        let lister = self
            .lister
            .get_or_init(|| crate::sftp::SftpLister::for_share(&self.root))
            .as_ref()?;
        let listed = match lister.list(dir)? {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        let mut out = Vec::with_capacity(listed.len());
        for (name, st) in listed {
            let st = match st {
                Some(st) => st,
                // What the listing cannot tell (a symbolic link sshfs may follow, a device):
                // the mount's own stat, for these few.
                None => match fs::symlink_metadata(self.path(&dir.join(&name))) {
                    Ok(md) => Stat::from_metadata(&md),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Some(Err(e)),
                },
            };
            out.push((name, st));
        }
        Some(Ok(out))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, p: &RelPath) -> PathBuf {
        p.to_path(&self.root)
    }
}

impl Backing for DirBacking {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    #[cfg(unix)]
    fn has_other_names(&self, path: &RelPath) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        Ok(fs::symlink_metadata(self.path(path))?.nlink() > 1)
    }
    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        match fs::symlink_metadata(self.path(path)) {
            Ok(md) => Ok(Some(Stat::from_metadata(&md))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the file and asks the open handle: SMB and NFS clients revalidate on open
    /// (close-to-open consistency), where a plain stat may be answered from their caches.
    fn stat_fresh(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        match File::open(self.path(path)) {
            Ok(f) => match f.metadata() {
                Ok(md) if !md.is_dir() => Ok(Some(Stat::from_metadata(&md))),
                _ => self.stat(path),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(_) => self.stat(path),
        }
    }

    /// Over SFTP where the share is sshfs ([`crate::sftp`]); otherwise one readdir, then a
    /// stat of each entry: overlapped when the share is a network away
    /// ([`crate::fanout`]), as the OS would make them one at a time.
    fn list(&self, dir: &RelPath) -> io::Result<Vec<(String, Stat)>> {
        #[cfg(unix)]
        if let Some(listed) = self.list_over_sftp(dir) {
            return listed;
        }
        let mut entries = Vec::new();
        for entry in fs::read_dir(self.path(dir))? {
            let entry = entry?;
            let name = crate::os_names::from_os(&entry.file_name()).into_owned();
            entries.push((name, entry));
        }
        let stats = crate::fanout::map_overlapped(&entries, |(_, e)| e.metadata());
        let mut out = Vec::with_capacity(entries.len());
        for ((name, _), md) in entries.into_iter().zip(stats) {
            match md {
                Ok(md) => out.push((name, Stat::from_metadata(&md))),
                // Removed between readdir and stat: someone else is working on the share.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn fetch(&self, path: &RelPath, dest: &Path) -> io::Result<()> {
        let mut src = File::open(self.path(path))?;
        if cloned(&src, dest)? {
            // As a created file would be: the clone has the share file's mode, which may
            // leave sipfs's own cache copy read-only to it.
            return set_permissions_checked(dest, 0o644);
        }
        let mut dst = File::create(dest)?;
        copy_reporting(&mut src, &mut dst)
    }

    fn fetch_version(&self, path: &RelPath, dest: &Path) -> io::Result<Option<Stat>> {
        let mut src = File::open(self.path(path))?;
        let before = Stat::from_metadata(&src.metadata()?);
        if cloned(&src, dest)? {
            // As in `fetch`: the clone has the share file's mode.
            set_permissions_checked(dest, 0o644)?;
        } else {
            let mut dst = File::create(dest)?;
            copy_reporting(&mut src, &mut dst)?;
        }
        let after = Stat::from_metadata(&src.metadata()?);
        Ok((before == after).then_some(after))
    }

    fn open_read(&self, path: &RelPath) -> io::Result<Arc<dyn ShareReader>> {
        Ok(Arc::new(FileReader(File::open(self.path(path))?)))
    }

    fn read_link(&self, path: &RelPath) -> io::Result<String> {
        let target = fs::read_link(self.path(path))?;
        Ok(crate::os_names::from_os(target.as_os_str()).into_owned())
    }

    fn stage(&self, src: &Path, temp: &RelPath, mtime_ns: i64, mode: u32) -> io::Result<()> {
        let dest = self.path(temp);
        let mut input = open_cache_copy(src)?;
        // A share on the cache's own APFS volume (a local project folder) gets a clone, which
        // has the cache file's mode: set below like any mode the create could not give.
        let was_cloned = cloned(&input, &dest)?;
        let mut create = OpenOptions::new();
        create.write(true);
        if was_cloned {
            // Writable to us whatever the cache file's mode, so that it can be synced and
            // timed below; its own mode is set last.
            if let Err(e) = set_permissions_checked(&dest, 0o600) {
                let _ = fs::remove_file(&dest);
                return Err(e);
            }
        } else {
            create.create_new(true);
        }
        // Created with its mode (SFTP and NFS send it with the create), so that the usual
        // modes need no chmod of their own, which would be one more round trip per file.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, mode & 0o7777);
        let mut out = match create.open(&dest) {
            Ok(f) => f,
            Err(e) => {
                if was_cloned {
                    let _ = fs::remove_file(&dest);
                }
                return Err(e);
            }
        };
        let result = (|| {
            if !was_cloned {
                copy_reporting(&mut input, &mut out)?;
            }
            // Durable before the rename makes it visible: a crash of either side never
            // leaves a half-written file under the real name.
            out.sync_all()?;
            let t = filetime_from_ns(mtime_ns);
            // Some shares cannot keep times (rclone's SMB client says EPERM): the file is
            // still written; the flush compares times afterwards and warns once.
            if let Err(e) = filetime::set_file_handle_times(&out, Some(t), Some(t)) {
                tracing::debug!(path = %dest.display(), error = %e, "share did not take the time");
            }
            if was_cloned || !created_with(mode) {
                set_permissions(&dest, mode);
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&dest);
        }
        result
    }

    fn stage_symlink(&self, target: &str, temp: &RelPath) -> io::Result<()> {
        make_symlink(target, &self.path(temp))
    }

    fn stage_link(&self, existing: &RelPath, temp: &RelPath) -> io::Result<()> {
        fs::hard_link(self.path(existing), self.path(temp))
    }

    #[cfg(unix)]
    fn stage_special(
        &self,
        kind: EntryKind,
        rdev: u64,
        mode: u32,
        temp: &RelPath,
    ) -> io::Result<()> {
        let dest = self.path(temp);
        make_special(&dest, kind, mode, rdev).map_err(|e| {
            // What a share says when it cannot hold the kind (sshfs: ENOSYS or EPERM, a
            // Windows share: EOPNOTSUPP) is one answer to the engine: keep it local.
            match e.raw_os_error() {
                Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM | libc::EINVAL) => {
                    io::Error::new(io::ErrorKind::Unsupported, e)
                }
                _ => e,
            }
        })?;
        if !created_with(mode) {
            set_permissions(&dest, mode);
        }
        Ok(())
    }

    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        fs::rename(self.path(from), self.path(to))
    }

    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        self.no_replace
            .rename(&self.root, &self.path(from), &self.path(to))
    }

    #[cfg(windows)]
    fn capture(&self, target: &RelPath, cap: &RelPath) -> io::Result<Option<Stat>> {
        crate::win_share::capture(&self.path(target), &self.path(cap))
    }

    fn no_replace(&self) -> Option<crate::noreplace::NoReplace> {
        self.no_replace.known()
    }

    fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        fs::remove_file(self.path(path))
    }

    fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
        fs::remove_dir(self.path(path))
    }

    fn create_dir(&self, path: &RelPath) -> io::Result<()> {
        fs::create_dir(self.path(path))
    }

    fn set_mtime(&self, path: &RelPath, mtime_ns: i64) -> io::Result<()> {
        let t = filetime_from_ns(mtime_ns);
        filetime::set_symlink_file_times(self.path(path), t, t)
    }

    fn set_mtime_if(
        &self,
        path: &RelPath,
        expect: Expect,
        mtime_ns: i64,
    ) -> io::Result<Option<Stat>> {
        let file = match open_for_times(&self.path(path)) {
            Ok(f) => f,
            // Not readable (mode 0), say: the owner may still set its time by name. The weak
            // way then, as on shares without open files.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return set_mtime_by_name(self, path, expect, mtime_ns);
            }
            Err(e) => return Err(e),
        };
        let before = Stat::from_metadata(&file.metadata()?);
        if before.kind != EntryKind::File || !expect.matches(&before) {
            return Ok(None);
        }
        // Through the open file: the version checked is the one changed, whatever takes the
        // name meanwhile.
        file.set_modified(filetime_to_system(filetime_from_ns(mtime_ns)))?;
        let after = Stat::from_metadata(&file.metadata()?);
        Ok(Some(Stat {
            size: before.size,
            ..after
        }))
    }

    fn set_mode(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        set_permissions_checked(&self.path(path), mode)
    }

    #[cfg(unix)]
    fn set_owner(&self, path: &RelPath, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(self.path(path), Some(uid), Some(gid))
    }

    #[cfg(target_os = "linux")]
    fn set_xattr(&self, path: &RelPath, name: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        set_xattr_at(&self.path(path), name, value)
    }
}

/// [`Backing::set_mtime_if`] the weak way: a stat, then a `set_mtime` by name.
fn set_mtime_by_name<B: Backing + ?Sized>(
    b: &B,
    path: &RelPath,
    expect: Expect,
    mtime_ns: i64,
) -> io::Result<Option<Stat>> {
    let before = b.stat(path)?.ok_or(io::ErrorKind::NotFound)?;
    if !expect.matches(&before) {
        return Ok(None);
    }
    b.set_mtime(path, mtime_ns)?;
    let after = b.stat(path)?.unwrap_or(before);
    Ok(Some(Stat {
        size: before.size,
        ..after
    }))
}

/// A file opened to check and set its times, never blocking (a FIFO put at the name) and
/// needing no write permission where the platform allows.
fn open_for_times(path: &Path) -> io::Result<File> {
    let mut o = fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES, shared with everyone: a file open
        // in another program keeps its time settable, as by name.
        o.access_mode(0x80 | 0x100).share_mode(0x7);
    }
    o.open(path)
}

fn filetime_to_system(t: FileTime) -> std::time::SystemTime {
    let since = std::time::Duration::new(t.unix_seconds().unsigned_abs(), t.nanoseconds());
    if t.unix_seconds() >= 0 {
        std::time::UNIX_EPOCH + since
    } else {
        // Before 1970: whole seconds back, then the nanoseconds forward.
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(t.unix_seconds().unsigned_abs())
            + std::time::Duration::from_nanos(t.nanoseconds() as u64)
    }
}

/// Whether a file created with `mode` has it already: the creating side's umask (022 almost
/// everywhere) takes away group and other write, and special bits may be dropped; modes with
/// none of those (0644, 0755, 0600...) arrive whole. Elsewhere (Windows) the mode is set apart.
fn created_with(mode: u32) -> bool {
    cfg!(unix) && mode & 0o7022 == 0
}

/// Makes `dest` a clone of `src` where the OS and volume can (macOS, both on one APFS
/// volume: the copy costs no time and no space). False: copy it.
fn cloned(src: &File, dest: &Path) -> io::Result<bool> {
    match crate::sys::clone_to(src, dest) {
        Ok(()) => Ok(true),
        // Not here, or the name is taken (a fetch's leftover): the copy path handles both.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Unsupported | io::ErrorKind::AlreadyExists
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Copies a whole file in chunks, telling the call's deadline after each that bytes moved
/// (a big file on a slow link may take longer than the deadline, and is not stuck).
fn copy_reporting(src: &mut File, dst: &mut File) -> io::Result<()> {
    use std::io::Read;
    const CHUNK: u64 = 4 << 20;
    loop {
        // `io::copy` between files still uses copy_file_range where it can, chunk by chunk.
        let n = io::copy(&mut Read::by_ref(src).take(CHUNK), dst)?;
        crate::deadline::progressed();
        if n < CHUNK {
            return Ok(());
        }
    }
}

/// Best effort: shares that do not keep Unix modes (SMB) refuse or ignore this, and a mode is
/// not worth failing a flush over.
fn set_permissions(path: &Path, mode: u32) {
    if let Err(e) = set_permissions_checked(path, mode) {
        tracing::debug!(path = %path.display(), error = %e, "share did not take the file mode");
    }
}

#[cfg(unix)]
fn set_permissions_checked(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
}

#[cfg(not(unix))]
fn set_permissions_checked(path: &Path, mode: u32) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_readonly(mode & 0o222 == 0);
    fs::set_permissions(path, perms)
}

#[cfg(unix)]
pub fn make_symlink(target: &str, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(crate::os_names::to_os(target), at)
}

/// `lsetxattr` or `lremovexattr`; what says "not here" (`ENOTSUP`) is `Unsupported`.
#[cfg(target_os = "linux")]
fn set_xattr_at(at: &Path, name: &[u8], value: Option<&[u8]>) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let invalid = |_| io::Error::from(io::ErrorKind::InvalidInput);
    let c = std::ffi::CString::new(at.as_os_str().as_bytes()).map_err(invalid)?;
    let n = std::ffi::CString::new(name).map_err(invalid)?;
    // SAFETY: valid NUL-terminated strings, and a value buffer of the length given.
    let r = unsafe {
        match value {
            Some(v) => libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            None => libc::lremovexattr(c.as_ptr(), n.as_ptr()),
        }
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENODATA) if value.is_none() => Ok(()),
        Some(libc::ENOTSUP | libc::ENOSYS) => Err(io::Error::new(io::ErrorKind::Unsupported, e)),
        _ => Err(e),
    }
}

/// Makes a FIFO, socket or device node at `at` (`mknod`, which makes sockets too).
#[cfg(unix)]
pub fn make_special(at: &Path, kind: EntryKind, mode: u32, rdev: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(at.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mode = kind.mode_bits() | (mode & 0o7777);
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let r = unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
pub fn make_symlink(_target: &str, _at: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are not supported on this platform",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn stage_writes_a_new_durable_temporary_with_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        fs::create_dir_all(&share).unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"content").unwrap();
        let b = DirBacking::new(&share);
        let t = 1_700_000_000_123_456_789;
        b.stage(&src, &rel(".f.sipfs-tmp-1"), t, 0o640).unwrap();
        let st = b.stat(&rel(".f.sipfs-tmp-1")).unwrap().unwrap();
        assert_eq!((st.size, st.mtime_ns), (7, t));
        assert_eq!(fs::read(share.join(".f.sipfs-tmp-1")).unwrap(), b"content");
        // A temporary never overwrites anything.
        assert!(b.stage(&src, &rel(".f.sipfs-tmp-1"), t, 0o640).is_err());
        // Renaming it over the target replaces the target in one step.
        fs::write(share.join("f"), b"old").unwrap();
        b.rename(&rel(".f.sipfs-tmp-1"), &rel("f")).unwrap();
        assert_eq!(fs::read(share.join("f")).unwrap(), b"content");
        assert!(b.stat(&rel(".f.sipfs-tmp-1")).unwrap().is_none());
    }

    /// Usual modes arrive with the create; those a umask would trim still get a chmod.
    #[cfg(unix)]
    #[test]
    fn staged_files_carry_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"x").unwrap();
        let b = DirBacking::new(dir.path());
        for (i, mode) in [0o644, 0o755, 0o600, 0o664, 0o777, 0o640]
            .into_iter()
            .enumerate()
        {
            let t = rel(&format!("t{i}"));
            b.stage(&src, &t, 0, mode).unwrap();
            assert_eq!(b.stat(&t).unwrap().unwrap().mode, mode, "{mode:o}");
        }
    }

    #[test]
    fn a_failed_stage_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBacking::new(dir.path());
        let missing = dir.path().join("no-such-source");
        assert!(b.stage(&missing, &rel(".x.sipfs-tmp-2"), 0, 0o644).is_err());
        assert!(b.stat(&rel(".x.sipfs-tmp-2")).unwrap().is_none());
        // In a folder that does not exist: the error says so (the flush creates it and retries).
        let src = dir.path().join("src");
        fs::write(&src, b"x").unwrap();
        let e = b
            .stage(&src, &rel("gone/.x.sipfs-tmp-3"), 0, 0o644)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn stat_fresh_agrees_with_stat() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), b"abc").unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        let b = DirBacking::new(dir.path());
        assert_eq!(b.stat_fresh(&rel("a")).unwrap(), b.stat(&rel("a")).unwrap());
        assert_eq!(b.stat_fresh(&rel("d")).unwrap(), b.stat(&rel("d")).unwrap());
        assert!(b.stat_fresh(&rel("none")).unwrap().is_none());
    }
}
