//! Learning of the mirror folder's changes from the OS as they happen (inotify on Linux,
//! ReadDirectoryChangesW on Windows, FSEvents on macOS, through the `notify` crate), so that a
//! flush walks only the folders something happened in instead of the whole tree. What each
//! notification means, per backend, is `events.rs`.
//!
//! Notifications are trusted only when each flush proves they are flowing: [`Watch::take`]
//! writes a **barrier** file in `.sipfs/` (removed once its event came) and waits for its event. The OS delivers one
//! watch's events in order, so once the barrier's arrived, so had every event of a change made
//! before the flush began. If it does not arrive in time (subtree notifications that never come,
//! as under Wine; a watcher that died), or the OS said it dropped events and not where (an
//! overflowed queue), the caller scans the whole folder, which is always right. FSEvents says
//! where: that subtree is scanned.
//!
//! sipfs's own writes into the folder (a sync's fetches) are notified like anyone's. They are
//! not taken for the user's: the scan compares each notified entry with the stamp sipfs
//! recorded when it wrote it (`settle_after_sync`), and an entry as sipfs left it is no change. A barrier that never came once
//! turns notifications off for the rest of the run: waiting for it at every flush would only
//! add its timeout.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::{Condvar, Mutex};
use tracing::{debug, info, warn};

use crate::control::CONTROL_FILE;
use crate::ignore_rules::CONTROL_DIR;
use crate::relpath::RelPath;

use super::events::{notices, Backend, Notice};
use super::scan::relative;

/// How long a flush waits for its barrier before it scans the whole folder.
const BARRIER_WAIT: Duration = Duration::from_secs(2);

/// Barriers are written into `.sipfs/` under names that begin so: inside a subfolder, so that
/// a barrier's arrival also shows that notifications from below the top folder arrive. Each is
/// removed once its event came, so the folder keeps none between scans.
const BARRIER_PREFIX: &str = "barrier-";

/// The part of the folder a scan must look at: what notifications named since the last scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Folders whose own entries (and the folder itself) are looked at.
    pub shallow: HashSet<RelPath>,
    /// Entries looked at with everything below them: what was created, removed or renamed
    /// (a folder moved in brings a whole tree no notification named).
    pub deep: Vec<RelPath>,
    /// Entries looked at alone: what was written or had its times or mode changed, which
    /// changes neither its folder nor what is beside it (a write to one file of a folder of
    /// thousands costs one stat, not a listing).
    pub entries: HashSet<RelPath>,
}

impl Scope {
    /// Whether an entry at `path` is looked at by a scan of this scope.
    pub fn covers(&self, path: &RelPath) -> bool {
        self.entries.contains(path) || self.in_folders(path)
    }

    /// Looked at by the folder or tree part of the scope.
    pub fn in_folders(&self, path: &RelPath) -> bool {
        self.shallow.contains(path)
            || path.parent().is_some_and(|p| self.shallow.contains(&p))
            || self.deep.iter().any(|d| path.is_within(d))
    }

    /// A notified path: `deep` for what appeared, went or moved (its folder is listed and its
    /// tree walked), otherwise only the entry itself is looked at.
    fn add(&mut self, rel: RelPath, deep: bool) {
        if !deep {
            self.entries.insert(rel);
            return;
        }
        if let Some(parent) = rel.parent() {
            self.shallow.insert(parent);
        }
        self.deep.push(rel);
    }

    /// Deep roots without those inside another.
    fn settle(&mut self) {
        // By components, so that a folder comes right before what is inside it ("d", "d/a",
        // "d.tmp"; as strings "d.tmp" would come between).
        self.deep.sort_by(|a, b| a.components().cmp(b.components()));
        self.deep.dedup();
        let mut kept: Vec<RelPath> = Vec::with_capacity(self.deep.len());
        for d in std::mem::take(&mut self.deep) {
            if !kept.last().is_some_and(|k| d.is_within(k)) {
                kept.push(d);
            }
        }
        self.deep = kept;
        let entries = std::mem::take(&mut self.entries);
        self.entries = entries
            .into_iter()
            .filter(|e| !self.in_folders(e))
            .collect();
    }

