//! New folders, written whole under a temporary name and renamed into place at once.
//!
//! A step that makes a folder of results (`runs/2026-12-02/`, a snapshot's folder) would
//! otherwise cost, on the share, the folder's mkdir, then per file a freshness check, a
//! temporary and a rename of it into place. A Linux client of a network share makes the
//! renames in one folder one at a time, a few round trips each (its lookups of both names and
//! the rename), which made them most of a flush of many new files over a slow link. Here the
//! folder is made under a temporary name beside its place, its files are written into it
//! under their own names (nothing can be there yet: no freshness check), and one rename of the
//! folder puts all of it in place, at the burst, as the files' renames would have.
//!
//! Only a folder that is new through and through is written this way: its logged mkdir, and
//! those of the folders inside it, are the only logged changes that involve it or anything in
//! it or above it. Anything else about it (a rename into it, a removal in it, an older folder
//! of the same name) goes the usual way, through the log.
//!
//! What a crash leaves is settled like any staged file (`recover_staged`): the temporary folder
//! and the folders in it are staging folders of the journal, removed once empty; its files'
//! records are ready from the moment the folder's rename is decided, when the folder is listed
//! as ready too, and the roll-forward renames a ready folder before looking at its files.

use super::*;

/// The journal's list of new folders whose rename into place was decided, as (temp, target).
const FOLDERS_READY: &str = "folders_ready";

/// A folder made by this flush under a temporary name.
pub(super) struct NewFolder {
    /// Its place on the share (its local path too: no logged change moves it).
    target: RelPath,
    /// Its temporary name, beside the target.
    temp: RelPath,
    /// The logged mkdirs its rename does: its own and those of the folders in it.
    seqs: Vec<i64>,
    /// The folders to make on the share, parents first: the temporary, then those in it.
    pub(super) dirs: Vec<RelPath>,
}

impl Engine {
    /// The new folders among the logged mkdirs up to `max_seq` that hold files to write, and
    /// those files, planned into them; the other jobs are returned as they are.
    pub(super) fn new_folders(
        &self,
        jobs: Vec<Job>,
        max_seq: i64,
    ) -> (Vec<NewFolder>, Vec<Planned>, Vec<Job>) {
        let ops = self.state.read().ops.clone();
        let mut folders: Vec<NewFolder> = Vec::new();
        for (seq, op) in &ops {
            let NsOp::Mkdir { path: dir } = op else {
                continue;
            };
            if *seq > max_seq || dir.is_root() {
                continue;
            }
            // Every logged change that involves it, something in it or above it, is a mkdir
            // in it: nothing else is there on the share, and no change moves it.
            let inside =
                |o: &NsOp, p: &RelPath| matches!(o, NsOp::Mkdir { .. }) && p.is_within(dir);
            if !ops
                .iter()
                .all(|(_, o)| o.paths().all(|p| !p.overlaps(dir) || inside(o, p)))
            {
                continue;
            }
            let mut made: Vec<(i64, RelPath)> = ops
                .iter()
                .filter_map(|(s, o)| match o {
                    NsOp::Mkdir { path } if path.is_within(dir) => Some((*s, path.clone())),
                    _ => None,
                })
                .collect();
            if made.iter().any(|(s, _)| *s > max_seq) {
                continue;
            }
            // Names a Windows share refuses are reported by the replay, the usual way.
            if self.opts.windows_share
                && made
                    .iter()
                    .any(|(_, p)| names::windows_name_problem(p.name()).is_some())
            {
                continue;
            }
            made.sort_by_key(|(_, p)| p.depth());
            let temp = dir
                .parent()
                .unwrap_or_default()
                .join(&names::temp_name(dir.name()));
            folders.push(NewFolder {
                target: dir.clone(),
                dirs: made
                    .iter()
                    .map(|(_, p)| p.rebase(dir, &temp).expect("within the folder"))
                    .collect(),
                temp,
                seqs: made.iter().map(|(s, _)| *s).collect(),
            });
        }
        let mut planned = Vec::new();
        let mut rest = Vec::new();
        for job in jobs {
            let home = folders.iter().find(|f| job.local.is_within(&f.target));
            match home {
                Some(f) if job.local != f.target && self.windows_refusal(&job).is_none() => planned
                    .push(Planned {
                        temp: job.local.rebase(&f.target, &f.temp).expect("within"),
                        target: job.local.clone(),
                        fresh: true,
                        job,
                    }),
                _ => rest.push(job),
            }
        }
        // A folder with no file to write costs one mkdir the usual way.
        folders.retain(|f| planned.iter().any(|p| p.temp.is_within(&f.temp)));
        (folders, planned, rest)
    }

