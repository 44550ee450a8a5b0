//! The engine, reading the namespace: attributes, lookups, listings, and fetching a
//! file's content from the share on first open.

use super::*;

impl Engine {
    pub(crate) fn attr_of(&self, tree: &Tree, node: &Node) -> Result<Attr, FsError> {
        if node.kind == EntryKind::File && node.cached {
            let path = tree
                .path_of(node.ino)
                .ok_or(FsError::StaleInode(node.ino))?;
            let md = fs::metadata(self.cache_path(&path)).map_err(io_err(&path))?;
            return Ok(Self::attr_from(tree, node, Some(&md)));
        }
        Ok(Self::attr_from(tree, node, None))
    }

    /// A node's attributes; `cached` is the metadata of its cached copy, whose size and times
    /// are the truth for cached files.
    pub(super) fn attr_from(tree: &Tree, node: &Node, cached: Option<&fs::Metadata>) -> Attr {
        let mut a = Attr {
            // Every name of a hard-linked entry shows the one number (`Node::shown`).
            ino: node.shown_ino(),
            kind: node.kind,
            size: node.size,
            mtime_ns: node.mtime_ns,
            atime_ns: node.atime_ns().unwrap_or(node.mtime_ns),
            ctime_ns: node.ctime_ns.max(node.mtime_ns),
            // The logical mode: the cache copy always stays readable and writable by sipfs.
            mode: node.mode,
            nlink: match &node.children {
                Some(_) => 2 + tree.subdir_count(node.ino),
                // A folder not listed yet, whose subfolders are not known: 1 says so (`find`
                // then never takes it for a leaf).
                None if node.is_dir() => 1,
                None => tree.link_count(node),
            },
            owner: node.owner(),
            rdev: node.rdev(),
        };
        if let Some(md) = cached {
            a.size = md.len();
            a.mtime_ns = backing::mtime_ns(md);
            a.atime_ns = backing::atime_ns(md);
            a.ctime_ns = a.ctime_ns.max(ctime_ns(md));
        }
        a
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        self.attr_of(&tree, node)
    }

    /// Attributes through an open handle: never races with a rename, and still works after
    /// the file was deleted while open.
    pub fn getattr_handle(&self, fh: &FileHandle) -> Result<Attr, FsError> {
        let md = fh
            .file
            .metadata()
            .map_err(|e| FsError::cache(&RelPath::root(), e))?;
        let st = Stat::from_metadata(&md);
        let (mode, owner) = self
            .state
            .read()
            .get(fh.ino)
            .map_or((st.mode, None), |n| (n.mode, n.owner()));
        Ok(Attr {
            ino: fh.ino,
            kind: EntryKind::File,
            size: st.size,
            mtime_ns: st.mtime_ns,
            atime_ns: backing::atime_ns(&md),
            ctime_ns: ctime_ns(&md),
            mode,
            // 0 once deleted while open, as on a local disk.
            nlink: nlink(&md),
            owner,
            rdev: 0,
        })
    }

    /// `setattr` on an open file that was deleted meanwhile (it lives on until closed).
    pub fn setattr_handle(&self, fh: &FileHandle, req: SetAttr) -> Result<Attr, FsError> {
        let err = |e| FsError::cache(&RelPath::root(), e);
        if let Some(size) = req.size {
            fh.file.set_len(size).map_err(err)?;
        }
        if req.mtime_ns.is_some() || req.atime_ns.is_some() {
            let (a, m) = (
                req.atime_ns.map(backing::filetime_from_ns),
                req.mtime_ns.map(backing::filetime_from_ns),
            );
            filetime::set_file_handle_times(&fh.file, a, m).map_err(err)?;
        }
        self.getattr_handle(fh)
    }

