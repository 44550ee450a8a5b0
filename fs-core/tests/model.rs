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
//! - a file changed both here and on the share keeps both versions, and the conflict is reported;
//! - hard links: every name of an entry shows its content and attributes, one inode number and
//!   the link count, and each name reaches the share.
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
    /// A privileged `chown` to owner `1000 + n` and group `2000 + n`.
    Chown(usize, u8),
    /// `utimensat` with both times, as `shutil.copystat` and `touch -d` do.
    SetTimes(usize, u32, u32),
    /// A program reads one file (its first read fetches it from the share).
    Read(usize),
    /// Every file is read and compared (otherwise files stay unfetched until an op needs them).
    ReadAll,
    Mkdir(usize),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize),
    /// `link(a, b)`: a second name for the file at `a`.
    Link(usize, usize),
    Flush,
    Refresh,
    RemoteWrite(usize, Vec<u8>),
    /// A flush during which someone else puts a new version of one file on the share, just
    /// before the flush's share call number `n` (or after the flush, if it makes fewer):
    /// whatever the moment, no version may be lost. The file is changed here first as `Prep`
    /// says, so that the flush has something of ours to write at the name.
    FlushRaced(u8, usize, Prep, Vec<u8>),
    RemoteDelete(usize),
    Offline,
    OfflineAfter(u8),
    Refuse(usize),
    Heal,
    Crash,
    /// The cache is shrunk to `16 * n` bytes (`--cache-max-size`): nothing a program sees
    /// may change, and nothing of ours may be lost.
    Evict(u8),
    /// A program reads `len` bytes at `offset` of one file: a big file (4 bytes or more here)
    /// is fetched in ranges, and only the blocks read are fetched.
    ReadPart(usize, u8, u8),
    /// The background filler takes `n` steps on one file's ranged copy.
    FillSteps(usize, u8),
}

/// What a raced flush's file gets here first.
#[derive(Debug, Clone)]
enum Prep {
    Nothing,
    Write(Vec<u8>),
    SetMtime(u32),
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
        1 => (p(), 0u8..4).prop_map(|(a, n)| Op::Chown(a, n)),
        2 => (p(), any::<u32>(), any::<u32>()).prop_map(|(a, at, t)| Op::SetTimes(a, at, t)),
        3 => p().prop_map(Op::Read),
        2 => Just(Op::ReadAll),
        4 => p().prop_map(Op::Mkdir),
        2 => p().prop_map(Op::Unlink),
        2 => p().prop_map(Op::Rmdir),
        4 => (p(), p()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (p(), p()).prop_map(|(a, b)| Op::Link(a, b)),
        // Names in the root, whose folder always exists, so that links are often made.
        4 => (0usize..3, prop::sample::select(vec![0usize, 1, 2, 4, 8]))
            .prop_map(|(a, b)| Op::Link(a, b)),
        4 => Just(Op::Flush),
        1 => Just(Op::Refresh),
        2 => (p(), data()).prop_map(|(a, d)| Op::RemoteWrite(a, d)),
        3 => (0u8..16, p(), prop_oneof![
            1 => Just(Prep::Nothing),
            4 => data().prop_map(Prep::Write),
            1 => any::<u32>().prop_map(Prep::SetMtime),
        ], data())
            .prop_map(|(n, a, prep, d)| Op::FlushRaced(n, a, prep, d)),
        1 => p().prop_map(Op::RemoteDelete),
        1 => Just(Op::Offline),
        1 => (0u8..12).prop_map(Op::OfflineAfter),
        1 => p().prop_map(Op::Refuse),
        2 => Just(Op::Heal),
        2 => Just(Op::Crash),
        3 => any::<u8>().prop_map(Op::Evict),
        3 => (p(), 0u8..40, 0u8..12).prop_map(|(a, o, n)| Op::ReadPart(a, o, n)),
        2 => (p(), 1u8..4).prop_map(|(a, n)| Op::FillSteps(a, n)),
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
    /// Access times set explicitly and not read since (a read may move them, as on any disk).
    atimes: BTreeMap<String, i64>,
    /// Owners given by chown; every other entry has none recorded (the adapter's default).
    owners: BTreeMap<String, (u32, u32)>,
    /// Files whose content changed here since the last clean flush.
    content_dirty: BTreeSet<String>,
    /// A namespace change happened since the last clean flush.
    ns_changed: bool,
    /// The model knows the share equals the mount but for `content_dirty` and mtimes.
    certain: bool,
    /// Files changed on the share while dirty here: a conflict is due, with the share's content.
    expect_conflict: Vec<Expected>,
    /// Hard links: the names of each entry that has more than one.
    links: Vec<BTreeSet<String>>,
}

/// A conflict the next healthy flush must report.
#[derive(Debug, Clone)]
struct Expected {
    /// Where the file is here: it follows renames while the file lives (`live`); once it is
    /// deleted (or moved out of what is synced) the conflict is reported at its last path.
    path: String,
    live: bool,
    /// The share's version, which must be kept beside ours.
    remote: Vec<u8>,
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
    /// Every name of the entry at `p` (`p` itself first), or just `p`.
    fn names_of(&self, p: &str) -> Vec<String> {
        let mut out = vec![p.to_owned()];
        if let Some(g) = self.links.iter().find(|g| g.contains(p)) {
            out.extend(g.iter().filter(|q| *q != p).cloned());
        }
        out
    }
    fn same_entry(&self, a: &str, b: &str) -> bool {
        a == b || self.links.iter().any(|g| g.contains(a) && g.contains(b))
    }
    /// The name `p` no longer belongs to its entry (removed, replaced, or split off).
    fn unlink_name(&mut self, p: &str) {
        for g in &mut self.links {
            g.remove(p);
        }
        self.links.retain(|g| g.len() > 1);
    }
    /// The names at or below `from` are now at or below `to`.
    fn rename_names(&mut self, from: &str, to: &str) {
        for g in &mut self.links {
            *g = g
                .iter()
                .map(|q| {
                    if within(q, from) {
                        format!("{to}{}", &q[from.len()..])
                    } else {
                        q.clone()
                    }
                })
                .collect();
        }
    }
    /// The file at `p` is deleted here: its due conflict stays at that path.
    fn freeze_conflict(&mut self, p: &str) {
        for x in self
            .expect_conflict
            .iter_mut()
            .filter(|x| x.live && x.path == p)
        {
            x.live = false;
        }
    }
    /// Everything below `from` moved to `to`; `to` is ignored when `dropped`.
    fn move_conflicts(&mut self, from: &str, to: &str, dropped: bool) {
        self.freeze_conflict(to);
        for x in self
            .expect_conflict
            .iter_mut()
            .filter(|x| x.live && within(&x.path, from))
        {
            if dropped {
                x.live = false;
            } else {
                x.path = format!("{to}{}", &x.path[from.len()..]);
            }
        }
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
    /// Drawn from the case: the order of listings and of a flush's work.
    seed: u64,
}

impl Rig {
    fn new(seed: u64) -> Rig {
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
            seed,
        };
        rig.faults.shuffle_listings(seed);
        rig.open();
        rig
    }

