//! The engine: the namespace and file operations an adapter (FUSE, WinFsp, mirror) calls.
//!
//! Locks are always taken in this order: `flush_lock`, then `state`, then `journal`. No lock is
//! held while the share is contacted for a listing or a fetch, so a slow share never blocks
//! operations on entries that are already cached.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use rusqlite::Transaction;
use tracing::{debug, info_span, warn};

use crate::backing::{self, Backing, EntryKind, Stat};
use crate::error::{FsError, JournalError};
use crate::ignore_rules::{IgnoreRules, CONTROL_DIR, IGNORE_FILE};
use crate::journal::{self, Journal};
use crate::names;
use crate::pending::{share_path_of, Base, NsOp};
use crate::relpath::{check_name, RelPath};
use crate::retry::RetryPolicy;
use crate::tree::{Ino, Name, Node, Tree, ROOT_INO};

/// How an engine is set up.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Local folder holding the cache tree, the journal and temporary files.
    pub cache_dir: PathBuf,
    /// What the cache belongs to; a cache is refused for any other share.
    pub backing_id: String,
    /// Share operations in flight at once during a flush, refresh or prefetch.
    pub parallelism: usize,
    /// Extra ignore rules (gitignore syntax), on top of the defaults and `.sipfsignore`.
    pub extra_ignore: Vec<String>,
    pub retry: RetryPolicy,
    /// The share follows Windows rules: names such as `CON` or `a:b` are refused, and two
    /// names that differ only in case are the same file. On for SMB shares.
    pub windows_share: bool,
    /// Where the cache tree lives when it is not `cache_dir/tree`: in mirror mode it is the
    /// mirror folder the user works in.
    pub tree_dir: Option<PathBuf>,
    /// For tests: a flush works through its files in an order drawn from this seed instead of
    /// the order they were found in. It stands in for the order parallel workers happen to
    /// finish in, which must never change what a flush does, so that a test's outcome depends
    /// on its seed alone.
    pub flush_order_seed: Option<u64>,
    /// Write the journal's log into its database (a checkpoint, which syncs to disk) from a
    /// background thread while the engine is idle, instead of inside whichever change happens
    /// to fill the log: a burst of changes then never waits for the disk. Off by default (a
    /// thread per engine); the mount, the drive and the mirror turn it on.
    pub idle_checkpoints: bool,
    /// Keep the cache at most this big by dropping the least recently opened clean copies
    /// (`evict.rs`); `None`: no limit.
    pub cache_max_bytes: Option<u64>,
}

impl EngineOptions {
    pub fn new(cache_dir: impl Into<PathBuf>, backing_id: impl Into<String>) -> Self {
        EngineOptions {
            cache_dir: cache_dir.into(),
            backing_id: backing_id.into(),
            parallelism: 8,
            extra_ignore: Vec::new(),
            retry: RetryPolicy::default(),
            windows_share: cfg!(windows),
            tree_dir: None,
            flush_order_seed: None,
            idle_checkpoints: false,
            cache_max_bytes: None,
        }
    }
}

/// Attributes of an entry, as an adapter reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub atime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
    /// Directories: 2 plus the number of subdirectories known.
    pub nlink: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Name,
    pub ino: Ino,
    pub kind: EntryKind,
}

/// Attribute changes requested by `setattr`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mtime_ns: Option<i64>,
    /// Kept in the cache, never written back (see `Node::atime_ns`).
    pub atime_ns: Option<i64>,
    pub mode: Option<u32>,
}

/// An open file: a handle on the cached copy in the cache tree.
#[derive(Debug)]
pub struct FileHandle {
    pub ino: Ino,
    file: File,
    writable: bool,
}

impl FileHandle {
    /// The cached file, for adapters that hand it to the kernel (FUSE passthrough).
    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }
}

/// Per-file counters of open files, outside the namespace lock so writes stay cheap.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Bumped after every write and on release of a writable handle.
    pub gen: AtomicU64,
    /// Writable handles open now. A file open for writing stays dirty after a flush, since
    /// (with FUSE passthrough) its writes are not seen one by one.
    pub writers: AtomicU32,
    /// Handles open now, readers included: an open file's copy is never evicted.
    pub opens: AtomicU32,
    /// When the file was last opened, on [`Engine::tick`]'s clock: eviction takes the oldest.
    pub last_open: AtomicU64,
}

pub struct Engine {
    pub(crate) backing: Arc<dyn Backing>,
    pub(crate) opts: EngineOptions,
    pub(crate) tree_dir: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) state: RwLock<Tree>,
    pub(crate) journal: Arc<Mutex<Journal>>,
    pub(crate) live: DashMap<Ino, Arc<Live>>,
    /// A logical clock for [`Live::last_open`].
    clock: AtomicU64,
    /// The cache's size as last counted, plus what was fetched since (`evict.rs`).
    pub(crate) cache_estimate: AtomicU64,
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) ignore: RwLock<IgnoreRules>,
    pub(crate) pool: rayon::ThreadPool,
    /// Set in mirror mode, where people change the cache tree directly.
    pub(crate) local_changes: std::sync::OnceLock<Arc<dyn LocalChanges>>,
    _cache_lock: File,
}

/// What a mirror folder knows and the engine does not: whether someone changed the cache tree
/// behind the engine's back since the engine last recorded it. A refresh never replaces or
/// removes such a copy, and a fetch never overwrites a file someone put in its place.
pub trait LocalChanges: Send + Sync {
    /// True when the cached entry at `path` (node `ino`) is not what the engine last recorded.
    fn changed(&self, ino: Ino, path: &RelPath) -> bool;
}

/// Whether a namespace change must still be made in the cache tree, or was made there already
/// by someone working in the mirror folder and is only being recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheSide {
    Apply,
    AlreadyDone,
}

#[cfg(unix)]
fn ctime_ns(md: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    md.ctime() * 1_000_000_000 + md.ctime_nsec()
}

#[cfg(unix)]
fn nlink(md: &fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    md.nlink() as u32
}

#[cfg(not(unix))]
fn nlink(_md: &fs::Metadata) -> u32 {
    1
}

