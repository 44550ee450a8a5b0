//! The thread that syncs the journal's files beside a program's fsync of its own file.
//!
//! A program's fsync that must also make the journal durable (the first fsync of a file
//! created since the last sync: SQLite's `-journal`, once per transaction) runs the two
//! syncs at once (see [`LogSync`]). A thread spawned for each such fsync cost a `clone3`
//! and a thread start per transaction; this one is started once and waits for the next.
//! When it is busy with another program's fsync, a thread is spawned as before, so
//! concurrent fsyncs never queue behind each other.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Sender, SyncSender};
use std::sync::{Mutex, OnceLock};

use super::LogSync;

type Job = (LogSync, SyncSender<io::Result<()>>);

#[derive(Default)]
pub struct LogSyncer {
    /// The persistent thread's queue, once started (on the first sync).
    jobs: OnceLock<Mutex<Sender<Job>>>,
    /// Taken by the fsync whose log sync the thread runs now.
    busy: AtomicBool,
}

impl LogSyncer {
    /// Runs `sync_file` here and `log` on the sync thread at the same time; returns both
    /// results once both are done.
    pub fn run_beside<R>(
        &self,
        log: &LogSync,
        sync_file: impl FnOnce() -> R,
    ) -> (R, io::Result<()>) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return spawned(log, sync_file);
        }
        let (done_tx, done_rx) = sync_channel(1);
        let sent = self
            .jobs()
            .lock()
            .map_err(|_| ())
            .and_then(|q| q.send((log.clone(), done_tx)).map_err(|_| ()));
        if sent.is_err() {
            self.busy.store(false, Ordering::Release);
            return spawned(log, sync_file);
        }
        let file = sync_file();
        let log_result = done_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("journal sync thread ended")));
        self.busy.store(false, Ordering::Release);
        (file, log_result)
    }

    fn jobs(&self) -> &Mutex<Sender<Job>> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            // The thread ends when the engine (and with it the sender) is dropped.
            let started = std::thread::Builder::new()
                .name("sipfs-log-sync".into())
                .spawn(move || {
                    for (log, done) in rx {
                        let _span = tracing::debug_span!("journal_sync").entered();
                        let _ = done.send(log.run());
                    }
                });
            if let Err(e) = started {
                // Without the thread, every sync falls back to a spawned one (the send fails).
                tracing::warn!("journal sync thread not started: {e}");
            }
            Mutex::new(tx)
        })
    }
}

/// The fallback: a thread for this one sync.
fn spawned<R>(log: &LogSync, sync_file: impl FnOnce() -> R) -> (R, io::Result<()>) {
    std::thread::scope(|s| {
        let other = s.spawn(|| log.run());
        let file = sync_file();
        // A panic in a sync is not expected; treat it as the log's failure.
        let log_result = other
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("journal sync panicked")));
        (file, log_result)
    })
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::{Arc, Barrier};

    use super::*;

    /// A sync of `records` alone. `/dev/null` cannot be synced (EINVAL): a failure to report.
    fn log_of(records: File) -> LogSync {
        LogSync {
            log: None,
            records: Some(Arc::new(records)),
            upto: 0,
            upto_records: 0,
        }
    }

    #[test]
    fn the_log_is_synced_beside_the_file_and_its_failure_reported() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = LogSyncer::default();
        let good = log_of(File::create(dir.path().join("records")).unwrap());
        let bad = log_of(File::open("/dev/null").unwrap());
        for _ in 0..3 {
            let (file, log) = syncer.run_beside(&good, || 7);
            assert_eq!(file, 7);
            log.unwrap();
            // The same thread, still there, reports what a failed sync said.
            let (_, log) = syncer.run_beside(&bad, || ());
            assert_eq!(log.unwrap_err().raw_os_error(), Some(libc::EINVAL));
        }
    }

    /// Two programs' fsyncs at once (one on the thread, one beside it on a spawned one): each
    /// gets its own log's result.
    #[test]
    fn two_syncs_at_once_each_get_their_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = LogSyncer::default();
        let bad = log_of(File::open("/dev/null").unwrap());
        let both_in = Barrier::new(2);
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|i| {
                    let (syncer, both_in) = (&syncer, &both_in);
                    let log = if i == 0 {
                        log_of(File::create(dir.path().join("records")).unwrap())
                    } else {
                        bad.clone()
                    };
                    s.spawn(move || syncer.run_beside(&log, || both_in.wait()).1.is_ok())
                })
                .collect();
            let ok: Vec<bool> = runs.into_iter().map(|r| r.join().unwrap()).collect();
            assert_eq!(ok, [true, false]);
        });
    }
}