    fn open(&mut self) {
        let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
            Arc::new(DirBacking::new(&self.share)),
            self.faults.clone(),
        ));
        let mut opts = EngineOptions::new(&self.cache, "model-share");
        // One worker, so that which operation a share that drops after N meets is the same on
        // every run; the order parallel workers could finish in is drawn from the seed instead.
        opts.parallelism = 1;
        opts.flush_order_seed = Some(self.seed);
        // Temporaries of a folder receiving two files or more go through staging folders
        // (`spread_temps`), so crashes and outages hit those too.
        opts.stage_spread_min = 2;
        opts.stage_spread_dirs = 3;
        opts.retry = RetryPolicy::none();
        // A limit that never triggers by itself, so that the engine counts open handles and
        // the `Evict` op can shrink the cache.
        opts.cache_max_bytes = Some(u64::MAX);
        // Files of 4 bytes or more are fetched in ranges, 2 bytes at least at a time and 32
        // per background step, so that part files, their holes and their records are in play.
        opts.range_fetch_min = 4;
        opts.range_block = 2;
        self.engine = Some(Engine::open(backing, opts).expect("engine opens"));
    }

    /// A time for someone else's next edit, a little later than anything here and than the
    /// edit before: a change of neither size nor time is invisible to a stat scan (a
    /// documented limit, as with rsync's quick check).
    fn next_remote_time(&mut self) -> filetime::FileTime {
        self.remote_clock += 1;
        filetime::FileTime::from_unix_time(2_000_000_000 + self.remote_clock, 7)
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

/// The mount's tree: every entry's kind, and for files their size (from `getattr`, which
/// never fetches) or, with `content`, their bytes (which fetches them).
fn read_engine_view(e: &Engine, content: bool) -> Result<BTreeMap<String, MNode>, FsError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        for d in e.readdir(ino)? {
            let p = if path.is_empty() {
                d.name.to_string()
            } else {
                format!("{path}/{}", d.name)
            };
            match d.kind {
                EntryKind::Dir => {
                    out.insert(p.clone(), MNode::Dir);
                    stack.push((d.ino, p));
                }
                _ if content => {
                    out.insert(p, MNode::File(read_file(e, d.ino)?));
                }
                _ => {
                    let size = e.getattr(d.ino)?.size as usize;
                    out.insert(p, MNode::File(vec![0; size]));
                }
            }
        }
    }
    Ok(out)
}

