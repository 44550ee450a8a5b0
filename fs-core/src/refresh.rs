//! Pulling in what others changed on the share.
//!
//! Only directories already listed are looked at (the rest is listed fresh on first visit),
//! all of them in parallel and by stat alone: no file content is read. Clean entries follow
//! the share; entries with local changes are left alone, and a flush settles them (keeping
//! both versions if both changed). Directories whose share location differs because of a
//! pending rename are skipped until the flush has written the rename.

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

use rayon::prelude::*;
use tracing::{info, info_span, warn};

use crate::backing::Stat;
use crate::engine::Engine;
use crate::error::Reason;
use crate::ignore_rules::CONTROL_DIR;
use crate::journal;
use crate::names;
use crate::pending::{is_within_changed, touches, Base};
use crate::relpath::{check_name, RelPath};
use crate::report::{Invalidation, PendingItem, RefreshReport};
use crate::tree::{Ino, Name, Node, Tree, ROOT_INO};

impl Engine {
    pub fn refresh(&self) -> RefreshReport {
        let _flush = self.flush_lock.lock();
        let _span = info_span!("refresh").entered();
        let start = Instant::now();
        let mut report = RefreshReport {
            started_at: chrono::Local::now().to_rfc3339(),
            ..Default::default()
        };
        let dirs: Vec<(Ino, RelPath)> = {
            let tree = self.state.read();
            tree.nodes()
                .filter(|n| n.children.is_some() && n.in_share)
                .filter_map(|n| tree.path_of(n.ino).map(|p| (n.ino, p)))
                .filter(|(_, p)| !is_within_changed(&tree.ops, p))
                .collect()
        };
        let retry = self.opts.retry;
        let listings: Vec<_> = self.pool.install(|| {
            dirs.into_par_iter()
                .map(|(ino, path)| {
                    let l = retry.run(|| self.backing.list(&path));
                    (ino, path, l)
                })
                .collect()
        });
        report.dirs_scanned = listings.len();
        // The project folder itself is nobody's child: its times are looked up on their own.
        let root_stat = retry.run(|| self.backing.stat(&RelPath::root()));

        let mut tree = self.state.write();
        let mut put: Vec<Node> = Vec::new();
        let mut deleted: Vec<Ino> = Vec::new();
        let mut refetch: Vec<Ino> = Vec::new();
        if let (Ok(Some(st)), Some(root)) = (&root_stat, tree.get_mut(ROOT_INO)) {
            if !root.meta_dirty && (root.mtime_ns != st.mtime_ns || root.mode != st.mode) {
                root.mtime_ns = st.mtime_ns;
                root.mode = st.mode;
                put.push(root.clone());
                report.invalidate.push(Invalidation::Inode(ROOT_INO));
            }
        }
        for (ino, path, listing) in listings {
            let listing = match listing {
                Ok(l) => l,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.kind() == std::io::ErrorKind::NotADirectory =>
                {
                    Vec::new()
                }
                Err(e) => {
                    report
                        .errors
                        .push(PendingItem::new(&path, Reason::classify(&e), &e));
                    continue;
                }
            };
            if tree.path_of(ino).as_ref() != Some(&path) {
                continue;
            }
            let mut share: HashMap<String, Stat> = listing
                .into_iter()
                .filter(|(n, _)| {
                    !names::is_temp_name(n)
                        && check_name(n).is_ok()
                        && !(ino == ROOT_INO && n == CONTROL_DIR)
                })
                .collect();
            let children: Vec<(Name, Ino)> = match tree.get(ino).and_then(|n| n.children.as_ref()) {
                Some(c) => c.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                None => continue,
            };
            for (name, cino) in children {
                let st = share.remove(name.as_str());
                let child_path = path.join(&name);
                if touches(&tree.ops, &child_path) {
                    continue;
                }
                let Some(c) = tree.get(cino).cloned() else {
                    continue;
                };
                // Changed in the mirror folder since the last scan: the next flush settles it.
                // Looked at only where the share's version would replace or remove the copy.
                let replaces = match &st {
                    None => c.in_share,
                    Some(st) if st.kind != c.kind => true,
                    Some(_) if c.is_dir() => false,
                    Some(st) => !c.base.is_some_and(|b| b.matches(st)),
                };
                match st {
                    _ if replaces && self.changed_locally(&tree, cino) => report.kept_local += 1,
                    None if !c.in_share => {}
                    None if subtree_clean(&tree, cino) => {
                        self.drop_cached(&tree, cino);
                        deleted.extend(tree.remove_subtree(cino));
                        linked_moved(&mut tree, &mut put, &mut report, c.shown());
                        report.removed += 1;
                        gone(&mut report, ino, &name);
                    }
                    None => report.kept_local += 1,
                    Some(st) if st.kind != c.kind => {
                        if subtree_clean(&tree, cino) {
                            self.replace_entry(
                                &mut tree,
                                (ino, &name, cino),
                                (&st, None),
                                (&mut put, &mut deleted),
                                &mut report,
                            );
                            report.changed += 1;
                            gone(&mut report, ino, &name);
                        } else {
                            report.kept_local += 1;
                        }
                    }
                    Some(st) if c.is_dir() => {
                        if !c.meta_dirty && (c.mtime_ns != st.mtime_ns || c.mode != st.mode) {
                            let n = tree.get_mut(cino).expect("exists");
                            n.mtime_ns = st.mtime_ns;
                            n.mode = st.mode;
                            put.push(n.clone());
                            report.invalidate.push(Invalidation::Inode(cino));
                        }
                    }
                    Some(st) if c.base.is_some_and(|b| b.matches(&st)) => {}
                    // Only a local change of content holds the share's version back; a changed
                    // mtime or mode alone gives way to new content from the share.
                    Some(_) if c.content_dirty || !c.in_share => report.kept_local += 1,
                    // The share holds what is here already: another name of the entry, a hard
                    // link there too, was written (or given its time) through a flush that
                    // did not get to this one. Nobody else's change: only the base moves.
                    Some(st) if c.shown().is_some() && self.holds_what_is_here(&tree, &c, &st) => {
                        let n = tree.get_mut(cino).expect("exists");
                        n.base = Some(Base::of(&st));
                        put.push(n.clone());
                    }
                    // One name of a hard-linked entry changed on the share, which holds each
                    // name as a file of its own: that name is that file now, and the link is
                    // split (the other names keep the cached copy).
                    Some(st) if c.shown().is_some() => {
                        self.replace_entry(
                            &mut tree,
                            (ino, &name, cino),
                            // As for any file the share changed, the owner recorded here stays.
                            (&st, c.owner()),
                            (&mut put, &mut deleted),
                            &mut report,
                        );
                        report.changed += 1;
                        gone(&mut report, ino, &name);
                    }
                    Some(st) => {
                        self.drop_cached(&tree, cino);
                        refetch.push(cino);
                        let n = tree.get_mut(cino).expect("exists");
                        n.cached = false;
                        n.meta_dirty = false;
                        n.set_link(None);
                        n.base = Some(Base::of(&st));
                        n.size = st.size;
                        n.mtime_ns = st.mtime_ns;
                        n.mode = st.mode;
                        n.gen += 1;
                        put.push(n.clone());
                        tree.reindex(cino);
                        report.changed += 1;
                        report.invalidate.push(Invalidation::Inode(cino));
                    }
                }
            }
            for (name, st) in share {
                // Renamed or removed here, not yet on the share.
                if touches(&tree.ops, &path.join(&name)) {
                    continue;
                }
                report.invalidate.push(Invalidation::Entry {
                    parent: ino,
                    name: name.clone(),
                });
                report.invalidate.push(Invalidation::Inode(ino));
                let n = Node::from_share(tree.alloc_ino(), ino, name, &st);
                put.push(n.clone());
                tree.insert(n);
                report.added += 1;
            }
        }
        deleted.sort_unstable();
        put.retain(|n| deleted.binary_search(&n.ino).is_err());
        let r = self.persist(|tx| {
            for &i in &deleted {
                journal::delete_node(tx, i)?;
            }
            for n in &put {
                journal::put_node(tx, n)?;
            }
            Ok(())
        });
        drop(tree);
        // Ranged copies of versions the share no longer has (after the tree's lock: a
        // ranged copy's lock comes first).
        for ino in deleted.iter().chain(&refetch) {
            self.drop_partial(*ino);
        }
        if let Err(e) = r {
            report
                .errors
                .push(PendingItem::new("(journal)", Reason::Other, e));
        }
        self.reload_ignore_rules();
        report.duration_ms = start.elapsed().as_millis() as u64;
        info!(
            added = report.added,
            changed = report.changed,
            removed = report.removed,
            kept_local = report.kept_local,
            ms = report.duration_ms,
            "refresh done"
        );
        if let Ok(s) = serde_json::to_string(&report) {
            if let Err(e) = self.journal.lock().set_meta("last_refresh", &s) {
                warn!(error = %e, "could not record the refresh report");
            }
        }
        report
    }

