//! The engine: the namespace and file operations an adapter (FUSE, WinFsp, mirror) calls.
//!
//! Locks are always taken in this order: `flush_lock`, then `state`, then `journal`. No lock is
//! held while the share is contacted for a listing or a fetch, so a slow share never blocks
//! operations on entries that are already cached.
//!
//! One module per concept: `reading` (attributes, lookups, listings and fetches from the
//! share), `namespace` (creating, removing and renaming entries), `files` (opening, reading,
//! writing, syncing and changing attributes of files); the types, the setup and what they all
//! use are here.

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

mod files;
mod links;
mod namespace;
mod partial;
mod reading;
mod xattrs;

pub use xattrs::XattrMode;

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
    /// mirror folder the user works in. Fetches are then written in its `.sipfs/tmp`, on its
    /// file system, before they are renamed into place.
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
    /// Files at least this big are fetched in ranges (`partial.rs`): an open for reading
    /// returns at once and a read waits only for what it reads. `u64::MAX`: never.
    pub range_fetch_min: u64,
    /// What a read of a file fetched in ranges fetches at least, aligned: a read of 4 KiB
    /// fetches the block around it. The background fill asks for 16 blocks at a time.
    pub range_block: u64,
    /// A folder receiving at least this many files in one flush has their temporaries spread
    /// over `stage_spread_dirs` staging folders inside it (`flush/stage.rs`, `spread_temps`);
    /// 0: never.
    pub stage_spread_min: usize,
    /// How many staging folders such a folder gets: as many as there are stages in flight
    /// (8 by default), so that none waits on another's create.
    pub stage_spread_dirs: usize,
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
            range_fetch_min: 8 << 20,
            range_block: 256 << 10,
            stage_spread_min: 16,
            stage_spread_dirs: 8,
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
    /// Owner and group, when not the adapter's default (`Node::owner`).
    pub owner: Option<(u32, u32)>,
    /// Device nodes: the device number.
    pub rdev: u64,
}

/// What [`Engine::create_entry`] makes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NewEntry<'a> {
    File,
    Symlink(&'a str),
    /// A FIFO, socket or device node, and its device number.
    Special(EntryKind, u64),
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
    /// A new owner and group (the adapter checked the caller may).
    pub owner: Option<(u32, u32)>,
}

/// An open file: a handle on the cached copy in the cache tree.
#[derive(Debug)]
pub struct FileHandle {
    pub ino: Ino,
    file: File,
    writable: bool,
    /// A file fetched in ranges: reads fetch what is missing first (`partial.rs`).
    partial: Option<Arc<partial::Partial>>,
}

impl FileHandle {
    /// The file is not whole in the cache: its reads must come through the engine, which
    /// fetches what they need; it cannot be handed to the kernel.
    pub fn is_partial(&self) -> bool {
        self.partial.as_ref().is_some_and(|p| !p.is_whole())
    }

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
    /// Handles open now, readers included: an open file's copy is never evicted. Counted only
    /// with a cache limit ([`Engine::counts_opens`]).
    pub opens: AtomicU32,
    /// When the file was last opened, on [`Engine::tick`]'s clock: eviction takes the oldest.
    pub last_open: AtomicU64,
}

