//! Failures of a real network share — an sshd on 127.0.0.1 reached through sshfs as an
//! unprivileged user — and of the local disk. In every scenario nothing is lost.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sipfs_tests::ssh_share::{chown_to_share_user, SshShare};
use sipfs_tests::*;

/// Content and kind equal; times equal at the whole second (SFTP keeps no more).
fn assert_same_content(share: &Path, mnt: &Path) {
    let norm = |t: BTreeMap<String, Entry>| -> BTreeMap<String, (Option<Vec<u8>>, i64)> {
        t.into_iter()
            .map(|(p, e)| match e {
                Entry::File { content, mtime_ns } => {
                    (p, (Some(content), mtime_ns.div_euclid(1_000_000_000)))
                }
                Entry::Dir { .. } => (p, (None, 0)),
                Entry::Link(t) => (p, (Some(t.into_bytes()), 0)),
            })
            .collect()
    };
    let a = norm(snapshot(share, &default_ignored));
    let b = norm(snapshot(mnt, &default_ignored));
    for (p, e) in &b {
        assert_eq!(a.get(p), Some(e), "{p}: share differs from the mount");
    }
    for p in a.keys() {
        assert!(
            b.contains_key(p),
            "{p} is on the share but not in the mount"
        );
    }
}

/// After a flush that finished: the share holds what the mount shows; and after one more,
/// which removes the old versions the commits captured, no temporary of any kind.
fn assert_all_landed(share: &SshShare, mnt: &Path) {
    assert_same_content(&share.export, mnt);
    let (code, out) = flush(mnt);
    assert_eq!(code, Some(0), "{out}");
    let left = temporaries(&share.export);
    assert!(left.is_empty(), "{left:?}");
}

fn temporaries(root: &Path) -> Vec<String> {
    snapshot(root, &|_| false)
        .into_keys()
        .filter(|p| p.contains(".sipfs-tmp-"))
        .collect()
}

fn mount_on(share: &SshShare, s: &Scratch, extra: &[&str]) -> MountProc {
    MountProc::start(&share.mnt, &s.mnt, &s.cache, extra)
}

fn flush(mnt: &Path) -> (Option<i32>, String) {
    let out = sipfs(&["flush", mnt.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A step's output: many small files and a few large ones.
fn write_step(dir: &Path, tag: u8, small: usize, large: usize) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..small {
        fs::write(dir.join(format!("s{i}.csv")), vec![tag; 4_000 + i]).unwrap();
    }
    for i in 0..large {
        fs::write(
            dir.join(format!("L{i}.bin")),
            vec![tag.wrapping_add(i as u8); 6 << 20],
        )
        .unwrap();
    }
}

#[test]
fn share_goes_away_mid_flush() {
    let s = Scratch::new();
    let mut share = SshShare::start(s.dir.path());
    let m = mount_on(&share, &s, &["--retry-after", "0"]);
    write_step(&s.mnt.join("results"), 1, 300, 3);

    let mnt = s.mnt.clone();
    let started = Instant::now();
    let flusher = std::thread::spawn(move || flush(&mnt));
    std::thread::sleep(Duration::from_millis(150));
    share.stop_server();

    // The mount keeps working from the cache while the share is gone.
    for i in 0..50 {
        let t = Instant::now();
        let p = s.mnt.join(format!("results/during{i}.txt"));
        fs::write(&p, format!("{i}")).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), format!("{i}"));
        assert_eq!(fs::read(s.mnt.join("results/s7.csv")).unwrap().len(), 4_007);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "a local operation waited for the share"
        );
    }
    let (code, out) = flusher.join().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(90), "the flush took {took:?}");
    if code == Some(0) {
        eprintln!("the flush finished before the share went away; nothing to check");
    } else {
        assert_eq!(code, Some(3), "{out}");
        assert!(out.contains("cannot be reached"), "{out}");
    }
    // The share holds no half-written file under a real name.
    let mount_files = snapshot(&s.mnt, &default_ignored);
    for (p, e) in snapshot(&share.export, &|p| p.contains(".sipfs-tmp-")) {
        if let (Entry::File { content, .. }, Some(Entry::File { content: ours, .. })) =
            (&e, mount_files.get(&p))
        {
            assert_eq!(content, ours, "{p} is half-written on the share");
        }
    }

    share.start_server();
    std::thread::sleep(Duration::from_secs(1));
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    assert_all_landed(&share, &s.mnt);
    m.stop();
}

