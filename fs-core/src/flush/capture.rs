//! The commit that loses no version: whatever is at a name on the share when a flush replaces
//! it is kept under some name.
//!
//! A check of the share's version followed by a rename over it has a window: a version that
//! lands in between is replaced, with no copy and no warning (issue 27 measured 5 to 12 lost
//! lines in a few hundred, with two mounts and a direct writer). So a commit over a name that
//! is taken goes:
//! 1. **capture**: the share's current file is renamed to a private name (`capture_name`).
//!    A rename is atomic on the share: whatever is at the name at that moment moves, and a
//!    writer that had it open keeps writing into the moved file. "Not found" means someone
//!    deleted it;
//! 2. **publish** the staged temporary at the name without replacing
//!    ([`Backing::rename_noreplace`]), at once: the name is empty from the capture to the
//!    publish, and a program elsewhere reading it then finds no file. If someone took the name
//!    since the capture, ours is not put there: the file stays pending, and the next flush
//!    keeps both;
//! 3. **judge** the captured file against the version this entry derives from (`base`, size and
//!    time at the share's resolution; for hard links, another name's base). Someone else's
//!    becomes the conflict copy at once, by a rename that does not replace. Ours (the old
//!    version we replace) is noted in the journal and removed by the next flush, once it is
//!    still what it was: a program that had it open may still write into it.
//!
//! The journal's staged row names the capture before it is made (`StagedRow::conflict`), so
//! after a crash at any point the next flush's recovery finds the captured file, judges it the
//! same way and puts the temporary in place; a name left empty gets a version back.
//!
//! [`Backing::rename_noreplace`]: crate::backing::Backing::rename_noreplace

use super::*;

/// The journal meta key of captured versions of ours waiting to be removed.
pub(super) const CAPTURED: &str = "captured";

/// A captured version of ours, removed by the next flush if nobody wrote to it since.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct CapturedRow {
    /// Where it is on the share.
    pub(super) cap: RelPath,
    /// The name it was captured from, for the conflict copy if someone wrote to it.
    target: RelPath,
    /// What it held when captured.
    size: u64,
    mtime_ns: i64,
    /// For one name of a hard-linked entry: the entry (a node's number). Where the share keeps
    /// hard links the captured file is still a name of it, and a flush that gives the entry's
    /// other names their times changes it too: holding the entry as it is here, it is ours.
    #[serde(default)]
    linked: Option<u64>,
    /// Its content is to be checked against the versions this cache knew of that size and
    /// time before it is removed, where the share may keep whole seconds: a removal or a
    /// rename here judged it by size and time alone, so as not to read every removed file
    /// back during the flush (that made a flush removing 20 files at 20 ms 1.6x as long).
    #[serde(default)]
    check_content: bool,
}

/// A private name beside `target` for its captured version ([`names::capture_name`]).
pub(super) fn capture_name(target: &RelPath) -> RelPath {
    target
        .parent()
        .unwrap_or_default()
        .join(&names::capture_name(target.name()))
}

impl Engine {
    /// Moves whatever is at `target` to `cap`. `None`: nothing was there.
    pub(super) fn capture(
        &self,
        target: &RelPath,
        cap: &RelPath,
    ) -> io::Result<Option<backing::Stat>> {
        let mut tries = 0;
        self.opts.retry.run(|| {
            tries += 1;
            match self.backing.capture(target, cap) {
                // A try after one that failed may find the name empty because that one moved
                // the file before it failed: what is at the capture name is the capture.
                Ok(None) if tries > 1 => self.backing.stat(cap),
                // (`None` from a first try: nothing was there, or it was renamed and then
                // gone at once: nothing to keep either way.)
                r => r,
            }
        })
    }

    /// Whether a captured share version is the one entry `ino` derives from: its base (or, for
    /// a hard-linked name, another name's), so that replacing it loses nothing of anyone's.
    pub(super) fn captured_is_ours(&self, ino: Ino, cap: &RelPath, st: &backing::Stat) -> bool {
        let known = {
            let tree = self.state.read();
            tree.get(ino)
                .map(|n| (n.in_share, n.base, n.shown().is_some()))
        };
        let Some((in_share, base, linked)) = known else {
            return false;
        };
        if !in_share {
            return false;
        }
        let ours = match base {
            Some(b) if b.matches(st) => self.same_content_if_coarse(ino, b, cap),
            _ => linked && self.held_by_another_name(ino, st),
        };
        debug!(cap = %cap, size = st.size, mtime_ns = st.mtime_ns, ?base, ours, "captured version judged");
        ours
    }

