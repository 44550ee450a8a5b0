//! Finding what changed in the mirror folder since the engine last accounted for it, and
//! recording it in the engine as the matching operations (so a flush writes it the same way a
//! mount's changes are written).
//!
//! The folder is walked once; each entry is compared with its node and its [`Stamp`]:
//! 1. renames: an entry that left its path and whose file id turns up at a new path is moved
//!    (a renamed folder stays one rename on the share, not a copy and a delete);
//! 2. removals, deepest first: only of entries that were in the folder (stamped and cached), so
//!    an entry never fetched (the share was offline) is never taken for deleted;
//! 3. creations, parents first;
//! 4. changes: files whose stamp differs are marked for writing; directories take their mtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, info_span, warn};

use crate::backing::EntryKind;
use crate::engine::{now_ns, Engine};
use crate::error::{FsError, Reason};
use crate::ignore_rules::CONTROL_DIR;
use crate::names;
use crate::relpath::{check_name, RelPath};
use crate::report::PendingItem;
use crate::tree::Ino;

use super::stamp::Stamp;
use super::watch::Scope;

/// What a scan of the mirror folder found and recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub entries: usize,
    pub created: usize,
    pub changed: usize,
    pub removed: usize,
    pub renamed: usize,
    /// The whole folder was walked; otherwise only what notifications named (`watch.rs`).
    #[serde(default)]
    pub full: bool,
    /// Entries that could not be read or recorded; they are looked at again next time.
    pub skipped: Vec<PendingItem>,
    pub duration_ms: u64,
}

impl ScanReport {
    pub fn found_anything(&self) -> bool {
        self.created + self.changed + self.removed + self.renamed > 0
    }
}

/// One entry found in the folder.
#[derive(Debug, Clone)]
struct DiskEntry {
    stamp: Stamp,
    link: Option<String>,
}

/// Stamp updates a scan makes: set, or dropped (`None`).
pub(super) type StampChanges = Vec<(Ino, Option<Stamp>)>;

struct Walked {
    entries: BTreeMap<RelPath, DiskEntry>,
    /// Folders that could not be listed: nothing below them is taken for removed.
    unreadable: Vec<RelPath>,
}

/// Walks the whole folder, or with a scope only its folders' entries and its trees.
fn walk(root: &Path, scope: Option<&Scope>, report: &mut ScanReport) -> Walked {
    let mut walked = Walked {
        entries: BTreeMap::new(),
        unreadable: Vec::new(),
    };
    match scope {
        None => walk_from(root, root, None, report, &mut walked),
        Some(scope) => {
            let mut shallow: Vec<&RelPath> = scope.shallow.iter().collect();
            shallow.sort();
            for d in shallow {
                walk_from(root, &d.to_path(root), Some(1), report, &mut walked);
            }
            for d in &scope.deep {
                walk_from(root, &d.to_path(root), None, report, &mut walked);
            }
            let mut entries: Vec<&RelPath> = scope.entries.iter().collect();
            entries.sort();
            for e in entries {
                walk_from(root, &e.to_path(root), Some(0), report, &mut walked);
            }
        }
    }
    walked
}

fn walk_from(
    root: &Path,
    from: &Path,
    max_depth: Option<usize>,
    report: &mut ScanReport,
    walked: &mut Walked,
) {
    let control = root.join(CONTROL_DIR);
    let mut w = walkdir::WalkDir::new(from).follow_links(false);
    if let Some(d) = max_depth {
        w = w.max_depth(d);
    }
    let it = w.into_iter().filter_entry(|e| e.path() != control);
    let (entries, unreadable) = (&mut walked.entries, &mut walked.unreadable);
    for item in it {
        let e = match item {
            Ok(e) => e,
            // What a notification named and is gone by now (or is below what is a file now):
            // nothing there to record.
            Err(err)
                if err.depth() == 0
                    && err.io_error().is_some_and(|e| {
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                        )
                    }) =>
            {
                continue;
            }
            Err(err) => {
                let rel = err
                    .path()
                    .and_then(|p| relative(root, p))
                    .unwrap_or_default();
                warn!(path = %rel, error = %err, "mirror folder entry unreadable");
                report.skipped.push(PendingItem::new(
                    &rel,
                    Reason::PermissionDenied,
                    format!("could not read it in the mirror folder: {err}"),
                ));
                unreadable.push(rel);
                continue;
            }
        };
        let Some(rel) = relative(root, e.path()) else {
            report.skipped.push(PendingItem::new(
                e.path().display(),
                Reason::NameNotAllowed,
                "the name is not valid Unicode or not a valid file name; it stays local only",
            ));
            continue;
        };
        if !rel.is_root() && names::is_temp_name(rel.name()) {
            continue;
        }
        let md = match e.metadata() {
            Ok(m) => m,
            Err(err) => {
                report.skipped.push(PendingItem::new(
                    &rel,
                    Reason::Other,
                    format!("could not read it in the mirror folder: {err}"),
                ));
                unreadable.push(rel);
                continue;
            }
        };
        let stamp = Stamp::of_metadata(&md, e.path());
        let link = (stamp.kind == EntryKind::Symlink)
            .then(|| std::fs::read_link(e.path()).ok())
            .flatten()
            .map(|t| crate::os_names::from_os(t.as_os_str()).into_owned());
        entries.insert(rel, DiskEntry { stamp, link });
    }
}