#[cfg(not(unix))]
fn ctime_ns(md: &fs::Metadata) -> i64 {
    backing::mtime_ns(md)
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn io_err(path: &RelPath) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |e| FsError::cache(path, e)
}

impl Engine {
    /// Opens (or creates) the cache in `opts.cache_dir` for `backing`. Pending changes from an
    /// earlier run are picked up, and a flush interrupted by a crash is rolled forward when the
    /// share can be reached.
    pub fn open(backing: Arc<dyn Backing>, opts: EngineOptions) -> Result<Engine, FsError> {
        let _span = info_span!("open", cache = %opts.cache_dir.display()).entered();
        let tree_dir = opts
            .tree_dir
            .clone()
            .unwrap_or_else(|| opts.cache_dir.join("tree"));
        let tmp_dir = opts.cache_dir.join("tmp");
        for d in [&opts.cache_dir, &tree_dir, &tmp_dir] {
            fs::create_dir_all(d).map_err(|e| JournalError::Io {
                path: d.to_path_buf(),
                source: e,
            })?;
        }
        let cache_lock = lock_cache(&opts.cache_dir)?;
        // Left over from fetches that a crash interrupted.
        if let Ok(rd) = fs::read_dir(&tmp_dir) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut journal = Journal::open(&opts.cache_dir.join("journal.sqlite"))?;
        match journal.get_meta("backing")? {
            Some(recorded) if recorded != opts.backing_id => {
                return Err(JournalError::OtherBacking {
                    cache: opts.cache_dir.clone(),
                    recorded,
                    requested: opts.backing_id.clone(),
                }
                .into())
            }
            Some(_) => {}
            None => journal.set_meta("backing", &opts.backing_id)?,
        }
        let mut nodes = journal.load_nodes()?;
        if !nodes.iter().any(|n| n.ino == ROOT_INO) {
            let st = backing.stat(&RelPath::root()).ok().flatten();
            let mut root = Node::from_share(
                ROOT_INO,
                ROOT_INO,
                String::new(),
                &st.unwrap_or(Stat {
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime_ns: now_ns(),
                    mode: 0o755,
                }),
            );
            root.kind = EntryKind::Dir;
            journal.batch(|tx| journal::put_node(tx, &root))?;
            nodes.push(root);
        }
        let ops = journal.load_ops()?;
        let tree = Tree::from_nodes(nodes, ops);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.parallelism.max(1))
            .thread_name(|i| format!("sipfs-share-{i}"))
            .build()
            .expect("thread pool");
        let engine = Engine {
            backing,
            tree_dir,
            tmp_dir,
            state: RwLock::new(tree),
            journal: Arc::new(Mutex::new(journal)),
            live: DashMap::new(),
            clock: AtomicU64::new(1),
            cache_estimate: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            ignore: RwLock::new(IgnoreRules::defaults()),
            pool,
            opts,
            local_changes: std::sync::OnceLock::new(),
            _cache_lock: cache_lock,
        };
        engine.reload_ignore_rules();
        if engine.opts.idle_checkpoints {
            journal::checkpoint_when_idle(&engine.journal);
        }
        if let Err(e) = engine.recover_staged().map(|_| ()) {
            warn!(error = %e, "could not finish the interrupted flush yet; the next flush will");
        }
        Ok(engine)
    }

    pub fn backing(&self) -> &Arc<dyn Backing> {
        &self.backing
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// The folder that mirrors the project's layout with every cached file.
    pub fn cache_tree(&self) -> &Path {
        &self.tree_dir
    }

    /// Installs the mirror folder's change detector (once).
    pub fn set_local_changes(&self, detector: Arc<dyn LocalChanges>) {
        let _ = self.local_changes.set(detector);
    }

    /// True when someone changed the cached copy of `ino`, or of anything below it, directly in
    /// the cache tree (mirror mode) and the engine has not recorded it yet.
    pub(crate) fn changed_locally(&self, tree: &Tree, ino: Ino) -> bool {
        let Some(lc) = self.local_changes.get() else {
            return false;
        };
        std::iter::once(ino)
            .chain(tree.descendants(ino))
            .any(|i| tree.path_of(i).is_some_and(|p| lc.changed(i, &p)))
    }

    /// Re-reads `.sipfsignore` (from the cache when it is cached, else from the share).
    pub fn reload_ignore_rules(&self) {
        let rel = RelPath::new(IGNORE_FILE).expect("valid");
        let text = fs::read_to_string(rel.to_path(&self.tree_dir))
            .ok()
            .or_else(|| {
                let tmp = self.tmp_dir.join("sipfsignore");
                let r = self
                    .backing
                    .fetch(&rel, &tmp)
                    .ok()
                    .and_then(|_| fs::read_to_string(&tmp).ok());
                let _ = fs::remove_file(&tmp);
                r
            });
        match IgnoreRules::new(&self.opts.extra_ignore, text.as_deref()) {
            Ok(r) => *self.ignore.write() = r,
            Err(e) => warn!(error = %e, "ignoring an invalid rule set; the defaults stay in force"),
        }
    }

    pub fn is_ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        self.ignore.read().is_ignored(path, is_dir)
    }

    pub(crate) fn persist(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<(), JournalError>,
    ) -> Result<(), FsError> {
        self.journal.lock().batch(f).map_err(FsError::from)
    }

    /// Records one namespace change in one journal transaction — nodes written, nodes deleted,
    /// a logged change taken back, logged changes added — then appends the added ones to the
    /// in-memory log. Callers hold the state lock, so the log and the journal agree.
    fn record(
        &self,
        tree: &mut Tree,
        put: &[Ino],
        delete: &[Ino],
        drop_op: Option<i64>,
        ops: Vec<NsOp>,
    ) -> Result<(), FsError> {
        let mut seqs = Vec::with_capacity(ops.len());
        let t: &Tree = tree;
        self.persist(|tx| {
            for &i in delete {
                journal::delete_node(tx, i)?;
            }
            for n in put.iter().filter_map(|&i| t.get(i)) {
                journal::put_node(tx, n)?;
            }
            if let Some(s) = drop_op {
                journal::delete_op(tx, s)?;
            }
            for op in &ops {
                seqs.push(journal::push_op(tx, op)?);
            }
            Ok(())
        })?;
        tree.ops.extend(seqs.into_iter().zip(ops));
        Ok(())
    }

    pub(crate) fn live(&self, ino: Ino) -> Arc<Live> {
        self.live.entry(ino).or_default().clone()
    }

    /// Counts a handle of `ino` as open (until [`Engine::release`]) and the file as just used.
    fn count_open(&self, ino: Ino) -> Arc<Live> {
        let live = self.live(ino);
        live.opens.fetch_add(1, Ordering::SeqCst);
        self.mark_used(&live);
        live
    }

    fn mark_used(&self, live: &Live) {
        let now = self.clock.fetch_add(1, Ordering::SeqCst);
        live.last_open.store(now, Ordering::SeqCst);
    }

    pub(crate) fn cache_path(&self, p: &RelPath) -> PathBuf {
        p.to_path(&self.tree_dir)
    }

    // ----- reading the namespace -----

    fn attr_of(&self, tree: &Tree, node: &Node) -> Result<Attr, FsError> {
        if node.kind == EntryKind::File && node.cached {
            let path = tree
                .path_of(node.ino)
                .ok_or(FsError::StaleInode(node.ino))?;
            let md = fs::metadata(self.cache_path(&path)).map_err(io_err(&path))?;
            return Ok(Self::attr_from(tree, node, Some(&md)));
        }
        Ok(Self::attr_from(tree, node, None))
    }

    /// A node's attributes; `cached` is the metadata of its cached copy, whose size and times
    /// are the truth for cached files.
    fn attr_from(tree: &Tree, node: &Node, cached: Option<&fs::Metadata>) -> Attr {
        let mut a = Attr {
            ino: node.ino,
            kind: node.kind,
            size: node.size,
            mtime_ns: node.mtime_ns,
            atime_ns: node.atime_ns().unwrap_or(node.mtime_ns),
            ctime_ns: node.ctime_ns.max(node.mtime_ns),
            // The logical mode: the cache copy always stays readable and writable by sipfs.
            mode: node.mode,
            nlink: match &node.children {
                Some(_) => 2 + tree.subdir_count(node.ino),
                // A file; or a folder not listed yet, whose subfolders are not known: 1 says
                // so (`find` then never takes it for a leaf).
                None => 1,
            },
        };
        if let Some(md) = cached {
            a.size = md.len();
            a.mtime_ns = backing::mtime_ns(md);
            a.atime_ns = backing::atime_ns(md);
            a.ctime_ns = a.ctime_ns.max(ctime_ns(md));
        }
        a
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        self.attr_of(&tree, node)
    }

    /// Attributes through an open handle: never races with a rename, and still works after
    /// the file was deleted while open.
    pub fn getattr_handle(&self, fh: &FileHandle) -> Result<Attr, FsError> {
        let md = fh
            .file
            .metadata()
            .map_err(|e| FsError::cache(&RelPath::root(), e))?;
        let st = Stat::from_metadata(&md);
        let mode = self.state.read().get(fh.ino).map_or(st.mode, |n| n.mode);
        Ok(Attr {
            ino: fh.ino,
            kind: EntryKind::File,
            size: st.size,
            mtime_ns: st.mtime_ns,
            atime_ns: backing::atime_ns(&md),
            ctime_ns: ctime_ns(&md),
            mode,
            // 0 once deleted while open, as on a local disk.
            nlink: nlink(&md),
        })
    }

    /// `setattr` on an open file that was deleted meanwhile (it lives on until closed).
    pub fn setattr_handle(&self, fh: &FileHandle, req: SetAttr) -> Result<Attr, FsError> {
        let err = |e| FsError::cache(&RelPath::root(), e);
        if let Some(size) = req.size {
            fh.file.set_len(size).map_err(err)?;
        }
        if req.mtime_ns.is_some() || req.atime_ns.is_some() {
            let (a, m) = (
                req.atime_ns.map(backing::filetime_from_ns),
                req.mtime_ns.map(backing::filetime_from_ns),
            );
            filetime::set_file_handle_times(&fh.file, a, m).map_err(err)?;
        }
        self.getattr_handle(fh)
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        check_name(name)?;
        self.ensure_listed(parent)?;
        let tree = self.state.read();
        let ino = tree
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(self.child_path(&tree, parent, name)))?;
        self.attr_of(&tree, tree.get(ino).expect("child exists"))
    }

    fn child_path(&self, tree: &Tree, parent: Ino, name: &str) -> RelPath {
        tree.path_of(parent).unwrap_or_default().join(name)
    }

    pub fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
        self.ensure_listed(ino)?;
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        let children = node
            .children
            .as_ref()
            .ok_or_else(|| FsError::NotDir(tree.path_of(ino).unwrap_or_default()))?;
        Ok(children
            .iter()
            .map(|(name, &i)| DirEntry {
                name: name.clone(),
                ino: i,
                kind: tree.get(i).map(|n| n.kind).unwrap_or(EntryKind::File),
            })
            .collect())
    }

    pub fn path_of(&self, ino: Ino) -> Option<RelPath> {
        self.state.read().path_of(ino)
    }

    /// The inode at `path`, listing directories on the way as needed.
    pub fn resolve(&self, path: &RelPath) -> Result<Ino, FsError> {
        loop {
            let r = self.state.read().resolve(path);
            match r {
                Ok(Some(i)) => return Ok(i),
                Ok(None) => return Err(FsError::NotFound(path.clone())),
                Err(dir) => self.ensure_listed(dir)?,
            }
        }
    }

    /// Loads a directory's listing from the share on first visit.
    pub(crate) fn ensure_listed(&self, ino: Ino) -> Result<(), FsError> {
        let (path, share) = {
            let tree = self.state.read();
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            if !node.is_dir() {
                return Err(FsError::NotDir(path));
            }
            if node.children.is_some() {
                return Ok(());
            }
            let share = share_path_of(&path, &tree.ops);
            (path, share)
        };
        let _span = info_span!("list", path = %path).entered();
        let listing = match &share {
            None => Vec::new(),
            Some(sp) => self
                .opts
                .retry
                .run(|| self.backing.list(sp))
                .map_err(|e| FsError::share(&path, e))?,
        };
        let mut tree = self.state.write();
        let Some(node) = tree.get(ino) else {
            return Ok(());
        };
        if node.children.is_some() {
            return Ok(());
        }
        let path = tree.path_of(ino).unwrap_or(path);
        let _ = fs::create_dir_all(self.cache_path(&path));
        tree.get_mut(ino).expect("exists").children = Some(Default::default());
        let mut added = Vec::with_capacity(listing.len());
        for (name, st) in listing {
            if names::is_temp_name(&name)
                || check_name(&name).is_err()
                || (ino == ROOT_INO && name == CONTROL_DIR)
            {
                continue;
            }
            let child = Node::from_share(tree.alloc_ino(), ino, name, &st);
            added.push(child.ino);
            tree.insert(child);
        }
        debug!(entries = added.len(), "listed");
        // Written from the tree (still locked), not from copies: a copy of each node of a big
        // folder would only be made to be freed.
        self.persist(|tx| {
            for &i in std::iter::once(&ino).chain(&added) {
                journal::put_node(tx, tree.get(i).expect("just listed"))?;
            }
            Ok(())
        })
    }

    /// Fetches a file's content into the cache on first open.
    pub(crate) fn ensure_cached(&self, ino: Ino) -> Result<(), FsError> {
        for _attempt in 0..3 {
            let (path, share) = {
                let tree = self.state.read();
                let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
                let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
                match node.kind {
                    EntryKind::Dir => return Err(FsError::IsDir(path)),
                    EntryKind::Symlink => return Ok(()),
                    EntryKind::File if node.cached => return Ok(()),
                    EntryKind::File => {}
                }
                let share =
                    share_path_of(&path, &tree.ops).ok_or(FsError::NotFound(path.clone()))?;
                (path, share)
            };
            let _span = info_span!("fetch", path = %path).entered();
            let tmp = self.tmp_dir.join(format!("fetch-{ino}-{}", now_ns()));
            let fetched = (|| {
                let before = self.opts.retry.run(|| self.backing.stat(&share))?;
                self.opts.retry.run(|| self.backing.fetch(&share, &tmp))?;
                let after = self.opts.retry.run(|| self.backing.stat(&share))?;
                Ok::<_, std::io::Error>((before, after))
            })();
            let (before, after) = match fetched {
                Ok(v) => v,
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(FsError::share(&path, e));
                }
            };
            let Some(st) = after else {
                let _ = fs::remove_file(&tmp);
                return Err(FsError::NotFound(path));
            };
            if before != after {
                // Someone wrote the file while we copied it: copy again.
                let _ = fs::remove_file(&tmp);
                continue;
            }
            let mut tree = self.state.write();
            let Some(node) = tree.get(ino) else {
                let _ = fs::remove_file(&tmp);
                return Ok(());
            };
            // A time or mode set here before the first read is a change of ours: the fetched
            // copy takes it, and the flush still writes it (the node stays dirty).
            let (mtime, mode) = if node.meta_dirty {
                (node.mtime_ns, node.mode)
            } else {
                (st.mtime_ns, st.mode)
            };
            let atime = node.atime_ns().unwrap_or(mtime);
            set_cache_mode(&tmp, mode);
            filetime::set_file_times(
                &tmp,
                backing::filetime_from_ns(atime),
                backing::filetime_from_ns(mtime),
            )
            .map_err(io_err(&path))?;
            if node.cached {
                let _ = fs::remove_file(&tmp);
                return Ok(());
            }
            let path = tree.path_of(ino).expect("exists");
            let dest = self.cache_path(&path);
            if self.local_changes.get().is_some() && fs::symlink_metadata(&dest).is_ok() {
                // Mirror mode: someone put an entry here before the share's was fetched. Theirs
                // stays; the next scan records it as a local change.
                let _ = fs::remove_file(&tmp);
                return Ok(());
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_err(&path))?;
            }
            fs::rename(&tmp, &dest).map_err(io_err(&path))?;
            let node = tree.get_mut(ino).expect("exists");
            node.cached = true;
            node.base = Some(Base::of(&st));
            node.size = st.size;
            node.mtime_ns = mtime;
            // The cached file holds the access time from now on.
            node.set_atime_ns(None);
            let n = node.clone();
            let recorded = self.persist(|tx| journal::put_node(tx, &n));
            drop(tree);
            if recorded.is_ok() {
                self.after_fetch(ino, st.size);
            }
            return recorded;
        }
        Err(FsError::share(
            &self.path_of(ino).unwrap_or_default(),
            std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the file kept changing on the share while it was copied",
            ),
        ))
    }

    // ----- changing the namespace -----

    /// Marks a directory changed: a new mtime, written back by the next flush.
    fn touch_dir(tree: &mut Tree, ino: Ino, now: i64) -> Option<Ino> {
        let n = tree.get_mut(ino)?;
        n.mtime_ns = now;
        n.ctime_ns = now;
        n.meta_dirty = true;
        n.gen += 1;
        tree.reindex(ino);
        Some(ino)
    }

    /// If the last logged change of `path` removed a file, takes that removal back and returns
    /// the removed version: a new file at that path then replaces it on the share in one step,
    /// instead of a delete followed by a create.
    fn adopt_removed(tree: &mut Tree, path: &RelPath) -> Option<(i64, Option<Base>)> {
        let last = tree
            .ops
            .iter()
            .rposition(|(_, op)| op.paths().any(|p| p.overlaps(path)))?;
        match &tree.ops[last].1 {
            NsOp::Remove {
                path: removed,
                kind,
                base,
            } if removed == path && *kind != EntryKind::Dir => {
                let base = *base;
                let (seq, _) = tree.ops.remove(last);
                Some((seq, base))
            }
            _ => None,
        }
    }

    fn lookup_free(&self, tree: &Tree, parent: Ino, name: &str) -> Result<RelPath, FsError> {
        check_name(name)?;
        let pnode = tree.get(parent).ok_or(FsError::StaleInode(parent))?;
        let ppath = tree.path_of(parent).ok_or(FsError::StaleInode(parent))?;
        if !pnode.is_dir() {
            return Err(FsError::NotDir(ppath));
        }
        let path = ppath.join(name);
        if parent == ROOT_INO && name == CONTROL_DIR {
            return Err(FsError::Exists(path));
        }
        if tree.child(parent, name).is_some() {
            return Err(FsError::Exists(path));
        }
        Ok(path)
    }

    /// Creates a new file (or a symlink when `link` is given) and records it.
    pub(crate) fn create_entry(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        link: Option<&str>,
        side: CacheSide,
    ) -> Result<(Attr, Option<FileHandle>), FsError> {
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.lookup_free(&tree, parent, name)?;
        let _span = info_span!("create", path = %path).entered();
        let cache = self.cache_path(&path);
        let file = match (side, link) {
            (CacheSide::AlreadyDone, _) => None,
            (CacheSide::Apply, Some(target)) => {
                in_cache_dir(&cache, || backing::make_symlink(target, &cache))
                    .map_err(io_err(&path))?;
                None
            }
            (CacheSide::Apply, None) => Some(
                in_cache_dir(&cache, || create_cache_file(&cache, mode)).map_err(io_err(&path))?,
            ),
        };
        let adopted = Self::adopt_removed(&mut tree, &path);
        let ino = tree.alloc_ino();
        let now = now_ns();
        let mut node = Node {
            ino,
            parent,
            name: name.into(),
            kind: if link.is_some() {
                EntryKind::Symlink
            } else {
                EntryKind::File
            },
            children: None,
            cached: true,
            in_share: adopted.is_some(),
            base: adopted.and_then(|(_, b)| b),
            content_dirty: true,
            meta_dirty: false,
            size: link.map_or(0, |l| l.len() as u64),
            mtime_ns: now,
            mode: if link.is_some() { 0o777 } else { mode & 0o7777 },
            ctime_ns: now,
            rare: None,
            gen: 0,
        };
        node.set_link(link.map(Box::from));
        tree.insert(node.clone());
        let pnode = Self::touch_dir(&mut tree, parent, now);
        let put: Vec<Ino> = std::iter::once(ino).chain(pnode).collect();
        let res = self.record(
            &mut tree,
            &put,
            &[],
            adopted.map(|(seq, _)| seq),
            Vec::new(),
        );
        if let Err(e) = res {
            tree.remove_subtree(ino);
            if side == CacheSide::Apply {
                let _ = fs::remove_file(&cache);
            }
            return Err(e);
        }
        let attr = match (side, &file) {
            // The new file's own descriptor: no lookup by path.
            (CacheSide::Apply, Some(f)) => {
                let md = f.metadata().map_err(io_err(&path))?;
                Self::attr_from(&tree, &node, Some(&md))
            }
            (CacheSide::Apply, None) => self.attr_of(&tree, &node)?,
            // Recorded already; the entry may be gone again from the mirror folder (the next
            // scan sees that), so its attributes are not looked up: the caller wants the inode.
            (CacheSide::AlreadyDone, _) => Attr {
                ino,
                kind: node.kind,
                size: node.size,
                mtime_ns: node.mtime_ns,
                atime_ns: node.mtime_ns,
                ctime_ns: node.ctime_ns,
                mode: node.mode,
                nlink: 1,
            },
        };
        drop(tree);
        let fh = file.map(|file| {
            self.count_open(ino).writers.fetch_add(1, Ordering::SeqCst);
            FileHandle {
                ino,
                file,
                writable: true,
            }
        });
        Ok((attr, fh))
    }

    /// Creates and opens a new file for writing.
    pub fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
    ) -> Result<(Attr, FileHandle), FsError> {
        let (attr, fh) = self.create_entry(parent, name, mode, None, CacheSide::Apply)?;
        Ok((attr, fh.expect("files get a handle")))
    }

    pub fn symlink(&self, parent: Ino, name: &str, target: &str) -> Result<Attr, FsError> {
        Ok(self
            .create_entry(parent, name, 0o777, Some(target), CacheSide::Apply)?
            .0)
    }

    pub fn readlink(&self, ino: Ino) -> Result<String, FsError> {
        let share = {
            let tree = self.state.read();
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            if node.kind != EntryKind::Symlink {
                return Err(FsError::InvalidArgument(format!(
                    "{path} is not a symbolic link"
                )));
            }
            if let Some(l) = node.link() {
                return Ok(l.to_string());
            }
            (
                path.clone(),
                share_path_of(&path, &tree.ops).ok_or(FsError::NotFound(path))?,
            )
        };
        let target = self
            .opts
            .retry
            .run(|| self.backing.read_link(&share.1))
            .map_err(|e| FsError::share(&share.0, e))?;
        let mut tree = self.state.write();
        if let Some(node) = tree.get_mut(ino) {
            node.set_link(Some(target.as_str().into()));
            node.cached = true;
            let n = node.clone();
            let _ = backing::make_symlink(&target, &self.cache_path(&share.0));
            self.persist(|tx| journal::put_node(tx, &n))?;
        }
        Ok(target)
    }

    pub fn mkdir(&self, parent: Ino, name: &str, mode: u32) -> Result<Attr, FsError> {
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.lookup_free(&tree, parent, name)?;
        let _span = info_span!("mkdir", path = %path).entered();
        fs::create_dir_all(self.cache_path(&path)).map_err(io_err(&path))?;
        let ignored = self.is_ignored(&path, true);
        let now = now_ns();
        let node = Node {
            ino: tree.alloc_ino(),
            parent,
            name: name.into(),
            kind: EntryKind::Dir,
            children: Some(Default::default()),
            cached: false,
            in_share: !ignored,
            base: None,
            content_dirty: false,
            meta_dirty: !ignored,
            size: 0,
            mtime_ns: now,
            mode: mode & 0o7777,
            ctime_ns: now,
            rare: None,
            gen: 0,
        };
        let op = (!ignored).then(|| NsOp::Mkdir { path: path.clone() });
        tree.insert(node.clone());
        let pnode = Self::touch_dir(&mut tree, parent, now);
        let put: Vec<Ino> = std::iter::once(node.ino).chain(pnode).collect();
        self.record(&mut tree, &put, &[], None, op.into_iter().collect())?;
        self.attr_of(&tree, &node)
    }

    pub fn unlink(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.remove_entry(parent, name, false, CacheSide::Apply)
    }

    pub fn rmdir(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.ensure_listed(parent)?;
        // Each guard dropped before listing: a guard kept alive through an `if let` block
        // would deadlock the listing's write lock (a folder never listed could not be removed).
        let child = self.state.read().child(parent, name);
        let is_dir = child.is_some_and(|c| self.state.read().get(c).is_some_and(Node::is_dir));
        if let (Some(child), true) = (child, is_dir) {
            // Empty or not is known only once listed.
            self.ensure_listed(child)?;
        }
        self.remove_entry(parent, name, true, CacheSide::Apply)
    }

    pub(crate) fn remove_entry(
        &self,
        parent: Ino,
        name: &str,
        dir: bool,
        side: CacheSide,
    ) -> Result<(), FsError> {
        check_name(name)?;
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.child_path(&tree, parent, name);
        let _span = info_span!("remove", path = %path).entered();
        let ino = tree
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(path.clone()))?;
        let node = tree.get(ino).expect("child exists").clone();
        match (dir, node.is_dir()) {
            (false, true) => return Err(FsError::IsDir(path)),
            (true, false) => return Err(FsError::NotDir(path)),
            (true, true) => match &node.children {
                Some(c) if c.is_empty() => {}
                // Listed by rmdir() before; a refresh can not un-list it.
                _ => return Err(FsError::NotEmpty(path)),
            },
            (false, false) => {}
        }
        let cache = self.cache_path(&path);
        let removed = match (side, dir) {
            (CacheSide::AlreadyDone, _) => Ok(()),
            (CacheSide::Apply, true) => fs::remove_dir_all(&cache),
            (CacheSide::Apply, false) => fs::remove_file(&cache),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::cache(&path, e)),
        }
        let op = (node.in_share && !self.is_ignored(&path, dir)).then(|| NsOp::Remove {
            path: path.clone(),
            kind: node.kind,
            base: node.base,
        });
        tree.remove_subtree(ino);
        let pnode = Self::touch_dir(&mut tree, parent, now_ns());
        let put: Vec<Ino> = pnode.into_iter().collect();
        self.record(&mut tree, &put, &[ino], None, op.into_iter().collect())
    }

    /// Lists every directory below `ino` and fetches every file, so that the subtree can be
    /// written to the share from the cache alone.
    fn materialize_subtree(&self, ino: Ino) -> Result<(), FsError> {
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            let kind = self.state.read().get(i).map(|n| n.kind);
            match kind {
                Some(EntryKind::Dir) => {
                    self.ensure_listed(i)?;
                    let tree = self.state.read();
                    if let Some(c) = tree.get(i).and_then(|n| n.children.as_ref()) {
                        stack.extend(c.values().copied());
                    }
                }
                Some(EntryKind::File) => self.ensure_cached(i)?,
                Some(EntryKind::Symlink) => {
                    self.readlink(i)?;
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file or an empty directory
    /// there as POSIX says (unless `noreplace`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), FsError> {
        check_name(name)?;
        check_name(new_name)?;
        self.ensure_listed(parent)?;
        self.ensure_listed(new_parent)?;
        let (src, dst) = {
            let tree = self.state.read();
            (tree.child(parent, name), tree.child(new_parent, new_name))
        };
        let src = src
            .ok_or_else(|| FsError::NotFound(self.child_path(&self.state.read(), parent, name)))?;
        if let Some(d) = dst {
            if self.state.read().get(d).is_some_and(Node::is_dir) {
                self.ensure_listed(d)?;
            }
        }
        // A move between the synced area and an ignored one turns into removals or creations
        // of the whole subtree on the share, so all of it must be known and cached first.
        // A file moved out of what is synced is no longer on the share for us, so its content
        // must be here first too (found by the model test: an unread file renamed to
        // `.DS_Store` lost its content).
        let (needs_all, needs_content) = {
            let tree = self.state.read();
            let n = tree.get(src).ok_or(FsError::StaleInode(src))?;
            let from = tree.path_of(src).unwrap_or_default();
            let to = self.child_path(&tree, new_parent, new_name);
            let crosses = self.is_ignored(&from, n.is_dir()) != self.is_ignored(&to, n.is_dir());
            (
                n.is_dir() && (crosses || (!n.in_share && !self.is_ignored(&to, true))),
                n.kind == EntryKind::File && !n.cached && crosses,
            )
        };
        if needs_all {
            self.materialize_subtree(src)?;
        }
        if needs_content {
            self.ensure_cached(src)?;
        }
        self.rename_locked(
            src,
            (parent, name),
            (new_parent, new_name),
            noreplace,
            CacheSide::Apply,
        )
    }

    pub(crate) fn rename_locked(
        &self,
        src: Ino,
        (parent, name): (Ino, &str),
        (new_parent, new_name): (Ino, &str),
        noreplace: bool,
        side: CacheSide,
    ) -> Result<(), FsError> {
        let mut tree = self.state.write();
        if tree.child(parent, name) != Some(src) {
            return Err(FsError::NotFound(self.child_path(&tree, parent, name)));
        }
        let from = tree.path_of(src).ok_or(FsError::StaleInode(src))?;
        let np = tree
            .get(new_parent)
            .ok_or(FsError::StaleInode(new_parent))?;
        let to_parent = tree
            .path_of(new_parent)
            .ok_or(FsError::StaleInode(new_parent))?;
        if !np.is_dir() {
            return Err(FsError::NotDir(to_parent));
        }
        let to = to_parent.join(new_name);
        if new_parent == ROOT_INO && new_name == CONTROL_DIR {
            return Err(FsError::Exists(to));
        }
        let _span = info_span!("rename", from = %from, to = %to).entered();
        let snode = tree.get(src).expect("exists").clone();
        let dst = tree.child(new_parent, new_name);
        if dst == Some(src) {
            return Ok(());
        }
        if snode.is_dir() && to.is_within(&from) {
            return Err(FsError::MoveIntoSelf(from));
        }
        let dnode = dst.map(|d| tree.get(d).expect("exists").clone());
        if let Some(d) = &dnode {
            if noreplace {
                return Err(FsError::Exists(to));
            }
            match (snode.is_dir(), d.is_dir()) {
                (true, false) => return Err(FsError::NotDir(to)),
                (false, true) => return Err(FsError::IsDir(to)),
                (true, true) if d.children.as_ref().is_none_or(|c| !c.is_empty()) => {
                    return Err(FsError::NotEmpty(to))
                }
                _ => {}
            }
        }
        let is_dir = snode.is_dir();
        let from_ign = self.is_ignored(&from, is_dir);
        let to_ign = self.is_ignored(&to, is_dir);
        let src_on_share = snode.in_share && !from_ign;
        let dst_on_share = dnode.as_ref().is_some_and(|d| d.in_share && !to_ign);

        // Decide what the share must see, as logged changes and flag changes.
        let mut ops: Vec<NsOp> = Vec::new();
        let mut flag_changes: Vec<(Ino, bool, Option<Base>, bool)> = Vec::new(); // ino, in_share, base, content_dirty
        let mut dropped_op: Option<i64> = None;
        if src_on_share && !to_ign {
            if dst_on_share && is_dir {
                ops.push(NsOp::Remove {
                    path: to.clone(),
                    kind: EntryKind::Dir,
                    base: None,
                });
            }
            ops.push(NsOp::Rename {
                from: from.clone(),
                to: to.clone(),
                dest_base: dnode
                    .as_ref()
                    .filter(|d| dst_on_share && !d.is_dir())
                    .and_then(|d| d.base),
            });
        } else if src_on_share && to_ign {
            // Moved out of what is synced: the share loses the subtree, deepest first.
            let mut all = tree.descendants(src);
            all.reverse();
            all.push(src);
            for i in all {
                let n = tree.get(i).expect("exists");
                if n.in_share {
                    let p = tree.path_of(i).expect("exists");
                    if !self.is_ignored(&p, n.is_dir()) {
                        ops.push(NsOp::Remove {
                            path: p,
                            kind: n.kind,
                            base: n.base,
                        });
                    }
                }
                flag_changes.push((i, false, None, n.content_dirty));
            }
        } else if !src_on_share && !to_ign {
            if is_dir {
                if dst_on_share {
                    ops.push(NsOp::Remove {
                        path: to.clone(),
                        kind: EntryKind::Dir,
                        base: None,
                    });
                }
                // Moved into what is synced: the share gains the subtree, parents first.
                ops.push(NsOp::Mkdir { path: to.clone() });
                flag_changes.push((src, true, None, false));
                for i in tree.descendants(src) {
                    let n = tree.get(i).expect("exists");
                    let p = tree
                        .path_of(i)
                        .expect("exists")
                        .rebase(&from, &to)
                        .expect("below");
                    if n.is_dir() {
                        if !self.is_ignored(&p, true) {
                            ops.push(NsOp::Mkdir { path: p });
                            flag_changes.push((i, true, None, false));
                        }
                    } else {
                        flag_changes.push((i, false, None, true));
                    }
                }
            } else if dst_on_share {
                let d = dnode.as_ref().expect("dst");
                flag_changes.push((src, true, d.base, true));
            } else {
                let adopted = Self::adopt_removed(&mut tree, &to);
                dropped_op = adopted.map(|(s, _)| s);
                flag_changes.push((src, adopted.is_some(), adopted.and_then(|(_, b)| b), true));
            }
        }

        // The cache tree follows the namespace.
        let src_cache = self.cache_path(&from);
        let dst_cache = self.cache_path(&to);
        if side == CacheSide::Apply {
            self.move_in_cache(dnode.as_ref(), &src_cache, &dst_cache, &to)?;
        }

        if let Some(d) = dst {
            tree.remove_subtree(d);
        }
        tree.relink(src, new_parent, new_name);
        if let Some(n) = tree.get_mut(src) {
            // A flush that started before the move must not take the node for clean.
            n.gen += 1;
            n.ctime_ns = now_ns();
        }
        for (i, in_share, base, content_dirty) in flag_changes {
            if let Some(n) = tree.get_mut(i) {
                n.in_share = in_share;
                if !n.is_dir() {
                    n.base = base;
                }
                n.content_dirty = content_dirty && !n.is_dir();
                if n.is_dir() && in_share {
                    // Created on the share by the flush: its time is set after.
                    n.meta_dirty = true;
                }
                n.gen += 1;
                tree.reindex(i);
            }
        }
        let now = now_ns();
        let mut touched = vec![src];
        touched.extend(Self::touch_dir(&mut tree, parent, now));
        touched.extend(Self::touch_dir(&mut tree, new_parent, now));
        let put: Vec<Ino> = touched.into_iter().chain(tree.descendants(src)).collect();
        let deleted: Vec<Ino> = dst.into_iter().collect();
        let result = self.record(&mut tree, &put, &deleted, dropped_op, ops);
        if result.is_err() && side == CacheSide::Apply {
            // Keep the cache tree where the journal says it is.
            let _ = fs::rename(&dst_cache, &src_cache);
        }
        result
    }

    /// Moves an entry in the cache tree for a rename, replacing what `dnode` was there.
    fn move_in_cache(
        &self,
        dnode: Option<&Node>,
        src_cache: &Path,
        dst_cache: &Path,
        to: &RelPath,
    ) -> Result<(), FsError> {
        if let Some(d) = dnode {
            let r = if d.is_dir() {
                fs::remove_dir_all(dst_cache)
            } else {
                fs::remove_file(dst_cache)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(FsError::cache(to, e));
                }
            }
        }
        if fs::symlink_metadata(src_cache).is_ok() {
            if let Some(p) = dst_cache.parent() {
                fs::create_dir_all(p).map_err(io_err(to))?;
            }
            fs::rename(src_cache, dst_cache).map_err(io_err(to))?;
        }
        Ok(())
    }

    // ----- files -----

    pub(crate) fn mark_content_dirty(&self, ino: Ino) -> Result<(), FsError> {
        if self.state.read().get(ino).is_none_or(|n| n.content_dirty) {
            return Ok(());
        }
        let mut tree = self.state.write();
        let Some(n) = tree.get_mut(ino) else {
            return Ok(());
        };
        if n.content_dirty {
            return Ok(());
        }
        n.content_dirty = true;
        n.gen += 1;
        let n = n.clone();
        tree.reindex(ino);
        self.persist(|tx| journal::put_node(tx, &n))
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
        // Counted open before the copy is made sure of, so that no eviction takes it between
        // the fetch and the open; taken back unless a handle comes out.
        let live = self.count_open(ino);
        let opened = self.open_counted(ino, write, truncate, rw_descriptor);
        if opened.is_err() {
            live.opens.fetch_sub(1, Ordering::SeqCst);
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
            });
        }
        Err(FsError::NotFound(self.path_of(ino).unwrap_or_default()))
    }

    /// Gives an uncached file an empty cache copy, for opens that truncate it anyway.
    fn make_empty_if_uncached(&self, ino: Ino) -> Result<(), FsError> {
        let mut tree = self.state.write();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
        if node.is_dir() {
            return Err(FsError::IsDir(path));
        }
        if node.cached {
            return Ok(());
        }
        let cache = self.cache_path(&path);
        if let Some(p) = cache.parent() {
            fs::create_dir_all(p).map_err(io_err(&path))?;
        }
        create_cache_file(&cache, node.mode).map_err(io_err(&path))?;
        let n = tree.get_mut(ino).expect("exists");
        n.cached = true;
        n.content_dirty = true;
        n.gen += 1;
        let n = n.clone();
        tree.reindex(ino);
        self.persist(|tx| journal::put_node(tx, &n))
    }

    pub fn read(&self, fh: &FileHandle, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
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
    pub fn note_external_write(&self, ino: Ino) -> Result<(), FsError> {
        self.live(ino).gen.fetch_add(1, Ordering::SeqCst);
        self.mark_content_dirty(ino)
    }

    pub fn release(&self, fh: FileHandle) {
        let live = self.live(fh.ino);
        if fh.writable {
            live.gen.fetch_add(1, Ordering::SeqCst);
            live.writers.fetch_sub(1, Ordering::SeqCst);
        }
        live.opens.fetch_sub(1, Ordering::SeqCst);
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
            Some(log) => std::thread::scope(|s| {
                let other = s.spawn(|| log.run());
                let file = sync_file();
                // A panic in a sync is not expected; treat it as the log's failure.
                let log_result = other
                    .join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("journal sync panicked")));
                (file, log_result)
            }),
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
        }
        if req.mtime_ns.is_some() || req.mode.is_some() || req.atime_ns.is_some() {
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
            n.ctime_ns = now_ns();
            n.meta_dirty |= req.mtime_ns.is_some() || req.mode.is_some();
            n.gen += 1;
            let n = n.clone();
            tree.reindex(ino);
            self.persist(|tx| journal::put_node(tx, &n))?;
        }
        self.getattr(ino)
    }

    /// Hard links cannot be written to the shares sipfs is for (SMB), so they are refused.
    pub fn link(&self) -> Result<Attr, FsError> {
        Err(FsError::NotSupported("hard links"))
    }
}

