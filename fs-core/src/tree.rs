//! The namespace the mount shows: a tree of nodes kept in memory and written through to the
//! journal. A node is the whole state of one cached entry (see docs/ARCHITECTURE.md):
//! whether its content is cached, which share version it derives from, and what is dirty.

use std::collections::{BTreeMap, BTreeSet};

use compact_str::CompactString;
use rustc_hash::FxHashMap;

use crate::backing::{EntryKind, Stat};
use crate::pending::{Base, Logged};
use crate::relpath::RelPath;

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

/// One component of a path. Names up to 24 bytes (nearly all) are kept inline, without an
/// allocation of their own: a node's name and its parent's key for it are the two largest
/// parts of a listed entry's memory after the node itself.
pub type Name = CompactString;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub ino: Ino,
    pub parent: Ino,
    pub name: Name,
    pub kind: EntryKind,
    /// Directories: `None` until listed from the share (or created here).
    /// Boxed: most nodes are files, and a file pays one pointer for the field, not a map.
    pub children: Option<Box<BTreeMap<Name, Ino>>>,
    /// Files: the content is in the cache tree.
    pub cached: bool,
    /// The entry exists on the share at this node's path once the pending log is replayed.
    /// False for files created here and for ignored directories created here.
    pub in_share: bool,
    /// Files: the share version the local copy derives from.
    pub base: Option<Base>,
    pub content_dirty: bool,
    pub meta_dirty: bool,
    /// Attributes of entries whose truth is not a cached file (uncached files, directories,
    /// links). Cached files are stat'ed in the cache tree instead.
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    /// Last change of the entry or its attributes (not kept in the journal: after a restart
    /// it starts at the modification time).
    pub ctime_ns: i64,
    /// What few nodes have (see [`Rare`]); `None` for the rest.
    pub(crate) rare: Option<Box<Rare>>,
    /// Bumped on every change of the node; a flush clears dirty flags only if it is unchanged.
    pub gen: u64,
}

/// The attributes few nodes have, kept out of line: a listed entry's memory is mostly its node,
/// and these would add 32 bytes to each of them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Rare {
    link: Option<Box<str>>,
    atime_ns: Option<i64>,
    owner: Option<(u32, u32)>,
    rdev: u64,
    shown: Option<Ino>,
    xattrs: Option<Box<Xattrs>>,
}

/// Extended attributes set here, by name; `None`: removed here (and to be removed on the share,
/// whose own attributes sipfs never reads, so that one removed here is not left there).
pub type Xattrs = BTreeMap<Box<[u8]>, Option<Box<[u8]>>>;

impl Node {
    /// Symbolic links: the target.
    pub fn link(&self) -> Option<&str> {
        self.rare.as_ref()?.link.as_deref()
    }

    pub fn set_link(&mut self, link: Option<Box<str>>) {
        self.rare_mut(|r| r.link = link);
    }

    /// An access time a program set (`utimensat`), for entries whose truth is not a cached
    /// file; `None`: the modification time. Kept here only: a share's access times change with
    /// every read, so they are never written back.
    pub fn atime_ns(&self) -> Option<i64> {
        self.rare.as_ref()?.atime_ns
    }

    pub fn set_atime_ns(&mut self, atime_ns: Option<i64>) {
        self.rare_mut(|r| r.atime_ns = atime_ns);
    }

