//! Crash points: a test hook that kills the process at a named step of a flush, as `kill -9`
//! would there, so that tests can crash between each two steps of the commit protocol
//! (`flush/capture.rs`) and check that a restart loses nothing (`tests/tests/crash_points.rs`).
//!
//! `SIPFS_CRASH_AT=POINT` kills at the first time `POINT` is reached; `POINT@N` at the N-th.
//! Unset (always, outside tests), a point costs one read of a setting cached at the first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable tests set.
pub const ENV: &str = "SIPFS_CRASH_AT";

/// Every point there is, in the order a flush reaches them, for tests to go through.
pub const POINTS: &[&str] = &[
    "commit.staged",
    "commit.captured",
    "commit.judged",
    "commit.published",
    "commit.recorded",
    "remove.noted",
    "remove.captured",
    "remove.judged",
    "captured.dropping",
    "captured.removed",
];

fn setting() -> Option<&'static (String, u64)> {
    static AT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    AT.get_or_init(|| {
        let v = std::env::var(ENV).ok()?;
        let (name, nth) = match v.split_once('@') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some((name, nth.max(1)))
    })
    .as_ref()
}

/// Kills the process here if the test asked for a crash at `name` (one of [`POINTS`]).
pub fn point(name: &'static str) {
    debug_assert!(POINTS.contains(&name), "crash point {name} is not listed");
    let Some((at, nth)) = setting() else { return };
    if at != name {
        return;
    }
    static SEEN: AtomicU64 = AtomicU64::new(0);
    if SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        tracing::error!(point = name, "crash point reached: killing this process");
        kill_self();
    }
}

#[cfg(unix)]
fn kill_self() -> ! {
    // SAFETY: plain kill(2) on ourselves; SIGKILL cannot be caught, like `kill -9`.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    std::process::abort()
}

#[cfg(not(unix))]
fn kill_self() -> ! {
    std::process::abort()
}
