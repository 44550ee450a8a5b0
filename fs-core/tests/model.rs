//! Model-based property test of the engine.
//!
//! Random sequences of namespace operations, writes, flushes, refreshes, edits made directly
//! on the share by "someone else", injected share failures and simulated crashes (the engine
//! is dropped without a flush and reopened from its cache and journal) run against a real
//! engine on real directories, and against a small in-memory reference model of what the mount
//! must show. Checked:
//! - every operation succeeds or fails as POSIX says (share errors are allowed only while the
//!   share is failing);
//! - the mount shows exactly the model after every operation that the share does not disturb,
//!   and after every crash and reopen (no acknowledged change is lost);
//! - a flush with a healthy share leaves nothing pending, and then the share equals the mount
//!   (content, hierarchy, modification times of files and directories), minus ignored paths,
//!   with no temporaries left;
//! - a file changed both here and on the share keeps both versions, and the conflict is reported.
//!
//! `PROPTEST_CASES` sets the number of cases (10 000 by default, as CI runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_core::fault::{FaultControl, FaultyBacking};
use fs_core::{
    Backing, DirBacking, Engine, EngineOptions, EntryKind, FlushReport, FsError, Ino, RelPath,
    RetryPolicy, SetAttr, ROOT_INO,
};
use proptest::prelude::*;

mod common;
use common::scratch_root;

/// A small set of paths so that operations collide: same names as files and directories,
/// nested directories, an ignored directory and hidden names.
const PATHS: &[&str] = &[
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
    "e/d",
    "__pycache__",
    "__pycache__/a",
    "d/.DS_Store",
];

/// The default rules: `__pycache__/` (directories only) and `.DS_Store`.
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
    Create(usize, Vec<u8>),
    Write(usize, u8, Vec<u8>),
    Truncate(usize, u8),
    SetMtime(usize, u32),
    Mkdir(usize),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize),
    Flush,
    Refresh,
    RemoteWrite(usize, Vec<u8>),
    RemoteDelete(usize),
    Offline,
    OfflineAfter(u8),
    Refuse(usize),
    Heal,
    Crash,
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..24)
}

