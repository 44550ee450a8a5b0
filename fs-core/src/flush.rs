//! Writing pending changes to the share.
//!
//! Order (see docs/ARCHITECTURE.md for the reasoning):
//! 1. finish what an interrupted flush left: `ready` temporaries are renamed into place,
//!    others are removed;
//! 2. stage: every dirty file whose directory exists on the share is copied, in parallel, to a
//!    temporary name beside its target; the temporaries are recorded in the journal first;
//! 3. the burst: temporaries are renamed over their targets, then the logged namespace changes
//!    (mkdir, rename, remove) are replayed in order, each removed from the journal when done;
//! 4. files that live in directories the burst created are staged and renamed in place;
//! 5. modification times and modes, directories deepest first.
//!
//! A failure stays with its path: the change stays pending with a reason, and everything that
//! does not depend on it goes on.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use rayon::prelude::*;
use tracing::{info, info_span, warn};

use crate::backing::{self, EntryKind};
use crate::engine::Engine;
use crate::error::{FsError, Reason};
use crate::journal::{self, StagedRow};
use crate::names;
use crate::pending::{local_path_of, share_path_of, touches, Base, Logged, NsOp};
use crate::relpath::RelPath;
use crate::report::{ConflictItem, FlushReport, PendingItem, Progress};
use crate::tree::Ino;

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
}

#[derive(Debug)]
struct Staged {
    job: Job,
    temp: RelPath,
    target: RelPath,
    conflict: Option<RelPath>,
    size: u64,
    mtime_ns: i64,
}

enum StageOutcome {
    Staged(Staged),
    /// Its directory does not exist on the share until the burst creates it.
    Deferred(Job),
    Pending(PendingItem),
}

/// State shared by the workers of one flush.
struct Ctx<'a> {
    report: Mutex<FlushReport>,
    /// Set once the share is found unreachable: the rest fails fast instead of retrying.
    down: AtomicBool,
    warned_mtime: AtomicBool,
    progress: &'a (dyn Fn(Progress) + Sync),
    done: std::sync::atomic::AtomicU64,
    total: u64,
    /// Local directories whose share copy this flush changed: their times are set last.
    touched_dirs: Mutex<BTreeSet<RelPath>>,
}

