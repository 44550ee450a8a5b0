//! Mirror flushes that walk only what the OS said changed (`mirror/watch.rs`), on a real
//! folder with real notifications: what they record must be what a walk of the whole folder
//! records. The model test (`mirror_model.rs`) runs every case with notifications on as well.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use fs_core::{DirBacking, EngineOptions, Mirror, RetryPolicy};

mod common;
use common::snapshot as tree;

struct Rig {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    cache: PathBuf,
    folder: PathBuf,
}

const DIRS: usize = 20;
const PER_DIR: usize = 100;

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        for d in 0..DIRS {
            fs::create_dir_all(share.join(format!("d{d:02}"))).unwrap();
            for f in 0..PER_DIR {
                fs::write(share.join(format!("d{d:02}/f{f:03}")), format!("{d}/{f}")).unwrap();
            }
        }
        Rig {
            cache: tmp.path().join("cache"),
            folder: tmp.path().join("folder"),
            _tmp: tmp,
            share,
        }
    }

    fn open(&self) -> Mirror {
        let mut opts = EngineOptions::new(&self.cache, "watch-share");
        opts.retry = RetryPolicy::none();
        Mirror::open(Arc::new(DirBacking::new(&self.share)), opts, &self.folder).unwrap()
    }
}

#[test]
fn a_watched_flush_walks_what_changed_and_misses_nothing() {
    let rig = Rig::new();
    let m = rig.open();
    m.watch_changes();
    m.sync(&|_| {}).unwrap();
    let f = &rig.folder;

    // A step's changes, of every kind the scan records.
    fs::write(f.join("d05/f010"), b"rewritten").unwrap();
    fs::write(f.join("d07/new.csv"), b"new").unwrap();
    fs::create_dir_all(f.join("newdir/sub")).unwrap();
    fs::write(f.join("newdir/sub/x"), b"made right after its folder").unwrap();
    fs::rename(f.join("d01/f001"), f.join("d02/moved")).unwrap();
    fs::rename(f.join("d03"), f.join("d03-renamed")).unwrap();
    fs::write(f.join("d03-renamed/f050"), b"changed after the move").unwrap();
    fs::remove_file(f.join("d04/f004")).unwrap();
    filetime::set_file_mtime(
        f.join("d06/f006"),
        filetime::FileTime::from_unix_time(1e9 as i64, 0),
    )
    .unwrap();
    fs::write(f.join("top.json"), b"{}").unwrap();

    let scan = m.scan().unwrap();
    assert!(!scan.full, "{scan:?}");
    assert!(
        scan.entries < DIRS * PER_DIR / 2,
        "looked at {} entries of {}",
        scan.entries,
        DIRS * PER_DIR
    );
    // Exact counts depend on the file system: a removed file's inode number reused by a new
    // one reads as a rename and a change. What must hold is the outcome, checked below.
    assert!(scan.renamed >= 2, "{scan:?}");
    assert!(scan.created >= 4 && scan.changed >= 3, "{scan:?}");

    let r = m.flush(None).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(tree(&rig.share), tree(&rig.folder));

    // The check: a walk of everything finds nothing the notifications missed.
    m.rescan_all();
    let all = m.scan().unwrap();
    assert!(all.full);
    assert!(!all.found_anything(), "{all:?}");
    // And a flush with nothing changed looks at nothing.
    let idle = m.scan().unwrap();
    assert!(!idle.full);
    assert_eq!(idle.entries, 0, "{idle:?}");
}

#[test]
fn written_files_are_looked_at_alone_not_with_their_folders() {
    let rig = Rig::new();
    let m = rig.open();
    m.watch_changes();
    m.sync(&|_| {}).unwrap();
    let _ = m.scan().unwrap();
    // 40 files rewritten in place and 10 with only a new time, spread over every folder.
    for i in 0..50 {
        let p = rig.folder.join(format!("d{:02}/f{:03}", i % DIRS, i * 2));
        if i < 40 {
            fs::write(&p, format!("step {i}")).unwrap();
        } else {
            filetime::set_file_mtime(&p, filetime::FileTime::from_unix_time(1e9 as i64, 0))
                .unwrap();
        }
    }
    let scan = m.scan().unwrap();
    assert!(!scan.full, "{scan:?}");
    assert_eq!(scan.entries, 50, "one stat per written file: {scan:?}");
    assert_eq!(scan.changed, 50, "{scan:?}");
    let r = m.flush(None).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(tree(&rig.share), tree(&rig.folder));
    m.rescan_all();
    let all = m.scan().unwrap();
    assert!(!all.found_anything(), "{all:?}");
}

