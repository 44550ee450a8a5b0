//! Big files fetched in ranges.
//!
//! A file of at least `EngineOptions::range_fetch_min` bytes opened for reading is not copied
//! whole before the open returns. It gets a **part file** (`CACHE/parts/INO-STAMP`) of its full
//! size, sparse where nothing was fetched yet, and a read waits only for the blocks it asks
//! for. The rest is filled in the background (`Engine::start_background_fill`), one chunk at
//! a time, or at once by whatever needs the whole file (an open for writing, a truncate to a
//! size other than 0, a prefetch): those go through [`Engine::ensure_cached`], which finishes
//! the part file before it goes on.
//!
//! The ranges present are recorded in the journal (`partial` table) only after the part file's
//! data was synced: a crash, even of the machine, may lose fetched bytes but never makes a hole
//! count as data. After a restart the recorded ranges are trusted and the rest is fetched
//! again.
//!
//! A part file is outside the cache tree until it is whole: nothing that works on the tree
//! (renames, flushes, eviction, the mirror) ever sees a file with holes. Once whole, and once
//! the share is seen to still hold the version it was fetched from, it is renamed into the
//! tree and the node counts as cached, exactly as after a whole fetch. If the share's copy
//! changed meanwhile, the part file is dropped and the next open fetches again; what was read
//! from it was the share's content at the time, as a read straight from the share would have
//! been.
//!
//! Mirror mode never fetches in ranges: its folder holds whole files for programs that read
//! it without sipfs in between.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use super::*;
use crate::backing::ShareReader;
use crate::journal::PartialRow;
use crate::ranges::Ranges;

/// A file being fetched in ranges, shared by its open handles and the background filler.
pub(crate) struct Partial {
    pub ino: Ino,
    /// The part file: full size, holes where nothing was fetched yet.
    file: File,
    /// Its name in `CACHE/parts/`, as the journal records it.
    name: String,
    /// The share's version being fetched.
    base: Stat,
    state: Mutex<PartState>,
    /// Opened on first need: at creation, or on the first read after a restart.
    reader: Mutex<Option<Arc<dyn ShareReader>>>,
    /// Handed to the background filler already.
    queued: AtomicBool,
}

#[derive(Default)]
struct PartState {
    /// Bytes in the part file.
    present: Ranges,
    /// Bytes synced to disk and recorded in the journal as present.
    recorded: Ranges,
    /// No longer the node's copy to be (installed, or given up because the share's copy
    /// changed or the file went away). Open handles still read through it.
    dropped: bool,
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("ino", &self.ino)
            .field("name", &self.name)
            .field("size", &self.base.size)
            .finish_non_exhaustive()
    }
}

impl Partial {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Every byte is in the part file.
    pub fn is_whole(&self) -> bool {
        self.state.lock().present.covers(0..self.base.size)
    }

    fn row(&self, ranges: Ranges) -> PartialRow {
        PartialRow {
            ino: self.ino,
            file: self.name.clone(),
            size: self.base.size,
            mtime_ns: self.base.mtime_ns,
            mode: self.base.mode,
            ranges,
        }
    }
}

/// The engine's ranged copies, by inode.
pub(crate) type Partials = Mutex<HashMap<Ino, Arc<Partial>>>;

/// Why a ranged copy was not installed.
enum Unfinished {
    /// Not whole yet.
    Holes,
    /// Dropped: the file changed on the share, went away here, or got a copy otherwise.
    Dropped,
}

impl Engine {
    pub(super) fn parts_dir(&self) -> PathBuf {
        self.opts.cache_dir.join("parts")
    }

