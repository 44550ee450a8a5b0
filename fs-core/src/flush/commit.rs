//! One staged temporary put at its name: captured what is there, published ours without
//! replacing, judged the captured version (`capture.rs`), tried again while other writers
//! keep taking the name.

use super::*;

/// Captures and publishes one commit tries before it leaves the file for after the burst,
/// when other writers keep taking the name between its capture and its publish.
const COMMIT_TRIES: u32 = 6;

/// A pause before capturing again, random up to 4 ms doubled at each try (at most about
/// 130 ms in all): a writer that keeps renaming new versions over the name at a steady pace
/// (a program saving every few milliseconds) then leaves a gap our capture and publish fit
/// in, where trying again at once meets it at the same moment each time.
fn commit_backoff(attempt: u32, ino: Ino) {
    let seed = xxhash_rust::xxh3::xxh3_64(
        &[ino.to_le_bytes(), crate::engine::now_ns().to_le_bytes()].concat(),
    );
    let cap_us = 4_000u64 << attempt.min(5);
    std::thread::sleep(std::time::Duration::from_micros(seed % cap_us));
}

impl Engine {
    /// Renames a staged temporary over its target. Returns the job when the name is taken by
    /// something the burst may still move away (it is tried again after the burst).
    pub(super) fn commit(
        &self,
        ctx: &Ctx<'_>,
        mut s: Staged,
        finished: &Mutex<Vec<Finished>>,
    ) -> Option<Job> {
        let _span = info_span!("commit", path = %s.job.local).entered();
        let retry = self.opts.retry;
        // One already in place (its new folder was renamed) is recorded as written whatever
        // happens now: left dirty, it would be taken next time for a file someone else made.
        if ctx.down.load(Ordering::SeqCst) && !s.in_place {
            self.abandon_temp(&s, true);
            ctx.push_pending(ctx.unreachable(&s.job.local));
            return None;
        }
        // Unless the share's way with times tells what it holds of ours, our temporary is
        // asked, before the publish: after it, the name may hold someone else's version
        // already. A rename keeps a file's size and time, so the temporary's are the
        // published version's (its base), and they teach the share's way (`times.rs`).
        let own = match (s.in_place, s.job.kind) {
            (false, EntryKind::File) if self.share_times.kept(s.mtime_ns).is_none() => {
                match self.backing.stat(&s.temp) {
                    Ok(Some(st)) if st.size == s.size => {
                        if !self.share_times.known() {
                            self.learn_share_times(|t| t.learn_from_own(s.mtime_ns, st.mtime_ns));
                        }
                        Some(st)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        // The version of ours this commit replaces, noted for removal when it is recorded.
        let mut ours_captured = None;
        let mut renamed = Ok(());
        crate::crash::point("commit.staged");
        for attempt in 0..COMMIT_TRIES {
            if attempt > 0 {
                commit_backoff(attempt - 1, s.job.ino);
                // Someone took the name between our capture and our publish (other writers
                // at work on the same file): capture again, under a new name recorded first.
                if let Some(row) = ours_captured.take() {
                    self.note_captured_now(row);
                }
                s.conflict = Some(super::capture::capture_name(&s.target));
                if let Err(e) = self.persist(|tx| journal::put_staged(tx, &s.row(true))) {
                    warn!(error = %e, "could not record a capture; the file stays pending");
                    break;
                }
            }
            // The name was taken when this file was staged: capture what is there now, put
            // ours at the name at once, then judge the captured file against the version ours
            // derives from (`capture.rs`). The name is empty from the capture to the publish,
            // and a program elsewhere that reads it then finds no file: so nothing is done in
            // between, not even the judging, which on a share that keeps whole seconds reads
            // the captured file back. Someone else's becomes the conflict copy; until then it
            // sits under the capture's name, where a sipfs fetching the name meanwhile finds
            // it (`engine/reading.rs`).
            let mut captured = None;
            if let (Some(cap), false) = (&s.conflict, s.in_place) {
                match self.capture(&s.target, cap) {
                    Ok(None) => {}
                    Ok(Some(st)) => {
                        crate::crash::point("commit.captured");
                        captured = Some((cap.clone(), st));
                    }
                    Err(e) => {
                        self.abandon_temp(&s, true);
                        ctx.push_pending(ctx.pending(&s.job.local, &e));
                        return None;
                    }
                }
            }
            renamed = match s.in_place {
                true => Ok(()),
                // Never over a file that took the name since the capture.
                false => retry.run(|| self.backing.rename_noreplace(&s.temp, &s.target)),
            };
            let taken = matches!(&renamed, Err(e) if e.kind() == io::ErrorKind::AlreadyExists);
            if let Some((cap, st)) = captured {
                if renamed.is_err() && !taken {
                    // Ours could not be put there (the share dropped): the captured version
                    // goes back to the name, or stays under its private name, which the staged
                    // row records.
                    self.put_back(&cap, &s.target);
                } else if self.captured_is_ours(s.job.ino, &cap, &st) {
                    crate::crash::point("commit.judged");
                    ours_captured = self
                        .settle_capture(ctx, &s.job, &s.target, &cap, &st, false)
                        .ok()
                        .flatten();
                } else {
                    crate::crash::point("commit.judged");
                    if let Err(e) = self.settle_capture(ctx, &s.job, &s.target, &cap, &st, true) {
                        // It stays under its private name, noted so that the next flush keeps
                        // it as the conflict copy (the staged row may name another capture
                        // next).
                        warn!(cap = %cap, error = %e, "someone else's version stays under a private name; the next flush keeps it beside");
                        ctx.note_failure(&e);
                        self.keep_later(&cap, &s.target);
                    }
                }
            }
            if !taken {
                break;
            }
        }
        if let (Err(_), Some(row)) = (&renamed, &ours_captured) {
            // A name this commit emptied gets our old version back rather than stay empty.
            self.put_back(&row.cap, &s.target);
        }
        let abandon = |keep_row: bool| self.abandon_temp(&s, keep_row);
        if let Err(e) = renamed {
            let taken = e.kind() == io::ErrorKind::AlreadyExists
                || is_kind(
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
        crate::crash::point("commit.published");
        ctx.write_owner(&*self.backing, &s.target, s.job.owner);
        ctx.write_xattrs(&*self.backing, &s.target, &s.job.xattrs);
        let known = match s.job.kind {
            EntryKind::File => self.share_times.kept(s.mtime_ns),
            _ => None,
        };
        let base = match (known, own) {
            // What the share holds is known without asking (see `times.rs`).
            (Some(mtime_ns), _) => Base {
                size: s.size,
                mtime_ns,
            },
            (None, Some(st)) => {
                if !same_time_at_share_resolution(st.mtime_ns, s.mtime_ns) {
                    ctx.warn_once_mtime();
                }
                Base::of(&st)
            }
            // Put in place with its new folder, or the temporary could not be asked.
            (None, None) => {
                let after = self.backing.stat(&s.target).ok().flatten();
                if s.job.kind == EntryKind::File {
                    if let Some(st) = after {
                        if !same_time_at_share_resolution(st.mtime_ns, s.mtime_ns) {
                            ctx.warn_once_mtime();
                        }
                        if st.size == s.size {
                            self.learn_share_times(|t| t.learn(s.mtime_ns, st.mtime_ns));
                        }
                    }
                }
                // A file of another size is someone else's, put at the name since our
                // publish: the base is then what we wrote, so that a refresh sees theirs as
                // the change it is.
                after
                    .filter(|st| s.job.kind != EntryKind::File || st.size == s.size)
                    .map(|st| Base::of(&st))
                    .unwrap_or(Base {
                        size: s.size,
                        mtime_ns: s.mtime_ns,
                    })
            }
        };
        ctx.touched(&s.job.local);
        ctx.step(s.size);
        {
            let mut r = ctx.report.lock();
            r.files_written += 1;
            r.bytes_written += s.size;
            r.written.push(s.job.local.to_string());
        }
        finished.lock().push(Finished {
            job: s.job,
            base: Some(base),
            temp: Some(s.temp),
            captured: ours_captured,
            hash: s.hash,
        });
        None
    }
}
