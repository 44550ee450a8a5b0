//! The engine's file operations: opening (fetching first if needed), reading, writing,
//! syncing, and changing attributes.

use super::*;

impl Engine {
    pub(crate) fn mark_content_dirty(&self, ino: Ino) -> Result<(), FsError> {
        if !needs_marking(&self.state.read(), ino) {
            return Ok(());
        }
        let mut tree = self.state.write();
        if !needs_marking(&tree, ino) {
            return Ok(());
        }
        let n = tree.get_mut(ino).expect("checked");
        n.content_dirty = true;
        n.gen += 1;
        tree.reindex(ino);
        self.put_linked(&mut tree, ino)
    }

    /// Writes node `ino` to the journal with its other names (hard links), which take the
    /// entry's shared state from it first.
    pub(crate) fn put_linked(&self, tree: &mut Tree, ino: Ino) -> Result<(), FsError> {
        let others = tree.share_with_links(ino);
        self.record_nodes(tree, std::iter::once(ino).chain(others))
    }

    /// Opens a file, fetching it from the share on first open. With `truncate`, nothing is
    /// fetched.
    pub fn open_file(&self, ino: Ino, write: bool, truncate: bool) -> Result<FileHandle, FsError> {
        self.open_cached(ino, write, truncate, write)
    }

    /// Opens a file as [`Engine::open_file`] does, with a read-write descriptor even when the
    /// program only reads: the kernel does its I/O on that descriptor (FUSE passthrough), and
    /// one registration serves every later open of the file, readers and writers alike. The
    /// handle still refuses writes unless `write`.
    pub fn open_file_for_kernel(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
    ) -> Result<FileHandle, FsError> {
        self.open_cached(ino, write, truncate, true)
    }

    fn open_cached(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
        rw_descriptor: bool,
    ) -> Result<FileHandle, FsError> {
        if !self.counts_opens() {
            return self.open_counted(ino, write, truncate, rw_descriptor);
        }
        // Counted open before the copy is made sure of, so that no eviction takes it between
        // the fetch and the open; taken back unless a handle comes out.
        let live = self.live(ino);
        self.count_open(&live);
        let opened = self.open_counted(ino, write, truncate, rw_descriptor);
        if opened.is_err() {
            self.uncount_open(&live);
        }
        opened
    }

