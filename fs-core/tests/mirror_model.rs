//! Model-based property test of mirror mode.
//!
//! Random sequences of plain file operations made directly in the mirror folder (as a
//! container or any program does: writes, same-size rewrites within one timestamp tick,
//! replace-by-rename, mtime changes, mkdir, rm -rf, renames of files and folders), flushes,
//! refreshes, edits made on the share by "someone else", share outages (also in the middle of
//! a flush) and crashes (the mirror dropped without a flush and reopened) run against a real
//! mirror on real directories. The reference model is what the folder held after the user's
//! last operation, plus the share's version of what others changed. Checked:
//! - sipfs never changes the user's files: after every flush, refresh, outage and reopen, the
//!   folder still holds exactly what the user's operations left (content and mtimes);
//! - a flush with a healthy share leaves nothing pending, and then the share equals the folder
//!   (content, hierarchy, mtimes of files and folders), minus ignored paths, with no
//!   temporaries;
//! - a refresh with a healthy share brings in exactly what others changed (content and mtimes).
//!
//! The mirror watches the folder for changes (`mirror/watch.rs`), as `sipfs mirror` does, so
//! scans after the first walk only what notifications named; a missed change fails the
//! share-equals-folder check.
//!
//! Others only change entries below `r/`, which the user's operations never touch: conflicts
//! have their own scenario tests in `mirror.rs`.
//!
//! A case costs about ten of the engine model's (each check walks three trees), so it runs a
//! tenth of `PROPTEST_CASES` (1 000 by default, as CI runs it).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_core::fault::{FaultControl, FaultyBacking};
use fs_core::{Backing, DirBacking, EngineOptions, Mirror, RetryPolicy};
use proptest::prelude::*;

mod common;
use common::{scratch_root, snapshot, Entry};

const LOCAL: &[&str] = &[
    "a",
    "b",
    ".h",
    "d",
    "d/a",
    "d/b",
    "d/e",
    "d/e/a",
    "e",
    "e/a",
    "__pycache__",
    "__pycache__/a",
    "d/.DS_Store",
];

const REMOTE: &[&str] = &["r/x", "r/y", "r/s/z"];

/// The default rules: `__pycache__/` (folders only) and `.DS_Store`.
fn is_ignored(p: &str, is_dir: bool) -> bool {
    let comps: Vec<&str> = p.split('/').collect();
    let (last, dirs) = comps.split_last().unwrap();
    dirs.iter()
        .any(|c| *c == "__pycache__" || *c == ".DS_Store")
        || *last == ".DS_Store"
        || (is_dir && *last == "__pycache__")
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize, Vec<u8>),
    /// Same length, same mtime afterwards: only the content (and the ctime) changes.
    Rewrite(usize, u8),
    /// Written beside, then renamed over (how programs save atomically).
    Replace(usize, Vec<u8>),
    SetMtime(usize, u32),
    Mkdir(usize),
    Remove(usize),
    Rename(usize, usize),
    Flush,
    Refresh,
    RemoteWrite(usize, Vec<u8>),
    RemoteDelete(usize),
    Offline,
    OfflineAfter(u8),
    Heal,
    Crash,
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..16)
}

fn op() -> impl Strategy<Value = Op> {
    let l = 0..LOCAL.len();
    prop_oneof![
        5 => (l.clone(), data()).prop_map(|(p, d)| Op::Write(p, d)),
        2 => (l.clone(), any::<u8>()).prop_map(|(p, b)| Op::Rewrite(p, b)),
        2 => (l.clone(), data()).prop_map(|(p, d)| Op::Replace(p, d)),
        1 => (l.clone(), 0u32..2_000_000).prop_map(|(p, t)| Op::SetMtime(p, t)),
        4 => l.clone().prop_map(Op::Mkdir),
        3 => l.clone().prop_map(Op::Remove),
        3 => (l.clone(), l).prop_map(|(a, b)| Op::Rename(a, b)),
        4 => Just(Op::Flush),
        2 => Just(Op::Refresh),
        2 => (0..REMOTE.len(), data()).prop_map(|(p, d)| Op::RemoteWrite(p, d)),
        1 => (0..REMOTE.len()).prop_map(Op::RemoteDelete),
        1 => Just(Op::Offline),
        1 => (0u8..12).prop_map(Op::OfflineAfter),
        2 => Just(Op::Heal),
        2 => Just(Op::Crash),
    ]
}

