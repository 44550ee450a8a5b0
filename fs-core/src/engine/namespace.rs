//! The engine, changing the namespace: creating, removing and renaming entries, in the
//! cache, the tree and the pending log at once.

use super::*;

impl Engine {
    /// Marks a directory changed: a new mtime, written back by the next flush.
    pub(super) fn touch_dir(tree: &mut Tree, ino: Ino, now: i64) -> Option<Ino> {
        let n = tree.get_mut(ino)?;
        n.mtime_ns = now;
        n.ctime_ns = now;
        n.meta_dirty = true;
        n.gen += 1;
        tree.reindex(ino);
        Some(ino)
    }

    /// If the last logged change of `path` removed a file, takes that removal back and returns
    /// the removed version: a new file at that path then replaces it on the share in one step,
    /// instead of a delete followed by a create.
    pub(super) fn adopt_removed(tree: &mut Tree, path: &RelPath) -> Option<(i64, Option<Base>)> {
        let last = tree
            .ops
            .iter()
            .rposition(|(_, op)| op.paths().any(|p| p.overlaps(path)))?;
        match &tree.ops[last].1 {
            NsOp::Remove {
                path: removed,
                kind,
                base,
                ..
            } if removed == path && *kind != EntryKind::Dir => {
                let base = *base;
                let (seq, _) = tree.ops.remove(last);
                Some((seq, base))
            }
            _ => None,
        }
    }

    pub(super) fn lookup_free(
        &self,
        tree: &Tree,
        parent: Ino,
        name: &str,
    ) -> Result<RelPath, FsError> {
        check_name(name)?;
        let pnode = tree.get(parent).ok_or(FsError::StaleInode(parent))?;
        let ppath = tree.path_of(parent).ok_or(FsError::StaleInode(parent))?;
        if !pnode.is_dir() {
            return Err(FsError::NotDir(ppath));
        }
        let path = ppath.join(name);
        if parent == ROOT_INO && name == CONTROL_DIR {
            return Err(FsError::Exists(path));
        }
        if tree.child(parent, name).is_some() {
            return Err(FsError::Exists(path));
        }
        Ok(path)
    }

