//! `--cache-max-size`: a cache past its limit drops the least recently opened clean copies,
//! and never a changed, new or open one.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_core::{DirBacking, Engine, EngineOptions, RelPath, RetryPolicy};

const SIZE: usize = 10_000;

fn content(i: usize) -> Vec<u8> {
    (0..SIZE).map(|b| (b * 7 + i * 13) as u8).collect()
}

fn open(dir: &Path, limit: Option<u64>) -> Engine {
    let mut opts = EngineOptions::new(dir.join("cache"), "test");
    opts.retry = RetryPolicy::none();
    opts.cache_max_bytes = limit;
    Engine::open(Arc::new(DirBacking::new(dir.join("share"))), opts).unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    fs::create_dir_all(&share).unwrap();
    for i in 0..10 {
        fs::write(share.join(format!("f{i}")), content(i)).unwrap();
    }
    dir
}

fn read(e: &Engine, name: &str) -> Vec<u8> {
    let ino = e.resolve(&RelPath::new(name).unwrap()).unwrap();
    let fh = e.open_file(ino, false, false).unwrap();
    let data = e.read(&fh, 0, 1 << 20).unwrap();
    e.release(fh);
    data
}

fn write(e: &Engine, name: &str, data: &[u8]) {
    let p = RelPath::new(name).unwrap();
    let fh = match e.resolve(&p) {
        Ok(ino) => e.open_file(ino, true, true).unwrap(),
        Err(_) => e.create(fs_core::ROOT_INO, name, 0o644).unwrap().1,
    };
    e.write(&fh, 0, data).unwrap();
    e.release(fh);
}

fn cached(dir: &Path) -> Vec<String> {
    let tree: PathBuf = dir.join("cache/tree");
    let mut names: Vec<String> = fs::read_dir(tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('f') || n == "new")
        .collect();
    names.sort();
    names
}

#[test]
fn the_least_recently_opened_clean_copies_go_first() {
    let dir = setup();
    let e = open(dir.path(), Some(35_000));
    for i in 0..10 {
        assert_eq!(read(&e, &format!("f{i}")), content(i));
    }
    assert_eq!(cached(dir.path()), ["f7", "f8", "f9"]);
    let s = e.status();
    assert!(s.cache_bytes <= 35_000, "{}", s.cache_bytes);
    assert_eq!(s.cache_limit_bytes, Some(35_000));
    // An evicted file reads the same, fetched again; the oldest of the rest makes room.
    assert_eq!(read(&e, "f0"), content(0));
    assert_eq!(cached(dir.path()), ["f0", "f8", "f9"]);
    // What was evicted stays evicted across a restart, and still reads the same.
    drop(e);
    let e = open(dir.path(), Some(35_000));
    assert_eq!(cached(dir.path()), ["f0", "f8", "f9"]);
    assert_eq!(read(&e, "f3"), content(3));
}

#[test]
fn changed_new_and_open_files_are_never_evicted() {
    let dir = setup();
    let e = open(dir.path(), Some(25_000));
    write(&e, "f1", b"ours");
    write(&e, "new", b"only here");
    let held_ino = e.resolve(&RelPath::new("f2").unwrap()).unwrap();
    let held = e.open_file(held_ino, false, false).unwrap();
    for i in 3..10 {
        assert_eq!(read(&e, &format!("f{i}")), content(i));
    }
    let kept = cached(dir.path());
    for name in ["f1", "f2", "new"] {
        assert!(
            kept.contains(&name.to_string()),
            "{name} was evicted: {kept:?}"
        );
    }
    assert_eq!(e.read(&held, 0, SIZE * 2).unwrap(), content(2));
    e.release(held);
    assert_eq!(read(&e, "f1"), b"ours");
    assert_eq!(read(&e, "new"), b"only here");
    // However small the limit, only the clean copies go while the others are unflushed.
    e.evict_to(0).unwrap();
    assert_eq!(cached(dir.path()), ["f1", "new"]);
    // Once written back they are clean copies like any other.
    assert!(e.flush(None).pending.is_empty());
    let done = e.evict_to(0).unwrap();
    assert_eq!((done.files, done.bytes), (2, 13), "{done:?}");
    assert_eq!(cached(dir.path()), Vec::<String>::new());
    assert_eq!(read(&e, "f1"), b"ours");
    assert_eq!(read(&e, "new"), b"only here");
}