fn op() -> impl Strategy<Value = Op> {
    let p = || 0..PATHS.len();
    prop_oneof![
        6 => (p(), data()).prop_map(|(a, d)| Op::Create(a, d)),
        4 => (p(), 0u8..32, data()).prop_map(|(a, o, d)| Op::Write(a, o, d)),
        1 => (p(), 0u8..32).prop_map(|(a, n)| Op::Truncate(a, n)),
        1 => (p(), any::<u32>()).prop_map(|(a, t)| Op::SetMtime(a, t)),
        4 => p().prop_map(Op::Mkdir),
        2 => p().prop_map(Op::Unlink),
        2 => p().prop_map(Op::Rmdir),
        4 => (p(), p()).prop_map(|(a, b)| Op::Rename(a, b)),
        4 => Just(Op::Flush),
        1 => Just(Op::Refresh),
        2 => (p(), data()).prop_map(|(a, d)| Op::RemoteWrite(a, d)),
        1 => p().prop_map(Op::RemoteDelete),
        1 => Just(Op::Offline),
        1 => (0u8..12).prop_map(Op::OfflineAfter),
        1 => p().prop_map(Op::Refuse),
        2 => Just(Op::Heal),
        2 => Just(Op::Crash),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum MNode {
    File(Vec<u8>),
    Dir,
}

/// What the mount must show, and what the model knows about the engine's pending state.
#[derive(Debug, Default)]
struct Model {
    local: BTreeMap<String, MNode>,
    /// Modification times set explicitly and not changed since.
    mtimes: BTreeMap<String, i64>,
    /// Files whose content changed here since the last clean flush.
    content_dirty: BTreeSet<String>,
    /// A namespace change happened since the last clean flush.
    ns_changed: bool,
    /// The model knows the share equals the mount but for `content_dirty` and mtimes.
    certain: bool,
    /// Files changed on the share while dirty here: a conflict is due, with this share content.
    expect_conflict: BTreeMap<String, Vec<u8>>,
}

fn parent(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn name(p: &str) -> &str {
    p.rfind('/').map_or(p, |i| &p[i + 1..])
}

fn within(p: &str, base: &str) -> bool {
    base.is_empty()
        || p == base
        || (p.starts_with(base) && p.as_bytes().get(base.len()) == Some(&b'/'))
}

impl Model {
    fn is_dir(&self, p: &str) -> bool {
        p.is_empty() || self.local.get(p) == Some(&MNode::Dir)
    }
    fn children(&self, p: &str) -> Vec<String> {
        self.local
            .keys()
            .filter(|k| parent(k) == p && !k.is_empty())
            .cloned()
            .collect()
    }
    fn touch_dir(&mut self, p: &str) {
        self.mtimes.remove(p);
    }
}

struct Rig {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    cache: PathBuf,
    faults: Arc<FaultControl>,
    engine: Option<Engine>,
    faulted: bool,
    remote_clock: i64,
    conflicts_seen: Vec<fs_core::ConflictItem>,
}

impl Rig {
    fn new() -> Rig {
        let tmp = tempfile::tempdir_in(scratch_root()).unwrap();
        let share = tmp.path().join("share");
        let cache = tmp.path().join("cache");
        fs::create_dir_all(&share).unwrap();
        let mut rig = Rig {
            _tmp: tmp,
            share,
            cache,
            faults: FaultControl::new(),
            engine: None,
            faulted: false,
            remote_clock: 0,
            conflicts_seen: Vec::new(),
        };
        rig.open();
        rig
    }

    fn open(&mut self) {
        let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
            Arc::new(DirBacking::new(&self.share)),
            self.faults.clone(),
        ));
        let mut opts = EngineOptions::new(&self.cache, "model-share");
        opts.parallelism = 3;
        opts.retry = RetryPolicy::none();
        self.engine = Some(Engine::open(backing, opts).expect("engine opens"));
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    fn resolve(&self, p: &str) -> Result<Ino, FsError> {
        self.e().resolve(&RelPath::new(p).unwrap())
    }

    fn pname(&self, p: &str) -> Result<(Ino, String), FsError> {
        Ok((self.resolve(parent(p))?, name(p).to_owned()))
    }
}

/// What the engine's answer means for the model.
enum Outcome {
    Done,
    Refused,
    ShareError,
}

fn outcome<T>(r: Result<T, FsError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(FsError::Share { .. }) => Outcome::ShareError,
        Err(_) => Outcome::Refused,
    }
}

fn read_engine_view(e: &Engine) -> Result<BTreeMap<String, MNode>, FsError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        for d in e.readdir(ino)? {
            let p = if path.is_empty() {
                d.name.clone()
            } else {
                format!("{path}/{}", d.name)
            };
            match d.kind {
                EntryKind::Dir => {
                    out.insert(p.clone(), MNode::Dir);
                    stack.push((d.ino, p));
                }
                _ => {
                    let fh = e.open_file(d.ino, false, false)?;
                    let bytes = e.read(&fh, 0, 1 << 20)?;
                    e.release(fh);
                    out.insert(p, MNode::File(bytes));
                }
            }
        }
    }
    Ok(out)
}

fn walk_share(root: &Path) -> BTreeMap<String, (MNode, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let n = entry.file_name().into_string().unwrap();
            let p = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let md = fs::symlink_metadata(entry.path()).unwrap();
            let mt = fs_core::backing::mtime_ns(&md);
            if md.is_dir() {
                out.insert(p.clone(), (MNode::Dir, mt));
                stack.push((entry.path(), p));
            } else {
                out.insert(p, (MNode::File(fs::read(entry.path()).unwrap()), mt));
            }
        }
    }
    out
}

fn check_view(rig: &Rig, m: &Model) -> Result<(), TestCaseError> {
    let view = read_engine_view(rig.e()).map_err(|e| TestCaseError::fail(format!("view: {e}")))?;
    prop_assert_eq!(&view, &m.local, "the mount differs from the model");
    for (p, t) in &m.mtimes {
        let a = rig.e().getattr(rig.resolve(p).unwrap()).unwrap();
        prop_assert_eq!(a.mtime_ns, *t, "mtime of {}", p);
    }
    Ok(())
}

