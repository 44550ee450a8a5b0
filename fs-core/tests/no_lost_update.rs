//! No version is lost when someone else writes on the share while a flush runs: whatever was
//! at a name when the flush replaced it survives, at the name or as a conflict copy
//! (`flush/capture.rs`).
//!
//! Each scenario is tried with the other writer acting between every two share calls of the
//! flush, in turn (`FaultControl::interleave`): every interleaving, one after another, with
//! the outcome the same on every machine.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use fs_core::{Engine, RelPath, SetAttr};

mod common;

type Rig = common::FaultyRig;

fn rig(prepare: impl FnOnce(&Path)) -> Rig {
    // One worker, in a fixed order: the calls come in the same order on every run.
    common::faulty_rig(prepare, |opts| opts.flush_order_seed = Some(1))
}

use common::write_here;

/// Every file's content on the share, at names and conflict copies alike (temporaries and
/// captured versions not counted: they are not where a user looks).
fn versions_on_share(share: &Path) -> BTreeSet<Vec<u8>> {
    common::snapshot(share)
        .into_iter()
        .filter(|(p, _)| !fs_core::names::is_temp_name(p.rsplit('/').next().unwrap()))
        .filter_map(|(_, e)| match e {
            common::Entry::File(c, _) => Some(c),
            common::Entry::Dir(_) => None,
        })
        .collect()
}

