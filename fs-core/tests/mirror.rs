//! Scenario tests of mirror mode: what the model test leaves out (conflicts, a vanished folder,
//! the request file) and what it cannot see (that a renamed folder stays one rename).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_core::mirror::requests::{self, FlushProgress};
use fs_core::{DirBacking, EngineOptions, Mirror, MirrorError, RetryPolicy};

struct Rig {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    cache: PathBuf,
    folder: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let share = tmp.path().join("share");
        fs::create_dir_all(share.join("results/run1")).unwrap();
        fs::write(share.join("results/run1/table.csv"), b"a,b\n1,2\n").unwrap();
        fs::write(share.join("results/run1/log.txt"), b"started\n").unwrap();
        fs::write(share.join("workflow_state.json"), b"{\"step\": 0}").unwrap();
        Rig {
            cache: tmp.path().join("cache"),
            folder: tmp.path().join("folder"),
            _tmp: tmp,
            share,
        }
    }

    fn open(&self) -> Result<Mirror, MirrorError> {
        let mut opts = EngineOptions::new(&self.cache, "scenario-share");
        opts.retry = RetryPolicy::none();
        Mirror::open(Arc::new(DirBacking::new(&self.share)), opts, &self.folder)
    }

    fn filled(&self) -> Mirror {
        let m = self.open().expect("opens");
        let r = m.sync(&|_| {}).expect("syncs");
        assert!(r.errors.is_empty(), "{r:?}");
        m
    }
}

fn read(p: impl AsRef<Path>) -> String {
    String::from_utf8(fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_file_changed_on_both_sides_keeps_both_versions() {
    let rig = Rig::new();
    let m = rig.filled();
    fs::write(
        rig.folder.join("workflow_state.json"),
        b"{\"step\": 1, \"by\": \"us\"}",
    )
    .unwrap();
    fs::write(
        rig.share.join("workflow_state.json"),
        b"{\"step\": 7, \"by\": \"them\"}",
    )
    .unwrap();
    // The refresh must not replace our change with theirs.
    m.sync(&|_| {}).unwrap();
    assert_eq!(
        read(rig.folder.join("workflow_state.json")),
        "{\"step\": 1, \"by\": \"us\"}"
    );
    let r = m.flush(Some("step-1")).unwrap();
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert_eq!(
        read(rig.share.join("workflow_state.json")),
        "{\"step\": 1, \"by\": \"us\"}"
    );
    let kept = rig.share.join(&r.conflicts[0].kept_as);
    assert_eq!(read(&kept), "{\"step\": 7, \"by\": \"them\"}");
    // Theirs shows up in the folder at the next refresh.
    m.sync(&|_| {}).unwrap();
    assert_eq!(
        read(rig.folder.join(&r.conflicts[0].kept_as)),
        "{\"step\": 7, \"by\": \"them\"}"
    );
}

#[test]
fn a_refresh_racing_with_a_writer_never_replaces_the_writers_file() {
    let rig = Rig::new();
    let m = rig.filled();
    // Written after the last scan, while the refresh runs (the engine's refresh is called
    // directly: no scan has recorded the change).
    fs::write(
        rig.folder.join("results/run1/log.txt"),
        b"started\nstep 2\n",
    )
    .unwrap();
    fs::write(rig.share.join("results/run1/log.txt"), b"theirs\n").unwrap();
    fs::remove_file(rig.share.join("results/run1/table.csv")).unwrap();
    fs::write(rig.folder.join("results/run1/table.csv"), b"a,b\n9,9\n").unwrap();
    let r = m.engine().refresh();
    assert_eq!(r.kept_local, 2, "{r:?}");
    assert_eq!(
        read(rig.folder.join("results/run1/log.txt")),
        "started\nstep 2\n"
    );
    assert_eq!(
        read(rig.folder.join("results/run1/table.csv")),
        "a,b\n9,9\n"
    );
    // The flush then settles both: ours written, theirs kept beside.
    let f = m.flush(None).unwrap();
    assert_eq!(f.conflicts.len(), 1, "{f:?}");
    assert_eq!(read(rig.share.join("results/run1/table.csv")), "a,b\n9,9\n");
}

#[test]
fn a_vanished_folder_is_an_error_not_a_mass_deletion() {
    let rig = Rig::new();
    let m = rig.filled();
    fs::write(rig.folder.join("new.txt"), b"new").unwrap();
    m.scan().unwrap();
    fs::remove_dir_all(&rig.folder).unwrap();
    match m.flush(None) {
        Err(MirrorError::Gone { .. }) => {}
        other => panic!("expected Gone, got {other:?}"),
    }
    assert_eq!(read(rig.share.join("results/run1/table.csv")), "a,b\n1,2\n");
    drop(m);
    // Reopening says the same, and still deletes nothing.
    assert!(matches!(rig.open(), Err(MirrorError::Gone { .. })));
    assert!(rig.share.join("workflow_state.json").exists());
}

#[test]
fn a_folder_with_files_is_not_taken_over() {
    let rig = Rig::new();
    fs::create_dir_all(&rig.folder).unwrap();
    fs::write(rig.folder.join("mine.txt"), b"precious").unwrap();
    assert!(matches!(rig.open(), Err(MirrorError::NotAMirror { .. })));
    assert_eq!(read(rig.folder.join("mine.txt")), "precious");
}

#[test]
fn a_renamed_folder_is_one_rename_on_the_share() {
    let rig = Rig::new();
    let m = rig.filled();
    fs::rename(
        rig.folder.join("results/run1"),
        rig.folder.join("results/run2"),
    )
    .unwrap();
    let r = m.flush(Some("rename")).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.renamed, 1, "{r:?}");
    assert_eq!(r.files_written, 0, "files copied instead of renamed: {r:?}");
    assert_eq!(read(rig.share.join("results/run2/log.txt")), "started\n");
    assert!(!rig.share.join("results/run1").exists());
}

#[test]
fn a_request_in_the_control_file_is_served_and_answered() {
    let rig = Rig::new();
    let m = rig.filled();
    let control = rig.folder.join(".sipfs/control");
    assert_eq!(read(&control), "", "a new mirror has an empty control file");
    let progress = FlushProgress::default();
    // Nothing asked: nothing done.
    assert_eq!(requests::poll_once(&m, &progress), None);
    fs::create_dir_all(rig.folder.join(".workflow_status")).unwrap();
    fs::write(rig.folder.join(".workflow_status/step-1.done"), b"").unwrap();
    fs::write(&control, b"flush step-1\n").unwrap();
    assert!(
        !rig.share.join(".workflow_status/step-1.done").exists(),
        "nothing reaches the share before the request"
    );
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("ok flush step-1"), "{answer}");
    assert!(rig.share.join(".workflow_status/step-1.done").exists());
    assert_eq!(
        read(&control),
        "",
        "the request is acknowledged by emptying the file"
    );
    assert!(read(rig.folder.join(".sipfs/result")).starts_with("ok flush step-1"));
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.folder.join(".sipfs/status")).unwrap()).unwrap();
    assert_eq!(status["last_flush"]["label"], "step-1");
    // The control folder itself never reaches the share.
    assert!(!rig.share.join(".sipfs").exists());
    // Before a step: pull in what others changed.
    fs::write(rig.share.join("results/colleague.csv"), b"c\n").unwrap();
    fs::write(&control, b"refresh\n").unwrap();
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("ok refresh"), "{answer}");
    assert_eq!(read(rig.folder.join("results/colleague.csv")), "c\n");
    // status: the folder is scanned, so the status file lists what is pending.
    fs::write(rig.folder.join("results/mine.csv"), b"m\n").unwrap();
    fs::write(&control, b"status\n").unwrap();
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("ok status: 1 file(s)"), "{answer}");
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(rig.folder.join(".sipfs/status")).unwrap()).unwrap();
    assert_eq!(
        status["pending_paths"],
        serde_json::json!(["results/mine.csv"])
    );
    // A bad request is answered with an error, and emptied too.
    fs::write(&control, b"format c:\n").unwrap();
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("error"), "{answer}");
    assert_eq!(read(&control), "");
}

