//! One project, several places: two sipfs mounts and a mirror folder of one share, and a
//! colleague writing on the share directly, all appending lines to the same few files and
//! refreshing and flushing at random moments, at once. After everything is flushed, every
//! line ever written is on the share, in the file or in a conflict copy; nothing of sipfs's
//! is left there; and every flush exited 0 or 4.
//!
//! Once on a local folder, once over sshfs. `SIPFS_WRITERS_ROUNDS` sets the rounds per writer
//! (30 by default, as CI runs it; issue 27 asks for 200: `SIPFS_WRITERS_ROUNDS=200`). The direct writer writes half its lines
//! in place and half by read, write a temporary, rename over (as the workflow manager's
//! StateManager does); `SIPFS_WRITERS_DIRECT_RENAME=0` keeps it to appends in place.
//!
//! A writer that renames a new version over a name replaces whatever was put there after it
//! read the file, whoever put it: two such writers lose each other's lines with no sipfs in
//! sight. So a line of a sipfs writer missing at the end is excused only when such a rename
//! could have replaced it: one that read the file before the flush that published the line
//! ended, and renamed after that flush began. Every other line must be there, and the test
//! says how many were excused.
//!
//! A sipfs commit empties the name for a moment (capture, then publish: `flush/capture.rs`).
//! The direct writer takes a missing file for an empty one, as programs that start afresh do:
//! an append then makes a new file of one line, and a rename writes one. A rename that read
//! such a file (or nothing) replaces whatever a commit published meanwhile: any line of that
//! file written before it, of any writer. The moments the direct writer found the name empty
//! are counted; a line lost to a rename of that file that read within 2 s after one is
//! excused, and named apart.
#![cfg(unix)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipfs_tests::ssh_share::SshShare;
use sipfs_tests::*;

const FILES: usize = 4;

