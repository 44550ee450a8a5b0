//! Writing pending changes to the share.
//!
//! Order (see docs/ARCHITECTURE.md for the reasoning):
//! 1. finish what an interrupted flush left: `ready` temporaries are renamed into place,
//!    others are removed;
//! 2. stage: every dirty file whose directory exists on the share is copied, in parallel, to a
//!    temporary name beside its target, and the files of new folders into those folders made
//!    under temporary names; the temporaries are recorded in the journal first;
//! 3. the burst: new folders are renamed into place, temporaries over their targets, then the
//!    logged namespace changes (mkdir, rename, remove) are replayed in order, each removed
//!    from the journal when done;
//! 4. files that live in directories the burst created are staged and renamed in place;
//! 5. modification times and modes, directories deepest first.
//!
//! A failure stays with its path: the change stays pending with a reason, and everything that
//! does not depend on it goes on.
//!
//! The steps live in `stage` (2 and 4: temporaries, their commit, conflicts), `folders` (new
//! folders written whole), `replay` (the logged namespace changes of 3) and `meta` (5); this
//! module runs them in order.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use rayon::prelude::*;
use tracing::{debug, info, info_span, warn};

use crate::backing::{self, EntryKind, Expect};
use crate::engine::Engine;
use crate::error::{FsError, Reason};
use crate::journal::{self, StagedRow};
use crate::names;
use crate::pending::{local_path_of, share_path_of, touches, Base, Logged, NsOp};
use crate::relpath::RelPath;
use crate::report::{ConflictItem, FlushReport, PendingItem, Progress};
use crate::tree::{Ino, Node};

mod capture;
mod commit;
mod folders;
mod meta;
mod replay;
mod stage;
mod times;

pub(crate) use times::{ShareTimes, SHARE_TIMES_KEY};

/// What a retry covers: the paths the last flush left pending, and logged changes up to the
/// last one it covered.
struct Scope {
    paths: std::collections::HashSet<String>,
    ops_upto: i64,
}

/// One dirty entry, as it was when the flush began.
#[derive(Debug, Clone)]
struct Job {
    ino: Ino,
    local: RelPath,
    kind: EntryKind,
    node_gen: u64,
    live_gen: u64,
    base: Option<Base>,
    in_share: bool,
    link: Option<String>,
    content: bool,
    mode: u32,
    /// An owner recorded here (`Node::owner`), written back where the share keeps owners.
    owner: Option<(u32, u32)>,
    /// The number its open handles are counted under (`Node::shown_ino`, for hard links).
    live: Ino,
    /// One name of a hard-linked entry.
    linked: bool,
    /// Special files: their time and device number (they have no cache copy to read them
    /// from).
    mtime_ns: i64,
    rdev: u64,
    /// Extended attributes set or removed here, written back where the share keeps them.
    xattrs: crate::tree::Xattrs,
}

#[derive(Debug)]
struct Staged {
    job: Job,
    temp: RelPath,
    target: RelPath,
    conflict: Option<RelPath>,
    size: u64,
    mtime_ns: i64,
    /// Already at its target: its new folder was renamed into place (`folders.rs`).
    in_place: bool,
    /// The content hash of what was staged, where the share may keep whole seconds only.
    hash: Option<u64>,
}

impl Job {
    /// The job for node `n` at `local`, as it is now.
    fn of(n: &Node, local: RelPath, live_gen: u64) -> Job {
        Job {
            ino: n.ino,
            local,
            kind: n.kind,
            node_gen: n.gen,
            live_gen,
            base: n.base,
            in_share: n.in_share,
            link: n.link().map(str::to_owned),
            content: n.content_dirty && !n.is_dir(),
            mode: n.mode,
            owner: n.owner(),
            live: n.shown_ino(),
            linked: n.shown().is_some(),
            mtime_ns: n.mtime_ns,
            rdev: n.rdev(),
            xattrs: n.xattrs().cloned().unwrap_or_default(),
        }
    }
}

/// A dirty file about to be staged: its place on the share and its temporary's name there.
struct Planned {
    job: Job,
    target: RelPath,
    temp: RelPath,
    /// Its target's folder is new on the share (`folders.rs`): nothing can be there yet.
    fresh: bool,
}