/// A frozen server, as users meet it: 20 new files in the mount's top folder, the background
/// retry on (the default). The whole flush ends within its deadline and a few seconds, not a
/// deadline (or a slow failure) per step; and the first flush after the server is back looks
/// at the share then, instead of repeating what the last call saw.
///
/// Two clients: one that waits for minutes (`start_patient`), and one that, like a user's
/// sshfs with `reconnect`, gives up on the connection after a few seconds and then answers
/// every call with EIO once its reconnect times out (3 s each, one after another: 75 s for
/// a flush with the default 30 s deadline before this was fixed).
#[test]
fn a_frozen_share_holds_a_flush_for_one_deadline_and_its_return_is_seen_at_once() {
    // The reconnecting client fails each call after its 3 s ConnectTimeout: a deadline above
    // that lets those slow failures through one by one, as users' 30 s deadline does.
    for (patient, timeout) in [(true, 3u64), (false, 10)] {
        let s = Scratch::new();
        let share = match patient {
            true => SshShare::start_patient(s.dir.path()),
            false => SshShare::start(s.dir.path()),
        };
        let m = mount_on(&share, &s, &["--share-timeout", &timeout.to_string()]);
        for i in 0..20 {
            // Big enough that the calls abandoned at the deadline are still moving data when
            // the server comes back, as a step's output over a real link is.
            fs::write(s.mnt.join(format!("new{i}.csv")), vec![b'x'; (3 << 20) + i]).unwrap();
        }
        share.freeze_server();
        let started = Instant::now();
        let (code, out) = flush(&s.mnt);
        let took = started.elapsed();
        eprintln!("patient={patient}: flush against the frozen share: {took:?}\n{out}");
        assert_eq!(code, Some(3), "{out}");
        // A bound, not a speed: the deadline twice over and 10 s for a busy machine. A flush
        // that waits for several deadlines in a row, or for the OS, passes it.
        let bound = Duration::from_secs(2 * timeout + 10);
        assert!(
            took < bound,
            "patient={patient}: the flush took {took:?} (bound {bound:?}); mount log:\n{}",
            m.log_text()
        );

        share.thaw_server();
        // The server answers again at once; the calls abandoned at the deadline come back on
        // their own time. The user's flush waits neither for them nor for a schedule. (The
        // reconnecting client needs a moment to reconnect: its first call may still fail.)
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let started = Instant::now();
            let (code, out) = flush(&s.mnt);
            eprintln!(
                "patient={patient}: flush after the thaw: {:?}\n{out}",
                started.elapsed()
            );
            if code == Some(0) {
                break;
            }
            assert!(
                !patient && Instant::now() < deadline,
                "patient={patient}: the first flush after the thaw failed: {out}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_all_landed(&share, &s.mnt);
        m.stop();
    }
}

/// A server that freezes (SIGSTOP on sshd and its connections, sockets left open) makes every
/// call to the share hang; sshfs, like users' mounts, takes minutes to give up. The flush
/// ends at the share deadline with everything pending, local work goes on, and once the
/// server answers again the next flush writes it all.
#[test]
fn a_frozen_share_ends_the_flush_at_the_deadline() {
    let s = Scratch::new();
    let share = SshShare::start_patient(s.dir.path());
    let m = mount_on(&share, &s, &["--retry-after", "0", "--share-timeout", "3"]);
    write_step(&s.mnt.join("results"), 1, 40, 1);
    share.freeze_server();

    let started = Instant::now();
    let (code, out) = flush(&s.mnt);
    let took = started.elapsed();
    eprintln!("flush against the frozen share: {took:?}\n{out}");
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("did not answer"), "{out}");
    // Not a measurement: without the deadline this flush waits for sshfs, minutes.
    assert!(took < Duration::from_secs(60), "the flush took {took:?}");
    let status = fs::read_to_string(s.mnt.join(".sipfs/status")).unwrap();
    assert!(status.contains("results/s0.csv"), "{status}");

    // Local work goes on while the share is frozen.
    fs::write(s.mnt.join("results/during.txt"), "local").unwrap();
    assert_eq!(
        fs::read_to_string(s.mnt.join("results/during.txt")).unwrap(),
        "local"
    );

    share.thaw_server();
    // The calls abandoned at the deadline return once the server answers; until they do, a
    // flush is refused at once, so a few tries may be needed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out) = flush(&s.mnt);
        if code == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never flushed after the thaw: {out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_all_landed(&share, &s.mnt);
    m.stop();
}

#[test]
fn kill9_at_many_points_during_flushes() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    let mut m = mount_on(&share, &s, &["--retry-after", "0"]);
    let delays = [0u64, 5, 15, 40, 80, 150, 300];
    for (round, delay) in delays.iter().enumerate() {
        write_step(&s.mnt.join(format!("r{round}")), round as u8, 120, 1);
        fs::write(
            s.mnt.join("workflow_state.json"),
            format!("{{\"step\": {round}}}"),
        )
        .unwrap();
        let mnt = s.mnt.clone();
        let flusher = std::thread::spawn(move || flush(&mnt));
        std::thread::sleep(Duration::from_millis(*delay));
        m.kill9();
        let _ = flusher.join();
        m = mount_on(&share, &s, &["--retry-after", "0"]);
    }
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    assert_all_landed(&share, &s.mnt);
    for round in 0..delays.len() {
        for i in 0..120 {
            let p = share.export.join(format!("r{round}/s{i}.csv"));
            assert_eq!(
                fs::read(&p).unwrap(),
                vec![round as u8; 4_000 + i],
                "{}",
                p.display()
            );
        }
    }
    m.stop();
}