    fn open_counted(
        &self,
        ino: Ino,
        write: bool,
        truncate: bool,
        rw_descriptor: bool,
    ) -> Result<FileHandle, FsError> {
        if !write {
            if let Some(h) = self.open_ranged(ino)? {
                return Ok(h);
            }
        }
        for _ in 0..3 {
            if truncate && write {
                self.make_empty_if_uncached(ino)?;
            } else {
                self.ensure_cached(ino)?;
            }
            let path = self.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            let opened = OpenOptions::new()
                .read(true)
                .write(rw_descriptor)
                .truncate(truncate && write)
                .open(self.cache_path(&path));
            let file = match opened {
                Ok(f) => f,
                // Renamed or refreshed away between the fetch and the open: try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(FsError::cache(&path, e)),
            };
            if write {
                let live = self.live(ino);
                live.writers.fetch_add(1, Ordering::SeqCst);
                live.gen.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = self.mark_content_dirty(ino) {
                    live.writers.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            }
            return Ok(FileHandle {
                ino,
                file,
                writable: write,
                partial: None,
            });
        }
        Err(FsError::NotFound(self.path_of(ino).unwrap_or_default()))
    }

    /// A read-only handle on the ranged copy of a big uncached file (`partial.rs`), which
    /// the background filler completes once the first read is served; `None` when the file is
    /// read whole.
    fn open_ranged(&self, ino: Ino) -> Result<Option<FileHandle>, FsError> {
        let Some(p) = self.partial_for(ino)? else {
            return Ok(None);
        };
        if p.is_whole() {
            // Filled already (but not installed): installed by the fetch the caller makes.
            return Ok(None);
        }
        let file = p
            .file()
            .try_clone()
            .map_err(io_err(&self.path_of(ino).unwrap_or_default()))?;
        Ok(Some(FileHandle {
            ino,
            file,
            writable: false,
            partial: Some(p),
        }))
    }

    /// Gives an uncached file an empty cache copy, for opens that truncate it anyway.
    fn make_empty_if_uncached(&self, ino: Ino) -> Result<(), FsError> {
        // A ranged copy in the making is of content about to be replaced.
        self.drop_partial(ino);
        let mut tree = self.state.write();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
        if node.is_dir() {
            return Err(FsError::IsDir(path));
        }
        if node.cached {
            return Ok(());
        }
        let (mode, atime) = (node.mode, node.atime_ns());
        self.in_cache_dir(&path, |at| {
            create_cache_file(at, mode)?;
            // An access time set here before (held by the node while uncached) goes to the
            // cache file, which holds it from now on, as a fetched copy's does.
            match atime {
                Some(a) => filetime::set_file_atime(at, backing::filetime_from_ns(a)),
                None => Ok(()),
            }
        })
        .map_err(io_err(&path))?;
        let n = tree.get_mut(ino).expect("exists");
        n.set_atime_ns(None);
        n.cached = true;
        n.content_dirty = true;
        n.gen += 1;
        tree.reindex(ino);
        self.put_linked(&mut tree, ino)
    }

    pub fn read(&self, fh: &FileHandle, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        if let Some(p) = &fh.partial {
            self.fill(p, offset..offset.saturating_add(size as u64))?;
            // Only now: begun at the open, the background fetch of the file's start would
            // share the link with the read a program waits for, and fetch its blocks twice.
            self.queue_fill(p);
        }
        let mut buf = vec![0u8; size];
        let mut done = 0;
        while done < size {
            let n = read_at(&fh.file, &mut buf[done..], offset + done as u64)
                .map_err(|e| FsError::cache(&RelPath::root(), e))?;
            if n == 0 {
                break;
            }
            done += n;
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write(&self, fh: &FileHandle, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        if !fh.writable {
            return Err(FsError::InvalidArgument("file not open for writing".into()));
        }
        // Dirty before the bytes land, so a crash never leaves changed but clean content;
        // and again after, in case a flush cleared the flag meanwhile.
        self.mark_content_dirty(fh.ino)?;
        write_all_at(&fh.file, data, offset)
            .map_err(|e| FsError::cache(&self.path_of(fh.ino).unwrap_or_default(), e))?;
        self.live(fh.ino).gen.fetch_add(1, Ordering::SeqCst);
        self.mark_content_dirty(fh.ino)?;
        Ok(data.len())
    }

    /// Records that data reached the file by a path the engine did not see (FUSE passthrough).
    /// Records a change of the file's attributes made on its cache copy directly (an
    /// `fallocate`): its ctime is now. The cache copy's own ctime may lag by a clock tick
    /// (the disk keeps fine-grained times only for files asked since, and the kernel answers
    /// most stats of the mount from its own cache), so the node holds it.
    pub fn note_attr_change(&self, ino: Ino) {
        let mut tree = self.state.write();
        if let Some(n) = tree.get_mut(ino) {
            n.ctime_ns = now_ns();
        }
        tree.share_with_links(ino);
    }

    pub fn note_external_write(&self, ino: Ino) -> Result<(), FsError> {
        self.live(ino).gen.fetch_add(1, Ordering::SeqCst);
        self.mark_content_dirty(ino)
    }

    pub fn release(&self, fh: FileHandle) {
        if !fh.writable && !self.counts_opens() {
            return;
        }
        let live = self.live(fh.ino);
        if fh.writable {
            live.gen.fetch_add(1, Ordering::SeqCst);
            live.writers.fetch_sub(1, Ordering::SeqCst);
        }
        self.uncount_open(&live);
    }

    /// Makes the file's data and the journal durable, as fsync on a local disk does.
    /// A program's fsync: its file, and the journal if anything was committed since its last
    /// sync (a new file's entry, say), both at once (see [`journal::LogSync`]).
    pub fn fsync(&self, fh: &FileHandle, datasync: bool) -> Result<(), FsError> {
        let sync_file = || {
            if datasync {
                fh.file.sync_data()
            } else {
                fh.file.sync_all()
            }
        };
        let log = self.journal.lock().sync_needed()?;
        let (file, log_result) = match &log {
            None => (sync_file(), Ok(())),
            Some(log) => self.log_syncer.run_beside(log, sync_file),
        };
        file.map_err(|e| FsError::cache(&self.path_of(fh.ino).unwrap_or_default(), e))?;
        if let Some(log) = log {
            let mut j = self.journal.lock();
            log_result.map_err(|e| j.log_error(e))?;
            j.synced(&log);
        }
        Ok(())
    }

    pub fn sync_journal(&self) -> Result<(), FsError> {
        Ok(self.journal.lock().sync()?)
    }

    pub fn setattr(&self, ino: Ino, req: SetAttr) -> Result<Attr, FsError> {
        let path = self.path_of(ino).ok_or(FsError::StaleInode(ino))?;
        let _span = info_span!("setattr", path = %path).entered();
        if let Some(size) = req.size {
            if size == 0 {
                self.make_empty_if_uncached(ino)?;
            } else {
                self.ensure_cached(ino)?;
            }
            self.mark_content_dirty(ino)?;
            let path = self.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            let f = OpenOptions::new()
                .write(true)
                .open(self.cache_path(&path))
                .map_err(io_err(&path))?;
            f.set_len(size).map_err(io_err(&path))?;
            self.live(ino).gen.fetch_add(1, Ordering::SeqCst);
            self.note_attr_change(ino);
        }
        if req.mtime_ns.is_some()
            || req.mode.is_some()
            || req.atime_ns.is_some()
            || req.owner.is_some()
        {
            let mut tree = self.state.write();
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            let on_cache_file = node.kind == EntryKind::File && node.cached;
            if on_cache_file {
                let cache = self.cache_path(&path);
                if let Some(m) = req.mode {
                    set_cache_mode_checked(&cache, m).map_err(io_err(&path))?;
                }
                set_times(&cache, req.atime_ns, req.mtime_ns).map_err(io_err(&path))?;
            }
            let n = tree.get_mut(ino).expect("exists");
            if let Some(m) = req.mode {
                n.mode = m & 0o7777;
            }
            if let Some(t) = req.mtime_ns {
                n.mtime_ns = t;
            }
            if !on_cache_file {
                // Until the first read, the node holds it; an access time alone is nothing
                // to write back.
                n.set_atime_ns(req.atime_ns.or(n.atime_ns()));
            }
            if let Some(o) = req.owner {
                n.set_owner(Some(o));
            }
            n.ctime_ns = now_ns();
            n.meta_dirty |= req.mtime_ns.is_some() || req.mode.is_some() || req.owner.is_some();
            n.gen += 1;
            tree.reindex(ino);
            self.put_linked(&mut tree, ino)?;
        }
        self.getattr(ino)
    }
}

/// Whether a write to `ino` finds a name of it not marked changed yet: the node itself, or for
/// a hard-linked entry any of its names (each is written to the share).
fn needs_marking(tree: &Tree, ino: Ino) -> bool {
    match tree.get(ino) {
        None => false,
        Some(n) if n.shown().is_none() => !n.content_dirty,
        Some(_) => tree
            .link_members(ino)
            .iter()
            .any(|&i| tree.get(i).is_some_and(|n| !n.content_dirty)),
    }
}