#[test]
fn no_limit_means_nothing_is_evicted() {
    let dir = setup();
    let e = open(dir.path(), None);
    for i in 0..10 {
        read(&e, &format!("f{i}"));
    }
    assert_eq!(cached(dir.path()).len(), 10);
    assert_eq!(e.status().cache_limit_bytes, None);
    // Open handles are not counted without a limit, so nothing is known safe to drop.
    assert_eq!(e.evict_to(0).unwrap().files, 0);
    assert_eq!(cached(dir.path()).len(), 10);
}

#[test]
fn ranges_of_a_big_file_count_towards_the_limit_and_make_room() {
    let dir = setup();
    let big: Vec<u8> = (0..400_000u32).map(|b| (b % 251) as u8).collect();
    fs::write(dir.path().join("share/big"), &big).unwrap();
    let mut opts = EngineOptions::new(dir.path().join("cache"), "test");
    opts.retry = RetryPolicy::none();
    opts.cache_max_bytes = Some(45_000);
    // Small enough here to be fetched in ranges of 16 KiB.
    opts.range_fetch_min = 100_000;
    opts.range_block = 16 << 10;
    let e = Engine::open(Arc::new(DirBacking::new(dir.path().join("share"))), opts).unwrap();
    for i in 0..4 {
        assert_eq!(read(&e, &format!("f{i}")), content(i));
    }
    assert_eq!(cached(dir.path()), ["f0", "f1", "f2", "f3"]);
    // 32 KiB of the big file in its part file, beside 40 000 bytes of copies: over the limit.
    let ino = e.resolve(&RelPath::new("big").unwrap()).unwrap();
    let fh = e.open_file(ino, false, false).unwrap();
    assert_eq!(e.read(&fh, 10_000, 20_000).unwrap(), big[10_000..30_000]);
    let fetching = e.status().fetching;
    assert_eq!(fetching.len(), 1, "read in ranges: {fetching:?}");
    assert_eq!(fetching[0].fetched_bytes, 32 << 10);
    let s = e.status();
    assert!(
        s.cache_bytes <= 45_000,
        "the part file counts, and clean copies made room: {} bytes",
        s.cache_bytes
    );
    assert_eq!(s.cache_bytes, 10_000 + (32 << 10));
    // 72 768 bytes: the three least recently opened went (42 768 left). They read the same,
    // fetched again.
    assert_eq!(cached(dir.path()), ["f3"]);
    e.release(fh);
    assert_eq!(read(&e, "f0"), content(0));
}

/// A cache held over its limit by what may not go (a changed file bigger than the limit): the
/// fetches that follow still make room, but the whole tree is walked once per 64 KiB fetched
/// here (a sixteenth of the limit, at least 64 KiB), not once per fetch.
#[test]
fn a_cache_stuck_over_its_limit_is_not_walked_at_every_fetch() {
    let dir = setup();
    let e = open(dir.path(), Some(25_000));
    write(&e, "new", &[7u8; 30_000]);
    let before = e.eviction_passes();
    for i in 0..10 {
        assert_eq!(read(&e, &format!("f{i}")), content(i));
    }
    let passes = e.eviction_passes() - before;
    // 100 000 bytes fetched: a pass when the estimate first passes the limit (at f2), the
    // next once 64 KiB more came (at f9). One per fetch from f2 on would be 8.
    assert_eq!(passes, 2, "{passes} passes for 10 fetches");
    // The last pass made room: the changed file and the file just read are left.
    assert_eq!(cached(dir.path()), ["f9", "new"]);
    assert_eq!(e.status().cache_bytes, 40_000);
    // Flushed, the changed file may go too, and the next pass gets under the limit.
    assert!(e.flush(None).pending.is_empty());
    let done = e.evict_to(25_000).unwrap();
    assert!(done.cache_bytes <= 25_000, "{done:?}");
}
