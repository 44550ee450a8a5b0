//! Big files fetched in ranges (`engine/partial.rs`): what a first read costs, what a restart
//! trusts, and what happens when the share's copy changes during the fetch. Share traffic is
//! counted with the fault-injecting backing; nothing here depends on timing.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fs_core::fault::{FaultControl, FaultyBacking};
use fs_core::{Backing, DirBacking, Engine, EngineOptions, Ino, RelPath, RetryPolicy};

const MIB: u64 = 1 << 20;
/// The engine's default block: what a small read fetches at least.
const BLOCK: u64 = 256 << 10;
const SIZE: u64 = 20 * MIB;

/// Content nothing compresses or repeats: a hole or a misplaced block never matches it.
fn content(size: u64, seed: u64) -> Vec<u8> {
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

struct Rig {
    dir: tempfile::TempDir,
    faults: Arc<FaultControl>,
    engine: Option<Engine>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("share")).unwrap();
        fs::write(dir.path().join("share/big.bin"), content(SIZE, 1)).unwrap();
        fs::write(dir.path().join("share/small.txt"), b"small").unwrap();
        let mut r = Rig {
            dir,
            faults: FaultControl::new(),
            engine: None,
        };
        r.start();
        r
    }

    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Opens the engine on the same cache, with a fresh share-call counter: a restart.
    fn start(&mut self) {
        self.engine = None;
        self.faults = FaultControl::new();
        let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
            Arc::new(DirBacking::new(self.share())),
            self.faults.clone(),
        ));
        let mut opts = EngineOptions::new(self.cache(), "test");
        opts.retry = RetryPolicy::none();
        self.engine = Some(Engine::open(backing, opts).unwrap());
    }

    fn e(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    fn ino(&self, path: &str) -> Ino {
        self.e().resolve(&RelPath::new(path).unwrap()).unwrap()
    }

    fn read(&self, path: &str, offset: u64, len: usize) -> Vec<u8> {
        let fh = self.e().open_file(self.ino(path), false, false).unwrap();
        let data = self.e().read(&fh, offset, len).unwrap();
        self.e().release(fh);
        data
    }

    fn fill_all(&self, ino: Ino) -> usize {
        let mut steps = 0;
        while self.e().fill_step(ino).unwrap() {
            steps += 1;
            assert!(steps < 1000, "the fill never ends");
        }
        steps
    }

    fn part_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.cache().join("parts"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

fn slice(data: &[u8], offset: u64, len: u64) -> &[u8] {
    &data[offset as usize..(offset + len) as usize]
}

#[test]
fn a_first_read_fetches_the_blocks_it_asks_for_not_the_file() {
    let r = Rig::new();
    let want = content(SIZE, 1);
    let ino = r.ino("big.bin");
    let before = r.faults.ops();
    assert_eq!(
        r.read("big.bin", 10 * MIB - 100, 4096),
        slice(&want, 10 * MIB - 100, 4096)
    );
    // The stat, the open and one range read: not a fetch of 20 MiB.
    assert_eq!(r.faults.ops() - before, 3);
    assert_eq!(
        r.faults.read_bytes(),
        2 * BLOCK,
        "the read straddles two blocks"
    );
    assert_eq!(r.e().partial_files(), vec![(ino, 2 * BLOCK, SIZE)]);
    assert!(
        !r.cache().join("tree/big.bin").exists(),
        "a file with holes never enters the cache tree"
    );

    // A read of what is there already asks the share nothing.
    let before = r.faults.ops();
    assert_eq!(
        r.read("big.bin", 10 * MIB, 100),
        slice(&want, 10 * MIB, 100)
    );
    assert_eq!(r.faults.ops() - before, 0);

    // Filling completes it with each byte read once, and installs it as a whole fetch would.
    r.fill_all(ino);
    assert_eq!(r.faults.read_bytes(), SIZE);
    assert!(r.e().partial_files().is_empty());
    assert!(r.part_files().is_empty());
    assert_eq!(fs::read(r.cache().join("tree/big.bin")).unwrap(), want);
    let before = r.faults.ops();
    assert_eq!(r.read("big.bin", 0, SIZE as usize), want);
    assert_eq!(
        r.faults.ops() - before,
        0,
        "a whole file is read from the cache"
    );
}

#[test]
fn small_files_and_writers_get_the_whole_file() {
    let r = Rig::new();
    assert_eq!(r.read("small.txt", 0, 100), b"small");
    assert!(r.e().partial_files().is_empty());
    // An open for writing needs the whole content before it returns.
    let ino = r.ino("big.bin");
    let fh = r.e().open_file(ino, true, false).unwrap();
    r.e().release(fh);
    assert!(r.e().partial_files().is_empty());
    assert_eq!(r.faults.read_bytes(), SIZE + 5);
    assert_eq!(
        fs::read(r.cache().join("tree/big.bin")).unwrap(),
        content(SIZE, 1)
    );
}

#[test]
fn a_writer_after_a_ranged_read_fetches_only_what_is_missing() {
    let r = Rig::new();
    let ino = r.ino("big.bin");
    r.read("big.bin", 0, 4096);
    r.e().fill_step(ino).unwrap();
    let fetched = r.faults.read_bytes();
    assert!(fetched > BLOCK && fetched < SIZE, "{fetched}");
    let fh = r.e().open_file(ino, true, false).unwrap();
    r.e().write(&fh, 0, b"changed").unwrap();
    r.e().release(fh);
    assert_eq!(r.faults.read_bytes(), SIZE, "each byte fetched once");
    let report = r.e().flush(None);
    assert!(report.is_clean(), "{report:?}");
    let mut want = content(SIZE, 1);
    want[..7].copy_from_slice(b"changed");
    assert_eq!(fs::read(r.share().join("big.bin")).unwrap(), want);
}

/// What a crash leaves: the ranges the journal recorded are trusted, bytes the part file holds
/// beyond them are not, and nothing is fetched twice that was recorded.
#[test]
fn a_restart_trusts_recorded_ranges_and_nothing_else() {
    let mut r = Rig::new();
    let want = content(SIZE, 1);
    let ino = r.ino("big.bin");
    r.read("big.bin", 0, 4096);
    r.e().fill_step(ino).unwrap();
    r.e().fill_step(ino).unwrap();
    let [(_, recorded, size)] = r.e().partial_files()[..] else {
        panic!("{:?}", r.e().partial_files());
    };
    assert_eq!(size, SIZE);
    // A read after the last record: present in the part file, not recorded.
    r.read("big.bin", 15 * MIB, 10);
    let [part] = &r.part_files()[..] else {
        panic!("{:?}", r.part_files());
    };
    let part = part.clone();
    r.engine = None;
    // Unrecorded bytes that look like data: what a crash before the record could leave.
    scribble(&part, 15 * MIB, BLOCK);
    r.start();
    assert_eq!(r.e().partial_files(), vec![(ino, recorded, SIZE)]);
    assert_eq!(
        r.read("big.bin", 15 * MIB, 4096),
        slice(&want, 15 * MIB, 4096)
    );
    r.fill_all(ino);
    assert_eq!(
        r.faults.read_bytes(),
        SIZE - recorded,
        "recorded ranges are not fetched again"
    );
    assert_eq!(r.read("big.bin", 0, SIZE as usize), want);
}

fn scribble(path: &Path, offset: u64, len: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&vec![0xAB; len as usize]).unwrap();
}

#[test]
fn a_part_file_without_its_record_is_removed() {
    let mut r = Rig::new();
    r.read("big.bin", 0, 4096);
    r.engine = None;
    fs::write(r.cache().join("parts/99-1"), b"left by something else").unwrap();
    let [a, b] = &r.part_files()[..] else {
        panic!()
    };
    // The record's part file lost its size (as a full disk could leave it): not usable.
    let ours = if a.ends_with("99-1") { b } else { a };
    fs::OpenOptions::new()
        .write(true)
        .open(ours)
        .unwrap()
        .set_len(3)
        .unwrap();
    r.start();
    assert!(r.part_files().is_empty(), "{:?}", r.part_files());
    assert!(r.e().partial_files().is_empty());
    assert_eq!(
        r.read("big.bin", 0, 4096),
        slice(&content(SIZE, 1), 0, 4096)
    );
}

#[test]
fn a_file_replaced_on_the_share_during_the_fetch_is_fetched_again() {
    let r = Rig::new();
    let old = content(SIZE, 1);
    let new = content(SIZE + 3, 2);
    let ino = r.ino("big.bin");
    let fh = r.e().open_file(ino, false, false).unwrap();
    assert_eq!(r.e().read(&fh, 0, 4096).unwrap(), slice(&old, 0, 4096));
    // Replaced the way editors and copy tools do: a new file renamed over the old.
    fs::write(r.share().join("big.new"), &new).unwrap();
    fs::rename(r.share().join("big.new"), r.share().join("big.bin")).unwrap();
    r.fill_all(ino);
    // The open handle goes on reading the version it opened, as on the share itself.
    assert_eq!(
        r.e().read(&fh, 12 * MIB, 4096).unwrap(),
        slice(&old, 12 * MIB, 4096)
    );
    r.e().release(fh);
    assert!(r.part_files().is_empty());
    assert!(
        !r.cache().join("tree/big.bin").exists(),
        "the old version was not installed"
    );
    r.e().refresh();
    assert_eq!(r.read("big.bin", 0, new.len()), new);
}

#[test]
fn a_share_that_goes_offline_mid_fetch_fails_the_read_and_keeps_the_ranges() {
    let r = Rig::new();
    let want = content(SIZE, 1);
    let ino = r.ino("big.bin");
    let fh = r.e().open_file(ino, false, false).unwrap();
    r.e().read(&fh, 0, 4096).unwrap();
    r.e().fill_step(ino).unwrap();
    r.faults.set_offline(true);
    assert!(r.e().read(&fh, 18 * MIB, 4096).is_err());
    assert!(r.e().fill_step(ino).is_err());
    // What was fetched still reads.
    assert_eq!(
        r.e().read(&fh, 4096, 4096).unwrap(),
        slice(&want, 4096, 4096)
    );
    r.faults.set_offline(false);
    assert_eq!(
        r.e().read(&fh, 18 * MIB, 4096).unwrap(),
        slice(&want, 18 * MIB, 4096)
    );
    r.e().release(fh);
    r.fill_all(ino);
    assert_eq!(r.read("big.bin", 0, SIZE as usize), want);
}
