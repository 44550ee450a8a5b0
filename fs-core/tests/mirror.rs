//! Scenario tests of mirror mode: what the model test leaves out (conflicts, a vanished folder,
//! the request file) and what it cannot see (that a renamed folder stays one rename).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use fs_core::mirror::requests::{self, FlushProgress};
use fs_core::{Backing, DirBacking, EngineOptions, Mirror, MirrorError, RelPath, RetryPolicy};

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
    assert!(
        read(&control).starts_with("ok flush step-1"),
        "the answer replaces the request: {}",
        read(&control)
    );
    // An answer is not a request: asked again, nothing is done.
    assert_eq!(requests::poll_once(&m, &progress), None);
    let status: serde_json::Value =
        serde_json::from_slice(&fs::read(m.status_path()).unwrap()).unwrap();
    assert_eq!(status["last_flush"]["label"], "step-1");
    // The folder keeps nothing of sipfs's own but the control file.
    assert_eq!(sipfs_entries(&rig.folder), ["control"]);
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
    // The status reaches the container that asked, after the answer's line.
    let text = read(&control);
    let (line, json) = text.split_once('\n').unwrap();
    assert!(line.starts_with("ok status: 1 file(s)"), "{line}");
    let status: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        status["pending_paths"],
        serde_json::json!(["results/mine.csv"])
    );
    // A bad request is answered with an error.
    fs::write(&control, b"format c:\n").unwrap();
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("error"), "{answer}");
    assert!(read(&control).starts_with("error"));
    assert_eq!(requests::poll_once(&m, &progress), None);
}

/// The names in the folder's `.sipfs/`.
fn sipfs_entries(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(folder.join(".sipfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_mirror_keeps_working_when_its_sipfs_folder_is_removed_or_restored() {
    let rig = Rig::new();
    let m = rig.filled();
    m.watch_changes();
    let progress = FlushProgress::default();
    let control = rig.folder.join(".sipfs/control");
    fs::write(&control, b"flush step-1\n").unwrap();
    requests::poll_once(&m, &progress).expect("served");
    let snapshot = fs::read(&control).unwrap();
    assert!(String::from_utf8_lossy(&snapshot).starts_with("ok flush step-1"));
    // An undo removes `.sipfs/` (created after its manifest): the next flush still scans,
    // writes and answers.
    fs::remove_dir_all(rig.folder.join(".sipfs")).unwrap();
    fs::write(rig.folder.join("results/after-undo.csv"), b"u\n").unwrap();
    let r = m.flush(Some("step-2")).unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(read(rig.share.join("results/after-undo.csv")), "u\n");
    assert_eq!(requests::poll_once(&m, &progress), None);
    assert_eq!(read(&control), "", "the control file is made again");
    // A restore brings back the old answer, without its permissions: it is not taken for a
    // request, and the file is writable to all again.
    fs::write(&control, &snapshot).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&control, fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert_eq!(requests::poll_once(&m, &progress), None);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&control).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
    }
    fs::write(rig.folder.join("workflow_state.json"), b"{\"step\": 3}").unwrap();
    fs::write(&control, b"flush step-3\n").unwrap();
    let answer = requests::poll_once(&m, &progress).expect("served");
    assert!(answer.starts_with("ok flush step-3"), "{answer}");
    assert_eq!(read(rig.share.join("workflow_state.json")), "{\"step\": 3}");
    // Notifications still flow: the barrier came in the `.sipfs/` made again.
    assert!(m.is_watched());
    assert_eq!(sipfs_entries(&rig.folder), ["control"]);
}