#[test]
fn changes_made_while_nothing_serves_the_folder_are_flushed_later() {
    let rig = Rig::new();
    drop(rig.filled());
    // sipfs is not running: a program changes the folder anyway.
    fs::write(
        rig.folder.join("results/run1/table.csv"),
        b"a,b\n1,2\n3,4\n",
    )
    .unwrap();
    fs::remove_file(rig.folder.join("results/run1/log.txt")).unwrap();
    let m = rig.open().unwrap();
    let r = m.flush(Some("later")).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(
        read(rig.share.join("results/run1/table.csv")),
        "a,b\n1,2\n3,4\n"
    );
    assert!(!rig.share.join("results/run1/log.txt").exists());
}

#[test]
fn a_change_recorded_without_its_stamp_and_then_deleted_leaves_nothing_pending() {
    let rig = Rig::new();
    let m = rig.filled();
    // A crash between recording a new file and recording its stamp, as the engine sees it.
    fs::write(rig.folder.join("results/tmp-journal"), b"x").unwrap();
    m.engine()
        .adopt_created(&fs_core::RelPath::new("results/tmp-journal").unwrap(), None)
        .unwrap();
    fs::remove_file(rig.folder.join("results/tmp-journal")).unwrap();
    let r = m.flush(None).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert!(!rig.share.join("results/tmp-journal").exists());
    assert_eq!(m.engine().status().pending_files, 0);
}

/// A mirror folder on another file system than its cache (the folder on one disk, the cache
/// on another): every file is fetched whole into the folder. Fetches were written in the
/// cache and renamed into the folder, which fails across file systems (EXDEV): the folder
/// was left with almost nothing in it.
#[cfg(target_os = "linux")]
#[test]
fn a_mirror_folder_on_another_file_system_than_its_cache_is_filled() {
    use std::os::unix::fs::MetadataExt;
    let rig = Rig::new();
    // /dev/shm is a tmpfs on Linux, the test's folder is not.
    let other = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let cache = other.path().join("cache");
    assert_ne!(
        fs::metadata(other.path()).unwrap().dev(),
        fs::metadata(rig.folder.parent().unwrap()).unwrap().dev(),
        "this test needs the cache and the folder on two file systems"
    );
    let mut opts = EngineOptions::new(&cache, "scenario-share");
    opts.retry = RetryPolicy::none();
    let m = Mirror::open(Arc::new(DirBacking::new(&rig.share)), opts, &rig.folder).unwrap();
    let r = m.sync(&|_| {}).expect("syncs");
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        read(rig.folder.join("results/run1/table.csv")),
        "a,b\n1,2\n"
    );
    assert_eq!(read(rig.folder.join("results/run1/log.txt")), "started\n");
    assert_eq!(
        read(rig.folder.join("workflow_state.json")),
        "{\"step\": 0}"
    );
    // And back: a change made in the folder reaches the share.
    fs::write(rig.folder.join("results/run1/log.txt"), b"started\ndone\n").unwrap();
    let report = m.flush(None).expect("flushes");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        read(rig.share.join("results/run1/log.txt")),
        "started\ndone\n"
    );
}
