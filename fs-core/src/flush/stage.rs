//! Flush steps 2 and 4: copying dirty files to temporaries beside their targets, renaming
//! them into place, and the conflicts found on the way.

use super::*;

impl Engine {
    /// Stages `jobs`, several at once, against the namespace log as it is now.
    pub(super) fn stage_all(
        &self,
        ctx: &Ctx<'_>,
        jobs: Vec<Job>,
        after_burst: bool,
    ) -> Vec<StageOutcome> {
        let ops = self.state.read().ops.clone();
        self.pool.install(|| {
            jobs.into_par_iter()
                .map(|j| self.stage(ctx, j, &ops, after_burst))
                .collect()
        })
    }

    /// Marks `staged` ready in the journal and renames each into place, several at once.
    /// Returns the jobs whose name something else holds for now.
    pub(super) fn commit_all(&self, ctx: &Ctx<'_>, mut staged: Vec<Staged>) -> Vec<Job> {
        if let Err(e) = self.mark_ready(&staged) {
            for s in &staged {
                ctx.push_pending(PendingItem::new(&s.job.local, Reason::Other, &e));
            }
            staged.clear();
        }
        let left: Vec<Option<Job>> = self.pool.install(|| {
            staged
                .into_par_iter()
                .map(|s| self.commit(ctx, s))
                .collect()
        });
        left.into_iter().flatten().collect()
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
    pub(super) fn create_dirs(&self, dir: &RelPath) -> io::Result<()> {
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
        let known = match s.job.kind {
            EntryKind::File => self.share_times.kept(s.mtime_ns),
            _ => None,
        };
        let base = match known {
            // What the share holds is known without asking (see `times.rs`).
            Some(mtime_ns) => Base {
                size: s.size,
                mtime_ns,
            },
            None => {
                let after = self.backing.stat(&s.target).ok().flatten();
                if s.job.kind == EntryKind::File {
                    if let Some(st) = after {
                        if !same_time_at_share_resolution(st.mtime_ns, s.mtime_ns) {
                            ctx.warn_once_mtime();
                        }
                        if st.size == s.size {
                            self.share_times.learn(s.mtime_ns, st.mtime_ns);
                        }
                    }
                }
                after.map(|st| Base::of(&st)).unwrap_or(Base {
                    size: s.size,
                    mtime_ns: s.mtime_ns,
                })
            }
        };
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
    pub(super) fn finish_entry(&self, job: &Job, base: Option<Base>, staged: Option<&RelPath>) {
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

    pub(super) fn record_conflict(&self, ctx: &Ctx<'_>, c: ConflictItem) {
        self.update_conflicts(|list| list.push(c.clone()));
        ctx.report.lock().conflicts.push(c);
    }

    /// Changes the list of conflicts `status` shows (the last 100 are kept).
    pub(super) fn update_conflicts(&self, change: impl FnOnce(&mut Vec<ConflictItem>)) {
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
}
