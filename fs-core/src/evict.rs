//! A cache that fits the disk (`--cache-max-size`): once the cache holds more than its limit,
//! the least recently opened clean files are dropped from it, and fetched again at their next
//! open.
//!
//! Only a copy the share also holds may go: a file that is clean (nothing of ours to write),
//! on the share at the same path (no pending rename or delete involves it), not open (Windows
//! cannot delete an open file, and with FUSE passthrough the kernel reads the open copy), and
//! not in mirror mode (the mirror folder is the user's working copy, whole by design). Dirty
//! files, new files and files kept only here are never touched, so the cache can stay above
//! its limit when that is what it holds.
//!
//! Ranges fetched into part files (big files read before they are whole) count as well, and a
//! range fetch makes room like a whole fetch.
//!
//! The cache's size is counted exactly (a walk of the tree, as `status` does) only when an
//! estimate says it may be over: the estimate is the last exact count plus what was fetched
//! since. Writes to dirty files are not in the estimate; they cannot be evicted anyway, and
//! the next count sees them.
//!
//! A pass that cannot get under the limit (what is left may not go: changed files, open ones)
//! would otherwise be followed by another walk of the whole tree at every fetch. The next pass
//! then waits until a sixteenth of the limit (64 KiB to 64 MiB) more was fetched: the cache
//! may pass what it could not get under by that much, and the walks are one per that many
//! bytes instead of one per file.

use std::fs;
use std::sync::atomic::Ordering;

use serde::Serialize;
use tracing::{debug, info, info_span};

use crate::backing::{EntryKind, Stat};
use crate::engine::Engine;
use crate::error::FsError;
use crate::journal;
use crate::pending::share_path_of;
use crate::tree::{Ino, Node, Tree};

/// What an eviction pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Eviction {
    pub files: usize,
    pub bytes: u64,
    /// The cache's size afterwards.
    pub cache_bytes: u64,
}

impl Engine {
    /// Bytes held by cached files: clean ones as their node records, changed ones as their
    /// cache copy is now.
    pub(crate) fn cache_usage(&self, tree: &Tree) -> u64 {
        tree.nodes()
            .filter(|n| n.cached && n.kind == EntryKind::File)
            .map(|n| match (n.content_dirty, tree.path_of(n.ino)) {
                (true, Some(p)) => fs::metadata(self.cache_path(&p)).map_or(n.size, |m| m.len()),
                _ => n.size,
            })
            .sum()
    }

    /// Bytes fetched so far into part files (`engine/partial.rs`): big files read in ranges
    /// hold disk before they are whole, so they count towards the limit. They are not evicted
    /// themselves (they are open, or about to be installed); the clean copies around them are.
    /// Taken before the tree's lock, so that the two are never held together.
    pub(crate) fn part_usage(&self) -> u64 {
        self.partial_files()
            .iter()
            .map(|(_, fetched, _)| fetched)
            .sum()
    }

    /// Called after `ino` was fetched (`bytes`): evicts if the cache may have passed its limit.
    /// The file just fetched stays, even alone above the limit: it is about to be opened.
    pub(crate) fn after_fetch(&self, ino: Ino, bytes: u64) {
        let Some(limit) = self.opts.cache_max_bytes else {
            return;
        };
        let estimate = self.cache_estimate.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if estimate > limit && estimate > self.evict_again_above.load(Ordering::SeqCst) {
            if let Err(e) = self.evict_keeping(limit, Some(ino)) {
                tracing::warn!(error = %e, "could not make room in the cache");
            }
        }
    }

    /// Drops the least recently opened clean copies until the cache holds at most `limit`
    /// bytes, or nothing more may go. Only for an engine with a cache limit: without one,
    /// open handles are not counted, so nothing can be known safe to drop, and nothing is.
    pub fn evict_to(&self, limit: u64) -> Result<Eviction, FsError> {
        self.evict_keeping(limit, None)
    }