    /// Removes the cached copy of an entry (and below) that the share replaced or removed.
    /// Programs that have the file open keep reading the old copy.
    /// The entry `cino`, named `name` in `parent`, is replaced by what the share has there now.
    fn replace_entry(
        &self,
        tree: &mut Tree,
        (parent, name, cino): (Ino, &Name, Ino),
        (st, owner): (&Stat, Option<(u32, u32)>),
        (put, deleted): (&mut Vec<Node>, &mut Vec<Ino>),
        report: &mut RefreshReport,
    ) {
        let shown = tree.get(cino).and_then(Node::shown);
        self.drop_cached(tree, cino);
        deleted.extend(tree.remove_subtree(cino));
        let mut n = Node::from_share(tree.alloc_ino(), parent, name.clone(), st);
        n.set_owner(owner);
        put.push(n.clone());
        tree.insert(n);
        linked_moved(tree, put, report, shown);
    }

    fn drop_cached(&self, tree: &Tree, ino: Ino) {
        if let Some(p) = tree.path_of(ino) {
            let cache = self.cache_path(&p);
            let r = match fs::symlink_metadata(&cache) {
                Ok(md) if md.is_dir() => fs::remove_dir_all(&cache),
                Ok(_) => fs::remove_file(&cache),
                Err(_) => Ok(()),
            };
            if let Err(e) = r {
                warn!(path = %p, error = %e, "could not drop a stale cached copy");
            }
        }
    }
}

/// No local change at or below `ino`.
/// The name `name` in folder `parent` went (or now means another entry).
fn gone(report: &mut RefreshReport, parent: Ino, name: &str) {
    report.invalidate.push(Invalidation::Entry {
        parent,
        name: name.to_owned(),
    });
    report.invalidate.push(Invalidation::Inode(parent));
}

fn subtree_clean(tree: &Tree, ino: Ino) -> bool {
    std::iter::once(ino).chain(tree.descendants(ino)).all(|i| {
        tree.get(i)
            .is_none_or(|n| n.in_share && !n.content_dirty && !(n.is_dir() && n.meta_dirty))
    })
}

/// After a removal of a name of the hard-linked entry `shown`: the entry changed (its link
/// count; perhaps its representative took another name's place), for the journal and the
/// kernel.
fn linked_moved(
    tree: &mut Tree,
    put: &mut Vec<Node>,
    report: &mut RefreshReport,
    shown: Option<Ino>,
) {
    for i in tree.take_moved() {
        if let Some(n) = tree.get(i) {
            put.push(n.clone());
        }
    }
    if let Some(s) = shown.filter(|s| tree.get(*s).is_some()) {
        report.invalidate.push(Invalidation::Inode(s));
    }
}
