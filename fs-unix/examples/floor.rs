//! The floor sipfs's metadata figures are measured against: a FUSE file system that does
//! nothing but pass each call to a local folder, with the kernel set up exactly as sipfs sets
//! it up (passthrough, the same threads, 60 s entry and attribute times, negative entries,
//! READDIRPLUS, no FLUSH and no xattr round trips). It keeps no journal and no cache state,
//! so whatever it costs per call is what the kernel's round trips cost on this machine, and
//! the difference to sipfs is sipfs's own work.
//!
//! Only for `scripts/bench`: `floor FOLDER MOUNTPOINT` serves until unmounted.

#[cfg(target_os = "linux")]
fn main() -> std::io::Result<()> {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the floor file system runs on Linux only");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::ffi::{OsStr, OsString};
    use std::fs::{self, File, OpenOptions};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use fuser::{
        BackingId, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
        Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags,
        RenameFlags, ReplyAttr, ReplyCreate, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
        ReplyEntry, ReplyOpen, Request, SessionACL, TimeOrNow,
    };
    use parking_lot::Mutex;

    const TTL: Duration = Duration::from_secs(60);

    /// Inode numbers handed out so far, both ways.
    #[derive(Default)]
    struct Inodes {
        path: HashMap<u64, PathBuf>,
        ino: HashMap<PathBuf, u64>,
    }

    /// An open file: its descriptor and its passthrough registration.
    type OpenFile = (File, Option<Arc<BackingId>>);
    /// An open folder's listing: inode, type, name.
    type Listing = Arc<Vec<(u64, FileType, OsString)>>;

    struct Floor {
        inodes: Mutex<Inodes>,
        next_ino: AtomicU64,
        open: Mutex<HashMap<u64, OpenFile>>,
        dirs: Mutex<HashMap<u64, Listing>>,
        next_fh: AtomicU64,
    }

    fn err(e: std::io::Error) -> Errno {
        Errno::from(e)
    }

    fn time(s: i64, ns: i64) -> SystemTime {
        if s >= 0 {
            UNIX_EPOCH + Duration::new(s as u64, ns as u32)
        } else {
            UNIX_EPOCH - Duration::from_secs(s.unsigned_abs()) + Duration::from_nanos(ns as u64)
        }
    }

    fn kind(md: &fs::Metadata) -> FileType {
        let t = md.file_type();
        if t.is_dir() {
            FileType::Directory
        } else if t.is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        }
    }

    fn attr(ino: u64, md: &fs::Metadata) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: md.size(),
            blocks: md.blocks(),
            atime: time(md.atime(), md.atime_nsec()),
            mtime: time(md.mtime(), md.mtime_nsec()),
            ctime: time(md.ctime(), md.ctime_nsec()),
            crtime: time(md.mtime(), md.mtime_nsec()),
            kind: kind(md),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn negative() -> FileAttr {
        let mut a = attr(0, &fs::metadata("/").expect("/ exists"));
        a.ino = INodeNo(0);
        a
    }

    impl Floor {
        fn path(&self, ino: u64) -> Result<PathBuf, Errno> {
            self.inodes
                .lock()
                .path
                .get(&ino)
                .cloned()
                .ok_or(Errno::ENOENT)
        }

        fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
            Ok(self.path(parent)?.join(name))
        }

        fn ino_of(&self, p: &PathBuf) -> u64 {
            let mut t = self.inodes.lock();
            if let Some(&i) = t.ino.get(p) {
                return i;
            }
            let i = self.next_ino.fetch_add(1, Ordering::Relaxed);
            t.ino.insert(p.clone(), i);
            t.path.insert(i, p.clone());
            i
        }

        fn forget_path(&self, p: &PathBuf) {
            let mut t = self.inodes.lock();
            if let Some(i) = t.ino.remove(p) {
                t.path.remove(&i);
            }
        }

        /// Removes `parent/name` with `remove` and forgets its inode.
        fn remove(
            &self,
            parent: INodeNo,
            name: &OsStr,
            remove: impl FnOnce(&PathBuf) -> std::io::Result<()>,
            reply: ReplyEmpty,
        ) {
            match self.child(parent.0, name).map(|p| (remove(&p), p)) {
                Ok((Ok(()), p)) => {
                    self.forget_path(&p);
                    reply.ok()
                }
                Ok((Err(e), _)) => reply.error(err(e)),
                Err(e) => reply.error(e),
            }
        }

        fn add_open(&self, f: File, b: Option<Arc<BackingId>>) -> u64 {
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            self.open.lock().insert(fh, (f, b));
            fh
        }
    }

    impl Filesystem for Floor {
        fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
            let caps = config.capabilities();
            let mut want = InitFlags::FUSE_PARALLEL_DIROPS
                | InitFlags::FUSE_CACHE_SYMLINKS
                | InitFlags::FUSE_DO_READDIRPLUS;
            if caps.contains(InitFlags::FUSE_PASSTHROUGH) && config.set_max_stack_depth(1).is_ok() {
                want |= InitFlags::FUSE_PASSTHROUGH;
            }
            let _ = config.add_capabilities(want & caps);
            let _ = config.set_max_write(1 << 20);
            let _ = config.set_max_readahead(1 << 20);
            let _ = config.set_time_granularity(Duration::from_nanos(1));
            Ok(())
        }

        fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
            let p = match self.child(parent.0, name) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            match fs::symlink_metadata(&p) {
                Ok(md) => reply.entry(&TTL, &attr(self.ino_of(&p), &md), Generation(0)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    reply.entry(&TTL, &negative(), Generation(0))
                }
                Err(e) => reply.error(err(e)),
            }
        }

        fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
            if let Some(fh) = fh {
                if let Some((f, _)) = self.open.lock().get(&fh.0) {
                    if let Ok(md) = f.metadata() {
                        return reply.attr(&TTL, &attr(ino.0, &md));
                    }
                }
            }
            match self.path(ino.0).map(fs::symlink_metadata) {
                Ok(Ok(md)) => reply.attr(&TTL, &attr(ino.0, &md)),
                Ok(Err(e)) => reply.error(err(e)),
                Err(e) => reply.error(e),
            }
        }

        fn setattr(
            &self,
            _req: &Request,
            ino: INodeNo,
            mode: Option<u32>,
            _uid: Option<u32>,
            _gid: Option<u32>,
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
            let p = match self.path(ino.0) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let r = (|| {
                if let Some(m) = mode {
                    fs::set_permissions(&p, fs::Permissions::from_mode(m))?;
                }
                if let Some(s) = size {
                    OpenOptions::new().write(true).open(&p)?.set_len(s)?;
                }
                let ft = |t: TimeOrNow| match t {
                    TimeOrNow::SpecificTime(t) => filetime::FileTime::from_system_time(t),
                    TimeOrNow::Now => filetime::FileTime::now(),
                };
                if atime.is_some() || mtime.is_some() {
                    let md = fs::symlink_metadata(&p)?;
                    filetime::set_symlink_file_times(
                        &p,
                        atime
                            .map(ft)
                            .unwrap_or_else(|| filetime::FileTime::from_last_access_time(&md)),
                        mtime.map(ft).unwrap_or_else(|| {
                            filetime::FileTime::from_last_modification_time(&md)
                        }),
                    )?;
                }
                fs::symlink_metadata(&p)
            })();
            match r {
                Ok(md) => reply.attr(&TTL, &attr(ino.0, &md)),
                Err(e) => reply.error(err(e)),
            }
        }

        fn mkdir(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            reply: ReplyEntry,
        ) {
            let p = match self.child(parent.0, name) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let r = fs::create_dir(&p)
                .and_then(|()| fs::set_permissions(&p, fs::Permissions::from_mode(mode & !umask)))
                .and_then(|()| fs::symlink_metadata(&p));
            match r {
                Ok(md) => reply.entry(&TTL, &attr(self.ino_of(&p), &md), Generation(0)),
                Err(e) => reply.error(err(e)),
            }
        }

        fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            self.remove(parent, name, |p| fs::remove_file(p), reply)
        }

        fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
            self.remove(parent, name, |p| fs::remove_dir(p), reply)
        }

        fn rename(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            newparent: INodeNo,
            newname: &OsStr,
            _flags: RenameFlags,
            reply: ReplyEmpty,
        ) {
            let (from, to) = match (self.child(parent.0, name), self.child(newparent.0, newname)) {
                (Ok(a), Ok(b)) => (a, b),
                _ => return reply.error(Errno::ENOENT),
            };
            match fs::rename(&from, &to) {
                Ok(()) => {
                    // Only whole files are renamed in the benchmark's workloads.
                    self.forget_path(&to);
                    let mut t = self.inodes.lock();
                    if let Some(i) = t.ino.remove(&from) {
                        t.ino.insert(to.clone(), i);
                        t.path.insert(i, to);
                    }
                    reply.ok()
                }
                Err(e) => reply.error(err(e)),
            }
        }

        fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
            let p = match self.path(ino.0) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let f = match OpenOptions::new()
                .read(true)
                .write(true)
                .truncate(flags.0 & libc::O_TRUNC != 0)
                .open(&p)
            {
                Ok(f) => f,
                Err(e) => return reply.error(err(e)),
            };
            match reply.open_backing(&f) {
                Ok(id) => {
                    let id = Arc::new(id);
                    let fh = self.add_open(f, Some(id.clone()));
                    reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
                }
                Err(_) => {
                    let fh = self.add_open(f, None);
                    reply.opened(FileHandle(fh), FopenFlags::empty())
                }
            }
        }

        fn create(
            &self,
            _req: &Request,
            parent: INodeNo,
            name: &OsStr,
            mode: u32,
            umask: u32,
            _flags: i32,
            reply: ReplyCreate,
        ) {
            let p = match self.child(parent.0, name) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let f = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode & !umask)
                .open(&p)
            {
                Ok(f) => f,
                Err(e) => return reply.error(err(e)),
            };
            let md = match f.metadata() {
                Ok(md) => md,
                Err(e) => return reply.error(err(e)),
            };
            let a = attr(self.ino_of(&p), &md);
            match reply.open_backing(&f) {
                Ok(id) => {
                    let id = Arc::new(id);
                    let fh = self.add_open(f, Some(id.clone()));
                    reply.created_passthrough(
                        &TTL,
                        &a,
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                        &id,
                    )
                }
                Err(_) => {
                    let fh = self.add_open(f, None);
                    reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
                }
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
            self.open.lock().remove(&fh.0);
            reply.ok()
        }

        fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
            let p = match self.path(ino.0) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let rd = match fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) => return reply.error(err(e)),
            };
            let mut list = vec![
                (ino.0, FileType::Directory, OsString::from(".")),
                (ino.0, FileType::Directory, OsString::from("..")),
            ];
            for e in rd.flatten() {
                let k = match e.file_type() {
                    Ok(t) if t.is_dir() => FileType::Directory,
                    Ok(t) if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                list.push((self.ino_of(&e.path()), k, e.file_name()));
            }
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            self.dirs.lock().insert(fh, Arc::new(list));
            reply.opened(FileHandle(fh), FopenFlags::empty())
        }

        fn readdir(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectory,
        ) {
            let Some(list) = self.dirs.lock().get(&fh.0).cloned() else {
                return reply.error(Errno::EBADF);
            };
            for (i, (ino, k, name)) in list.iter().enumerate().skip(offset as usize) {
                if reply.add(INodeNo(*ino), (i + 1) as u64, *k, name) {
                    break;
                }
            }
            reply.ok()
        }

        fn readdirplus(
            &self,
            _req: &Request,
            ino: INodeNo,
            fh: FileHandle,
            offset: u64,
            mut reply: ReplyDirectoryPlus,
        ) {
            let Some(list) = self.dirs.lock().get(&fh.0).cloned() else {
                return reply.error(Errno::EBADF);
            };
            let Ok(dir) = self.path(ino.0) else {
                return reply.error(Errno::ENOENT);
            };
            for (i, (ino, _, name)) in list.iter().enumerate().skip(offset as usize) {
                let p = if i < 2 { dir.clone() } else { dir.join(name) };
                let Ok(md) = fs::symlink_metadata(&p) else {
                    continue;
                };
                let a = attr(*ino, &md);
                if reply.add(INodeNo(*ino), (i + 1) as u64, name, &TTL, &a, Generation(0)) {
                    break;
                }
            }
            reply.ok()
        }

        fn releasedir(
            &self,
            _req: &Request,
            _ino: INodeNo,
            fh: FileHandle,
            _flags: OpenFlags,
            reply: ReplyEmpty,
        ) {
            self.dirs.lock().remove(&fh.0);
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
            let r = match self.open.lock().get(&fh.0) {
                Some((f, _)) if datasync => f.sync_data(),
                Some((f, _)) => f.sync_all(),
                None => Ok(()),
            };
            match r {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(err(e)),
            }
        }
    }

    pub fn main() -> std::io::Result<()> {
        let args: Vec<String> = std::env::args().collect();
        let [_, folder, mountpoint] = &args[..] else {
            eprintln!("usage: floor FOLDER MOUNTPOINT");
            std::process::exit(2);
        };
        let root = fs::canonicalize(folder)?;
        let fs = Floor {
            inodes: Mutex::new(Inodes::default()),
            next_ino: AtomicU64::new(2),
            open: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        };
        {
            let mut t = fs.inodes.lock();
            t.path.insert(1, root.clone());
            t.ino.insert(root, 1);
        }
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("floor".into()),
            MountOption::NoAtime,
            MountOption::DefaultPermissions,
        ];
        config.acl = SessionACL::Owner;
        // As sipfs mounts (fs-unix/src/mount.rs).
        config.n_threads = Some(4);
        config.clone_fd = true;
        fuser::Session::new(fs, std::path::Path::new(mountpoint), &config)?.run()
    }
}