    fn evict_keeping(&self, limit: u64, keep: Option<Ino>) -> Result<Eviction, FsError> {
        let _span = info_span!("evict", limit).entered();
        if self.local_changes.get().is_some() || !self.counts_opens() {
            return Ok(Eviction::default());
        }
        self.evict_passes.fetch_add(1, Ordering::SeqCst);
        let parts = self.part_usage();
        let (mut total, candidates) = {
            let tree = self.state.read();
            let total = self.cache_usage(&tree) + parts;
            let mut c: Vec<(u64, Ino)> = tree
                .nodes()
                .filter(|n| Some(n.ino) != keep && self.may_evict(&tree, n))
                .map(|n| (self.last_open(n.ino), n.ino))
                .collect();
            // Least recently opened first; files not opened since sipfs started, first of all.
            c.sort_unstable();
            (total, c)
        };
        let mut done = Eviction::default();
        for (_, ino) in candidates {
            if total <= limit {
                break;
            }
            if let Some(freed) = self.evict_one(ino)? {
                total = total.saturating_sub(freed);
                done.files += 1;
                done.bytes += freed;
            }
        }
        done.cache_bytes = total;
        self.cache_estimate.store(total, Ordering::SeqCst);
        let again = match total > limit {
            true => total.saturating_add((limit / 16).clamp(64 << 10, 64 << 20)),
            false => 0,
        };
        self.evict_again_above.store(again, Ordering::SeqCst);
        if done.files > 0 {
            info!(
                files = done.files,
                bytes = done.bytes,
                cache_bytes = total,
                "made room in the cache"
            );
        }
        Ok(done)
    }

    /// Eviction passes made so far (each a walk of the whole tree), for tests.
    pub fn eviction_passes(&self) -> u64 {
        self.evict_passes.load(Ordering::SeqCst)
    }

    fn last_open(&self, ino: Ino) -> u64 {
        self.live
            .get(&ino)
            .map_or(0, |l| l.last_open.load(Ordering::SeqCst))
    }

    fn is_open(&self, ino: Ino) -> bool {
        self.live
            .get(&ino)
            .is_some_and(|l| l.opens.load(Ordering::SeqCst) > 0)
    }

    fn may_evict(&self, tree: &Tree, n: &Node) -> bool {
        // A hard-linked file's names share one copy in the cache (hard links there too):
        // fetched again, a name would get a copy of its own.
        if n.kind != EntryKind::File
            || !n.cached
            || n.is_dirty()
            || !n.in_share
            || n.shown().is_some()
        {
            return false;
        }
        if n.base.is_none() || self.is_open(n.ino) {
            return false;
        }
        let Some(path) = tree.path_of(n.ino) else {
            return false;
        };
        // Where the share holds it must be where it is here: no pending change moved it.
        share_path_of(&path, &tree.ops).as_ref() == Some(&path) && !self.is_ignored(&path, false)
    }

    /// Drops one copy if it still may go; returns the bytes freed.
    fn evict_one(&self, ino: Ino) -> Result<Option<u64>, FsError> {
        let mut tree = self.state.write();
        let Some(node) = tree.get(ino) else {
            return Ok(None);
        };
        if !self.may_evict(&tree, node) {
            return Ok(None);
        }
        let path = tree.path_of(ino).expect("checked");
        let cache = self.cache_path(&path);
        // The node holds the attributes from now on: take them from the copy, which may have
        // been given a time or mode since its fetch.
        let md = match fs::symlink_metadata(&cache) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::cache(&path, e)),
        };
        fs::remove_file(&cache).map_err(|e| FsError::cache(&path, e))?;
        let st = Stat::from_metadata(&md);
        let n = tree.get_mut(ino).expect("checked");
        n.cached = false;
        n.size = st.size;
        n.mtime_ns = st.mtime_ns;
        n.mode = st.mode;
        n.set_atime_ns(Some(crate::backing::atime_ns(&md)));
        n.gen += 1;
        let n = n.clone();
        debug!(path = %path, bytes = n.size, "evicted");
        self.persist(|tx| journal::put_node(tx, &n))?;
        Ok(Some(n.size))
    }
}