impl Planned {
    /// Its journal record before the temporary is made: not ready (a crash from here on
    /// removes the temporary), and no conflict name yet (`mark_ready` records it).
    fn row(&self) -> StagedRow {
        StagedRow {
            temp: self.temp.clone(),
            target: self.target.clone(),
            conflict: None,
            ino: self.job.ino,
            ready: false,
        }
    }
}

impl Staged {
    fn row(&self, ready: bool) -> StagedRow {
        StagedRow {
            temp: self.temp.clone(),
            target: self.target.clone(),
            conflict: self.conflict.clone(),
            ino: self.job.ino,
            ready,
        }
    }
}

/// An entry the flush wrote (or settled), to be recorded as such.
struct Finished {
    job: Job,
    base: Option<Base>,
    /// Its temporary, whose journal record goes in the same transaction.
    temp: Option<RelPath>,
    /// The old version its commit captured, noted for removal in the same transaction
    /// (`capture.rs`): until then the staged row names it.
    captured: Option<capture::CapturedRow>,
    /// The content hash of what it wrote, recorded with its base.
    hash: Option<u64>,
}

enum StageOutcome {
    Staged(Staged),
    /// Its directory does not exist on the share until the burst creates it.
    Deferred(Job),
    Pending(PendingItem),
    /// A special file the share cannot hold: it stays in the cache only, and is reported.
    KeptLocal(Job),
}

/// State shared by the workers of one flush.
struct Ctx<'a> {
    report: Mutex<FlushReport>,
    /// Set once the share is found unreachable: the rest fails fast instead of retrying.
    down: AtomicBool,
    /// What set `down`: the reason and message the entries not tried after it are given.
    down_because: Mutex<Option<(Reason, String)>>,
    warned_mtime: AtomicBool,
    warned_owner: AtomicBool,
    warned_xattrs: AtomicBool,
    warned_links: AtomicBool,
    progress: &'a (dyn Fn(Progress) + Sync),
    done: std::sync::atomic::AtomicU64,
    total: u64,
    /// Local directories whose share copy this flush changed: their times are set last.
    touched_dirs: Mutex<BTreeSet<RelPath>>,
    /// Staging folders this flush made on the share (`spread_temps`), removed after the burst.
    staging_dirs: Mutex<Vec<RelPath>>,
}

impl Ctx<'_> {
    fn touched(&self, path: &RelPath) {
        if let Some(p) = path.parent() {
            self.touched_dirs.lock().insert(p);
        }
    }

    fn pending(&self, path: &RelPath, e: &io::Error) -> PendingItem {
        PendingItem::new(path, self.note_failure(e), e)
    }

    /// Why a share call failed; a share that cannot be reached, or that passed its deadline,
    /// counts as down for the rest of this flush, which then makes no more calls: it ends
    /// within the deadline rather than after one failure per file or per step.
    fn note_failure(&self, e: &io::Error) -> Reason {
        let reason = Reason::classify(e);
        if reason == Reason::Unreachable || crate::deadline::Stalled::is(e) {
            self.down_because
                .lock()
                .get_or_insert_with(|| (reason, e.to_string()));
            self.down.store(true, Ordering::SeqCst);
        }
        reason
    }

    fn push_pending(&self, item: PendingItem) {
        warn!(path = %item.path, reason = ?item.reason, message = %item.message, "stays pending");
        self.report.lock().pending.push(item);
    }

    /// An entry not tried because the share went down earlier in this flush: it is given that
    /// failure's reason, so that the report says what the share did.
    fn unreachable(&self, path: &RelPath) -> PendingItem {
        match &*self.down_because.lock() {
            Some((reason, why)) => PendingItem::new(
                path,
                *reason,
                format!("not tried: earlier in this flush, {why}"),
            ),
            None => PendingItem::new(
                path,
                Reason::Unreachable,
                "the share stopped answering during this flush",
            ),
        }
    }

    fn step(&self, bytes: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.progress)(Progress {
            done,
            total: self.total,
            bytes,
            total_bytes: 0,
        });
    }

    /// Gives the share's entry at `target` the owner recorded here, if any. A share that
    /// keeps no Unix owners (SMB), or whose user may not give them (sshfs as a plain user),
    /// refuses: said once, and the entry counts as written (its owner stays here).
    fn write_owner(
        &self,
        backing: &dyn backing::Backing,
        target: &RelPath,
        owner: Option<(u32, u32)>,
    ) {
        let Some((uid, gid)) = owner else {
            return;
        };
        if let Err(e) = backing.set_owner(target, uid, gid) {
            debug!(path = %target, error = %e, "share did not take the owner");
            if !self.warned_owner.swap(true, Ordering::SeqCst) {
                let msg = format!("the share does not keep owners ({e}); files were written, owned as the share decides, and keep their owners here");
                warn!("{msg}");
                self.report.lock().warnings.push(msg);
            }
        }
    }

    /// Gives the share's entry at `target` the extended attributes set here, and removes those
    /// removed here. A share that keeps none (sshfs, SMB) refuses: said once, and the entry
    /// counts as written (its attributes stay here).
    fn write_xattrs(
        &self,
        backing: &dyn backing::Backing,
        target: &RelPath,
        xattrs: &crate::tree::Xattrs,
    ) {
        for (name, value) in xattrs {
            if let Err(e) = backing.set_xattr(target, name, value.as_deref()) {
                debug!(path = %target, error = %e, "share did not take an extended attribute");
                if !self.warned_xattrs.swap(true, Ordering::SeqCst) {
                    let msg = format!("the share does not keep extended attributes ({e}); files were written without them, and keep them here");
                    warn!("{msg}");
                    self.report.lock().warnings.push(msg);
                }
                return;
            }
        }
    }

    /// A hard link the share would not make: the name is written as a copy of its own.
    fn warn_once_links(&self, e: &io::Error) {
        debug!(error = %e, "share did not make a hard link");
        if !self.warned_links.swap(true, Ordering::SeqCst) {
            let msg = format!("the share does not keep hard links ({e}); each name of a hard-linked file was written as a copy of its own, and they stay one file here");
            warn!("{msg}");
            self.report.lock().warnings.push(msg);
        }
    }

    fn warn_once_mtime(&self) {
        if !self.warned_mtime.swap(true, Ordering::SeqCst) {
            let msg = "the share does not keep modification times exactly; files were written, but their times are the share's own".to_string();
            warn!("{msg}");
            self.report.lock().warnings.push(msg);
        }
    }
}

