//! Entries beyond plain files and folders, in the engine: hard links (one entry under several
//! names), and FIFOs, sockets and device nodes, written to a share that holds them and kept in
//! the cache, and listed, where the share cannot hold them.
#![cfg(unix)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use fs_core::fault::{FaultControl, FaultyBacking};
use fs_core::{
    Attr, Backing, DirBacking, Engine, EngineOptions, EntryKind, Ino, RelPath, RetryPolicy,
    SetAttr, ROOT_INO,
};

struct Rig {
    dir: tempfile::TempDir,
    share: PathBuf,
    faults: Arc<FaultControl>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        fs::create_dir_all(&share).unwrap();
        Rig {
            dir,
            share,
            faults: FaultControl::new(),
        }
    }

    /// An engine on the rig's cache: a second call after dropping the first is a restart.
    fn engine(&self) -> Engine {
        let backing: Arc<dyn Backing> = Arc::new(FaultyBacking::new(
            Arc::new(DirBacking::new(&self.share)),
            self.faults.clone(),
        ));
        let mut opts = EngineOptions::new(self.dir.path().join("cache"), "test");
        opts.retry = RetryPolicy::none();
        Engine::open(backing, opts).unwrap()
    }
}

fn dir_of(e: &Engine, path: &str) -> Ino {
    if path.is_empty() {
        return ROOT_INO;
    }
    e.resolve(&RelPath::new(path).unwrap()).unwrap()
}

/// What a program's `stat` of `path` sees.
fn stat(e: &Engine, path: &str) -> Attr {
    let p = RelPath::new(path).unwrap();
    let parent = dir_of(e, p.parent().unwrap().as_str());
    e.lookup(parent, p.name()).unwrap()
}

fn write_at(e: &Engine, ino: Ino, offset: u64, data: &[u8]) {
    let fh = e.open_file(ino, true, false).unwrap();
    e.write(&fh, offset, data).unwrap();
    e.release(fh);
}

fn create(e: &Engine, path: &str, data: &[u8]) -> Ino {
    let p = RelPath::new(path).unwrap();
    let parent = dir_of(e, p.parent().unwrap().as_str());
    let (a, fh) = e.create(parent, p.name(), 0o644).unwrap();
    e.write(&fh, 0, data).unwrap();
    e.release(fh);
    a.ino
}

fn read(e: &Engine, path: &str) -> Vec<u8> {
    let fh = e.open_file(stat(e, path).ino, false, false).unwrap();
    let data = e.read(&fh, 0, 1 << 20).unwrap();
    e.release(fh);
    data
}

fn link(e: &Engine, ino: Ino, path: &str) -> Attr {
    let p = RelPath::new(path).unwrap();
    let parent = dir_of(e, p.parent().unwrap().as_str());
    e.link(ino, parent, p.name()).unwrap()
}

#[test]
fn a_hard_link_is_one_entry_under_two_names_and_each_name_is_written() {
    let r = Rig::new();
    let e = r.engine();
    let ino = create(&e, "a", b"one");
    e.mkdir(ROOT_INO, "d", 0o755).unwrap();
    let b = link(&e, ino, "d/b");
    assert_eq!(b.ino, ino, "both names show one inode number");
    assert_eq!(b.nlink, 2);
    assert_eq!(stat(&e, "a").nlink, 2);

    // Content and attributes are the entry's, whichever name they come through.
    write_at(&e, ino, 3, b" two");
    assert_eq!(read(&e, "d/b"), b"one two");
    let chmod = SetAttr {
        mode: Some(0o600),
        ..Default::default()
    };
    e.setattr(ino, chmod).unwrap();
    assert_eq!(stat(&e, "d/b").mode, 0o600);

    // Each name is written to the share; one that keeps hard links gets one file.
    let report = e.flush(None);
    assert!(
        report.is_clean() && report.warnings.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.files_written, 2, "{report:?}");
    for p in ["a", "d/b"] {
        assert_eq!(fs::read(r.share.join(p)).unwrap(), b"one two", "{p}");
        let md = fs::metadata(r.share.join(p)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, 0o600, "{p}");
    }
    let on_share = |p: &str| fs::metadata(r.share.join(p)).unwrap();
    assert_eq!(
        on_share("a").ino(),
        on_share("d/b").ino(),
        "a hard link there too"
    );
    assert_eq!(on_share("a").nlink(), 2);
    // Written once, both clean; a write through the entry makes both pending again.
    assert_eq!(e.flush(None).files_written, 0);
    write_at(&e, ino, 0, b"ONE");
    let report = e.flush(None);
    assert_eq!(report.files_written, 2, "{report:?}");
    assert_eq!(fs::read(r.share.join("d/b")).unwrap(), b"ONE two");

    // The name the entry's number came from goes: the other keeps the number and the content.
    e.unlink(ROOT_INO, "a").unwrap();
    let b = stat(&e, "d/b");
    assert_eq!((b.ino, b.nlink), (ino, 1));
    assert_eq!(
        e.getattr(ino).unwrap().size,
        7,
        "programs' inode still answers"
    );
    assert_eq!(read(&e, "d/b"), b"ONE two");
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert!(!r.share.join("a").exists());
    assert_eq!(fs::read(r.share.join("d/b")).unwrap(), b"ONE two");

    // Kept across a restart.
    link(&e, ino, "c");
    drop(e);
    let e = r.engine();
    let (b, c) = (stat(&e, "d/b"), stat(&e, "c"));
    assert_eq!((b.ino, c.ino, b.nlink, c.nlink), (ino, ino, 2, 2));
    write_at(&e, ino, 7, b"!");
    assert_eq!(read(&e, "c"), b"ONE two!");
    assert_eq!(read(&e, "d/b"), b"ONE two!");
    assert!(e.flush(None).is_clean());
    assert_eq!(fs::read(r.share.join("c")).unwrap(), b"ONE two!");
}