#[test]
fn a_folder_made_again_in_place_of_the_mirror_is_not_scanned() {
    let rig = Rig::new();
    let m = rig.filled();
    drop(m);
    // Emptied and made again, `.sipfs/` and all: another folder at the same path.
    fs::remove_dir_all(&rig.folder).unwrap();
    fs::create_dir_all(rig.folder.join(".sipfs")).unwrap();
    fs::write(rig.folder.join(".sipfs/control"), b"").unwrap();
    assert!(matches!(rig.open(), Err(MirrorError::Gone { .. })));
    assert!(rig.share.join("workflow_state.json").exists());
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

/// A share that counts the fill's calls: listings, and fetches in flight at once. Each fetch
/// waits (up to a while, once) until [`FILL_WANTED`] are in flight, so that the count shows
/// how many the fill keeps going, not how fast this machine happens to answer.
struct CountingShare {
    inner: DirBacking,
    lists: AtomicUsize,
    fetches: AtomicUsize,
    in_flight: Mutex<usize>,
    most_in_flight: AtomicUsize,
    gave_up_waiting: AtomicBool,
    arrived: Condvar,
}

const FILL_WANTED: usize = 16;

impl Backing for CountingShare {
    fn describe(&self) -> String {
        "counting".into()
    }
    fn stat(&self, p: &RelPath) -> std::io::Result<Option<fs_core::Stat>> {
        self.inner.stat(p)
    }
    fn list(&self, d: &RelPath) -> std::io::Result<Vec<(String, fs_core::Stat)>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(d)
    }
    fn fetch(&self, p: &RelPath, dest: &Path) -> std::io::Result<()> {
        self.inner.fetch(p, dest)
    }
    fn fetch_version(&self, p: &RelPath, dest: &Path) -> std::io::Result<Option<fs_core::Stat>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        {
            let mut n = self.in_flight.lock().unwrap();
            *n += 1;
            self.most_in_flight.fetch_max(*n, Ordering::SeqCst);
            self.arrived.notify_all();
            let until = Instant::now() + Duration::from_secs(5);
            while self.most_in_flight.load(Ordering::SeqCst) < FILL_WANTED
                && !self.gave_up_waiting.load(Ordering::SeqCst)
            {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.gave_up_waiting.store(true, Ordering::SeqCst);
                    break;
                }
                n = self.arrived.wait_timeout(n, left).unwrap().0;
            }
        }
        let r = self.inner.fetch_version(p, dest);
        *self.in_flight.lock().unwrap() -= 1;
        r
    }
    fn open_read(&self, p: &RelPath) -> std::io::Result<Arc<dyn fs_core::backing::ShareReader>> {
        self.inner.open_read(p)
    }
    fn read_link(&self, p: &RelPath) -> std::io::Result<String> {
        self.inner.read_link(p)
    }
    fn stage(&self, src: &Path, t: &RelPath, mtime: i64, mode: u32) -> std::io::Result<()> {
        self.inner.stage(src, t, mtime, mode)
    }
    fn stage_symlink(&self, target: &str, t: &RelPath) -> std::io::Result<()> {
        self.inner.stage_symlink(target, t)
    }
    fn rename(&self, a: &RelPath, b: &RelPath) -> std::io::Result<()> {
        self.inner.rename(a, b)
    }
    fn rename_noreplace(&self, a: &RelPath, b: &RelPath) -> std::io::Result<()> {
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
        self.inner.set_mtime(p, mtime)
    }
    fn set_mode(&self, p: &RelPath, mode: u32) -> std::io::Result<()> {
        self.inner.set_mode(p, mode)
    }
}

#[test]
fn a_first_fill_keeps_sixteen_fetches_in_flight_lists_each_folder_once_and_reports_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    // 200 files in 10 folders (two levels), 1 000 bytes each.
    for d in 0..10 {
        let dir = share.join(format!("d{}/e{d}", d % 3));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            fs::write(dir.join(format!("f{f}.csv")), [b'x'; 1000]).unwrap();
        }
    }
    let counting = Arc::new(CountingShare {
        inner: DirBacking::new(&share),
        lists: AtomicUsize::new(0),
        fetches: AtomicUsize::new(0),
        in_flight: Mutex::new(0),
        most_in_flight: AtomicUsize::new(0),
        gave_up_waiting: AtomicBool::new(false),
        arrived: Condvar::new(),
    });
    let mut opts = EngineOptions::new(tmp.path().join("cache"), "counting-share");
    opts.retry = RetryPolicy::none();
    // The flush's parallelism, as the CLI's default: the fill keeps more in flight.
    opts.parallelism = 8;
    let m = Mirror::open(counting.clone(), opts, &tmp.path().join("folder")).unwrap();
    let seen = Mutex::new(Vec::new());
    let r = m.sync(&|p| seen.lock().unwrap().push(p)).unwrap();
    assert_eq!(r.fetched, 200, "{r:?}");
    assert_eq!(counting.fetches.load(Ordering::SeqCst), 200);
    assert!(
        counting.most_in_flight.load(Ordering::SeqCst) >= FILL_WANTED,
        "at most {} fetches in flight",
        counting.most_in_flight.load(Ordering::SeqCst)
    );
    // The root, d0-d2 and the ten folders below them: each listed once.
    assert_eq!(counting.lists.load(Ordering::SeqCst), 14);
    let seen = seen.into_inner().unwrap();
    let last = seen.last().unwrap();
    assert_eq!((last.done, last.total), (200, 200));
    assert_eq!(last.total_bytes, 200_000);
    assert_eq!(seen.iter().map(|p| p.bytes).sum::<u64>(), 200_000);
    assert_eq!(
        read(share.join("d1/e4/f3.csv")),
        read(tmp.path().join("folder/d1/e4/f3.csv"))
    );
}