/// `path` below `root` as a [`RelPath`], if every component is a valid name.
pub(super) fn relative(root: &Path, path: &Path) -> Option<RelPath> {
    let rest = path.strip_prefix(root).ok()?;
    let mut rel = RelPath::root();
    for c in rest.components() {
        let name = crate::os_names::from_os(c.as_os_str());
        check_name(&name).ok()?;
        rel = rel.join(&name);
    }
    Some(rel)
}

/// Compares the folder with the engine and records every difference. Returns the report and
/// the stamp changes to keep; `stamps` is what was recorded before.
pub(super) fn scan(
    engine: &Engine,
    root: &Path,
    stamps: &HashMap<Ino, Stamp>,
    scope: Option<&Scope>,
) -> (ScanReport, StampChanges) {
    let _span = info_span!("scan", root = %root.display(), full = scope.is_none()).entered();
    let start = Instant::now();
    let mut report = ScanReport {
        full: scope.is_none(),
        ..Default::default()
    };
    let mut changes: StampChanges = Vec::new();
    let now = now_ns();
    let walked = walk(root, scope, &mut report);
    // The namespace as the engine has it, where the scan looks.
    let known_now = || match scope {
        None => engine.known_entries(),
        Some(scope) => engine.known_entries_in(scope),
    };
    let disk = &walked.entries;
    report.entries = disk.len();
    let readable = |p: &RelPath| !walked.unreadable.iter().any(|u| p.is_within(u));
    let fail = |report: &mut ScanReport, path: &RelPath, what: &str, e: FsError| {
        warn!(path = %path, error = %e, "could not record {what}");
        report.skipped.push(PendingItem::new(
            path,
            Reason::Other,
            format!("could not record {what}: {e}"),
        ));
    };

    // 1. Renames: entries whose file id left one path and arrived at another.
    // Listed again only after a step changed it.
    let mut known = known_now();
    let mut left: HashMap<(u64, u64), (Ino, EntryKind)> = HashMap::new();
    for k in known.iter().filter(|k| !k.path.is_root() && k.present) {
        let Some(s) = stamps.get(&k.ino) else {
            continue;
        };
        let moved = disk
            .get(&k.path)
            .is_none_or(|d| d.stamp.file_id != s.file_id || d.stamp.kind != k.kind);
        if moved && s.file_id != (0, 0) && readable(&k.path) {
            left.insert(s.file_id, (k.ino, k.kind));
        }
    }
    if !left.is_empty() {
        let at: HashMap<Ino, RelPath> = known.iter().map(|k| (k.ino, k.path.clone())).collect();
        for (path, d) in disk {
            let Some(&(ino, kind)) = left.get(&d.stamp.file_id) else {
                continue;
            };
            if kind != d.stamp.kind || path.is_root() || at.get(&ino) == Some(path) {
                continue;
            }
            // Moved with its folder, whose rename was recorded just before.
            if engine.path_of(ino).as_ref() == Some(path) {
                left.remove(&d.stamp.file_id);
                continue;
            }
            match engine.adopt_renamed(ino, path) {
                Ok(()) => {
                    debug!(to = %path, "rename found");
                    report.renamed += 1;
                    left.remove(&d.stamp.file_id);
                }
                // Not expressible as one rename (a non-empty folder in the way...): it is
                // recorded as a removal and a creation below.
                Err(e) => debug!(to = %path, error = %e, "not taken as a rename"),
            }
        }
    }

    // 2. Removals, deepest first.
    if report.renamed > 0 {
        known = known_now();
    }
    for k in known.iter().rev().filter(|k| !k.path.is_root()) {
        let here = disk.get(&k.path);
        if here.is_some_and(|d| d.stamp.kind == k.kind) || !readable(&k.path) {
            continue;
        }
        match (stamps.get(&k.ino), here) {
            // In the folder before, gone now: removed by someone.
            (Some(_), _) if k.present => {}
            // Something else took the place of an entry never fetched.
            (None, Some(_)) => {}
            // A local change recorded without its stamp (a crash came between the two), gone
            // now: nothing of it is left to write.
            (None, None) if k.present && k.content_dirty => {}
            // Never fetched, or fetched and then lost without a trace: fetch it again.
            _ => {
                if k.present && k.kind == EntryKind::File {
                    if let Err(e) = engine.forget_cached(k.ino) {
                        fail(&mut report, &k.path, "a missing file", e);
                    }
                }
                continue;
            }
        }
        match engine.adopt_removed_entry(&k.path, k.kind == EntryKind::Dir) {
            Ok(()) => {
                report.removed += 1;
                changes.push((k.ino, None));
            }
            // A folder that still holds entries never fetched: it stays, and comes back at the
            // next refresh with them.
            Err(FsError::NotEmpty(_)) => debug!(path = %k.path, "folder kept: unfetched entries"),
            Err(e) => fail(&mut report, &k.path, "a removal", e),
        }
    }

    // 3. Creations, parents first (a BTreeMap of paths lists a folder before its entries).
    if report.removed > 0 {
        known = known_now();
    }
    let known_paths: HashSet<&RelPath> = known.iter().map(|k| &k.path).collect();
    for (path, d) in disk {
        if path.is_root() || known_paths.contains(path) {
            continue;
        }
        let abs = path.to_path(root);
        let created = match d.stamp.kind {
            EntryKind::Dir => engine.adopt_mkdir(path, 0o755),
            EntryKind::File => engine.adopt_created(path, None),
            EntryKind::Symlink => engine.adopt_created(path, d.link.as_deref()),
            k => engine.adopt_special(path, k, special_rdev(&abs)),
        };
        match created {
            Ok(ino) => {
                report.created += 1;
                changes.push((ino, Some(d.stamp.settle(&abs, now))));
            }
            Err(e) => fail(&mut report, path, "a new entry", e),
        }
    }

    // 4. Changes of content and times.
    let handled: HashSet<Ino> = changes.iter().map(|(i, _)| *i).collect();
    // Anything recorded above also gave the folders involved the time of the scan.
    if report.found_anything() {
        known = known_now();
    }
    for k in known {
        let Some(d) = disk.get(&k.path) else {
            continue;
        };
        // New folders too: adding their entries gave them the time of the scan.
        if d.stamp.kind != k.kind || (handled.contains(&k.ino) && k.kind != EntryKind::Dir) {
            continue;
        }
        let abs = k.path.to_path(root);
        let recorded = stamps.get(&k.ino);
        match k.kind {
            EntryKind::File => {
                let changed = recorded.is_none_or(|s| s.differs(&d.stamp, &abs));
                if changed {
                    match engine.adopt_content_change(k.ino) {
                        Ok(()) => {
                            report.changed += 1;
                            changes.push((k.ino, Some(d.stamp.settle(&abs, now))));
                        }
                        Err(e) => fail(&mut report, &k.path, "a change", e),
                    }
                } else if recorded.is_some_and(Stamp::is_racy_stamp) {
                    // Unchanged: once it is old enough, metadata alone will do.
                    let settled = d.stamp.settle(&abs, now);
                    if Some(&settled) != recorded {
                        changes.push((k.ino, Some(settled)));
                    }
                }
            }
            EntryKind::Dir => {
                if d.stamp.mtime_ns != k.mtime_ns {
                    if let Err(e) = engine.adopt_dir_mtime(k.ino, d.stamp.mtime_ns) {
                        fail(&mut report, &k.path, "a folder time", e);
                    }
                }
                if recorded != Some(&d.stamp) {
                    changes.push((k.ino, Some(d.stamp)));
                }
            }
            EntryKind::Symlink => {
                if k.present && k.link != d.link {
                    let replaced = engine
                        .adopt_removed_entry(&k.path, false)
                        .and_then(|()| engine.adopt_created(&k.path, d.link.as_deref()));
                    match replaced {
                        Ok(ino) => {
                            report.changed += 1;
                            changes.push((k.ino, None));
                            changes.push((ino, Some(d.stamp)));
                        }
                        Err(e) => fail(&mut report, &k.path, "a changed link", e),
                    }
                } else if recorded != Some(&d.stamp) {
                    changes.push((k.ino, Some(d.stamp)));
                }
            }
            // No content; a mode or time changed there is not followed.
            _ => {
                if recorded != Some(&d.stamp) {
                    changes.push((k.ino, Some(d.stamp)));
                }
            }
        }
    }
    engine.reload_ignore_rules();
    report.duration_ms = start.elapsed().as_millis() as u64;
    if report.found_anything() {
        info!(
            created = report.created,
            changed = report.changed,
            removed = report.removed,
            renamed = report.renamed,
            ms = report.duration_ms,
            "mirror folder scanned"
        );
    }
    (report, changes)
}

/// A device node's number (0 for FIFOs, sockets, or what cannot be read).
fn special_rdev(path: &std::path::Path) -> u64 {
    std::fs::symlink_metadata(path).map_or(0, |md| crate::backing::Stat::from_metadata(&md).rdev)
}
