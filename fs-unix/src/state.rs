//! The adapter's state — the engine, open handles, the mount's owner, passthrough
//! registrations — and what several kernel requests share (replies, attributes, listings,
//! the control files). `fs.rs` translates each request.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use fs_core::{Attr, DirEntry, Engine, FileHandle as EngineHandle, FsError, SetAttr, ROOT_INO};
use fuser::{BackingId, Errno, FileType, INodeNo, ReplyEmpty, ReplyXattr, Request};
use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::attr::{file_attr, ns_of, Owner};
use crate::control_dir;
use crate::owners;
use crate::requests::Requests;

/// How long the kernel may keep attributes and names without asking. Between refreshes this
/// mount is the only writer of its namespace, and a refresh tells the kernel what it changed
/// (`invalidate`), so this can be long: most stats and lookups never reach sipfs.
pub(crate) const TTL: Duration = Duration::from_secs(60);

pub(crate) enum Handle {
    File {
        fh: EngineHandle,
        /// Keeps the kernel's passthrough registration alive while the file is open.
        _backing: Option<Arc<BackingId>>,
    },
    /// A snapshot taken at opendir, shared so that a reply is built without holding the map.
    Dir(Arc<Vec<DirEntry>>),
    Control,
    Status(Vec<u8>),
}

pub struct SipFs {
    pub(crate) engine: Arc<Engine>,
    pub(crate) mountpoint: String,
    pub(crate) owner: Owner,
    pub(crate) handles: DashMap<u64, Handle>,
    next_fh: AtomicU64,
    /// Asked for by the mount options; only Linux's FUSE has passthrough.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) want_passthrough: bool,
    pub(crate) passthrough: AtomicBool,
    /// One passthrough registration per inode, shared by its open handles (the kernel wants
    /// a single backing file per inode).
    backing_ids: Mutex<HashMap<u64, Weak<BackingId>>>,
    pub(crate) progress: Arc<fs_core::control::FlushProgress>,
    /// Set once the session exists: how a refresh tells the kernel what changed.
    pub(crate) notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    started_ns: i64,
    pub(crate) requests: Requests,
    /// Extended attributes are served (`MountOptions::xattrs`), and the kernel leaves the
    /// dropping of set-ID bits to the mount (`owners::killed_mode`, which also runs without:
    /// the kernel's own FUSE rules are older than a local disk's).
    pub(crate) xattrs: bool,
}

pub(crate) fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

pub(crate) fn reply_empty(reply: ReplyEmpty, r: Result<(), FsError>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// A name from the kernel, as the engine keeps it: any bytes (`fs_core::os_names`).
pub(crate) fn name_str(name: &OsStr) -> Result<std::borrow::Cow<'_, str>, Errno> {
    Ok(fs_core::os_names::from_os(name))
}

impl SipFs {
    pub fn new(engine: Arc<Engine>, mountpoint: String, passthrough: bool) -> SipFs {
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        SipFs {
            engine,
            mountpoint,
            owner: Owner { uid, gid },
            handles: DashMap::new(),
            next_fh: AtomicU64::new(1),
            want_passthrough: passthrough,
            passthrough: AtomicBool::new(false),
            backing_ids: Mutex::new(HashMap::new()),
            progress: Arc::default(),
            notifier: Arc::default(),
            started_ns: ns_of(SystemTime::now()),
            requests: Requests::default(),
            xattrs: true,
        }
    }

    /// Gives an entry `req` just created in `parent` to its creator, when that is not the
    /// user who mounted (`owners::of_new`); returns its attributes as they are then.
    pub(crate) fn give_to_creator(&self, req: &Request, parent: u64, a: Attr) -> Attr {
        let Ok(p) = self.engine.getattr(parent) else {
            return a;
        };
        let Some(owner) = owners::of_new(req, &p, self.owner) else {
            return a;
        };
        let set = SetAttr {
            owner: Some(owner),
            ..Default::default()
        };
        match self.engine.setattr(a.ino, set) {
            Ok(a) => a,
            Err(e) => {
                warn!(ino = a.ino, error = %e, "could not record who created an entry");
                a
            }
        }
    }

    /// A write by `req` to `ino` is about to happen: its set-ID bits go (`owners::killed_mode`).
    pub(crate) fn kill_privs(&self, req: &Request, ino: u64) {
        if let Some(mode) = self.killed_mode(req, ino, owners::Kill::Write) {
            let set = SetAttr {
                mode: Some(mode),
                ..Default::default()
            };
            if let Err(e) = self.engine.setattr(ino, set) {
                warn!(ino, error = %e, "could not clear set-ID bits before a write");
            }
        }
    }

    /// The mode `what` by `req` leaves `ino` with, if it changes (`owners::killed_mode`).
    /// Nearly no file has set-ID bits: those without are told apart from memory, so an open
    /// for writing costs no stat of the cache copy for this.
    pub(crate) fn killed_mode(&self, req: &Request, ino: u64, what: owners::Kill) -> Option<u32> {
        if self.engine.mode_of(ino)? & 0o6000 == 0 {
            return None;
        }
        let a = self.engine.getattr(ino).ok()?;
        owners::killed_mode(&a, req, what, self.owner)
    }

