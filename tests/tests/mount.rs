//! The Linux mount and the `sipfs` command, end to end: real `sipfs` processes, real FUSE
//! mounts, real programs (Python with SQLite, zipfile, shutil) working in them.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use sipfs_tests::*;

fn skip_sipfs(p: &str) -> bool {
    default_ignored(p)
}

fn assert_share_equals_mount(s: &Scratch) {
    let share = snapshot(&s.share, &skip_sipfs);
    let mount = snapshot(&s.mnt, &skip_sipfs);
    assert_same_tree(&share, &mount);
}

fn seed(share: &Path) {
    fs::create_dir_all(share.join("inputs")).unwrap();
    fs::write(share.join("inputs/samples.csv"), "a,b\n1,2\n").unwrap();
    fs::write(share.join("README.txt"), "project\n").unwrap();
}

#[test]
fn workflow_steps_reach_the_share_only_when_flushed() {
    let s = Scratch::new();
    seed(&s.share);
    let m = s.mount(&[]);
    let before = snapshot(&s.share, &|_| false);

    python("workflow_step.py", &[m.mnt.to_str().unwrap(), "1"]);
    assert_eq!(
        snapshot(&s.share, &|_| false),
        before,
        "nothing may reach the share before a flush"
    );
    // .sipfs is reachable by name but never listed.
    assert!(s.mnt.join(".sipfs/status").exists());
    assert!(!fs::read_dir(&s.mnt)
        .unwrap()
        .any(|e| e.unwrap().file_name() == ".sipfs"));

    let out = sipfs(&["flush", s.mnt.to_str().unwrap(), "--step", "step-1"]);
    assert_eq!(out.status.code(), Some(0));
    assert_share_equals_mount(&s);
    assert!(
        s.share.join(".workflow_status/step1.done").exists(),
        "hidden folders are synced"
    );
    for ignored in [
        "__pycache__",
        ".DS_Store",
        "Thumbs.db",
        ".sync_log.json",
        ".sipfs",
    ] {
        assert!(
            !s.share.join(ignored).exists(),
            "{ignored} must never be written back"
        );
    }

    // Step 2 signals its flush the way a step in a container does: through the control file.
    let before = snapshot(&s.share, &|_| false);
    python("workflow_step.py", &[m.mnt.to_str().unwrap(), "2"]);
    assert_eq!(snapshot(&s.share, &|_| false), before);
    control(&s.mnt, "flush step-2\n").expect("control flush");
    assert_share_equals_mount(&s);
    assert!(
        s.share.join("results/old_step1.csv").exists(),
        "rename written"
    );
    assert!(
        !s.share.join("results/sheet1.xlsx").exists(),
        "delete written"
    );
    assert!(
        !s.share.join(".snapshots/copy1").exists(),
        "tree delete written"
    );
    assert!(s.share.join("empty2").is_dir(), "empty directory written");
    let status = fs::read_to_string(s.mnt.join(".sipfs/status")).unwrap();
    assert!(status.contains("\"label\": \"step-2\""), "{status}");
    // The request a mirror folder needs for an up-to-date status is accepted here too.
    control(&s.mnt, "status\n").expect("control status");
    assert!(
        control(&s.mnt, "status please\n").is_err(),
        "bad requests fail"
    );

    // The databases on the share are the same, readable databases.
    let q = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from t').fetchone()[0])",
        ])
        .arg(s.share.join("results/data.db"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&q.stdout).trim(), "4000");
    assert_eq!(m.stop().code(), Some(0));
}