    /// Creates a new file, symlink or special file and records it.
    pub(crate) fn create_entry(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
        new: NewEntry<'_>,
        side: CacheSide,
    ) -> Result<(Attr, Option<FileHandle>), FsError> {
        let link = match new {
            NewEntry::Symlink(t) => Some(t),
            _ => None,
        };
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.lookup_free(&tree, parent, name)?;
        let _span = info_span!("create", path = %path).entered();
        let cache = self.cache_path(&path);
        let file = match (side, new) {
            (CacheSide::AlreadyDone, _) => None,
            (CacheSide::Apply, NewEntry::Symlink(target)) => {
                self.in_cache_dir(&path, |at| backing::make_symlink(target, at))
                    .map_err(io_err(&path))?;
                None
            }
            (CacheSide::Apply, NewEntry::File) => Some(
                self.in_cache_dir(&path, |at| create_cache_file(at, mode))
                    .map_err(io_err(&path))?,
            ),
            // Nothing in the cache tree: the kernel serves a FIFO's data and a socket's
            // connections itself, and a device node there would need privileges sipfs may not
            // have. The node holds the entry.
            (CacheSide::Apply, NewEntry::Special(..)) => None,
        };
        let adopted = Self::adopt_removed(&mut tree, &path);
        let ino = tree.alloc_ino();
        let now = now_ns();
        let mut node = Node {
            ino,
            parent,
            name: name.into(),
            kind: match new {
                NewEntry::File => EntryKind::File,
                NewEntry::Symlink(_) => EntryKind::Symlink,
                NewEntry::Special(kind, _) => kind,
            },
            children: None,
            cached: !matches!(new, NewEntry::Special(..)),
            in_share: adopted.is_some(),
            base: adopted.and_then(|(_, b)| b),
            content_dirty: true,
            meta_dirty: false,
            size: link.map_or(0, |l| l.len() as u64),
            mtime_ns: now,
            mode: if link.is_some() { 0o777 } else { mode & 0o7777 },
            ctime_ns: now,
            rare: None,
            gen: 0,
        };
        node.set_link(link.map(Box::from));
        if let NewEntry::Special(_, rdev) = new {
            node.set_rdev(rdev);
        }
        tree.insert(node.clone());
        let pnode = Self::touch_dir(&mut tree, parent, now);
        let put: Vec<Ino> = std::iter::once(ino).chain(pnode).collect();
        let res = self.record(
            &mut tree,
            &put,
            &[],
            adopted.map(|(seq, _)| seq),
            Vec::new(),
        );
        if let Err(e) = res {
            tree.remove_subtree(ino);
            if side == CacheSide::Apply && !matches!(new, NewEntry::Special(..)) {
                let _ = fs::remove_file(&cache);
            }
            return Err(e);
        }
        let attr = match (side, &file) {
            // The new file's own descriptor: no lookup by path.
            (CacheSide::Apply, Some(f)) => {
                let md = f.metadata().map_err(io_err(&path))?;
                Self::attr_from(&tree, &node, Some(&md))
            }
            (CacheSide::Apply, None) => self.attr_of(&tree, &node)?,
            // Recorded already; the entry may be gone again from the mirror folder (the next
            // scan sees that), so its attributes are not looked up: the caller wants the inode.
            (CacheSide::AlreadyDone, _) => Attr {
                ino,
                kind: node.kind,
                size: node.size,
                mtime_ns: node.mtime_ns,
                atime_ns: node.mtime_ns,
                ctime_ns: node.ctime_ns,
                mode: node.mode,
                nlink: 1,
                owner: node.owner(),
                rdev: node.rdev(),
            },
        };
        drop(tree);
        let fh = file.map(|file| {
            let live = self.live(ino);
            self.count_open(&live);
            live.writers.fetch_add(1, Ordering::SeqCst);
            FileHandle {
                ino,
                file,
                writable: true,
                partial: None,
            }
        });
        Ok((attr, fh))
    }

    /// Creates and opens a new file for writing.
    pub fn create(
        &self,
        parent: Ino,
        name: &str,
        mode: u32,
    ) -> Result<(Attr, FileHandle), FsError> {
        let (attr, fh) = self.create_entry(parent, name, mode, NewEntry::File, CacheSide::Apply)?;
        Ok((attr, fh.expect("files get a handle")))
    }

    pub fn symlink(&self, parent: Ino, name: &str, target: &str) -> Result<Attr, FsError> {
        Ok(self
            .create_entry(
                parent,
                name,
                0o777,
                NewEntry::Symlink(target),
                CacheSide::Apply,
            )?
            .0)
    }

    /// Makes a FIFO, socket or device node (`kind`, see [`EntryKind::is_special`]). It works in
    /// the mount at once; a flush writes it where the share can hold it and keeps it here,
    /// reported, where it cannot.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &str,
        kind: EntryKind,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr, FsError> {
        match kind {
            EntryKind::File => {
                let (attr, fh) = self.create(parent, name, mode)?;
                self.release(fh);
                Ok(attr)
            }
            k if k.is_special() => Ok(self
                .create_entry(
                    parent,
                    name,
                    mode,
                    NewEntry::Special(k, rdev),
                    CacheSide::Apply,
                )?
                .0),
            k => Err(FsError::InvalidArgument(format!(
                "mknod cannot make a {}",
                k.noun()
            ))),
        }
    }

