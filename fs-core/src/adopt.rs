//! Recording changes that someone already made in the cache tree (mirror mode, where people
//! work in the cache tree directly). Each call records exactly what the matching namespace or
//! file operation records — the same journal entries, pending log and dirty flags, so a flush
//! writes it the same way — but leaves the cache tree alone, since it shows the change already.

use crate::backing::EntryKind;
use crate::engine::{CacheSide, Engine, NewEntry, SetAttr};
use crate::error::FsError;
use crate::journal;
use crate::mirror::watch::Scope;
use crate::pending::Base;
use crate::relpath::RelPath;
use crate::tree::{Ino, Node, ROOT_INO};

/// One entry of the engine's namespace, as a scan of the mirror folder compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownEntry {
    pub ino: Ino,
    pub path: RelPath,
    pub kind: EntryKind,
    /// Files: the content is in the cache tree. Directories: listed. Links: target known.
    pub present: bool,
    pub mtime_ns: i64,
    pub link: Option<String>,
    /// Files: the share version the cached copy derives from.
    pub base: Option<Base>,
    pub content_dirty: bool,
    pub meta_dirty: bool,
}

fn known_entry(n: &Node, path: RelPath) -> Option<KnownEntry> {
    Some(KnownEntry {
        ino: n.ino,
        path,
        kind: n.kind,
        present: match n.kind {
            EntryKind::Dir => n.children.is_some(),
            EntryKind::File => n.cached,
            EntryKind::Symlink => n.link().is_some(),
            _ => true,
        },
        mtime_ns: n.mtime_ns,
        link: n.link().map(str::to_owned),
        base: n.base,
        content_dirty: n.content_dirty,
        meta_dirty: n.meta_dirty,
    })
}

impl Engine {
    /// Every entry of the namespace with its path, the root first, parents before children.
    pub fn known_entries(&self) -> Vec<KnownEntry> {
        let tree = self.state.read();
        let mut out: Vec<KnownEntry> = tree
            .nodes()
            .filter_map(|n| known_entry(n, tree.path_of(n.ino)?))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// The known entries a scan of `scope` looks at (`Scope::covers`), in the same order, found
    /// from the scope's folders down: the cost follows the scope, not the tree.
    pub fn known_entries_in(&self, scope: &Scope) -> Vec<KnownEntry> {
        let tree = self.state.read();
        let mut inos: Vec<(RelPath, Ino)> = Vec::new();
        let mut add = |path: &RelPath, below: bool, shallow: bool| {
            let Ok(Some(ino)) = tree.resolve(path) else {
                return;
            };
            inos.push((path.clone(), ino));
            if below {
                inos.extend(
                    tree.descendants(ino)
                        .into_iter()
                        .filter_map(|i| Some((tree.path_of(i)?, i))),
                );
            } else if shallow {
                if let Some(c) = tree.get(ino).and_then(|n| n.children.as_ref()) {
                    inos.extend(c.iter().map(|(name, &i)| (path.join(name.as_str()), i)));
                }
            }
        };
        for d in &scope.shallow {
            add(d, false, true);
        }
        for d in &scope.deep {
            add(d, true, false);
        }
        for e in &scope.entries {
            add(e, false, false);
        }
        inos.sort_by(|a, b| a.0.cmp(&b.0));
        inos.dedup_by(|a, b| a.1 == b.1);
        inos.into_iter()
            .filter_map(|(path, ino)| known_entry(tree.get(ino)?, path))
            .collect()
    }

    fn parent_and_name(&self, path: &RelPath) -> Result<(Ino, String), FsError> {
        let parent = path.parent().ok_or(FsError::Exists(RelPath::root()))?;
        let pino = self.resolve(&parent)?;
        Ok((pino, path.name().to_owned()))
    }

    /// A file or symbolic link that appeared at `path`.
    pub fn adopt_created(&self, path: &RelPath, link: Option<&str>) -> Result<Ino, FsError> {
        let (parent, name) = self.parent_and_name(path)?;
        let new = link.map_or(NewEntry::File, NewEntry::Symlink);
        let (attr, _) = self.create_entry(parent, &name, 0o644, new, CacheSide::AlreadyDone)?;
        Ok(attr.ino)
    }

    /// A FIFO, socket or device node that appeared at `path`.
    pub fn adopt_special(
        &self,
        path: &RelPath,
        kind: EntryKind,
        rdev: u64,
    ) -> Result<Ino, FsError> {
        let (parent, name) = self.parent_and_name(path)?;
        let new = NewEntry::Special(kind, rdev);
        let (attr, _) = self.create_entry(parent, &name, 0o644, new, CacheSide::AlreadyDone)?;
        Ok(attr.ino)
    }

    /// A directory that appeared at `path`.
    pub fn adopt_mkdir(&self, path: &RelPath, mode: u32) -> Result<Ino, FsError> {
        let (parent, name) = self.parent_and_name(path)?;
        Ok(self.mkdir(parent, &name, mode)?.ino)
    }

    /// An entry (a directory: an empty one) that disappeared from `path`.
    pub fn adopt_removed_entry(&self, path: &RelPath, dir: bool) -> Result<(), FsError> {
        let (parent, name) = self.parent_and_name(path)?;
        self.remove_entry(parent, &name, dir, CacheSide::AlreadyDone)
    }

    /// Node `ino` now lives at `to` (replacing a file there, as rename(2) does).
    pub fn adopt_renamed(&self, ino: Ino, to: &RelPath) -> Result<(), FsError> {
        let (parent, name) = {
            let tree = self.state.read();
            let n = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            (n.parent, n.name.clone())
        };
        if ino == ROOT_INO {
            return Err(FsError::InvalidArgument(
                "the project folder cannot move".into(),
            ));
        }
        let (new_parent, new_name) = self.parent_and_name(to)?;
        self.rename_locked(
            ino,
            (parent, &name),
            (new_parent, &new_name),
            false,
            CacheSide::AlreadyDone,
        )
    }

    /// The content of file `ino` in the cache tree changed (or appeared in place of a copy
    /// never fetched): it is written back by the next flush.
    pub fn adopt_content_change(&self, ino: Ino) -> Result<(), FsError> {
        let mut tree = self.state.write();
        let n = tree.get_mut(ino).ok_or(FsError::StaleInode(ino))?;
        n.cached = true;
        n.content_dirty = true;
        n.gen += 1;
        let n = n.clone();
        tree.reindex(ino);
        self.persist(|tx| journal::put_node(tx, &n))
    }

    /// A directory's modification time changed in the cache tree.
    pub fn adopt_dir_mtime(&self, ino: Ino, mtime_ns: i64) -> Result<(), FsError> {
        self.setattr(
            ino,
            SetAttr {
                owner: None,
                mtime_ns: Some(mtime_ns),
                ..Default::default()
            },
        )
        .map(|_| ())
    }

    /// A file the engine took for cached is missing from the cache tree without anyone having
    /// been seen deleting it: fetch it again rather than delete it on the share.
    pub fn forget_cached(&self, ino: Ino) -> Result<(), FsError> {
        let mut tree = self.state.write();
        let Some(n) = tree.get_mut(ino) else {
            return Ok(());
        };
        if n.content_dirty {
            return Ok(());
        }
        n.cached = false;
        n.set_link(None);
        let n = n.clone();
        self.persist(|tx| journal::put_node(tx, &n))
    }
}
