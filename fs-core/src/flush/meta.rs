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
}
