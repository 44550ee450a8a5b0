//! Mirror mode: the project as a plain local folder, for where a virtual drive cannot be
//! shared with Docker (Docker Desktop on Windows and drives other than C:, WinFsp drives and
//! WSL2). The folder *is* the engine's cache tree: a first sync fills it, a refresh pulls in
//! what others changed, and a flush finds what changed in it by comparing every entry with its
//! [`Stamp`] (see `stamp.rs`), records the changes in the engine (see `scan.rs`), and writes
//! them with the same atomic, mtime-keeping, conflict-safe flush as a mount.
//!
//! The folder holds one file of sipfs's own, `.sipfs/control`: where a program that cannot run
//! sipfs (a step in a container) writes a request and reads its answer (`requests.rs`). It is
//! never synced. Everything else is with the cache or lives only within one operation: which
//! folder this is (the journal records the folder's path and file id), the status
//! (`status.json` in the cache), the notification barrier and the fetch temporaries (in
//! `.sipfs/`, created and removed by the scan or sync that needs them). Workflow managers scan,
//! zip and restore the whole folder: whatever they do to `.sipfs/` leaves the mirror working.

mod events;
pub mod requests;
mod scan;
pub mod stamp;
pub mod watch;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::{info, info_span, warn};

use crate::backing::{self, Backing, EntryKind};
use crate::engine::{now_ns, Engine, EngineOptions, LocalChanges};
use crate::error::{FsError, Reason};
use crate::ignore_rules::CONTROL_DIR;
use crate::journal;
use crate::relpath::RelPath;
use crate::report::{FlushReport, PendingItem, Progress, RefreshReport};
use crate::tree::Ino;

pub use scan::ScanReport;

/// The served status, in the cache folder: JSON, as a mount's `.sipfs/status` reads.
pub const STATUS_FILE: &str = "status.json";
use stamp::Stamp;

/// Where sipfs before issue 30 kept the marker, in the folder's `.sipfs/`: still read, so a
/// folder set up by an older sipfs is found, and removed once the mirror is opened.
pub const LEGACY_MARKER_FILE: &str = "mirror.json";
/// What else older sipfs kept in the folder's `.sipfs/`, removed once the mirror is opened.
const LEGACY_ENTRIES: [&str; 4] = ["status", "result", "watch", "tmp"];
const JOURNAL_KEY: &str = "mirror_folder";
/// The folder's identity (`folder_id`): a folder deleted and made again under its name is not
/// this mirror.
const JOURNAL_ID_KEY: &str = "mirror_folder_id";

/// Which share and cache a mirror folder belongs to: enough for `sipfs flush FOLDER` to find
/// the cache when no sipfs process serves the folder. The CLI keeps it in its registry of
/// mirror folders (by the folder's path), not in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub backing: String,
    pub cache_dir: PathBuf,
    #[serde(default)]
    pub windows_share: bool,
    /// Extra ignore rules the folder was set up with: a flush run without the serving process
    /// must leave out the same paths.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// The mirror folder (canonical).
    #[serde(default)]
    pub folder: PathBuf,
}

impl Marker {
    /// Where an older sipfs kept the marker of `folder`.
    pub fn legacy_path(folder: &Path) -> PathBuf {
        folder.join(CONTROL_DIR).join(LEGACY_MARKER_FILE)
    }

    /// The marker an older sipfs left in `folder`, if any.
    pub fn read_legacy(folder: &Path) -> Option<Marker> {
        Marker::read_from(&Marker::legacy_path(folder))
    }

    pub fn read_from(path: &Path) -> Option<Marker> {
        let text = fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the marker to `path` whole (a temporary, then a rename).
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serializes"))?;
        fs::rename(&tmp, path)
    }
}

/// The identity of a folder, as the journal records it: its file id and, on Unix where the
/// file system keeps one, its creation time (an inode number freed by a folder deleted is soon
/// given to the next one made, as a test found); `None` where it cannot be read.
fn folder_id(folder: &Path) -> Option<String> {
    let st = Stamp::read(folder).ok()??;
    let born = folder_birth_ns(folder);
    (st.kind == EntryKind::Dir).then(|| format!("{}:{}:{born}", st.file_id.0, st.file_id.1))
}