pub struct Engine {
    pub(crate) backing: Arc<dyn Backing>,
    pub(crate) opts: EngineOptions,
    pub(crate) tree_dir: PathBuf,
    /// The cache tree's paths, however long (`cache_tree.rs`).
    pub(crate) tree: crate::cache_tree::CacheTree,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) state: RwLock<Tree>,
    pub(crate) journal: Arc<Mutex<Journal>>,
    pub(crate) live: DashMap<Ino, Arc<Live>>,
    /// A logical clock for [`Live::last_open`].
    clock: AtomicU64,
    /// The cache's size as last counted, plus what was fetched since (`evict.rs`).
    pub(crate) cache_estimate: AtomicU64,
    /// Eviction passes so far, and the estimate the next one waits for once a pass could not
    /// get under the limit (0: none waited for) (`evict.rs`).
    pub(crate) evict_passes: AtomicU64,
    pub(crate) evict_again_above: AtomicU64,
    /// What the share does to the times a flush gives it (`flush/times.rs`).
    pub(crate) share_times: crate::flush::ShareTimes,
    pub(crate) flush_lock: Mutex<()>,
    pub(crate) ignore: RwLock<IgnoreRules>,
    pub(crate) pool: rayon::ThreadPool,
    /// Set in mirror mode, where people change the cache tree directly.
    pub(crate) local_changes: std::sync::OnceLock<Arc<dyn LocalChanges>>,
    /// Files being fetched in ranges (`partial.rs`).
    pub(crate) partials: partial::Partials,
    /// The background filler of ranged copies, once started.
    filler: std::sync::OnceLock<std::sync::mpsc::Sender<Arc<partial::Partial>>>,
    /// The thread that syncs the journal beside a program's fsync (`journal/sync_worker.rs`).
    pub(crate) log_syncer: journal::LogSyncer,
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
        // Fetches are written here and renamed into the tree, so this is on the tree's file
        // system: a mirror folder may be on another disk than the cache, where the rename
        // would fail (EXDEV, ERROR_NOT_SAME_DEVICE). `.sipfs/` is never synced.
        let tmp_dir = match &opts.tree_dir {
            Some(tree) => tree.join(crate::ignore_rules::CONTROL_DIR).join("tmp"),
            None => opts.cache_dir.join("tmp"),
        };
        for d in [&opts.cache_dir, &tree_dir, &tmp_dir] {
            fs::create_dir_all(d).map_err(|e| JournalError::Io {
                path: d.to_path_buf(),
                source: e,
            })?;
        }
        let cache_lock = lock_cache(&opts.cache_dir)?;
        let tree_handle =
            crate::cache_tree::CacheTree::open(tree_dir.clone()).map_err(|e| JournalError::Io {
                path: tree_dir.clone(),
                source: e,
            })?;
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
        let share_times = crate::flush::ShareTimes::restored(
            journal.get_meta(crate::flush::SHARE_TIMES_KEY)?.as_deref(),
        );
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
                    rdev: 0,
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
            tree: tree_handle,
            tmp_dir,
            state: RwLock::new(tree),
            journal: Arc::new(Mutex::new(journal)),
            live: DashMap::new(),
            clock: AtomicU64::new(1),
            cache_estimate: AtomicU64::new(0),
            evict_passes: AtomicU64::new(0),
            evict_again_above: AtomicU64::new(0),
            share_times,
            flush_lock: Mutex::new(()),
            ignore: RwLock::new(IgnoreRules::defaults()),
            pool,
            opts,
            local_changes: std::sync::OnceLock::new(),
            partials: Default::default(),
            filler: std::sync::OnceLock::new(),
            log_syncer: Default::default(),
            _cache_lock: cache_lock,
        };
        engine.load_partials()?;
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

    /// A path for a temporary of `name` in the temporaries folder, which is made again if a
    /// program removed it (in mirror mode it is `.sipfs/tmp/` in the folder, made and removed
    /// around each sync: a fetch into a folder that is gone would fail as if the share's file
    /// were missing).
    pub(crate) fn tmp_file(&self, name: &str) -> PathBuf {
        if let Err(e) = fs::create_dir_all(&self.tmp_dir) {
            tracing::debug!(dir = %self.tmp_dir.display(), error = %e, "could not make the temporaries folder");
        }
        self.tmp_dir.join(name)
    }

    /// Removes the temporaries folder if it is empty: a mirror folder keeps no folder of
    /// sipfs's own between operations. (What a crash left in it is removed at open.)
    pub(crate) fn drop_tmp_dir(&self) {
        if self.opts.tree_dir.is_some() {
            let _ = fs::remove_dir(&self.tmp_dir);
        }
    }

    /// Re-reads `.sipfsignore` (from the cache when it is cached, else from the share).
    pub fn reload_ignore_rules(&self) {
        let rel = RelPath::new(IGNORE_FILE).expect("valid");
        let text = fs::read_to_string(rel.to_path(&self.tree_dir))
            .ok()
            .or_else(|| {
                let tmp = self.tmp_file("sipfsignore");
                let r = self
                    .backing
                    .fetch(&rel, &tmp)
                    .ok()
                    .and_then(|_| fs::read_to_string(&tmp).ok());
                let _ = fs::remove_file(&tmp);
                self.drop_tmp_dir();
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

    /// Journal transactions committed since the engine opened: what local bookkeeping a change
    /// costs, for tests and benchmarks.
    pub fn journal_commits(&self) -> u64 {
        self.journal.lock().commits()
    }

    pub(crate) fn persist(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<(), JournalError>,
    ) -> Result<(), FsError> {
        self.journal.lock().batch(f).map_err(FsError::from)
    }

    /// Records one namespace change — nodes written, nodes deleted, a logged change taken
    /// back, logged changes added — as one record of the journal's record log, then appends
    /// the added ones to the in-memory log. Callers hold the state lock, so the log and the
    /// journal agree. Once this returns, the change survives sipfs being killed.
    fn record(
        &self,
        tree: &mut Tree,
        put: &[Ino],
        delete: &[Ino],
        drop_op: Option<i64>,
        ops: Vec<NsOp>,
    ) -> Result<(), FsError> {
        let mut change = journal::Change::default();
        for &i in delete {
            change.delete_node(i);
        }
        for n in put.iter().filter_map(|&i| tree.get(i)) {
            change.put_node(n);
        }
        if let Some(s) = drop_op {
            change.delete_op(s);
        }
        let mut j = self.journal.lock();
        let mut seqs = Vec::with_capacity(ops.len());
        for op in &ops {
            let seq = j.next_op_seq();
            change.push_op(seq, op);
            seqs.push(seq);
        }
        j.append(change)?;
        drop(j);
        tree.ops.extend(seqs.into_iter().zip(ops));
        Ok(())
    }

    /// Records nodes written, as [`Engine::record`] does.
    pub(crate) fn record_nodes(
        &self,
        tree: &Tree,
        put: impl IntoIterator<Item = Ino>,
    ) -> Result<(), FsError> {
        let mut change = journal::Change::default();
        for n in put.into_iter().filter_map(|i| tree.get(i)) {
            change.put_node(n);
        }
        Ok(self.journal.lock().append(change)?)
    }

    pub(crate) fn live(&self, ino: Ino) -> Arc<Live> {
        self.live.entry(ino).or_default().clone()
    }

    /// Handles are counted open, and files' last opens kept, only for eviction
    /// (`--cache-max-size`): without a limit a read-only open keeps no per-file state, and an
    /// opened file costs no memory of its own.
    pub(crate) fn counts_opens(&self) -> bool {
        self.opts.cache_max_bytes.is_some()
    }

    /// Counts a handle as open (until [`Engine::release`]) and its file as just used.
    fn count_open(&self, live: &Live) {
        if self.counts_opens() {
            live.opens.fetch_add(1, Ordering::SeqCst);
            let now = self.clock.fetch_add(1, Ordering::SeqCst);
            live.last_open.store(now, Ordering::SeqCst);
        }
    }

    fn uncount_open(&self, live: &Live) {
        if self.counts_opens() {
            live.opens.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Where `p` is in the cache tree; valid while the returned path lives.
    pub(crate) fn cache_path(&self, p: &RelPath) -> crate::cache_tree::CachePath {
        self.tree.path(p)
    }

    /// Runs `make` for the cache tree's entry `rel`, creating the folders above it first if
    /// they are missing (they exist for every listed folder, so this is rare: one try, not a
    /// mkdir before every create).
    pub(crate) fn in_cache_dir<T>(
        &self,
        rel: &RelPath,
        make: impl Fn(&Path) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match make(&self.cache_path(rel)) {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc::ENAMETOOLONG) =>
            {
                if let Some(dir) = rel.parent() {
                    self.tree.create_dir_all(&dir)?;
                }
                make(&self.cache_path(rel))
            }
            r => r,
        }
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