/// Equal, or equal once ours is cut to whole seconds (SFTP) or to 100 ns (SMB): the share kept
/// the time as well as it can.
pub(crate) fn same_time_at_share_resolution(share_ns: i64, ours_ns: i64) -> bool {
    share_ns == ours_ns
        || share_ns == ours_ns - ours_ns.rem_euclid(1_000_000_000)
        || share_ns == ours_ns - ours_ns.rem_euclid(100)
}

/// The share cannot set modification times (some SMB clients), as opposed to refusing this one.
/// (Setting a time is refused with EPERM by shares that cannot keep times, e.g. rclone's SMB
/// client; a share that refuses this one file says EACCES.)
fn times_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || is_kind(
            e,
            &[
                libc::ENOTSUP,
                libc::EOPNOTSUPP,
                libc::ENOSYS,
                libc::EINVAL,
                libc::EPERM,
            ],
        )
}

/// `map_err` for a share call about `path`.
fn share_err(path: &RelPath) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |e| FsError::share(path, e)
}

fn is_kind(e: &io::Error, codes: &[i32]) -> bool {
    e.raw_os_error().is_some_and(|c| codes.contains(&c))
}

impl Engine {
    /// Writes every pending change to the share. Never panics on a share error: what cannot
    /// be written stays pending and is listed in the report.
    pub fn flush(&self, label: Option<&str>) -> FlushReport {
        self.flush_with_progress(label, &|_| {})
    }

