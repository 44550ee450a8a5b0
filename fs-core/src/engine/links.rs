//! Hard links: one entry under several names (see docs/ARCHITECTURE.md, "Hard links").
//!
//! Each name is a node of its own, with what belongs to a name: its place, whether the share
//! has it, the share version it derives from, what must be written there. What belongs to the
//! entry (content, attributes, dirtiness) is the same in all of them: the cache copies are hard
//! links of one file, and `Tree::share_with_links` copies the rest after every change. They
//! all show one inode number, the representative's (`Node::shown`).

use super::*;

impl Engine {
    /// Gives the entry `ino` a new name, `new_parent/new_name` (a hard link): one entry, the
    /// same content and attributes under every name. Its content is made whole in the cache
    /// first, where the names are hard links too; a flush writes each name.
    pub fn link(&self, ino: Ino, new_parent: Ino, new_name: &str) -> Result<Attr, FsError> {
        let kind = self
            .state
            .read()
            .get(ino)
            .ok_or(FsError::StaleInode(ino))?
            .kind;
        match kind {
            EntryKind::Dir => {
                let path = self.path_of(ino).unwrap_or_default();
                return Err(FsError::NotPermitted(format!(
                    "{path} is a folder, which cannot have a second name"
                )));
            }
            EntryKind::File => self.ensure_cached(ino)?,
            EntryKind::Symlink => {
                self.readlink(ino)?;
            }
            _ => {}
        }
        self.ensure_listed(new_parent)?;
        let mut tree = self.state.write();
        let path = self.lookup_free(&tree, new_parent, new_name)?;
        let from = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
        let _span = info_span!("link", from = %from, to = %path).entered();
        let src = tree.get(ino).ok_or(FsError::StaleInode(ino))?.clone();
        let cache = self.cache_path(&path);
        match src.kind {
            EntryKind::File if src.cached => {
                let existing = self.cache_path(&from);
                self.in_cache_dir(&path, |at| fs::hard_link(&existing, at))
                    .map_err(io_err(&path))?
            }
            // Evicted or refreshed away meanwhile: the next try fetches it again.
            EntryKind::File => return Err(FsError::StaleInode(ino)),
            EntryKind::Symlink => {
                if let Some(t) = src.link() {
                    let _ = self.in_cache_dir(&path, |at| backing::make_symlink(t, at));
                }
            }
            _ => {}
        }
        let adopted = Self::adopt_removed(&mut tree, &path);
        let now = now_ns();
        let mut node = Node {
            ino: tree.alloc_ino(),
            parent: new_parent,
            name: new_name.into(),
            kind: src.kind,
            children: None,
            cached: false,
            in_share: adopted.is_some(),
            base: adopted.and_then(|(_, b)| b),
            content_dirty: true,
            meta_dirty: false,
            size: 0,
            mtime_ns: 0,
            mode: 0,
            ctime_ns: 0,
            rare: None,
            gen: 0,
        };
        if let Some(n) = tree.get_mut(ino) {
            // A new name changes the entry (its link count), not its content.
            n.ctime_ns = now;
            n.gen += 1;
        }
        tree.join_link(ino, &mut node);
        // Its own name is new on the share whatever the entry's state.
        node.content_dirty = true;
        let new_ino = node.ino;
        tree.insert(node);
        // The other names take the new ctime.
        tree.share_with_links(ino);
        let mut put = tree.link_members(ino);
        put.extend(Self::touch_dir(&mut tree, new_parent, now));
        if let Err(e) = self.record(
            &mut tree,
            &put,
            &[],
            adopted.map(|(seq, _)| seq),
            Vec::new(),
        ) {
            tree.remove_subtree(new_ino);
            if !src.kind.is_special() {
                let _ = fs::remove_file(&cache);
            }
            return Err(e);
        }
        let n = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        self.attr_of(&tree, n)
    }

    /// Whether the share's `st` is the cached copy of `node` as it is here: the same size,
    /// and its time at the share's resolution. For a hard-linked entry this tells a share
    /// version that a flush of another of its names wrote (the share keeps hard links too)
    /// from someone else's change (refresh, and the removal of a name in `flush/replay.rs`).
    pub(crate) fn holds_what_is_here(&self, tree: &Tree, node: &Node, st: &Stat) -> bool {
        self.attr_of(tree, node).is_ok_and(|a| {
            a.size == st.size
                && crate::flush::same_time_at_share_resolution(st.mtime_ns, a.mtime_ns)
        })
    }

    /// Whether the share's `st` at one name of a hard-linked entry is the version another of
    /// its names was last synced as (that name's `base`). A flush that wrote or gave times to
    /// one name, and stopped before the others (the share dropped), changed them too where the
    /// share keeps hard links; once the entry is written here again, `holds_what_is_here` no
    /// longer tells that from someone else's change, but the other name's base still does.
    pub(crate) fn held_by_another_name(&self, ino: Ino, st: &Stat) -> bool {
        let tree = self.state.read();
        tree.link_members(ino)
            .into_iter()
            .filter(|&i| i != ino)
            .filter_map(|i| tree.get(i))
            .any(|n| n.in_share && n.base.is_some_and(|b| b.matches(st)))
    }
}