#[test]
fn local_disk_full() {
    let s = Scratch::new();
    fs::create_dir_all(&s.cache).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&s.cache)
        .status()
        .unwrap()
        .success());
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _cache_fs = Unmount(&s.cache);
    let m = s.mount(&[]);
    let mut written = Vec::new();
    let mut enospc = None;
    for i in 0..40 {
        let p = s.mnt.join(format!("chunk{i}.bin"));
        match fs::write(&p, vec![i as u8; 1 << 20]) {
            Ok(()) => written.push(i),
            Err(e) => {
                enospc = Some(e);
                break;
            }
        }
    }
    let e = enospc.expect("the 24 MiB cache filled up");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    // sipfs is still up and still has every acknowledged write.
    assert_eq!(
        sipfs(&["status", s.mnt.to_str().unwrap()]).status.code(),
        Some(0)
    );
    for &i in &written {
        assert_eq!(
            fs::read(s.mnt.join(format!("chunk{i}.bin"))).unwrap(),
            vec![i as u8; 1 << 20]
        );
    }
    // Space comes back: writing works again.
    let failed = written.len();
    let _ = fs::remove_file(s.mnt.join(format!("chunk{failed}.bin")));
    for &i in written.iter().take(4) {
        fs::remove_file(s.mnt.join(format!("chunk{i}.bin"))).unwrap();
    }
    fs::write(s.mnt.join("after.txt"), "space again").unwrap();
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    for &i in written.iter().skip(4) {
        assert_eq!(
            fs::read(s.share.join(format!("chunk{i}.bin"))).unwrap(),
            vec![i as u8; 1 << 20]
        );
    }
    assert_eq!(
        fs::read_to_string(s.share.join("after.txt")).unwrap(),
        "space again"
    );
    m.stop();
}