#[test]
fn a_rename_over_one_name_of_a_hard_link_keeps_the_others() {
    let r = Rig::new();
    let e = r.engine();
    let ino = create(&e, "a", b"linked");
    link(&e, ino, "b");
    let other = create(&e, "c", b"other");
    assert!(e.flush(None).is_clean());
    // `a` is the name the entry's number came from.
    e.rename(ROOT_INO, "c", ROOT_INO, "a", false).unwrap();
    let (a, b) = (stat(&e, "a"), stat(&e, "b"));
    assert_eq!((a.ino, a.nlink), (other, 1));
    assert_eq!((b.ino, b.nlink), (ino, 1));
    assert_eq!(read(&e, "a"), b"other");
    assert_eq!(read(&e, "b"), b"linked");
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(fs::read(r.share.join("a")).unwrap(), b"other");
    assert_eq!(fs::read(r.share.join("b")).unwrap(), b"linked");
    drop(e);
    let e = r.engine();
    assert_eq!(
        stat(&e, "b").ino,
        ino,
        "the survivor keeps the number across a restart"
    );
}

/// A share without hard links gets a copy per name, said once.
#[test]
fn a_share_without_hard_links_gets_a_copy_per_name() {
    let r = Rig::new();
    r.faults.refuse_hard_links(true);
    let e = r.engine();
    for i in 0..3 {
        let ino = create(&e, &format!("f{i}"), b"same");
        link(&e, ino, &format!("g{i}"));
    }
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.files_written, 6, "{report:?}");
    let said = report
        .warnings
        .iter()
        .filter(|w| w.contains("does not keep hard links"))
        .count();
    assert_eq!(said, 1, "{report:?}");
    for i in 0..3 {
        let (f, g) = (r.share.join(format!("f{i}")), r.share.join(format!("g{i}")));
        assert_eq!(fs::read(&g).unwrap(), b"same");
        assert_ne!(
            fs::metadata(&f).unwrap().ino(),
            fs::metadata(&g).unwrap().ino()
        );
    }
}

/// A share without hard links holds each name as a file of its own: someone who changes one
/// there changes that name only, and a refresh splits it from the entry.
#[test]
fn a_name_changed_on_the_share_leaves_the_hard_link_at_a_refresh() {
    let r = Rig::new();
    r.faults.refuse_hard_links(true);
    let e = r.engine();
    let ino = create(&e, "a", b"ours");
    link(&e, ino, "b");
    assert!(e.flush(None).is_clean());
    fs::write(r.share.join("b"), "theirs, longer").unwrap();
    let report = e.refresh();
    assert_eq!(report.changed, 1, "{report:?}");
    let (a, b) = (stat(&e, "a"), stat(&e, "b"));
    assert_ne!(a.ino, b.ino);
    assert_eq!((a.nlink, b.nlink), (1, 1));
    assert_eq!(read(&e, "b"), b"theirs, longer");
    assert_eq!(read(&e, "a"), b"ours");
    write_at(&e, ino, 0, b"OURS");
    assert!(e.flush(None).is_clean());
    assert_eq!(fs::read(r.share.join("a")).unwrap(), b"OURS");
    assert_eq!(fs::read(r.share.join("b")).unwrap(), b"theirs, longer");
}

fn makedev(major: u64, minor: u64) -> u64 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

#[test]
fn special_files_are_written_to_a_share_that_holds_them() {
    let r = Rig::new();
    let e = r.engine();
    e.mknod(ROOT_INO, "p", EntryKind::Fifo, 0o640, 0).unwrap();
    e.mknod(ROOT_INO, "s", EntryKind::Socket, 0o755, 0).unwrap();
    let c = e
        .mknod(ROOT_INO, "c", EntryKind::CharDevice, 0o600, makedev(1, 3))
        .unwrap();
    assert_eq!((c.kind, c.rdev), (EntryKind::CharDevice, makedev(1, 3)));
    let mtime = 1_700_000_000_000_000_000;
    let set = SetAttr {
        mtime_ns: Some(mtime),
        ..Default::default()
    };
    e.setattr(stat(&e, "p").ino, set).unwrap();
    let report = e.flush(None);
    assert!(
        report.is_clean() && report.warnings.is_empty(),
        "{report:?}"
    );
    let md = |n: &str| fs::symlink_metadata(r.share.join(n)).unwrap();
    assert!(md("p").file_type().is_fifo());
    assert_eq!(md("p").permissions().mode() & 0o7777, 0o640);
    assert_eq!(md("p").mtime(), 1_700_000_000, "the time set here");
    assert!(md("s").file_type().is_socket());
    assert!(md("c").file_type().is_char_device());
    assert_eq!(md("c").rdev(), makedev(1, 3));
    assert!(e.status().kept_local.is_empty());

    // Listed from the share by a cache that never saw them made.
    drop(e);
    let other = tempfile::tempdir().unwrap();
    let mut opts = EngineOptions::new(other.path(), "test");
    opts.retry = RetryPolicy::none();
    let e = Engine::open(Arc::new(DirBacking::new(&r.share)), opts).unwrap();
    assert_eq!(stat(&e, "p").kind, EntryKind::Fifo);
    assert_eq!(stat(&e, "s").kind, EntryKind::Socket);
    assert_eq!(stat(&e, "c").rdev, makedev(1, 3));
}