    pub fn is_empty(&self) -> bool {
        self.shallow.is_empty() && self.deep.is_empty() && self.entries.is_empty()
    }
}

#[derive(Default)]
struct Seen {
    /// Paths notifications named since the last [`Watch::take`], and whether each needs the
    /// tree below it looked at.
    paths: Vec<(PathBuf, bool)>,
    /// The OS dropped events, or the watcher failed: only a full scan is right.
    lost: bool,
    /// Barrier files whose event came.
    barriers: HashSet<PathBuf>,
    /// The control file was written: a request may be waiting (`requests.rs`).
    request: bool,
}

struct Shared {
    seen: Mutex<Seen>,
    arrived: Condvar,
}

impl Seen {
    fn take_request(&mut self) -> bool {
        std::mem::take(&mut self.request)
    }

    /// Notes what one notice says, by where it is: a barrier's arrival, a request in the
    /// control file, a path for the next scan (sipfs's own `.sipfs/` aside), or lost events.
    fn record(&mut self, notice: Notice, at: &Places) {
        let (p, deep) = match notice {
            Notice::Lost => {
                self.lost = true;
                return;
            }
            // Events lost below the folder itself or above it: everything. Below sipfs's
            // barrier folder too, as the barrier may be among them.
            Notice::Subtree(p) if at.root.starts_with(&p) || at.barriers.starts_with(&p) => {
                self.lost = true;
                return;
            }
            Notice::Entry(p) => (p, false),
            Notice::Tree(p) | Notice::Subtree(p) => (p, true),
        };
        if p.parent() == Some(at.barriers.as_path())
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(BARRIER_PREFIX))
        {
            self.barriers.insert(p);
        } else if p == at.control_file {
            self.request = true;
        } else if !p.starts_with(&at.control) {
            self.paths.push((p, deep));
        }
    }
}

/// The paths a notice is told apart by.
struct Places {
    root: PathBuf,
    control: PathBuf,
    control_file: PathBuf,
    barriers: PathBuf,
}

impl Places {
    fn of(root: &Path) -> Places {
        let control = root.join(CONTROL_DIR);
        Places {
            root: root.to_path_buf(),
            control_file: control.join(CONTROL_FILE),
            barriers: control.clone(),
            control,
        }
    }
}

/// A running watch of the mirror folder.
pub struct Watch {
    root: PathBuf,
    shared: Arc<Shared>,
    barrier_dir: PathBuf,
    /// The file id of `barrier_dir` when it was last watched: a program that deleted
    /// `.sipfs/` (an undo) and the folder made again need a watch of the new folder.
    barrier_dir_id: Mutex<Option<(u64, u64)>>,
    next_barrier: AtomicU64,
    /// Off for the rest of the run once a barrier did not come.
    disabled: std::sync::atomic::AtomicBool,
    watcher: Mutex<Option<RecommendedWatcher>>,
    backend: Backend,
}

impl Watch {
    /// Starts watching `root` (the canonical mirror folder) and everything below it.
    pub fn start(root: &Path) -> notify::Result<Watch> {
        let w = Watch {
            root: root.to_path_buf(),
            shared: Arc::new(Shared {
                seen: Mutex::new(Seen::default()),
                arrived: Condvar::new(),
            }),
            barrier_dir: root.join(CONTROL_DIR),
            barrier_dir_id: Mutex::new(None),
            next_barrier: AtomicU64::new(0),
            disabled: false.into(),
            watcher: Mutex::new(None),
            backend: Backend::this_os(),
        };
        let _ = fs::create_dir_all(&w.barrier_dir);
        *w.barrier_dir_id.lock() = dir_id(&w.barrier_dir);
        *w.watcher.lock() = Some(w.open_watcher()?);
        info!(folder = %root.display(), "watching the mirror folder for changes");
        Ok(w)
    }