    /// Takes up the ranged copies an earlier run left, trusting only the ranges it recorded;
    /// part files without a usable record are removed.
    pub(super) fn load_partials(&self) -> Result<(), FsError> {
        let dir = self.parts_dir();
        fs::create_dir_all(&dir).map_err(|e| JournalError::Io {
            path: dir.clone(),
            source: e,
        })?;
        let rows = self.journal.lock().load_partials()?;
        let mut kept = HashMap::new();
        let mut stale = Vec::new();
        {
            let tree = self.state.read();
            for row in rows {
                let usable = tree
                    .get(row.ino)
                    .is_some_and(|n| n.kind == EntryKind::File && !n.cached)
                    && OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(dir.join(&row.file))
                        .ok()
                        .filter(|f| f.metadata().is_ok_and(|m| m.len() == row.size))
                        .map(|file| {
                            let p = Partial {
                                ino: row.ino,
                                file,
                                name: row.file.clone(),
                                base: Stat {
                                    kind: EntryKind::File,
                                    size: row.size,
                                    mtime_ns: row.mtime_ns,
                                    mode: row.mode,
                                    rdev: 0,
                                },
                                state: Mutex::new(PartState {
                                    present: row.ranges.clone(),
                                    recorded: row.ranges.clone(),
                                    dropped: false,
                                }),
                                reader: Mutex::new(None),
                                queued: AtomicBool::new(false),
                            };
                            kept.insert(row.ino, Arc::new(p));
                        })
                        .is_some();
                if !usable {
                    stale.push(row);
                }
            }
        }
        self.persist(|tx| {
            for row in &stale {
                journal::delete_partial(tx, row.ino, &row.file)?;
            }
            Ok(())
        })?;
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !kept.values().any(|p: &Arc<Partial>| p.name == name) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        debug!(
            kept = kept.len(),
            dropped = stale.len(),
            "ranged copies taken up"
        );
        *self.partials.lock() = kept;
        Ok(())
    }

