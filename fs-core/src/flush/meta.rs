//! Flush step 5: modification times and modes, of entries changed only in those and of the
//! folders the flush wrote into.

use super::*;

impl Engine {
    /// Sets modification times and modes: files, then directories deepest first (writing
    /// into a directory changes its time on the share, so directories come last).
    pub(super) fn apply_meta(
        &self,
        ctx: &Ctx<'_>,
        meta: Vec<Job>,
        written_dirs: BTreeSet<RelPath>,
    ) {
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
        let touched: Vec<RelPath> = written_dirs
            .into_iter()
            .filter(|d| !dirs.iter().any(|(p, _, _)| p == d))
            .collect();
        for j in self.mark_dirs_touched(&touched) {
            dirs.push((j.local.clone(), Some(j), false));
        }
        // What is settled is recorded at the end, in one journal transaction.
        let finished = Mutex::new(Vec::new());
        // Each file and folder independently, several at once: setting a folder's time does
        // not change its parent's, and all content changes are done by now.
        self.pool.install(|| {
            files
                .into_par_iter()
                .for_each(|j| self.apply_file_meta(ctx, j, &ops, &finished))
        });
        self.pool.install(|| {
            dirs.into_par_iter().for_each(|(path, job, mode)| {
                self.apply_dir_meta(ctx, &path, job, mode, &ops, &finished)
            })
        });
        self.finish_entries(finished.into_inner());
    }

    /// A file's time and mode changed here (not its content).
    fn apply_file_meta(
        &self,
        ctx: &Ctx<'_>,
        j: Job,
        ops: &[Logged],
        finished: &Mutex<Vec<Finished>>,
    ) {
        let settle = |job: Job, base: Option<Base>| {
            finished.lock().push(Finished {
                job,
                base,
                temp: None,
                captured: None,
                hash: None,
            })
        };
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
        // Our versions of the file: the one last synced, and for a name of a hard-linked
        // entry the entry as it is now (another of its names, a hard link on the share too,
        // was given this time a moment ago).
        let expect = Expect {
            base: j.base,
            also: j.base.filter(|_| j.linked).map(|b| Base {
                size: b.size,
                mtime_ns: attr.mtime_ns,
            }),
        };
        let dropped = |j: Job| {
            // Changed on the share since: its content wins (a refresh brings it); our new
            // time belongs to the old content and is dropped.
            let msg = format!(
                "{}: changed on the share; the local change of its time was dropped",
                j.local
            );
            warn!("{msg}");
            ctx.report.lock().warnings.push(msg);
            settle(j, None);
        };
        // A regular file known on the share is checked and changed in one call, so that our
        // time never lands on a version someone put there meanwhile (`set_mtime_if`).
        let checked = j.in_share && j.kind == EntryKind::File;
        if j.in_share && !checked {
            match self.backing.stat(&target) {
                Ok(Some(st)) if !expect.matches(&st) => return dropped(j),
                Ok(_) => {}
                Err(e) => {
                    ctx.push_pending(ctx.pending(&j.local, &e));
                    return;
                }
            }
        }
        if j.kind == EntryKind::Symlink {
            settle(j, None);
            return;
        }
        let retry = self.opts.retry;
        let set = if checked {
            retry.run(|| self.backing.set_mtime_if(&target, expect, attr.mtime_ns))
        } else {
            retry
                .run(|| self.backing.set_mtime(&target, attr.mtime_ns))
                .map(|()| {
                    // If the share cannot be asked again, it holds what we just set.
                    let st = self.backing.stat(&target).ok().flatten();
                    Some(st.unwrap_or(crate::Stat {
                        kind: j.kind,
                        size: j.base.map_or(attr.size, |b| b.size),
                        mtime_ns: attr.mtime_ns,
                        mode: attr.mode,
                        rdev: 0,
                    }))
                })
        };
        let r = match set {
            Ok(None) => return dropped(j),
            // A mode the share does not take is not worth keeping a change pending. The owner
            // first: a chown clears the set-user-ID bit the mode may carry.
            Ok(Some(st)) => {
                ctx.write_owner(&*self.backing, &target, attr.owner);
                ctx.write_xattrs(&*self.backing, &target, &j.xattrs);
                let _ = self.backing.set_mode(&target, attr.mode);
                Ok(st)
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(st) => {
                let in_share = j.in_share;
                settle(j, Some(Base::of(&st)).filter(|_| in_share));
                ctx.report.lock().attrs_updated += 1;
            }
            // Shares that cannot keep times at all: say so once and keep going.
            Err(e) if times_unsupported(&e) => {
                ctx.warn_once_mtime();
                settle(j, None);
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
        finished: &Mutex<Vec<Finished>>,
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
                    if let Some(j) = &job {
                        ctx.write_xattrs(&*self.backing, &target, &j.xattrs);
                    }
                    if mode {
                        ctx.write_owner(&*self.backing, &target, attr.owner);
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
        if let Some(job) = job {
            finished.lock().push(Finished {
                job,
                base: None,
                temp: None,
                captured: None,
                hash: None,
            });
        }
    }

    /// Marks the folders at `paths` as having a time to set, in one journal transaction, so
    /// that a failure leaves them pending instead of forgotten.
    fn mark_dirs_touched(&self, paths: &[RelPath]) -> Vec<Job> {
        if paths.is_empty() {
            return Vec::new();
        }
        let mut tree = self.state.write();
        let mut jobs = Vec::with_capacity(paths.len());
        let mut changed = Vec::with_capacity(paths.len());
        for path in paths {
            let Some(ino) = tree.resolve(path).ok().flatten() else {
                continue;
            };
            let Some(n) = tree.get_mut(ino) else {
                continue;
            };
            n.meta_dirty = true;
            n.gen += 1;
            let snapshot = n.clone();
            tree.reindex(ino);
            jobs.push(Job::of(&snapshot, path.clone(), 0));
            changed.push(snapshot);
        }
        if let Err(e) = self.persist_nodes(&changed) {
            warn!(error = %e, "could not record directory times to set");
        }
        jobs
    }
}
