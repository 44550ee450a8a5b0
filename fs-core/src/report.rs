//! What a flush, a refresh and a status tell the user (and, as JSON, the launcher).

use serde::{Deserialize, Serialize};

use crate::error::Reason;

/// A change that stays pending, with why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingItem {
    pub path: String,
    pub reason: Reason,
    pub message: String,
    pub advice: String,
}

impl PendingItem {
    pub fn new(path: impl ToString, reason: Reason, message: impl ToString) -> Self {
        let path = path.to_string();
        // The project folder itself shows as "/".
        let name = match path.rsplit('/').next() {
            Some(n) if !n.is_empty() => n,
            _ => "the project folder",
        };
        PendingItem {
            advice: reason.advice_for(name),
            path,
            reason,
            message: message.to_string(),
        }
    }
}

/// Both versions were kept: ours at `path`, the share's as `kept_as`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictItem {
    pub path: String,
    pub kept_as: String,
    pub detail: String,
}

/// A big file being fetched in ranges: opened, readable, not whole in the cache yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchingItem {
    pub path: String,
    pub fetched_bytes: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlushReport {
    pub label: Option<String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub files_written: usize,
    pub bytes_written: u64,
    pub dirs_created: usize,
    pub removed: usize,
    pub renamed: usize,
    pub attrs_updated: usize,
    /// Interrupted flushes finished (temporaries renamed into place) at the start.
    pub rolled_forward: usize,
    pub written: Vec<String>,
    pub pending: Vec<PendingItem>,
    pub conflicts: Vec<ConflictItem>,
    pub warnings: Vec<String>,
    /// The last logged change this flush covered: a retry covers no later ones.
    #[serde(default)]
    pub ops_upto: i64,
}

impl FlushReport {
    /// One report for a stop's two flushes (before and after the unmount): what the earlier
    /// one wrote and the conflicts it kept count too; what stays pending is the later one's.
    pub fn after(mut self, earlier: &FlushReport) -> FlushReport {
        let mut conflicts = earlier.conflicts.clone();
        conflicts.append(&mut self.conflicts);
        self.conflicts = conflicts;
        self.files_written += earlier.files_written;
        self.bytes_written += earlier.bytes_written;
        self
    }

    /// True when something stays pending for a reason that may pass by itself.
    pub fn has_transient_pending(&self) -> bool {
        self.pending.iter().any(|p| p.reason.is_transient())
    }

    /// Nothing stayed pending and nothing conflicted.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.conflicts.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} file(s), {} written in {:.2}s",
            self.files_written,
            human_bytes(self.bytes_written),
            self.duration_ms as f64 / 1000.0
        );
        let extra: Vec<String> = [
            (self.dirs_created, "dir(s) created"),
            (self.renamed, "renamed"),
            (self.removed, "removed"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !extra.is_empty() {
            s.push_str(&format!(" ({})", extra.join(", ")));
        }
        if !self.pending.is_empty() {
            s.push_str(&format!("; {} pending", self.pending.len()));
        }
        if !self.conflicts.is_empty() {
            s.push_str(&format!("; {} conflict(s)", self.conflicts.len()));
        }
        s
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RefreshReport {
    pub started_at: String,
    pub duration_ms: u64,
    pub dirs_scanned: usize,
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    /// Entries changed on the share that have local changes too: left for the flush to settle.
    pub kept_local: usize,
    pub errors: Vec<PendingItem>,
    /// What a kernel that caches names and attributes must forget (see `Invalidation`).
    #[serde(skip)]
    pub invalidate: Vec<Invalidation>,
}

/// A change a refresh made behind the back of a kernel that caches names and attributes: the
/// FUSE adapter passes these on, so that its long cache times never show stale entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// The name in this folder now means something else, or nothing.
    Entry { parent: u64, name: String },
    /// This entry's attributes or content, or this folder's listing, changed.
    Inode(u64),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub backing: String,
    pub cache_dir: String,
    pub pending_files: usize,
    pub pending_changes: usize,
    pub pending_bytes: u64,
    /// Up to 200 pending paths.
    pub pending_paths: Vec<String>,
    pub entries_known: usize,
    pub cached_files: usize,
    pub cache_bytes: u64,
    /// `--cache-max-size`: past it, the least recently opened clean copies are dropped.
    #[serde(default)]
    pub cache_limit_bytes: Option<u64>,
    /// Big files being fetched in ranges (`engine/partial.rs`).
    #[serde(default)]
    pub fetching: Vec<FetchingItem>,
    pub last_flush: Option<FlushReport>,
    pub last_refresh: Option<RefreshReport>,
    /// The last background retry of what a flush left pending.
    #[serde(default)]
    pub last_retry: Option<FlushReport>,
    pub conflicts: Vec<ConflictItem>,
    /// Entries that live in the cache only, because the share cannot hold them (up to 200).
    #[serde(default)]
    pub kept_local: Vec<KeptLocalItem>,
    /// How a flush puts a file at a name without replacing someone else's version, once a
    /// flush has done so (`noreplace.rs`); `checked` is the weak way.
    #[serde(default)]
    pub no_replace: Option<crate::noreplace::NoReplace>,
}

/// An entry the share cannot hold, kept in the cache only: a FIFO, socket or device node on a
/// share without them (SMB, sshfs). It works in the mount; it is never written back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptLocalItem {
    pub path: String,
    pub reason: String,
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Progress of a long operation, for progress bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Bytes of the item just done (a flush adds them up).
    pub bytes: u64,
    /// Bytes of all the items, where known beforehand (a first fill); 0 otherwise.
    pub total_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn advice_names_the_file() {
        let p = PendingItem::new("results/data.xlsx", Reason::Locked, "EBUSY");
        assert!(p.advice.starts_with("close data.xlsx in"), "{}", p.advice);
        let p = PendingItem::new("aux.txt", Reason::NameNotAllowed, "EINVAL");
        assert!(p.advice.starts_with("rename aux.txt"), "{}", p.advice);
    }

    #[test]
    fn summary_mentions_what_is_left() {
        let mut r = FlushReport {
            files_written: 2,
            bytes_written: 2048,
            ..Default::default()
        };
        assert!(r.is_clean());
        r.pending
            .push(PendingItem::new("a", Reason::Locked, "EBUSY"));
        assert!(!r.is_clean());
        assert!(r.summary().contains("1 pending"));
    }
}