    /// A new OS watch of the whole folder, reporting into `shared`.
    fn open_watcher(&self) -> notify::Result<RecommendedWatcher> {
        let shared = self.shared.clone();
        let places = Places::of(&self.root);
        let backend = self.backend;
        let on_event = move |res: notify::Result<notify::Event>| {
            let mut seen = shared.seen.lock();
            match res {
                Ok(ev) => {
                    for notice in notices(&ev, backend) {
                        seen.record(notice, &places);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "folder notifications failed; the next flush scans it all");
                    seen.lost = true;
                }
            }
            drop(seen);
            shared.arrived.notify_all();
        };
        let mut watcher = notify::recommended_watcher(on_event)?;
        watcher.watch(&self.root, RecursiveMode::Recursive)?;
        Ok(watcher)
    }

    /// What changed since the last call, once the OS is seen to have delivered everything up
    /// to now; `None` when only a full scan can tell (events lost, notifications not flowing).
    /// Either way the record starts afresh: what happens from now on is for the next call.
    pub fn take(&self) -> Option<Scope> {
        if self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let (mut arrived, mut paths, mut lost) = match self.barrier() {
            Ok(barrier) => self.wait_for(&barrier),
            Err(e) => {
                warn!(error = %e, "could not write a notification barrier; scanning the whole folder");
                self.drain();
                return None;
            }
        };
        if !arrived && !lost {
            // A `.sipfs/` a program removed, and we made again, can lose its new watch to the
            // late removal event of the old one (the watcher keys watches by path): watched
            // afresh, a second barrier tells whether notifications really do not come.
            *self.barrier_dir_id.lock() = None;
            if let Ok(barrier) = self.barrier() {
                let (again, more, lost_now) = self.wait_for(&barrier);
                (arrived, lost) = (again, lost_now);
                paths.extend(more);
            }
        }
        if !arrived && !lost {
            warn!(
                "folder notifications did not arrive (a file system or OS that does not send \
                 them for subfolders); every flush scans the whole folder"
            );
            self.disabled.store(true, Ordering::Relaxed);
            *self.watcher.lock() = None;
            return None;
        }
        if lost && !self.backend.reopens_after_loss() {
            info!("the OS dropped folder notifications; scanning all");
            return None;
        }
        if lost {
            // Events were dropped, so some folders' watches may never have been added: a new
            // watch of everything, then one walk of everything.
            info!("the OS dropped folder notifications; watching afresh and scanning all");
            let mut w = self.watcher.lock();
            *w = None;
            match self.open_watcher() {
                Ok(new) => *w = Some(new),
                Err(e) => {
                    warn!(error = %e, "cannot watch the folder again; every flush scans it all");
                    self.disabled.store(true, Ordering::Relaxed);
                }
            }
            return None;
        }
        let scope = scope_of(&self.root, paths)?;
        debug!(
            folders = scope.shallow.len(),
            trees = scope.deep.len(),
            entries = scope.entries.len(),
            "changes from notifications"
        );
        Some(scope)
    }

    /// Writes the next barrier file, making and watching `.sipfs/` again where needed.
    fn barrier(&self) -> std::io::Result<PathBuf> {
        let n = self.next_barrier.fetch_add(1, Ordering::Relaxed);
        let barrier = self
            .barrier_dir
            .join(format!("{BARRIER_PREFIX}{}-{n}", std::process::id()));
        self.prepare_barrier_dir()?;
        fs::write(&barrier, b"")?;
        Ok(barrier)
    }

    /// Waits for `barrier`'s event, at most [`BARRIER_WAIT`], and removes it. Whether it came,
    /// the paths notified until then, and whether events were lost.
    fn wait_for(&self, barrier: &Path) -> (bool, Vec<(PathBuf, bool)>, bool) {
        let deadline = Instant::now() + BARRIER_WAIT;
        let mut seen = self.shared.seen.lock();
        // Events lost mean a walk of everything, which needs no barrier; and the barrier's own
        // event may be among those lost (FSEvents's rescan of the folder or above it), so it
        // is not waited for then, nor taken for notifications that do not come.
        while !seen.barriers.contains(barrier) && !seen.lost {
            if self
                .shared
                .arrived
                .wait_until(&mut seen, deadline)
                .timed_out()
            {
                break;
            }
        }
        let arrived = seen.barriers.remove(barrier);
        let paths = std::mem::take(&mut seen.paths);
        let lost = std::mem::take(&mut seen.lost);
        seen.barriers.clear();
        drop(seen);
        let _ = fs::remove_file(barrier);
        self.watch_new_folders(&paths);
        (arrived, paths, lost)
    }