    pub(crate) fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.insert(fh, h);
        fh
    }

    pub(crate) fn attr_of(&self, ino: u64) -> Result<fuser::FileAttr, Errno> {
        if let Some(a) = control_dir::attr(ino, self.started_ns) {
            return Ok(file_attr(&a, self.owner));
        }
        match self.engine.getattr(ino) {
            Ok(a) => Ok(file_attr(&a, self.owner)),
            // Deleted while a program has it open: the open file still answers.
            Err(FsError::StaleInode(_)) => self
                .with_open_handle(ino, |fh| self.engine.getattr_handle(fh))
                .map(|a| file_attr(&a, self.owner)),
            Err(e) => Err(errno(&e)),
        }
    }

    /// Runs `f` on some open handle of `ino` (for files deleted while open).
    pub(crate) fn with_open_handle<T>(
        &self,
        ino: u64,
        f: impl FnOnce(&EngineHandle) -> Result<T, FsError>,
    ) -> Result<T, Errno> {
        for h in self.handles.iter() {
            if let Handle::File { fh, .. } = h.value() {
                if fh.ino == ino {
                    return f(fh).map_err(|e| errno(&e));
                }
            }
        }
        Err(Errno::ENOENT)
    }

    /// The status JSON with what only the mount knows: where it is and whether passthrough works.
    pub(crate) fn status_json(&self) -> Vec<u8> {
        let mut extra = serde_json::Map::new();
        extra.insert("mountpoint".into(), self.mountpoint.clone().into());
        extra.insert(
            "passthrough".into(),
            self.passthrough.load(Ordering::Relaxed).into(),
        );
        extra.insert("kernel_requests".into(), self.requests.to_json());
        fs_core::control::status_json(&self.engine, &self.progress, extra)
    }

    /// Tells the kernel what a refresh changed, so that its long cache times never show an
    /// entry the share no longer has. Safe from a write to the control file: the kernel holds
    /// no lock of the folders concerned for it (libfuse's rule for these notifications).
    pub(crate) fn invalidate(&self, report: &fs_core::RefreshReport) {
        let Some(n) = self.notifier.get() else { return };
        for inv in &report.invalidate {
            // A name or inode the kernel does not hold is nothing to forget (ENOENT).
            let _ = match inv {
                fs_core::Invalidation::Entry { parent, name } => {
                    n.inval_entry(INodeNo(*parent), OsStr::new(name))
                }
                fs_core::Invalidation::Inode(ino) => n.inval_inode(INodeNo(*ino), 0, 0),
            };
        }
    }

    pub(crate) fn run_control(&self, data: &[u8]) -> Result<(), Errno> {
        let tell = |r: &fs_core::RefreshReport| self.invalidate(r);
        match fs_core::control::serve_write(&self.engine, &self.progress, data, &tell) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Errno::EIO),
            Err(e) => {
                warn!("{e}");
                Err(Errno::EINVAL)
            }
        }
    }

    /// Feeds the entries of an open folder from `offset` on to `add`, "." and ".." first,
    /// as (next offset, inode, type, name), until `add` says the reply is full.
    pub(crate) fn each_entry(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileType, &str) -> bool,
    ) -> Result<(), Errno> {
        let entries = match self.handles.get(&fh).as_deref() {
            Some(Handle::Dir(e)) => e.clone(),
            _ => return Err(Errno::EBADF),
        };
        let parent = if ino == control_dir::DIR_INO {
            ROOT_INO
        } else {
            self.engine
                .path_of(ino)
                .and_then(|p| p.parent())
                .and_then(|p| self.engine.resolve(&p).ok())
                .unwrap_or(ROOT_INO)
        };
        let dots = [
            (ino, FileType::Directory, "."),
            (parent, FileType::Directory, ".."),
        ];
        let all = dots.into_iter().chain(
            entries
                .iter()
                .map(|e| (e.ino, crate::attr::file_type(e.kind), e.name.as_str())),
        );
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if add((i + 1) as u64, ino, kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// Registers the cached file with the kernel so reads and writes bypass this process.
    /// `file` is the handle's read-write descriptor; the kernel keeps its own reference.
    pub(crate) fn backing_for(
        &self,
        ino: u64,
        file: &std::fs::File,
        reply_open: impl FnOnce(&std::fs::File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        let mut ids = self.backing_ids.lock();
        if let Some(id) = ids.get(&ino).and_then(Weak::upgrade) {
            return Some(id);
        }
        match reply_open(file) {
            Ok(id) => {
                let id = Arc::new(id);
                ids.insert(ino, Arc::downgrade(&id));
                ids.retain(|_, w| w.strong_count() > 0);
                Some(id)
            }
            Err(e) => {
                debug!(ino, error = %e, "kernel refused passthrough; serving this file directly");
                None
            }
        }
    }
}

/// An attribute's value (or a list of names): its size when asked with room for nothing, as
/// `getxattr(2)` does; ERANGE when the room given is too small.
pub(crate) fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32)
    } else if (size as usize) < data.len() {
        reply.error(Errno::from_i32(libc::ERANGE))
    } else {
        reply.data(data)
    }
}
