//! What `sipfs status` shows: what is pending, what the last flush and refresh did, conflicts.

use std::fs;

use crate::backing::EntryKind;
use crate::engine::Engine;
use crate::report::{
    ConflictItem, FetchingItem, FlushReport, KeptLocalItem, RefreshReport, Status,
};

const MAX_LISTED: usize = 200;

impl Engine {
    pub fn status(&self) -> Status {
        let mut s = Status {
            backing: self.backing.describe(),
            cache_dir: self.opts.cache_dir.display().to_string(),
            no_replace: self.backing.no_replace(),
            ..Default::default()
        };
        let parts = self.part_usage();
        {
            let tree = self.state.read();
            s.entries_known = tree.len();
            s.pending_changes = tree.ops.len();
            for ino in tree.dirty_inos() {
                let (Some(n), Some(p)) = (tree.get(ino), tree.path_of(ino)) else {
                    continue;
                };
                if self.is_ignored(&p, n.is_dir()) {
                    continue;
                }
                if n.content_dirty {
                    s.pending_files += 1;
                    s.pending_bytes +=
                        fs::metadata(self.cache_path(&p)).map_or(n.size, |m| m.len());
                }
                if s.pending_paths.len() < MAX_LISTED && (n.content_dirty || !n.is_dir()) {
                    s.pending_paths.push(p.to_string());
                }
            }
            for (_, op) in &tree.ops {
                if s.pending_paths.len() < MAX_LISTED {
                    s.pending_paths.push(op.shown_path().to_string());
                }
            }
            // No stat per cached file: status is read while flushes run (progress bars poll
            // it). A clean cached file has the size its node records; only files changed since
            // their last flush are asked, and they were stat'ed above already.
            s.cached_files = tree
                .nodes()
                .filter(|n| n.cached && n.kind == EntryKind::File)
                .count();
            // A special file a flush settled without putting it on the share (the share
            // refused it); one still dirty is pending instead.
            s.kept_local = tree
                .nodes()
                .filter(|n| n.kind.is_special() && !n.in_share && !n.is_dirty())
                .filter_map(|n| {
                    Some(KeptLocalItem {
                        path: tree.path_of(n.ino)?.to_string(),
                        reason: format!("a {}, which the share cannot hold", n.kind.noun()),
                    })
                })
                .take(MAX_LISTED)
                .collect();
            s.kept_local.sort_by(|a, b| a.path.cmp(&b.path));
            s.cache_bytes = self.cache_usage(&tree) + parts;
            s.cache_limit_bytes = self.opts.cache_max_bytes;
        }
        s.fetching = self
            .partial_files()
            .into_iter()
            .filter_map(|(ino, fetched_bytes, size)| {
                Some(FetchingItem {
                    path: self.path_of(ino)?.to_string(),
                    fetched_bytes,
                    size,
                })
            })
            .collect();
        let j = self.journal.lock();
        s.last_flush = j
            .get_meta("last_flush")
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<FlushReport>(&t).ok());
        s.last_refresh = j
            .get_meta("last_refresh")
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<RefreshReport>(&t).ok());
        s.last_retry = j
            .get_meta("last_retry")
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str::<FlushReport>(&t).ok());
        let conflicts: Vec<ConflictItem> = j
            .get_meta("conflicts")
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        drop(j);
        // A conflict is open while the kept copy is still there.
        let tree = self.state.read();
        s.conflicts = conflicts
            .into_iter()
            .filter(|c| {
                crate::RelPath::new(&c.kept_as)
                    .map(|p| !matches!(tree.resolve(&p), Ok(None)))
                    .unwrap_or(false)
            })
            .collect();
        s
    }

    pub fn status_json(&self) -> String {
        serde_json::to_string_pretty(&self.status()).expect("status serializes")
    }
}