/// Sets the times given, leaving the others as they are.
fn set_times(path: &Path, atime_ns: Option<i64>, mtime_ns: Option<i64>) -> std::io::Result<()> {
    let ft = backing::filetime_from_ns;
    match (atime_ns, mtime_ns) {
        (Some(a), Some(m)) => filetime::set_file_times(path, ft(a), ft(m)),
        (Some(a), None) => filetime::set_file_atime(path, ft(a)),
        (None, Some(m)) => filetime::set_file_mtime(path, ft(m)),
        (None, None) => Ok(()),
    }
}

/// Takes the lock that makes one process the owner of a cache folder (held as long as the
/// returned file is open).
pub(crate) fn lock_cache(cache_dir: &Path) -> Result<File, JournalError> {
    let lock_path = cache_dir.join("lock");
    let cache_lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| JournalError::Io {
            path: lock_path.clone(),
            source: e,
        })?;
    if cache_lock.try_lock().is_err() {
        return Err(JournalError::InUse(cache_dir.to_path_buf()));
    }
    Ok(cache_lock)
}

/// Runs `make` for an entry of the cache tree, creating the folders above it first if they
/// are missing (they exist for every listed folder, so this is rare: one try, not a mkdir
/// before every create).
fn in_cache_dir<T>(path: &Path, make: impl Fn() -> std::io::Result<T>) -> std::io::Result<T> {
    match make() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            make()
        }
        r => r,
    }
}

fn create_cache_file(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The cache copy must stay readable and writable by sipfs; the mode programs see is
        // kept in the node.
        o.mode((mode & 0o7777) | 0o600);
    }
    #[cfg(not(unix))]
    let _ = mode;
    o.open(path)
}

fn set_cache_mode(path: &Path, mode: u32) {
    let _ = set_cache_mode_checked(path, mode);
}

#[cfg(unix)]
fn set_cache_mode_checked(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The cache copy must stay readable and writable by sipfs itself.
    fs::set_permissions(path, fs::Permissions::from_mode((mode & 0o7777) | 0o600))
}

#[cfg(not(unix))]
fn set_cache_mode_checked(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, off)
}

#[cfg(windows)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(f, buf, off)
}

#[cfg(unix)]
fn write_all_at(f: &File, data: &[u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, off)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut data: &[u8], mut off: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(f, data, off)?;
        data = &data[n..];
        off += n as u64;
    }
    Ok(())
}
