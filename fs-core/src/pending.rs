//! Namespace changes waiting to be replayed on the share.
//!
//! Content changes are tracked per file (a dirty flag); namespace changes that involve entries
//! the share already has (renames, removals) or that create directories are kept as an ordered
//! log. Replaying the log in order on the share turns its namespace into ours; files are then
//! written at the place [`share_path_of`] gives, which is valid at every point of the replay.

use serde::{Deserialize, Serialize};

use crate::backing::{EntryKind, Stat};
use crate::relpath::RelPath;

/// The version of a file on the share that a cached copy derives from. A share whose stat no
/// longer matches it has been changed by someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub size: u64,
    pub mtime_ns: i64,
}

impl Base {
    pub fn of(st: &Stat) -> Base {
        Base {
            size: st.size,
            mtime_ns: st.mtime_ns,
        }
    }

    pub fn matches(&self, st: &Stat) -> bool {
        st.kind != EntryKind::Dir && st.size == self.size && st.mtime_ns == self.mtime_ns
    }
}

/// One namespace change, in terms of the paths it had when it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NsOp {
    Mkdir {
        path: RelPath,
    },
    Remove {
        path: RelPath,
        kind: EntryKind,
        /// For files: the version we knew. If the share's differs, it is kept, not deleted.
        base: Option<Base>,
        /// For one name of a hard-linked entry whose other names live on: the entry (its
        /// representative, `Node::shown`). Where the share keeps the names as hard links too,
        /// a flush of another name changes this one there as well; a share version that
        /// holds the entry as it is here is then ours, not someone else's change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        linked: Option<u64>,
    },
    Rename {
        from: RelPath,
        to: RelPath,
        /// For a file replaced at `to`: the version we knew, checked the same way.
        dest_base: Option<Base>,
    },
}

impl NsOp {
    pub fn paths(&self) -> impl Iterator<Item = &RelPath> {
        let (a, b) = match self {
            NsOp::Mkdir { path } | NsOp::Remove { path, .. } => (path, None),
            NsOp::Rename { from, to, .. } => (from, Some(to)),
        };
        std::iter::once(a).chain(b)
    }

    /// The path a report shows for this change.
    pub fn shown_path(&self) -> &RelPath {
        match self {
            NsOp::Mkdir { path } | NsOp::Remove { path, .. } => path,
            NsOp::Rename { to, .. } => to,
        }
    }
}

/// A logged change with its sequence number in the journal.
pub type Logged = (i64, NsOp);

/// Where the entry now at local `path` is on the share before `ops` are replayed, or `None`
/// when it was created by one of them (and so does not exist on the share yet).
pub fn share_path_of(path: &RelPath, ops: &[Logged]) -> Option<RelPath> {
    let mut p = path.clone();
    for (_, op) in ops.iter().rev() {
        match op {
            NsOp::Rename { from, to, .. } => {
                if let Some(q) = p.rebase(to, from) {
                    p = q;
                }
            }
            NsOp::Mkdir { path: made } => {
                if p.is_within(made) {
                    return None;
                }
            }
            NsOp::Remove { .. } => {}
        }
    }
    Some(p)
}

/// Where the entry at share `path` is locally, given the logged changes `later` that are still
/// to be replayed after the one that put it there; `None` when one of them removes it. The
/// inverse of [`share_path_of`].
pub fn local_path_of(path: &RelPath, later: &[Logged]) -> Option<RelPath> {
    let mut p = path.clone();
    for (_, op) in later {
        match op {
            NsOp::Rename { from, to, .. } => {
                if let Some(q) = p.rebase(from, to) {
                    p = q;
                }
            }
            NsOp::Remove { path: gone, .. } => {
                if p.is_within(gone) {
                    return None;
                }
            }
            NsOp::Mkdir { .. } => {}
        }
    }
    Some(p)
}

/// True when some logged change involves `path` or something below or above it.
pub fn touches(ops: &[Logged], path: &RelPath) -> bool {
    ops.iter()
        .any(|(_, op)| op.paths().any(|p| p.overlaps(path)))
}

/// True when `path` lies within a path some logged change involves (its share location may differ).
pub fn is_within_changed(ops: &[Logged], path: &RelPath) -> bool {
    ops.iter()
        .any(|(_, op)| op.paths().any(|p| path.is_within(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn maps_through_renames_and_creations() {
        let ops = vec![
            (
                1,
                NsOp::Rename {
                    from: p("a"),
                    to: p("b"),
                    dest_base: None,
                },
            ),
            (2, NsOp::Mkdir { path: p("a") }),
            (
                3,
                NsOp::Rename {
                    from: p("b/x"),
                    to: p("b/y"),
                    dest_base: None,
                },
            ),
        ];
        assert_eq!(share_path_of(&p("b/y"), &ops), Some(p("a/x")));
        assert_eq!(share_path_of(&p("b/z"), &ops), Some(p("a/z")));
        assert_eq!(share_path_of(&p("a/new"), &ops), None);
        assert_eq!(share_path_of(&p("c"), &ops), Some(p("c")));
        // And back: a/x on the share, with all three still to replay, is b/y here.
        assert_eq!(local_path_of(&p("a/x"), &ops), Some(p("b/y")));
        assert_eq!(local_path_of(&p("c"), &ops), Some(p("c")));
        let removed = vec![(
            4,
            NsOp::Remove {
                path: p("b"),
                kind: crate::backing::EntryKind::Dir,
                base: None,
                linked: None,
            },
        )];
        assert_eq!(local_path_of(&p("b/q"), &removed), None);
        assert!(touches(&ops, &p("b")));
        assert!(touches(&ops, &RelPath::root()));
        assert!(!touches(&ops, &p("c")));
        assert!(is_within_changed(&ops, &p("b/q")));
        assert!(!is_within_changed(&ops, &RelPath::root()));
    }
}