    pub fn flush_with_progress(
        &self,
        label: Option<&str>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> FlushReport {
        // The user waits for this flush: look at the share now, rather than trust what the
        // last call saw (a share that stalled is otherwise asked again only on a schedule).
        // Whatever the answer, the flush goes on; a share still stalled refuses its calls at once.
        if let Err(e) = self.backing.check_now() {
            info!(error = %e, "the share does not answer yet");
        }
        self.flush_scoped(label, progress, None)
    }

    /// Writes again what the last flush left pending, and nothing changed since: a retry must
    /// not write changes the user has not asked to flush yet. `None` when there is nothing to
    /// retry.
    pub fn retry_pending(&self) -> Option<FlushReport> {
        let last = self.last_flush()?;
        if last.pending.is_empty() {
            return None;
        }
        let scope = Scope {
            paths: last.pending.iter().map(|p| p.path.clone()).collect(),
            ops_upto: last.ops_upto,
        };
        Some(self.flush_scoped(Some("retry"), &|_| {}, Some(scope)))
    }

    /// The report of the last flush the user asked for, as kept in the journal.
    pub fn last_flush(&self) -> Option<FlushReport> {
        self.report_of("last_flush")
    }

    /// The report of the last background retry.
    pub fn last_retry(&self) -> Option<FlushReport> {
        self.report_of("last_retry")
    }

    fn report_of(&self, key: &str) -> Option<FlushReport> {
        let text = self.journal.lock().get_meta(key).ok().flatten()?;
        serde_json::from_str(&text).ok()
    }

    fn flush_scoped(
        &self,
        label: Option<&str>,
        progress: &(dyn Fn(Progress) + Sync),
        scope: Option<Scope>,
    ) -> FlushReport {
        let _flush = self.flush_lock.lock();
        let _span = info_span!("flush", label = label.unwrap_or("")).entered();
        let start = Instant::now();
        let (mut jobs, ignored, mut max_seq) = self.collect_jobs();
        if let Some(seed) = self.opts.flush_order_seed {
            jobs.sort_by_cached_key(|j| {
                xxhash_rust::xxh3::xxh3_64_with_seed(j.local.as_str().as_bytes(), seed)
            });
        }
        if let Some(scope) = &scope {
            jobs.retain(|j| scope.paths.contains(j.local.as_str()));
            max_seq = max_seq.min(scope.ops_upto);
        }
        let ctx = Ctx {
            report: Mutex::new(FlushReport {
                label: label.map(str::to_owned),
                started_at: chrono::Local::now().to_rfc3339(),
                ops_upto: max_seq,
                ..Default::default()
            }),
            down: AtomicBool::new(false),
            down_because: Mutex::new(None),
            warned_mtime: AtomicBool::new(false),
            warned_owner: AtomicBool::new(false),
            warned_xattrs: AtomicBool::new(false),
            warned_links: AtomicBool::new(false),
            progress,
            done: Default::default(),
            total: jobs.iter().filter(|j| j.content).count() as u64,
            touched_dirs: Mutex::new(BTreeSet::new()),
            staging_dirs: Mutex::new(Vec::new()),
        };
        // The total is known now: progress bars can show it before the first file lands.
        progress(Progress {
            done: 0,
            total: ctx.total,
            bytes: 0,
            total_bytes: 0,
        });
        match self.recover_staged() {
            Ok((n, dirs)) => {
                ctx.report.lock().rolled_forward = n;
                ctx.touched_dirs.lock().extend(dirs);
            }
            Err(e) => ctx.push_pending(PendingItem::new(
                "(interrupted flush)",
                match &e {
                    FsError::Share { reason, .. } => *reason,
                    _ => Reason::Other,
                },
                e,
            )),
        }
        self.forget_ignored(&ignored);
        // Old versions earlier commits captured, once nobody wrote into them (`capture.rs`).
        self.drop_captured(&ctx);

        let (content, meta): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.content);
        // New folders are written whole under temporary names (not in retries, which write
        // only what was left pending).
        let (folders, in_folders, content) = if scope.is_none() {
            self.new_folders(content, max_seq)
        } else {
            (Vec::new(), Vec::new(), content)
        };

        // 2. Stage.
        let outcomes = self.stage_all(&ctx, content, in_folders, &folders, false);
        let mut staged = Vec::new();
        let mut deferred = Vec::new();
        let mut kept = Vec::new();
        for o in outcomes {
            match o {
                StageOutcome::Staged(s) => staged.push(s),
                StageOutcome::Deferred(j) => deferred.push(j),
                StageOutcome::Pending(p) => ctx.push_pending(p),
                StageOutcome::KeptLocal(j) => kept.push(j),
            }
        }

        // 3. The burst: commit what is staged, then replay the namespace log.
        deferred.extend(self.commit_all(&ctx, staged, &folders));
        self.replay_ops(&ctx, max_seq);

        // 4. Files in directories the burst created.
        if !deferred.is_empty() {
            let outcomes = self.stage_all(&ctx, deferred, Vec::new(), &[], true);
            let mut staged = Vec::new();
            for o in outcomes {
                match o {
                    StageOutcome::Staged(s) => staged.push(s),
                    StageOutcome::Deferred(j) => ctx.push_pending(PendingItem::new(
                        &j.local,
                        Reason::Waiting,
                        "waits for a change to its folder that could not be written yet",
                    )),
                    StageOutcome::Pending(p) => ctx.push_pending(p),
                    StageOutcome::KeptLocal(j) => kept.push(j),
                }
            }
            for j in self.commit_all(&ctx, staged, &[]) {
                ctx.push_pending(PendingItem::new(
                    &j.local,
                    Reason::Conflict,
                    "something else has this name on the share",
                ));
            }
        }
        self.keep_local(&ctx, kept);
        // Before the times: removing a staging folder changes its folder's time on the share.
        // A share that went down keeps them: they are listed, and the next flush removes them.
        if !ctx.down.load(Ordering::SeqCst) {
            self.remove_staging_dirs(std::mem::take(&mut *ctx.staging_dirs.lock()));
        }
        // 5. Times and modes.
        let touched = std::mem::take(&mut *ctx.touched_dirs.lock());
        self.apply_meta(&ctx, meta, touched);

        let mut report = ctx.report.into_inner();
        if report.files_written > 0
            && self
                .backing
                .no_replace()
                .is_some_and(crate::noreplace::NoReplace::is_weak)
        {
            report
                .warnings
                .push(crate::noreplace::WEAK_WARNING.to_owned());
        }
        report.duration_ms = start.elapsed().as_millis() as u64;
        info!(summary = %report.summary(), "flush done");
        self.record_flush(&report, scope.is_some());
        report
    }