#[test]
fn the_share_refuses() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    // Set up as the share's owner would: a folder the share user may not write, and a workbook
    // that cannot be replaced (what an open Excel workbook looks like from the client).
    fs::create_dir_all(share.export.join("locked")).unwrap();
    fs::write(share.export.join("data.xlsx"), "old workbook").unwrap();
    let uid = Command::new("id")
        .args(["-u", ssh_share_user()])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
    std::os::unix::fs::chown(share.export.join("data.xlsx"), Some(uid), Some(uid)).unwrap();
    assert!(Command::new("chattr")
        .arg("+i")
        .arg(share.export.join("data.xlsx"))
        .status()
        .unwrap()
        .success());
    struct Mutable(std::path::PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let _m = Mutable(share.export.join("data.xlsx"));

    let m = mount_on(&share, &s, &["--windows-share", "--retry-after", "0"]);
    fs::write(s.mnt.join("locked/new.csv"), "a,b\n").unwrap();
    fs::write(s.mnt.join("data.xlsx"), "new workbook").unwrap();
    for bad in ["a:b", "CON", "aux.txt", "trailing.", "trailing "] {
        fs::write(s.mnt.join(bad), bad).unwrap();
    }
    fs::write(s.mnt.join("Results.csv"), "upper").unwrap();
    fs::write(s.mnt.join("results.csv"), "lower").unwrap();
    fs::write(s.mnt.join("Report.txt"), "report").unwrap();
    fs::write(s.mnt.join("fine.csv"), "fine").unwrap();
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(3), "{out}");
    for expect in [
        "locked/new.csv: permission denied",
        "data.xlsx: permission denied",
        "close data.xlsx in",
        "a:b: the share does not allow this name",
        "CON: the share does not allow this name",
        "aux.txt: the share does not allow this name",
        "trailing.: the share does not allow this name",
        "results.csv: the share does not allow this name",
        "differs only in case from Results.csv",
    ] {
        assert!(out.contains(expect), "missing {expect:?} in:\n{out}");
    }
    // Everything else was written.
    assert_eq!(
        fs::read_to_string(share.export.join("fine.csv")).unwrap(),
        "fine"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("Results.csv")).unwrap(),
        "upper"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("data.xlsx")).unwrap(),
        "old workbook"
    );
    // A case-only rename is an ordinary rename.
    fs::rename(s.mnt.join("Report.txt"), s.mnt.join("REPORT.txt")).unwrap();

    // The causes are fixed: nothing was lost, everything gets written.
    assert!(Command::new("chattr")
        .arg("-i")
        .arg(share.export.join("data.xlsx"))
        .status()
        .unwrap()
        .success());
    assert!(Command::new("chown")
        .arg(ssh_share_user())
        .arg(share.export.join("locked"))
        .status()
        .unwrap()
        .success());
    for bad in ["a:b", "CON", "aux.txt", "trailing.", "trailing "] {
        fs::rename(
            s.mnt.join(bad),
            s.mnt.join(format!(
                "renamed-{}",
                bad.replace(':', "-").trim_end_matches(['.', ' '])
            )),
        )
        .unwrap();
    }
    fs::rename(s.mnt.join("results.csv"), s.mnt.join("results-lower.csv")).unwrap();
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        fs::read_to_string(share.export.join("locked/new.csv")).unwrap(),
        "a,b\n"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("data.xlsx")).unwrap(),
        "new workbook"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("REPORT.txt")).unwrap(),
        "report"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("renamed-CON")).unwrap(),
        "CON"
    );
    assert_same_content(&share.export, &s.mnt);
    m.stop();
}

fn ssh_share_user() -> &'static str {
    sipfs_tests::ssh_share::SHARE_USER
}