fn read_file(e: &Engine, ino: Ino) -> Result<Vec<u8>, FsError> {
    let fh = e.open_file(ino, false, false)?;
    let bytes = e.read(&fh, 0, 1 << 20);
    e.release(fh);
    bytes
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
            // Old versions a commit captured stay, under a private name, until the next
            // flush (a program may still have one open); `run` checks that they go.
            if fs_core::names::is_capture_name(&n) {
                continue;
            }
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

/// The mount shows the model's tree, sizes and the times set explicitly; no file is fetched.
fn check_tree(rig: &Rig, m: &Model) -> Result<(), TestCaseError> {
    let view =
        read_engine_view(rig.e(), false).map_err(|e| TestCaseError::fail(format!("view: {e}")))?;
    let sized: BTreeMap<String, MNode> = (m.local.iter())
        .map(|(p, n)| match n {
            MNode::File(c) => (p.clone(), MNode::File(vec![0; c.len()])),
            MNode::Dir => (p.clone(), MNode::Dir),
        })
        .collect();
    prop_assert_eq!(&view, &sized, "the mount's tree differs from the model");
    for (p, t) in &m.mtimes {
        let a = rig.e().getattr(rig.resolve(p).unwrap()).unwrap();
        prop_assert_eq!(a.mtime_ns, *t, "mtime of {}", p);
    }
    for p in m.local.keys().filter(|p| !p.is_empty()) {
        let a = rig.e().getattr(rig.resolve(p).unwrap()).unwrap();
        prop_assert_eq!(a.owner, m.owners.get(p).copied(), "owner of {}", p);
    }
    for (p, t) in &m.atimes {
        let a = rig.e().getattr(rig.resolve(p).unwrap()).unwrap();
        prop_assert_eq!(a.atime_ns, *t, "atime of {}", p);
    }
    // Every name of an entry shows one inode number and the number of names; others one.
    let shown = |p: &str| {
        let (pi, n) = rig.pname(p).unwrap();
        rig.e().lookup(pi, &n).unwrap()
    };
    for g in &m.links {
        let attrs: Vec<_> = g.iter().map(|p| shown(p)).collect();
        for (p, a) in g.iter().zip(&attrs) {
            prop_assert_eq!(a.ino, attrs[0].ino, "inode number of {}", p);
            prop_assert_eq!(a.nlink as usize, g.len(), "link count of {}", p);
        }
    }
    for (p, n) in &m.local {
        if matches!(n, MNode::File(_)) && !m.links.iter().any(|g| g.contains(p)) {
            prop_assert_eq!(shown(p).nlink, 1, "link count of {}", p);
        }
    }
    Ok(())
}

/// As `check_tree`, and every file's content too (which fetches every file).
fn check_view(rig: &Rig, m: &mut Model) -> Result<(), TestCaseError> {
    check_tree(rig, m)?;
    let view =
        read_engine_view(rig.e(), true).map_err(|e| TestCaseError::fail(format!("view: {e}")))?;
    prop_assert_eq!(&view, &m.local, "the mount differs from the model");
    // Reading moves access times, as on any disk; the mtimes must have stayed.
    m.atimes.retain(|p, _| m.local.get(p) == Some(&MNode::Dir));
    check_tree(rig, m)
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
    // Conflicts: exactly the expected ones, with the share's version kept beside ours. A
    // folder kept under a conflict name (deleted or replaced here while it held a kept copy)
    // may hold kept copies and folders, nothing else.
    let mut seen = std::mem::take(&mut rig.conflicts_seen);
    // A folder moved aside takes the kept copies reported before it along.
    for i in 0..seen.len() {
        if matches!(share.get(&seen[i].kept_as), Some((MNode::Dir, _))) {
            let (from, to) = (
                RelPath::new(&seen[i].path).unwrap(),
                RelPath::new(&seen[i].kept_as).unwrap(),
            );
            for c in &mut seen[..i] {
                if let Some(k) = RelPath::new(&c.kept_as).unwrap().rebase(&from, &to) {
                    c.kept_as = k.to_string();
                }
            }
        }
    }
    let mut resolved = Vec::new();
    let mut kept_dirs = Vec::new();
    for c in seen {
        if matches!(share.get(&c.kept_as), Some((MNode::Dir, _))) {
            kept_dirs.push(c.kept_as);
            continue;
        }
        let kept = share.remove(&c.kept_as).map(|k| k.0);
        // A deleted file's conflict may be reported at the path of what took its place (a
        // new file renamed over it carries its share version on).
        let kept_is = |x: &Expected| kept == Some(MNode::File(x.remote.clone()));
        let found = (m.expect_conflict.iter())
            .position(|x| x.path == c.path && kept_is(x))
            .or_else(|| m.expect_conflict.iter().position(|x| !x.live && kept_is(x)));
        let Some(i) = found else {
            return Err(TestCaseError::fail(format!(
                "unexpected conflict {c:?} (kept: {kept:?}; expected: {:?})",
                m.expect_conflict
            )));
        };
        m.expect_conflict.remove(i);
        resolved.push(c.kept_as);
    }
    prop_assert!(
        m.expect_conflict.is_empty(),
        "conflicts not reported: {:?}",
        m.expect_conflict
    );
    for d in &kept_dirs {
        let inside: Vec<String> = share.keys().filter(|p| within(p, d)).cloned().collect();
        for p in inside {
            prop_assert_eq!(&share[&p].0, &MNode::Dir, "{} in kept folder {}", p, d);
            share.remove(&p);
        }
    }
    // Kept copies inside kept folders go with them.
    resolved.retain(|k| !kept_dirs.iter().any(|d| within(k, d)));
    // A folder deleted here that held a kept copy stays on the share with it.
    let mut stayed = Vec::new();
    for k in &resolved {
        let mut dir = parent(k);
        while !dir.is_empty() {
            if !m.local.contains_key(dir) && share.remove(dir).is_some() {
                stayed.push(dir.to_owned());
            }
            dir = parent(dir);
        }
    }
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
    if !resolved.is_empty() || !kept_dirs.is_empty() {
        // The user resolves the conflicts by deleting the kept copies on the share.
        for k in resolved {
            fs::remove_file(RelPath::new(&k).unwrap().to_path(&rig.share)).unwrap();
        }
        for d in kept_dirs {
            fs::remove_dir_all(RelPath::new(&d).unwrap().to_path(&rig.share)).unwrap();
        }
        let r = rig.e().refresh();
        prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
        // Folders that stayed for what they held come back, empty now.
        for d in stayed {
            if RelPath::new(&d).unwrap().to_path(&rig.share).is_dir() {
                m.local.insert(d, MNode::Dir);
            }
        }
    }
    Ok(())
}

/// Where someone else may write the model's path `p` on the share now (`RemoteWrite`,
/// `FlushRaced`): the model knows the share equals the mount, the share answers, `p` is synced,
/// its folder is on the share and it is no folder. `None` otherwise.
fn remote_write_target(rig: &Rig, m: &Model, p: &str, faults_active: bool) -> Option<PathBuf> {
    let sp = RelPath::new(p).unwrap().to_path(&rig.share);
    let parent_ok = RelPath::new(parent(p))
        .unwrap()
        .to_path(&rig.share)
        .is_dir();
    let allowed = m.certain
        && !m.ns_changed
        && !faults_active
        && !is_ignored(p, false)
        && parent_ok
        && !sp.is_dir()
        && !m.is_dir(p);
    allowed.then_some(sp)
}

/// Someone else writes the file `sp` on the share with content `d` and time `at`: a new file
/// put in its place, as editors and copying tools do (a write into the file would change every
/// name of it where the share keeps hard links).
fn put_remote_version(sp: &Path, d: &[u8], at: filetime::FileTime) {
    let tmp = sp.with_extension("remote-tmp");
    fs::write(&tmp, d).unwrap();
    fs::rename(&tmp, sp).unwrap();
    filetime::set_file_mtime(sp, at).unwrap();
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // The orders a real machine leaves to chance (directory listings, parallel workers) come
    // from the case itself, so a failing case fails again from its seed alone.
    let seed = xxhash_rust::xxh3::xxh3_64(format!("{ops:?}").as_bytes());
    let mut rig = Rig::new(seed);
    let mut m = Model {
        certain: true,
        ..Default::default()
    };
    let mut queue: std::collections::VecDeque<Op> = ops.into();
    while let Some(op) = queue.pop_front() {
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
                        if let Some(MNode::File(c)) = m.local.get(&p).cloned() {
                            let mut c = c;
                            let end = off as usize + d.len();
                            // A write of nothing extends nothing (POSIX pwrite).
                            if c.len() < end && !d.is_empty() {
                                c.resize(end, 0);
                            }
                            if !d.is_empty() {
                                c[off as usize..end].copy_from_slice(&d);
                            }
                            for q in m.names_of(&p) {
                                m.local.insert(q.clone(), MNode::File(c.clone()));
                                m.mtimes.remove(&q);
                                m.content_dirty.insert(q);
                            }
                        }
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
                            owner: None,
                            size: Some(n as u64),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "truncate {} should fail", p);
                        for q in m.names_of(&p) {
                            if let Some(MNode::File(c)) = m.local.get_mut(&q) {
                                c.resize(n as usize, 0);
                            }
                            m.mtimes.remove(&q);
                            m.content_dirty.insert(q);
                        }
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
                            owner: None,
                            mtime_ns: Some(t),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "utimens {} should fail", p);
                        for q in m.names_of(&p) {
                            m.mtimes.insert(q, t);
                        }
                    }
                    Outcome::Refused => prop_assert!(!ok, "utimens {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Chown(i, n) => {
                let p = path(i);
                let ok = m.local.contains_key(&p);
                let owner = (1000 + u32::from(n), 2000 + u32::from(n));
                let r = rig.resolve(&p).and_then(|ino| {
                    rig.e().setattr(
                        ino,
                        SetAttr {
                            owner: Some(owner),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "chown {} should fail", p);
                        for q in m.names_of(&p) {
                            m.owners.insert(q, owner);
                        }
                    }
                    Outcome::Refused => prop_assert!(!ok, "chown {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::SetTimes(i, at, t) => {
                let p = path(i);
                let ok = m.local.contains_key(&p);
                let t = 1_600_000_000_000_000_000i64 + t as i64 * 1_000_003;
                let at = 1_500_000_000_000_000_000i64 + at as i64 * 999_983;
                let r = rig.resolve(&p).and_then(|ino| {
                    rig.e().setattr(
                        ino,
                        SetAttr {
                            owner: None,
                            mtime_ns: Some(t),
                            atime_ns: Some(at),
                            ..Default::default()
                        },
                    )
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "utimens {} should fail", p);
                        for q in m.names_of(&p) {
                            m.mtimes.insert(q.clone(), t);
                            m.atimes.insert(q, at);
                        }
                    }
                    Outcome::Refused => prop_assert!(!ok, "utimens {} should work", p),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Read(i) => {
                let p = path(i);
                let r = rig.resolve(&p).and_then(|ino| read_file(rig.e(), ino));
                match (r, m.local.get(&p)) {
                    (Ok(bytes), Some(MNode::File(c))) => {
                        prop_assert_eq!(&bytes, c, "content of {}", p);
                        for q in m.names_of(&p) {
                            m.atimes.remove(&q);
                        }
                    }
                    (Err(FsError::Share { .. }), _) => prop_assert!(faults_active),
                    (Err(_), Some(MNode::File(_))) => {
                        return Err(TestCaseError::fail(format!("read {p} should work")))
                    }
                    (Ok(_), _) => return Err(TestCaseError::fail(format!("read {p} should fail"))),
                    (Err(_), _) => {}
                }
            }
            Op::ReadAll => {
                if !faults_active {
                    check_view(&rig, &mut m)?;
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
                        m.freeze_conflict(&p);
                        m.unlink_name(&p);
                        m.local.remove(&p);
                        m.mtimes.remove(&p);
                        m.atimes.remove(&p);
                        m.owners.remove(&p);
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
                        m.atimes.remove(&p);
                        m.owners.remove(&p);
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
                        // Two names of one entry: rename does nothing (POSIX).
                        if !m.same_entry(&from, &to) {
                            m.unlink_name(&to);
                            m.rename_names(&from, &to);
                            let dropped = is_ignored(&to, matches!(src, Some(MNode::Dir)));
                            m.move_conflicts(&from, &to, dropped);
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
                            let mut at = BTreeMap::new();
                            let mut ow = BTreeMap::new();
                            for (k, v) in moved {
                                let nk = format!("{to}{}", &k[from.len()..]);
                                if let Some(t) = m.mtimes.remove(&k) {
                                    mt.insert(nk.clone(), t);
                                }
                                if let Some(t) = m.atimes.remove(&k) {
                                    at.insert(nk.clone(), t);
                                }
                                if let Some(o) = m.owners.remove(&k) {
                                    ow.insert(nk.clone(), o);
                                }
                                m.local.insert(nk, v);
                            }
                            m.mtimes.remove(&to);
                            m.mtimes.extend(mt);
                            m.atimes.remove(&to);
                            m.atimes.extend(at);
                            m.owners.remove(&to);
                            m.owners.extend(ow);
                            m.touch_dir(parent(&from));
                            m.touch_dir(parent(&to));
                            m.ns_changed = true;
                        }
                    }
                    Outcome::Refused => prop_assert!(!ok, "rename {} -> {} should work", from, to),
                    Outcome::ShareError => prop_assert!(faults_active),
                }
            }
            Op::Link(a, b) => {
                let (from, to) = (path(a), path(b));
                let ok = matches!(m.local.get(&from), Some(MNode::File(_)))
                    && m.is_dir(parent(&to))
                    && !m.local.contains_key(&to);
                let r = rig.resolve(&from).and_then(|ino| {
                    let (npi, nn) = rig.pname(&to)?;
                    rig.e().link(ino, npi, &nn)
                });
                match outcome(r) {
                    Outcome::Done => {
                        prop_assert!(ok, "link {} -> {} should fail", from, to);
                        let node = m.local[&from].clone();
                        m.local.insert(to.clone(), node);
                        for map in [&mut m.mtimes, &mut m.atimes] {
                            if let Some(t) = map.get(&from).copied() {
                                map.insert(to.clone(), t);
                            }
                        }
                        if let Some(o) = m.owners.get(&from).copied() {
                            m.owners.insert(to.clone(), o);
                        }
                        match m.links.iter_mut().find(|g| g.contains(&from)) {
                            Some(g) => {
                                g.insert(to.clone());
                            }
                            None => m.links.push([from, to.clone()].into_iter().collect()),
                        }
                        m.touch_dir(parent(&to));
                        m.content_dirty.insert(to);
                        m.ns_changed = true;
                    }
                    Outcome::Refused => prop_assert!(!ok, "link {} -> {} should work", from, to),
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
                // A faulted flush may have kept the share's version of a conflict beside ours
                // already; a refresh would rightly show it here too, but the model checks kept
                // copies at the next healthy flush (`check_share`), so it waits until then.
                if !rig.conflicts_seen.is_empty() {
                    continue;
                }
                let r = rig.e().refresh();
                if !faults_active {
                    prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
                }
            }
            Op::RemoteWrite(i, d) => {
                let p = path(i);
                let Some(sp) = remote_write_target(&rig, &m, &p, faults_active) else {
                    continue;
                };
                let later = rig.next_remote_time();
                put_remote_version(&sp, &d, later);
                m.touch_dir(parent(&p));
                if m.content_dirty.contains(&p) {
                    m.expect_conflict.retain(|x| !(x.live && x.path == p));
                    m.expect_conflict.push(Expected {
                        path: p.clone(),
                        live: true,
                        remote: d,
                    });
                } else {
                    // A name of a hard-linked entry is a file of its own on the share: it
                    // leaves the entry.
                    m.unlink_name(&p);
                    m.local.insert(p.clone(), MNode::File(d));
                    m.mtimes.remove(&p);
                    m.atimes.remove(&p);
                }
                let r = rig.e().refresh();
                prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
            }
            Op::FlushRaced(n, i, prep, d) => {
                // Most often a file that exists (the `i`-th, in order), so that the flush has
                // something at the name to replace; otherwise path `i`.
                let files: Vec<&String> = (m.local.iter())
                    .filter(|(q, n)| matches!(n, MNode::File(_)) && !is_ignored(q, false))
                    // (Names a folder's rename made are not among the model's paths.)
                    .filter(|(q, _)| PATHS.contains(&q.as_str()))
                    .map(|(q, _)| q)
                    .collect();
                let p = match files.len() {
                    0 => path(i),
                    k if i % 4 != 3 => files[i % k].clone(),
                    _ => path(i),
                };
                let i = PATHS.iter().position(|q| *q == p).expect("a model path");
                // As for `RemoteWrite`, and with no other conflict due, so that what this flush
                // reports is this race's alone. A name of a hard-linked entry is left out: the
                // model does not follow its other names on the share.
                let Some(sp) = remote_write_target(&rig, &m, &p, faults_active) else {
                    continue;
                };
                if !m.expect_conflict.is_empty()
                    || !rig.conflicts_seen.is_empty()
                    || m.links.iter().any(|g| g.contains(&p))
                {
                    continue;
                }
                // The file's change here first, as an op of its own, then the flush.
                let prepared = match prep {
                    Prep::Nothing => None,
                    Prep::Write(o) => Some(Op::Write(i, 0, o)),
                    Prep::SetMtime(t) => Some(Op::SetMtime(i, t)),
                };
                if let Some(first) =
                    prepared.filter(|_| matches!(m.local.get(&p), Some(MNode::File(_))))
                {
                    queue.push_front(Op::FlushRaced(n, i, Prep::Nothing, d));
                    queue.push_front(first);
                    continue;
                }
                let later = rig.next_remote_time();
                let theirs = {
                    let (sp, d) = (sp.clone(), d.clone());
                    move || put_remote_version(&sp, &d, later)
                };
                let ours = match m.local.get(&p) {
                    Some(MNode::File(c)) if m.content_dirty.contains(&p) => Some(c.clone()),
                    _ => None,
                };
                rig.faults.interleave(n as u64, theirs.clone());
                let report = rig.e().flush(None);
                if rig.faults.cancel_interleave() {
                    theirs();
                }
                prop_assert!(
                    report.pending.is_empty(),
                    "a flush to a healthy share left changes pending: {:?}",
                    report.pending
                );
                m.touch_dir(parent(&p));
                let at_name = fs::read(&sp).ok();
                let kept_theirs = report.conflicts.iter().any(|c| {
                    c.path == p
                        && fs::read(RelPath::new(&c.kept_as).unwrap().to_path(&rig.share)).ok()
                            == Some(d.clone())
                });
                if ours.is_some() && kept_theirs && at_name == ours {
                    // Theirs came before our commit took the name: kept beside ours.
                    m.expect_conflict.push(Expected {
                        path: p.clone(),
                        live: true,
                        remote: d,
                    });
                } else {
                    // Otherwise theirs must be at the name: it came after our version was
                    // there (a later save, as by anyone after a flush), or the flush did not
                    // touch the name. Nothing of ours may have been set on it.
                    prop_assert_eq!(
                        at_name.as_ref(),
                        Some(&d),
                        "{}: neither ours with theirs kept beside, nor theirs (ours: {:?}; report: {:?})",
                        p,
                        ours,
                        report
                    );
                    prop_assert!(
                        !report.conflicts.iter().any(|c| c.path == p),
                        "{}: a conflict, yet theirs is at the name: {:?}",
                        p,
                        report
                    );
                    prop_assert_eq!(
                        fs_core::backing::mtime_ns(&fs::metadata(&sp).unwrap()),
                        later.unix_seconds() * 1_000_000_000 + 7,
                        "{}: the file at the name has the content theirs has, but not their time: not theirs",
                        p
                    );
                    m.local.insert(p.clone(), MNode::File(d));
                    m.mtimes.remove(&p);
                    m.atimes.remove(&p);
                    let r = rig.e().refresh();
                    prop_assert!(r.errors.is_empty(), "refresh errors: {:?}", r.errors);
                }
                check_share(&mut rig, &mut m, &report)?;
                m.certain = true;
                m.ns_changed = false;
                m.content_dirty.clear();
            }
            Op::RemoteDelete(i) => {
                let p = path(i);
                let sp = RelPath::new(&p).unwrap().to_path(&rig.share);
                if !m.certain || m.ns_changed || faults_active || !sp.is_file() {
                    continue;
                }
                fs::remove_file(&sp).unwrap();
                m.touch_dir(parent(&p));
                m.expect_conflict.retain(|x| !(x.live && x.path == p));
                if !m.content_dirty.contains(&p) {
                    m.unlink_name(&p);
                    m.local.remove(&p);
                    m.mtimes.remove(&p);
                    m.atimes.remove(&p);
                    m.owners.remove(&p);
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
                check_view(&rig, &mut m)?;
            }
            Op::ReadPart(i, offset, len) => {
                let p = path(i);
                let r = rig.resolve(&p).and_then(|ino| {
                    let e = rig.e();
                    let fh = e.open_file(ino, false, false)?;
                    let bytes = e.read(&fh, offset as u64, len as usize);
                    e.release(fh);
                    bytes
                });
                match (r, m.local.get(&p)) {
                    (Ok(bytes), Some(MNode::File(c))) => {
                        let start = (offset as usize).min(c.len());
                        let end = (start + len as usize).min(c.len());
                        prop_assert_eq!(&bytes[..], &c[start..end], "bytes of {} at {}", p, offset);
                        for q in m.names_of(&p) {
                            m.atimes.remove(&q);
                        }
                    }
                    (Err(FsError::Share { .. }), _) => prop_assert!(faults_active),
                    (Err(e), Some(MNode::File(_))) => {
                        return Err(TestCaseError::fail(format!("read of {p} failed: {e}")))
                    }
                    (Ok(_), _) => return Err(TestCaseError::fail(format!("read {p} should fail"))),
                    (Err(_), _) => {}
                }
            }
            Op::FillSteps(i, n) => {
                if let Ok(ino) = rig.resolve(&path(i)) {
                    for _ in 0..n {
                        match rig.e().fill_step(ino) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(FsError::Share { .. }) => {
                                prop_assert!(faults_active);
                                break;
                            }
                            Err(e) => return Err(TestCaseError::fail(format!("fill: {e}"))),
                        }
                    }
                }
            }
            Op::Evict(n) => {
                let r = rig.e().evict_to(n as u64 * 16);
                prop_assert!(r.is_ok(), "evict: {:?}", r);
            }
            Op::Crash => {
                // Dropped without a flush: what a kill -9 leaves is the cache and the journal.
                rig.engine = None;
                rig.open();
                if !rig.faulted {
                    check_view(&rig, &mut m)?;
                }
            }
        }
        if !rig.faulted {
            check_tree(&rig, &m)?;
        }
    }
    // In the end the share heals and one flush writes everything.
    rig.faults.set_offline(false);
    rig.faults.clear_refusals();
    rig.faulted = false;
    check_view(&rig, &mut m)?;
    let report = rig.e().flush(Some("final"));
    prop_assert!(
        report.pending.is_empty(),
        "final flush left {:?}",
        report.pending
    );
    check_share(&mut rig, &mut m, &report)?;
    // One more flush, with nothing to write, removes the old versions commits captured.
    let last = rig.e().flush(Some("last"));
    prop_assert!(
        last.pending.is_empty() && last.conflicts.is_empty() && last.files_written == 0,
        "the flush after the final one did more than remove captured versions: {:?}",
        last
    );
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
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 20_000,
        rng_seed: common::model_seed(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..40)) {
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

    /// Evicted copies (`--cache-max-size`) read back the same, whatever happens to them next.
    #[test]
    fn evicted_copies_read_back_the_same() {
        let flushed = || {
            vec![
                Op::Create(0, vec![1, 2, 3]),
                Op::Mkdir(3),
                Op::Create(4, vec![4]),
                Op::Flush,
            ]
        };
        let then = |more: Vec<Op>| {
            let mut ops = flushed();
            ops.push(Op::Evict(0));
            ops.extend(more);
            check(ops);
        };
        then(vec![Op::Read(0), Op::ReadAll]);
        then(vec![Op::RemoteWrite(0, vec![9, 9]), Op::Read(0)]);
        then(vec![Op::RemoteDelete(0), Op::ReadAll]);
        then(vec![Op::Rename(0, 1), Op::Read(1), Op::Flush, Op::ReadAll]);
        then(vec![Op::Rename(3, 8), Op::Read(9), Op::Flush, Op::ReadAll]);
        then(vec![Op::Crash, Op::Read(0), Op::ReadAll]);
        then(vec![
            Op::Write(0, 1, vec![7]),
            Op::Evict(0),
            Op::Flush,
            Op::ReadAll,
        ]);
        then(vec![
            Op::SetTimes(0, 5, 6),
            Op::Evict(0),
            Op::Flush,
            Op::Evict(0),
            Op::ReadAll,
        ]);
        then(vec![Op::Offline, Op::Read(0), Op::Heal, Op::ReadAll]);
    }

    /// A file changed here and on the share, in a folder then moved into an ignored one.
    #[test]
    fn conflict_in_a_folder_moved_into_an_ignored_one() {
        check(vec![
            Op::Mkdir(8),
            Op::Create(9, vec![]),
            Op::Flush,
            Op::Write(9, 0, vec![]),
            Op::RemoteWrite(9, vec![]),
            Op::Rename(8, 11),
        ]);
    }

    /// The same with the file deleted and its folder removed here.
    #[test]
    fn conflict_in_a_folder_removed_here() {
        check(vec![
            Op::Mkdir(8),
            Op::Create(9, vec![]),
            Op::Flush,
            Op::Write(9, 0, vec![1]),
            Op::RemoteWrite(9, vec![2]),
            Op::Unlink(9),
            Op::Rmdir(8),
        ]);
    }

    /// ...and a new file then takes the folder's name here.
    #[test]
    fn conflict_in_a_folder_removed_and_replaced_by_a_file() {
        for n in 0..12 {
            check(vec![
                Op::Mkdir(8),
                Op::Create(9, vec![]),
                Op::Flush,
                Op::Write(9, 0, vec![1]),
                Op::RemoteWrite(9, vec![2]),
                Op::Unlink(9),
                Op::Rmdir(8),
                Op::OfflineAfter(n),
                Op::Flush,
                Op::Heal,
                Op::Create(8, vec![7]),
            ]);
        }
    }

    /// Two levels down, the top folder moved into an ignored one, or renamed.
    #[test]
    fn conflict_two_levels_down_in_a_folder_moved() {
        for to in [11, 8] {
            check(vec![
                Op::Mkdir(3),
                Op::Mkdir(6),
                Op::Create(7, vec![]),
                Op::Flush,
                Op::Write(7, 0, vec![1]),
                Op::RemoteWrite(7, vec![2]),
                Op::Rename(3, to),
            ]);
        }
    }

    /// A file deleted here and changed there, in a folder that another then replaces.
    #[test]
    fn conflict_in_a_folder_replaced_by_a_rename() {
        check(vec![
            Op::Mkdir(8),
            Op::Mkdir(3),
            Op::Create(9, vec![]),
            Op::Flush,
            Op::Write(9, 0, vec![1]),
            Op::RemoteWrite(9, vec![2]),
            Op::Unlink(9),
            Op::Rename(3, 8),
        ]);
    }

    /// A faulted flush keeps the share's version beside ours before it stops: the flush after
    /// the share is back reports it (found by the model, with a refresh in between).
    #[test]
    fn conflict_kept_by_a_flush_the_share_dropped_during() {
        for n in 0..8 {
            check(vec![
                Op::Create(0, vec![]),
                Op::Flush,
                Op::Truncate(0, 0),
                Op::RemoteWrite(0, vec![]),
                Op::OfflineAfter(n),
                Op::Flush,
                Op::Heal,
                Op::Refresh,
            ]);
        }
    }

    /// A new folder written under a temporary name, with the share dropping at each point of
    /// the flush: the flush after it is back writes the folder without a conflict with the
    /// copies the first one left (found by the model).
    #[test]
    fn new_folder_flushed_while_the_share_drops() {
        for n in 0..10 {
            check(vec![
                Op::Mkdir(8),
                Op::Create(0, vec![]),
                Op::Create(9, vec![]),
                Op::OfflineAfter(n),
                Op::Flush,
            ]);
        }
    }

    /// Hard links through writes, renames over either name, removals, a share change of one
    /// name, a crash and an outage.
    #[test]
    fn hard_links_through_everything() {
        check(vec![
            Op::Create(0, vec![1, 2]),
            Op::Mkdir(3),
            Op::Link(0, 4),
            Op::Link(4, 5),
            Op::Write(5, 1, vec![9, 9]),
            Op::Chown(4, 2),
            Op::SetTimes(0, 3, 4),
            Op::Flush,
            Op::Crash,
            Op::Truncate(4, 1),
            Op::Rename(0, 5),
            Op::Unlink(4),
            Op::Flush,
            Op::Link(5, 1),
            Op::Flush,
            Op::RemoteWrite(1, vec![7]),
            Op::Write(5, 0, vec![3]),
            Op::Offline,
            Op::Link(5, 0),
            Op::Heal,
            Op::Rename(3, 8),
            Op::ReadAll,
        ]);
        // The name the entry's number came from goes first; then a rename between two names.
        check(vec![
            Op::Create(0, vec![1]),
            Op::Link(0, 1),
            Op::Link(1, 2),
            Op::Unlink(0),
            Op::Rename(1, 2),
            Op::Crash,
            Op::Write(2, 0, vec![5]),
            Op::Flush,
            Op::Evict(0),
            Op::ReadAll,
        ]);
    }

    /// A flush that gives one name of a hard link its time and stops before the other: the
    /// share's file (a hard link there too) then shows that time under both names, which a
    /// refresh must not take for someone else's change (found by the model).
    #[test]
    fn hard_link_half_written_by_a_flush_the_share_dropped_during() {
        for n in 0..6 {
            check(vec![
                Op::Create(1, vec![]),
                Op::Link(1, 2),
                Op::Flush,
                Op::SetMtime(1, 0),
                Op::OfflineAfter(n),
                Op::Flush,
                Op::Heal,
                Op::Refresh,
            ]);
        }
    }

    /// One name of a hard-linked entry is removed here while the share refuses it; the flush
    /// then gives the other name its times, which the share (hard links there too) shows under
    /// the removed name as well. The removal, written once the share takes it, must not take
    /// that for someone else's change (found by the model at random seeds).
    #[test]
    fn removed_hard_link_name_changed_on_the_share_by_its_other_name() {
        check(vec![
            Op::Create(2, vec![]),
            Op::Link(2, 1),
            Op::Flush,
            Op::SetTimes(1, 0, 0),
            Op::Refuse(2),
            Op::Unlink(2),
            Op::Flush,
        ]);
    }

    /// A flush gives one name of a hard link its new times, and the share drops before it
    /// reaches the other name; the share (hard links there too) shows those times under both.
    /// A write here then makes the other name's content dirty too: its next flush must not
    /// take the share's file, which this flush changed, for someone else's (found by the model
    /// at a fresh seed on a CI run).
    #[test]
    fn hard_link_given_its_times_by_a_flush_that_dropped_then_written() {
        for n in 0..8 {
            check(vec![
                Op::Create(2, vec![]),
                Op::Link(2, 1),
                Op::Flush,
                Op::SetTimes(1, 0, 0),
                Op::Create(0, vec![]),
                Op::OfflineAfter(n),
                Op::Flush,
                Op::Write(1, 0, vec![]),
            ]);
        }
    }

    /// One name of a hard link is removed; the same flush gives the entry's other name its
    /// times, which the share (hard links there too) shows in the removed name's captured old
    /// version as well. The next flush must take that for ours and remove it, not keep it as
    /// someone else's (found by the model at a fresh seed, 77 434 cases in).
    #[test]
    fn captured_name_of_a_hard_link_given_times_through_its_other_name() {
        check(vec![
            Op::Create(1, vec![]),
            Op::Link(1, 2),
            Op::Flush,
            Op::SetTimes(1, 0, 0),
            Op::Unlink(1),
        ]);
    }

    /// A file renamed over one name of a hard link, whose entry got a new time through the
    /// other name: the commit captures the old name's file (still a link of the entry on the
    /// share) as ours, the same flush then gives the entry its time through the other name,
    /// and the next flush finds the captured file changed. It must not keep it as a conflict
    /// copy: the file still has its other name on the share, which holds that version. Found
    /// by the model at a fresh seed (18 301 cases in).
    #[test]
    fn rename_over_a_hard_link_name_whose_entry_got_its_time_through_the_other() {
        check(vec![
            Op::Create(0, vec![]),
            Op::Link(0, 1),
            Op::Flush,
            Op::Create(8, vec![]),
            Op::SetMtime(0, 0),
            Op::Rename(8, 0),
        ]);
    }

    /// An unread file renamed to an ignored name keeps its content (found by the model).
    #[test]
    fn unread_file_renamed_to_an_ignored_name() {
        check(vec![
            Op::Mkdir(3),
            Op::Flush,
            Op::RemoteWrite(4, vec![]),
            Op::Rename(4, 13),
        ]);
        check(vec![
            Op::Mkdir(3),
            Op::Mkdir(11),
            Op::Flush,
            Op::RemoteWrite(0, vec![4, 2]),
            Op::Rename(0, 12),
            Op::ReadAll,
        ]);
    }

    /// A time set on a file never read here is a change: its first read must not undo it, nor
    /// a crash, and the flush writes it.
    #[test]
    fn time_set_before_the_first_read_is_kept() {
        check(vec![
            Op::RemoteWrite(0, vec![1, 2, 3]),
            Op::SetTimes(0, 5, 9),
            Op::Read(0),
        ]);
        check(vec![
            Op::RemoteWrite(0, vec![1, 2, 3]),
            Op::SetMtime(0, 9),
            Op::Crash,
            Op::Read(0),
            Op::Flush,
        ]);
    }

    /// Someone else's version of the same size put at the name just after our publish, on a
    /// share whose way with times was not learned yet, by a file whose time (a multiple of
    /// 100 ns) cannot teach it: the stat after the publish took theirs for ours, and a refresh
    /// then saw no change. The base now comes from our own temporary, asked before the
    /// publish. (Found at a fresh seed, 61 795 cases in, when a clock reading happened to end
    /// in 00; the time is set here so that it always does.)
    #[test]
    fn same_size_version_just_after_the_publish_on_a_share_not_learned_yet() {
        for n in 0..12 {
            check(vec![
                Op::RemoteWrite(1, vec![7; 20]),
                Op::Write(1, 0, vec![8; 19]),
                Op::SetMtime(1, 0),
                Op::FlushRaced(n, 1, Prep::Nothing, vec![9; 20]),
            ]);
        }
    }
}