    pub fn readlink(&self, ino: Ino) -> Result<String, FsError> {
        let share = {
            let tree = self.state.read();
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            if node.kind != EntryKind::Symlink {
                return Err(FsError::InvalidArgument(format!(
                    "{path} is not a symbolic link"
                )));
            }
            if let Some(l) = node.link() {
                return Ok(l.to_string());
            }
            (
                path.clone(),
                share_path_of(&path, &tree.ops).ok_or(FsError::NotFound(path))?,
            )
        };
        let target = self
            .opts
            .retry
            .run(|| self.backing.read_link(&share.1))
            .map_err(|e| FsError::share(&share.0, e))?;
        let mut tree = self.state.write();
        if let Some(node) = tree.get_mut(ino) {
            node.set_link(Some(target.as_str().into()));
            node.cached = true;
            let n = node.clone();
            let _ = backing::make_symlink(&target, &self.cache_path(&share.0));
            self.persist(|tx| journal::put_node(tx, &n))?;
        }
        Ok(target)
    }

    pub fn mkdir(&self, parent: Ino, name: &str, mode: u32) -> Result<Attr, FsError> {
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.lookup_free(&tree, parent, name)?;
        let _span = info_span!("mkdir", path = %path).entered();
        self.tree.create_dir_all(&path).map_err(io_err(&path))?;
        let ignored = self.is_ignored(&path, true);
        let now = now_ns();
        let node = Node {
            ino: tree.alloc_ino(),
            parent,
            name: name.into(),
            kind: EntryKind::Dir,
            children: Some(Default::default()),
            cached: false,
            in_share: !ignored,
            base: None,
            content_dirty: false,
            meta_dirty: !ignored,
            size: 0,
            mtime_ns: now,
            mode: mode & 0o7777,
            ctime_ns: now,
            rare: None,
            gen: 0,
        };
        let op = (!ignored).then(|| NsOp::Mkdir { path: path.clone() });
        tree.insert(node.clone());
        let pnode = Self::touch_dir(&mut tree, parent, now);
        let put: Vec<Ino> = std::iter::once(node.ino).chain(pnode).collect();
        self.record(&mut tree, &put, &[], None, op.into_iter().collect())?;
        self.attr_of(&tree, &node)
    }

    pub fn unlink(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.remove_entry(parent, name, false, CacheSide::Apply)
    }

    pub fn rmdir(&self, parent: Ino, name: &str) -> Result<(), FsError> {
        self.ensure_listed(parent)?;
        // Each guard dropped before listing: a guard kept alive through an `if let` block
        // would deadlock the listing's write lock (a folder never listed could not be removed).
        let child = self.state.read().child(parent, name);
        let is_dir = child.is_some_and(|c| self.state.read().get(c).is_some_and(Node::is_dir));
        if let (Some(child), true) = (child, is_dir) {
            // Empty or not is known only once listed.
            self.ensure_listed(child)?;
        }
        self.remove_entry(parent, name, true, CacheSide::Apply)
    }

