//! What the engine's test files share.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Where test folders go: tmpfs makes the many fsyncs of flushes cheap; the semantics are the
/// same.
#[allow(dead_code)] // not every test file makes its folders there
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A file or folder as a snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)] // not every test file compares trees
pub enum Entry {
    File(Vec<u8>, i64),
    Dir(i64),
}

/// Old versions a flush's commits captured (`flush/capture.rs`) below `root`: they stay, under
/// a private name, until the next flush.
#[allow(dead_code)]
pub fn captures_left(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| fs_core::names::is_capture_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path().display().to_string())
        .collect()
}

/// Every entry below `root` (minus `.sipfs/`, and the old versions a flush captured, which the
/// next flush removes: `captures_left` finds those), with content and mtimes.
#[allow(dead_code)]
pub fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".sipfs" || rel.starts_with(".sipfs/") {
            continue;
        }
        if fs_core::names::is_capture_name(&e.file_name().to_string_lossy()) {
            continue;
        }
        let md = e.path().symlink_metadata().unwrap();
        let mtime = filetime::FileTime::from_last_modification_time(&md);
        let ns = mtime.unix_seconds() * 1_000_000_000 + mtime.nanoseconds() as i64;
        if md.is_dir() {
            out.insert(rel, Entry::Dir(ns));
        } else {
            out.insert(rel, Entry::File(fs::read(e.path()).unwrap(), ns));
        }
    }
    out
}

/// The seed the model tests draw their cases from.
///
/// By default a seed fixed here, so that a run, in CI or anywhere, tries exactly the cases
/// the last green run tried: main cannot turn red on a fresh machine by the luck of a draw.
/// `SIPFS_MODEL_SEED=fresh` draws a new seed (what `scripts/model-fresh` does, a part of
/// calling an engine change done), and `SIPFS_MODEL_SEED=N` replays seed N. A case a fresh
/// run finds failing is kept as a named test in the file's `found` module, so the fixed run
/// checks it from then on.
#[allow(dead_code)] // only the model tests draw cases
pub fn model_seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    /// Changed only on purpose, together with a run at the new seed.
    const FIXED: u64 = 20_261_207;
    match std::env::var("SIPFS_MODEL_SEED").as_deref() {
        Err(_) | Ok("") => RngSeed::Fixed(FIXED),
        Ok("fresh") => RngSeed::Random,
        Ok(n) => RngSeed::Fixed(
            n.parse()
                .unwrap_or_else(|_| panic!("SIPFS_MODEL_SEED is `fresh` or a number, not {n:?}")),
        ),
    }
}

/// An engine over a share folder whose calls a test counts, freezes or fails
/// (`FaultyBacking`), with no automatic retries: what a test sees is one flush's own calls.
#[allow(dead_code)] // not every test file counts share calls
pub struct FaultyRig {
    pub _dir: tempfile::TempDir,
    pub share: PathBuf,
    pub faults: std::sync::Arc<fs_core::fault::FaultControl>,
    pub engine: std::sync::Arc<fs_core::Engine>,
}

/// A `FaultyRig` whose share `prepare` fills first; `configure` adjusts the engine's options.
#[allow(dead_code)]
pub fn faulty_rig(
    prepare: impl FnOnce(&Path),
    configure: impl FnOnce(&mut fs_core::EngineOptions),
) -> FaultyRig {
    use fs_core::fault::{FaultControl, FaultyBacking};
    use fs_core::{Backing, DirBacking, Engine, EngineOptions, RetryPolicy};
    use std::sync::Arc;
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    let share = dir.path().join("share");
    fs::create_dir_all(&share).unwrap();
    prepare(&share);
    let faults = FaultControl::new();
    let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
        Arc::new(DirBacking::new(&share)),
        faults.clone(),
    ));
    let mut opts = EngineOptions::new(dir.path().join("cache"), "test");
    opts.retry = RetryPolicy::none();
    configure(&mut opts);
    let engine = Arc::new(Engine::open(backing, opts).unwrap());
    FaultyRig {
        _dir: dir,
        share,
        faults,
        engine,
    }
}

/// Writes `data` at `path` through the engine, as a program would: the file is created if
/// it is not there, opened for writing if it is.
#[allow(dead_code)]
pub fn write_here(e: &fs_core::Engine, path: &str, data: &[u8]) {
    let p = fs_core::RelPath::new(path).unwrap();
    let parent = e.resolve(&p.parent().unwrap()).unwrap();
    let fh = match e.resolve(&p) {
        Ok(ino) => e.open_file(ino, true, true).unwrap(),
        Err(_) => e.create(parent, p.name(), 0o644).unwrap().1,
    };
    e.write(&fh, 0, data).unwrap();
    e.release(fh);
}
