//! Engine scenarios beyond the model: cost of a flush, writes during a flush, shares that
//! cannot keep times, and background retries.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use fs_core::auto_retry::AutoRetry;
use fs_core::{Backing, DirBacking, Engine, EngineOptions, RelPath, RetryPolicy, SetAttr};

mod common;

type Rig = common::FaultyRig;

fn rig(prepare: impl FnOnce(&std::path::Path)) -> Rig {
    common::faulty_rig(prepare, |_| {})
}

use common::write_here as write;

#[test]
fn flush_cost_follows_what_changed_not_the_tree() {
    let r = rig(|share| {
        for d in 0..20 {
            fs::create_dir_all(share.join(format!("d{d}"))).unwrap();
            for f in 0..100 {
                fs::write(share.join(format!("d{d}/f{f}")), "x").unwrap();
            }
        }
    });
    // Know the whole tree (2 000 files), then change one file.
    for d in 0..20 {
        let ino = r
            .engine
            .resolve(&RelPath::new(&format!("d{d}")).unwrap())
            .unwrap();
        assert_eq!(r.engine.readdir(ino).unwrap().len(), 100);
    }
    write(&r.engine, "d7/f3", b"changed");
    let before = r.faults.ops();
    let report = r.engine.flush(None);
    let used = r.faults.ops() - before;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 1);
    assert!(
        used < 20,
        "a flush of one file asked the share {used} times"
    );
    assert_eq!(fs::read(r.share.join("d7/f3")).unwrap(), b"changed");
}

#[test]
fn a_flush_records_its_files_in_a_few_journal_transactions_not_one_per_file() {
    let r = rig(|share| {
        for d in 0..40 {
            fs::create_dir_all(share.join(format!("d{d}"))).unwrap();
            fs::write(share.join(format!("d{d}/f")), "old").unwrap();
        }
    });
    for d in 0..40 {
        write(&r.engine, &format!("d{d}/f"), b"new");
        write(&r.engine, &format!("d{d}/g"), b"created");
    }
    let before = r.engine.journal_commits();
    let report = r.engine.flush(None);
    let used = r.engine.journal_commits() - before;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 80);
    // Recorded before staging, marked ready, recorded as written, folders' times marked to
    // set and then set, the report: a transaction per file would be 160 or more.
    assert!(
        used <= 8,
        "a flush of 80 files in 40 folders committed {used} journal transactions"
    );
    for d in 0..40 {
        assert_eq!(fs::read(r.share.join(format!("d{d}/f"))).unwrap(), b"new");
        assert_eq!(
            fs::read(r.share.join(format!("d{d}/g"))).unwrap(),
            b"created"
        );
    }
    assert_eq!(
        r.engine.flush(None).files_written,
        0,
        "all recorded as written"
    );
}

#[test]
fn a_file_written_during_its_flush_stays_dirty() {
    let r = rig(|_| {});
    write(&r.engine, "log.txt", b"first");
    let root = r.engine.resolve(&RelPath::root()).unwrap();
    let ino = r.engine.lookup(root, "log.txt").unwrap().ino;
    // Open for writing while the flush runs (with FUSE passthrough, writes are not seen).
    let fh = r.engine.open_file(ino, true, false).unwrap();
    let report = r.engine.flush(None);
    assert!(report.is_clean());
    assert!(
        r.engine.status().pending_files > 0,
        "an open writer keeps the file dirty"
    );
    r.engine.write(&fh, 5, b" second").unwrap();
    r.engine.release(fh);
    assert!(r.engine.flush(None).is_clean());
    assert_eq!(r.engine.status().pending_files, 0);
    assert_eq!(fs::read(r.share.join("log.txt")).unwrap(), b"first second");
}