/// A folder's creation time, or 0 where none is kept (ext4 and APFS keep one).
#[cfg(unix)]
fn folder_birth_ns(folder: &Path) -> u128 {
    fs::metadata(folder)
        .and_then(|m| m.created())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// On Windows the file id alone: NTFS's file reference number carries a sequence number that
/// changes when a record is used again, so a folder made again has another id. A creation
/// time is not trusted there: Wine (where the Windows build is tested) reports one that moves
/// whenever the folder changes, and the mirror then took its own folder for one made again.
#[cfg(windows)]
fn folder_birth_ns(_folder: &Path) -> u128 {
    0
}

/// Whether `folder` holds nothing but, perhaps, a `.sipfs/` folder (which holds no project
/// file: it is never synced).
fn holds_nothing(folder: &Path) -> Result<bool, MirrorError> {
    match fs::read_dir(folder) {
        Ok(rd) => {
            for e in rd {
                let e = e.map_err(io(folder))?;
                if e.file_name() != CONTROL_DIR {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(folder)(e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "{folder} is not empty and is not a sipfs mirror folder; choose a new or empty folder \
         (sipfs fills it from the share)"
    )]
    NotAMirror { folder: PathBuf },
    #[error(
        "the mirror folder {folder} is missing, or is another folder than the one this cache \
         filled (deleted and made again?); what was not yet flushed is still recorded in the \
         cache {cache}. Put the folder back to flush it, or move the cache aside to start over"
    )]
    Gone { folder: PathBuf, cache: PathBuf },
    #[error(
        "{folder} is a mirror folder, but the cache {cache} has no record of it (was the cache \
         deleted?). Nothing was changed: move the folder aside (flush its changes by hand if it \
         has any) and start again"
    )]
    Unrecorded { folder: PathBuf, cache: PathBuf },
    #[error("{folder} mirrors {recorded}, not {requested}")]
    OtherBacking {
        folder: PathBuf,
        recorded: String,
        requested: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] FsError),
}

/// What a sync (first fill or refresh) did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncReport {
    pub scan: ScanReport,
    pub refresh: RefreshReport,
    /// Files copied from the share into the folder.
    pub fetched: u64,
    /// Why some entries could not be fetched yet (the share is offline...).
    pub errors: Vec<PendingItem>,
}

/// The stamps of the folder's entries, shared with the engine's refresh (through
/// [`LocalChanges`]) so that it never replaces a copy someone changed since the last scan.
struct Stamps {
    root: PathBuf,
    map: Mutex<HashMap<Ino, Stamp>>,
}

impl LocalChanges for Stamps {
    fn changed(&self, ino: Ino, path: &RelPath) -> bool {
        let abs = path.to_path(&self.root);
        let Ok(now) = Stamp::read(&abs) else {
            return true;
        };
        let recorded = self.map.lock().get(&ino).copied();
        match (recorded, now) {
            (None, None) => false,
            (Some(s), Some(n)) => s.differs(&n, &abs),
            _ => true,
        }
    }
}

