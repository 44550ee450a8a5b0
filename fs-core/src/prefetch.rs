//! Fetching a whole project into the cache, for offline work and for the mirror folder's
//! first fill.
//!
//! Over a slow link a fill is round trips, not bandwidth: a small file costs a lookup, an
//! open, a read and two stats of its handle, each a round trip on sshfs, and the client
//! multiplexes requests on its one connection. So the fill keeps many in flight:
//! - folders are listed a level at a time, all the level's folders at once (each listing
//!   overlaps its own stats, `fanout.rs`), where one after another cost a few round trips per
//!   folder before the first file was fetched;
//! - files are then fetched [`FILL_IN_FLIGHT`] at a time (or `parallelism`, if more), the
//!   biggest first, so a few large files do not trail alone at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tracing::{info, info_span};

use crate::backing::EntryKind;
use crate::engine::Engine;
use crate::error::FsError;
use crate::report::Progress;
use crate::tree::{Ino, ROOT_INO};

/// Transfers in flight during a fill. Measured over sshfs at 20 ms (docs/PERFORMANCE.md,
/// "The first fill"): 2 929 files took 24 s with 8, about 8 ms a file.
pub const FILL_IN_FLIGHT: usize = 16;

impl Engine {
    /// Lists every directory and fetches every file not cached yet. Returns the number of
    /// files fetched; the first error stops it. `progress` is called after each file, with
    /// the total count and bytes known from the listing.
    pub fn prefetch(&self, progress: &(dyn Fn(Progress) + Sync)) -> Result<u64, FsError> {
        let _span = info_span!("prefetch").entered();
        let in_flight = FILL_IN_FLIGHT.max(self.opts.parallelism);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(in_flight)
            .thread_name(|i| format!("sipfs-fill-{i}"))
            .build()
            .expect("thread pool");
        let files = pool.install(|| self.list_all())?;
        let mut files: Vec<(Ino, u64)> = {
            let tree = self.state.read();
            files
                .into_iter()
                .filter_map(|i| tree.get(i).map(|n| (i, n.size)))
                .collect()
        };
        files.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let total = files.len() as u64;
        let total_bytes = files.iter().map(|f| f.1).sum();
        info!(files = total, bytes = total_bytes, in_flight, "fetching");
        progress(Progress {
            done: 0,
            total,
            bytes: 0,
            total_bytes,
        });
        let done = AtomicU64::new(0);
        pool.install(|| {
            files.par_iter().with_max_len(1).try_for_each(|&(i, size)| {
                self.ensure_cached(i)?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(Progress {
                    done: d,
                    total,
                    bytes: size,
                    total_bytes,
                });
                Ok::<_, FsError>(())
            })
        })?;
        Ok(total)
    }

    /// Lists every folder not listed yet, a level at a time and the level's folders at once
    /// (on the calling pool); returns the files not cached.
    fn list_all(&self) -> Result<Vec<Ino>, FsError> {
        let mut files: Vec<Ino> = Vec::new();
        let mut level = vec![ROOT_INO];
        while !level.is_empty() {
            level
                .par_iter()
                .with_max_len(1)
                .try_for_each(|&d| self.ensure_listed(d))?;
            let tree = self.state.read();
            let mut next = Vec::new();
            for d in level {
                let Some(c) = tree.get(d).and_then(|n| n.children.as_ref()) else {
                    continue;
                };
                for &i in c.values() {
                    match tree.get(i).map(|n| (n.kind, n.cached)) {
                        Some((EntryKind::Dir, _)) => next.push(i),
                        Some((EntryKind::File, false)) => files.push(i),
                        _ => {}
                    }
                }
            }
            level = next;
        }
        Ok(files)
    }
}