#[test]
fn special_files_a_share_cannot_hold_are_kept_in_the_cache_and_listed() {
    let r = Rig::new();
    r.faults.refuse_specials(true);
    let e = r.engine();
    e.mknod(ROOT_INO, "p", EntryKind::Fifo, 0o644, 0).unwrap();
    create(&e, "f", b"data");
    let report = e.flush(None);
    assert!(report.is_clean(), "kept local is not pending: {report:?}");
    assert_eq!(report.files_written, 1, "{report:?}");
    let said: Vec<&String> = report
        .warnings
        .iter()
        .filter(|w| w.contains("kept in the cache only") && w.contains('p'))
        .collect();
    assert_eq!(said.len(), 1, "{report:?}");
    assert!(!r.share.join("p").exists());
    assert_eq!(fs::read(r.share.join("f")).unwrap(), b"data");
    let kept = e.status().kept_local;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].path, "p");
    assert!(kept[0].reason.contains("FIFO"), "{kept:?}");

    // Settled: the next flush neither writes nor warns again.
    let report = e.flush(None);
    assert_eq!(report.files_written, 0, "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");

    // Kept across a restart, and followed through a rename; gone when removed.
    drop(e);
    let e = r.engine();
    assert_eq!(stat(&e, "p").kind, EntryKind::Fifo);
    assert_eq!(e.status().kept_local.len(), 1);
    e.rename(ROOT_INO, "p", ROOT_INO, "q", false).unwrap();
    assert!(e.flush(None).is_clean());
    let kept = e.status().kept_local;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].path, "q");
    e.unlink(ROOT_INO, "q").unwrap();
    assert!(e.status().kept_local.is_empty());
    let report = e.flush(None);
    assert!(report.is_clean(), "{report:?}");
}

#[cfg(target_os = "linux")]
fn share_xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings and a buffer of the length given.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

#[cfg(target_os = "linux")]
#[test]
fn extended_attributes_are_kept_shared_by_links_and_written_back() {
    use fs_core::XattrMode;
    let r = Rig::new();
    let e = r.engine();
    let ino = create(&e, "a", b"data");
    e.setxattr(ino, b"user.k", b"v", XattrMode::Any).unwrap();
    e.setxattr(ino, b"user.gone", b"1", XattrMode::Create)
        .unwrap();
    assert!(e.setxattr(ino, b"user.k", b"w", XattrMode::Create).is_err());
    assert!(e
        .setxattr(ino, b"user.new", b"w", XattrMode::Replace)
        .is_err());
    assert!(
        e.setxattr(ino, b"system.posix_acl_access", b"", XattrMode::Any)
            .is_err(),
        "ACLs are not kept"
    );
    e.removexattr(ino, b"user.gone").unwrap();
    assert_eq!(e.listxattr(ino).unwrap(), vec![b"user.k".to_vec()]);
    assert_eq!(
        e.getxattr(ino, b"user.gone").unwrap_err().errno(),
        libc::ENODATA
    );
    // One entry under two names has one set of attributes.
    link(&e, ino, "b");
    e.setxattr(ino, b"user.both", b"2", XattrMode::Any).unwrap();
    let b = e.resolve(&RelPath::new("b").unwrap()).unwrap();
    assert_eq!(e.getxattr(b, b"user.both").unwrap(), b"2");

    // Written to each name on the share; a removal reaches it too.
    let report = e.flush(None);
    assert!(
        report.is_clean() && report.warnings.is_empty(),
        "{report:?}"
    );
    for p in ["a", "b"] {
        assert_eq!(
            share_xattr(&r.share.join(p), "user.k").as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(
            share_xattr(&r.share.join(p), "user.both").as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(share_xattr(&r.share.join(p), "user.gone"), None);
    }
    drop(e);
    let e = r.engine();
    assert_eq!(
        e.getxattr(ino, b"user.k").unwrap(),
        b"v",
        "kept across a restart"
    );
    e.removexattr(ino, b"user.k").unwrap();
    assert!(e.flush(None).is_clean());
    assert_eq!(share_xattr(&r.share.join("a"), "user.k"), None);
    assert_eq!(share_xattr(&r.share.join("b"), "user.k"), None);
}