impl Ctx<'_> {
    fn touched(&self, path: &RelPath) {
        if let Some(p) = path.parent() {
            self.touched_dirs.lock().insert(p);
        }
    }

    fn pending(&self, path: &RelPath, e: &io::Error) -> PendingItem {
        let reason = Reason::classify(e);
        if reason == Reason::Unreachable {
            self.down.store(true, Ordering::SeqCst);
        }
        PendingItem::new(path, reason, e)
    }

    fn push_pending(&self, item: PendingItem) {
        warn!(path = %item.path, reason = ?item.reason, message = %item.message, "stays pending");
        self.report.lock().pending.push(item);
    }

    fn unreachable(&self, path: &RelPath) -> PendingItem {
        PendingItem::new(
            path,
            Reason::Unreachable,
            "the share stopped answering during this flush",
        )
    }

    fn step(&self, bytes: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        (self.progress)(Progress {
            done,
            total: self.total,
            bytes,
        });
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
fn same_time_at_share_resolution(share_ns: i64, ours_ns: i64) -> bool {
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
            warned_mtime: AtomicBool::new(false),
            progress,
            done: Default::default(),
            total: jobs.iter().filter(|j| j.content).count() as u64,
            touched_dirs: Mutex::new(BTreeSet::new()),
        };
        // The total is known now: progress bars can show it before the first file lands.
        progress(Progress {
            done: 0,
            total: ctx.total,
            bytes: 0,
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

        let (content, meta): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| j.content);

        // 2. Stage.
        let ops = self.state.read().ops.clone();
        let outcomes: Vec<StageOutcome> = self.pool.install(|| {
            content
                .into_par_iter()
                .map(|j| self.stage(&ctx, j, &ops, false))
                .collect()
        });
        let mut staged = Vec::new();
        let mut deferred = Vec::new();
        for o in outcomes {
            match o {
                StageOutcome::Staged(s) => staged.push(s),
                StageOutcome::Deferred(j) => deferred.push(j),
                StageOutcome::Pending(p) => ctx.push_pending(p),
            }
        }

        // 3. The burst: commit what is staged, then replay the namespace log.
        if let Err(e) = self.mark_ready(&staged) {
            for s in &staged {
                ctx.push_pending(PendingItem::new(&s.job.local, Reason::Other, &e));
            }
            staged.clear();
        }
        let retry: Vec<Option<Job>> = self.pool.install(|| {
            staged
                .into_par_iter()
                .map(|s| self.commit(&ctx, s))
                .collect()
        });
        deferred.extend(retry.into_iter().flatten());
        self.replay_ops(&ctx, max_seq);

        // 4. Files in directories the burst created.
        if !deferred.is_empty() {
            let ops = self.state.read().ops.clone();
            let outcomes: Vec<StageOutcome> = self.pool.install(|| {
                deferred
                    .into_par_iter()
                    .map(|j| self.stage(&ctx, j, &ops, true))
                    .collect()
            });
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
                }
            }
            if let Err(e) = self.mark_ready(&staged) {
                for s in &staged {
                    ctx.push_pending(PendingItem::new(&s.job.local, Reason::Other, &e));
                }
                staged.clear();
            }
            let left: Vec<Option<Job>> = self.pool.install(|| {
                staged
                    .into_par_iter()
                    .map(|s| self.commit(&ctx, s))
                    .collect()
            });
            for j in left.into_iter().flatten() {
                ctx.push_pending(PendingItem::new(
                    &j.local,
                    Reason::Conflict,
                    "something else has this name on the share",
                ));
            }
        }
        // 5. Times and modes.
        let touched = std::mem::take(&mut *ctx.touched_dirs.lock());
        self.apply_meta(&ctx, meta, touched);

        let mut report = ctx.report.into_inner();
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
                .get(&ino)
                .map_or(0, |l| l.gen.load(Ordering::SeqCst));
            jobs.push(Job {
                ino,
                local: path,
                kind: n.kind,
                node_gen: n.gen,
                live_gen,
                base: n.base,
                in_share: n.in_share,
                link: n.link().map(str::to_owned),
                content: n.content_dirty && !n.is_dir(),
                mode: n.mode,
            });
        }
        (jobs, ignored, max_seq)
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
        if let Err(e) = self.persist(|tx| {
            for n in &changed {
                journal::put_node(tx, n)?;
            }
            Ok(())
        }) {
            warn!(error = %e, "could not record ignored entries as settled");
        }
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

    /// Stages one file. `after_burst`: the logged changes that could be replayed were, so a
    /// folder still standing at the file's name is not ours to wait for.
    fn stage(&self, ctx: &Ctx<'_>, job: Job, ops: &[Logged], after_burst: bool) -> StageOutcome {
        if ctx.down.load(Ordering::SeqCst) {
            return StageOutcome::Pending(ctx.unreachable(&job.local));
        }
        let _span = info_span!("stage", path = %job.local).entered();
        // The file itself must already have a place on the share: a logged mkdir of the same
        // path (a directory that stood there before this file) comes first.
        let Some(target) = share_path_of(&job.local, ops) else {
            return StageOutcome::Deferred(job);
        };
        // Something a logged change moves or removes may still stand at the target: such files
        // are written after the replay, when the share's names are ours.
        if touches(ops, &job.local) || touches(ops, &target) {
            return StageOutcome::Deferred(job);
        }
        let share_dir = target.parent().unwrap_or_default();
        let name = target.name().to_owned();
        if let Some(item) = self.windows_refusal(&job) {
            return StageOutcome::Pending(item);
        }
        let retry = self.opts.retry;
        let current = match retry.run(|| self.backing.stat_fresh(&target)) {
            Ok(c) => c,
            Err(e) => return StageOutcome::Pending(ctx.pending(&job.local, &e)),
        };
        let conflict = match current {
            None => None,
            // A pending removal may still free the name: try again after the burst.
            Some(st) if st.kind == EntryKind::Dir && !after_burst => {
                return StageOutcome::Deferred(job)
            }
            // A folder this cache does not know of (kept for what it held, or made by someone
            // else) has the name: it moves aside, so both are kept.
            Some(st) if st.kind == EntryKind::Dir => {
                let detail =
                    "a file here, a folder on the share; the share's folder was kept beside"
                        .to_string();
                if let Err(e) = self.move_aside(ctx, &target, &job.local, detail) {
                    return StageOutcome::Pending(ctx.pending(&job.local, &e));
                }
                None
            }
            Some(st) if job.in_share && job.base.is_some_and(|b| b.matches(&st)) => None,
            Some(_) => match self.free_conflict_name(&share_dir, &name) {
                Ok(c) => Some(c),
                Err(e) => return StageOutcome::Pending(ctx.pending(&job.local, &e)),
            },
        };
        let temp = share_dir.join(&names::temp_name(&name));
        let row = StagedRow {
            temp: temp.clone(),
            target: target.clone(),
            conflict: conflict.clone(),
            ino: job.ino,
            ready: false,
        };
        if let Err(e) = self.persist(|tx| journal::put_staged(tx, &row)) {
            return StageOutcome::Pending(PendingItem::new(&job.local, Reason::Other, e));
        }
        let cache = self.cache_path(&job.local);
        let (size, mtime_ns) = match job.kind {
            EntryKind::Symlink => (0, 0),
            _ => match fs::metadata(&cache) {
                Ok(md) => (md.len(), backing::mtime_ns(&md)),
                Err(e) => {
                    let _ = self.persist(|tx| journal::delete_staged(tx, &temp));
                    return StageOutcome::Pending(PendingItem::new(
                        &job.local,
                        Reason::Waiting,
                        format!("changed while this flush ran ({e}); the next flush writes it"),
                    ));
                }
            },
        };
        let write = || match (&job.kind, &job.link) {
            (EntryKind::Symlink, Some(target)) => self.backing.stage_symlink(target, &temp),
            _ => self.backing.stage(&cache, &temp, mtime_ns, job.mode),
        };
        let mut result = retry.run(write);
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound)
            && fs::symlink_metadata(&cache).is_ok()
        {
            // The directory went away on the share (someone deleted it): ours wins, recreate it.
            result = self.create_dirs(&share_dir).and_then(|_| retry.run(write));
        }
        match result {
            Ok(()) => StageOutcome::Staged(Staged {
                job,
                temp,
                target,
                conflict,
                size,
                mtime_ns,
            }),
            Err(e) => {
                // The record goes only with the temporary: if the share cannot be asked to
                // remove it now, the next flush does.
                let gone = match self.backing.remove_file(&temp) {
                    Ok(()) => true,
                    Err(r) => {
                        r.kind() == io::ErrorKind::NotFound
                            || matches!(self.backing.stat(&temp), Ok(None))
                    }
                };
                if gone {
                    let _ = self.persist(|tx| journal::delete_staged(tx, &temp));
                }
                StageOutcome::Pending(ctx.pending(&job.local, &e))
            }
        }
    }

    /// What a Windows share would refuse about this entry's name, checked before trying: the
    /// share's own errors for these are vague or, for names that differ only in case, absent
    /// (one file silently replaces the other).
    fn windows_refusal(&self, job: &Job) -> Option<PendingItem> {
        if !self.opts.windows_share {
            return None;
        }
        let name = job.local.name();
        if let Some(problem) = names::windows_name_problem(name) {
            return Some(PendingItem::new(
                &job.local,
                Reason::NameNotAllowed,
                format!("Windows shares refuse this name: it {problem}"),
            ));
        }
        // Another entry here whose name differs only in case: the share keeps one of the two.
        // The one the share already has wins; of two new ones, the first by name.
        let tree = self.state.read();
        let parent = tree.get(job.ino).map(|n| n.parent)?;
        let siblings = tree.get(parent)?.children.as_ref()?;
        let folded = name.to_lowercase();
        let clash = siblings.iter().find(|(other, &ino)| {
            *other != name
                && other.to_lowercase() == folded
                && tree
                    .get(ino)
                    .is_some_and(|o| o.in_share || (!job.in_share && other.as_str() < name))
        })?;
        if job.in_share {
            return None;
        }
        Some(PendingItem::new(
            &job.local,
            Reason::NameNotAllowed,
            format!(
                "differs only in case from {}, and the share cannot tell the two apart",
                clash.0
            ),
        ))
    }

    /// `mkdir -p` on the share. It tries rather than asks first: a client's cache may still
    /// say a folder exists that someone else deleted.
    fn create_dirs(&self, dir: &RelPath) -> io::Result<()> {
        if dir.is_root() {
            return Ok(());
        }
        match self.backing.create_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dirs(&dir.parent().unwrap_or_default())?;
                match self.backing.create_dir(dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn mark_ready(&self, staged: &[Staged]) -> Result<(), FsError> {
        self.persist(|tx| {
            for s in staged {
                journal::put_staged(
                    tx,
                    &StagedRow {
                        temp: s.temp.clone(),
                        target: s.target.clone(),
                        conflict: s.conflict.clone(),
                        ino: s.job.ino,
                        ready: true,
                    },
                )?;
            }
            Ok(())
        })
    }

    /// Renames a staged temporary over its target. Returns the job when the name is taken by
    /// something the burst may still move away (it is tried again after the burst).
    fn commit(&self, ctx: &Ctx<'_>, s: Staged) -> Option<Job> {
        let _span = info_span!("commit", path = %s.job.local).entered();
        let retry = self.opts.retry;
        let abandon = |keep_row: bool| {
            if self.backing.remove_file(&s.temp).is_ok() || !keep_row {
                let _ = self.persist(|tx| journal::delete_staged(tx, &s.temp));
            } else {
                // Could not remove it: the next flush removes it rather than renaming it.
                let _ = self.persist(|tx| {
                    journal::put_staged(
                        tx,
                        &StagedRow {
                            temp: s.temp.clone(),
                            target: s.target.clone(),
                            conflict: None,
                            ino: s.job.ino,
                            ready: false,
                        },
                    )
                });
            }
        };
        if ctx.down.load(Ordering::SeqCst) {
            abandon(true);
            ctx.push_pending(ctx.unreachable(&s.job.local));
            return None;
        }
        let local_dir = s.job.local.parent().unwrap_or_default();
        if let Some(c) = &s.conflict {
            match retry.run(|| self.backing.rename(&s.target, c)) {
                Ok(()) => {
                    let kept = local_dir.join(c.name());
                    warn!(path = %s.job.local, kept_as = %kept, "conflict: both versions kept");
                    self.record_conflict(
                        ctx,
                        ConflictItem {
                            path: s.job.local.to_string(),
                            kept_as: kept.to_string(),
                            detail: "changed on the share and here; this version is at the name, the share's beside it".into(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    abandon(true);
                    ctx.push_pending(ctx.pending(&s.job.local, &e));
                    return None;
                }
            }
        }
        if let Err(e) = retry.run(|| self.backing.rename(&s.temp, &s.target)) {
            let taken = is_kind(
                &e,
                &[libc::EISDIR, libc::ENOTEMPTY, libc::EEXIST, libc::ENOTDIR],
            );
            // The temporary is there but the name "does not exist": the server hides the name
            // (Samba's `veto files`, for one).
            let hidden = e.kind() == io::ErrorKind::NotFound
                && matches!(self.backing.stat(&s.temp), Ok(Some(_)));
            abandon(true);
            if taken {
                return Some(s.job);
            }
            let item = if hidden {
                PendingItem::new(
                    &s.job.local,
                    Reason::NameNotAllowed,
                    "the share refused this name (a rule on the server, such as Samba's `veto files`, hides it)",
                )
            } else {
                ctx.pending(&s.job.local, &e)
            };
            ctx.push_pending(item);
            return None;
        }
        let after = self.backing.stat(&s.target).ok().flatten();
        if s.job.kind == EntryKind::File
            && after.is_some_and(|st| !same_time_at_share_resolution(st.mtime_ns, s.mtime_ns))
        {
            ctx.warn_once_mtime();
        }
        let base = after.map(|st| Base::of(&st)).unwrap_or(Base {
            size: s.size,
            mtime_ns: s.mtime_ns,
        });
        self.finish_entry(&s.job, Some(base), Some(&s.temp));
        ctx.touched(&s.job.local);
        ctx.step(s.size);
        let mut r = ctx.report.lock();
        r.files_written += 1;
        r.bytes_written += s.size;
        r.written.push(s.job.local.to_string());
        None
    }

    /// Records a written entry: its new base, and clean unless it changed meanwhile.
    fn finish_entry(&self, job: &Job, base: Option<Base>, staged: Option<&RelPath>) {
        let mut tree = self.state.write();
        let unmoved = tree.path_of(job.ino).as_ref() == Some(&job.local);
        let live_same = self.live.get(&job.ino).is_none_or(|l| {
            l.gen.load(Ordering::SeqCst) == job.live_gen && l.writers.load(Ordering::SeqCst) == 0
        });
        let mut changed = None;
        if let Some(n) = tree.get_mut(job.ino) {
            if unmoved {
                if let Some(b) = base {
                    n.base = Some(b);
                    n.size = b.size;
                    n.in_share = true;
                }
                if n.gen == job.node_gen && live_same {
                    n.content_dirty = false;
                    n.meta_dirty = false;
                }
            }
            changed = Some(n.clone());
        }
        tree.reindex(job.ino);
        let r = self.persist(|tx| {
            if let Some(n) = &changed {
                journal::put_node(tx, n)?;
            }
            if let Some(t) = staged {
                journal::delete_staged(tx, t)?;
            }
            Ok(())
        });
        if let Err(e) = r {
            warn!(error = %e, "could not record a written file; it will be written again");
        }
    }

    fn record_conflict(&self, ctx: &Ctx<'_>, c: ConflictItem) {
        self.update_conflicts(|list| list.push(c.clone()));
        ctx.report.lock().conflicts.push(c);
    }

    /// Changes the list of conflicts `status` shows (the last 100 are kept).
    fn update_conflicts(&self, change: impl FnOnce(&mut Vec<ConflictItem>)) {
        let mut journal = self.journal.lock();
        let mut list: Vec<ConflictItem> = journal
            .get_meta("conflicts")
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        change(&mut list);
        let keep = list.len().saturating_sub(100);
        if let Ok(s) = serde_json::to_string(&list[keep..]) {
            let _ = journal.set_meta("conflicts", &s);
        }
    }

    /// Replays the logged namespace changes in order (only those made before this flush began).
    fn replay_ops(&self, ctx: &Ctx<'_>, max_seq: i64) {
        let ops: Vec<Logged> = self
            .state
            .read()
            .ops
            .iter()
            .filter(|(s, _)| *s <= max_seq)
            .cloned()
            .collect();
        let mut blocked: Vec<RelPath> = Vec::new();
        for (seq, op) in ops {
            let path = op.shown_path().clone();
            if ctx.down.load(Ordering::SeqCst) {
                ctx.push_pending(ctx.unreachable(&path));
                continue;
            }
            if op.paths().any(|p| blocked.iter().any(|b| b.overlaps(p))) {
                ctx.push_pending(PendingItem::new(
                    &path,
                    Reason::Waiting,
                    "waits for an earlier change to the same folder",
                ));
                blocked.extend(op.paths().cloned());
                continue;
            }
            let _span = info_span!("replay", op = ?op).entered();
            match self.exec_op(ctx, &op, seq) {
                Ok(()) => {
                    if let NsOp::Rename { from, to, .. } = &op {
                        self.kept_copies_moved(ctx, from, to);
                    }
                    // The folders it changed, by their local names: changes still to replay
                    // after this one may have moved them (mkdir e/d, then e renamed to a).
                    let later: Vec<Logged> = {
                        let tree = self.state.read();
                        tree.ops.iter().filter(|(s, _)| *s > seq).cloned().collect()
                    };
                    for p in op.paths() {
                        if let Some(dir) = p.parent().and_then(|d| local_path_of(&d, &later)) {
                            ctx.touched_dirs.lock().insert(dir);
                        }
                    }
                    let mut tree = self.state.write();
                    tree.ops.retain(|(s, _)| *s != seq);
                    if let Err(e) = self.persist(|tx| journal::delete_op(tx, seq)) {
                        warn!(error = %e, "could not record a replayed change");
                    }
                }
                Err(item) => {
                    ctx.push_pending(item);
                    blocked.extend(op.paths().cloned());
                }
            }
        }
    }

    fn exec_op(&self, ctx: &Ctx<'_>, op: &NsOp, seq: i64) -> Result<(), PendingItem> {
        let retry = self.opts.retry;
        if let (true, NsOp::Mkdir { path: made } | NsOp::Rename { to: made, .. }) =
            (self.opts.windows_share, op)
        {
            if let Some(problem) = names::windows_name_problem(made.name()) {
                return Err(PendingItem::new(
                    made,
                    Reason::NameNotAllowed,
                    format!("Windows shares refuse this name: it {problem}"),
                ));
            }
        }
        let b = &self.backing;
        let fail = |p: &RelPath, e: io::Error| ctx.pending(p, &e);
        match op {
            NsOp::Mkdir { path } => match retry.run(|| b.create_dir(path)) {
                Ok(()) => {
                    ctx.report.lock().dirs_created += 1;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match b.stat(path).map_err(|e| fail(path, e))? {
                        Some(st) if st.kind == EntryKind::Dir => Ok(()),
                        _ => Err(PendingItem::new(
                            path,
                            Reason::Conflict,
                            "a file with this name exists on the share",
                        )),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.create_dirs(path).map_err(|e| fail(path, e))?;
                    ctx.report.lock().dirs_created += 1;
                    Ok(())
                }
                Err(e) => Err(fail(path, e)),
            },
            NsOp::Remove { path, kind, base } if *kind != EntryKind::Dir => {
                match retry
                    .run(|| b.stat_fresh(path))
                    .map_err(|e| fail(path, e))?
                {
                    None => Ok(()),
                    Some(st) if st.kind == EntryKind::Dir => Err(PendingItem::new(
                        path,
                        Reason::Conflict,
                        "a directory has this name on the share now",
                    )),
                    Some(st) if base.is_some_and(|b| !b.matches(&st)) => {
                        let dir = path.parent().unwrap_or_default();
                        let kept = self
                            .free_conflict_name(&dir, path.name())
                            .map_err(|e| fail(path, e))?;
                        retry
                            .run(|| b.rename(path, &kept))
                            .map_err(|e| fail(path, e))?;
                        self.record_conflict(
                            ctx,
                            ConflictItem {
                                path: path.to_string(),
                                kept_as: kept.to_string(),
                                detail: "deleted here but changed on the share; the share's version was kept".into(),
                            },
                        );
                        Ok(())
                    }
                    Some(_) => match retry.run(|| b.remove_file(path)) {
                        Ok(()) => {
                            ctx.report.lock().removed += 1;
                            Ok(())
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        Err(e) => Err(fail(path, e)),
                    },
                }
            }
            NsOp::Remove { path, .. } => match retry.run(|| b.remove_dir(path)) {
                Ok(()) => {
                    ctx.report.lock().removed += 1;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) if Reason::classify(&e) == Reason::NotEmpty => {
                    self.remove_dir_keeping_others(ctx, path, seq)
                }
                Err(e) => Err(fail(path, e)),
            },
            NsOp::Rename {
                from,
                to,
                dest_base,
            } => {
                let src = retry.run(|| b.stat(from)).map_err(|e| fail(to, e))?;
                if src.is_none() {
                    if retry.run(|| b.stat(to)).map_err(|e| fail(to, e))?.is_some() {
                        return Ok(()); // done before a crash
                    }
                    self.reupload_subtree(ctx, to);
                    return Ok(());
                }
                if let Some(db) = dest_base {
                    if let Some(st) = retry.run(|| b.stat_fresh(to)).map_err(|e| fail(to, e))? {
                        if st.kind != EntryKind::Dir && !db.matches(&st) {
                            let dir = to.parent().unwrap_or_default();
                            let kept = self
                                .free_conflict_name(&dir, to.name())
                                .map_err(|e| fail(to, e))?;
                            retry.run(|| b.rename(to, &kept)).map_err(|e| fail(to, e))?;
                            self.record_conflict(
                                ctx,
                                ConflictItem {
                                    path: to.to_string(),
                                    kept_as: kept.to_string(),
                                    detail: "replaced here but changed on the share; the share's version was kept".into(),
                                },
                            );
                        }
                    }
                }
                retry.run(|| b.rename(from, to)).map_err(|e| fail(to, e))?;
                ctx.report.lock().renamed += 1;
                Ok(())
            }
        }
    }

    /// Removes a folder deleted here whose share copy still holds something: what this cache
    /// never saw, or a version a conflict kept. Temporaries of interrupted flushes are cleared
    /// away; anything else is someone's work and stays, and so does the folder holding it. The
    /// removal is settled either way, so a flush never stays pending on it for good:
    /// - nothing here has the folder's name: the folder stays where it is (a refresh shows it
    ///   again, with what it holds);
    /// - something here took the name (a rename over it, a new folder or file): the share's
    ///   folder moves aside under a conflict name, freeing the name for ours.
    fn remove_dir_keeping_others(
        &self,
        ctx: &Ctx<'_>,
        path: &RelPath,
        seq: i64,
    ) -> Result<(), PendingItem> {
        let b = &self.backing;
        let retry = self.opts.retry;
        let fail = |e: io::Error| ctx.pending(path, &e);
        let entries = retry.run(|| b.list(path)).map_err(fail)?;
        let (temps, kept): (Vec<_>, Vec<_>) =
            entries.iter().partition(|(n, _)| names::is_temp_name(n));
        for (n, _) in &temps {
            let _ = b.remove_file(&path.join(n));
        }
        if kept.is_empty() {
            retry.run(|| b.remove_dir(path)).map_err(fail)?;
            ctx.report.lock().removed += 1;
            return Ok(());
        }
        let shown: Vec<&str> = kept.iter().take(5).map(|(n, _)| n.as_str()).collect();
        let shown = shown.join(", ");
        let claimed = {
            let tree = self.state.read();
            let later: Vec<Logged> = tree.ops.iter().filter(|(s, _)| *s > seq).cloned().collect();
            // An unlisted folder on the way counts as taken: moving aside is always safe.
            local_path_of(path, &later)
                .is_some_and(|local| !matches!(tree.resolve(&local), Ok(None)))
        };
        if !claimed {
            let msg = format!(
                "{path}: deleted here, but the share still holds {shown} there; the folder stays on the share with it (the next refresh shows it here again)"
            );
            warn!("{msg}");
            ctx.report.lock().warnings.push(msg);
            return Ok(());
        }
        self.move_aside(
            ctx,
            path,
            path,
            format!(
                "replaced here, but the share's folder held {shown}; the share's folder was kept"
            ),
        )
        .map(|_| ())
        .map_err(fail)
    }

    /// Renames what the share has at `share_path` to a free conflict name beside it and reports
    /// it, so that the name is free for what we have at `local`. Conflicts reported earlier
    /// whose kept copy was inside it now name its new place.
    fn move_aside(
        &self,
        ctx: &Ctx<'_>,
        share_path: &RelPath,
        local: &RelPath,
        detail: String,
    ) -> io::Result<RelPath> {
        let dir = share_path.parent().unwrap_or_default();
        let kept = self.free_conflict_name(&dir, share_path.name())?;
        self.opts
            .retry
            .run(|| self.backing.rename(share_path, &kept))?;
        self.kept_copies_moved(ctx, share_path, &kept);
        warn!(path = %local, kept_as = %kept, "conflict: the share's entry kept beside");
        self.record_conflict(
            ctx,
            ConflictItem {
                path: local.to_string(),
                kept_as: kept.to_string(),
                detail,
            },
        );
        ctx.touched(local);
        Ok(kept)
    }

    /// The share moved `from` to `to` during this flush: conflicts whose kept copy was inside
    /// now name the copy's new place (where it is once the flush is done), in this report and
    /// in the list `status` shows.
    fn kept_copies_moved(&self, ctx: &Ctx<'_>, from: &RelPath, to: &RelPath) {
        let moved = |c: &mut ConflictItem| {
            if let Some(k) = RelPath::new(&c.kept_as)
                .ok()
                .and_then(|k| k.rebase(from, to))
            {
                c.kept_as = k.to_string();
            }
        };
        ctx.report.lock().conflicts.iter_mut().for_each(moved);
        self.update_conflicts(|list| list.iter_mut().for_each(moved));
    }

    /// The share lost the source of a rename (someone deleted it): what we have cached below
    /// `to` is written again as new; what we never fetched is gone, and is dropped.
    fn reupload_subtree(&self, ctx: &Ctx<'_>, to: &RelPath) {
        let Ok(Some(ino)) = self.state.read().resolve(to) else {
            return;
        };
        let mut tree = self.state.write();
        let mut all = vec![ino];
        all.extend(tree.descendants(ino));
        let mut changed = Vec::new();
        let mut dropped = Vec::new();
        for i in all {
            let Some(n) = tree.get_mut(i) else { continue };
            match n.kind {
                EntryKind::Dir => {
                    n.in_share = true;
                    n.meta_dirty = true;
                }
                _ if n.cached => {
                    n.in_share = false;
                    n.base = None;
                    n.content_dirty = true;
                }
                _ => {
                    dropped.push(i);
                    continue;
                }
            }
            n.gen += 1;
            changed.push(n.clone());
            tree.reindex(i);
        }
        for &i in &dropped {
            tree.remove_subtree(i);
        }
        let _ = self.persist(|tx| {
            for n in &changed {
                journal::put_node(tx, n)?;
            }
            for &i in &dropped {
                journal::delete_node(tx, i)?;
            }
            Ok(())
        });
        let msg = format!("{to} was deleted on the share before its rename was written; the cached copy will be written again");
        warn!("{msg}");
        ctx.report.lock().warnings.push(msg);
    }

    /// Sets modification times and modes: files, then directories deepest first (writing
    /// into a directory changes its time on the share, so directories come last).
    fn apply_meta(&self, ctx: &Ctx<'_>, meta: Vec<Job>, written_dirs: BTreeSet<RelPath>) {
        let ops = self.state.read().ops.clone();
        // (path, job, whether its mode may have changed here)
        let mut dirs: Vec<(RelPath, Option<Job>, bool)> = Vec::new();
        let mut files = Vec::new();
        for j in meta {
            if j.kind == EntryKind::Dir {
                dirs.push((j.local.clone(), Some(j), true));
            } else {
                files.push(j);
            }
        }
        // Directories this flush changed on the share get their time set like any dirty
        // directory: recorded first, so a failure leaves them pending instead of forgotten.
        // Their mode did not change here: it is not sent again.
        for d in written_dirs {
            if dirs.iter().any(|(p, _, _)| *p == d) {
                continue;
            }
            if let Some(j) = self.mark_dir_touched(&d) {
                dirs.push((d, Some(j), false));
            }
        }
        // Each file and folder independently, several at once: setting a folder's time does
        // not change its parent's, and all content changes are done by now.
        self.pool.install(|| {
            files
                .into_par_iter()
                .for_each(|j| self.apply_file_meta(ctx, j, &ops))
        });
        self.pool.install(|| {
            dirs.into_par_iter()
                .for_each(|(path, job, mode)| self.apply_dir_meta(ctx, &path, job, mode, &ops))
        });
    }

    /// A file's time and mode changed here (not its content).
    fn apply_file_meta(&self, ctx: &Ctx<'_>, j: Job, ops: &[Logged]) {
        if ctx.down.load(Ordering::SeqCst) {
            ctx.push_pending(ctx.unreachable(&j.local));
            return;
        }
        let Some(target) = share_path_of(&j.local, ops) else {
            return;
        };
        let Ok(attr) = self.getattr(j.ino) else {
            return;
        };
        if j.in_share {
            match self.backing.stat(&target) {
                Ok(Some(st)) if j.base.is_some_and(|b| !b.matches(&st)) => {
                    // Changed on the share since: its content wins (a refresh brings it);
                    // our new time belongs to the old content and is dropped.
                    let msg = format!(
                        "{}: changed on the share; the local change of its time was dropped",
                        j.local
                    );
                    warn!("{msg}");
                    ctx.report.lock().warnings.push(msg);
                    self.finish_entry(&j, None, None);
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.push_pending(ctx.pending(&j.local, &e));
                    return;
                }
            }
        }
        if j.kind == EntryKind::Symlink {
            self.finish_entry(&j, None, None);
            return;
        }
        let r = self
            .opts
            .retry
            .run(|| self.backing.set_mtime(&target, attr.mtime_ns))
            // A mode the share does not take is not worth keeping a change pending.
            .map(|_| {
                let _ = self.backing.set_mode(&target, attr.mode);
            });
        match r {
            Ok(()) => {
                // If the share cannot be asked again, it holds what we just set.
                let base = match self.backing.stat(&target) {
                    Ok(Some(st)) => Some(Base::of(&st)),
                    _ => Some(Base {
                        size: j.base.map_or(attr.size, |b| b.size),
                        mtime_ns: attr.mtime_ns,
                    }),
                };
                self.finish_entry(&j, base.filter(|_| j.in_share), None);
                ctx.report.lock().attrs_updated += 1;
            }
            // Shares that cannot keep times at all: say so once and keep going.
            Err(e) if times_unsupported(&e) => {
                ctx.warn_once_mtime();
                self.finish_entry(&j, None, None);
            }
            Err(e) => ctx.push_pending(ctx.pending(&j.local, &e)),
        }
    }

    /// A folder's time (and its mode, if `mode` may have changed here).
    fn apply_dir_meta(
        &self,
        ctx: &Ctx<'_>,
        path: &RelPath,
        job: Option<Job>,
        mode: bool,
        ops: &[Logged],
    ) {
        if ctx.down.load(Ordering::SeqCst) {
            if job.is_some() {
                ctx.push_pending(ctx.unreachable(path));
            }
            return;
        }
        let Some(target) = share_path_of(path, ops) else {
            return;
        };
        let ino = match &job {
            Some(j) => j.ino,
            None => match self.state.read().resolve(path) {
                Ok(Some(i)) => i,
                _ => return,
            },
        };
        let Ok(attr) = self.getattr(ino) else {
            return;
        };
        match self.backing.set_mtime(&target, attr.mtime_ns) {
            Ok(()) => {
                if job.is_some() {
                    if mode {
                        let _ = self.backing.set_mode(&target, attr.mode);
                    }
                    ctx.report.lock().attrs_updated += 1;
                }
            }
            // Not found: the directory waits for a change that is still pending.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if times_unsupported(&e) => ctx.warn_once_mtime(),
            Err(e) => {
                if job.is_some() {
                    let mut item = ctx.pending(path, &e);
                    item.message = format!("the folder's modification time: {e}");
                    ctx.push_pending(item);
                }
                return;
            }
        }
        if let Some(j) = job {
            self.finish_entry(&j, None, None);
        }
    }

    fn mark_dir_touched(&self, path: &RelPath) -> Option<Job> {
        let mut tree = self.state.write();
        let ino = tree.resolve(path).ok().flatten()?;
        let n = tree.get_mut(ino)?;
        n.meta_dirty = true;
        n.gen += 1;
        let snapshot = n.clone();
        tree.reindex(ino);
        if let Err(e) = self.persist(|tx| journal::put_node(tx, &snapshot)) {
            warn!(error = %e, "could not record a directory time to set");
        }
        Some(Job {
            ino,
            local: path.clone(),
            kind: EntryKind::Dir,
            node_gen: snapshot.gen,
            live_gen: 0,
            base: None,
            in_share: snapshot.in_share,
            link: None,
            content: false,
            mode: snapshot.mode,
        })
    }

    /// Finishes what a flush interrupted by a crash left on the share. Returns how many
    /// temporaries were renamed into place.
    /// Also returns the share directories it changed, whose times must be set again.
    pub(crate) fn recover_staged(&self) -> Result<(usize, Vec<RelPath>), FsError> {
        let rows = self.journal.lock().load_staged()?;
        let mut rolled = 0;
        let mut dirs = Vec::new();
        for row in rows {
            dirs.extend(row.temp.parent());
            let _span = info_span!("recover", temp = %row.temp).entered();
            if row.ready {
                let target_now = self
                    .backing
                    .stat(&row.target)
                    .map_err(|e| FsError::share(&row.target, e))?;
                let temp_now = self
                    .backing
                    .stat(&row.temp)
                    .map_err(|e| FsError::share(&row.temp, e))?;
                if temp_now.is_some() {
                    if let (Some(c), Some(_)) = (&row.conflict, target_now) {
                        self.backing
                            .rename(&row.target, c)
                            .map_err(|e| FsError::share(&row.target, e))?;
                    }
                    self.backing
                        .rename(&row.temp, &row.target)
                        .map_err(|e| FsError::share(&row.target, e))?;
                    rolled += 1;
                }
                // The file stays dirty (it may have changed since); its base is what is now on
                // the share, so writing it again is not taken for a conflict.
                let base = self.backing.stat(&row.target).ok().flatten();
                let mut tree = self.state.write();
                let mut changed = None;
                if let (Some(n), Some(st)) = (tree.get_mut(row.ino), base) {
                    n.base = Some(Base::of(&st));
                    n.in_share = true;
                    changed = Some(n.clone());
                }
                self.persist(|tx| {
                    if let Some(n) = &changed {
                        journal::put_node(tx, n)?;
                    }
                    journal::delete_staged(tx, &row.temp)
                })?;
            } else {
                match self.backing.remove_file(&row.temp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    // Never created (the share refused it): nothing to remove.
                    Err(_) if matches!(self.backing.stat(&row.temp), Ok(None)) => {}
                    Err(e) => return Err(FsError::share(&row.temp, e)),
                }
                self.persist(|tx| journal::delete_staged(tx, &row.temp))?;
            }
        }
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
