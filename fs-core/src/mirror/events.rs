//! What one OS notification tells a scan of the mirror folder to look at, for each watcher
//! the `notify` crate puts behind [`notify::RecommendedWatcher`]: inotify (Linux),
//! ReadDirectoryChangesW (Windows) and FSEvents (macOS). Pure, so that every backend's mapping
//! is tested on every platform (`watch.rs` does the watching).
//!
//! FSEvents differs from the other two in what `watch.rs` must design around:
//! - it **merges** changes: one record carries every flag a path collected within a moment
//!   (created, written, renamed, removed at once), and notify 8 turns it into one event per
//!   flag, in a fixed order that says nothing of what happened first. So no single event is
//!   believed about what the entry is now: whatever any of them says appeared, went or moved
//!   makes the path's tree scanned, and the scan looks at what is there;
//! - its `Rescan` (`kFSEventStreamEventFlagMustScanSubDirs`, also set when the kernel or the
//!   process dropped events) names the folder below which events were lost: that subtree is
//!   scanned, not the whole folder, and the stream goes on (it is not restarted);
//! - it watches the whole tree by path, so folders made later need no watch of their own;
//!   notify 8 stops and restarts the stream to add or remove a watch, and loses what was
//!   queued meanwhile (notify#993). So with FSEvents the one watch of the root is never
//!   touched after it starts.

use std::path::PathBuf;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};

/// What a notification says the next scan must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// That entry alone: its content, times or mode changed, which changes neither its folder
    /// nor what is beside it.
    Entry(PathBuf),
    /// The entry's folder, and everything below the entry: something appeared, went or moved
    /// there (a folder moved in brings a tree no notification named).
    Tree(PathBuf),
    /// The OS lost events below this folder (FSEvents's `Rescan`): it is scanned whole. When
    /// it is the mirror folder itself, or above it, that is a walk of everything.
    Subtree(PathBuf),
    /// Events were lost and the OS did not say where: only a walk of everything is right.
    Lost,
}

/// The watcher behind the notifications, as far as the mapping and `watch.rs` differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// inotify and ReadDirectoryChangesW: a `Rescan` (an overflowed queue) names no folder.
    /// Watches are per folder (inotify): new folders are watched as they come.
    PerFolder,
    /// macOS's FSEvents: see the module's comment.
    FsEvents,
}

impl Backend {
    /// The backend `notify::RecommendedWatcher` is on this OS.
    pub(crate) fn this_os() -> Backend {
        if cfg!(target_os = "macos") {
            Backend::FsEvents
        } else {
            Backend::PerFolder
        }
    }

    /// Whether folders that appear get a watch of their own (`Watch::watch_new_folders`).
    /// FSEvents's one watch covers them, and adding one would lose queued events.
    pub(crate) fn watches_new_folders(self) -> bool {
        self == Backend::PerFolder
    }

    /// Whether a watcher that lost events is replaced by a new one. inotify's watches of
    /// folders made while events were dropped may never have been added; FSEvents's stream
    /// keeps flowing, and restarting it would itself lose what comes meanwhile.
    pub(crate) fn reopens_after_loss(self) -> bool {
        self == Backend::PerFolder
    }
}