#[test]
fn a_share_that_cannot_keep_times_is_warned_about_once() {
    let r = rig(|share| {
        fs::write(share.join("a.txt"), "a").unwrap();
        fs::write(share.join("b.txt"), "b").unwrap();
    });
    r.faults.refuse_times(libc::EPERM);
    for name in ["a.txt", "b.txt"] {
        let ino = r.engine.resolve(&RelPath::new(name).unwrap()).unwrap();
        r.engine
            .setattr(
                ino,
                SetAttr {
                    owner: None,
                    mtime_ns: Some(1_700_000_000_000_000_000),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    let report = r.engine.flush(None);
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(report.warnings.len(), 1, "{report:?}");
    assert!(report.warnings[0].contains("modification times"));
    // A refusal is different: it stays pending.
    r.faults.refuse_times(libc::EACCES);
    let ino = r.engine.resolve(&RelPath::new("a.txt").unwrap()).unwrap();
    r.engine
        .setattr(
            ino,
            SetAttr {
                owner: None,
                mtime_ns: Some(1_600_000_000_000_000_000),
                ..Default::default()
            },
        )
        .unwrap();
    let report = r.engine.flush(None);
    assert_eq!(report.pending.len(), 1, "{report:?}");
}

#[test]
fn background_retry_writes_only_what_a_flush_left_pending() {
    let r = rig(|_| {});
    write(&r.engine, "step1.csv", b"1");
    r.faults.set_offline(true);
    let report = r.engine.flush(Some("step-1"));
    assert!(
        report.pending.iter().any(|p| p.path == "step1.csv"),
        "{report:?}"
    );
    write(&r.engine, "later.csv", b"not asked for yet");
    let _retry = AutoRetry {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
    }
    .spawn(r.engine.clone());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !r.share.join("step1.csv").exists(),
        "nothing while the share is away"
    );
    r.faults.set_offline(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !r.share.join("step1.csv").exists() {
        assert!(std::time::Instant::now() < deadline, "not retried");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !r.share.join("later.csv").exists(),
        "a retry wrote a change nobody flushed"
    );
    assert!(r.engine.last_retry().is_some_and(|r| r.pending.is_empty()));
}

/// Removing a folder of the share nobody has looked into: it is listed first (empty or not is
/// known only then). This once deadlocked on the engine's own lock.
#[test]
fn a_case_insensitive_lookup_prefers_the_exact_name_then_any_case() {
    // The macFUSE mount's lookups (a volume declared case-insensitive), over a share that is
    // case-sensitive and holds two names differing only in case.
    let r = rig(|share| {
        fs::write(share.join("DATA.csv"), "upper").unwrap();
        fs::write(share.join("data.csv"), "lower").unwrap();
        fs::write(share.join("Notes.txt"), "n").unwrap();
    });
    let e = &r.engine;
    let root = e.resolve(&RelPath::root()).unwrap();
    let ino = |p: &str| e.resolve(&RelPath::new(p).unwrap()).unwrap();
    assert_eq!(
        e.lookup_ignoring_case(root, "data.csv").unwrap().ino,
        ino("data.csv")
    );
    assert_eq!(
        e.lookup_ignoring_case(root, "DATA.csv").unwrap().ino,
        ino("DATA.csv")
    );
    assert_eq!(
        e.lookup_ignoring_case(root, "notes.TXT").unwrap().ino,
        ino("Notes.txt")
    );
    assert!(matches!(
        e.lookup_ignoring_case(root, "missing.txt"),
        Err(fs_core::FsError::NotFound(_))
    ));
    // A plain lookup stays exact.
    assert!(e.lookup(root, "notes.TXT").is_err());
}

#[test]
fn a_folder_never_listed_can_be_removed() {
    let r = rig(|share| {
        fs::create_dir_all(share.join("empty")).unwrap();
        fs::create_dir_all(share.join("full")).unwrap();
        fs::write(share.join("full/f"), "x").unwrap();
    });
    let e = &r.engine;
    let root = e.resolve(&RelPath::root()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let engine = e.clone();
    std::thread::spawn(move || {
        let _ = tx.send((engine.rmdir(root, "empty"), engine.rmdir(root, "full")));
    });
    let (empty, full) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("rmdir of an unlisted folder hangs");
    empty.unwrap();
    assert!(
        matches!(full, Err(fs_core::FsError::NotEmpty(_))),
        "{full:?}"
    );
    assert!(e.resolve(&RelPath::new("full/f").unwrap()).is_ok());
    let report = e.flush(None);
    assert!(report.pending.is_empty(), "{report:?}");
    assert!(!r.share.join("empty").exists());
    assert!(r.share.join("full/f").exists());
}

/// A share that keeps modification times to the whole second, as SFTP does, counts the
/// plain stats, freshness checks and renames it is asked for, and records where temporaries
/// were staged.
struct SecondsShare {
    inner: DirBacking,
    stats: std::sync::atomic::AtomicUsize,
    fresh_checks: std::sync::atomic::AtomicUsize,
    renames: std::sync::atomic::AtomicUsize,
    temps: std::sync::Mutex<Vec<RelPath>>,
}

impl Backing for SecondsShare {
    fn describe(&self) -> String {
        "seconds".into()
    }
    fn stat(&self, p: &RelPath) -> std::io::Result<Option<fs_core::Stat>> {
        self.stats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.stat(p)
    }
    fn stat_fresh(&self, p: &RelPath) -> std::io::Result<Option<fs_core::Stat>> {
        self.fresh_checks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.stat_fresh(p)
    }
    fn list(&self, d: &RelPath) -> std::io::Result<Vec<(String, fs_core::Stat)>> {
        self.inner.list(d)
    }
    fn fetch(&self, p: &RelPath, dest: &std::path::Path) -> std::io::Result<()> {
        self.inner.fetch(p, dest)
    }
    fn open_read(
        &self,
        p: &RelPath,
    ) -> std::io::Result<std::sync::Arc<dyn fs_core::backing::ShareReader>> {
        self.inner.open_read(p)
    }
    fn read_link(&self, p: &RelPath) -> std::io::Result<String> {
        self.inner.read_link(p)
    }
    fn stage(
        &self,
        src: &std::path::Path,
        t: &RelPath,
        mtime: i64,
        mode: u32,
    ) -> std::io::Result<()> {
        self.temps.lock().unwrap().push(t.clone());
        self.inner
            .stage(src, t, mtime - mtime.rem_euclid(1_000_000_000), mode)
    }
    fn stage_symlink(&self, target: &str, t: &RelPath) -> std::io::Result<()> {
        self.inner.stage_symlink(target, t)
    }
    fn rename(&self, a: &RelPath, b: &RelPath) -> std::io::Result<()> {
        self.renames
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.rename(a, b)
    }
    fn rename_noreplace(&self, a: &RelPath, b: &RelPath) -> std::io::Result<()> {
        self.renames
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.rename_noreplace(a, b)
    }
    fn no_replace(&self) -> Option<fs_core::noreplace::NoReplace> {
        self.inner.no_replace()
    }
    fn remove_file(&self, p: &RelPath) -> std::io::Result<()> {
        self.inner.remove_file(p)
    }
    fn remove_dir(&self, p: &RelPath) -> std::io::Result<()> {
        self.inner.remove_dir(p)
    }
    fn create_dir(&self, p: &RelPath) -> std::io::Result<()> {
        self.inner.create_dir(p)
    }
    fn set_mtime(&self, p: &RelPath, mtime: i64) -> std::io::Result<()> {
        self.inner
            .set_mtime(p, mtime - mtime.rem_euclid(1_000_000_000))
    }
    fn set_mode(&self, p: &RelPath, mode: u32) -> std::io::Result<()> {
        self.inner.set_mode(p, mode)
    }
}

/// An engine on a [`SecondsShare`] in a new folder (`share/` in it).
fn seconds_share() -> (tempfile::TempDir, Arc<SecondsShare>, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let share_dir = dir.path().join("share");
    fs::create_dir_all(&share_dir).unwrap();
    let share = Arc::new(SecondsShare {
        inner: DirBacking::new(&share_dir),
        stats: Default::default(),
        fresh_checks: Default::default(),
        renames: Default::default(),
        temps: Default::default(),
    });
    let mut opts = EngineOptions::new(dir.path().join("cache"), "test");
    opts.retry = RetryPolicy::none();
    let e = Engine::open(share.clone(), opts).unwrap();
    (dir, share, e)
}

/// The first file written teaches the flush what the share does to times; later files need
/// no stat after their rename, and a refresh then finds nothing changed on the share.
#[test]
fn a_flush_learns_the_shares_time_resolution_once() {
    let (_dir, share, e) = seconds_share();
    for i in 0..5 {
        let name = format!("f{i}");
        write(&e, &name, b"data");
        let ino = e.resolve(&RelPath::new(&name).unwrap()).unwrap();
        e.setattr(
            ino,
            SetAttr {
                owner: None,
                mtime_ns: Some(1_700_000_000_123_456_789 + i),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let before = share.stats.load(std::sync::atomic::Ordering::SeqCst);
    let report = e.flush(None);
    assert!(
        report.pending.is_empty() && report.warnings.is_empty(),
        "{report:?}"
    );
    let stats = share.stats.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(stats, 1, "stats after renames");
    let refreshed = e.refresh();
    assert!(refreshed.errors.is_empty(), "{refreshed:?}");
    assert_eq!(
        (refreshed.added, refreshed.changed, refreshed.removed),
        (0, 0, 0),
        "{refreshed:?}"
    );
    let again = e.flush(None);
    assert_eq!(again.files_written, 0, "{again:?}");
}

/// 40 new files in one folder: their temporaries go to 8 staging folders inside it, so that a
/// network client's lock on the folder does not make the creates wait on each other; after the
/// flush, the folder holds the 40 files and nothing else.
#[test]
fn many_files_for_one_folder_are_staged_in_several_folders_inside_it() {
    let (dir, share, e) = seconds_share();
    let share_dir = dir.path().join("share");
    fs::create_dir_all(share_dir.join("out")).unwrap();
    for i in 0..40 {
        write(&e, &format!("out/f{i:02}"), format!("file {i}").as_bytes());
    }
    write(&e, "alone", b"one file in its folder");
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 41);

    let temps = share.temps.lock().unwrap().clone();
    let out = RelPath::new("out").unwrap();
    let mut staging: Vec<RelPath> = temps
        .iter()
        .filter(|t| t.parent() != Some(RelPath::root()))
        .map(|t| t.parent().unwrap())
        .collect();
    staging.sort();
    staging.dedup();
    assert_eq!(staging.len(), 8, "{staging:?}");
    for d in &staging {
        assert_eq!(
            d.parent().as_ref(),
            Some(&out),
            "inside the target's folder: {d}"
        );
        assert!(
            fs_core::names::is_temp_name(d.name()),
            "hidden like a temporary: {d}"
        );
    }
    let beside: Vec<&RelPath> = temps
        .iter()
        .filter(|t| t.parent() == Some(RelPath::root()))
        .collect();
    assert_eq!(
        beside.len(),
        1,
        "a lone file is staged beside its target: {beside:?}"
    );

    let mut names: Vec<String> = fs::read_dir(share_dir.join("out"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let want: Vec<String> = (0..40).map(|i| format!("f{i:02}")).collect();
    assert_eq!(names, want, "the staging folders are gone");
    for i in 0..40 {
        assert_eq!(
            fs::read(share_dir.join(format!("out/f{i:02}"))).unwrap(),
            format!("file {i}").as_bytes()
        );
    }
}

/// Every entry below `root`, as `path: content` for files and `path/` for folders.
fn tree_of(root: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if e.file_type().is_dir() {
                format!("{rel}/")
            } else {
                format!(
                    "{rel}: {}",
                    String::from_utf8_lossy(&fs::read(e.path()).unwrap())
                )
            }
        })
        .collect();
    out.sort();
    out
}

/// A folder made here, with 30 files and a folder of 10 more in it, is written under a
/// temporary name and renamed into place once: no rename and no freshness check per file.
/// The share then holds exactly what was written, times and all, and nothing temporary.
#[test]
fn a_new_folder_is_written_whole_and_renamed_into_place_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let (dir, share, e) = seconds_share();
    let share_dir = dir.path().join("share");
    fs::write(share_dir.join("old.csv"), "kept").unwrap();
    let root = e.resolve(&RelPath::root()).unwrap();
    let runs = e.mkdir(root, "runs", 0o755).unwrap().ino;
    e.mkdir(runs, "logs", 0o755).unwrap();
    for i in 0..30 {
        write(
            &e,
            &format!("runs/r{i:02}.csv"),
            format!("run {i}").as_bytes(),
        );
    }
    for i in 0..10 {
        write(
            &e,
            &format!("runs/logs/l{i}.txt"),
            format!("log {i}").as_bytes(),
        );
    }
    write(&e, "old.csv", b"changed");
    let (renames, checks) = (share.renames.load(SeqCst), share.fresh_checks.load(SeqCst));
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 41);
    assert_eq!(report.dirs_created, 2);
    // The folder's rename, and old.csv's two: its share version captured, ours published
    // without replacing (`flush/capture.rs`).
    assert_eq!(share.renames.load(SeqCst) - renames, 3);
    // old.csv's: it was on the share, someone may have changed it since.
    assert_eq!(share.fresh_checks.load(SeqCst) - checks, 1);

    let mut want: Vec<String> = vec![
        "old.csv: changed".into(),
        "runs/".into(),
        "runs/logs/".into(),
    ];
    want.extend((0..30).map(|i| format!("runs/r{i:02}.csv: run {i}")));
    want.extend((0..10).map(|i| format!("runs/logs/l{i}.txt: log {i}")));
    want.sort();
    // Written once: nothing is pending. That flush also removes the old old.csv, which the
    // commit captured and kept until then (a program may have had it open).
    assert_eq!(e.flush(None).files_written, 0);
    assert_eq!(tree_of(&share_dir), want);
    // Each file's time is the one it has here (to the share's second).
    let here = fs::metadata(e.cache_tree().join("runs/r07.csv")).unwrap();
    let there = fs::metadata(share_dir.join("runs/r07.csv")).unwrap();
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&there).unix_seconds(),
        filetime::FileTime::from_last_modification_time(&here).unix_seconds()
    );
    // Written once: nothing is pending, and a refresh finds nothing new on the share.
    assert_eq!(e.flush(None).files_written, 0);
    let refreshed = e.refresh();
    assert_eq!(
        (refreshed.added, refreshed.changed, refreshed.removed),
        (0, 0, 0),
        "the share's copies are known as written: {refreshed:?}"
    );
}

/// A folder of the same name made on the share meanwhile: the new folder cannot be renamed
/// over it, and its files go into the share's folder one by one, beside what is there.
#[test]
fn a_new_folder_whose_name_was_taken_meanwhile_goes_into_the_one_there() {
    let (dir, _share, e) = seconds_share();
    let share_dir = dir.path().join("share");
    let root = e.resolve(&RelPath::root()).unwrap();
    e.mkdir(root, "out", 0o755).unwrap();
    for i in 0..5 {
        write(&e, &format!("out/f{i}"), format!("ours {i}").as_bytes());
    }
    fs::create_dir(share_dir.join("out")).unwrap();
    fs::write(share_dir.join("out/theirs"), "theirs").unwrap();
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 5);
    let mut want: Vec<String> = vec!["out/".into(), "out/theirs: theirs".into()];
    want.extend((0..5).map(|i| format!("out/f{i}: ours {i}")));
    want.sort();
    assert_eq!(tree_of(&share_dir), want);
}

fn set_owner(e: &Engine, path: &str, owner: (u32, u32)) {
    let ino = e.resolve(&RelPath::new(path).unwrap()).unwrap();
    let set = SetAttr {
        owner: Some(owner),
        ..Default::default()
    };
    assert_eq!(e.setattr(ino, set).unwrap().owner, Some(owner));
}

fn owner_of(e: &Engine, path: &str) -> Option<(u32, u32)> {
    let ino = e.resolve(&RelPath::new(path).unwrap()).unwrap();
    e.getattr(ino).unwrap().owner
}

/// Owners given here are written to a share that keeps them (a local folder, as root), for
/// files changed in content and in attributes alone, and for folders.
#[cfg(unix)]
#[test]
fn owners_are_written_back_where_the_share_keeps_them() {
    use std::os::unix::fs::MetadataExt;
    let r = rig(|share| {
        fs::write(share.join("old"), "x").unwrap();
        fs::create_dir(share.join("dir")).unwrap();
    });
    write(&r.engine, "new", b"created here");
    for p in ["old", "new", "dir"] {
        set_owner(&r.engine, p, (1234, 5678));
    }
    let report = r.engine.flush(None);
    assert!(report.pending.is_empty(), "{report:?}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert!(report.warnings.is_empty(), "{report:?}");
        for p in ["old", "new", "dir"] {
            let md = fs::symlink_metadata(r.share.join(p)).unwrap();
            assert_eq!((md.uid(), md.gid()), (1234, 5678), "{p} on the share");
        }
    } else {
        assert_eq!(report.warnings.len(), 1, "{report:?}");
    }
    assert_eq!(owner_of(&r.engine, "new"), Some((1234, 5678)));
}

/// A share that keeps no owners: said once for the whole flush, the files are written all the
/// same, and their owners stay here, across a restart.
#[test]
fn owners_a_share_cannot_keep_are_warned_about_once_and_kept_here() {
    let (dir, _share, e) = seconds_share();
    fs::write(dir.path().join("share/a"), "a").unwrap();
    write(&e, "b", b"b");
    set_owner(&e, "a", (1000, 1000));
    set_owner(&e, "b", (0, 33));
    let report = e.flush(None);
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(report.files_written, 1, "{report:?}");
    // a's owner (with its time and mode), and the folder b was written into.
    assert_eq!(report.attrs_updated, 2, "{report:?}");
    let owners: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("does not keep owners"))
        .collect();
    assert_eq!(owners.len(), 1, "{report:?}");
    assert_eq!(e.flush(None).files_written, 0, "written, not left pending");
    drop(e);
    let share = Arc::new(DirBacking::new(dir.path().join("share")));
    let mut opts = EngineOptions::new(dir.path().join("cache"), "test");
    opts.retry = RetryPolicy::none();
    let e = Engine::open(share, opts).unwrap();
    assert_eq!(owner_of(&e, "a"), Some((1000, 1000)));
    assert_eq!(owner_of(&e, "b"), Some((0, 33)));
}