    /// Snapshot of the dirty entries and of the log's end.
    fn collect_jobs(&self) -> (Vec<Job>, Vec<Ino>, i64) {
        let tree = self.state.read();
        let max_seq = tree.ops.last().map_or(0, |(s, _)| *s);
        let mut jobs = Vec::new();
        let mut ignored = Vec::new();
        for ino in tree.dirty_inos() {
            let (Some(n), Some(path)) = (tree.get(ino), tree.path_of(ino)) else {
                continue;
            };
            if self.is_ignored(&path, n.is_dir()) {
                ignored.push(ino);
                continue;
            }
            let live_gen = self
                .live
                .get(&n.shown_ino())
                .map_or(0, |l| l.gen.load(Ordering::SeqCst));
            jobs.push(Job::of(n, path, live_gen));
        }
        (jobs, ignored, max_seq)
    }

    /// Special files the share refused to hold: settled as written, though not on the share
    /// (`status` lists them), and said once per flush.
    fn keep_local(&self, ctx: &Ctx<'_>, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let mut names: Vec<String> = jobs.iter().map(|j| j.local.to_string()).collect();
        let n = names.len();
        names.truncate(5);
        let more = if n > 5 { ", ..." } else { "" };
        let msg = format!(
            "{n} special file(s) kept in the cache only, since the share cannot hold FIFOs, sockets or device nodes: {}{more} (`sipfs status` lists them)",
            names.join(", ")
        );
        warn!("{msg}");
        ctx.report.lock().warnings.push(msg);
        self.finish_entries(
            jobs.into_iter()
                .map(|job| Finished {
                    job,
                    base: None,
                    temp: None,
                    captured: None,
                    hash: None,
                })
                .collect(),
        );
    }

    /// Ignored entries are never written back: they stop counting as pending.
    fn forget_ignored(&self, inos: &[Ino]) {
        if inos.is_empty() {
            return;
        }
        let mut tree = self.state.write();
        let mut changed = Vec::new();
        for &i in inos {
            if let Some(n) = tree.get_mut(i) {
                n.content_dirty = false;
                n.meta_dirty = false;
                changed.push(n.clone());
                tree.reindex(i);
            }
        }
        if let Err(e) = self.persist_nodes(&changed) {
            warn!(error = %e, "could not record ignored entries as settled");
        }
    }

    /// Writes `nodes` to the journal in one transaction.
    fn persist_nodes(&self, nodes: &[Node]) -> Result<(), FsError> {
        self.persist(|tx| {
            for n in nodes {
                journal::put_node(tx, n)?;
            }
            Ok(())
        })
    }