/// What `ev` says to look at, each of its paths once.
pub(crate) fn notices(ev: &notify::Event, backend: Backend) -> Vec<Notice> {
    if ev.need_rescan() {
        return match backend {
            // FSEvents names the folder whose subtree lost events (the root, or above it,
            // when the kernel dropped them wholesale: the caller walks everything then).
            Backend::FsEvents if !ev.paths.is_empty() => {
                ev.paths.iter().cloned().map(Notice::Subtree).collect()
            }
            _ => vec![Notice::Lost],
        };
    }
    let changes_nothing = matches!(
        ev.kind,
        EventKind::Access(AccessKind::Open(_))
            | EventKind::Access(AccessKind::Read)
            | EventKind::Access(AccessKind::Close(AccessMode::Read))
            | EventKind::Access(AccessKind::Close(AccessMode::Execute))
            | EventKind::Access(AccessKind::Any)
    );
    if changes_nothing {
        // Opens and reads change nothing (and the scan's and flush's own reads would bring
        // their folders into every next scope).
        return Vec::new();
    }
    let entry_only = matches!(
        ev.kind,
        EventKind::Access(_)
            | EventKind::Modify(ModifyKind::Data(_))
            | EventKind::Modify(ModifyKind::Metadata(_))
    );
    ev.paths
        .iter()
        .cloned()
        .map(if entry_only {
            Notice::Entry
        } else {
            Notice::Tree
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, Flag, MetadataKind, RemoveKind, RenameMode};
    use notify::Event;

    fn at(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    /// One FSEvents record, as notify 8's FSEvents backend turns it into events: one per flag,
    /// in the order `translate_flags` checks them (created, removed, renamed, metadata,
    /// written), all with the record's path.
    fn fsevents_record(path: &str, created: bool, removed: bool, renamed: bool) -> Vec<Event> {
        let mut evs = Vec::new();
        if created {
            evs.push(at(EventKind::Create(CreateKind::File), path));
        }
        if removed {
            evs.push(at(EventKind::Remove(RemoveKind::File), path));
        }
        if renamed {
            evs.push(at(
                EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
                path,
            ));
        }
        evs.push(at(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            path,
        ));
        evs.push(at(
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            path,
        ));
        evs
    }

    fn all(evs: &[Event], backend: Backend) -> Vec<Notice> {
        evs.iter().flat_map(|e| notices(e, backend)).collect()
    }

    #[test]
    fn a_write_is_looked_at_alone_and_a_read_not_at_all() {
        for b in [Backend::PerFolder, Backend::FsEvents] {
            let w = at(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                "/m/a/f",
            );
            assert_eq!(notices(&w, b), vec![Notice::Entry("/m/a/f".into())]);
            let t = at(
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)),
                "/m/f",
            );
            assert_eq!(notices(&t, b), vec![Notice::Entry("/m/f".into())]);
            let r = at(
                EventKind::Access(AccessKind::Open(AccessMode::Read)),
                "/m/a/f",
            );
            assert!(notices(&r, b).is_empty());
        }
    }

    #[test]
    fn what_appears_goes_or_moves_has_its_tree_looked_at() {
        for b in [Backend::PerFolder, Backend::FsEvents] {
            for kind in [
                EventKind::Create(CreateKind::Folder),
                EventKind::Remove(RemoveKind::Any),
                EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
                EventKind::Any,
            ] {
                let e = at(kind, "/m/d");
                assert_eq!(
                    notices(&e, b),
                    vec![Notice::Tree("/m/d".into())],
                    "{kind:?}"
                );
            }
        }
        // inotify pairs a rename's two names in one event: both trees.
        let both = Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
            .add_path("/m/old".into())
            .add_path("/m/new".into());
        assert_eq!(
            notices(&both, Backend::PerFolder),
            vec![Notice::Tree("/m/old".into()), Notice::Tree("/m/new".into())]
        );
    }

    #[test]
    fn a_merged_fsevents_record_is_a_tree_whatever_its_flags_order() {
        // Written, then renamed away and made again within one moment: the record's data
        // flag comes last, but the entry may be new or gone, so its tree is looked at.
        let merged = all(
            &fsevents_record("/m/d/f", true, true, true),
            Backend::FsEvents,
        );
        assert!(
            merged.contains(&Notice::Tree("/m/d/f".into())),
            "{merged:?}"
        );
        assert!(!merged.contains(&Notice::Lost));
        // A record that only says written: the entry alone.
        let written = all(
            &fsevents_record("/m/d/f", false, false, false),
            Backend::FsEvents,
        );
        assert!(
            written.iter().all(|n| *n == Notice::Entry("/m/d/f".into())),
            "{written:?}"
        );
    }

    #[test]
    fn fsevents_rescan_scans_its_subtree_and_an_overflow_everything() {
        let dropped = at(EventKind::Other, "/m/big/sub")
            .set_flag(Flag::Rescan)
            .set_info("rescan: kernel dropped");
        assert_eq!(
            notices(&dropped, Backend::FsEvents),
            vec![Notice::Subtree("/m/big/sub".into())]
        );
        // inotify's overflow names no folder; with a path or not, a per-folder watcher's
        // rescan is a walk of everything.
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(notices(&overflow, Backend::PerFolder), vec![Notice::Lost]);
        assert_eq!(notices(&dropped, Backend::PerFolder), vec![Notice::Lost]);
        assert_eq!(notices(&overflow, Backend::FsEvents), vec![Notice::Lost]);
    }

    #[test]
    fn fsevents_keeps_its_one_watch() {
        assert!(!Backend::FsEvents.watches_new_folders());
        assert!(!Backend::FsEvents.reopens_after_loss());
        assert!(Backend::PerFolder.watches_new_folders());
        assert!(Backend::PerFolder.reopens_after_loss());
        assert_eq!(
            Backend::this_os(),
            if cfg!(target_os = "macos") {
                Backend::FsEvents
            } else {
                Backend::PerFolder
            }
        );
    }
}
