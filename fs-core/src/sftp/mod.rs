//! Listing an sshfs share with each entry's attributes, straight from its SFTP server.
//!
//! An SFTP server sends every entry's size, mode and time with the listing itself (READDIR
//! answers about a hundred entries per request). sshfs passes the names on to the kernel and
//! drops the attributes, so a refresh through the mount pays one LSTAT round trip per file:
//! 14 s of each refresh of a 2 929-file project 20 ms away, three quarters of a lab's day
//! (docs/PERFORMANCE.md, "The refresh before each step"). Turning sshfs's attribute cache on
//! would avoid them, but sshfs then keeps a cached attribute even after a fresh listing, and
//! a file changed in place by someone else goes unseen.
//!
//! So where the share is an sshfs mount, the listing is asked of the same server over a
//! session of our own: the `ssh` command line sshfs itself runs (same host, port, user,
//! keys and options, plus `BatchMode`, so it never prompts). Everything else (stats of single
//! files, reads, every write of a flush) still goes through the mount.
//!
//! The session is used only once its listing of the project folder agrees with the mount's
//! stats of the same entries: a mount that shows other modes (sshfs's `umask`), follows
//! symbolic links, or is not the folder we think, is listed through the mount as before.
//! A session that fails (the server froze, ssh exited) is dropped, and folders are listed
//! through the mount, with the share's deadline, until a new one starts (at most one attempt
//! a minute).
//!
//! Set `SIPFS_SFTP_LISTING=off` to list through the mount always.

#[cfg(target_os = "linux")]
mod detect;
#[cfg(target_os = "linux")]
mod peers;
mod session;
#[cfg(target_os = "linux")]
mod verify;
mod wire;

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::backing::{EntryKind, Stat};
use crate::relpath::RelPath;
pub use session::Session;
pub use wire::Attrs;

/// A failed session is not started again sooner than this.
const RESTART_AFTER: Duration = Duration::from_secs(60);

pub struct SftpLister {
    command: Vec<String>,
    /// The share's folder as the server names it (relative paths start at the login folder).
    remote_root: Vec<u8>,
    session: Mutex<Option<Arc<Session>>>,
    failed_at: Mutex<Option<Instant>>,
    listings: AtomicU64,
}

impl std::fmt::Debug for SftpLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpLister")
            .field("remote_root", &String::from_utf8_lossy(&self.remote_root))
            .field("listings", &self.listings())
            .finish()
    }
}

/// What a listing brought for one entry: its stat, or nothing where the listing cannot say
/// what the mount shows (a symbolic link, which sshfs may follow; a device; a field missing).
pub type Listed = (String, Option<Stat>);

