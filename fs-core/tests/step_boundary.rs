//! A step boundary costs what the share's client forces (issue 30): the share calls a flush
//! makes after a workflow step, counted, and the calls it makes without waiting for each
//! other, seen at a frozen share. Never a time.

use std::fs;
use std::time::{Duration, Instant};

use fs_core::{Engine, RelPath};

mod common;

type Rig = common::FaultyRig;

fn rig(files: &[&str]) -> Rig {
    let prepare = |share: &std::path::Path| {
        fs::create_dir_all(share.join("config")).unwrap();
        for f in files {
            fs::write(share.join(f), "base\n").unwrap();
        }
    };
    common::faulty_rig(prepare, |_| {})
}

use common::write_here;

fn mkdir_here(e: &Engine, path: &str) {
    let p = RelPath::new(path).unwrap();
    let parent = e.resolve(&p.parent().unwrap()).unwrap();
    e.mkdir(parent, p.name(), 0o755).unwrap();
}

/// The old versions the last flush captured are settled together: a flush after a step that
/// changed five files asks about all five captured versions without waiting for each answer
/// (one after another, they cost two round trips per file before anything is written).
#[test]
fn captured_versions_are_settled_together() {
    let names = [
        "a.csv",
        "b.csv",
        "config/c.txt",
        "config/d.txt",
        "config/e.txt",
    ];
    let r = rig(&names);
    for n in names {
        write_here(&r.engine, n, format!("ours {n}\n").as_bytes());
    }
    let first = r.engine.flush(None);
    assert!(first.is_clean(), "{first:?}");
    assert_eq!(
        common::captures_left(&r.share).len(),
        names.len(),
        "each commit leaves the old version captured, for the next flush to remove"
    );
    // The next flush begins with them: freeze the share and see how many calls arrive.
    r.faults.freeze(true);
    let engine = r.engine.clone();
    let flush = std::thread::spawn(move || engine.flush(None));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut most = 0;
    while Instant::now() < deadline && most < names.len() as u64 {
        most = most.max(r.faults.calls_waiting());
        std::thread::sleep(Duration::from_millis(5));
    }
    r.faults.freeze(false);
    r.faults.release_frozen();
    let second = flush.join().unwrap();
    assert!(second.is_clean(), "{second:?}");
    assert!(
        most >= names.len() as u64,
        "the captured versions were asked about {most} at a time, not all {} at once",
        names.len()
    );
    assert!(
        common::captures_left(&r.share).is_empty(),
        "left: {:?}",
        common::captures_left(&r.share)
    );
}

/// A new folder written whole is renamed into place with its staging folders inside it: the
/// flush does not then ask the share to remove them at their old names.
#[test]
fn a_new_folder_costs_no_removal_of_its_temporary() {
    let r = rig(&["warm.csv"]);
    // Teach the flush the share's time resolution first.
    write_here(&r.engine, "warm.csv", b"warm\n");
    assert!(r.engine.flush(None).is_clean());
    assert!(r.engine.flush(None).is_clean());

    mkdir_here(&r.engine, "out");
    for i in 0..3 {
        write_here(&r.engine, &format!("out/t{i}.csv"), b"row\n");
    }
    let before = r.faults.ops();
    let report = r.engine.flush(None);
    let calls = r.faults.ops() - before;
    assert!(report.is_clean(), "{report:?}");
    for i in 0..3 {
        assert_eq!(
            fs::read(r.share.join(format!("out/t{i}.csv"))).unwrap(),
            b"row\n"
        );
    }
    let left: Vec<_> = common::snapshot(&r.share)
        .into_keys()
        .filter(|p| fs_core::names::is_temp_name(p.rsplit('/').next().unwrap()))
        .collect();
    assert!(left.is_empty(), "left on the share: {left:?}");
    // The folder under its temporary name (1), its 3 files (1 each), its rename (1), then the
    // times and modes of the folder and of the top folder it was made in (2 each). An rmdir
    // of the temporary name after the rename made it 10.
    assert_eq!(
        calls, 9,
        "share calls of a flush of a new folder of 3 files"
    );
}