pub struct Mirror {
    engine: Arc<Engine>,
    root: PathBuf,
    /// The folder's file id when opened (see [`JOURNAL_ID_KEY`]).
    root_id: String,
    stamps: Arc<Stamps>,
    /// One scan, flush or sync at a time: each compares the folder with the stamps.
    op: Mutex<()>,
    /// Notifications of the folder's changes, once `watch_changes` started them.
    watch: OnceLock<watch::Watch>,
    /// The next scan walks the whole folder: nothing watched it before (the first scan after
    /// the watch started), or a caller asked (`rescan_all`).
    scan_all_next: AtomicBool,
    /// What the last scan looked at, for the served status.
    last_scan: Mutex<Option<ScanReport>>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Mirror {
    /// Opens the mirror `folder` of `backing`, creating it (empty, to be filled by
    /// [`Mirror::sync`]) if it is new. `opts.cache_dir` holds the journal, which records the
    /// folder: a folder that is not the one it filled is refused, never scanned (a scan of an
    /// empty stand-in would take every file for deleted).
    pub fn open(
        backing: Arc<dyn Backing>,
        mut opts: EngineOptions,
        folder: &Path,
    ) -> Result<Mirror, MirrorError> {
        let _span = info_span!("mirror_open", folder = %folder.display()).entered();
        let legacy = Marker::read_legacy(folder);
        let is_empty = holds_nothing(folder)?;
        if let Some(m) = &legacy {
            if m.backing != opts.backing_id {
                return Err(MirrorError::OtherBacking {
                    folder: folder.to_path_buf(),
                    recorded: m.backing.clone(),
                    requested: opts.backing_id.clone(),
                });
            }
        }
        let (recorded, recorded_id) = {
            // Look before the engine creates anything in the folder; a cache another process
            // serves cannot be read (its owner holds the journal) and is reported as in use.
            if opts.cache_dir.exists() {
                drop(crate::engine::lock_cache(&opts.cache_dir).map_err(FsError::from)?);
            }
            let j = journal::Journal::open(&opts.cache_dir.join("journal.sqlite"));
            match j {
                Ok(j) => (
                    j.get_meta(JOURNAL_KEY).map_err(FsError::from)?,
                    j.get_meta(JOURNAL_ID_KEY).map_err(FsError::from)?,
                ),
                Err(_) => (None, None),
            }
        };
        let gone = || MirrorError::Gone {
            folder: folder.to_path_buf(),
            cache: opts.cache_dir.clone(),
        };
        match &recorded {
            None if !is_empty => {
                // A folder with files that this cache never filled: someone's own folder, or
                // a mirror whose cache was deleted. Either way nothing in it is taken for new.
                return Err(if folder.join(CONTROL_DIR).exists() {
                    MirrorError::Unrecorded {
                        folder: folder.to_path_buf(),
                        cache: opts.cache_dir.clone(),
                    }
                } else {
                    MirrorError::NotAMirror {
                        folder: folder.to_path_buf(),
                    }
                });
            }
            None => {}
            Some(_) => {
                let here = folder_id(folder);
                let same = match (&recorded_id, &here) {
                    (Some(r), Some(h)) => r == h,
                    // Recorded by a sipfs that kept a marker in the folder: the marker says.
                    (None, Some(_)) => legacy.is_some(),
                    (_, None) => false,
                };
                if !same {
                    return Err(gone());
                }
            }
        }
        fs::create_dir_all(folder).map_err(io(folder))?;
        let root = dunce::canonicalize(folder).map_err(io(folder))?;
        let root_id = folder_id(&root).unwrap_or_default();
        opts.tree_dir = Some(root.clone());
        let engine = Arc::new(Engine::open(backing, opts)?);
        let stored = engine.journal.lock().load_stamps().map_err(FsError::from)?;
        // Stamps of nodes that are gone (a crash came between the two records) would attach
        // to a reused inode number: drop them now.
        let live: std::collections::HashSet<Ino> =
            engine.known_entries().iter().map(|k| k.ino).collect();
        let (keep, stale): (Vec<_>, Vec<_>) =
            stored.into_iter().partition(|(i, _)| live.contains(i));
        if !stale.is_empty() {
            engine.persist(|tx| {
                for (i, _) in &stale {
                    journal::delete_stamp(tx, *i)?;
                }
                Ok(())
            })?;
        }
        let stamps = Arc::new(Stamps {
            root: root.clone(),
            map: Mutex::new(keep.into_iter().collect()),
        });
        engine.set_local_changes(stamps.clone());
        let root_text = root.display().to_string();
        if recorded.as_deref() != Some(root_text.as_str())
            || recorded_id.as_deref() != Some(root_id.as_str())
        {
            let mut j = engine.journal.lock();
            j.set_meta(JOURNAL_KEY, &root_text).map_err(FsError::from)?;
            j.set_meta(JOURNAL_ID_KEY, &root_id)
                .map_err(FsError::from)?;
            if recorded.is_none() {
                info!("new mirror folder");
            }
        }
        remove_legacy_entries(&root);
        engine.drop_tmp_dir();
        requests::prepare(&root).map_err(io(&root))?;
        Ok(Mirror {
            engine,
            root,
            root_id,
            stamps,
            op: Mutex::new(()),
            watch: OnceLock::new(),
            scan_all_next: true.into(),
            last_scan: Mutex::new(None),
        })
    }

    /// What the CLI's registry of mirror folders keeps for this one.
    pub fn marker(&self) -> Marker {
        let o = self.engine.options();
        Marker {
            backing: o.backing_id.clone(),
            cache_dir: o.cache_dir.clone(),
            windows_share: o.windows_share,
            ignore: o.extra_ignore.clone(),
            folder: self.root.clone(),
        }
    }

    /// Where the served status is written: with the cache, not in the folder.
    pub fn status_path(&self) -> PathBuf {
        status_path(&self.engine.options().cache_dir)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn folder(&self) -> &Path {
        &self.root
    }

    /// The folder is still there and still this mirror: a scan of a vanished folder, or of
    /// an empty one made in its place, would take every file for deleted. Goes by the folder's
    /// own file id, not by a file in it: programs delete and restore what is in the folder.
    fn check_folder(&self) -> Result<(), MirrorError> {
        if folder_id(&self.root).unwrap_or_default() != self.root_id {
            return Err(MirrorError::Gone {
                folder: self.root.clone(),
                cache: self.engine.options().cache_dir.clone(),
            });
        }
        Ok(())
    }

    fn apply_stamps(&self, changes: scan::StampChanges) -> Result<(), FsError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.engine.persist(|tx| {
            for (ino, s) in &changes {
                match s {
                    Some(s) => journal::put_stamp(tx, *ino, s)?,
                    None => journal::delete_stamp(tx, *ino)?,
                }
            }
            Ok(())
        })?;
        let mut map = self.stamps.map.lock();
        for (ino, s) in changes {
            match s {
                Some(s) => map.insert(ino, s),
                None => map.remove(&ino),
            };
        }
        Ok(())
    }

    /// Starts learning of the folder's changes from the OS, so that later scans walk only
    /// what changed. The scan after this one walks the whole folder (changes made before were
    /// not seen); if notifications cannot be had, every scan does. For a served mirror: a
    /// one-off flush has seen nothing to go by.
    pub fn watch_changes(&self) {
        if self.watch.get().is_some() {
            return;
        }
        match watch::Watch::start(&self.root) {
            Ok(w) => {
                let _ = self.watch.set(w);
                self.rescan_all();
            }
            Err(e) => warn!(
                error = %e,
                "cannot watch the mirror folder for changes; every flush scans all of it"
            ),
        }
    }

    /// Returns once a request may have been written to the control file, or after `timeout`.
    pub fn wait_for_request(&self, timeout: std::time::Duration) {
        match self.watch.get() {
            Some(w) => w.wait_for_request(timeout),
            None => std::thread::sleep(timeout),
        }
    }

    /// What the last scan of the folder looked at and found.
    pub fn last_scan(&self) -> Option<ScanReport> {
        self.last_scan.lock().clone()
    }

    /// Whether scans can go by the OS's notifications (`watch_changes` started them and they
    /// were not found missing).
    pub fn is_watched(&self) -> bool {
        self.watch.get().is_some_and(|w| w.is_working())
    }

    /// Makes the next scan walk the whole folder, whatever notifications say.
    pub fn rescan_all(&self) {
        self.scan_all_next.store(true, Ordering::SeqCst);
    }

    fn scan_locked(&self) -> Result<ScanReport, MirrorError> {
        self.check_folder()?;
        let scope = match self.watch.get() {
            Some(w) if !self.scan_all_next.swap(false, Ordering::SeqCst) => w.take(),
            Some(w) => {
                // What was recorded so far is covered by the walk that follows.
                w.drain();
                None
            }
            None => None,
        };
        let recorded = self.stamps.map.lock().clone();
        let (report, changes) = scan::scan(&self.engine, &self.root, &recorded, scope.as_ref());
        *self.last_scan.lock() = Some(report.clone());
        self.apply_stamps(changes)?;
        Ok(report)
    }

    /// Records what changed in the folder since the last scan, without writing anything to the
    /// share. `sipfs status` runs this so that it lists every pending change.
    pub fn scan(&self) -> Result<ScanReport, MirrorError> {
        let _op = self.op.lock();
        self.scan_locked()
    }

    /// Writes every change made in the folder to the share.
    pub fn flush(&self, label: Option<&str>) -> Result<FlushReport, MirrorError> {
        self.flush_with_progress(label, &|_| {})
    }

    pub fn flush_with_progress(
        &self,
        label: Option<&str>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<FlushReport, MirrorError> {
        let _op = self.op.lock();
        let _span = info_span!("mirror_flush", label = label.unwrap_or("")).entered();
        let scanned = self.scan_locked()?;
        let mut report = self.engine.flush_with_progress(label, progress);
        // A flush may have fetched a version to compare (`flush/capture.rs`).
        self.engine.drop_tmp_dir();
        report.warnings.extend(
            scanned
                .skipped
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message)),
        );
        Ok(report)
    }