    fn free_conflict_name(&self, dir: &RelPath, name: &str) -> io::Result<RelPath> {
        let now = chrono::Local::now();
        for attempt in 0..100 {
            let candidate = dir.join(&names::conflict_name(name, now, attempt));
            if self.backing.stat(&candidate)?.is_none() {
                return Ok(candidate);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free conflict name",
        ))
    }

    /// Finishes what a flush interrupted by a crash left on the share. Returns how many
    /// temporaries were renamed into place.
    /// Also returns the share directories it changed, whose times must be set again.
    pub(crate) fn recover_staged(&self) -> Result<(usize, Vec<RelPath>), FsError> {
        // New folders first: their files' temporaries move with them.
        self.recover_folders()?;
        let rows = self.journal.lock().load_staged()?;
        let mut rolled = 0;
        let mut dirs = Vec::new();
        for row in rows {
            dirs.extend(row.target.parent());
            let _span = info_span!("recover", temp = %row.temp).entered();
            let temp_now = self.backing.stat(&row.temp).map_err(share_err(&row.temp))?;
            let mut published = false;
            if row.ready && temp_now.is_some() {
                // Whatever is at the name now is captured first, as in a commit: recorded as
                // the row's capture name, or a new one.
                if let Some(cap) = &row.conflict {
                    if self.backing.stat(cap).map_err(share_err(cap))?.is_none() {
                        self.capture(&row.target, cap)
                            .map_err(share_err(&row.target))?;
                    }
                } else if self
                    .backing
                    .stat(&row.target)
                    .map_err(share_err(&row.target))?
                    .is_some()
                {
                    let cap = capture::capture_name(&row.target);
                    self.capture(&row.target, &cap)
                        .map_err(share_err(&row.target))?;
                    self.recover_capture(&row.target, row.ino, &cap)?;
                }
                if let Some(cap) = &row.conflict {
                    self.recover_capture(&row.target, row.ino, cap)?;
                }
                let publish = || self.backing.rename_noreplace(&row.temp, &row.target);
                let renamed = match publish() {
                    // Its new folder could not be renamed into place (something took the
                    // name): the file goes into what is there.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => self
                        .create_dirs(&row.target.parent().unwrap_or_default())
                        .and_then(|_| publish()),
                    r => r,
                };
                match renamed {
                    Ok(()) => published = true,
                    // Someone took the name since: theirs stays there; ours stays dirty here
                    // with its old base, so the next flush keeps both.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(FsError::share(&row.target, e)),
                }
                rolled += usize::from(published);
            } else if let Some(cap) = &row.conflict {
                // Not ready, or already in place: a captured file is settled all the same.
                self.recover_capture(&row.target, row.ino, cap)?;
            }
            if !published {
                match self.backing.remove_file(&row.temp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    // Never created (the share refused it): nothing to remove.
                    Err(_) if matches!(self.backing.stat(&row.temp), Ok(None)) => {}
                    Err(e) => return Err(FsError::share(&row.temp, e)),
                }
            }
            // The file stays dirty (it may have changed since). Once ours is at the name, its
            // base is what is there now, so writing it again is not taken for a conflict; a
            // name someone else took keeps the old base, so that theirs is kept next time.
            let base = match published {
                true => self.backing.stat(&row.target).ok().flatten(),
                false => None,
            };
            let mut tree = self.state.write();
            let mut changed = None;
            if let (Some(n), Some(st)) = (tree.get_mut(row.ino), base) {
                n.base = Some(Base::of(&st));
                n.in_share = true;
                changed = Some(n.clone());
            }
            drop(tree);
            self.persist(|tx| {
                if let Some(n) = &changed {
                    journal::put_node(tx, n)?;
                }
                journal::delete_staged(tx, &row.temp)
            })?;
        }
        // Their temporaries are gone now: the staging folders an interrupted flush made can go.
        self.remove_staging_dirs(self.staging_dirs_recorded());
        Ok((rolled, dirs))
    }

    /// Retries are kept apart from the user's flushes: `sipfs flush` reads its own report back.
    fn record_flush(&self, report: &FlushReport, retry: bool) {
        let key = if retry { "last_retry" } else { "last_flush" };
        if let Ok(s) = serde_json::to_string(report) {
            if let Err(e) = self.journal.lock().set_meta(key, &s) {
                warn!(error = %e, "could not record the flush report");
            }
        }
    }
}