/// Runs `scenario` with the other writer acting before the share's `n`-th call of the flush,
/// for every `n` until the flush makes fewer calls than that. After the flush (and the next
/// one, which removes captured versions) every version written is on the share, and nothing
/// of sipfs's is left there.
fn at_every_call(
    what: &str,
    prepare: impl Fn(&Path),
    here: impl Fn(&Engine),
    theirs: impl Fn(&Path) + Clone + Send + 'static,
    must_have: &[&str],
) {
    for n in 0.. {
        let r = rig(&prepare);
        // The engine knows the share as it was (a listing, and the files read).
        for e in r.engine.readdir(fs_core::ROOT_INO).unwrap() {
            if let Ok(ino) = r.engine.resolve(&RelPath::new(&e.name).unwrap()) {
                if let Ok(fh) = r.engine.open_file(ino, false, false) {
                    r.engine.release(fh);
                }
            }
        }
        here(&r.engine);
        let share = r.share.clone();
        let act = theirs.clone();
        r.faults.interleave(n, move || act(&share));
        let report = r.engine.flush(None);
        if r.faults.interleave_pending() {
            assert!(n > 0, "{what}: the flush made no share call");
            return;
        }
        let again = r.engine.flush(None);
        let versions = versions_on_share(&r.share);
        for want in must_have {
            assert!(
                versions
                    .iter()
                    .any(|v| String::from_utf8_lossy(v).lines().any(|l| format!("{l}\n") == *want)),
                "{what}: the other writer acting before call {n}: {want:?} is lost; on the share: {:?}\nfirst flush: {report:?}\nsecond: {again:?}",
                versions
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        let captured = common::captures_left(&r.share);
        // The second flush may still be writing ours (kept pending by the first when the
        // other writer took the name); a third settles everything.
        let third = r.engine.flush(None);
        assert!(third.is_clean(), "{what} (call {n}): {third:?}");
        let left: Vec<_> = common::snapshot(&r.share)
            .into_keys()
            .filter(|p| fs_core::names::is_temp_name(p.rsplit('/').next().unwrap()))
            .chain(common::captures_left(&r.share))
            .collect();
        assert!(
            left.is_empty(),
            "{what} (call {n}): left on the share: {left:?} (after two flushes: {captured:?})"
        );
    }
}

/// The other writer as programs write: it appends a line to what is at the name when it
/// acts (creating the file if there is none), in place.
fn append_in_place(share: &Path, name: &str, line: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(share.join(name))
        .unwrap();
    f.write_all(line.as_bytes()).unwrap();
}

/// As the workflow manager's StateManager writes: it reads what is at the name, writes that
/// and its line to a temporary, and renames the temporary over the name.
fn append_by_rename(share: &Path, name: &str, line: &str) {
    let mut content = fs::read(share.join(name)).unwrap_or_default();
    content.extend_from_slice(line.as_bytes());
    let tmp = share.join(format!(".{name}.tmp"));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, share.join(name)).unwrap();
}

#[test]
fn a_file_changed_both_here_and_in_place_on_the_share_during_the_flush() {
    at_every_call(
        "appended in place",
        |s| fs::write(s.join("sheet.csv"), "base\n").unwrap(),
        |e| write_here(e, "sheet.csv", b"base\nours\n"),
        |s| append_in_place(s, "sheet.csv", "theirs\n"),
        &["ours\n", "theirs\n"],
    );
}

#[test]
fn a_file_changed_here_and_replaced_by_rename_on_the_share_during_the_flush() {
    at_every_call(
        "replaced by rename",
        |s| fs::write(s.join("workflow_state.json"), "step 1\n").unwrap(),
        |e| write_here(e, "workflow_state.json", b"step 1\nours\n"),
        |s| append_by_rename(s, "workflow_state.json", "theirs\n"),
        &["ours\n", "theirs\n"],
    );
}

/// A name new here that someone else creates on the share while the flush writes it.
#[test]
fn a_new_file_whose_name_someone_takes_on_the_share_during_the_flush() {
    at_every_call(
        "created on both sides",
        |_| {},
        |e| write_here(e, "results.csv", b"ours\n"),
        |s| append_in_place(s, "results.csv", "theirs\n"),
        &["ours\n", "theirs\n"],
    );
}

/// A file deleted here that someone else changes on the share while the flush removes it.
#[test]
fn a_file_deleted_here_and_changed_on_the_share_during_the_flush() {
    at_every_call(
        "deleted here",
        |s| fs::write(s.join("old.csv"), "base\n").unwrap(),
        |e| {
            e.unlink(fs_core::ROOT_INO, "old.csv").unwrap();
        },
        |s| append_in_place(s, "old.csv", "theirs\n"),
        &["theirs\n"],
    );
}

/// A file renamed over another here (`mv new.csv old.csv`) while someone changes the one it
/// replaces on the share.
#[test]
fn a_file_renamed_over_one_changed_on_the_share_during_the_flush() {
    at_every_call(
        "renamed over",
        |s| {
            fs::write(s.join("old.csv"), "base\n").unwrap();
            fs::write(s.join("new.csv"), "ours\n").unwrap();
        },
        |e| {
            e.rename(
                fs_core::ROOT_INO,
                "new.csv",
                fs_core::ROOT_INO,
                "old.csv",
                false,
            )
            .unwrap();
        },
        |s| append_in_place(s, "old.csv", "theirs\n"),
        &["ours\n", "theirs\n"],
    );
}

/// The other writer appends to the file through a handle it opened before the flush
/// replaced it: its bytes land in the version the flush moved aside, which the next flush
/// keeps as a conflict copy instead of removing it.
#[test]
fn a_writer_that_had_the_file_open_keeps_its_bytes() {
    use std::io::Write;
    let r = rig(|s| fs::write(s.join("log.txt"), "line 1\n").unwrap());
    let ino = r.engine.resolve(&RelPath::new("log.txt").unwrap()).unwrap();
    let fh = r.engine.open_file(ino, false, false).unwrap();
    r.engine.release(fh);
    write_here(&r.engine, "log.txt", b"line 1\nours\n");
    let mut open = fs::OpenOptions::new()
        .append(true)
        .open(r.share.join("log.txt"))
        .unwrap();
    assert!(r.engine.flush(None).is_clean());
    // After the flush, through the handle opened before it.
    open.write_all(b"line 2, theirs\n").unwrap();
    drop(open);
    let kept = r.engine.flush(None);
    assert_eq!(kept.conflicts.len(), 1, "{kept:?}");
    let versions = versions_on_share(&r.share);
    assert!(
        versions.contains(b"line 1\nline 2, theirs\n".as_slice()),
        "the appended line is lost: {versions:?}"
    );
    assert!(
        versions.contains(b"line 1\nours\n".as_slice()),
        "{versions:?}"
    );
    assert!(common::captures_left(&r.share).is_empty());
}

/// A share without hard links (SMB through rclone) can only check a name just before the
/// rename: the flush report and `status` say that it is weak.
#[test]
fn a_share_without_hard_links_is_named_weak() {
    let r = rig(|s| fs::write(s.join("a.csv"), "base\n").unwrap());
    r.faults.refuse_hard_links(true);
    write_here(&r.engine, "a.csv", b"base\nours\n");
    let report = r.engine.flush(None);
    assert_eq!(report.files_written, 1, "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("(weak")),
        "{report:?}"
    );
    assert_eq!(
        r.engine.status().no_replace,
        Some(fs_core::noreplace::NoReplace::Checked)
    );
    // A share that refuses a taken name by itself is not.
    let r = rig(|s| fs::write(s.join("a.csv"), "base\n").unwrap());
    write_here(&r.engine, "a.csv", b"base\nours\n");
    let report = r.engine.flush(None);
    assert!(report.warnings.is_empty(), "{report:?}");
    assert!(!r.engine.status().no_replace.unwrap().is_weak());
}

/// What the commit costs, in calls to the share (`Backing` calls; a link-then-unlink publish
/// is one call here and two requests to a network share). A new file: the look at its name,
/// the copy, the publish. A changed file adds the capture and its stat, and the next flush
/// the stat and removal of the captured old version.
#[test]
fn share_calls_per_flushed_file() {
    let r = rig(|s| fs::write(s.join("old.csv"), "base\n").unwrap());
    let ino = r.engine.resolve(&RelPath::new("old.csv").unwrap()).unwrap();
    let fh = r.engine.open_file(ino, false, false).unwrap();
    r.engine.release(fh);
    // Teach the flush the share's time resolution first: then no stat after each publish.
    // Each file gets a time whose part below 100 ns is not zero: a clock reading in whole
    // 100 ns (one in a hundred) teaches nothing, and the count would then hold one more stat.
    let told = |path: &str, data: &[u8], mtime_ns: i64| {
        write_here(&r.engine, path, data);
        let ino = r.engine.resolve(&RelPath::new(path).unwrap()).unwrap();
        let times = SetAttr {
            mtime_ns: Some(mtime_ns),
            ..SetAttr::default()
        };
        r.engine.setattr(ino, times).unwrap();
    };
    told("warm.csv", b"warm", 1_700_000_000_000_000_017);
    assert!(r.engine.flush(None).is_clean());
    assert!(r.engine.flush(None).is_clean());

    let count = |f: &dyn Fn()| {
        let before = r.faults.ops();
        f();
        r.faults.ops() - before
    };
    told("new.csv", b"new", 1_700_000_001_000_000_023);
    let new_file = count(&|| assert!(r.engine.flush(None).is_clean()));
    told("old.csv", b"base\nours\n", 1_700_000_002_000_000_031);
    let changed = count(&|| assert!(r.engine.flush(None).is_clean()));
    let next = count(&|| assert!(r.engine.flush(None).is_clean()));
    eprintln!("share calls: new file {new_file}, changed file {changed}, next flush {next}");
    // A folder's time is set after each flush that wrote into it (and its mode too after a
    // create in it, which changed the folder here). Before captures, with one rename over
    // the name, these were 5, 4 and 0.
    assert_eq!(new_file, 5, "look, copy, publish, folder time and mode");
    assert_eq!(
        changed, 6,
        "look, copy, capture, its stat, publish, folder time"
    );
    assert_eq!(
        next, 3,
        "the captured old version: stat, removal; folder time"
    );
}

/// Another sipfs committing new versions at `name`, one after the other, as steps of its work
/// on the share: each commit captures what is at the name (which empties it), publishes its
/// version there, and keeps the captured one as a conflict copy (the first) or removes it
/// later (the second, its own old version). `coarse`: the publish and what follows it come in
/// one step, as they do when several of its calls fall between two of ours.
fn commits_at(share: &Path, name: &str, coarse: bool) -> Vec<fs_core::fault::Step> {
    let mut steps: Vec<fs_core::fault::Step> = Vec::new();
    for (k, version) in ["second\n", "third, longer\n"].into_iter().enumerate() {
        let at = share.join(name);
        let cap = share.join(fs_core::names::capture_name(name));
        let tmp = share.join(format!(".{name}.sipfs-tmp-other-{k}"));
        let conflict = share.join(format!("{name}.sipfs-conflict-{k}"));
        let (c, a) = (cap.clone(), at.clone());
        steps.push(Box::new(move || fs::rename(&a, &c).unwrap()));
        let publish = move || {
            fs::write(&tmp, version).unwrap();
            fs::rename(&tmp, &at).unwrap();
        };
        let settle: fs_core::fault::Step = match k {
            0 => Box::new(move || fs::rename(&cap, &conflict).unwrap()),
            _ => Box::new(move || fs::remove_file(&cap).unwrap()),
        };
        if coarse {
            steps.push(Box::new(move || {
                publish();
                settle();
            }));
        } else {
            steps.push(Box::new(publish));
            steps.push(settle);
        }
    }
    steps
}

/// A file opened here while another sipfs commits new versions at its name, between any two
/// of the open's share calls: the name is empty on the share for a moment at each commit, and
/// a look at the folder, then one at the name, can fall on two different commits. The open
/// reads one of the versions, and never takes the file for deleted.
#[test]
fn a_file_opened_while_another_sipfs_commits_at_its_name_is_read() {
    let versions: [&[u8]; 3] = [b"first\n", b"second\n", b"third, longer\n"];
    for coarse in [false, true] {
        for n in 0.. {
            let r = rig(|s| fs::write(s.join("sheet.csv"), versions[0]).unwrap());
            let ino = r
                .engine
                .resolve(&RelPath::new("sheet.csv").unwrap())
                .unwrap();
            let steps = commits_at(&r.share, "sheet.csv", coarse);
            let all = steps.len();
            r.faults.interleave_steps(n, steps);
            // As an append opens it: the whole file is fetched.
            let opened = r.engine.open_file(ino, true, false);
            // Every step still waiting: the open was over before the first.
            let untouched = r.faults.interleaved_left() == all;
            let fh = opened.unwrap_or_else(|e| {
                panic!("steps from the open's call {n} (coarse: {coarse}): {e}")
            });
            let read = r.engine.read(&fh, 0, 100).unwrap();
            assert!(
                versions.contains(&read.as_slice()),
                "steps from call {n} (coarse: {coarse}): read {:?}",
                String::from_utf8_lossy(&read)
            );
            r.engine.release(fh);
            if untouched {
                break;
            }
        }
    }
}