    /// On a share that keeps whole seconds (SFTP), a captured file with our base's size and
    /// second may still be someone else's version, written within that second: its content
    /// decides, against the hash recorded for the base (`journal::put_base_hash`: every
    /// version this cache fetched or wrote there). A base known from a listing alone (a file
    /// replaced here without being read) has no hash; the size and second decide then, which
    /// is the one case a version written within that second by someone else can be taken for
    /// ours. Where the share is known to keep finer times, the times tell. (Not known yet, as
    /// before this process wrote its first file there, counts as coarse: the hashes are
    /// recorded then too.)
    fn same_content_if_coarse(&self, ino: Ino, base: Base, cap: &RelPath) -> bool {
        let known = self
            .journal
            .lock()
            .base_hash(ino, base)
            .map(|h| h.into_iter().collect());
        self.holds_known_content(known, cap)
    }

    /// As [`Engine::same_content_if_coarse`], for a version a removal or a rename here
    /// replaces, whose entry is gone: the hash of any version with the base's size and time.
    pub(super) fn replaced_content_if_coarse(&self, base: Base, cap: &RelPath) -> bool {
        let known = self.journal.lock().hashes_of_versions(base);
        self.holds_known_content(known, cap)
    }

    /// Whether the captured file at `cap` holds one of the `known` contents, where the share
    /// may keep whole seconds; true elsewhere, and where none is known.
    fn holds_known_content(
        &self,
        known: Result<Vec<u64>, crate::error::JournalError>,
        cap: &RelPath,
    ) -> bool {
        if !self.share_times.maybe_coarse() {
            return true;
        }
        let want = match known {
            Ok(h) if h.is_empty() => {
                debug!(cap = %cap, "no content hash for the base: its size and second decide");
                return true;
            }
            Ok(h) => h,
            Err(_) => return false,
        };
        // Judges run in parallel: each reads into a file of its own.
        static JUDGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = JUDGED.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp_file(&format!("judge-{}-{n}", std::process::id()));
        let got = self
            .backing
            .fetch(cap, &tmp)
            .and_then(|()| crate::mirror::stamp::hash_file(&tmp));
        let _ = std::fs::remove_file(&tmp);
        got.is_ok_and(|h| want.contains(&h))
    }

    /// Settles a captured version: someone else's becomes the conflict copy beside `target`
    /// (reported for `job`'s path); ours is returned, to be noted for removal by the next flush
    /// when the commit is recorded.
    pub(super) fn settle_capture(
        &self,
        ctx: &Ctx<'_>,
        job: &Job,
        target: &RelPath,
        cap: &RelPath,
        st: &backing::Stat,
        theirs: bool,
    ) -> io::Result<Option<CapturedRow>> {
        if !theirs {
            return Ok(Some(CapturedRow {
                cap: cap.clone(),
                target: target.clone(),
                size: st.size,
                mtime_ns: st.mtime_ns,
                linked: job.linked.then_some(job.ino),
                check_content: false,
            }));
        }
        let local = &job.local;
        let kept = self.keep_as_conflict(cap, target)?;
        let kept_local = local.parent().unwrap_or_default().join(kept.name());
        warn!(path = %local, kept_as = %kept_local, "conflict: both versions kept");
        self.record_conflict(
            ctx,
            ConflictItem {
                path: local.to_string(),
                kept_as: kept_local.to_string(),
                detail: "changed on the share and here; this version is at the name, the share's beside it".into(),
            },
        );
        Ok(None)
    }