fn split(m: &BTreeMap<String, Entry>) -> (BTreeMap<String, Entry>, BTreeMap<String, Entry>) {
    m.iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(k, _)| !(k == "r" || k.starts_with("r/")))
}

/// File contents and mtimes only: folder times are checked where they are defined.
fn files(m: &BTreeMap<String, Entry>) -> BTreeMap<String, Entry> {
    m.iter()
        .map(|(k, v)| {
            let v = match v {
                Entry::Dir(_) => Entry::Dir(0),
                f => f.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

struct Rig {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    cache: PathBuf,
    folder: PathBuf,
    faults: Arc<FaultControl>,
    mirror: Option<Mirror>,
    /// What the user's operations left in the folder (outside `r/`).
    local: BTreeMap<String, Entry>,
    /// A flush or refresh failed since the share was last healthy and fully synced.
    faulted: bool,
    /// Drawn from the case: the order of listings and of a flush's work.
    seed: u64,
}

impl Rig {
    fn new(seed: u64) -> Rig {
        let tmp = tempfile::tempdir_in(scratch_root()).unwrap();
        let share = tmp.path().join("share");
        fs::create_dir_all(share.join("d")).unwrap();
        fs::create_dir_all(share.join("r")).unwrap();
        fs::write(share.join("a"), b"share a").unwrap();
        fs::write(share.join("d/a"), b"share d/a").unwrap();
        fs::write(share.join("r/x"), b"share r/x").unwrap();
        let mut rig = Rig {
            cache: tmp.path().join("cache"),
            folder: tmp.path().join("folder"),
            _tmp: tmp,
            share,
            faults: FaultControl::new(),
            mirror: None,
            local: BTreeMap::new(),
            faulted: false,
            seed,
        };
        rig.faults.shuffle_listings(seed);
        rig.open();
        let r = rig.m().sync(&|_| {}).expect("first sync");
        assert!(r.errors.is_empty(), "{r:?}");
        // The first fill copies the share exactly, times included.
        assert_eq!(snapshot(&rig.folder), snapshot(&rig.share));
        rig.local = split(&snapshot(&rig.folder)).0;
        rig
    }

    fn open(&mut self) {
        let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
            Arc::new(DirBacking::new(&self.share)),
            self.faults.clone(),
        ));
        let mut opts = EngineOptions::new(&self.cache, "mirror-model-share");
        // One worker, in an order drawn from the case: the outcome depends on the case alone
        // (see model.rs).
        opts.parallelism = 1;
        opts.flush_order_seed = Some(self.seed);
        // Temporaries of a folder receiving two files or more go through staging folders
        // (`spread_temps`), so crashes and outages hit those too.
        opts.stage_spread_min = 2;
        opts.stage_spread_dirs = 3;
        opts.retry = RetryPolicy::none();
        let m = Mirror::open(backing, opts, &self.folder).expect("mirror opens");
        // Served as `sipfs mirror` serves it: scans after the first walk only what the OS
        // said changed, so every check below holds for those too.
        m.watch_changes();
        self.mirror = Some(m);
    }

    fn m(&self) -> &Mirror {
        self.mirror.as_ref().unwrap()
    }

    fn p(&self, i: usize) -> PathBuf {
        self.folder.join(LOCAL[i])
    }
}

fn mtime_ns(p: &Path) -> i64 {
    let md = p.symlink_metadata().unwrap();
    let t = filetime::FileTime::from_last_modification_time(&md);
    t.unix_seconds() * 1_000_000_000 + t.nanoseconds() as i64
}

/// The user's operation, as plain file-system calls; failures (a missing parent...) are
/// simply what a program would see, and leave the folder as it was.
fn local_op(rig: &Rig, op: &Op) {
    match op {
        Op::Write(i, d) => {
            let _ = fs::write(rig.p(*i), d);
        }
        Op::Rewrite(i, b) => {
            let p = rig.p(*i);
            if p.is_file() {
                let before = mtime_ns(&p);
                let len = fs::metadata(&p).unwrap().len() as usize;
                let mut content = fs::read(&p).unwrap();
                if len == 0 {
                    return;
                }
                content[0] = content[0].wrapping_add((*b).max(1));
                content.truncate(len);
                fs::write(&p, &content).unwrap();
                let t = filetime::FileTime::from_unix_time(
                    before.div_euclid(1_000_000_000),
                    before.rem_euclid(1_000_000_000) as u32,
                );
                filetime::set_file_mtime(&p, t).unwrap();
            }
        }
        Op::Replace(i, d) => {
            let p = rig.p(*i);
            let tmp = p.with_file_name(format!("{}.tmp~", LOCAL[*i].rsplit('/').next().unwrap()));
            if fs::write(&tmp, d).is_ok() && fs::rename(&tmp, &p).is_err() {
                let _ = fs::remove_file(&tmp);
            }
        }
        Op::SetMtime(i, t) => {
            let _ = filetime::set_file_mtime(
                rig.p(*i),
                filetime::FileTime::from_unix_time(1_600_000_000 + *t as i64, 0),
            );
        }
        Op::Mkdir(i) => {
            let _ = fs::create_dir(rig.p(*i));
        }
        Op::Remove(i) => {
            let p = rig.p(*i);
            if p.is_dir() {
                let _ = fs::remove_dir_all(&p);
            } else {
                let _ = fs::remove_file(&p);
            }
        }
        Op::Rename(a, b) => {
            let _ = fs::rename(rig.p(*a), rig.p(*b));
        }
        _ => unreachable!(),
    }
}

fn check_local_kept(rig: &Rig, when: &str) -> Result<(), TestCaseError> {
    let (local, _) = split(&snapshot(&rig.folder));
    // Folder times may follow the share's (the project folder's, when others add `r/`).
    prop_assert_eq!(
        files(&local),
        files(&rig.local),
        "user's files changed by {}",
        when
    );
    Ok(())
}

fn check_share_equals_folder(rig: &Rig) -> Result<(), TestCaseError> {
    let (local, _) = split(&snapshot(&rig.folder));
    // Old versions a commit captured stay, under a private name, until the next flush (a
    // program may still have one open): `snapshot` leaves them out, and the end of `run`
    // checks that they go.
    let (share, _) = split(&snapshot(&rig.share));
    let expected: BTreeMap<String, Entry> = local
        .into_iter()
        .filter(|(k, v)| !is_ignored(k, matches!(v, Entry::Dir(_))))
        .collect();
    prop_assert_eq!(
        &share,
        &expected,
        "share differs from the folder after a clean flush"
    );
    let temps: Vec<_> = share.keys().filter(|k| k.contains(".sipfs-tmp")).collect();
    prop_assert!(temps.is_empty(), "temporaries left: {:?}", temps);
    Ok(())
}

fn check_remote_pulled(rig: &Rig) -> Result<(), TestCaseError> {
    let (_, folder_r) = split(&snapshot(&rig.folder));
    let (_, share_r) = split(&snapshot(&rig.share));
    prop_assert_eq!(
        files(&folder_r),
        files(&share_r),
        "refresh did not bring in r/"
    );
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let seed = xxhash_rust::xxh3::xxh3_64(format!("{ops:?}").as_bytes());
    let mut rig = Rig::new(seed);
    for op in &ops {
        match op {
            Op::Write(..)
            | Op::Rewrite(..)
            | Op::Replace(..)
            | Op::SetMtime(..)
            | Op::Mkdir(..)
            | Op::Remove(..)
            | Op::Rename(..) => {
                local_op(&rig, op);
                rig.local = split(&snapshot(&rig.folder)).0;
            }
            Op::Flush => {
                let healthy = !rig.faults.is_offline();
                let r = rig.m().flush(Some("model")).expect("flush runs");
                check_local_kept(&rig, "a flush")?;
                if healthy && r.pending.is_empty() {
                    prop_assert!(r.conflicts.is_empty(), "unexpected conflict {:?}", r);
                    check_share_equals_folder(&rig)?;
                } else {
                    prop_assert!(
                        !healthy || rig.faults.is_offline(),
                        "pending with a healthy share: {:?}",
                        r.pending
                    );
                    rig.faulted = true;
                }
            }
            Op::Refresh => {
                let healthy = !rig.faults.is_offline();
                let r = rig.m().sync(&|_| {}).expect("sync runs");
                check_local_kept(&rig, "a refresh")?;
                if healthy && r.errors.is_empty() && !rig.faults.is_offline() {
                    check_remote_pulled(&rig)?;
                }
            }
            Op::RemoteWrite(i, d) => {
                let p = rig.share.join(REMOTE[*i]);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(&p, d).unwrap();
            }
            Op::RemoteDelete(i) => {
                let _ = fs::remove_file(rig.share.join(REMOTE[*i]));
            }
            Op::Offline => rig.faults.set_offline(true),
            Op::OfflineAfter(n) => rig.faults.offline_after(*n as u32),
            Op::Heal => rig.faults.set_offline(false),
            Op::Crash => {
                rig.mirror = None;
                rig.open();
                check_local_kept(&rig, "a reopen")?;
            }
        }
    }
    // In the end, with a healthy share, everything reaches it and others' changes come in.
    rig.faults.set_offline(false);
    let r = rig.m().flush(Some("final")).expect("final flush");
    prop_assert!(
        r.pending.is_empty(),
        "pending after the final flush: {:?}",
        r.pending
    );
    prop_assert!(
        r.conflicts.is_empty(),
        "unexpected conflict {:?}",
        r.conflicts
    );
    check_local_kept(&rig, "the final flush")?;
    check_share_equals_folder(&rig)?;
    let s = rig.m().sync(&|_| {}).expect("final sync");
    prop_assert!(s.errors.is_empty(), "{:?}", s.errors);
    check_local_kept(&rig, "the final refresh")?;
    check_remote_pulled(&rig)?;
    // A crash now changes nothing: a reopened mirror finds nothing to write.
    rig.mirror = None;
    rig.open();
    let r = rig.m().flush(Some("after reopen")).expect("flush");
    prop_assert_eq!(
        r.files_written,
        0,
        "rewrote unchanged files: {:?}",
        r.written
    );
    check_share_equals_folder(&rig)?;
    // That flush, with nothing to write, removed the old versions commits captured.
    let captured = common::captures_left(&rig.share);
    prop_assert!(
        captured.is_empty(),
        "captured versions left: {:?}",
        captured
    );
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n: u32| (n / 10).max(1))
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        rng_seed: common::model_seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn mirror_matches_model(ops in prop::collection::vec(op(), 1..30)) {
        run(ops)?;
    }
}

/// Cases the model found, kept as plain tests so that they run whatever the seed.
mod found {
    use super::*;

    fn check(ops: Vec<Op>) {
        if let Err(e) = run(ops) {
            panic!("{e}");
        }
    }

    /// A file removed in a folder that is then renamed: the flush captures the share's file
    /// (to remove it with the next flush) and then renames the folder, which moves the
    /// captured file with it. The next flush must find it at its new place and remove it
    /// (found by the model at a fresh seed).
    #[test]
    fn a_captured_version_moves_with_its_renamed_folder() {
        check(vec![Op::Remove(4), Op::Refresh, Op::Rename(3, 1)]);
    }
}