/// On a share that keeps whole seconds (SFTP), someone else's version with the same size and
/// second as the one a file here derives from looks the same by its stat. The flush tells them
/// apart by content (the hash recorded when the version was fetched), and keeps theirs.
#[test]
fn a_version_of_the_same_size_and_second_is_told_apart_by_content() {
    let (dir, _share, e) = seconds_share();
    let share_dir = dir.path().join("share");
    let at = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    fs::write(share_dir.join("f.csv"), "aaaa\n").unwrap();
    filetime::set_file_mtime(share_dir.join("f.csv"), at).unwrap();
    // Fetched here (its content hash recorded), then a flush teaches the share's resolution.
    let ino = e.resolve(&RelPath::new("f.csv").unwrap()).unwrap();
    let fh = e.open_file(ino, false, false).unwrap();
    e.release(fh);
    write(&e, "g.csv", b"other");
    let g = e.resolve(&RelPath::new("g.csv").unwrap()).unwrap();
    e.setattr(
        g,
        SetAttr {
            mtime_ns: Some(1_700_000_100_123_456_789),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(e.flush(None).is_clean());
    // Ours, and theirs on the share: one byte different, the same size and time as before.
    write(&e, "f.csv", b"aaaa\nours\n");
    both_kept_after_theirs(&e, &share_dir, at, "aaaa\nours\n");
}

/// The same, where a file here is renamed over it and that is all a new process flushes: the
/// rename's capture is judged before any file written there has taught the flush what the
/// share does to times, and content decides then too.
#[test]
fn a_version_of_the_same_size_and_second_is_told_apart_before_the_share_is_learned() {
    let (dir, _share, e) = seconds_share();
    let share_dir = dir.path().join("share");
    let at = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    for (name, content) in [("f.csv", "aaaa\n"), ("g.csv", "gggggg\n")] {
        fs::write(share_dir.join(name), content).unwrap();
        filetime::set_file_mtime(share_dir.join(name), at).unwrap();
    }
    // Fetched here: its content hash recorded.
    let ino = e.resolve(&RelPath::new("f.csv").unwrap()).unwrap();
    let fh = e.open_file(ino, false, false).unwrap();
    e.release(fh);
    e.resolve(&RelPath::new("g.csv").unwrap()).unwrap();
    let root = fs_core::ROOT_INO;
    e.rename(root, "g.csv", root, "f.csv", false).unwrap();
    // Theirs on the share: one byte different, the same size and time as the one replaced.
    both_kept_after_theirs(&e, &share_dir, at, "gggggg\n");
}

/// Puts theirs at `f.csv` on the share (`aaab`: the size and time `at` of the version known
/// here), flushes, and checks that theirs and `ours` are both on the share after the next
/// flush, which removes captured versions of ours, and that one of the two flushes reported
/// the conflict (a removal's or a rename's capture is read back by the second).
fn both_kept_after_theirs(
    e: &Engine,
    share_dir: &std::path::Path,
    at: filetime::FileTime,
    ours: &str,
) {
    fs::write(share_dir.join("f.csv"), "aaab\n").unwrap();
    filetime::set_file_mtime(share_dir.join("f.csv"), at).unwrap();
    let report = e.flush(None);
    let next = e.flush(None);
    assert_eq!(
        report.conflicts.len() + next.conflicts.len(),
        1,
        "{report:?}\n{next:?}"
    );
    let kept: Vec<String> = fs::read_dir(share_dir)
        .unwrap()
        .map(|d| fs::read_to_string(d.unwrap().path()).unwrap_or_default())
        .collect();
    assert!(kept.iter().any(|c| c == "aaab\n"), "{kept:?}");
    assert!(kept.iter().any(|c| c == ours), "{kept:?}");
}