#[test]
fn refresh_shows_what_others_changed() {
    let s = Scratch::new();
    seed(&s.share);
    fs::write(s.share.join("gone.txt"), "old").unwrap();
    let m = s.mount(&[]);
    assert_eq!(
        fs::read_to_string(s.mnt.join("README.txt")).unwrap(),
        "project\n"
    );
    assert!(s.mnt.join("gone.txt").exists());

    // Someone else works on the share.
    fs::write(s.share.join("inputs/new.csv"), "x\n").unwrap();
    fs::write(s.share.join("README.txt"), "changed by a colleague\n").unwrap();
    filetime::set_file_mtime(
        s.share.join("README.txt"),
        filetime::FileTime::from_unix_time(2_000_000_000, 0),
    )
    .unwrap();
    fs::remove_file(s.share.join("gone.txt")).unwrap();

    let out = sipfs(&["refresh", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    std::thread::sleep(std::time::Duration::from_millis(1100)); // kernel attribute cache
    assert_eq!(
        fs::read_to_string(s.mnt.join("inputs/new.csv")).unwrap(),
        "x\n"
    );
    assert_eq!(
        fs::read_to_string(s.mnt.join("README.txt")).unwrap(),
        "changed by a colleague\n"
    );
    assert!(!s.mnt.join("gone.txt").exists());
    m.stop();
}

#[test]
fn kill9_with_unflushed_changes_loses_nothing() {
    let s = Scratch::new();
    seed(&s.share);
    let m = s.mount(&[]);
    python("workflow_step.py", &[m.mnt.to_str().unwrap(), "1"]);
    let expected = snapshot(&s.mnt, &skip_sipfs);
    m.kill9();
    // The mount point is stale now; mounting again clears it and finds every change pending.
    let m = s.mount(&[]);
    assert!(m.log_text().contains("stale mount"), "{}", m.log_text());
    let out = sipfs(&["flush", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let share = snapshot(&s.share, &skip_sipfs);
    let strip = |t: &std::collections::BTreeMap<String, Entry>| -> Vec<(String, Option<Vec<u8>>)> {
        t.iter()
            .map(|(p, e)| {
                (
                    p.clone(),
                    match e {
                        Entry::File { content, .. } => Some(content.clone()),
                        _ => None,
                    },
                )
            })
            .collect()
    };
    assert_eq!(
        strip(&share),
        strip(&expected),
        "content after a crash and remount"
    );
    assert_share_equals_mount(&s);
    m.stop();
}

/// Creates, writes, deletes, renames and new folders, `kill -9` the moment the last returned:
/// the journal's background fold is held off (`SIPFS_JOURNAL_IDLE_MS`), so every change is
/// only in the record log then, and the remount folds them in (and says how many) and the
/// flush writes exactly what the program left.
#[test]
fn kill9_right_after_namespace_changes_loses_none_of_them() {
    let s = Scratch::new();
    fs::create_dir_all(s.share.join("kept")).unwrap();
    for i in 0..20 {
        fs::write(
            s.share.join(format!("kept/old{i}.txt")),
            format!("old {i}\n"),
        )
        .unwrap();
    }
    let idle = [(fs_core::journal::IDLE_ENV, "600000")];
    let m = MountProc::start_env(&s.share, &s.mnt, &s.cache, &[], &idle);
    // Listed and fetched now: a listing or a fetch later would be a database transaction,
    // which folds the records before it.
    snapshot(&s.mnt, &skip_sipfs);
    for d in 0..5 {
        let dir = s.mnt.join(format!("new{d}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..40 {
            fs::write(dir.join(format!("f{i}.dat")), format!("{d}/{i}\n")).unwrap();
        }
        for i in (0..40).step_by(3) {
            fs::remove_file(dir.join(format!("f{i}.dat"))).unwrap();
        }
    }
    for i in 0..20 {
        match i % 3 {
            0 => fs::remove_file(s.mnt.join(format!("kept/old{i}.txt"))).unwrap(),
            1 => fs::rename(
                s.mnt.join(format!("kept/old{i}.txt")),
                s.mnt.join(format!("new0/moved{i}.txt")),
            )
            .unwrap(),
            _ => {}
        }
    }
    fs::rename(s.mnt.join("new4"), s.mnt.join("kept/new4")).unwrap();
    let expected = snapshot(&s.mnt, &skip_sipfs);
    m.kill9();
    let m = MountProc::start_env(&s.share, &s.mnt, &s.cache, &[], &idle);
    // Read the mount once so that the log holds the open's messages.
    assert_eq!(
        snapshot(&s.mnt, &skip_sipfs),
        expected,
        "the mount after a kill -9"
    );
    assert!(
        m.log_text()
            .contains("changes recorded before a crash are folded in"),
        "nothing was left in the record log to recover: {}",
        m.log_text()
    );
    let out = sipfs(&["flush", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_share_equals_mount(&s);
    m.stop();
}

#[test]
fn kill9_during_flushes_loses_nothing_and_leaves_no_temporaries() {
    let s = Scratch::new();
    seed(&s.share);
    let mut m = s.mount(&[]);
    for (round, delay_ms) in [0u64, 3, 8, 15, 30, 60].into_iter().enumerate() {
        // Many files, so the flush takes a while.
        let dir = s.mnt.join(format!("round{round}"));
        if let Err(e) = fs::create_dir_all(&dir) {
            panic!("round {round}: {e}\n{}", m.log_text());
        }
        for i in 0..300 {
            fs::write(dir.join(format!("f{i}.dat")), vec![round as u8; 20_000 + i]).unwrap();
        }
        if round > 0 {
            fs::rename(
                s.mnt.join(format!("round{}", round - 1)),
                s.mnt.join(format!("moved{round}")),
            )
            .unwrap();
        }
        let mnt = s.mnt.clone();
        let flusher = std::thread::spawn(move || sipfs(&["flush", mnt.to_str().unwrap()]));
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        m.kill9();
        let _ = flusher.join();
        m = s.mount(&[]);
    }
    let out = sipfs(&["flush", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_share_equals_mount(&s);
    let temps: Vec<String> = snapshot(&s.share, &|_| false)
        .keys()
        .filter(|p| p.contains(".sipfs-tmp-"))
        .cloned()
        .collect();
    assert!(temps.is_empty(), "temporaries left on the share: {temps:?}");
    // Every file of every round is there, whole.
    for round in 0..6 {
        let dir = if round == 5 {
            format!("round{round}")
        } else {
            format!("moved{}", round + 1)
        };
        for i in 0..300 {
            let data = fs::read(s.share.join(&dir).join(format!("f{i}.dat"))).unwrap();
            assert_eq!(data, vec![round as u8; 20_000 + i], "{dir}/f{i}.dat");
        }
    }
    m.stop();
}

#[test]
fn sigterm_flushes_and_unmounts() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    fs::write(s.mnt.join("result.txt"), "done").unwrap();
    let st = m.stop();
    assert_eq!(st.code(), Some(0));
    assert_eq!(
        fs::read_to_string(s.share.join("result.txt")).unwrap(),
        "done"
    );
    assert!(fs::read_dir(&s.mnt).unwrap().next().is_none(), "unmounted");
}

#[test]
fn unmount_with_a_refusing_share_keeps_changes_for_the_next_mount() {
    let s = Scratch::new();
    seed(&s.share);
    let m = s.mount(&[]);
    fs::write(s.mnt.join("inputs/analysis.csv"), "important\n").unwrap();
    // The share turns read-only under us (what a permission change or a locked volume does).
    let ro = std::process::Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(&s.share)
        .arg(&s.share)
        .status()
        .unwrap();
    assert!(ro.success());
    let remount = std::process::Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&s.share)
        .status()
        .unwrap();
    assert!(remount.success());
    let out = sipfs(&["flush", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "changes stay pending");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inputs/analysis.csv"), "{text}");
    assert!(text.contains("permission denied"), "{text}");
    assert_eq!(m.stop().code(), Some(3), "unmount reports pending changes");
    assert!(std::process::Command::new("umount")
        .arg(&s.share)
        .status()
        .unwrap()
        .success());
    assert!(!s.share.join("inputs/analysis.csv").exists());

    // Next mount: the change is still pending and now gets written.
    let m = s.mount(&[]);
    let st = sipfs(&["status", s.mnt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&st.stdout).contains("inputs/analysis.csv"));
    assert_eq!(
        sipfs(&["flush", s.mnt.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(
        fs::read_to_string(s.share.join("inputs/analysis.csv")).unwrap(),
        "important\n"
    );
    m.stop();
}

#[test]
fn conflicts_keep_both_versions() {
    let s = Scratch::new();
    seed(&s.share);
    let m = s.mount(&[]);
    fs::write(s.mnt.join("README.txt"), "ours\n").unwrap();
    fs::write(s.share.join("README.txt"), "theirs\n").unwrap();
    filetime::set_file_mtime(
        s.share.join("README.txt"),
        filetime::FileTime::from_unix_time(2_000_000_000, 0),
    )
    .unwrap();
    let out = sipfs(&["flush", s.mnt.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept = report["conflicts"][0]["kept_as"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        kept.starts_with("README.sipfs-conflict-") && kept.ends_with(".txt"),
        "{kept}"
    );
    assert_eq!(
        fs::read_to_string(s.share.join("README.txt")).unwrap(),
        "ours\n"
    );
    assert_eq!(fs::read_to_string(s.share.join(&kept)).unwrap(), "theirs\n");
    m.stop();
}

#[test]
fn posix_behaviour_programs_rely_on() {
    let s = Scratch::new();
    let m = s.mount(&["--ignore", "big.bin"]);
    let mnt = &s.mnt;
    python("posix_checks.py", &[mnt.to_str().unwrap()]);

    // A file over 4 GiB (sparse; ignored so the flush does not copy 5 GiB).
    let mut f = fs::File::create(mnt.join("big.bin")).unwrap();
    f.seek(SeekFrom::Start(5 << 30)).unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    let f = fs::File::open(mnt.join("big.bin")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), (5 << 30) + 4);
    let mut buf = [0u8; 4];
    f.read_exact_at(&mut buf, 5 << 30).unwrap();
    assert_eq!(&buf, b"tail");
    drop(f);

    // Many files open at once.
    let files: Vec<fs::File> = (0..400)
        .map(|i| fs::File::create(mnt.join(format!("open{i}"))).unwrap())
        .collect();
    for (i, mut f) in files.into_iter().enumerate() {
        write!(f, "{i}").unwrap();
    }
    let mut s0 = String::new();
    fs::File::open(mnt.join("open399"))
        .unwrap()
        .read_to_string(&mut s0)
        .unwrap();
    assert_eq!(s0, "399");

    assert_eq!(
        sipfs(&["flush", mnt.to_str().unwrap()]).status.code(),
        Some(0)
    );
    let share = snapshot(&s.share, &|p| p == "big.bin");
    let mount = snapshot(&s.mnt, &|p| p == "big.bin");
    assert_same_tree(&share, &mount);
    assert!(!s.share.join("big.bin").exists());
    m.stop();
}

#[test]
fn clear_refusals() {
    let s = Scratch::new();
    // Share missing.
    let out = sipfs(&["mount", "/nonexistent/share", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be reached"));
    // Mount point not empty.
    fs::write(s.mnt.join("x"), "x").unwrap();
    let out = sipfs(&["mount", s.share.to_str().unwrap(), s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    fs::remove_file(s.mnt.join("x")).unwrap();
    // Cache in use by another mount.
    let m = s.mount(&[]);
    let other = s.dir.path().join("mnt2");
    fs::create_dir_all(&other).unwrap();
    let out = sipfs(&[
        "mount",
        s.share.to_str().unwrap(),
        other.to_str().unwrap(),
        "--cache",
        s.cache.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    // Not a mount.
    let out = sipfs(&["flush", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a sipfs mount"));
    // Usage errors exit 2.
    assert_eq!(sipfs(&["flush"]).status.code(), Some(2));
    m.stop();
}

#[test]
fn daemon_mode_and_unmount_command() {
    let s = Scratch::new();
    let out = sipfs(&[
        "mount",
        s.share.to_str().unwrap(),
        s.mnt.to_str().unwrap(),
        "--cache",
        s.cache.to_str().unwrap(),
        "--daemon",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        s.mnt.join(".sipfs/control").exists(),
        "ready when --daemon returns"
    );
    fs::write(s.mnt.join("a.txt"), "a").unwrap();
    let out = sipfs(&["unmount", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::read_to_string(s.share.join("a.txt")).unwrap(), "a");
    assert!(!s.mnt.join(".sipfs").exists(), "unmounted");
}

/// `os.utime` (as `touch -d` and `shutil.copystat` use it) on a file the mount has not read
/// yet is a change of ours: the first read must not bring the share's time back, and the time
/// reaches the share at unmount, also after a `kill -9` and a remount. The access time the
/// program set is kept in the cache (it is never written back).
#[test]
fn times_set_before_the_first_read_are_kept() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    for f in ["f1.txt", "f2.txt"] {
        fs::write(s.share.join(f), "from the share\n").unwrap();
        let old = filetime::FileTime::from_unix_time(1_500_000_000, 0);
        filetime::set_file_times(s.share.join(f), old, old).unwrap();
    }
    let (atime, mtime) = (1_600_000_000_123_456_789i64, 1_650_000_000_987_654_321i64);
    let utime_then_read = |f: &Path| {
        let script = format!(
            "import os, sys\n\
             p = sys.argv[1]\n\
             os.utime(p, ns=({atime}, {mtime}))\n\
             st = os.stat(p)\n\
             assert (st.st_atime_ns, st.st_mtime_ns) == ({atime}, {mtime}), (st.st_atime_ns, st.st_mtime_ns)\n\
             open(p).read()\n\
             assert os.stat(p).st_mtime_ns == {mtime}, os.stat(p).st_mtime_ns\n"
        );
        run_ok(std::process::Command::new("python3").args(["-c", &script, f.to_str().unwrap()]));
    };
    let m = s.mount(&[]);
    utime_then_read(&m.mnt.join("f1.txt"));
    // shutil.copy2 promises both times of the source.
    let src = s.dir.path().join("src.csv");
    fs::write(&src, "x\n").unwrap();
    filetime::set_file_times(
        &src,
        filetime::FileTime::from_unix_time(1_400_000_000, 5),
        filetime::FileTime::from_unix_time(1_450_000_000, 7),
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import shutil, sys; shutil.copy2(sys.argv[1], sys.argv[2])",
        ])
        .arg(&src)
        .arg(m.mnt.join("copy.csv"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let (a, b) = (
        fs::metadata(&src).unwrap(),
        fs::metadata(m.mnt.join("copy.csv")).unwrap(),
    );
    assert_eq!(
        (b.atime(), b.atime_nsec()),
        (a.atime(), a.atime_nsec()),
        "atime of a copy2"
    );
    assert_eq!(
        (b.mtime(), b.mtime_nsec()),
        (a.mtime(), a.mtime_nsec()),
        "mtime of a copy2"
    );
    assert!(m.stop().success());
    let mt = |f: &str| {
        let md = fs::metadata(s.share.join(f)).unwrap();
        md.mtime() * 1_000_000_000 + md.mtime_nsec()
    };
    assert_eq!(
        mt("f1.txt"),
        mtime,
        "the time set reaches the share at unmount"
    );

    // Set, kill -9 before anything read it, remount, read: still ours, and flushed.
    let m = s.mount(&[]);
    let script = format!("import os, sys; os.utime(sys.argv[1], ns=({atime}, {mtime}))");
    let out = std::process::Command::new("python3")
        .args(["-c", &script, m.mnt.join("f2.txt").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    m.kill9();
    let m = s.mount(&[]);
    let md = fs::metadata(m.mnt.join("f2.txt")).unwrap();
    assert_eq!(
        (md.atime(), md.atime_nsec() as i64),
        (atime / 1_000_000_000, atime % 1_000_000_000)
    );
    fs::read(m.mnt.join("f2.txt")).unwrap();
    let md = fs::metadata(m.mnt.join("f2.txt")).unwrap();
    assert_eq!(md.mtime() * 1_000_000_000 + md.mtime_nsec(), mtime);
    assert!(m.stop().success());
    assert_eq!(mt("f2.txt"), mtime);
}

/// `stop` written to the control file (what `sipfs unmount` does for a Windows drive) flushes
/// and unmounts a FUSE mount too.
#[test]
fn a_stop_request_flushes_and_unmounts() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    fs::write(m.mnt.join("last.csv"), "x\n").unwrap();
    control(&m.mnt, "stop\n").unwrap();
    let st = m.wait_exit(std::time::Duration::from_secs(60));
    assert!(st.success(), "{st}");
    assert_eq!(fs::read_to_string(s.share.join("last.csv")).unwrap(), "x\n");
    assert!(!s.mnt.join(".sipfs/control").exists(), "still mounted");
}

/// The kernel keeps names and attributes for a minute; a refresh must make it forget what the
/// share changed, at once: a changed file, a deleted one, a new one, a changed folder time.
#[test]
fn a_refresh_shows_others_changes_through_the_kernel_caches_at_once() {
    let s = Scratch::new();
    fs::write(s.share.join("changed.csv"), "old\n").unwrap();
    fs::write(s.share.join("deleted.csv"), "x\n").unwrap();
    let m = s.mount(&[]);
    let mnt = m.mnt.clone();
    // The kernel learns (and caches) all of it.
    assert_eq!(fs::metadata(mnt.join("changed.csv")).unwrap().len(), 4);
    assert_eq!(
        fs::read_to_string(mnt.join("changed.csv")).unwrap(),
        "old\n"
    );
    assert!(mnt.join("deleted.csv").exists());
    assert!(!mnt.join("new.csv").exists());
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mnt), ["changed.csv", "deleted.csv"]);
    // Someone else, on the share.
    fs::write(s.share.join("changed.csv"), "new and longer\n").unwrap();
    filetime::set_file_mtime(
        s.share.join("changed.csv"),
        filetime::FileTime::from_unix_time(1_900_000_000, 0),
    )
    .unwrap();
    fs::remove_file(s.share.join("deleted.csv")).unwrap();
    fs::write(s.share.join("new.csv"), "n\n").unwrap();
    let out = sipfs(&["refresh", mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::metadata(mnt.join("changed.csv")).unwrap().len(), 15);
    assert_eq!(
        fs::read_to_string(mnt.join("changed.csv")).unwrap(),
        "new and longer\n"
    );
    assert!(
        !mnt.join("deleted.csv").exists(),
        "a deleted file still shows"
    );
    assert_eq!(fs::read_to_string(mnt.join("new.csv")).unwrap(), "n\n");
    assert_eq!(names(&mnt), ["changed.csv", "new.csv"]);
    assert!(m.stop().success());
}

/// The requests of each kind the mount has served so far (`kernel_requests` in its status).
fn requests(mnt: &Path) -> serde_json::Value {
    let text = fs::read_to_string(mnt.join(".sipfs/status")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["kernel_requests"].clone()
}

fn delta(before: &serde_json::Value, after: &serde_json::Value, kind: &str) -> u64 {
    after[kind].as_u64().unwrap() - before[kind].as_u64().unwrap()
}

/// What the kernel's caches spare, counted in round trips (never timed): creating files
/// costs one lookup each (the name is new) and no FLUSH round trip once the kernel has been
/// told it is not needed, and writes ask for capabilities once per file; a listing carries the attributes, so a stat of every
/// entry after it asks nothing; a missing name asked for again is answered by the kernel.
#[test]
fn the_kernel_answers_what_it_can_without_asking() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    let mnt = m.mnt.clone();
    fs::create_dir(mnt.join("out")).unwrap();
    // The first close and the first write tell the kernel it need not ask again.
    fs::write(mnt.join("out/first.csv"), "x\n").unwrap();
    let before = requests(&mnt);
    for i in 0..50 {
        fs::write(mnt.join(format!("out/r{i}.csv")), format!("{i}\n")).unwrap();
    }
    let after = requests(&mnt);
    assert_eq!(delta(&before, &after, "create"), 50);
    assert_eq!(delta(&before, &after, "flush"), 0, "{after}");
    // The kernel asks whether a file has capabilities to drop at its first write, once per
    // file (the mount takes the dropping of set-ID bits on itself: `owners::killed_mode`).
    assert!(delta(&before, &after, "xattr") <= 50, "{after}");
    // One lookup per new name, and one more for reading the status.
    assert!(delta(&before, &after, "lookup") <= 52, "{after}");

    // A fresh listing with a stat of each entry: the entries' attributes came with it.
    let before = requests(&mnt);
    let mut sizes = 0;
    for e in fs::read_dir(mnt.join("out")).unwrap() {
        sizes += fs::metadata(e.unwrap().path()).unwrap().len();
    }
    let after = requests(&mnt);
    assert_eq!(
        sizes,
        2 + (0..50)
            .map(|i: u64| i.to_string().len() as u64 + 1)
            .sum::<u64>()
    );
    assert!(delta(&before, &after, "readdirplus") >= 1, "{after}");
    assert_eq!(delta(&before, &after, "readdir"), 0, "{after}");
    // What is left is the reading of the status itself (its file is never cached).
    assert!(delta(&before, &after, "getattr") <= 2, "{after}");
    assert!(delta(&before, &after, "lookup") <= 1, "{after}");

    // Many writes to one file: not a round trip each for its capabilities.
    let before = requests(&mnt);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("out/first.csv"))
        .unwrap();
    for i in 0..100 {
        f.write_all(format!("{i}\n").as_bytes()).unwrap();
    }
    drop(f);
    let after = requests(&mnt);
    assert!(delta(&before, &after, "xattr") <= 1, "{after}");

    // A missing name: asked once, then the kernel knows.
    let before = requests(&mnt);
    for _ in 0..5 {
        assert!(!mnt.join("out/missing.csv").exists());
    }
    let after = requests(&mnt);
    assert!(delta(&before, &after, "lookup") <= 2, "{after}");
    // And a name the kernel knows to be missing can still be created.
    fs::write(mnt.join("out/missing.csv"), "now\n").unwrap();
    assert_eq!(
        fs::read_to_string(mnt.join("out/missing.csv")).unwrap(),
        "now\n"
    );
    assert!(m.stop().success());
}

/// A directory's link count is two plus its subdirectories, as on a local disk (`find`
/// uses it), through every change.
#[test]
fn directory_link_counts_follow_their_subdirectories() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    fs::create_dir_all(s.share.join("a/from_share")).unwrap();
    let m = s.mount(&[]);
    let a = m.mnt.join("a");
    let nlink = || fs::metadata(&a).unwrap().nlink();
    // Not listed yet: unknown, which a link count of 1 says.
    assert_eq!(nlink(), 1);
    fs::create_dir(a.join("b")).unwrap();
    fs::create_dir(a.join("c")).unwrap();
    fs::write(a.join("f"), "file\n").unwrap();
    assert_eq!(nlink(), 5);
    fs::rename(a.join("c"), m.mnt.join("c")).unwrap();
    assert_eq!(nlink(), 4);
    assert_eq!(fs::metadata(&m.mnt).unwrap().nlink(), 4);
    fs::remove_dir(a.join("b")).unwrap();
    fs::remove_dir(a.join("from_share")).unwrap();
    assert_eq!(nlink(), 2);
    assert!(m.stop().success());
}

/// `--cache-max-size`: reading a project bigger than the limit keeps the cache near the
/// limit; every file still reads back whole, an open file keeps its content, and the status
/// shows the size and the limit.
#[test]
fn a_cache_with_a_limit_stays_near_it() {
    let s = Scratch::new();
    let content = |i: usize| -> Vec<u8> { (0..1_000_000).map(|b| (b / 7 + i) as u8).collect() };
    for i in 0..12 {
        fs::write(s.share.join(format!("f{i}.bin")), content(i)).unwrap();
    }
    let m = s.mount(&["--cache-max-size", "3MB"]);
    // Held open through the whole pass: never evicted under its reader.
    let mut held = fs::File::open(m.mnt.join("f0.bin")).unwrap();
    for i in 0..12 {
        assert_eq!(
            fs::read(m.mnt.join(format!("f{i}.bin"))).unwrap(),
            content(i)
        );
    }
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut held, &mut back).unwrap();
    assert_eq!(back, content(0));
    drop(held);
    let status: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(m.mnt.join(".sipfs/status")).unwrap()).unwrap();
    assert_eq!(status["cache_limit_bytes"], 3_000_000);
    let used = status["cache_bytes"].as_u64().unwrap();
    assert!(used <= 3_000_000, "the cache holds {used} bytes");
    let on_disk: u64 = fs::read_dir(s.cache.join("tree"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        on_disk <= 3_000_000,
        "the cache folder holds {on_disk} bytes"
    );
    // Evicted files come back whole.
    for i in 0..12 {
        assert_eq!(
            fs::read(m.mnt.join(format!("f{i}.bin"))).unwrap(),
            content(i)
        );
    }
    assert!(m.stop().success());
}

/// `fallocate` through the mount (Linux's call; macOS's `F_PREALLOCATE` takes another path in
/// the adapter, `fs.rs` `allocate`): the file grows as the program asked, and the flush writes
/// it back at that size. Also: the Spotlight opt-out the macOS mount serves at its root is not
/// there on Linux, where the name would be the project's.
#[cfg(target_os = "linux")]
#[test]
fn fallocate_in_a_mount_grows_the_file_and_reaches_the_share() {
    use std::os::fd::AsRawFd;
    let s = Scratch::new();
    seed(&s.share);
    let _m = s.mount(&[]);
    let p = s.mnt.join("reserved.bin");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&p)
        .unwrap();
    // SAFETY: a valid descriptor for the call's duration.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 1 << 20) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    drop(f);
    assert_eq!(fs::metadata(&p).unwrap().len(), 1 << 20);
    let out = sipfs(&["flush", s.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        fs::metadata(s.share.join("reserved.bin")).unwrap().len(),
        1 << 20
    );
    assert!(!s.mnt.join(".metadata_never_index").exists());
}