/// After a clean flush: the share equals the mount, times included, minus ignored paths.
fn check_share(rig: &mut Rig, m: &mut Model, report: &FlushReport) -> Result<(), TestCaseError> {
    rig.conflicts_seen.extend(report.conflicts.iter().cloned());
    let mut share = walk_share(&rig.share);
    for p in share.keys() {
        prop_assert!(
            !fs_core::names::is_temp_name(name(p)),
            "temporary left on the share: {}",
            p
        );
    }
    // Conflicts: exactly the expected ones, with the share's version kept beside ours.
    let mut resolved = Vec::new();
    for c in std::mem::take(&mut rig.conflicts_seen) {
        let Some(remote) = m.expect_conflict.remove(&c.path) else {
            return Err(TestCaseError::fail(format!("unexpected conflict {c:?}")));
        };
        let kept = share.remove(&c.kept_as);
        prop_assert_eq!(
            kept.map(|k| k.0),
            Some(MNode::File(remote)),
            "kept version of {}",
            c.path
        );
        resolved.push(c.kept_as);
    }
    prop_assert!(
        m.expect_conflict.is_empty(),
        "conflicts not reported: {:?}",
        m.expect_conflict
    );
    let expected: BTreeMap<String, MNode> = m
        .local
        .iter()
        .filter(|(p, n)| !is_ignored(p, **n == MNode::Dir))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    let got: BTreeMap<String, MNode> = share
        .iter()
        .map(|(p, (n, _))| (p.clone(), n.clone()))
        .collect();
    prop_assert_eq!(
        &got,
        &expected,
        "the share differs from the mount after a clean flush"
    );
    // Modification times, directories included.
    for (p, (_, mt)) in &share {
        let a = rig.e().getattr(rig.resolve(p).unwrap()).unwrap();
        prop_assert_eq!(a.mtime_ns, *mt, "share mtime of {}", p);
    }
    let root_mt = fs_core::backing::mtime_ns(&fs::metadata(&rig.share).unwrap());
    prop_assert_eq!(
        rig.e().getattr(ROOT_INO).unwrap().mtime_ns,
        root_mt,
        "root mtime"
    );
    if !resolved.is_empty() {
        // The user resolves the conflicts by deleting the kept copies on the share.
        for k in resolved {
            fs::remove_file(RelPath::new(&k).unwrap().to_path(&rig.share)).unwrap();
        }
        let r = rig.e().refresh();
        prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut rig = Rig::new();
    let mut m = Model {
        certain: true,
        ..Default::default()
    };
    for op in ops {
        let faults_active = rig.faulted;
        let path = |i: usize| PATHS[i].to_owned();
        match op {
            Op::Create(i, d) => {
                let p = path(i);
                let ok = m.is_dir(parent(&p)) && !m.local.contains_key(&p);
                let r = rig.pname(&p).and_then(|(pi, n)| {
                    let (_, fh) = rig.e().create(pi, &n, 0o644)?;
                    rig.e().write(&fh, 0, &d)?;
                    rig.e().release(fh);
                    Ok(())
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "create {} should fail", p);
                        m.local.insert(p.clone(), MNode::File(d));
                        m.touch_dir(parent(&p));
                        m.content_dirty.insert(p);
                        m.ns_changed = true;
                    }
                    Outcome::Refused => prop_assert!(!ok, "create {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Write(i, off, d) => {
                let p = path(i);
                let ok = matches!(m.local.get(&p), Some(MNode::File(_)));
                let r = rig.resolve(&p).and_then(|ino| {
                    let fh = rig.e().open_file(ino, true, false)?;
                    rig.e().write(&fh, off as u64, &d)?;
                    rig.e().release(fh);
                    Ok(())
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "write {} should fail", p);
                        if let Some(MNode::File(c)) = m.local.get_mut(&p) {
                            let end = off as usize + d.len();
                            // A write of nothing extends nothing (POSIX pwrite).
                            if c.len() < end && !d.is_empty() {
                                c.resize(end, 0);
                            }
                            if !d.is_empty() {
                                c[off as usize..end].copy_from_slice(&d);
                            }
                        }
                        m.mtimes.remove(&p);
                        m.content_dirty.insert(p);
                    }
                    Outcome::Refused => prop_assert!(!ok, "write {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Truncate(i, n) => {
                let p = path(i);
                let ok = matches!(m.local.get(&p), Some(MNode::File(_)));
                let r = rig.resolve(&p).and_then(|ino| {
                    rig.e().setattr(
                        ino,
                        SetAttr {
                            size: Some(n as u64),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "truncate {} should fail", p);
                        if let Some(MNode::File(c)) = m.local.get_mut(&p) {
                            c.resize(n as usize, 0);
                        }
                        m.mtimes.remove(&p);
                        m.content_dirty.insert(p);
                    }
                    Outcome::Refused => prop_assert!(!ok, "truncate {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::SetMtime(i, t) => {
                let p = path(i);
                let ok = m.local.contains_key(&p);
                let t = 1_600_000_000_000_000_000i64 + t as i64 * 1_000_003;
                let r = rig.resolve(&p).and_then(|ino| {
                    rig.e().setattr(
                        ino,
                        SetAttr {
                            mtime_ns: Some(t),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "utimens {} should fail", p);
                        m.mtimes.insert(p, t);
                    }
                    Outcome::Refused => prop_assert!(!ok, "utimens {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Mkdir(i) => {
                let p = path(i);
                let ok = m.is_dir(parent(&p)) && !m.local.contains_key(&p);
                let r = rig
                    .pname(&p)
                    .and_then(|(pi, n)| rig.e().mkdir(pi, &n, 0o755));
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "mkdir {} should fail", p);
                        m.local.insert(p.clone(), MNode::Dir);
                        m.touch_dir(parent(&p));
                        m.ns_changed = true;
                    }
                    Outcome::Refused => prop_assert!(!ok, "mkdir {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Unlink(i) => {
                let p = path(i);
                let ok = matches!(m.local.get(&p), Some(MNode::File(_)));
                let r = rig.pname(&p).and_then(|(pi, n)| rig.e().unlink(pi, &n));
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "unlink {} should fail", p);
                        m.local.remove(&p);
                        m.mtimes.remove(&p);
                        m.touch_dir(parent(&p));
                        m.ns_changed = true;
                    }
                    Outcome::Refused => prop_assert!(!ok, "unlink {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Rmdir(i) => {
                let p = path(i);
                let ok = m.local.get(&p) == Some(&MNode::Dir) && m.children(&p).is_empty();
                let r = rig.pname(&p).and_then(|(pi, n)| rig.e().rmdir(pi, &n));
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "rmdir {} should fail", p);
                        m.local.remove(&p);
                        m.mtimes.remove(&p);
                        m.touch_dir(parent(&p));
                        m.ns_changed = true;
                    }
                    Outcome::Refused => prop_assert!(!ok, "rmdir {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Rename(a, b) => {
                let (from, to) = (path(a), path(b));
                let src = m.local.get(&from).cloned();
                let dst = m.local.get(&to).cloned();
                let ok = match (&src, &dst) {
                    (None, _) => false,
                    _ if !m.is_dir(parent(&to)) => false,
                    _ if from == to => true,
                    (Some(MNode::Dir), _) if within(&to, &from) => false,
                    (Some(_), None) => true,
                    (Some(MNode::File(_)), Some(MNode::File(_))) => true,
                    (Some(MNode::Dir), Some(MNode::Dir)) => m.children(&to).is_empty(),
                    _ => false,
                };
                let r = rig.pname(&from).and_then(|(pi, n)| {
                    let (npi, nn) = rig.pname(&to)?;
                    rig.e().rename(pi, &n, npi, &nn, false)
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "rename {} -> {} should fail", from, to);
                        if from != to {
                            let moved: Vec<(String, MNode)> = m
                                .local
                                .iter()
                                .filter(|(k, _)| within(k, &from))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            m.local.remove(&to);
                            for (k, _) in &moved {
                                m.local.remove(k);
                            }
                            let mut mt = BTreeMap::new();
                            for (k, v) in moved {
                                let nk = format!("{to}{}", &k[from.len()..]);
                                if let Some(t) = m.mtimes.remove(&k) {
                                    mt.insert(nk.clone(), t);
                                }
                                m.local.insert(nk, v);
                            }
                            m.mtimes.remove(&to);
                            m.mtimes.extend(mt);
                            m.touch_dir(parent(&from));
                            m.touch_dir(parent(&to));
                            m.ns_changed = true;
                        }
                    }
                    Outcome::Refused => prop_assert!(!ok, "rename {} -> {} should work", from, to),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Flush => {
                let report = rig.e().flush(None);
                if faults_active {
                    m.certain = false;
                    rig.conflicts_seen.extend(report.conflicts.iter().cloned());
                } else {
                    prop_assert!(
                        report.pending.is_empty(),
                        "a flush to a healthy share left changes pending: {:?}",
                        report.pending
                    );
                    check_share(&mut rig, &mut m, &report)?;
                    m.certain = true;
                    m.ns_changed = false;
                    m.content_dirty.clear();
                }
            }
            Op::Refresh => {
                let r = rig.e().refresh();
                if !faults_active {
                    prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
                }
            }
            Op::RemoteWrite(i, d) => {
                let p = path(i);
                let sp = RelPath::new(&p).unwrap().to_path(&rig.share);
                let parent_ok = RelPath::new(parent(&p))
                    .unwrap()
                    .to_path(&rig.share)
                    .is_dir();
                if !m.certain
                    || m.ns_changed
                    || faults_active
                    || is_ignored(&p, false)
                    || !parent_ok
                    || sp.is_dir()
                    || m.is_dir(&p)
                {
                    continue;
                }
                // Someone else writes the file on the share, a little later than anything here.
                fs::write(&sp, &d).unwrap();
                // Each edit gets its own time: a change of neither size nor time is invisible
                // to a stat scan (a documented limit, as with rsync's quick check).
                rig.remote_clock += 1;
                let later = filetime::FileTime::from_unix_time(2_000_000_000 + rig.remote_clock, 7);
                filetime::set_file_mtime(&sp, later).unwrap();
                m.touch_dir(parent(&p));
                if m.content_dirty.contains(&p) {
                    m.expect_conflict.insert(p.clone(), d);
                } else {
                    m.local.insert(p.clone(), MNode::File(d));
                    m.mtimes.remove(&p);
                }
                let r = rig.e().refresh();
                prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
            }
            Op::RemoteDelete(i) => {
                let p = path(i);
                let sp = RelPath::new(&p).unwrap().to_path(&rig.share);
                if !m.certain || m.ns_changed || faults_active || !sp.is_file() {
                    continue;
                }
                fs::remove_file(&sp).unwrap();
                m.touch_dir(parent(&p));
                m.expect_conflict.remove(&p);
                if !m.content_dirty.contains(&p) {
                    m.local.remove(&p);
                    m.mtimes.remove(&p);
                }
                let r = rig.e().refresh();
                prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
            }
            Op::Offline => {
                rig.faults.set_offline(true);
                rig.faulted = true;
            }
            Op::OfflineAfter(n) => {
                rig.faults.offline_after(n as u32);
                rig.faulted = true;
            }
            Op::Refuse(i) => {
                rig.faults
                    .refuse(RelPath::new(PATHS[i]).unwrap(), libc::EACCES);
                rig.faulted = true;
            }
            Op::Heal => {
                rig.faults.set_offline(false);
                rig.faults.clear_refusals();
                rig.faulted = false;
                // The engine must show the model again once the share answers.
                check_view(&rig, &m)?;
            }
            Op::Crash => {
                // Dropped without a flush: what a kill -9 leaves is the cache and the journal.
                rig.engine = None;
                rig.open();
                if !rig.faulted {
                    check_view(&rig, &m)?;
                }
            }
        }
        if !rig.faulted {
            check_view(&rig, &m)?;
        }
    }
    // In the end the share heals and one flush writes everything.
    rig.faults.set_offline(false);
    rig.faults.clear_refusals();
    rig.faulted = false;
    check_view(&rig, &m)?;
    let report = rig.e().flush(Some("final"));
    prop_assert!(
        report.pending.is_empty(),
        "final flush left {:?}",
        report.pending
    );
    check_share(&mut rig, &mut m, &report)?;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        .. ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