    pub(crate) fn remove_entry(
        &self,
        parent: Ino,
        name: &str,
        dir: bool,
        side: CacheSide,
    ) -> Result<(), FsError> {
        check_name(name)?;
        self.ensure_listed(parent)?;
        let mut tree = self.state.write();
        let path = self.child_path(&tree, parent, name);
        let _span = info_span!("remove", path = %path).entered();
        let ino = tree
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(path.clone()))?;
        let node = tree.get(ino).expect("child exists").clone();
        match (dir, node.is_dir()) {
            (false, true) => return Err(FsError::IsDir(path)),
            (true, false) => return Err(FsError::NotDir(path)),
            (true, true) => match &node.children {
                Some(c) if c.is_empty() => {}
                // Listed by rmdir() before; a refresh can not un-list it.
                _ => return Err(FsError::NotEmpty(path)),
            },
            (false, false) => {}
        }
        let cache = self.cache_path(&path);
        let removed = match (side, dir) {
            (CacheSide::AlreadyDone, _) => Ok(()),
            (CacheSide::Apply, true) => fs::remove_dir_all(&cache),
            (CacheSide::Apply, false) => fs::remove_file(&cache),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FsError::cache(&path, e)),
        }
        let op = (node.in_share && !self.is_ignored(&path, dir)).then(|| NsOp::Remove {
            path: path.clone(),
            kind: node.kind,
            base: node.base,
            linked: node.shown(),
        });
        let shown = node.shown();
        let removed = tree.remove_subtree(ino);
        let now = now_ns();
        // The entry's other names (hard links) live on, and it changed: one name less.
        let mut put = tree.take_moved();
        if let Some(s) = shown.filter(|s| tree.get(*s).is_some()) {
            if let Some(n) = tree.get_mut(s) {
                n.ctime_ns = now;
                n.gen += 1;
            }
            put.push(s);
            put.extend(tree.share_with_links(s));
        }
        put.extend(Self::touch_dir(&mut tree, parent, now));
        self.record(&mut tree, &put, &removed, None, op.into_iter().collect())
    }

    /// Lists every directory below `ino` and fetches every file, so that the subtree can be
    /// written to the share from the cache alone.
    fn materialize_subtree(&self, ino: Ino) -> Result<(), FsError> {
        let mut stack = vec![ino];
        while let Some(i) = stack.pop() {
            let kind = self.state.read().get(i).map(|n| n.kind);
            match kind {
                Some(EntryKind::Dir) => {
                    self.ensure_listed(i)?;
                    let tree = self.state.read();
                    if let Some(c) = tree.get(i).and_then(|n| n.children.as_ref()) {
                        stack.extend(c.values().copied());
                    }
                }
                Some(EntryKind::File) => self.ensure_cached(i)?,
                Some(EntryKind::Symlink) => {
                    self.readlink(i)?;
                }
                Some(_) | None => {}
            }
        }
        Ok(())
    }

    /// Renames `parent/name` to `new_parent/new_name`, replacing a file or an empty directory
    /// there as POSIX says (unless `noreplace`).
    pub fn rename(
        &self,
        parent: Ino,
        name: &str,
        new_parent: Ino,
        new_name: &str,
        noreplace: bool,
    ) -> Result<(), FsError> {
        check_name(name)?;
        check_name(new_name)?;
        self.ensure_listed(parent)?;
        self.ensure_listed(new_parent)?;
        let (src, dst) = {
            let tree = self.state.read();
            (tree.child(parent, name), tree.child(new_parent, new_name))
        };
        let src = src
            .ok_or_else(|| FsError::NotFound(self.child_path(&self.state.read(), parent, name)))?;
        if let Some(d) = dst {
            if self.state.read().get(d).is_some_and(Node::is_dir) {
                self.ensure_listed(d)?;
            }
        }
        // A move between the synced area and an ignored one turns into removals or creations
        // of the whole subtree on the share, so all of it must be known and cached first.
        // A file moved out of what is synced is no longer on the share for us, so its content
        // must be here first too (found by the model test: an unread file renamed to
        // `.DS_Store` lost its content).
        let (needs_all, needs_content) = {
            let tree = self.state.read();
            let n = tree.get(src).ok_or(FsError::StaleInode(src))?;
            let from = tree.path_of(src).unwrap_or_default();
            let to = self.child_path(&tree, new_parent, new_name);
            let crosses = self.is_ignored(&from, n.is_dir()) != self.is_ignored(&to, n.is_dir());
            (
                n.is_dir() && (crosses || (!n.in_share && !self.is_ignored(&to, true))),
                n.kind == EntryKind::File && !n.cached && crosses,
            )
        };
        if needs_all {
            self.materialize_subtree(src)?;
        }
        if needs_content {
            self.ensure_cached(src)?;
        }
        self.rename_locked(
            src,
            (parent, name),
            (new_parent, new_name),
            noreplace,
            CacheSide::Apply,
        )
    }

    pub(crate) fn rename_locked(
        &self,
        src: Ino,
        (parent, name): (Ino, &str),
        (new_parent, new_name): (Ino, &str),
        noreplace: bool,
        side: CacheSide,
    ) -> Result<(), FsError> {
        let mut tree = self.state.write();
        if tree.child(parent, name) != Some(src) {
            return Err(FsError::NotFound(self.child_path(&tree, parent, name)));
        }
        let from = tree.path_of(src).ok_or(FsError::StaleInode(src))?;
        let np = tree
            .get(new_parent)
            .ok_or(FsError::StaleInode(new_parent))?;
        let to_parent = tree
            .path_of(new_parent)
            .ok_or(FsError::StaleInode(new_parent))?;
        if !np.is_dir() {
            return Err(FsError::NotDir(to_parent));
        }
        let to = to_parent.join(new_name);
        if new_parent == ROOT_INO && new_name == CONTROL_DIR {
            return Err(FsError::Exists(to));
        }
        let _span = info_span!("rename", from = %from, to = %to).entered();
        let snode = tree.get(src).expect("exists").clone();
        let dst = tree.child(new_parent, new_name);
        if dst == Some(src) {
            return Ok(());
        }
        // Two names of one hard-linked entry: POSIX says rename does nothing.
        if let (Some(d), Some(s)) = (dst, snode.shown()) {
            if tree.get(d).and_then(Node::shown) == Some(s) {
                return Ok(());
            }
        }
        if snode.is_dir() && to.is_within(&from) {
            return Err(FsError::MoveIntoSelf(from));
        }
        let dnode = dst.map(|d| tree.get(d).expect("exists").clone());
        if let Some(d) = &dnode {
            if noreplace {
                return Err(FsError::Exists(to));
            }
            match (snode.is_dir(), d.is_dir()) {
                (true, false) => return Err(FsError::NotDir(to)),
                (false, true) => return Err(FsError::IsDir(to)),
                (true, true) if d.children.as_ref().is_none_or(|c| !c.is_empty()) => {
                    return Err(FsError::NotEmpty(to))
                }
                _ => {}
            }
        }
        let is_dir = snode.is_dir();
        let from_ign = self.is_ignored(&from, is_dir);
        let to_ign = self.is_ignored(&to, is_dir);
        let src_on_share = snode.in_share && !from_ign;
        let dst_on_share = dnode.as_ref().is_some_and(|d| d.in_share && !to_ign);

        // Decide what the share must see, as logged changes and flag changes.
        let mut ops: Vec<NsOp> = Vec::new();
        let mut flag_changes: Vec<(Ino, bool, Option<Base>, bool)> = Vec::new(); // ino, in_share, base, content_dirty
        let mut dropped_op: Option<i64> = None;
        if src_on_share && !to_ign {
            if dst_on_share && is_dir {
                ops.push(NsOp::Remove {
                    path: to.clone(),
                    kind: EntryKind::Dir,
                    base: None,
                    linked: None,
                });
            }
            ops.push(NsOp::Rename {
                from: from.clone(),
                to: to.clone(),
                dest_base: dnode
                    .as_ref()
                    .filter(|d| dst_on_share && !d.is_dir())
                    .and_then(|d| d.base),
            });
        } else if src_on_share && to_ign {
            // Moved out of what is synced: the share loses the subtree, deepest first.
            let mut all = tree.descendants(src);
            all.reverse();
            all.push(src);
            for i in all {
                let n = tree.get(i).expect("exists");
                if n.in_share {
                    let p = tree.path_of(i).expect("exists");
                    if !self.is_ignored(&p, n.is_dir()) {
                        ops.push(NsOp::Remove {
                            path: p,
                            kind: n.kind,
                            base: n.base,
                            linked: n.shown(),
                        });
                    }
                }
                flag_changes.push((i, false, None, n.content_dirty));
            }
        } else if !src_on_share && !to_ign {
            if is_dir {
                if dst_on_share {
                    ops.push(NsOp::Remove {
                        path: to.clone(),
                        kind: EntryKind::Dir,
                        base: None,
                        linked: None,
                    });
                }
                // Moved into what is synced: the share gains the subtree, parents first.
                ops.push(NsOp::Mkdir { path: to.clone() });
                flag_changes.push((src, true, None, false));
                for i in tree.descendants(src) {
                    let n = tree.get(i).expect("exists");
                    let p = tree
                        .path_of(i)
                        .expect("exists")
                        .rebase(&from, &to)
                        .expect("below");
                    if n.is_dir() {
                        if !self.is_ignored(&p, true) {
                            ops.push(NsOp::Mkdir { path: p });
                            flag_changes.push((i, true, None, false));
                        }
                    } else {
                        flag_changes.push((i, false, None, true));
                    }
                }
            } else if dst_on_share {
                let d = dnode.as_ref().expect("dst");
                flag_changes.push((src, true, d.base, true));
            } else {
                let adopted = Self::adopt_removed(&mut tree, &to);
                dropped_op = adopted.map(|(s, _)| s);
                flag_changes.push((src, adopted.is_some(), adopted.and_then(|(_, b)| b), true));
            }
        }

        // The cache tree follows the namespace.
        let src_cache = self.cache_path(&from);
        let dst_cache = self.cache_path(&to);
        if side == CacheSide::Apply {
            self.move_in_cache(dnode.as_ref(), &src_cache, &dst_cache, &to)?;
        }

        let mut deleted = Vec::new();
        if let Some(d) = dst {
            deleted = tree.remove_subtree(d);
        }
        // A hard-linked entry that lost the name it was replaced at: its representative may
        // have moved to another of its names.
        let mut moved = tree.take_moved();
        if let Some(s) = dnode.as_ref().and_then(Node::shown) {
            if let Some(n) = tree.get_mut(s) {
                // One name fewer is a change of the entry.
                n.ctime_ns = now_ns();
                n.gen += 1;
                moved.push(s);
                moved.extend(tree.share_with_links(s));
            }
        }
        tree.relink(src, new_parent, new_name);
        if let Some(n) = tree.get_mut(src) {
            // A flush that started before the move must not take the node for clean.
            n.gen += 1;
            n.ctime_ns = now_ns();
        }
        moved.extend(tree.share_with_links(src));
        for (i, in_share, base, content_dirty) in flag_changes {
            if let Some(n) = tree.get_mut(i) {
                n.in_share = in_share;
                if !n.is_dir() {
                    n.base = base;
                }
                n.content_dirty = content_dirty && !n.is_dir();
                if n.is_dir() && in_share {
                    // Created on the share by the flush: its time is set after.
                    n.meta_dirty = true;
                }
                n.gen += 1;
                tree.reindex(i);
            }
        }
        let now = now_ns();
        let mut touched = vec![src];
        touched.extend(Self::touch_dir(&mut tree, parent, now));
        touched.extend(Self::touch_dir(&mut tree, new_parent, now));
        let put: Vec<Ino> = touched
            .into_iter()
            .chain(tree.descendants(src))
            .chain(moved)
            .collect();
        let result = self.record(&mut tree, &put, &deleted, dropped_op, ops);
        if result.is_err() && side == CacheSide::Apply {
            // Keep the cache tree where the journal says it is.
            let _ = fs::rename(&dst_cache, &src_cache);
        }
        result
    }

    /// Moves an entry in the cache tree for a rename, replacing what `dnode` was there.
    fn move_in_cache(
        &self,
        dnode: Option<&Node>,
        src_cache: &Path,
        dst_cache: &Path,
        to: &RelPath,
    ) -> Result<(), FsError> {
        if let Some(d) = dnode {
            let r = if d.is_dir() {
                fs::remove_dir_all(dst_cache)
            } else {
                fs::remove_file(dst_cache)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(FsError::cache(to, e));
                }
            }
        }
        if fs::symlink_metadata(src_cache).is_ok() {
            self.in_cache_dir(to, |at| fs::rename(src_cache, at))
                .map_err(io_err(to))?;
        }
        Ok(())
    }
}