    /// Pulls in what others changed on the share (and, the first time, fills the folder).
    /// Entries changed in the folder are recorded first and are never replaced.
    pub fn sync(&self, progress: &(dyn Fn(Progress) + Sync)) -> Result<SyncReport, MirrorError> {
        let _op = self.op.lock();
        let _span = info_span!("mirror_sync").entered();
        let scan = self.scan_locked()?;
        let refresh = self.engine.refresh();
        let mut errors = refresh.errors.clone();
        // Files the refresh dropped are fetched again below; until then they have no stamp,
        // so a scan in between can never take them for deleted.
        let fetched = match self.engine.prefetch(progress) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, "could not fetch everything; the folder is incomplete");
                errors.push(PendingItem::new(
                    "/",
                    match &e {
                        FsError::Share { reason, .. } => *reason,
                        _ => Reason::Other,
                    },
                    format!("could not fetch every file yet: {e}"),
                ));
                0
            }
        };
        self.engine.drop_tmp_dir();
        self.settle_after_sync()?;
        if self.watch.get().is_some() && !self.scan_all_next.load(Ordering::SeqCst) {
            // The fetches wrote into the folder and were notified like anyone's writes: looked
            // at now, with the sync's cost, instead of by the next flush.
            self.scan_locked()?;
        }
        Ok(SyncReport {
            scan,
            refresh,
            fetched,
            errors,
        })
    }

    /// After a refresh and fetch: folders get the share's times, and every entry the engine
    /// wrote into the folder gets a stamp.
    fn settle_after_sync(&self) -> Result<(), MirrorError> {
        let now = now_ns();
        let known = self.engine.known_entries();
        let mut changes: scan::StampChanges = Vec::new();
        {
            let map = self.stamps.map.lock();
            for k in known.iter().rev() {
                let abs = k.path.to_path(&self.root);
                if !k.present {
                    if map.contains_key(&k.ino) {
                        changes.push((k.ino, None));
                    }
                    continue;
                }
                let Ok(Some(mut now_st)) = Stamp::read(&abs) else {
                    continue;
                };
                if k.kind == EntryKind::Dir && !k.meta_dirty && now_st.mtime_ns != k.mtime_ns {
                    let ft = backing::filetime_from_ns(k.mtime_ns);
                    if filetime::set_symlink_file_times(&abs, ft, ft).is_ok() {
                        now_st = Stamp::read(&abs).ok().flatten().unwrap_or(now_st);
                    }
                }
                let stale = match map.get(&k.ino) {
                    None => true,
                    // A file the refresh replaced: its content is the share's version now.
                    Some(s) => {
                        k.kind != EntryKind::File
                            || (!s.same_metadata(&now_st)
                                && k.base.is_some_and(|b| {
                                    b.size == now_st.size && b.mtime_ns == now_st.mtime_ns
                                })
                                && !self.is_dirty(k.ino))
                    }
                };
                if stale {
                    changes.push((k.ino, Some(now_st.settle(&abs, now))));
                }
            }
        }
        self.apply_stamps(changes)?;
        Ok(())
    }

    fn is_dirty(&self, ino: Ino) -> bool {
        self.engine
            .state
            .read()
            .get(ino)
            .is_some_and(|n| n.content_dirty)
    }

    /// Everything the engine reports, after recording what changed in the folder.
    pub fn status(&self) -> Result<crate::report::Status, MirrorError> {
        self.scan()?;
        Ok(self.engine.status())
    }
}

/// The served status of the mirror whose cache is `cache_dir`.
pub fn status_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(STATUS_FILE)
}

/// What a sipfs before issue 30 kept in the folder's `.sipfs/` besides `control`.
fn remove_legacy_entries(root: &Path) {
    let dir = root.join(CONTROL_DIR);
    let _ = fs::remove_file(dir.join(LEGACY_MARKER_FILE));
    for name in LEGACY_ENTRIES {
        let p = dir.join(name);
        let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p));
    }
}
