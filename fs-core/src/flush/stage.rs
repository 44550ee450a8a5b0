//! Flush steps 2 and 4: copying dirty files to temporaries beside their targets, then putting
//! them in place (each by `commit.rs`) and recording what was written.

use super::*;

/// The journal's list of staging folders made on the share (`spread_temps`).
pub(super) const STAGING_DIRS: &str = "staging_dirs";

/// What the planning of one file found.
enum Plan {
    Stage(Planned),
    Not(StageOutcome),
}

impl Engine {
    /// Stages `jobs`, several at once, against the namespace log as it is now.
    ///
    /// Every temporary is recorded in the journal before it is made, the whole pass in one
    /// transaction, and the records of those that were never made (or were removed again) go
    /// in one more: a transaction per file cost more than the copy of a small file.
    ///
    /// `in_folders` are files planned into the new `folders` (`folders.rs`), which are made
    /// first, like staging folders.
    pub(super) fn stage_all(
        &self,
        ctx: &Ctx<'_>,
        jobs: Vec<Job>,
        in_folders: Vec<Planned>,
        folders: &[super::folders::NewFolder],
        after_burst: bool,
    ) -> Vec<StageOutcome> {
        let ops = self.state.read().ops.clone();
        let mut outcomes = Vec::new();
        let mut planned = Vec::new();
        for job in jobs {
            match self.plan(job, &ops) {
                Plan::Stage(p) => planned.push(p),
                Plan::Not(o) => outcomes.push(o),
            }
        }
        let mut staging: Vec<RelPath> = folders.iter().flat_map(|f| f.dirs.clone()).collect();
        staging.extend(self.spread_temps(ctx, &mut planned));
        planned.extend(in_folders);
        let listed: Vec<RelPath> = if staging.is_empty() {
            Vec::new()
        } else {
            let mut l = self.staging_dirs_recorded();
            l.extend(staging.iter().cloned());
            l
        };
        let recorded = self.persist(|tx| {
            for p in &planned {
                journal::put_staged(tx, &p.row())?;
            }
            if !staging.is_empty() {
                let text = serde_json::to_string(&listed).expect("paths serialize");
                journal::put_meta(tx, STAGING_DIRS, &text)?;
            }
            Ok(())
        });
        if recorded.is_ok() {
            // Made after they are recorded: whatever happens from here (a crash, the share
            // gone), the next flush removes them (`recover_staged`). One not made is made by
            // the stage that needs it (its temporary's folder is missing).
            for d in &staging {
                // One after another: a share that went down must not cost a failure each.
                if ctx.down.load(Ordering::SeqCst) {
                    break;
                }
                if let Err(e) = self.backing.create_dir(d) {
                    ctx.note_failure(&e);
                    debug!(dir = %d, error = %e, "staging folder not made here");
                }
            }
            ctx.staging_dirs.lock().extend(staging);
        }
        if let Err(e) = recorded {
            outcomes.extend(
                planned.into_iter().map(|p| {
                    StageOutcome::Pending(PendingItem::new(&p.job.local, Reason::Other, &e))
                }),
            );
            return outcomes;
        }
        // The other names of a hard-linked entry go after its first, as hard links of the
        // first's temporary where the share keeps them (`Job::live` is the entry's number).
        let mut seen = std::collections::HashSet::new();
        let (firsts, others): (Vec<Planned>, Vec<Planned>) = planned
            .into_iter()
            .partition(|p| p.job.kind != EntryKind::File || seen.insert(p.job.live));
        let staged: Vec<(StageOutcome, Option<RelPath>)> = self.pool.install(|| {
            firsts
                .into_par_iter()
                .map(|p| self.stage(ctx, p, after_burst, None))
                .collect()
        });
        let linkable: std::collections::HashMap<Ino, RelPath> = staged
            .iter()
            .filter_map(|(o, _)| match o {
                StageOutcome::Staged(s) if !others.is_empty() => Some((s.job.live, s.temp.clone())),
                _ => None,
            })
            .collect();
        let linked: Vec<(StageOutcome, Option<RelPath>)> = self.pool.install(|| {
            others
                .into_par_iter()
                .map(|p| {
                    let from = linkable.get(&p.job.live);
                    self.stage(ctx, p, after_burst, from)
                })
                .collect()
        });
        let mut forget = Vec::new();
        for (outcome, gone) in staged.into_iter().chain(linked) {
            outcomes.push(outcome);
            forget.extend(gone);
        }
        if !forget.is_empty() {
            // Left in the journal, they are only removed (again) by the next flush.
            let _ = self.persist(|tx| {
                for t in &forget {
                    journal::delete_staged(tx, t)?;
                }
                Ok(())
            });
        }
        outcomes
    }

