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