#[test]
fn without_a_watch_every_scan_walks_the_whole_folder() {
    let rig = Rig::new();
    let m = rig.open();
    m.sync(&|_| {}).unwrap();
    fs::write(rig.folder.join("d00/f000"), b"changed").unwrap();
    let scan = m.scan().unwrap();
    assert!(scan.full);
    assert_eq!(scan.changed, 1);
    assert!(scan.entries > DIRS * PER_DIR);
}

#[test]
fn changes_made_before_the_watch_started_are_found_by_its_first_walk() {
    let rig = Rig::new();
    {
        let m = rig.open();
        m.sync(&|_| {}).unwrap();
    }
    // Made while nothing served the folder.
    fs::write(rig.folder.join("d09/f009"), b"offline edit").unwrap();
    let m = rig.open();
    m.watch_changes();
    let first = m.scan().unwrap();
    assert!(first.full);
    assert_eq!(first.changed, 1, "{first:?}");
    fs::write(rig.folder.join("d09/f010"), b"watched edit").unwrap();
    let next = m.scan().unwrap();
    assert!(!next.full);
    assert_eq!(next.changed, 1, "{next:?}");
    let r = m.flush(None).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        fs::read(rig.share.join("d09/f009")).unwrap(),
        b"offline edit"
    );
    assert_eq!(
        fs::read(rig.share.join("d09/f010")).unwrap(),
        b"watched edit"
    );
}

#[test]
fn a_folder_removed_and_made_again_is_still_watched() {
    let rig = Rig::new();
    let m = rig.open();
    m.watch_changes();
    m.sync(&|_| {}).unwrap();
    let f = &rig.folder;
    for round in 0..5 {
        // What a step that starts from a clean output folder does.
        fs::remove_dir_all(f.join("d05")).unwrap();
        fs::create_dir(f.join("d05")).unwrap();
        fs::write(f.join(format!("d05/first{round}")), b"1").unwrap();
        let s = m.scan().unwrap();
        assert!(!s.full, "{s:?}");
        // Written after the scan: only notifications from the new folder can tell.
        fs::write(f.join(format!("d05/later{round}")), b"2").unwrap();
        let r = m.flush(None).unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(
            fs::read(rig.share.join(format!("d05/later{round}"))).unwrap(),
            b"2",
            "round {round}"
        );
        fs::write(f.join(format!("d05/third{round}")), b"3").unwrap();
        let r = m.flush(None).unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert!(
            rig.share.join(format!("d05/third{round}")).exists(),
            "round {round}: a write two scans after the folder was made again was missed"
        );
    }
    assert_eq!(tree(&rig.share), tree(&rig.folder));
}

#[test]
fn sipfs_own_writes_are_not_taken_for_the_users() {
    // A sync writes others' changes into the folder, and the OS notifies them like anyone's
    // (FSEvents on macOS, inotify here). A later scan looks at them and must find nothing the
    // user did: no change recorded, nothing written back, no conflict.
    let rig = Rig::new();
    let m = rig.open();
    m.watch_changes();
    m.sync(&|_| {}).unwrap();
    let s = &rig.share;
    fs::write(s.join("d05/f010"), b"changed on the share").unwrap();
    fs::write(s.join("d08/new-on-share"), b"new").unwrap();
    fs::remove_file(s.join("d09/f009")).unwrap();
    fs::create_dir_all(s.join("made-on-share/sub")).unwrap();
    fs::write(s.join("made-on-share/sub/x"), b"x").unwrap();
    let before = tree(s);
    m.sync(&|_| {}).unwrap();
    assert_eq!(
        fs::read(rig.folder.join("d05/f010")).unwrap(),
        b"changed on the share"
    );
    let scan = m.scan().unwrap();
    assert!(
        !scan.found_anything(),
        "sipfs's own writes taken for changes: {scan:?}"
    );
    let report = m.flush(None).unwrap();
    assert_eq!(report.files_written, 0, "{report:?}");
    assert!(
        report.pending.is_empty() && report.conflicts.is_empty(),
        "{report:?}"
    );
    assert_eq!(tree(s), before, "the share is as others left it");
}
