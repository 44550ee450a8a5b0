//! `kill -9` between each two steps of the commit protocol (`fs_core::crash::POINTS`: staged,
//! captured, judged, published, recorded; for a removal: noted, captured, judged; and the next
//! flush's removal of a captured old version). The mount kills itself at the point
//! (`SIPFS_CRASH_AT`), is started again, and flushes: the name holds a version, every version
//! written (here and by someone else on the share) is on the share, at the name or as a
//! conflict copy, and nothing of sipfs's own is left there.
#![cfg(unix)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use fs_core::crash;
use sipfs_tests::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// The file is written here.
    Changed,
    /// ... and someone else puts a new version on the share before the flush.
    ChangedTheirs,
    /// The file is deleted here.
    Removed,
    RemovedTheirs,
}

const NAME: &str = "data.csv";
const OURS: &[u8] = b"sample,value\nours,2\n";
const THEIRS: &[u8] = b"sample,value\ntheirs,3\n";

/// Every file's content on the share (at names and conflict copies); panics on temporaries
/// and captured versions, which must be gone once flushes have passed.
fn versions_on_share(share: &Path, what: &str) -> (Option<Vec<u8>>, BTreeSet<Vec<u8>>) {
    let mut all = BTreeSet::new();
    for e in fs::read_dir(share).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !fs_core::names::is_temp_name(&name) && !fs_core::names::is_capture_name(&name),
            "{what}: left on the share: {name}"
        );
        if e.file_type().unwrap().is_file() {
            all.insert(fs::read(e.path()).unwrap());
        }
    }
    (fs::read(share.join(NAME)).ok(), all)
}

fn flush(mnt: &Path) -> Option<i32> {
    sipfs(&["flush", mnt.to_str().unwrap()]).status.code()
}

fn crash_at(point: &str, change: Change) {
    let what = format!("crash at {point}, {change:?}");
    eprintln!("--- {what}");
    let s = Scratch::new();
    fs::write(s.share.join(NAME), b"sample,value\nbase,1\n").unwrap();
    filetime::set_file_mtime(
        s.share.join(NAME),
        filetime::FileTime::from_unix_time(1_700_000_000, 0),
    )
    .unwrap();
    let m = MountProc::start_env(&s.share, &s.mnt, &s.cache, &[], &[(crash::ENV, point)]);
    assert!(!fs::read(s.mnt.join(NAME)).unwrap().is_empty());
    match change {
        Change::Changed | Change::ChangedTheirs => fs::write(s.mnt.join(NAME), OURS).unwrap(),
        Change::Removed | Change::RemovedTheirs => fs::remove_file(s.mnt.join(NAME)).unwrap(),
    }
    if matches!(change, Change::ChangedTheirs | Change::RemovedTheirs) {
        // As an editor saves: a new file put in place, with its own time.
        let tmp = s.share.join("theirs.tmp");
        fs::write(&tmp, THEIRS).unwrap();
        filetime::set_file_mtime(&tmp, filetime::FileTime::from_unix_time(1_800_000_000, 5))
            .unwrap();
        fs::rename(&tmp, s.share.join(NAME)).unwrap();
    }
    // Points of the removal of captured versions come in the flush after the one that
    // captured them.
    let mnt = s.mnt.clone();
    let flusher = std::thread::spawn(move || {
        flush(&mnt);
        flush(&mnt);
    });
    m.wait_killed(Duration::from_secs(60));
    let _ = flusher.join();

    let m = s.mount(&[]);
    let first = flush(&s.mnt);
    assert!(
        matches!(first, Some(0) | Some(4)),
        "{what}: the flush after the restart exited {first:?}"
    );
    // The next flush removes captured old versions of ours.
    assert_eq!(flush(&s.mnt), Some(0), "{what}: the flush after that");
    let (at_name, all) = versions_on_share(&s.share, &what);
    match change {
        Change::Changed => {
            assert_eq!(at_name.as_deref(), Some(OURS), "{what}: ours at the name");
            assert_eq!(all.len(), 1, "{what}: nothing beside it: {all:?}");
        }
        Change::ChangedTheirs => {
            assert!(at_name.is_some(), "{what}: the name holds a version");
            assert!(all.contains(OURS), "{what}: ours is lost: {all:?}");
            assert!(all.contains(THEIRS), "{what}: theirs is lost: {all:?}");
        }
        Change::Removed => {
            assert_eq!(at_name, None, "{what}: removed");
            assert!(all.is_empty(), "{what}: nothing left: {all:?}");
        }
        Change::RemovedTheirs => {
            assert!(all.contains(THEIRS), "{what}: theirs is lost: {all:?}");
        }
    }
    // What the mount shows at the name is what the share holds there.
    assert_eq!(
        fs::read(s.mnt.join(NAME)).ok(),
        at_name.filter(|_| change != Change::RemovedTheirs),
        "{what}: the mount and the share differ"
    );
    assert_eq!(m.stop().code(), Some(0), "{what}: unmount");
}

#[test]
fn kill9_between_the_steps_of_a_commit() {
    for point in crash::POINTS.iter().filter(|p| p.starts_with("commit.")) {
        crash_at(point, Change::Changed);
        crash_at(point, Change::ChangedTheirs);
    }
}

#[test]
fn kill9_between_the_steps_of_a_removal() {
    for point in crash::POINTS.iter().filter(|p| p.starts_with("remove.")) {
        crash_at(point, Change::Removed);
        crash_at(point, Change::RemovedTheirs);
    }
}

#[test]
fn kill9_while_a_captured_old_version_is_removed() {
    for point in crash::POINTS.iter().filter(|p| p.starts_with("captured.")) {
        crash_at(point, Change::Changed);
        crash_at(point, Change::Removed);
    }
}