impl SftpLister {
    /// A lister for the share at `share`, if it is an sshfs mount whose server answers and
    /// agrees with the mount. Says in the log why not, when it is sshfs.
    #[cfg(target_os = "linux")]
    pub fn for_share(share: &Path) -> Option<SftpLister> {
        if std::env::var("SIPFS_SFTP_LISTING").is_ok_and(|v| v == "off" || v == "0") {
            return None;
        }
        let found = detect::sshfs_of(share)?;
        let _span = tracing::info_span!("sftp_listing", share = %share.display()).entered();
        let lister = match SftpLister::start(found.command, found.remote_root.clone()) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "could not reach sshfs's server over SFTP: the share is listed through the mount");
                return None;
            }
        };
        match verify::agrees_with(&lister, share) {
            Ok(()) => {
                info!(
                    server = %found.server,
                    folder = %String::from_utf8_lossy(&found.remote_root),
                    "the share is listed over SFTP, as sshfs reaches it"
                );
                Some(lister)
            }
            Err(why) => {
                warn!(%why, "the SFTP listing disagrees with the sshfs mount: the share is listed through the mount");
                None
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn for_share(_share: &Path) -> Option<SftpLister> {
        None
    }

    /// A lister running `command` (an `ssh ... -s sftp` line) for the folder `remote_root`.
    pub fn start(command: Vec<String>, remote_root: Vec<u8>) -> io::Result<SftpLister> {
        let session = Session::start(&command)?;
        Ok(SftpLister {
            command,
            remote_root,
            session: Mutex::new(Some(Arc::new(session))),
            failed_at: Mutex::new(None),
            listings: AtomicU64::new(0),
        })
    }

    /// Folders listed over SFTP so far.
    pub fn listings(&self) -> u64 {
        self.listings.load(Ordering::Relaxed)
    }

    fn remote(&self, dir: &RelPath) -> Vec<u8> {
        let mut p = self.remote_root.clone();
        if !dir.is_root() {
            if !p.is_empty() && !p.ends_with(b"/") {
                p.push(b'/');
            }
            // A name that is not UTF-8 on the share is held escaped in the engine.
            for (i, c) in dir.components().enumerate() {
                if i > 0 {
                    p.push(b'/');
                }
                p.extend_from_slice(&crate::os_names::to_bytes(c));
            }
        }
        if p.is_empty() {
            p.push(b'.');
        }
        p
    }

    fn session(&self) -> Option<Arc<Session>> {
        let mut s = self.session.lock();
        if let Some(live) = s.as_ref().filter(|s| !s.is_broken()) {
            return Some(live.clone());
        }
        *s = None;
        let mut failed = self.failed_at.lock();
        if failed.is_some_and(|t| t.elapsed() < RESTART_AFTER) {
            return None;
        }
        match Session::start(&self.command) {
            Ok(new) => {
                info!("a new SFTP session lists the share");
                *failed = None;
                let new = Arc::new(new);
                *s = Some(new.clone());
                Some(new)
            }
            Err(e) => {
                warn!(error = %e, "could not start an SFTP session again: folders are listed through the mount");
                *failed = Some(Instant::now());
                None
            }
        }
    }

    /// The folder `dir`'s entries, or `None` where it must be listed through the mount (no
    /// session). A missing folder or a refusal comes back as the error the mount would give.
    pub fn list(&self, dir: &RelPath) -> Option<io::Result<Vec<Listed>>> {
        let session = self.session()?;
        match session.list(&self.remote(dir)) {
            Ok(entries) => {
                self.listings.fetch_add(1, Ordering::Relaxed);
                Some(Ok(entries
                    .into_iter()
                    .map(|(name, attrs)| {
                        let name = crate::os_names::from_bytes(&name).into_owned();
                        (name, stat_of(&attrs))
                    })
                    .collect()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) =>
            {
                Some(Err(e))
            }
            Err(e) => {
                warn!(dir = %dir, error = %e, "the SFTP listing failed: the folder is listed through the mount");
                if session.is_broken() {
                    *self.failed_at.lock() = Some(Instant::now());
                }
                None
            }
        }
    }
}

/// The stat an entry's attributes stand for, as sshfs would show it; `None` where the mount
/// must be asked (see [`Listed`]).
pub fn stat_of(a: &Attrs) -> Option<Stat> {
    let (mode, size, mtime) = (a.mode?, a.size?, a.mtime?);
    let kind = EntryKind::from_mode(mode)?;
    if !matches!(kind, EntryKind::File | EntryKind::Dir) {
        return None;
    }
    Some(Stat {
        kind,
        size,
        mtime_ns: i64::from(mtime) * 1_000_000_000,
        mode: mode & 0o7777,
        rdev: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_come_from_the_listing_and_the_rest_from_the_mount() {
        let file = Attrs {
            size: Some(10),
            mode: Some(0o100640),
            mtime: Some(1_700_000_000),
        };
        assert_eq!(
            stat_of(&file),
            Some(Stat {
                kind: EntryKind::File,
                size: 10,
                mtime_ns: 1_700_000_000_000_000_000,
                mode: 0o640,
                rdev: 0
            })
        );
        let link = Attrs {
            mode: Some(0o120777),
            ..file
        };
        assert_eq!(stat_of(&link), None);
        let no_time = Attrs {
            mtime: None,
            ..file
        };
        assert_eq!(stat_of(&no_time), None);
    }

    #[test]
    fn a_folder_is_named_below_the_share_root_or_the_login_folder() {
        let l = |root: &[u8]| SftpLister {
            command: vec![],
            remote_root: root.to_vec(),
            session: Mutex::new(None),
            failed_at: Mutex::new(None),
            listings: AtomicU64::new(0),
        };
        let sub = RelPath::new("a/b c").unwrap();
        assert_eq!(l(b"/srv/proj").remote(&sub), b"/srv/proj/a/b c");
        assert_eq!(l(b"/srv/proj").remote(&RelPath::root()), b"/srv/proj");
        assert_eq!(l(b"").remote(&sub), b"a/b c");
        assert_eq!(l(b"").remote(&RelPath::root()), b".");
        assert_eq!(l(b"/").remote(&sub), b"/a/b c");
    }
}