    /// Marks `staged` ready in the journal and renames each into place, several at once.
    /// Returns the jobs whose name something else holds for now. What was renamed is recorded
    /// as written in one transaction at the end: a crash before it leaves ready records whose
    /// temporaries are gone, which the next flush settles (`recover_staged`).
    ///
    /// The new `folders` (`folders.rs`) are renamed into place first, with their files.
    pub(super) fn commit_all(
        &self,
        ctx: &Ctx<'_>,
        mut staged: Vec<Staged>,
        folders: &[super::folders::NewFolder],
    ) -> Vec<Job> {
        let mut waiting = Vec::new();
        if let Err(e) = self.mark_ready(&staged, folders) {
            for s in &staged {
                ctx.push_pending(PendingItem::new(&s.job.local, Reason::Other, &e));
            }
            staged.clear();
        } else if !folders.is_empty() {
            (staged, waiting) = self.commit_folders(ctx, folders, staged);
        }
        let finished = Mutex::new(Vec::new());
        // Until the share's time resolution is known, one file goes first and teaches it
        // (`times.rs`): committed together, each would stat its target to learn it.
        let mut left: Vec<Option<Job>> = Vec::new();
        if !self.share_times.known() {
            if let Some(i) = staged.iter().position(|s| s.job.kind == EntryKind::File) {
                let first = staged.swap_remove(i);
                left.push(self.commit(ctx, first, &finished));
            }
        }
        left.extend(self.pool.install(|| {
            staged
                .into_par_iter()
                .map(|s| self.commit(ctx, s, &finished))
                .collect::<Vec<_>>()
        }));
        self.finish_entries(finished.into_inner());
        crate::crash::point("commit.recorded");
        waiting.extend(left.into_iter().flatten());
        waiting
    }

    /// Spreads the temporaries of each folder that receives many files over a few staging
    /// folders inside it (hidden like temporaries: `.stage.sipfs-tmp-PID-N`), and returns them
    /// to be made. Why: a Linux client of a network share (sshfs, NFS, the kernel's SMB) holds
    /// a folder's lock across the round trip of each create in it, so files created in one
    /// folder are created one at a time whatever the parallelism; in several folders they
    /// overlap. Their renames into place still take the folder's lock one at a time, but a
    /// rename is one round trip where a staged file is several (create, write, sync, times,
    /// close). A staging folder is inside the target's folder, so the rename never crosses a
    /// mount point or a share boundary.
    fn spread_temps(&self, ctx: &Ctx<'_>, planned: &mut [Planned]) -> Vec<RelPath> {
        let min = self.opts.stage_spread_min;
        let spread = self.opts.stage_spread_dirs;
        if min == 0 || spread < 2 {
            return Vec::new();
        }
        let mut by_dir: std::collections::BTreeMap<RelPath, Vec<usize>> = Default::default();
        for (i, p) in planned.iter().enumerate() {
            by_dir
                .entry(p.target.parent().unwrap_or_default())
                .or_default()
                .push(i);
        }
        let mut made = Vec::new();
        for (dir, members) in by_dir {
            if members.len() < min.max(2) {
                continue;
            }
            let dirs: Vec<RelPath> = (0..spread)
                .map(|_| dir.join(&names::temp_name("stage")))
                .collect();
            for (n, &i) in members.iter().enumerate() {
                let p = &mut planned[i];
                p.temp = dirs[n % spread].join(&names::temp_name(p.target.name()));
            }
            // Making and removing the staging folders changes the folder's time on the share:
            // it is set again at the end, like a folder written into.
            ctx.touched(&planned[members[0]].job.local);
            made.extend(dirs);
        }
        made
    }