    pub fn lookup(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        check_name(name)?;
        self.ensure_listed(parent)?;
        let tree = self.state.read();
        let ino = tree
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(self.child_path(&tree, parent, name)))?;
        self.attr_of(&tree, tree.get(ino).expect("child exists"))
    }

    /// A lookup on a case-insensitive volume (the macFUSE mount: fuser declares it so on
    /// macOS, as Finder and Mac programs expect): the exact name if there is one, else the first
    /// entry, in listing order, whose name differs only in case (the rule the Windows drive
    /// follows, `nt::names::pick`). A miss costs a listing of the folder.
    pub fn lookup_ignoring_case(&self, parent: Ino, name: &str) -> Result<Attr, FsError> {
        match self.lookup(parent, name) {
            Err(FsError::NotFound(path)) => {
                let entries = self.readdir(parent)?;
                match crate::nt::names::pick(entries.iter().map(|e| e.name.as_str()), name) {
                    Some(found) if found != name => self.lookup(parent, found),
                    _ => Err(FsError::NotFound(path)),
                }
            }
            other => other,
        }
    }

    pub(super) fn child_path(&self, tree: &Tree, parent: Ino, name: &str) -> RelPath {
        tree.path_of(parent).unwrap_or_default().join(name)
    }

    pub fn readdir(&self, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
        self.ensure_listed(ino)?;
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        let children = node
            .children
            .as_ref()
            .ok_or_else(|| FsError::NotDir(tree.path_of(ino).unwrap_or_default()))?;
        Ok(children
            .iter()
            .map(|(name, &i)| {
                let n = tree.get(i);
                DirEntry {
                    name: name.clone(),
                    ino: n.map_or(i, Node::shown_ino),
                    kind: n.map_or(EntryKind::File, |n| n.kind),
                }
            })
            .collect())
    }

    pub fn path_of(&self, ino: Ino) -> Option<RelPath> {
        self.state.read().path_of(ino)
    }

    /// The entry's mode as programs see it, from memory alone (no stat of its cache copy).
    pub fn mode_of(&self, ino: Ino) -> Option<u32> {
        self.state.read().get(ino).map(|n| n.mode)
    }

    /// The inode at `path`, listing directories on the way as needed.
    pub fn resolve(&self, path: &RelPath) -> Result<Ino, FsError> {
        loop {
            let r = self.state.read().resolve(path);
            match r {
                Ok(Some(i)) => return Ok(i),
                Ok(None) => return Err(FsError::NotFound(path.clone())),
                Err(dir) => self.ensure_listed(dir)?,
            }
        }
    }

    /// Loads a directory's listing from the share on first visit.
    pub(crate) fn ensure_listed(&self, ino: Ino) -> Result<(), FsError> {
        let (path, share) = {
            let tree = self.state.read();
            let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
            let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
            if !node.is_dir() {
                return Err(FsError::NotDir(path));
            }
            if node.children.is_some() {
                return Ok(());
            }
            let share = share_path_of(&path, &tree.ops);
            (path, share)
        };
        let _span = info_span!("list", path = %path).entered();
        let listing = match &share {
            None => Vec::new(),
            Some(sp) => self
                .opts
                .retry
                .run(|| self.backing.list(sp))
                .map_err(|e| FsError::share(&path, e))?,
        };
        let mut tree = self.state.write();
        let Some(node) = tree.get(ino) else {
            return Ok(());
        };
        if node.children.is_some() {
            return Ok(());
        }
        let path = tree.path_of(ino).unwrap_or(path);
        let _ = self.tree.create_dir_all(&path);
        tree.get_mut(ino).expect("exists").children = Some(Default::default());
        let mut added = Vec::with_capacity(listing.len());
        for (name, st) in listing {
            if names::is_temp_name(&name)
                || check_name(&name).is_err()
                || (ino == ROOT_INO && name == CONTROL_DIR)
            {
                continue;
            }
            let child = Node::from_share(tree.alloc_ino(), ino, name, &st);
            added.push(child.ino);
            tree.insert(child);
        }
        debug!(entries = added.len(), "listed");
        // Written from the tree (still locked), not from copies: a copy of each node of a big
        // folder would only be made to be freed.
        self.persist(|tx| {
            for &i in std::iter::once(&ino).chain(&added) {
                journal::put_node(tx, tree.get(i).expect("just listed"))?;
            }
            Ok(())
        })
    }

    /// Fetches a file's content into the cache on first open, finishing the ranged copy
    /// (`partial.rs`) a read-only open began, if any.
    pub(crate) fn ensure_cached(&self, ino: Ino) -> Result<(), FsError> {
        // Where the version is read from: its name, or the captured file that holds it while
        // another sipfs commits a new version at the name.
        let mut from_capture: Option<RelPath> = None;
        const TRIES: u32 = 6;
        // Looks at an empty name, 5, 20 and 80 ms apart, before it counts as deleted.
        const GONE_LOOKS: u32 = 3;
        for attempt in 0..TRIES {
            // A name is empty on the share for a moment while another sipfs commits a new
            // version there (captured, then published: `flush/capture.rs`). A file that went
            // missing while a capture of it sits beside it is read from that capture if it
            // holds the version this cache knows (`base`), else looked for again, for up to
            // about 1.5 s, before it counts as gone.
            let briefly_gone = |share: &RelPath, base: Option<Base>| -> Option<Option<RelPath>> {
                if attempt + 1 >= TRIES {
                    return None;
                }
                // Writers taking turns at the name can empty it again between any two of our
                // calls: a listing without a capture, then a stat of the name just captured
                // by the next. What is deleted stays gone, at the name and as a capture, for
                // every one of a few looks, the first a moment later (the capture may have
                // become a conflict copy already, with a new version on its way).
                for look in 0..GONE_LOOKS {
                    std::thread::sleep(std::time::Duration::from_millis(5 << (2 * look)));
                    if let Some(caps) = self.captures_of(share) {
                        let ours = caps
                            .into_iter()
                            .find(|(_, st)| base.is_some_and(|b| b.matches(st)));
                        return Some(ours.map(|(cap, _)| cap));
                    }
                    match self.backing.stat(share) {
                        Ok(None) => {}
                        // There again; or the share failed, which the next fetch reports.
                        Ok(Some(_)) | Err(_) => return Some(None),
                    }
                }
                None
            };
            let (path, share, base) = {
                let tree = self.state.read();
                let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
                let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
                match node.kind {
                    EntryKind::Dir => return Err(FsError::IsDir(path)),
                    EntryKind::Symlink => return Ok(()),
                    EntryKind::File if node.cached => return Ok(()),
                    EntryKind::File => {}
                    // No content to fetch.
                    _ => return Ok(()),
                }
                let share =
                    share_path_of(&path, &tree.ops).ok_or(FsError::NotFound(path.clone()))?;
                (path, share, node.base)
            };
            let src = from_capture.clone().unwrap_or_else(|| share.clone());
            // A ranged copy a read-only open began is finished rather than fetched again. None
            // is begun here: who needs the whole file now is served best by one whole fetch.
            let partial = self.partials.lock().get(&ino).cloned();
            if let Some(p) = partial {
                // Installed, or dropped because the share's copy changed: look again.
                self.finish_partial(&p)?;
                continue;
            }
            let _span = info_span!("fetch", path = %path).entered();
            let tmp = self.tmp_file(&format!("fetch-{ino}-{}", now_ns()));
            let fetched = self
                .opts
                .retry
                .run(|| self.backing.fetch_version(&src, &tmp));
            // Missing: read from a capture holding our version, or look again shortly.
            let look_again = |from_capture: &mut Option<RelPath>| {
                let _ = fs::remove_file(&tmp);
                match briefly_gone(&share, base) {
                    Some(Some(cap)) if from_capture.as_ref() != Some(&cap) => {
                        debug!(capture = %cap, "the name is being committed to: read from its capture");
                        *from_capture = Some(cap);
                        true
                    }
                    Some(_) => {
                        *from_capture = None;
                        std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
                        true
                    }
                    None => false,
                }
            };
            let st = match fetched {
                Ok(Some(st)) => st,
                Ok(None) => {
                    // Someone wrote into the file while we copied it: copy again.
                    let _ = fs::remove_file(&tmp);
                    continue;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && look_again(&mut from_capture) =>
                {
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let _ = fs::remove_file(&tmp);
                    warn!(path = %path, share = %share, tries = attempt + 1, "not on the share any more: the open fails (a refresh shows it gone)");
                    return Err(FsError::NotFound(path));
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(FsError::share(&path, e));
                }
            };
            if from_capture.is_some() && !base.is_some_and(|b| b.matches(&st)) {
                // The capture changed while it was read (a writer that had it open): that
                // version is for its commit to keep, not ours to read. Look at the name again.
                let _ = fs::remove_file(&tmp);
                from_capture = None;
                continue;
            }
            // Where the share may keep whole seconds only, the version is known by its content
            // too (`flush/capture.rs`).
            let hash = self
                .share_times
                .maybe_coarse()
                .then(|| crate::mirror::stamp::hash_file(&tmp).ok())
                .flatten();
            let base = crate::pending::Base::of(&st);
            let recorded = self.install_copy(ino, &tmp, &st, |tx| match hash {
                Some(h) => crate::journal::put_base_hash(tx, ino, base, h),
                None => Ok(()),
            })?;
            if !recorded {
                let _ = fs::remove_file(&tmp);
            }
            return Ok(());
        }
        Err(FsError::share(
            &self.path_of(ino).unwrap_or_default(),
            std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the file kept changing on the share while it was copied",
            ),
        ))
    }

    /// The captured versions of `share` in its folder, with their stats: a commit of that
    /// name is under way (or was interrupted) on some machine. `None` when there are none
    /// (one listing of the folder).
    fn captures_of(&self, share: &RelPath) -> Option<Vec<(RelPath, Stat)>> {
        let dir = share.parent().unwrap_or_default();
        let caps: Vec<(RelPath, Stat)> = (self.backing.list(&dir).ok()?.into_iter())
            .filter(|(n, _)| crate::names::is_capture_of(n, share.name()))
            .map(|(n, st)| (dir.join(&n), st))
            .collect();
        (!caps.is_empty()).then_some(caps)
    }

    /// Puts a fetched copy of the share's version `st` (the local file `from`) into the cache
    /// tree as the node's content, and records it with `also` in one journal transaction.
    /// `Ok(false)` when it is not wanted any more (the node went, or got a copy meanwhile);
    /// `from` is then left for the caller to remove.
    pub(super) fn install_copy(
        &self,
        ino: Ino,
        from: &Path,
        st: &Stat,
        also: impl FnOnce(&Transaction<'_>) -> Result<(), JournalError>,
    ) -> Result<bool, FsError> {
        let mut tree = self.state.write();
        let Some(node) = tree.get(ino) else {
            return Ok(false);
        };
        let path = tree.path_of(ino).expect("exists");
        // A time or mode set here before the first read is a change of ours: the fetched
        // copy takes it, and the flush still writes it (the node stays dirty).
        let (mtime, mode) = if node.meta_dirty {
            (node.mtime_ns, node.mode)
        } else {
            (st.mtime_ns, st.mode)
        };
        let atime = node.atime_ns().unwrap_or(mtime);
        if node.cached {
            return Ok(false);
        }
        set_cache_mode(from, mode);
        filetime::set_file_times(
            from,
            backing::filetime_from_ns(atime),
            backing::filetime_from_ns(mtime),
        )
        .map_err(io_err(&path))?;
        let dest = self.cache_path(&path);
        if self.local_changes.get().is_some() && fs::symlink_metadata(&dest).is_ok() {
            // Mirror mode: someone put an entry here before the share's was fetched. Theirs
            // stays; the next scan records it as a local change.
            return Ok(false);
        }
        drop(dest);
        self.in_cache_dir(&path, |at| fs::rename(from, at))
            .map_err(io_err(&path))?;
        let node = tree.get_mut(ino).expect("exists");
        node.cached = true;
        node.base = Some(Base::of(st));
        node.size = st.size;
        node.mtime_ns = mtime;
        // The cached file holds the access time from now on.
        node.set_atime_ns(None);
        let n = node.clone();
        self.persist(|tx| {
            journal::put_node(tx, &n)?;
            also(tx)
        })?;
        drop(tree);
        self.after_fetch(ino, st.size);
        Ok(true)
    }
}