    /// The owner and group a privileged `chown` gave it, or another user who created it here
    /// (`None`: the adapter's default, the user who mounted). Kept in the journal, and written
    /// back where the share keeps owners.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.rare.as_ref()?.owner
    }

    pub fn set_owner(&mut self, owner: Option<(u32, u32)>) {
        self.rare_mut(|r| r.owner = owner);
    }

    /// Device nodes: the device number (0 for everything else).
    pub fn rdev(&self) -> u64 {
        self.rare.as_ref().map_or(0, |r| r.rdev)
    }

    pub fn set_rdev(&mut self, rdev: u64) {
        self.rare_mut(|r| r.rdev = rdev);
    }

    /// Extended attributes set (or removed) here; `None` for nearly all nodes.
    pub fn xattrs(&self) -> Option<&Xattrs> {
        self.rare.as_ref()?.xattrs.as_deref()
    }

    pub fn set_xattrs(&mut self, xattrs: Option<Xattrs>) {
        self.rare_mut(|r| r.xattrs = xattrs.map(Box::new));
    }

    /// Hard links: the inode number every name of the entry shows, the representative's (see
    /// [`Tree::link_members`]); `None` for an entry with one name that never had another.
    pub fn shown(&self) -> Option<Ino> {
        self.rare.as_ref()?.shown
    }

    /// Only the tree sets it (its index of link groups follows), and the journal on load.
    pub(crate) fn set_shown(&mut self, shown: Option<Ino>) {
        self.rare_mut(|r| r.shown = shown);
    }

    /// The inode number programs see for this entry.
    pub fn shown_ino(&self) -> Ino {
        self.shown().unwrap_or(self.ino)
    }

    /// Copies what belongs to the entry rather than to one of its names (a hard link's
    /// content, attributes and dirtiness) from `from`.
    fn take_shared(&mut self, from: &Node) {
        self.size = from.size;
        self.mtime_ns = from.mtime_ns;
        self.mode = from.mode;
        self.ctime_ns = from.ctime_ns;
        self.cached = from.cached;
        self.content_dirty |= from.content_dirty;
        self.meta_dirty |= from.meta_dirty;
        let shown = self.shown();
        self.rare = from.rare.clone();
        self.set_shown(shown);
    }

    fn rare_mut(&mut self, change: impl FnOnce(&mut Rare)) {
        let mut rare = self.rare.take().unwrap_or_default();
        change(&mut rare);
        if *rare != Rare::default() {
            self.rare = Some(rare);
        }
    }

    pub fn from_share(ino: Ino, parent: Ino, name: impl Into<Name>, st: &Stat) -> Node {
        let mut n = Node {
            ino,
            parent,
            name: name.into(),
            kind: st.kind,
            children: None,
            cached: false,
            in_share: true,
            base: (st.kind != EntryKind::Dir).then(|| Base::of(st)),
            content_dirty: false,
            meta_dirty: false,
            size: st.size,
            mtime_ns: st.mtime_ns,
            mode: st.mode,
            ctime_ns: st.mtime_ns,
            rare: None,
            gen: 0,
        };
        n.set_rdev(st.rdev);
        n
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    pub fn is_dirty(&self) -> bool {
        self.content_dirty || self.meta_dirty
    }
}

/// The in-memory namespace, the log of pending namespace changes and the dirty index.
#[derive(Debug, Default)]
pub struct Tree {
    /// Inode numbers are small and not chosen by anyone outside, so a fast fixed hash is safe,
    /// and it keeps iteration order the same from run to run.
    nodes: FxHashMap<Ino, Node>,
    next_ino: Ino,
    /// Nodes with a dirty flag set: a flush looks at these only, never at the whole tree.
    dirty: BTreeSet<Ino>,
    /// How many of a listed directory's children are directories (its link count is two
    /// more): kept as children come and go, so that a stat never counts them.
    subdirs: FxHashMap<Ino, u32>,
    /// Hard links: the names of each entry that has more than one (or had), by the inode
    /// number they all show (`Node::shown`). The representative, the node whose inode number
    /// that is, lives as long as any of them does (`remove_subtree` hands it the name of a
    /// survivor), so the number programs hold always names a live node.
    links: FxHashMap<Ino, Vec<Ino>>,
    /// Nodes changed by a removal beside the removed ones (a representative that took over
    /// a survivor's name), for the caller to write to the journal (`take_moved`).
    moved: Vec<Ino>,
    pub ops: Vec<Logged>,
}

impl Tree {
    pub fn from_nodes(nodes: Vec<Node>, ops: Vec<Logged>) -> Tree {
        let mut t = Tree {
            nodes: FxHashMap::with_capacity_and_hasher(nodes.len(), Default::default()),
            next_ino: ROOT_INO + 1,
            dirty: BTreeSet::new(),
            subdirs: FxHashMap::default(),
            links: FxHashMap::default(),
            moved: Vec::new(),
            ops,
        };
        for n in nodes {
            t.next_ino = t.next_ino.max(n.ino + 1);
            if let Some(s) = n.shown() {
                t.links.entry(s).or_default().push(n.ino);
            }
            if n.is_dirty() {
                t.dirty.insert(n.ino);
            }
            t.nodes.insert(n.ino, n);
        }
        // Children maps are derived from parent links rather than stored twice.
        let links: Vec<(Ino, Ino, Name, bool)> = t
            .nodes
            .values()
            .filter(|n| n.ino != ROOT_INO)
            .map(|n| (n.parent, n.ino, n.name.clone(), n.is_dir()))
            .collect();
        for (parent, ino, name, is_dir) in links {
            t.link_child(parent, name, ino, is_dir);
        }
        t
    }