    /// The ranged copy of `ino`, made now if the file is big enough and not cached; `None`
    /// when it is fetched whole (small, cached, a folder, mirror mode).
    pub(super) fn partial_for(&self, ino: Ino) -> Result<Option<Arc<Partial>>, FsError> {
        if self.local_changes.get().is_some() {
            return Ok(None);
        }
        if let Some(p) = self.partials.lock().get(&ino) {
            return Ok(Some(p.clone()));
        }
        let (path, share) = {
            let tree = self.state.read();
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            if node.kind != EntryKind::File || node.cached || !node.in_share {
                return Ok(None);
            }
            if node.size < self.opts.range_fetch_min {
                return Ok(None);
            }
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            let Some(share) = share_path_of(&path, &tree.ops) else {
                return Ok(None);
            };
            (path, share)
        };
        let _span = info_span!("open_ranged", path = %path).entered();
        // The stat (the version the copy is of) and the open wait for the share together: a
        // program waiting for its first bytes pays one round trip for both, not two.
        let (st, reader) = std::thread::scope(|s| {
            let open = s.spawn(|| self.opts.retry.run(|| self.backing.open_read(&share)));
            let st = self.opts.retry.run(|| self.backing.stat(&share));
            (
                st,
                open.join().expect("opening a file on the share panicked"),
            )
        });
        let st = st
            .map_err(|e| FsError::share(&path, e))?
            .ok_or_else(|| FsError::NotFound(path.clone()))?;
        if st.kind != EntryKind::File || st.size < self.opts.range_fetch_min {
            return Ok(None);
        }
        let reader = reader.map_err(|e| FsError::share(&path, e))?;
        let name = format!("{ino}-{}", now_ns());
        let file_path = self.parts_dir().join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&file_path)
            .and_then(|f| f.set_len(st.size).map(|_| f))
            .map_err(io_err(&path))?;
        let p = Arc::new(Partial {
            ino,
            file,
            name,
            base: st,
            state: Mutex::new(PartState::default()),
            reader: Mutex::new(Some(reader)),
            queued: AtomicBool::new(false),
        });
        let mut partials = self.partials.lock();
        if let Some(other) = partials.get(&ino) {
            // Another open made one meanwhile: use that one.
            let _ = fs::remove_file(&file_path);
            return Ok(Some(other.clone()));
        }
        self.persist(|tx| journal::put_partial(tx, &p.row(Ranges::new())))?;
        partials.insert(ino, p.clone());
        debug!(size = st.size, "fetching in ranges");
        Ok(Some(p))
    }

    /// Makes bytes `want` of the ranged copy present (clamped to its size), fetching the
    /// missing blocks around them.
    pub(super) fn fill(&self, p: &Partial, want: Range<u64>) -> Result<(), FsError> {
        let size = p.base.size;
        let block = self.opts.range_block.max(1);
        let start = want.start.min(size) / block * block;
        let end = want
            .end
            .min(size)
            .div_ceil(block)
            .saturating_mul(block)
            .min(size);
        if start >= end {
            return Ok(());
        }
        let missing = p.state.lock().present.missing(start..end);
        let chunk = self.fill_chunk();
        for m in missing {
            let mut at = m.start;
            while at < m.end {
                let len = (m.end - at).min(chunk);
                self.fetch_range(p, at..at + len)?;
                at += len;
            }
        }
        Ok(())
    }

    /// The most one share read asks for.
    fn fill_chunk(&self) -> u64 {
        self.opts.range_block.max(1).saturating_mul(16)
    }

    fn fetch_range(&self, p: &Partial, r: Range<u64>) -> Result<(), FsError> {
        let path = self.path_of(p.ino).unwrap_or_default();
        let reader = self.reader_of(p, &path)?;
        let len = (r.end - r.start) as usize;
        let data = self
            .opts
            .retry
            .run(|| reader.read_range(r.start, len))
            .map_err(|e| FsError::share(&path, e))?;
        if data.len() != len {
            // Shorter than when it was opened: someone is rewriting it on the share.
            self.discard(p);
            return Err(FsError::share(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file got shorter on the share while it was read",
                ),
            ));
        }
        write_all_at(&p.file, &data, r.start).map_err(io_err(&path))?;
        p.state.lock().present.insert(r);
        // The part file holds disk from now on: room is made as for a whole fetch.
        self.after_fetch(p.ino, len as u64);
        Ok(())
    }

    fn reader_of(&self, p: &Partial, path: &RelPath) -> Result<Arc<dyn ShareReader>, FsError> {
        if let Some(r) = &*p.reader.lock() {
            return Ok(r.clone());
        }
        let share = {
            let tree = self.state.read();
            share_path_of(path, &tree.ops).ok_or_else(|| FsError::NotFound(path.clone()))?
        };
        let r = self
            .opts
            .retry
            .run(|| self.backing.open_read(&share))
            .map_err(|e| FsError::share(path, e))?;
        Ok(p.reader.lock().get_or_insert(r).clone())
    }

    /// Records what is present as durable: the part file's data is synced first, so the
    /// journal never says a range is there that a crash could take back.
    fn record_ranges(&self, p: &Partial) -> Result<(), FsError> {
        let present = {
            let st = p.state.lock();
            if st.dropped || st.present == st.recorded {
                return Ok(());
            }
            st.present.clone()
        };
        let path = self.path_of(p.ino).unwrap_or_default();
        p.file.sync_data().map_err(io_err(&path))?;
        let mut st = p.state.lock();
        if st.dropped {
            return Ok(());
        }
        self.persist(|tx| journal::put_partial(tx, &p.row(present.clone())))?;
        st.recorded = present;
        Ok(())
    }

    /// Puts a whole ranged copy into the cache tree, where a whole fetch puts its copy.
    fn install_partial(&self, p: &Partial) -> Result<Result<(), Unfinished>, FsError> {
        if p.state.lock().dropped {
            return Ok(Err(Unfinished::Dropped));
        }
        if !p.is_whole() {
            return Ok(Err(Unfinished::Holes));
        }
        let (path, share) = {
            let tree = self.state.read();
            let share = tree
                .get(p.ino)
                .filter(|n| !n.cached)
                .and_then(|_| tree.path_of(p.ino))
                .and_then(|path| share_path_of(&path, &tree.ops).map(|s| (path, s)));
            match share {
                Some(v) => v,
                None => {
                    drop(tree);
                    self.discard(p);
                    return Ok(Err(Unfinished::Dropped));
                }
            }
        };
        let now = self
            .opts
            .retry
            .run(|| self.backing.stat(&share))
            .map_err(|e| FsError::share(&path, e))?;
        if now != Some(p.base) {
            debug!(path = %path, "changed on the share while fetched in ranges; fetching again");
            self.discard(p);
            return Ok(Err(Unfinished::Dropped));
        }
        p.file.sync_data().map_err(io_err(&path))?;
        let from = self.parts_dir().join(&p.name);
        let mut st = p.state.lock();
        if st.dropped {
            return Ok(Err(Unfinished::Dropped));
        }
        // As a whole fetch does: where the share may keep whole seconds, the version is
        // known by its content too (`flush/capture.rs`).
        let hash = self
            .share_times
            .maybe_coarse()
            .then(|| crate::mirror::stamp::hash_file(&from).ok())
            .flatten();
        let base = crate::pending::Base::of(&p.base);
        let installed = self.install_copy(p.ino, &from, &p.base, |tx| {
            if let Some(h) = hash {
                journal::put_base_hash(tx, p.ino, base, h)?;
            }
            journal::delete_partial(tx, p.ino, &p.name)
        })?;
        st.dropped = true;
        drop(st);
        self.forget_partial(p);
        if !installed {
            let _ = fs::remove_file(&from);
            let _ = self.persist(|tx| journal::delete_partial(tx, p.ino, &p.name));
            return Ok(Err(Unfinished::Dropped));
        }
        Ok(Ok(()))
    }

    /// Gives up a ranged copy: its part file and record go. Handles open on it still read,
    /// through the part file they hold and the share file it holds.
    pub(super) fn discard(&self, p: &Partial) {
        let mut st = p.state.lock();
        if st.dropped {
            return;
        }
        st.dropped = true;
        let _ = fs::remove_file(self.parts_dir().join(&p.name));
        if let Err(e) = self.persist(|tx| journal::delete_partial(tx, p.ino, &p.name)) {
            warn!(error = %e, "could not forget a ranged copy; the next start will");
        }
        drop(st);
        self.forget_partial(p);
    }

    fn forget_partial(&self, p: &Partial) {
        let mut partials = self.partials.lock();
        if partials
            .get(&p.ino)
            .is_some_and(|q| std::ptr::eq(Arc::as_ptr(q), p))
        {
            partials.remove(&p.ino);
        }
    }

    /// Drops the ranged copy of `ino`, if any: its share version is no longer the one wanted
    /// (a refresh found a newer one; a truncating open replaced the content).
    pub(crate) fn drop_partial(&self, ino: Ino) {
        let p = self.partials.lock().get(&ino).cloned();
        if let Some(p) = p {
            self.discard(&p);
        }
    }

    /// Fetches what a ranged copy of `ino` still lacks and installs it. `Ok(false)` when it
    /// was dropped instead (the caller fetches again).
    pub(super) fn finish_partial(&self, p: &Partial) -> Result<bool, FsError> {
        self.fill(p, 0..p.base.size)?;
        match self.install_partial(p)? {
            Ok(()) => Ok(true),
            Err(Unfinished::Dropped) => Ok(false),
            // Filled just now; only a concurrent drop can leave holes, and that is seen next.
            Err(Unfinished::Holes) => Ok(false),
        }
    }

    /// One step of filling the ranged copy of `ino`: the next missing chunk fetched and made
    /// durable, or, once whole, the copy installed. Returns whether more remains. What the
    /// background filler does; tests call it to fill in an order of their own.
    pub fn fill_step(&self, ino: Ino) -> Result<bool, FsError> {
        let p = self.partials.lock().get(&ino).cloned();
        match p {
            Some(p) => self.step(&p),
            None => Ok(false),
        }
    }

    fn step(&self, p: &Partial) -> Result<bool, FsError> {
        if p.state.lock().dropped {
            return Ok(false);
        }
        let next = p
            .state
            .lock()
            .present
            .missing(0..p.base.size)
            .into_iter()
            .next();
        match next {
            Some(m) => {
                let end = m.end.min(m.start + self.fill_chunk());
                self.fill(p, m.start..end)?;
                self.record_ranges(p)?;
                Ok(true)
            }
            None => {
                // Installed or dropped, nothing more to fill either way.
                let _ = self.install_partial(p)?;
                Ok(false)
            }
        }
    }

    /// Inodes with a ranged copy that is not whole yet, for status and tests.
    pub fn partial_files(&self) -> Vec<(Ino, u64, u64)> {
        // Not under the map's lock: `discard` takes a copy's state, then the map.
        let all: Vec<Arc<Partial>> = self.partials.lock().values().cloned().collect();
        let mut v: Vec<_> = all
            .iter()
            .map(|p| (p.ino, p.state.lock().present.bytes(), p.base.size))
            .collect();
        v.sort_unstable();
        v
    }

    /// Starts the thread that fills ranged copies while nobody waits for them. The mount and
    /// the drive start it; the engine's own tests fill with [`Engine::fill_step`] instead, so
    /// that their outcome depends on their seed alone.
    pub fn start_background_fill(self: &Arc<Self>) {
        let (tx, rx) = mpsc::channel::<Arc<Partial>>();
        if self.filler.set(tx).is_err() {
            return;
        }
        let engine = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("sipfs-fill".into())
            .spawn(move || {
                while let Ok(p) = rx.recv() {
                    loop {
                        let Some(e) = engine.upgrade() else {
                            return;
                        };
                        match e.step(&p) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(err) => {
                                // Left as it is: the next read fetches what it needs and
                                // queues it again.
                                warn!(ino = p.ino, error = %err, "background fetch stopped");
                                p.queued.store(false, Ordering::SeqCst);
                                break;
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "no thread for background fetches; files are fetched as read");
        }
    }

    /// Hands a ranged copy to the background filler, once.
    pub(super) fn queue_fill(&self, p: &Arc<Partial>) {
        if let Some(tx) = self.filler.get() {
            if !p.queued.swap(true, Ordering::SeqCst) {
                let _ = tx.send(p.clone());
            }
        }
    }
}
