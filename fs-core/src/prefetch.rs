//! Fetching a whole project into the cache, for offline work and for the mirror folder.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use tracing::info_span;

use crate::backing::EntryKind;
use crate::engine::Engine;
use crate::error::FsError;
use crate::report::Progress;
use crate::tree::{Ino, ROOT_INO};

impl Engine {
    /// Lists every directory and fetches every file not cached yet. Returns the number of
    /// files fetched; the first error stops it.
    pub fn prefetch(&self, progress: &(dyn Fn(Progress) + Sync)) -> Result<u64, FsError> {
        let _span = info_span!("prefetch").entered();
        let mut files: Vec<Ino> = Vec::new();
        let mut dirs = vec![ROOT_INO];
        while let Some(d) = dirs.pop() {
            self.ensure_listed(d)?;
            let tree = self.state.read();
            if let Some(c) = tree.get(d).and_then(|n| n.children.as_ref()) {
                for &i in c.values() {
                    match tree.get(i).map(|n| (n.kind, n.cached)) {
                        Some((EntryKind::Dir, _)) => dirs.push(i),
                        Some((EntryKind::File, false)) => files.push(i),
                        _ => {}
                    }
                }
            }
        }
        let total = files.len() as u64;
        let done = AtomicU64::new(0);
        self.pool.install(|| {
            files.par_iter().try_for_each(|&i| {
                self.ensure_cached(i)?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(Progress {
                    done: d,
                    total,
                    bytes: 0,
                });
                Ok::<_, FsError>(())
            })
        })?;
        Ok(total)
    }
}