    /// Enters `ino` in its parent's children (if the parent is listed).
    fn link_child(&mut self, parent: Ino, name: Name, ino: Ino, is_dir: bool) {
        if let Some(children) = self
            .nodes
            .get_mut(&parent)
            .and_then(|p| p.children.as_mut())
        {
            if let Some(old) = children.insert(name, ino) {
                // A name that meant another entry: that one is no longer counted.
                if old != ino && self.nodes.get(&old).is_some_and(Node::is_dir) {
                    self.uncount_subdir(parent);
                }
            }
            if is_dir {
                *self.subdirs.entry(parent).or_default() += 1;
            }
        }
    }

    /// Takes `name` out of its parent's children if it still means `ino`.
    fn unlink_child(&mut self, parent: Ino, name: &str, ino: Ino) {
        let is_dir = self.nodes.get(&ino).is_some_and(Node::is_dir);
        if let Some(c) = self
            .nodes
            .get_mut(&parent)
            .and_then(|p| p.children.as_mut())
        {
            if c.get(name) == Some(&ino) {
                c.remove(name);
                if is_dir {
                    self.uncount_subdir(parent);
                }
            }
        }
    }

    fn uncount_subdir(&mut self, parent: Ino) {
        if let Some(n) = self.subdirs.get_mut(&parent) {
            *n -= 1;
            if *n == 0 {
                self.subdirs.remove(&parent);
            }
        }
    }

    /// How many children of `ino` are directories.
    pub fn subdir_count(&self, ino: Ino) -> u32 {
        self.subdirs.get(&ino).copied().unwrap_or(0)
    }

    pub fn alloc_ino(&mut self) -> Ino {
        let i = self.next_ino;
        self.next_ino += 1;
        i
    }

    pub fn get(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn dirty_inos(&self) -> Vec<Ino> {
        self.dirty.iter().copied().collect()
    }

    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }

    /// Re-reads a node's flags into the dirty index; call after changing them.
    pub fn reindex(&mut self, ino: Ino) {
        match self.nodes.get(&ino) {
            Some(n) if n.is_dirty() => {
                self.dirty.insert(ino);
            }
            _ => {
                self.dirty.remove(&ino);
            }
        }
    }