    /// Moves `from` to a free conflict name beside `target`, never replacing anything.
    fn keep_as_conflict(&self, from: &RelPath, target: &RelPath) -> io::Result<RelPath> {
        let dir = target.parent().unwrap_or_default();
        let mut last = None;
        for _ in 0..5 {
            let name = self.free_conflict_name(&dir, target.name())?;
            match self
                .opts
                .retry
                .run(|| self.backing.rename_noreplace(from, &name))
            {
                Ok(()) => return Ok(name),
                // Taken since we looked: another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()))
    }

    /// Recovery: a captured file an interrupted flush left at `cap` (if it is there) goes back
    /// to an empty name; otherwise it is judged as in a commit, against entry `ino`.
    pub(super) fn recover_capture(
        &self,
        target: &RelPath,
        ino: Ino,
        cap: &RelPath,
    ) -> Result<(), FsError> {
        let Some(st) = self.backing.stat(cap).map_err(share_err(cap))? else {
            return Ok(());
        };
        if self
            .backing
            .stat(target)
            .map_err(share_err(target))?
            .is_none()
        {
            match self.backing.rename_noreplace(cap, target) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(FsError::share(target, e))
                }
                Ok(()) => return Ok(()),
                // Taken meanwhile: judged below like any capture.
                Err(_) => {}
            }
        }
        if self.captured_is_ours(ino, cap, &st) {
            let linked = self
                .state
                .read()
                .get(ino)
                .and_then(|n| n.shown())
                .map(|_| ino);
            self.note_captured(CapturedRow {
                cap: cap.clone(),
                target: target.clone(),
                size: st.size,
                mtime_ns: st.mtime_ns,
                linked,
                check_content: false,
            });
        } else {
            let kept = self.keep_as_conflict(cap, target).map_err(share_err(cap))?;
            warn!(path = %target, kept_as = %kept, "conflict: both versions kept (found after an interrupted flush)");
            self.update_conflicts(|list| {
                list.push(ConflictItem {
                    path: target.to_string(),
                    kept_as: kept.to_string(),
                    detail: "changed on the share and here; this version is at the name, the share's beside it".into(),
                })
            });
        }
        Ok(())
    }

    /// A file removed here, or replaced by a rename here: what is at its name on the share is
    /// captured (noted in the journal first, so that a crash leaves it found), then judged
    /// against the version synced there (`base`; for a hard-linked name, the entry as it is
    /// here). Someone else's is kept as the conflict copy at once (with `detail`); ours goes
    /// with the next flush, once nobody wrote into it. True when ours was there (removed).
    pub(super) fn capture_replaced(
        &self,
        ctx: &Ctx<'_>,
        path: &RelPath,
        base: Option<Base>,
        linked: Option<u64>,
        detail: &str,
    ) -> Result<bool, PendingItem> {
        let fail = |e: io::Error| ctx.pending(path, &e);
        let cap = capture_name(path);
        // What counts as ours if nobody changed it: the version removed here.
        let ours = base.unwrap_or(Base {
            size: u64::MAX,
            mtime_ns: i64::MIN,
        });
        self.note_captured(CapturedRow {
            cap: cap.clone(),
            target: path.clone(),
            size: ours.size,
            mtime_ns: ours.mtime_ns,
            linked,
            check_content: true,
        });
        crate::crash::point("remove.noted");
        let captured = self.capture(path, &cap);
        let st = match captured {
            Ok(Some(st)) => {
                crate::crash::point("remove.captured");
                st
            }
            Ok(None) => {
                self.unnote_captured(&cap);
                return Ok(false);
            }
            // Noted it stays: if the rename was made, the next flush judges what it moved.
            Err(e) => return Err(fail(e)),
        };
        if st.kind == EntryKind::Dir {
            self.unnote_captured(&cap);
            self.put_back(&cap, path);
            return Err(PendingItem::new(
                path,
                Reason::Conflict,
                "a directory has this name on the share now",
            ));
        }
        // By size and time: on a share that keeps whole seconds, the content of one that
        // matches is checked when the next flush removes it (`drop_one_captured`).
        let theirs = base.is_some_and(|b| !b.matches(&st)) && !self.entry_holds(linked, &st);
        if !theirs {
            // The row noted says what it must still hold to be removed: what it holds now.
            self.unnote_captured(&cap);
            self.note_captured(CapturedRow {
                cap,
                target: path.clone(),
                size: st.size,
                mtime_ns: st.mtime_ns,
                linked,
                check_content: true,
            });
            crate::crash::point("remove.judged");
            return Ok(true);
        }
        let kept = self.keep_as_conflict(&cap, path).map_err(fail)?;
        self.unnote_captured(&cap);
        crate::crash::point("remove.judged");
        self.record_conflict(
            ctx,
            ConflictItem {
                path: path.to_string(),
                kept_as: kept.to_string(),
                detail: detail.into(),
            },
        );
        Ok(false)
    }