    /// Waits until the control file is written or `timeout` passes: a request is then looked
    /// at at once instead of at the next poll. Polling stays, for writers whose writes are not
    /// notified (Docker Desktop's file sharing).
    pub fn wait_for_request(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = self.shared.seen.lock();
        while !seen.take_request() {
            if self
                .shared
                .arrived
                .wait_until(&mut seen, deadline)
                .timed_out()
            {
                return;
            }
        }
    }

    /// Notifications are flowing, as far as the last barrier showed.
    pub fn is_working(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Forgets what was recorded: a full scan is about to look at everything.
    pub fn drain(&self) {
        let paths = {
            let mut seen = self.shared.seen.lock();
            seen.lost = false;
            std::mem::take(&mut seen.paths)
        };
        self.watch_new_folders(&paths);
    }

    /// Makes `.sipfs/` again if a program removed it, and watches it again if it is not the
    /// folder watched before (removed and made again, by us or by a restore): the recursive
    /// watch may not have added the new one yet, or a late removal event of the old one may
    /// take its watch away (see `watch_new_folders`), and the barrier would then not come.
    fn prepare_barrier_dir(&self) -> std::io::Result<()> {
        fs::create_dir_all(&self.barrier_dir)?;
        let now = dir_id(&self.barrier_dir);
        let mut last = self.barrier_dir_id.lock();
        if *last != now {
            if self.backend.watches_new_folders() {
                if let Some(w) = self.watcher.lock().as_mut() {
                    w.watch(&self.barrier_dir, RecursiveMode::Recursive)
                        .map_err(std::io::Error::other)?;
                }
            }
            *last = now;
        }
        Ok(())
    }

    /// Watches again, from here and before any scan walks them, the folders that notified
    /// paths brought (made, moved in). A recursive inotify watch adds a new folder's watch
    /// only after it has handed over the batch of events that told of the folder, so a write
    /// in it just after would go unnoticed; and it keys watches by path, so the late removal
    /// event of a folder removed and made again under the same name takes the new folder's
    /// watch away (both found by the model test). `watch` returns once the event loop has
    /// registered the watch, after every event delivered so far: what the folder receives
    /// from then on is notified, and what it held before is found by the scan that follows,
    /// which walks it whole.
    fn watch_new_folders(&self, paths: &[(PathBuf, bool)]) {
        if !self.backend.watches_new_folders() {
            return;
        }
        let mut folders: Vec<&PathBuf> = paths
            .iter()
            .filter(|(p, deep)| *deep && p.as_path() != self.root && p.is_dir())
            .map(|(p, _)| p)
            .collect();
        folders.sort();
        folders.dedup();
        if let Some(w) = self.watcher.lock().as_mut() {
            for f in folders {
                if let Err(e) = w.watch(f, RecursiveMode::Recursive) {
                    debug!(folder = %f.display(), error = %e, "could not watch a new folder");
                }
            }
        }
    }
}

/// A folder's file id, to tell a folder made again under its name from the one watched.
fn dir_id(dir: &Path) -> Option<(u64, u64)> {
    super::stamp::Stamp::read(dir)
        .ok()
        .flatten()
        .map(|s| s.file_id)
}

/// The scope of the notified paths (each with whether its tree is looked at); `None` when a
/// path is not one the scan can record (a name that is not UTF-8): only a full scan is right
/// then.
fn scope_of(root: &Path, paths: Vec<(PathBuf, bool)>) -> Option<Scope> {
    let mut scope = Scope::default();
    for (p, deep) in paths {
        match relative(root, &p) {
            Some(rel) if rel.is_root() => {
                scope.shallow.insert(rel);
            }
            Some(rel) => scope.add(rel, deep),
            None => return None,
        }
    }
    scope.settle();
    Some(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn a_scope_covers_the_entries_of_its_folders_and_the_trees_below_its_roots() {
        let mut s = Scope::default();
        s.add(rel("a/b/f"), false);
        s.add(rel("c/new"), true);
        s.add(rel("c/new.tmp"), true);
        s.add(rel("c/new/inner"), true);
        s.add(rel("c/new/inner/written"), false);
        s.add(rel("c/old"), false);
        s.settle();
        assert_eq!(s.deep, vec![rel("c/new"), rel("c/new.tmp")]);
        assert_eq!(
            s.entries,
            [rel("a/b/f")].into_iter().collect(),
            "entries inside the folders and trees are looked at with them"
        );
        assert!(s.covers(&rel("a/b/f")), "a written file: itself");
        assert!(!s.covers(&rel("a/b")), "not its folder");
        assert!(!s.covers(&rel("a/b/g")), "nor what is beside it");
        assert!(s.covers(&rel("c")), "a created entry's folder: its times");
        assert!(s.covers(&rel("c/new/x/y/z")), "what a created entry holds");
        assert!(s.covers(&rel("c/other")), "what is beside a created entry");
        assert!(!s.covers(&rel("c/other/below")));
    }

    /// The scope a batch of notifications gives, as `take` builds it from what `on_event`
    /// recorded, without a watcher.
    fn scope_from(events: &[notify::Event], backend: Backend) -> Option<Scope> {
        let places = Places::of(Path::new("/m"));
        let mut seen = Seen::default();
        for ev in events {
            for n in notices(ev, backend) {
                seen.record(n, &places);
            }
        }
        if seen.lost {
            return None;
        }
        scope_of(Path::new("/m"), seen.paths)
    }

    fn ev(kind: notify::EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn a_merged_fsevents_record_looks_at_the_entrys_folder_and_tree() {
        use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};
        use notify::EventKind;
        // One record of a file made, written and renamed away within a moment, as notify 8
        // splits it: the data flag last. Nothing in it says what is there now.
        let record = [
            ev(EventKind::Create(CreateKind::File), "/m/d/f"),
            ev(EventKind::Remove(RemoveKind::File), "/m/d/f"),
            ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
                "/m/d/f",
            ),
            ev(
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                "/m/d/f",
            ),
            ev(
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                "/m/e/g",
            ),
        ];
        let s = scope_from(&record, Backend::FsEvents).unwrap();
        assert_eq!(s.deep, vec![rel("d/f")]);
        assert!(s.covers(&rel("d/other")), "the folder is listed: {s:?}");
        assert_eq!(s.entries, [rel("e/g")].into_iter().collect());
    }

    #[test]
    fn an_fsevents_rescan_scans_its_subtree_or_everything() {
        use notify::event::Flag;
        use notify::EventKind;
        let rescan = |p: &str| ev(EventKind::Other, p).set_flag(Flag::Rescan);
        let s = scope_from(&[rescan("/m/big")], Backend::FsEvents).unwrap();
        assert_eq!(s.deep, vec![rel("big")]);
        assert!(s.covers(&rel("big/a/b/c")) && !s.covers(&rel("small/x")));
        // Dropped at the folder itself or above it: a full scan.
        assert_eq!(scope_from(&[rescan("/m")], Backend::FsEvents), None);
        assert_eq!(scope_from(&[rescan("/")], Backend::FsEvents), None);
        // Lost around sipfs's barriers: a barrier may be among them, so everything.
        assert_eq!(scope_from(&[rescan("/m/.sipfs")], Backend::FsEvents), None);
        // Lost in sipfs's own temporaries only: nothing of the user's to look at.
        assert_eq!(
            scope_from(&[rescan("/m/.sipfs/tmp")], Backend::FsEvents),
            Some(Scope::default())
        );
        // inotify's overflow: a full scan, whatever path it came with.
        assert_eq!(scope_from(&[rescan("/m/big")], Backend::PerFolder), None);
    }
}
