//! The FUSE `Filesystem` over the engine: each kernel request, translated (the adapter's state
//! and what requests share are in `state.rs`).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fs_core::ignore_rules::CONTROL_DIR;
use fs_core::{DirEntry, EntryKind, FsError, SetAttr, XattrMode, ROOT_INO};
use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};
use tracing::info;

use crate::attr::{file_attr, ns_of};
use crate::control_dir;
use crate::owners;
use crate::platform::{allocate, no_replace};
use crate::requests::Req;
use crate::state::{errno, name_str, reply_empty, reply_xattr, Handle, SipFs, TTL};

impl Filesystem for SipFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let caps = config.capabilities();
        let mut want = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_DO_READDIRPLUS;
        // Flags that exist in Linux's FUSE only. macFUSE gives bits 27 to 31 other meanings
        // (bit 28, KILLPRIV_V2's, is FUSE_EXCHANGE_DATA there) and has no passthrough.
        #[cfg(target_os = "linux")]
        {
            // Direct-I/O opens (files still fetched in ranges) may be mapped shared: the kernel
            // then reads the mapping's pages through us, as any other read of them.
            want |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
            if self.xattrs {
                // Set-ID bits are taken away here (`owners::killed_mode`); otherwise the kernel
                // asks for `security.capability` before every write to see whether to.
                want |= InitFlags::FUSE_HANDLE_KILLPRIV_V2;
            }
            if self.want_passthrough && caps.contains(InitFlags::FUSE_PASSTHROUGH) {
                // The cache lives on a local disk file system: one level of stacking.
                if config.set_max_stack_depth(1).is_ok() {
                    want |= InitFlags::FUSE_PASSTHROUGH;
                    self.passthrough.store(true, Ordering::Relaxed);
                }
            }
        }
        // macFUSE forwards a program's F_PREALLOCATE only when asked to (`fallocate` below).
        #[cfg(target_os = "macos")]
        {
            want |= InitFlags::FUSE_ALLOCATE;
        }
        if !self.passthrough.load(Ordering::Relaxed) {
            // Without passthrough, let the kernel gather small writes (they cannot be combined).
            want |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        let _ = config.add_capabilities(want & caps);
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_time_granularity(Duration::from_nanos(1));
        info!(
            passthrough = self.passthrough.load(Ordering::Relaxed),
            "mounted"
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.requests.count(Req::Lookup);
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        let name: &str = &name;
        let ino = if parent.0 == ROOT_INO && control_dir::lookup_at_root(name).is_some() {
            control_dir::lookup_at_root(name)
        } else if parent.0 == control_dir::DIR_INO {
            match control_dir::lookup(name) {
                Some(i) => Some(i),
                None => return reply.error(Errno::ENOENT),
            }
        } else {
            None
        };
        let attr = match ino {
            Some(i) => self.attr_of(i),
            // fuser declares the macOS volume case-insensitive: `Data.CSV` finds `data.csv`.
            #[cfg(target_os = "macos")]
            None => self
                .engine
                .lookup_ignoring_case(parent.0, name)
                .map(|a| file_attr(&a, self.owner))
                .map_err(|e| errno(&e)),
            #[cfg(not(target_os = "macos"))]
            None => self
                .engine
                .lookup(parent.0, name)
                .map(|a| file_attr(&a, self.owner))
                .map_err(|e| errno(&e)),
        };
        match attr {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            // A negative entry: the kernel remembers that the name is free, so a create after
            // a failed open asks once, not twice. A refresh that adds the name tells it. Not on
            // macOS: there a name free now may be taken by another's case (`DATA.csv` made
            // after `data.csv` was asked for), which a remembered miss would hide.
            Err(e) if e == Errno::ENOENT && ino.is_none() && cfg!(not(target_os = "macos")) => {
                reply.entry(&TTL, &crate::attr::negative_entry(), Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.requests.count(Req::Getattr);
        if let Some(fh) = fh {
            if let Some(h) = self.handles.get(&fh.0) {
                if let Handle::File { fh, .. } = &*h {
                    if let Ok(a) = self.engine.getattr_handle(fh) {
                        return reply.attr(&TTL, &file_attr(&a, self.owner));
                    }
                }
            }
        }
        match self.attr_of(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.requests.count(Req::Setattr);
        if control_dir::is_control(ino.0) {
            // `echo flush > control` truncates first: nothing to do.
            return match self.attr_of(ino.0) {
                Ok(a) => reply.attr(&TTL, &a),
                Err(e) => reply.error(e),
            };
        }
        let ns = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => ns_of(t),
            TimeOrNow::Now => ns_of(SystemTime::now()),
        };
        let owner = match (uid, gid) {
            (None, None) => None,
            _ => {
                let now = match self.engine.getattr(ino.0) {
                    Ok(a) => a,
                    Err(e) => return reply.error(errno(&e)),
                };
                match owners::chown(req, &now, self.owner, uid, gid) {
                    Ok(o) => Some(o),
                    Err(e) => return reply.error(Errno::from_i32(e)),
                }
            }
        };
        // A chown, or a truncate by someone other than root, takes the set-ID bits away
        // (unless the same call sets a mode).
        let kill = if owner.is_some() {
            Some(owners::Kill::Chown)
        } else {
            size.map(|_| owners::Kill::Write)
        };
        let mode = match (mode, kill) {
            (None, Some(what)) => self.killed_mode(req, ino.0, what),
            (m, _) => m,
        };
        let req = SetAttr {
            owner,
            size,
            mode,
            mtime_ns: mtime.map(ns),
            atime_ns: atime.map(ns),
        };
        let r = match self.engine.setattr(ino.0, req) {
            Err(FsError::StaleInode(_)) => {
                self.with_open_handle(ino.0, |fh| self.engine.setattr_handle(fh, req))
            }
            r => r.map_err(|e| errno(&e)),
        };
        match r {
            Ok(a) => reply.attr(&TTL, &file_attr(&a, self.owner)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.requests.count(Req::Other);
        match self.engine.readlink(ino.0) {
            Ok(t) => reply.data(&fs_core::os_names::to_bytes(&t)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.requests.count(Req::Create);
        // FIFOs, sockets and device nodes too: the engine keeps them, and a flush writes them
        // where the share can hold them (`EntryKind::is_special`).
        let Some(kind) = EntryKind::from_mode(mode) else {
            return reply.error(Errno::EINVAL);
        };
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::EINVAL);
        };
        let name: &str = &name;
        match self.engine.mknod(
            parent.0,
            name,
            kind,
            mode & !umask & 0o7777,
            u64::from(rdev),
        ) {
            Ok(a) => {
                let a = self.give_to_creator(req, parent.0, a);
                reply.entry(&TTL, &file_attr(&a, self.owner), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.requests.count(Req::Mkdir);
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::EINVAL);
        };
        let name: &str = &name;
        match self.engine.mkdir(parent.0, name, mode & !umask) {
            Ok(a) => {
                let a = self.give_to_creator(req, parent.0, a);
                reply.entry(&TTL, &file_attr(&a, self.owner), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Req::Unlink);
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        let name: &str = &name;
        reply_empty(reply, self.engine.unlink(parent.0, name))
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Req::Rmdir);
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::ENOENT);
        };
        let name: &str = &name;
        reply_empty(reply, self.engine.rmdir(parent.0, name))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.requests.count(Req::Create);
        let (Ok(name), Ok(target)) = (name_str(link_name), name_str(target.as_os_str())) else {
            return reply.error(Errno::EINVAL);
        };
        let name: &str = &name;
        match self.engine.symlink(parent.0, name, &target) {
            Ok(a) => {
                let a = self.give_to_creator(req, parent.0, a);
                reply.entry(&TTL, &file_attr(&a, self.owner), Generation(0))
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Rename);
        let Some(noreplace) = no_replace(flags) else {
            return reply.error(Errno::EINVAL);
        };
        let (Ok(name), Ok(newname)) = (name_str(name), name_str(newname)) else {
            return reply.error(Errno::EINVAL);
        };
        let (name, newname): (&str, &str) = (&name, &newname);
        reply_empty(
            reply,
            self.engine
                .rename(parent.0, name, newparent.0, newname, noreplace),
        )
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.requests.count(Req::Create);
        if control_dir::is_control(ino.0) {
            return reply.error(Errno::EPERM);
        }
        let Ok(name) = name_str(newname) else {
            return reply.error(Errno::EINVAL);
        };
        let name: &str = &name;
        match self.engine.link(ino.0, newparent.0, name) {
            Ok(a) => reply.entry(&TTL, &file_attr(&a, self.owner), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.requests.count(Req::Open);
        match ino.0 {
            control_dir::CONTROL_INO => {
                let fh = self.add_handle(Handle::Control);
                return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            control_dir::STATUS_INO => {
                let fh = self.add_handle(Handle::Status(self.status_json()));
                return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            control_dir::NEVER_INDEX_INO => {
                let fh = self.add_handle(Handle::Status(Vec::new()));
                return reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            control_dir::DIR_INO => return reply.error(Errno::EISDIR),
            _ => {}
        }
        let write = flags.0 & libc::O_ACCMODE != libc::O_RDONLY;
        let truncate = flags.0 & libc::O_TRUNC != 0;
        if write {
            self.kill_privs(req, ino.0);
        }
        let passthrough = self.passthrough.load(Ordering::Relaxed);
        let opened = if passthrough {
            self.engine.open_file_for_kernel(ino.0, write, truncate)
        } else {
            self.engine.open_file(ino.0, write, truncate)
        };
        let efh = match opened {
            Ok(f) => f,
            Err(e) => return reply.error(errno(&e)),
        };
        // A file still being fetched in ranges has holes the kernel must not read: its reads
        // come here, which fetches what they need. Direct I/O keeps such an open out of the
        // kernel's cached I/O mode, which would refuse passthrough opens of the file once it
        // is whole; without passthrough the page cache (and read-ahead) serves it as usual.
        let partial = efh.is_partial();
        let backing = (passthrough && !partial)
            .then(|| self.backing_for(ino.0, efh.file(), |f| reply.open_backing(f)))
            .flatten();
        let id = backing.clone();
        let fh = self.add_handle(Handle::File {
            fh: efh,
            _backing: backing,
        });
        let flags = if partial && passthrough {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::empty()
        };
        match id {
            Some(id) => reply.opened_passthrough(FileHandle(fh), flags, &id),
            None => reply.opened(FileHandle(fh), flags),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.requests.count(Req::Create);
        let Ok(name) = name_str(name) else {
            return reply.error(Errno::EINVAL);
        };
        let name: &str = &name;
        if parent.0 == ROOT_INO && name == CONTROL_DIR {
            return reply.error(Errno::EEXIST);
        }
        let (a, efh) = match self.engine.create(parent.0, name, mode & !umask) {
            Ok(v) => v,
            Err(e) => return reply.error(errno(&e)),
        };
        let a = self.give_to_creator(req, parent.0, a);
        let backing = self
            .passthrough
            .load(Ordering::Relaxed)
            .then(|| self.backing_for(a.ino, efh.file(), |f| reply.open_backing(f)))
            .flatten();
        let id = backing.clone();
        let fh = self.add_handle(Handle::File {
            fh: efh,
            _backing: backing,
        });
        let attr = file_attr(&a, self.owner);
        match id {
            Some(id) => reply.created_passthrough(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
                &id,
            ),
            None => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.requests.count(Req::Other);
        let Some(h) = self.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        match &*h {
            Handle::File { fh, .. } => match self.engine.read(fh, offset, size as usize) {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(&e)),
            },
            Handle::Status(data) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end])
            }
            _ => reply.error(Errno::EBADF),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.requests.count(Req::Other);
        if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            self.kill_privs(req, ino.0);
        }
        let Some(h) = self.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        match &*h {
            Handle::File { fh, .. } => match self.engine.write(fh, offset, data) {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(&e)),
            },
            Handle::Control => {
                drop(h);
                match self.run_control(data) {
                    Ok(()) => reply.written(data.len() as u32),
                    Err(e) => reply.error(e),
                }
            }
            _ => reply.error(Errno::EBADF),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Flush);
        // Nothing to do at close (writes reach the cache file at once, and sipfs keeps no
        // POSIX locks). ENOSYS tells the kernel so for good: no FLUSH round trip at each close.
        reply.error(Errno::ENOSYS)
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Release);
        if let Some((_, Handle::File { fh, .. })) = self.handles.remove(&fh.0) {
            self.engine.release(fh);
        }
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Fsync);
        let Some(h) = self.handles.get(&fh.0) else {
            return reply.ok();
        };
        match &*h {
            Handle::File { fh, .. } => match self.engine.fsync(fh, datasync) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            },
            _ => reply.ok(),
        }
    }

    /// No ioctl applies to a file here; ENOTTY is what a local disk answers (to `isatty`,
    /// which Python asks of every file it opens).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.requests.count(Req::Ioctl);
        reply.error(Errno::ENOTTY)
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.requests.count(Req::Opendir);
        let entries = if ino.0 == control_dir::DIR_INO {
            [control_dir::CONTROL_INO, control_dir::STATUS_INO]
                .iter()
                .zip([
                    fs_core::control::CONTROL_FILE,
                    fs_core::control::STATUS_FILE,
                ])
                .map(|(&ino, name)| DirEntry {
                    name: name.into(),
                    ino,
                    kind: EntryKind::File,
                })
                .collect()
        } else {
            // A snapshot per open directory: listings stay consistent while it is read.
            match self.engine.readdir(ino.0) {
                Ok(e) => e,
                Err(e) => return reply.error(errno(&e)),
            }
        };
        let fh = self.add_handle(Handle::Dir(Arc::new(entries)));
        reply.opened(FileHandle(fh), FopenFlags::empty())
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.requests.count(Req::Readdir);
        let r = self.each_entry(ino.0, fh.0, offset, |next, ino, kind, name| {
            reply.add(INodeNo(ino), next, kind, fs_core::os_names::to_os(name))
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// A listing with each entry's attributes (the kernel asks for this when it expects
    /// stats of the entries to follow, as in `ls -l`, `find -printf` or `os.walk`): the
    /// LOOKUP or GETATTR each entry would cost afterwards is saved.
    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.requests.count(Req::Readdirplus);
        let r = self.each_entry(ino.0, fh.0, offset, |next, ino, _kind, name| {
            // An entry removed since the folder was opened has no attributes: left out.
            match self.attr_of(ino) {
                Ok(attr) => {
                    let name = fs_core::os_names::to_os(name);
                    reply.add(INodeNo(ino), next, name, &TTL, &attr, Generation(0))
                }
                Err(_) => false,
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Other);
        self.handles.remove(&fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Fsync);
        reply_empty(reply, self.engine.sync_journal())
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.requests.count(Req::Other);
        // The space programs can use is the local disk's, where the cache is.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let path = std::ffi::CString::new(self.engine.cache_tree().as_os_str().as_encoded_bytes())
            .unwrap_or_default();
        // SAFETY: path is a valid C string and st a valid out-pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
        }
        reply.statfs(
            st.f_blocks as u64,
            st.f_bfree as u64,
            st.f_bavail as u64,
            st.f_files as u64,
            st.f_ffree as u64,
            st.f_bsize as u32,
            255,
            st.f_frsize as u32,
        )
    }

    // Extended attributes are the engine's (`engine/xattrs.rs`): kept in the cache and written
    // back where the share keeps them. The kernel checks who may use which namespace first.
    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Xattr);
        if !self.xattrs {
            // Told once, the kernel answers "not supported" itself from then on.
            return reply.error(Errno::ENOSYS);
        }
        if control_dir::is_control(ino.0) {
            return reply.error(Errno::EPERM);
        }
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Any
        };
        reply_empty(
            reply,
            self.engine
                .setxattr(ino.0, name.as_encoded_bytes(), value, mode),
        )
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.requests.count(Req::Xattr);
        if !self.xattrs {
            // Told once, the kernel answers "not supported" itself from then on.
            return reply.error(Errno::ENOSYS);
        }
        if control_dir::is_control(ino.0) {
            return reply.error(Errno::from_i32(libc::ENODATA));
        }
        match self.engine.getxattr(ino.0, name.as_encoded_bytes()) {
            Ok(v) => reply_xattr(reply, size, &v),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.requests.count(Req::Xattr);
        if !self.xattrs {
            // Told once, the kernel answers "not supported" itself from then on.
            return reply.error(Errno::ENOSYS);
        }
        if control_dir::is_control(ino.0) {
            return reply_xattr(reply, size, &[]);
        }
        match self.engine.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for n in names {
                    list.extend_from_slice(&n);
                    list.push(0);
                }
                reply_xattr(reply, size, &list)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.requests.count(Req::Xattr);
        if !self.xattrs {
            // Told once, the kernel answers "not supported" itself from then on.
            return reply.error(Errno::ENOSYS);
        }
        if control_dir::is_control(ino.0) {
            return reply.error(Errno::EPERM);
        }
        reply_empty(
            reply,
            self.engine.removexattr(ino.0, name.as_encoded_bytes()),
        )
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.requests.count(Req::Other);
        let Some(h) = self.handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let Handle::File { fh, .. } = &*h else {
            return reply.error(Errno::EBADF);
        };
        if let Err(e) = allocate(fh.file(), offset, length, mode) {
            return reply.error(Errno::from(e));
        }
        self.engine.note_attr_change(ino.0);
        match self.engine.note_external_write(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }
}