    /// Lists `folders` as ready in the journal transaction `tx` that marks their files ready.
    pub(super) fn record_folders_ready(
        tx: &rusqlite::Connection,
        folders: &[NewFolder],
    ) -> Result<(), crate::error::JournalError> {
        let pairs: Vec<(&RelPath, &RelPath)> =
            folders.iter().map(|f| (&f.temp, &f.target)).collect();
        let text = serde_json::to_string(&pairs).expect("paths serialize");
        journal::put_meta(tx, FOLDERS_READY, &text)
    }

    /// Renames each new folder into place. Its files are then in place too (`in_place`);
    /// those of a folder that could not be renamed are taken out of their temporaries and
    /// returned, to be written the usual way after the burst (the replay then makes the folder,
    /// or finds it made by someone else, or says why not).
    pub(super) fn commit_folders(
        &self,
        ctx: &Ctx<'_>,
        folders: &[NewFolder],
        staged: Vec<Staged>,
    ) -> (Vec<Staged>, Vec<Job>) {
        let mut rest = staged;
        let mut deferred = Vec::new();
        let mut done: Vec<i64> = Vec::new();
        // The staging folders the renames took along: nothing is left at their temporary
        // names, so they are off the list without an rmdir each (one round trip that could
        // only say "not found").
        let mut moved: Vec<RelPath> = Vec::new();
        for f in folders {
            let (mut mine, others): (Vec<Staged>, Vec<Staged>) =
                rest.into_iter().partition(|s| s.temp.is_within(&f.temp));
            rest = others;
            let _span = info_span!("commit_folder", path = %f.target).entered();
            let renamed = if ctx.down.load(Ordering::SeqCst) {
                Err(io::Error::new(io::ErrorKind::TimedOut, "share unreachable"))
            } else {
                self.opts
                    .retry
                    .run(|| self.backing.rename(&f.temp, &f.target))
            };
            match renamed {
                Ok(()) => {
                    done.extend(&f.seqs);
                    moved.extend(f.dirs.iter().cloned());
                    ctx.report.lock().dirs_created += f.dirs.len();
                    ctx.touched(&f.target);
                    for s in &mut mine {
                        s.in_place = true;
                    }
                    rest.extend(mine);
                }
                Err(e) => {
                    debug!(error = %e, "new folder not renamed; its files go the usual way");
                    for s in mine {
                        self.abandon_temp(&s, true);
                        deferred.push(s.job);
                    }
                }
            }
        }
        // The mkdirs the renames did are off the log, and the ready list is emptied, in one
        // transaction: a crash before it replays mkdirs of folders that exist (settled as such).
        {
            let mut tree = self.state.write();
            tree.ops.retain(|(s, _)| !done.contains(s));
        }
        ctx.staging_dirs.lock().retain(|d| !moved.contains(d));
        let mut listed = self.staging_dirs_recorded();
        listed.retain(|d| !moved.contains(d));
        let r = self.persist(|tx| {
            for &s in &done {
                journal::delete_op(tx, s)?;
            }
            if !moved.is_empty() {
                let text = serde_json::to_string(&listed).expect("paths serialize");
                journal::put_meta(tx, super::stage::STAGING_DIRS, &text)?;
            }
            journal::put_meta(tx, FOLDERS_READY, "[]")
        });
        if let Err(e) = r {
            warn!(error = %e, "could not record new folders as made");
        }
        (rest, deferred)
    }

    /// After a crash: renames the new folders whose rename was decided into place, if they
    /// are still under their temporary names and nothing took their place. (If something did,
    /// their files are renamed into it one by one, as ready files are.)
    pub(super) fn recover_folders(&self) -> Result<(), FsError> {
        let text = self.journal.lock().get_meta(FOLDERS_READY).ok().flatten();
        let pairs: Vec<(RelPath, RelPath)> = text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if pairs.is_empty() {
            return Ok(());
        }
        for (temp, target) in pairs {
            let share = |p: &RelPath, e| FsError::share(p, e);
            let temp_now = self.backing.stat(&temp).map_err(|e| share(&temp, e))?;
            let target_now = self.backing.stat(&target).map_err(|e| share(&target, e))?;
            if temp_now.is_some() && target_now.is_none() {
                self.backing
                    .rename(&temp, &target)
                    .map_err(|e| share(&target, e))?;
            }
        }
        self.persist(|tx| journal::put_meta(tx, FOLDERS_READY, "[]"))
    }
}
