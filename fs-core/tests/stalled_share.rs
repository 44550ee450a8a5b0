//! A flush against a share that stops answering, through the share deadline
//! (`DeadlineBacking`), over a real folder: what the user waits for is one deadline, not one
//! per call, and a share that answers again is used at once.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use fs_core::fault::{FaultControl, FaultyBacking};
use fs_core::{Backing, DeadlineBacking, DirBacking, Engine, EngineOptions, Reason, RelPath};

mod common;

struct Rig {
    _dir: tempfile::TempDir,
    share: std::path::PathBuf,
    faults: Arc<FaultControl>,
    engine: Arc<Engine>,
}

fn rig(deadline: Duration) -> Rig {
    let dir = tempfile::tempdir_in(common::scratch_root()).unwrap();
    let share = dir.path().join("share");
    fs::create_dir_all(&share).unwrap();
    let faults = FaultControl::new();
    let faulty: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
        Arc::new(DirBacking::new(&share)),
        faults.clone(),
    ));
    let backing: Arc<dyn Backing> = Arc::new(DeadlineBacking::new(faulty, deadline));
    let opts = EngineOptions::new(dir.path().join("cache"), "test");
    let engine = Arc::new(Engine::open(backing, opts).unwrap());
    Rig {
        _dir: dir,
        share,
        faults,
        engine,
    }
}

fn write(e: &Engine, path: &str, data: &[u8]) {
    let p = RelPath::new(path).unwrap();
    let parent = e.resolve(&p.parent().unwrap()).unwrap();
    let (_, fh) = e.create(parent, p.name(), 0o644).unwrap();
    e.write(&fh, 0, data).unwrap();
    e.release(fh);
}

/// The share froze during a flush and came back; the calls that flush abandoned are still
/// waiting (the client has not drained them). The user's next flush asks the share now and
/// writes everything, instead of repeating "an earlier call is still waiting".
#[test]
fn the_first_flush_after_a_frozen_share_returns_writes() {
    let r = rig(Duration::from_millis(300));
    for i in 0..5 {
        write(&r.engine, &format!("f{i}.csv"), b"step output");
    }
    r.faults.freeze(true);
    let frozen = r.engine.flush(None);
    let files = frozen.pending.iter().filter(|p| p.path.ends_with(".csv"));
    assert_eq!(files.count(), 5, "{frozen:?}");
    assert!(
        frozen.pending.iter().all(|p| p.reason.is_transient()),
        "{frozen:?}"
    );
    r.faults.freeze(false);
    let back = r.engine.flush(None);
    assert!(back.is_clean(), "{back:?}");
    assert_eq!(back.files_written, 5);
    for i in 0..5 {
        assert_eq!(
            fs::read(r.share.join(format!("f{i}.csv"))).unwrap(),
            b"step output"
        );
    }
    r.faults.release_frozen();
}

/// A client that lost its server answers each call with EIO after a while, each within the
/// deadline. The flush stops asking at the first such failure, instead of making every call
/// of every step one after another (8 staging folders, then each file with its retries: over
/// a minute with a real sshfs). Counted in calls, not timed.
#[test]
fn a_share_that_fails_slowly_is_asked_once_per_flush_not_once_per_file() {
    let r = rig(Duration::from_secs(30));
    for i in 0..20 {
        write(&r.engine, &format!("f{i}.csv"), b"step output");
    }
    r.engine.mkdir(fs_core::ROOT_INO, "results", 0o755).unwrap();
    for i in 0..20 {
        write(&r.engine, &format!("results/r{i}.csv"), b"step output");
    }
    r.faults
        .fail_slowly(Some((Duration::from_millis(100), libc::EIO)));
    let before = r.faults.ops();
    let report = r.engine.flush(None);
    let asked = r.faults.ops() - before;
    assert!(!report.pending.is_empty());
    assert!(
        report
            .pending
            .iter()
            .all(|p| p.reason == Reason::Unreachable),
        "{report:?}"
    );
    // What was already in flight when the first failure came back: one call per worker.
    assert!(
        asked <= 1 + 8,
        "a flush against a failing share asked it {asked} times"
    );
    // Nothing lost: once the share answers, the next flush writes it all.
    r.faults.fail_slowly(None);
    let back = r.engine.flush(None);
    assert!(back.is_clean(), "{back:?}");
    assert_eq!(back.files_written, 40);
}
