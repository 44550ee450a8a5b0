//! The namespace the mount shows: a tree of nodes kept in memory and written through to the
//! journal. A node is the whole state of one cached entry (see docs/ARCHITECTURE.md):
//! whether its content is cached, which share version it derives from, and what is dirty.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::backing::{EntryKind, Stat};
use crate::pending::{Base, Logged};
use crate::relpath::RelPath;

pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub ino: Ino,
    pub parent: Ino,
    pub name: String,
    pub kind: EntryKind,
    /// Directories: `None` until listed from the share (or created here).
    pub children: Option<BTreeMap<String, Ino>>,
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
    pub link: Option<String>,
    /// Last change of the entry or its attributes (not kept in the journal: after a restart
    /// it starts at the modification time).
    pub ctime_ns: i64,
    /// An access time a program set (`utimensat`), for entries whose truth is not a cached
    /// file; `None`: the modification time. Kept here only: a share's access times change with
    /// every read, so they are never written back.
    pub atime_ns: Option<i64>,
    /// Bumped on every change of the node; a flush clears dirty flags only if it is unchanged.
    pub gen: u64,
}

impl Node {
    pub fn from_share(ino: Ino, parent: Ino, name: String, st: &Stat) -> Node {
        Node {
            ino,
            parent,
            name,
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
            link: None,
            ctime_ns: st.mtime_ns,
            atime_ns: None,
            gen: 0,
        }
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
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// Nodes with a dirty flag set: a flush looks at these only, never at the whole tree.
    dirty: BTreeSet<Ino>,
    pub ops: Vec<Logged>,
}

impl Tree {
    pub fn from_nodes(nodes: Vec<Node>, ops: Vec<Logged>) -> Tree {
        let mut t = Tree {
            nodes: HashMap::with_capacity(nodes.len()),
            next_ino: ROOT_INO + 1,
            dirty: BTreeSet::new(),
            ops,
        };
        for n in nodes {
            t.next_ino = t.next_ino.max(n.ino + 1);
            if n.is_dirty() {
                t.dirty.insert(n.ino);
            }
            t.nodes.insert(n.ino, n);
        }
        // Children maps are derived from parent links rather than stored twice.
        let links: Vec<(Ino, Ino, String)> = t
            .nodes
            .values()
            .filter(|n| n.ino != ROOT_INO)
            .map(|n| (n.parent, n.ino, n.name.clone()))
            .collect();
        for (parent, ino, name) in links {
            if let Some(children) = t.nodes.get_mut(&parent).and_then(|p| p.children.as_mut()) {
                children.insert(name, ino);
            }
        }
        t
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

    /// Adds `node` below its parent (which must be listed).
    pub fn insert(&mut self, node: Node) {
        if let Some(children) = self
            .nodes
            .get_mut(&node.parent)
            .and_then(|p| p.children.as_mut())
        {
            children.insert(node.name.clone(), node.ino);
        }
        let ino = node.ino;
        self.nodes.insert(ino, node);
        self.reindex(ino);
    }

    /// Removes a node and everything below it; returns the removed inodes.
    pub fn remove_subtree(&mut self, ino: Ino) -> Vec<Ino> {
        if let Some(n) = self.nodes.get(&ino) {
            let (parent, name) = (n.parent, n.name.clone());
            if let Some(c) = self
                .nodes
                .get_mut(&parent)
                .and_then(|p| p.children.as_mut())
            {
                if c.get(&name) == Some(&ino) {
                    c.remove(&name);
                }
            }
        }
        let mut removed = Vec::new();
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            if let Some(n) = self.nodes.remove(&i) {
                self.dirty.remove(&i);
                if let Some(c) = n.children {
                    stack.extend(c.values().copied());
                }
                removed.push(i);
            }
        }
        removed
    }

    /// Moves a node to a new parent and name (the target name must be free).
    pub fn relink(&mut self, ino: Ino, new_parent: Ino, new_name: &str) {
        let (old_parent, old_name) = {
            let n = &self.nodes[&ino];
            (n.parent, n.name.clone())
        };
        if let Some(c) = self
            .nodes
            .get_mut(&old_parent)
            .and_then(|p| p.children.as_mut())
        {
            c.remove(&old_name);
        }
        if let Some(c) = self
            .nodes
            .get_mut(&new_parent)
            .and_then(|p| p.children.as_mut())
        {
            c.insert(new_name.to_owned(), ino);
        }
        let n = self.nodes.get_mut(&ino).expect("node exists");
        n.parent = new_parent;
        n.name = new_name.to_owned();
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