    /// A captured version found in a folder being removed: removed if it is one of ours noted
    /// for removal and still what it was; otherwise kept as a conflict copy beside `name`'s
    /// place, never deleted with the folder.
    pub(super) fn settle_capture_in_removed_folder(
        &self,
        ctx: &Ctx<'_>,
        cap: &RelPath,
        st: &backing::Stat,
    ) -> io::Result<()> {
        let row = self.captured_rows().into_iter().find(|r| &r.cap == cap);
        match row {
            Some(r) if r.size == st.size && r.mtime_ns == st.mtime_ns => {
                match self.backing.remove_file(cap) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                self.unnote_captured(cap);
                Ok(())
            }
            other => {
                let target = other.map(|r| r.target).unwrap_or_else(|| cap.clone());
                let kept = self.keep_as_conflict(cap, &target)?;
                self.unnote_captured(cap);
                self.record_conflict(
                    ctx,
                    ConflictItem {
                        path: target.to_string(),
                        kept_as: kept.to_string(),
                        detail: "changed on the share while a flush replaced it; that version is kept beside".into(),
                    },
                );
                Ok(())
            }
        }
    }

    /// A folder renamed on the share from `from` to `to`: the captured versions noted in it
    /// moved with it.
    pub(super) fn rebase_captured(&self, from: &RelPath, to: &RelPath) {
        let mut list = self.captured_rows();
        let mut moved = false;
        for r in &mut list {
            if let Some(cap) = r.cap.rebase(from, to) {
                r.cap = cap;
                r.target = r
                    .target
                    .rebase(from, to)
                    .unwrap_or_else(|| r.target.clone());
                moved = true;
            }
        }
        if moved {
            self.save_captured(&list);
        }
    }

    /// Takes a captured version off the list of those to remove.
    fn unnote_captured(&self, cap: &RelPath) {
        let mut list = self.captured_rows();
        list.retain(|r| &r.cap != cap);
        self.save_captured(&list);
    }

    /// Puts a captured file back at its name if the name is still free: a name a failed
    /// commit emptied is not left empty. If it cannot, the file stays under its private name,
    /// which the journal records (the staged row, or the captured list), for the next flush.
    pub(super) fn put_back(&self, cap: &RelPath, target: &RelPath) {
        if let Err(e) = self.backing.rename_noreplace(cap, target) {
            debug!(cap = %cap, error = %e, "captured version not put back; the next flush settles it");
        }
    }

    /// Notes someone else's captured version at `cap` that could not be made the conflict copy
    /// yet: the next flush finds it does not hold what the row says (nothing could) and keeps
    /// it beside `target` (`drop_captured`).
    pub(super) fn keep_later(&self, cap: &RelPath, target: &RelPath) {
        self.note_captured(CapturedRow {
            cap: cap.clone(),
            target: target.clone(),
            size: u64::MAX,
            mtime_ns: i64::MIN,
            linked: None,
            check_content: false,
        });
    }

    /// Notes a captured version of ours for removal by the next flush, at once (a commit that
    /// captures again after losing the name to another writer).
    pub(super) fn note_captured_now(&self, row: CapturedRow) {
        self.note_captured(row);
    }

    fn note_captured(&self, row: CapturedRow) {
        let mut list = self.captured_rows();
        list.push(row);
        self.save_captured(&list);
    }