fn rounds() -> u32 {
    std::env::var("SIPFS_WRITERS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// A small generator, so that each writer's choices come from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn file(i: u64) -> String {
    format!("sheet{i}.csv")
}

/// Appends `line` to `path` in place, as a logger or a spreadsheet export does, making the
/// file if it is missing. Whether it was there.
fn append(path: &Path, line: &str) -> bool {
    let opened = fs::OpenOptions::new().append(true).open(path);
    let found = opened.is_ok();
    let mut f = opened
        .or_else(|_| fs::OpenOptions::new().create(true).append(true).open(path))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
    f.write_all(line.as_bytes())
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
    found
}

/// Reads the file, adds `line`, writes a temporary and renames it over the file, as the
/// workflow manager's StateManager writes `workflow_state.json`.
/// Whether the read found the file.
fn append_by_rename(path: &Path, line: &str) -> bool {
    let read = fs::read(path);
    let found = read.is_ok();
    let mut content = read.unwrap_or_default();
    content.extend_from_slice(line.as_bytes());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
    found
}

/// A `sipfs mirror` serving a folder, stopped at the end; its log in a file beside its cache.
struct MirrorProc(Option<Child>, PathBuf);

impl MirrorProc {
    fn start(share: &Path, folder: &Path, cache: &Path) -> MirrorProc {
        let log = cache.with_extension("log");
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(sipfs_bin())
            .arg("mirror")
            .arg(share)
            .arg(folder)
            .arg("--cache")
            .arg(cache)
            .env(
                "SIPFS_LOG",
                std::env::var("SIPFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let m = MirrorProc(Some(child), log);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Filled once the first sync wrote the status (with the cache).
        while !cache.join("status.json").exists() {
            assert!(Instant::now() < deadline, "the mirror never filled");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }
}

impl MirrorProc {
    fn log_text(&self) -> String {
        fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for MirrorProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the writers saw: every line written, every flush, every rename over a name, and every
/// flush's exit code that was not 0 or 4. Times are since the test's start.
#[derive(Default)]
struct Seen {
    lines: Vec<Written>,
    flushes: Vec<Flushed>,
    /// The direct writer's renames: the file, when it read it, when it renamed over it.
    renames: Vec<(u64, Duration, Duration)>,
    /// When the direct writer found a file missing (a commit's empty moment), reading it for a
    /// rename or opening it to append: the file, when.
    empty_names: Vec<(u64, Duration)>,
    bad_exits: Vec<String>,
}

struct Written {
    line: String,
    writer: String,
    file: u64,
    at: Duration,
}

struct Flushed {
    writer: String,
    start: Duration,
    end: Duration,
    ok: bool,
}

fn since_start() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

impl Seen {
    fn wrote(&mut self, writer: &str, file: u64, line: &str) {
        self.lines.push(Written {
            line: line.to_owned(),
            writer: writer.to_owned(),
            file,
            at: since_start(),
        });
    }

    /// Whether a rename over the line's file by the direct writer could have replaced the
    /// version that held it: it read the file before the flush that published the line ended,
    /// and renamed after that flush began.
    fn excused(&self, l: &Written) -> bool {
        if self.replaced_after_empty_read(l) {
            return true;
        }
        if l.writer == "direct" {
            return false;
        }
        let published = (self.flushes.iter())
            .filter(|f| f.writer == l.writer && f.ok && f.start > l.at)
            .min_by_key(|f| f.start);
        let (start, end) = published.map_or((l.at, Duration::MAX), |f| (f.start, f.end));
        (self.renames.iter())
            .any(|&(file, read, renamed)| file == l.file && read < end && renamed > start)
    }
}

impl Seen {
    /// Whether a rename whose read found the file missing came after the line was written:
    /// the file it wrote held none of what was there.
    fn replaced_after_empty_read(&self, l: &Written) -> bool {
        let blind = |file: u64, read: Duration, renamed: Duration| {
            (self.empty_names.iter())
                .any(|&(f, at)| f == file && at <= renamed && at + Duration::from_secs(2) >= read)
        };
        (self.renames.iter()).any(|&(file, read, renamed)| {
            file == l.file && renamed > l.at && blind(file, read, renamed)
        })
    }
}

/// A flush of `writer` at `at`, recorded.
fn flush_recorded(writer: &str, at: &Path, seen: &Mutex<Seen>) -> (Option<i32>, String) {
    let start = since_start();
    let (code, out) = ask("flush", at);
    seen.lock().unwrap().flushes.push(Flushed {
        writer: writer.to_owned(),
        start,
        end: since_start(),
        ok: matches!(code, Some(0) | Some(4)),
    });
    (code, out)
}

/// A sipfs command on a served project; its exit code.
fn ask(cmd: &str, at: &Path) -> (Option<i32>, String) {
    let out = Command::new(sipfs_bin())
        .arg(cmd)
        .arg(at)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One writer through sipfs (a mount or a mirror folder at `at`).
fn sipfs_writer(name: &str, at: PathBuf, seed: u64, seen: Arc<Mutex<Seen>>) {
    let mut rng = Rng(seed);
    for round in 0..rounds() {
        let line = format!("{name} {round}\n");
        let f = rng.below(FILES as u64);
        append(&at.join(file(f)), &line);
        seen.lock().unwrap().wrote(name, f, &line);
        match rng.below(6) {
            0 | 1 => {
                let (code, out) = flush_recorded(name, &at, &seen);
                if !matches!(code, Some(0) | Some(4)) {
                    seen.lock()
                        .unwrap()
                        .bad_exits
                        .push(format!("{name} flush: {code:?}: {out}"));
                }
            }
            2 => {
                ask("refresh", &at);
            }
            _ => {}
        }
    }
}

/// The colleague without sipfs, on the share itself: half the time in place, half by rename.
fn direct_writer(share: PathBuf, seed: u64, seen: Arc<Mutex<Seen>>) {
    let mut rng = Rng(seed);
    for round in 0..rounds() {
        let line = format!("direct {round}\n");
        let f = rng.below(FILES as u64);
        let path = share.join(file(f));
        let by_rename = std::env::var("SIPFS_WRITERS_DIRECT_RENAME").as_deref() != Ok("0");
        match rng.below(2) {
            1 if by_rename => {
                let read = since_start();
                let found = append_by_rename(&path, &line);
                let mut seen = seen.lock().unwrap();
                seen.renames.push((f, read, since_start()));
                if !found {
                    seen.empty_names.push((f, read));
                }
            }
            _ => {
                let at = since_start();
                if !append(&path, &line) {
                    seen.lock().unwrap().empty_names.push((f, at));
                }
            }
        }
        seen.lock().unwrap().wrote("direct", f, &line);
        std::thread::sleep(Duration::from_millis(rng.below(20)));
    }
}

/// Every line in every file on the share (names and conflict copies).
fn lines_on_share(share: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(share).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            out.extend(text.lines().map(|l| format!("{l}\n")));
        }
    }
    out
}

fn sipfs_names_on(share: &Path) -> Vec<String> {
    fs::read_dir(share)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".sipfs-tmp-"))
        .collect()
}

/// The scenario on a share reached at `share` (what the writers through sipfs mount), whose
/// files a colleague writes at `direct`.
fn several_writers(dir: &Path, share: &Path, direct: &Path) {
    for i in 0..FILES as u64 {
        fs::write(direct.join(file(i)), "start\n").unwrap();
    }
    let (mnt_a, mnt_b, mirror) = (dir.join("a"), dir.join("b"), dir.join("c"));
    for d in [&mnt_a, &mnt_b] {
        fs::create_dir_all(d).unwrap();
    }
    let a = MountProc::start(share, &mnt_a, &dir.join("cache-a"), &["--retry-after", "0"]);
    let b = MountProc::start(share, &mnt_b, &dir.join("cache-b"), &["--retry-after", "0"]);
    let c = MirrorProc::start(share, &mirror, &dir.join("cache-c"));

    since_start();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut threads = Vec::new();
    for (name, at, seed) in [
        ("mount-a", mnt_a.clone(), 0x1234_5678_u64),
        ("mount-b", mnt_b.clone(), 0x2345_6789),
        ("mirror-c", mirror.clone(), 0x3456_789a),
    ] {
        let seen = seen.clone();
        threads.push(std::thread::spawn(move || {
            sipfs_writer(name, at, seed, seen)
        }));
    }
    {
        let (seen, direct) = (seen.clone(), direct.to_path_buf());
        threads.push(std::thread::spawn(move || {
            direct_writer(direct, 0x4567_89ab, seen)
        }));
    }
    let failed = threads
        .into_iter()
        .map(|t| t.join())
        .filter(Result::is_err)
        .count();
    assert!(
        failed == 0,
        "{failed} writer(s) failed; mount a:\n{}\nmount b:\n{}\nmirror c:\n{}",
        a.log_text(),
        b.log_text(),
        c.log_text()
    );

    // Everything flushed: each place until its flush is clean; then once more each, which
    // also removes the old versions the commits captured.
    for _ in 0..2 {
        for (name, at) in [
            ("mount-a", &mnt_a),
            ("mount-b", &mnt_b),
            ("mirror-c", &mirror),
        ] {
            let (code, out) = flush_recorded(name, at, &seen);
            assert!(matches!(code, Some(0) | Some(4)), "{}: {out}", at.display());
        }
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.bad_exits.is_empty(),
        "flushes that did not exit 0 or 4:\n{}",
        seen.bad_exits.join("\n")
    );
    let on_share = lines_on_share(direct);
    let (excused, lost): (Vec<&Written>, Vec<&Written>) = (seen.lines.iter())
        .filter(|l| !on_share.contains(&l.line))
        .partition(|l| seen.excused(l));
    let lost: Vec<&String> = lost.iter().map(|l| &l.line).collect();
    if !lost.is_empty() {
        if let Some(dump) = std::env::var_os("SIPFS_WRITERS_DUMP") {
            let mut out = String::new();
            for entry in fs::read_dir(direct).unwrap() {
                let entry = entry.unwrap();
                out += &format!(
                    "== {}\n{}",
                    entry.file_name().to_string_lossy(),
                    fs::read_to_string(entry.path()).unwrap_or_default()
                );
            }
            for at in [&mnt_a, &mnt_b, &mirror] {
                for i in 0..FILES as u64 {
                    out += &format!(
                        "== {} {}\n{}",
                        at.display(),
                        file(i),
                        fs::read_to_string(at.join(file(i))).unwrap_or_default()
                    );
                }
            }
            for (name, log) in [
                ("a", a.log_text()),
                ("b", b.log_text()),
                ("c", c.log_text()),
            ] {
                out += &format!("== log of {name}\n{log}");
            }
            fs::write(dump, out).unwrap();
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} lines lost: {lost:?} (the direct writer found a name empty {} times)",
        lost.len(),
        seen.lines.len(),
        seen.empty_names.len()
    );
    let left = sipfs_names_on(direct);
    assert!(left.is_empty(), "left on the share: {left:?}");
    eprintln!(
        "{} lines written by 4 writers ({} renames over a name by the direct writer, which \
         found a name empty during a commit {} times); none lost to sipfs; {} replaced by \
         those renames, {} of them by one that read within 2 s after an empty name (excused: \
         {:?}); {} files on the share",
        seen.lines.len(),
        seen.renames.len(),
        seen.empty_names.len(),
        excused.len(),
        excused
            .iter()
            .filter(|l| seen.replaced_after_empty_read(l))
            .count(),
        excused
            .iter()
            .map(|l| l.line.trim_end())
            .collect::<Vec<_>>(),
        fs::read_dir(direct).unwrap().count()
    );
    drop(c);
    a.stop();
    b.stop();
}

#[test]
fn several_writers_on_a_local_folder_lose_no_line() {
    let s = Scratch::new();
    several_writers(s.dir.path(), &s.share, &s.share);
}

/// Over sshfs, with a client that does not drop its connection when a loaded machine answers
/// slowly. (It was left out of the suite while sshfs dropped its connection under this load
/// about 1 run in 8; with the commits' backoff and fetches that read a version whole, 10 runs
/// of 10 at 30 rounds and 6 of 6 at 200 rounds passed.)
#[test]
fn several_writers_over_sshfs_lose_no_line() {
    let s = Scratch::new();
    // A client that does not drop the connection when a loaded machine answers slowly.
    let share = SshShare::start_patient(s.dir.path());
    several_writers(s.dir.path(), &share.mnt, &share.mnt);
}