    /// Staging folders made on the share and not known to be removed, as the journal lists
    /// them: the only record of one whose temporaries were never made.
    pub(super) fn staging_dirs_recorded(&self) -> Vec<RelPath> {
        let text = self.journal.lock().get_meta(STAGING_DIRS).ok().flatten();
        text.and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Removes staging folders once their temporaries are renamed away, and takes those gone
    /// off the journal's list. One still holding a temporary (its rename failed, or the share
    /// is gone) stays listed, for the next flush, whose roll-forward removes the temporary
    /// first.
    pub(super) fn remove_staging_dirs(&self, mut dirs: Vec<RelPath>) {
        if dirs.is_empty() {
            return;
        }
        // Deepest first: a new folder's temporary holds the folders made in it.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.depth()));
        let mut gone = Vec::new();
        for d in dirs {
            match self.backing.remove_dir(&d) {
                Ok(()) => gone.push(d),
                Err(e) if e.kind() == io::ErrorKind::NotFound => gone.push(d),
                Err(e) => debug!(dir = %d, error = %e, "staging folder left for the next flush"),
            }
        }
        if gone.is_empty() {
            return;
        }
        let mut listed = self.staging_dirs_recorded();
        listed.retain(|d| !gone.contains(d));
        let text = serde_json::to_string(&listed).expect("paths serialize");
        if let Err(e) = self.persist(|tx| journal::put_meta(tx, STAGING_DIRS, &text)) {
            warn!(error = %e, "could not record staging folders as removed");
        }
    }

    /// Where a dirty file goes on the share and the name of its temporary there, from what
    /// this cache knows (no share call); or why it is not staged in this pass.
    fn plan(&self, job: Job, ops: &[Logged]) -> Plan {
        // The file itself must already have a place on the share: a logged mkdir of the same
        // path (a directory that stood there before this file) comes first.
        let Some(target) = share_path_of(&job.local, ops) else {
            return Plan::Not(StageOutcome::Deferred(job));
        };
        // Something a logged change moves or removes may still stand at the target: such files
        // are written after the replay, when the share's names are ours.
        if touches(ops, &job.local) || touches(ops, &target) {
            return Plan::Not(StageOutcome::Deferred(job));
        }
        if let Some(item) = self.windows_refusal(&job) {
            return Plan::Not(StageOutcome::Pending(item));
        }
        let temp = target
            .parent()
            .unwrap_or_default()
            .join(&names::temp_name(target.name()));
        Plan::Stage(Planned {
            job,
            target,
            temp,
            fresh: false,
        })
    }

    /// Stages one planned file: the freshness check, then the copy to its temporary. Also
    /// returns the temporary when its journal record can go (it was never made, or is gone).
    fn stage(
        &self,
        ctx: &Ctx<'_>,
        p: Planned,
        after_burst: bool,
        link_from: Option<&RelPath>,
    ) -> (StageOutcome, Option<RelPath>) {
        let Planned {
            job,
            target,
            temp,
            fresh,
        } = p;
        if ctx.down.load(Ordering::SeqCst) {
            return (
                StageOutcome::Pending(ctx.unreachable(&job.local)),
                Some(temp),
            );
        }
        let _span = info_span!("stage", path = %job.local).entered();
        let retry = self.opts.retry;
        let current = match fresh {
            true => Ok(None),
            false => retry.run(|| self.backing.stat_fresh(&target)),
        };
        let current = match current {
            Ok(c) => c,
            Err(e) => {
                return (
                    StageOutcome::Pending(ctx.pending(&job.local, &e)),
                    Some(temp),
                )
            }
        };
        let conflict = match current {
            None => None,
            // A pending removal may still free the name: try again after the burst.
            Some(st) if st.kind == EntryKind::Dir && !after_burst => {
                return (StageOutcome::Deferred(job), Some(temp))
            }
            // A folder this cache does not know of (kept for what it held, or made by someone
            // else) has the name: it moves aside, so both are kept.
            Some(st) if st.kind == EntryKind::Dir => {
                let detail =
                    "a file here, a folder on the share; the share's folder was kept beside"
                        .to_string();
                if let Err(e) = self.move_aside(ctx, &target, &job.local, detail) {
                    return (
                        StageOutcome::Pending(ctx.pending(&job.local, &e)),
                        Some(temp),
                    );
                }
                None
            }
            // A file is at the name: the commit captures it and judges the captured file, not
            // this look at it, which is old by then (`capture.rs`).
            Some(_) => Some(super::capture::capture_name(&target)),
        };
        let cache = self.cache_path(&job.local);
        let (size, mtime_ns) = match job.kind {
            EntryKind::Symlink => (0, 0),
            k if k.is_special() => (0, job.mtime_ns),
            _ => match fs::metadata(&cache) {
                Ok(md) => (md.len(), backing::mtime_ns(&md)),
                Err(e) => {
                    return (
                        StageOutcome::Pending(PendingItem::new(
                            &job.local,
                            Reason::Waiting,
                            format!("changed while this flush ran ({e}); the next flush writes it"),
                        )),
                        Some(temp),
                    );
                }
            },
        };
        // Where the share may keep whole seconds only, what is written is known by its content
        // too, so that a later commit can tell it from someone else's version of the same size
        // and second (`capture.rs`). Read before it is copied: a change in between leaves the
        // file dirty, and a wrong hash only ever makes a version count as someone else's.
        let hash = (job.kind == EntryKind::File && self.share_times.maybe_coarse())
            .then(|| crate::mirror::stamp::hash_file(&cache).ok())
            .flatten();
        let write = || match (&job.kind, &job.link) {
            (EntryKind::Symlink, Some(target)) => self.backing.stage_symlink(target, &temp),
            (k, _) if k.is_special() => {
                self.backing.stage_special(*k, job.rdev, job.mode, &temp)?;
                // Best effort, as for files: a share that keeps no times still holds it.
                let _ = self.backing.set_mtime(&temp, job.mtime_ns);
                Ok(())
            }
            _ => match link_from {
                // Another name of the same entry, staged already: a hard link of it, where the
                // share keeps them; a copy of its own where not (said once).
                Some(from) => match self.backing.stage_link(from, &temp) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        ctx.warn_once_links(&e);
                        self.backing.stage(&cache, &temp, mtime_ns, job.mode)
                    }
                },
                None => self.backing.stage(&cache, &temp, mtime_ns, job.mode),
            },
        };
        let mut result = retry.run(write);
        if job.kind.is_special()
            && matches!(&result, Err(e) if e.kind() == io::ErrorKind::Unsupported)
        {
            return (StageOutcome::KeptLocal(job), Some(temp));
        }
        if matches!(&result, Err(e) if e.kind() == io::ErrorKind::NotFound)
            && (job.kind.is_special() || fs::symlink_metadata(&cache).is_ok())
        {
            // The directory went away on the share (someone deleted it): ours wins, recreate it
            // (and the staging folder the temporary goes in, if it has one).
            result = self
                .create_dirs(&temp.parent().unwrap_or_default())
                .and_then(|_| retry.run(write));
        }
        match result {
            Ok(()) => (
                StageOutcome::Staged(Staged {
                    job,
                    temp,
                    target,
                    conflict,
                    size,
                    mtime_ns,
                    in_place: false,
                    hash,
                }),
                None,
            ),
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
                (
                    StageOutcome::Pending(ctx.pending(&job.local, &e)),
                    gone.then_some(temp),
                )
            }
        }
    }

    /// What a Windows share would refuse about this entry's name, checked before trying: the
    /// share's own errors for these are vague or, for names that differ only in case, absent
    /// (one file silently replaces the other).
    pub(super) fn windows_refusal(&self, job: &Job) -> Option<PendingItem> {
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

    fn mark_ready(
        &self,
        staged: &[Staged],
        folders: &[super::folders::NewFolder],
    ) -> Result<(), FsError> {
        self.persist(|tx| {
            for s in staged {
                journal::put_staged(tx, &s.row(true))?;
            }
            if !folders.is_empty() {
                Self::record_folders_ready(tx, folders)?;
            }
            Ok(())
        })
    }

    /// Removes a staged temporary that will not be renamed, with its journal record; if the
    /// share cannot be asked to remove it now, the record stays (as not ready, when
    /// `keep_row`), so that the next flush removes it rather than renaming it.
    pub(super) fn abandon_temp(&self, s: &Staged, keep_row: bool) {
        // A row that names a capture stays until recovery has seen to the captured file.
        let removed = self.backing.remove_file(&s.temp).is_ok();
        if (removed && s.conflict.is_none()) || !keep_row {
            let _ = self.persist(|tx| journal::delete_staged(tx, &s.temp));
        } else {
            let _ = self.persist(|tx| {
                journal::put_staged(
                    tx,
                    &StagedRow {
                        temp: s.temp.clone(),
                        target: s.target.clone(),
                        // The capture name stays: recovery settles a captured file left there.
                        conflict: s.conflict.clone(),
                        ino: s.job.ino,
                        ready: false,
                    },
                )
            });
        }
    }

    /// Records entries the flush wrote or settled: each gets its new base, and is clean unless
    /// it changed meanwhile. One journal transaction for all.
    pub(super) fn finish_entries(&self, done: Vec<Finished>) {
        if done.is_empty() {
            return;
        }
        // Old versions the commits captured are noted in the transaction that forgets their
        // staged rows, which named them until now.
        let mut captured = Vec::new();
        if done.iter().any(|f| f.captured.is_some()) {
            captured = self.captured_rows();
            captured.extend(done.iter().filter_map(|f| f.captured.clone()));
        }
        let mut tree = self.state.write();
        let mut changed = Vec::with_capacity(done.len());
        for f in &done {
            let job = &f.job;
            let unmoved = tree.path_of(job.ino).as_ref() == Some(&job.local);
            let live_same = self.live.get(&job.live).is_none_or(|l| {
                l.gen.load(Ordering::SeqCst) == job.live_gen
                    && l.writers.load(Ordering::SeqCst) == 0
            });
            if let Some(n) = tree.get_mut(job.ino) {
                if unmoved {
                    if let Some(b) = f.base {
                        n.base = Some(b);
                        n.size = b.size;
                        n.in_share = true;
                    }
                    if n.gen == job.node_gen && live_same {
                        n.content_dirty = false;
                        n.meta_dirty = false;
                    }
                }
                changed.push(n.clone());
            }
            tree.reindex(job.ino);
        }
        let r = self.persist(|tx| {
            for n in &changed {
                journal::put_node(tx, n)?;
            }
            for t in done.iter().filter_map(|f| f.temp.as_ref()) {
                journal::delete_staged(tx, t)?;
            }
            if !captured.is_empty() {
                let text = serde_json::to_string(&captured).expect("paths serialize");
                journal::put_meta(tx, super::capture::CAPTURED, &text)?;
            }
            for f in &done {
                if let (Some(b), Some(h)) = (f.base, f.hash) {
                    journal::put_base_hash(tx, f.job.ino, b, h)?;
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            warn!(error = %e, "could not record written files; they will be written again");
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