    /// The captured versions noted for removal.
    pub(super) fn captured_rows(&self) -> Vec<CapturedRow> {
        let text = self.journal.lock().get_meta(CAPTURED).ok().flatten();
        text.and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save_captured(&self, list: &[CapturedRow]) {
        let text = serde_json::to_string(list).expect("paths serialize");
        if let Err(e) = self.journal.lock().set_meta(CAPTURED, &text) {
            warn!(error = %e, "could not record a captured version to remove later");
        }
    }

    /// Captured versions of ours from earlier flushes: removed if they still hold what they
    /// held (nobody wrote into them since), kept as a conflict copy if someone did. Those the
    /// share cannot be asked about now stay noted.
    ///
    /// Each is a stat and a removal, two round trips; one after another they cost two per
    /// changed file of the last flush before this flush wrote anything (a step that changed 5
    /// files, 20 ms away: 0.2 s of nothing but waiting). They are settled several at once,
    /// those of one name one after another (a name kept as a conflict copy twice must get two
    /// conflict names).
    pub(super) fn drop_captured(&self, ctx: &Ctx<'_>) {
        let list = self.captured_rows();
        if list.is_empty() {
            return;
        }
        let ops = self.state.read().ops.clone();
        let mut by_target: std::collections::BTreeMap<RelPath, Vec<CapturedRow>> =
            Default::default();
        for row in list {
            by_target.entry(row.target.clone()).or_default().push(row);
        }
        let groups: Vec<Vec<CapturedRow>> = by_target.into_values().collect();
        let left: Vec<CapturedRow> = self.pool.install(|| {
            groups
                .into_par_iter()
                .flat_map_iter(|rows| {
                    rows.into_iter()
                        .filter_map(|row| self.drop_one_captured(ctx, row, &ops))
                        .collect::<Vec<_>>()
                })
                .collect()
        });
        self.save_captured(&left);
    }

    /// Settles one captured version (`drop_captured`); returns its row if it stays noted.
    fn drop_one_captured(
        &self,
        ctx: &Ctx<'_>,
        row: CapturedRow,
        ops: &[Logged],
    ) -> Option<CapturedRow> {
        if ctx.down.load(Ordering::SeqCst) {
            return Some(row);
        }
        crate::crash::point("captured.dropping");
        let known = |row: &CapturedRow| {
            !row.check_content
                || self.replaced_content_if_coarse(
                    Base {
                        size: row.size,
                        mtime_ns: row.mtime_ns,
                    },
                    &row.cap,
                )
        };
        let done = match self.backing.stat(&row.cap) {
            Ok(None) => Ok(()),
            // Replaced by a removal or a rename here, with the size and second of the version
            // known here but not its content: someone else's, written within that second.
            Ok(Some(st))
                if st.size == row.size && st.mtime_ns == row.mtime_ns && !known(&row) =>
            {
                self.keep_as_conflict(&row.cap, &row.target).map(|kept| {
                    self.record_conflict(
                        ctx,
                        ConflictItem {
                            path: row.target.to_string(),
                            kept_as: kept.to_string(),
                            detail: "changed on the share (same size and second) before it was removed or replaced here; that version is kept beside".into(),
                        },
                    )
                })
            }
            Ok(Some(st))
                if (st.size == row.size && st.mtime_ns == row.mtime_ns)
                    || self.entry_holds(row.linked, &st) =>
            {
                match self.backing.remove_file(&row.cap) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
            // Still another name of a file on the share (a hard link, such as another
            // name of an entry flushed since): that name holds whatever was written into
            // it, so this one can go.
            Ok(Some(_)) if self.backing.has_other_names(&row.cap).unwrap_or(false) => {
                match self.backing.remove_file(&row.cap) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
            Ok(Some(_)) => self.keep_as_conflict(&row.cap, &row.target).map(|kept| {
                self.record_conflict(
                    ctx,
                    ConflictItem {
                        path: row.target.to_string(),
                        kept_as: kept.to_string(),
                        detail: "written into on the share while a flush replaced it; that version is kept beside".into(),
                    },
                )
            }),
            Err(e) => Err(e),
        };
        // Removing or renaming in its folder changed the folder's time on the share: set
        // again at the end, like a folder written into (where that folder is here, once
        // the logged renames are replayed).
        if let Some(here) = local_path_of(&row.target, ops) {
            ctx.touched(&here);
        }
        if let Err(e) = done {
            ctx.note_failure(&e);
            debug!(cap = %row.cap, error = %e, "captured version left for the next flush");
            Some(row)
        } else {
            crate::crash::point("captured.removed");
            None
        }
    }
}