#[test]
fn concurrent_edits_keep_both_versions() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    let uid = Command::new("id")
        .args(["-u", ssh_share_user()])
        .output()
        .unwrap();
    let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().unwrap();
    for (p, c) in [
        ("notes.txt", "v1"),
        ("old.txt", "keep?"),
        ("sub/inner.txt", "inner"),
    ] {
        let path = share.export.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, c).unwrap();
    }
    Command::new("chown")
        .args(["-R", ssh_share_user()])
        .arg(&share.export)
        .status()
        .unwrap();
    let _ = uid;
    let m = mount_on(&share, &s, &["--retry-after", "0"]);
    // Everything is seen (and cached) here first.
    assert_eq!(fs::read_to_string(s.mnt.join("notes.txt")).unwrap(), "v1");
    assert_eq!(fs::read_to_string(s.mnt.join("old.txt")).unwrap(), "keep?");
    assert_eq!(
        fs::read_to_string(s.mnt.join("sub/inner.txt")).unwrap(),
        "inner"
    );

    // Changed here and on the share.
    fs::write(s.mnt.join("notes.txt"), "ours").unwrap();
    fs::write(share.export.join("notes.txt"), "theirs").unwrap();
    filetime::set_file_mtime(
        share.export.join("notes.txt"),
        filetime::FileTime::from_unix_time(2_000_000_000, 0),
    )
    .unwrap();
    // A folder deleted on the share while a file below it changed here.
    fs::write(s.mnt.join("sub/inner.txt"), "ours inner").unwrap();
    fs::remove_dir_all(share.export.join("sub")).unwrap();
    // Deleted here, changed on the share.
    fs::remove_file(s.mnt.join("old.txt")).unwrap();
    fs::write(share.export.join("old.txt"), "changed by a colleague").unwrap();
    filetime::set_file_mtime(
        share.export.join("old.txt"),
        filetime::FileTime::from_unix_time(2_000_000_100, 0),
    )
    .unwrap();

    let out = sipfs(&["flush", s.mnt.to_str().unwrap(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conflicts = report["conflicts"].as_array().unwrap();
    let kept = |path: &str| -> String {
        conflicts
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("no conflict for {path}: {conflicts:?}"))["kept_as"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        fs::read_to_string(share.export.join("notes.txt")).unwrap(),
        "ours"
    );
    assert_eq!(
        fs::read_to_string(share.export.join(kept("notes.txt"))).unwrap(),
        "theirs"
    );
    assert_eq!(
        fs::read_to_string(share.export.join(kept("old.txt"))).unwrap(),
        "changed by a colleague"
    );
    assert!(!share.export.join("old.txt").exists());
    assert_eq!(
        fs::read_to_string(share.export.join("sub/inner.txt")).unwrap(),
        "ours inner"
    );
    m.stop();
}

#[test]
fn pending_changes_are_retried_when_the_share_comes_back() {
    let s = Scratch::new();
    let mut share = SshShare::start(s.dir.path());
    let m = mount_on(&share, &s, &["--retry-after", "1"]);
    // The step looks at the project first (a folder never listed needs the share).
    assert_eq!(fs::read_dir(&s.mnt).unwrap().count(), 0);
    share.stop_server();
    write_step(&s.mnt.join("step1"), 1, 20, 0);
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(3), "{out}");
    // status says what is pending and why.
    let st = sipfs(&["status", s.mnt.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("step1/s0.csv") && text.contains("cannot be reached"),
        "{text}"
    );
    // Written after the failed flush: not the user's request yet, so never retried.
    fs::write(s.mnt.join("later.txt"), "not flushed yet").unwrap();

    share.start_server();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !share.export.join("step1/s19.csv").exists() {
        assert!(Instant::now() < deadline, "not retried:\n{}", m.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        assert_eq!(
            fs::read(share.export.join(format!("step1/s{i}.csv"))).unwrap(),
            vec![1u8; 4_000 + i]
        );
    }
    assert!(
        !share.export.join("later.txt").exists(),
        "a retry wrote a change nobody flushed"
    );
    let log = m.log_text();
    assert!(log.contains("retry: pending changes written"), "{log}");
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    assert!(share.export.join("later.txt").exists());
    m.stop();
}

#[test]
fn a_busy_step_never_waits_for_a_slow_share() {
    let s = Scratch::new();
    let share = SshShare::start_with_latency(s.dir.path(), Some(Duration::from_millis(8)));
    let m = mount_on(&share, &s, &["--retry-after", "0"]);
    assert_eq!(fs::read_dir(&s.mnt).unwrap().count(), 0);
    // Something to flush while the step runs.
    write_step(&s.mnt.join("previous"), 9, 80, 1);
    let mnt = s.mnt.clone();
    let flusher = std::thread::spawn(move || {
        let t = Instant::now();
        let r = flush(&mnt);
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));

    // The step: many small files and a few large ones, reads of what it wrote, renames.
    let mut slowest = Duration::ZERO;
    let step = s.mnt.join("step");
    fs::create_dir_all(&step).unwrap();
    for i in 0..100 {
        let t = Instant::now();
        let p = step.join(format!("f{i}.csv"));
        fs::write(&p, format!("{i}\n").repeat(50)).unwrap();
        assert_eq!(fs::read(&p).unwrap().len(), format!("{i}\n").len() * 50);
        if i % 40 == 0 {
            fs::write(step.join(format!("big{i}.bin")), vec![7u8; 2 << 20]).unwrap();
            fs::rename(
                step.join(format!("big{i}.bin")),
                step.join(format!("big{i}.done")),
            )
            .unwrap();
        }
        slowest = slowest.max(t.elapsed());
    }
    let ((code, out), flush_took) = flusher.join().unwrap();
    eprintln!("slowest local operation: {slowest:?}; concurrent flush: {flush_took:?}");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        flush_took > slowest * 3,
        "the share was not slow enough to tell (flush {flush_took:?}, slowest op {slowest:?})"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a local operation waited {slowest:?}"
    );
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    assert_same_content(&share.export, &s.mnt);
    m.stop();
}

/// SMB semantics through a real Samba server: names compared without case, names Windows
/// refuses, vetoed names, and a client that cannot keep modification times.
#[test]
fn an_smb_share_with_windows_rules() {
    let s = Scratch::new();
    let share = sipfs_tests::smb_share::SmbShare::start(s.dir.path());
    fs::write(share.export.join("Report.txt"), "report").unwrap();
    let m = MountProc::start(
        &share.mnt,
        &s.mnt,
        &s.cache,
        &["--windows-share", "--retry-after", "0"],
    );
    assert!(s.mnt.join("Report.txt").exists());
    fs::create_dir_all(s.mnt.join("results")).unwrap();
    fs::write(s.mnt.join("results/Data.csv"), "upper").unwrap();
    fs::write(s.mnt.join("results/data.csv"), "lower").unwrap();
    fs::write(s.mnt.join("results/a:b"), "colon").unwrap();
    fs::write(s.mnt.join("results/aux.txt"), "device").unwrap();
    fs::write(s.mnt.join("results/fine.csv"), "fine").unwrap();
    fs::write(s.mnt.join("notes.vetoed"), "vetoed by the server").unwrap();
    fs::rename(s.mnt.join("Report.txt"), s.mnt.join("REPORT.txt")).unwrap();

    let out = sipfs(&["flush", s.mnt.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    let pending: Vec<&str> = report["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for p in [
        "results/data.csv",
        "results/a:b",
        "results/aux.txt",
        "notes.vetoed",
    ] {
        assert!(pending.contains(&p), "{p} should stay pending: {report:#}");
    }
    let vetoed = report["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "notes.vetoed")
        .unwrap();
    assert!(
        vetoed["message"]
            .as_str()
            .unwrap()
            .contains("refused this name"),
        "{vetoed}"
    );
    // New files keep their times, to SMB's 100 ns.
    let time = |p: &Path| {
        let d = fs::metadata(p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        d.as_nanos() / 100
    };
    assert_eq!(
        time(&s.mnt.join("results/Data.csv")),
        time(&share.export.join("results/Data.csv"))
    );
    // The one warning: rclone's SMB client makes no hard links, so this share can only be
    // checked just before a commit (weak; see docs/USER_GUIDE.md, "One project, several
    // places"). A Windows client to the same Samba server makes them.
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains("(weak"),
        "{report:#}"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("results/Data.csv")).unwrap(),
        "upper"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("results/fine.csv")).unwrap(),
        "fine"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("REPORT.txt")).unwrap(),
        "report"
    );
    assert!(!share.export.join("Report.txt").exists() || share.export.join("REPORT.txt").exists());

    // A change of time alone reaches the server too.
    let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    filetime::set_file_mtime(s.mnt.join("results/fine.csv"), t).unwrap();
    let out = sipfs(&["flush", s.mnt.to_str().unwrap(), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!r["pending"].to_string().contains("fine.csv"), "{r:#}");
    assert_eq!(
        fs::metadata(share.export.join("results/fine.csv"))
            .unwrap()
            .modified()
            .unwrap(),
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    );

    // Renamed to names the share takes: everything is written, nothing was lost.
    fs::rename(
        s.mnt.join("results/data.csv"),
        s.mnt.join("results/data-lower.csv"),
    )
    .unwrap();
    fs::rename(s.mnt.join("results/a:b"), s.mnt.join("results/a-b")).unwrap();
    fs::rename(
        s.mnt.join("results/aux.txt"),
        s.mnt.join("results/aux-file.txt"),
    )
    .unwrap();
    fs::rename(s.mnt.join("notes.vetoed"), s.mnt.join("notes.txt")).unwrap();
    let (code, out) = flush(&s.mnt);
    assert_eq!(code, Some(0), "{out}");
    for (p, c) in [
        ("results/data-lower.csv", "lower"),
        ("results/a-b", "colon"),
        ("results/aux-file.txt", "device"),
        ("notes.txt", "vetoed by the server"),
    ] {
        assert_eq!(fs::read_to_string(share.export.join(p)).unwrap(), c, "{p}");
    }
    m.stop();
}

/// Content nothing repeats: a hole or a misplaced block never matches it.
fn noise(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `len` bytes at `off` of `path`, read through a shared read-only mapping.
fn mapped_bytes(path: &Path, off: usize, len: usize) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len() as usize;
    // SAFETY: a read-only shared mapping of a file nobody truncates during the test, unmapped
    // before return; the slice read lies inside it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let out = std::slice::from_raw_parts((p as *const u8).add(off), len).to_vec();
        libc::munmap(p, size);
        out
    }
}

/// The ranges of ranged copies the journal of `cache` records, each checked against `want`:
/// a recorded range must hold the share's bytes, whatever state the crash left. Returns the
/// bytes recorded.
fn recorded_ranges_hold_the_share_bytes(cache: &Path, want: &[u8]) -> u64 {
    use std::os::unix::fs::FileExt;
    let journal = fs_core::journal::Journal::open(&cache.join("journal.sqlite")).unwrap();
    let mut recorded = 0;
    for row in journal.load_partials().unwrap() {
        assert_eq!(row.size, want.len() as u64);
        let part = fs::File::open(cache.join("parts").join(&row.file)).unwrap();
        for span in row.ranges.spans() {
            let mut got = vec![0u8; (span.end - span.start) as usize];
            part.read_exact_at(&mut got, span.start).unwrap();
            assert!(
                got == want[span.start as usize..span.end as usize],
                "recorded range {span:?} of {} does not hold the share's bytes",
                row.file
            );
            recorded += span.end - span.start;
        }
    }
    recorded
}

/// A big file on a slow share: its first bytes read before the whole is fetched, the rest
/// comes in the background, and `kill -9` at any point of that fetch never makes a hole or a
/// half-written block count as data. After each crash the mount reads the file right.
#[test]
fn kill9_during_a_background_fetch_never_serves_a_hole() {
    let s = Scratch::new();
    let share = SshShare::start_with_latency(s.dir.path(), Some(Duration::from_millis(2)));
    let want = noise(48 << 20, 7);
    fs::write(share.export.join("big.bin"), &want).unwrap();
    chown_to_share_user(&share.export.join("big.bin"));
    let at = |off: usize| &want[off..off + 4096];
    let mut seen_partial = 0;
    for (round, delay) in [0u64, 100, 300, 700, 1500].into_iter().enumerate() {
        let m = mount_on(&share, &s, &[]);
        let off = (round * 9 + 3) << 20;
        let mut got = vec![0u8; 4096];
        {
            use std::os::unix::fs::FileExt;
            let f = fs::File::open(s.mnt.join("big.bin")).unwrap();
            f.read_exact_at(&mut got, off as u64).unwrap();
        }
        assert!(got == at(off), "round {round}: first read at {off} differs");
        let mapped = mapped_bytes(&s.mnt.join("big.bin"), off + (1 << 20), 4096);
        assert!(
            mapped == at(off + (1 << 20)),
            "round {round}: a mapped read differs"
        );
        let status: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(s.mnt.join(".sipfs/status")).unwrap())
                .unwrap();
        let fetching = status["fetching"].as_array().unwrap().clone();
        std::thread::sleep(Duration::from_millis(delay));
        m.kill9();
        let rows = fs::read_dir(s.cache.join("parts")).map_or(0, |d| d.count());
        // A part file left means the fetch was under way when status was read.
        if rows > 0 {
            assert_eq!(fetching.len(), 1, "{status}");
            assert_eq!(fetching[0]["path"], "big.bin");
            assert_eq!(fetching[0]["size"], want.len() as u64);
        }
        let recorded = recorded_ranges_hold_the_share_bytes(&s.cache, &want);
        eprintln!("round {round}: killed after {delay} ms; {rows} part file(s), {recorded} bytes recorded");
        if rows > 0 {
            seen_partial += 1;
        }
    }
    assert!(
        seen_partial > 0,
        "no kill found the file partly fetched: the share was too fast to tell"
    );
    let m = mount_on(&share, &s, &[]);
    assert!(
        fs::read(s.mnt.join("big.bin")).unwrap() == want,
        "the file reads wrong after the crashes"
    );
    m.stop();
}

/// The first listing of a big folder over a slow link, where its stats are made many at a
/// time (`fs_core::fanout`): every entry is there, with its own kind, size and time.
#[test]
fn a_first_listing_over_a_slow_link_has_every_entry_right() {
    use std::os::unix::fs::MetadataExt;
    let s = Scratch::new();
    let share = SshShare::start_with_latency(s.dir.path(), Some(Duration::from_millis(2)));
    let dir = share.export.join("runs");
    fs::create_dir(&dir).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..300u64 {
        let (name, size) = (format!("r{i:03}.csv"), i * 7 % 1000);
        let p = dir.join(&name);
        if i % 50 == 0 {
            fs::create_dir(&p).unwrap();
        } else {
            fs::write(&p, vec![b'x'; size as usize]).unwrap();
        }
        let t = filetime::FileTime::from_unix_time(1_600_000_000 + i as i64 * 3600, 0);
        filetime::set_file_mtime(&p, t).unwrap();
        want.insert(
            name,
            (
                i % 50 == 0,
                if i % 50 == 0 { None } else { Some(size) },
                t.unix_seconds(),
            ),
        );
    }
    chown_to_share_user(&dir);
    let m = mount_on(&share, &s, &[]);
    let mut got = BTreeMap::new();
    for e in fs::read_dir(s.mnt.join("runs")).unwrap() {
        let e = e.unwrap();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let size = (!md.is_dir()).then_some(md.len());
        got.insert(
            e.file_name().into_string().unwrap(),
            (md.is_dir(), size, md.mtime()),
        );
    }
    assert_eq!(got, want);
    m.stop();
}