    pub fn path_of(&self, ino: Ino) -> Option<RelPath> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let n = self.nodes.get(&cur)?;
            names.push(n.name.as_str());
            cur = n.parent;
        }
        let mut p = RelPath::root();
        for name in names.iter().rev() {
            p = p.join(name);
        }
        Some(p)
    }

    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.nodes
            .get(&parent)?
            .children
            .as_ref()?
            .get(name)
            .copied()
    }

    /// Resolves a path through listed directories only; `Err(ino)` names the first directory
    /// on the way that has not been listed yet.
    pub fn resolve(&self, path: &RelPath) -> Result<Option<Ino>, Ino> {
        let mut cur = ROOT_INO;
        for name in path.components() {
            let node = match self.nodes.get(&cur) {
                Some(n) => n,
                None => return Ok(None),
            };
            match &node.children {
                None if node.is_dir() => return Err(cur),
                None => return Ok(None),
                Some(c) => match c.get(name) {
                    Some(&i) => cur = i,
                    None => return Ok(None),
                },
            }
        }
        Ok(Some(cur))
    }

    /// The names of the entry `ino` is one name of (`ino` included, the representative first),
    /// or just `ino`.
    pub fn link_members(&self, ino: Ino) -> Vec<Ino> {
        let Some(s) = self.nodes.get(&ino).and_then(Node::shown) else {
            return vec![ino];
        };
        let mut m = self.links.get(&s).cloned().unwrap_or_default();
        m.sort_by_key(|&i| i != s);
        m
    }

    /// How many names the entry `ino` is one of has.
    pub fn link_count(&self, node: &Node) -> u32 {
        node.shown()
            .and_then(|s| self.links.get(&s))
            .map_or(1, |m| m.len() as u32)
    }

    /// Makes `new` (not in the tree yet) another name of the entry `ino`: it takes the entry's
    /// shared state; the caller gives it its own name and inserts it.
    pub fn join_link(&mut self, ino: Ino, new: &mut Node) {
        let s = {
            let n = self.nodes.get_mut(&ino).expect("node exists");
            if n.shown().is_none() {
                n.set_shown(Some(ino));
            }
            n.shown().expect("set")
        };
        let links = self.links.entry(s).or_default();
        if links.is_empty() {
            links.push(s);
        }
        let from = self.nodes[&ino].clone();
        new.set_shown(Some(s));
        new.take_shared(&from);
    }

    /// After a change of `ino`'s content, attributes or dirtiness, gives its other names the
    /// same (they are one entry); returns them, for the journal. Nothing for most nodes.
    pub fn share_with_links(&mut self, ino: Ino) -> Vec<Ino> {
        let Some(s) = self.nodes.get(&ino).and_then(Node::shown) else {
            return Vec::new();
        };
        let from = self.nodes[&ino].clone();
        let others: Vec<Ino> = self
            .links
            .get(&s)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| i != ino)
            .collect();
        for &i in &others {
            if let Some(n) = self.nodes.get_mut(&i) {
                n.take_shared(&from);
                n.gen += 1;
            }
            self.reindex(i);
        }
        others
    }

    /// Nodes a removal changed besides those it removed, since the last call.
    pub fn take_moved(&mut self) -> Vec<Ino> {
        std::mem::take(&mut self.moved)
    }

    /// Adds `node` below its parent (which must be listed).
    pub fn insert(&mut self, node: Node) {
        if let Some(s) = node.shown() {
            let m = self.links.entry(s).or_default();
            if !m.contains(&node.ino) {
                m.push(node.ino);
            }
        }
        let (parent, name, ino, is_dir) = (node.parent, node.name.clone(), node.ino, node.is_dir());
        if let Some(old) = self.nodes.insert(ino, node) {
            // Put again (the same inode): its old self was counted under its old parent.
            self.unlink_child_of(&old);
        }
        self.link_child(parent, name, ino, is_dir);
        self.reindex(ino);
    }

    fn unlink_child_of(&mut self, old: &Node) {
        if let Some(c) = self
            .nodes
            .get_mut(&old.parent)
            .and_then(|p| p.children.as_mut())
        {
            if c.get(&old.name) == Some(&old.ino) {
                c.remove(&old.name);
                if old.is_dir() {
                    self.uncount_subdir(old.parent);
                }
            }
        }
    }

    /// Removes a node and everything below it; returns the removed inodes.
    pub fn remove_subtree(&mut self, ino: Ino) -> Vec<Ino> {
        if let Some(n) = self.nodes.get(&ino) {
            let (parent, name) = (n.parent, n.name.clone());
            self.unlink_child(parent, &name, ino);
        }
        let mut removed = Vec::new();
        let mut named = Vec::new();
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            if let Some(n) = self.nodes.remove(&i) {
                self.dirty.remove(&i);
                self.subdirs.remove(&i);
                if let Some(c) = n.children.as_ref() {
                    stack.extend(c.values().copied());
                }
                if n.shown().is_some() {
                    named.push(n);
                }
                removed.push(i);
            }
        }
        // After the whole subtree is gone, so that an heir is always outside it.
        for n in named {
            let s = n.shown().expect("linked");
            if let Some(heir) = self.unlink_name(s, n) {
                removed.retain(|&i| i != s);
                removed.push(heir);
            }
        }
        removed
    }

    /// Takes a removed node out of its link group. A representative that still has other
    /// names takes one of them over: that node goes instead, and the number programs hold
    /// stays valid. Its per-name state (place, share version, what to write there) is the
    /// survivor's; what belongs to the entry stays its own.
    fn unlink_name(&mut self, s: Ino, removed: Node) -> Option<Ino> {
        let m = self.links.get_mut(&s)?;
        m.retain(|&i| i != removed.ino && self.nodes.contains_key(&i));
        if m.is_empty() {
            self.links.remove(&s);
            return None;
        }
        if removed.ino != s {
            return None;
        }
        let heir = m[0];
        m.retain(|&i| i != heir);
        m.insert(0, s);
        let h = self.nodes.remove(&heir).expect("member exists");
        self.dirty.remove(&heir);
        self.unlink_child(h.parent, &h.name, heir);
        let mut rep = removed;
        rep.parent = h.parent;
        rep.name = h.name.clone();
        rep.in_share = h.in_share;
        rep.base = h.base;
        rep.content_dirty = h.content_dirty;
        rep.meta_dirty = h.meta_dirty;
        rep.gen = rep.gen.max(h.gen) + 1;
        self.nodes.insert(s, rep);
        self.link_child(h.parent, h.name, s, false);
        self.reindex(s);
        self.moved.push(s);
        Some(heir)
    }

    /// Moves a node to a new parent and name (the target name must be free).
    pub fn relink(&mut self, ino: Ino, new_parent: Ino, new_name: &str) {
        let (old_parent, old_name, is_dir) = {
            let n = &self.nodes[&ino];
            (n.parent, n.name.clone(), n.is_dir())
        };
        self.unlink_child(old_parent, &old_name, ino);
        self.link_child(new_parent, new_name.into(), ino, is_dir);
        let n = self.nodes.get_mut(&ino).expect("node exists");
        n.parent = new_parent;
        n.name = new_name.into();
    }

    /// All nodes below `ino` (not included), parents before children.
    pub fn descendants(&self, ino: Ino) -> Vec<Ino> {
        let mut out = Vec::new();
        let mut queue = std::collections::VecDeque::from([ino]);
        while let Some(i) = queue.pop_front() {
            if let Some(c) = self.nodes.get(&i).and_then(|n| n.children.as_ref()) {
                for &child in c.values() {
                    out.push(child);
                    queue.push_back(child);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ino: Ino, parent: Ino, name: &str, kind: EntryKind) -> Node {
        Node {
            ino,
            parent,
            name: name.into(),
            kind,
            children: (kind == EntryKind::Dir).then(Default::default),
            cached: false,
            in_share: false,
            base: None,
            content_dirty: false,
            meta_dirty: false,
            size: 0,
            mtime_ns: 0,
            mode: 0o755,
            ctime_ns: 0,
            rare: None,
            gen: 0,
        }
    }

    /// A listed entry's memory is mostly its node (docs/PERFORMANCE.md has the figures per
    /// entry); what few nodes have stays out of line.
    #[test]
    fn a_node_stays_small() {
        assert!(
            std::mem::size_of::<Node>() <= 128,
            "{}",
            std::mem::size_of::<Node>()
        );
        let mut n = node(2, ROOT_INO, "l", EntryKind::Symlink);
        n.set_link(Some("target".into()));
        n.set_atime_ns(Some(5));
        assert_eq!((n.link(), n.atime_ns()), (Some("target"), Some(5)));
        n.set_link(None);
        n.set_atime_ns(None);
        assert!(n.rare.is_none(), "an empty out-of-line part is dropped");
    }

    /// The kept count against counting each directory's children now.
    fn check(t: &Tree) {
        for n in t.nodes() {
            let counted = n.children.as_ref().map_or(0, |c| {
                c.values()
                    .filter(|&&i| t.get(i).is_some_and(Node::is_dir))
                    .count() as u32
            });
            assert_eq!(t.subdir_count(n.ino), counted, "{}", n.name);
        }
    }

    #[test]
    fn subdirectory_counts_follow_every_change() {
        let root = node(ROOT_INO, ROOT_INO, "", EntryKind::Dir);
        let mut t = Tree::from_nodes(
            vec![
                root,
                node(2, ROOT_INO, "a", EntryKind::Dir),
                node(3, 2, "b", EntryKind::Dir),
                node(4, 2, "f", EntryKind::File),
            ],
            Vec::new(),
        );
        check(&t);
        assert_eq!(t.subdir_count(ROOT_INO), 1);
        assert_eq!(t.subdir_count(2), 1);
        t.insert(node(5, ROOT_INO, "c", EntryKind::Dir));
        check(&t);
        t.relink(3, 5, "b2");
        check(&t);
        assert_eq!(t.subdir_count(2), 0);
        assert_eq!(t.subdir_count(5), 1);
        // A folder replaced by a file under the same name (a refresh does this).
        t.remove_subtree(5);
        t.insert(node(6, ROOT_INO, "c", EntryKind::File));
        check(&t);
        // The same inode put again under another parent.
        t.insert(node(2, 6, "a", EntryKind::Dir));
        check(&t);
        t.remove_subtree(2);
        check(&t);
        assert_eq!(t.subdir_count(ROOT_INO), 0);
    }
}
