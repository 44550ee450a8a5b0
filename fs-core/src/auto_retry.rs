//! Writing pending changes again, in the background, once the share is back.
//!
//! Only what a flush the user asked for left pending for a passing reason (unreachable, timed
//! out, locked) is retried, and only that: changes made since are not written until the user
//! flushes. Refusals (permission, names) wait for the user. The first retry comes after
//! `first_delay`, then the delay doubles up to `max_delay`; it starts over after a flush that
//! leaves nothing passing pending. One log line per retry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::engine::Engine;

#[derive(Debug, Clone, Copy)]
pub struct AutoRetry {
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for AutoRetry {
    fn default() -> Self {
        AutoRetry {
            first_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(300),
        }
    }
}

/// Stops the background retries when dropped.
pub struct AutoRetryHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for AutoRetryHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl AutoRetry {
    /// The retries `--retry-after SECS` asks for: first after `secs`, doubling up to 5 minutes
    /// (or `secs`, if longer); none for 0.
    pub fn after_secs(secs: u64) -> Option<AutoRetry> {
        (secs > 0).then(|| AutoRetry {
            first_delay: Duration::from_secs(secs),
            max_delay: Duration::from_secs(300).max(Duration::from_secs(secs)),
        })
    }

    pub fn spawn(self, engine: Arc<Engine>) -> AutoRetryHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sipfs-retry".into())
            .spawn(move || self.run(&engine, &s))
            .expect("spawning the retry thread");
        AutoRetryHandle {
            stop,
            thread: Some(thread),
        }
    }

    fn run(self, engine: &Engine, stop: &AtomicBool) {
        let mut delay = self.first_delay;
        let mut due = Instant::now() + delay;
        // Which flush the retries are about, and whether the last attempt left passing errors.
        let mut about: Option<String> = None;
        let mut worth = false;
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100).min(self.first_delay));
            let last = engine.last_flush();
            let started = last.as_ref().map(|r| r.started_at.clone());
            if started != about {
                // The user flushed: start over from what that flush left.
                about = started;
                worth = last.is_some_and(|r| r.has_transient_pending());
                delay = self.first_delay;
                due = Instant::now() + delay;
            }
            if !worth || Instant::now() < due {
                continue;
            }
            let Some(r) = engine.retry_pending() else {
                worth = false;
                continue;
            };
            worth = r.has_transient_pending();
            if worth {
                delay = (delay * 2).min(self.max_delay);
                warn!(
                    written = r.files_written,
                    pending = r.pending.len(),
                    next_in_s = delay.as_secs(),
                    "retry: the share is still not taking every change"
                );
            } else {
                delay = self.first_delay;
                info!(
                    written = r.files_written,
                    pending = r.pending.len(),
                    "retry: pending changes written"
                );
            }
            due = Instant::now() + delay;
        }
    }
}
