//! Flush step 3: the logged namespace changes (mkdir, rename, remove), replayed on the share
//! in order, without deleting what this cache did not know.

use super::*;

impl Engine {
    /// Replays the logged namespace changes in order (only those made before this flush began).
    pub(super) fn replay_ops(&self, ctx: &Ctx<'_>, max_seq: i64) {
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

    /// Whether the share's `st` holds, as it is here, the hard-linked entry `linked` that a
    /// removed name belonged to: another of its names was flushed, and the share, which keeps
    /// the names as hard links too, changed this one with it.
    pub(super) fn entry_holds(&self, linked: Option<u64>, st: &crate::Stat) -> bool {
        let Some(ino) = linked else { return false };
        let tree = self.state.read();
        tree.get(ino)
            .is_some_and(|n| self.holds_what_is_here(&tree, n, st))
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
            NsOp::Remove {
                path,
                kind,
                base,
                linked,
            } if *kind != EntryKind::Dir => {
                let removed = self.capture_replaced(
                    ctx,
                    path,
                    *base,
                    *linked,
                    "deleted here but changed on the share; the share's version was kept",
                )?;
                if removed {
                    ctx.report.lock().removed += 1;
                }
                Ok(())
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
                // A file synced at the name: captured and judged as a commit's target, so that
                // a version someone wrote there since is kept (`capture.rs`).
                if let Some(db) = dest_base {
                    self.capture_replaced(
                        ctx,
                        to,
                        Some(*db),
                        None,
                        "replaced here but changed on the share; the share's version was kept",
                    )?;
                }
                let file = src.is_some_and(|st| st.kind != EntryKind::Dir);
                if file {
                    // Never over a file that took the name since.
                    return match retry.run(|| b.rename_noreplace(from, to)) {
                        Ok(()) => {
                            ctx.report.lock().renamed += 1;
                            Ok(())
                        }
                        // A case-insensitive share (Windows, Samba's default, Wine) sees the
                        // source itself at a name that differs only in case: a plain rename
                        // changes the case and replaces nothing (WinFsp's rename_caseins_test,
                        // ported in fs-windows/tests/wine, found this reported as a conflict).
                        Err(e)
                            if e.kind() == io::ErrorKind::AlreadyExists
                                && self.only_case_differs_on_share(from, to) =>
                        {
                            retry.run(|| b.rename(from, to)).map_err(|e| fail(to, e))?;
                            ctx.report.lock().renamed += 1;
                            Ok(())
                        }
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            Err(PendingItem::new(
                                to,
                                Reason::Conflict,
                                "something else took this name on the share; the next flush keeps both",
                            ))
                        }
                        Err(e) => Err(fail(to, e)),
                    };
                }
                retry.run(|| b.rename(from, to)).map_err(|e| fail(to, e))?;
                // Captured versions in a renamed folder moved with it.
                self.rebase_captured(from, to);
                ctx.report.lock().renamed += 1;
                Ok(())
            }
        }
    }

    /// Whether `from` and `to` name one entry of one folder in two cases, the share's listing
    /// holding `from` and nothing named exactly `to`: then a name taken at `to` is `from`.
    fn only_case_differs_on_share(&self, from: &RelPath, to: &RelPath) -> bool {
        if from.parent() != to.parent()
            || from.name() == to.name()
            || from.name().to_lowercase() != to.name().to_lowercase()
        {
            return false;
        }
        let parent = to.parent().unwrap_or_default();
        self.backing.list(&parent).is_ok_and(|names| {
            names.iter().any(|(n, _)| n == from.name())
                && !names.iter().any(|(n, _)| n == to.name())
        })
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
        // A version a commit captured is settled first: ours goes, anyone else's is kept.
        for (n, st) in entries.iter().filter(|(n, _)| names::is_capture_name(n)) {
            self.settle_capture_in_removed_folder(ctx, &path.join(n), st)
                .map_err(fail)?;
        }
        let entries = match entries.iter().any(|(n, _)| names::is_capture_name(n)) {
            true => retry.run(|| b.list(path)).map_err(fail)?,
            false => entries,
        };
        let (temps, kept): (Vec<_>, Vec<_>) =
            entries.iter().partition(|(n, _)| names::is_temp_name(n));
        for (n, st) in &temps {
            let temp = path.join(n);
            if st.kind == EntryKind::Dir {
                // A staging folder an interrupted flush left (`spread_temps`): temporaries only.
                for (t, _) in b.list(&temp).unwrap_or_default() {
                    let _ = b.remove_file(&temp.join(&t));
                }
                let _ = b.remove_dir(&temp);
            } else {
                let _ = b.remove_file(&temp);
            }
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
    pub(super) fn move_aside(
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
}
