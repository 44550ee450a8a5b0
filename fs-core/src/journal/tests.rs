//! The journal's own tests: its tables, their migrations and crash safety.

use super::*;
use crate::backing::EntryKind;
use crate::tree::Xattrs;

fn node(ino: Ino, parent: Ino, name: &str) -> Node {
    let mut n = Node {
        ino,
        parent,
        name: name.into(),
        kind: EntryKind::File,
        children: None,
        cached: true,
        in_share: false,
        base: Some(Base {
            size: 3,
            mtime_ns: -5,
        }),
        content_dirty: true,
        meta_dirty: false,
        size: 3,
        mtime_ns: 1_700_000_000_123_456_789,
        mode: 0o644,
        ctime_ns: 1_700_000_000_123_456_789,
        rare: None,
        gen: 0,
    };
    n.set_atime_ns(Some(1_600_000_000_000_000_001));
    n.set_owner(Some((u32::MAX, 1000)));
    n.set_shown(Some(7));
    let mut x = Xattrs::new();
    x.insert(
        b"user.origin".as_slice().into(),
        Some(b"lab \0 2".as_slice().into()),
    );
    x.insert(b"user.empty".as_slice().into(), Some(Box::default()));
    x.insert(b"user.gone".as_slice().into(), None);
    n.set_xattrs(Some(x));
    n
}

#[test]
fn a_journal_from_before_access_times_gains_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.sqlite");
    {
        let old = SCHEMA.replace(
            ",\n    atime INTEGER,\n    owner INTEGER,\n    rdev INTEGER,\n    shown INTEGER,\n    xattrs BLOB",
            "",
        );
        assert_ne!(old, SCHEMA);
        let c = Connection::open(&path).unwrap();
        c.execute_batch(&old).unwrap();
        c.execute(
            "INSERT INTO node VALUES(1, 1, '', 1, 1, 0, 1, NULL, NULL, 0, 0, 0, 5, 493, NULL)",
            [],
        )
        .unwrap();
    }
    let mut j = Journal::open(&path).unwrap();
    let nodes = j.load_nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].atime_ns(), None);
    let n = node(2, 1, "f");
    j.batch(|tx| put_node(tx, &n)).unwrap();
    let back = j.load_nodes().unwrap();
    let got = back.iter().find(|m| m.ino == 2).unwrap();
    assert_eq!(got.atime_ns(), n.atime_ns());
    assert_eq!(got.owner(), Some((u32::MAX, 1000)));
    assert_eq!(got.shown(), Some(7));
    assert_eq!(got.xattrs(), n.xattrs());
    drop(j);
    // And opening it again changes nothing.
    Journal::open(&path).unwrap();
}

#[test]
fn nodes_ops_and_staged_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let crashed = dir.path().join("crashed.sqlite");
    {
        let mut j = Journal::open(&path).unwrap();
        j.batch(|tx| {
            put_node(tx, &node(2, 1, "a"))?;
            put_node(tx, &node(3, 1, "b"))?;
            delete_node(tx, 3)?;
            push_op(
                tx,
                &NsOp::Mkdir {
                    path: RelPath::new("d").unwrap(),
                },
            )?;
            let s = push_op(
                tx,
                &NsOp::Remove {
                    path: RelPath::new("x").unwrap(),
                    kind: EntryKind::File,
                    base: None,
                    linked: None,
                },
            )?;
            delete_op(tx, s)?;
            put_staged(
                tx,
                &StagedRow {
                    temp: RelPath::new(".a.sipfs-tmp-1").unwrap(),
                    target: RelPath::new("a").unwrap(),
                    conflict: None,
                    ino: 2,
                    ready: true,
                },
            )?;
            Ok(())
        })
        .unwrap();
        j.sync().unwrap();
        // What a kill leaves behind: the files as they are while the connection is open
        // (closing it would checkpoint the WAL into the database).
        for suffix in ["", "-wal"] {
            let from = format!("{}{suffix}", path.display());
            let to = format!("{}{suffix}", crashed.display());
            std::fs::copy(from, to).unwrap();
        }
    }
    let j = Journal::open(&crashed).unwrap();
    let nodes = j.load_nodes().unwrap();
    assert_eq!(nodes, vec![node(2, 1, "a")]);
    let ops = j.load_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert!(matches!(ops[0].1, NsOp::Mkdir { .. }));
    let staged = j.load_staged().unwrap();
    assert_eq!(staged.len(), 1);
    assert!(staged[0].ready);
}

#[test]
fn a_failed_batch_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    let r: Result<(), _> = j.batch(|tx| {
        put_node(tx, &node(2, 1, "a"))?;
        Err(JournalError::InUse(dir.path().into()))
    });
    assert!(r.is_err());
    assert!(j.load_nodes().unwrap().is_empty());
}

/// The database file alone, as it is on disk now (the log left out).
fn database_alone_holds(path: &Path, dir: &Path, ino: Ino) -> bool {
    let copy = dir.join(format!("alone-{}.sqlite", now_nanos()));
    std::fs::copy(path, &copy).unwrap();
    let c = Connection::open(&copy).unwrap();
    c.query_row(
        "SELECT 1 FROM node WHERE ino = ?1",
        [ino as i64],
        |_| Ok(()),
    )
    .optional()
    .unwrap_or(None)
    .is_some()
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Changes reach the database file itself once the journal has been idle a moment, from the
/// background thread, and not before (they are in the log until then).
#[test]
fn an_idle_journal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let j = Arc::new(Mutex::new(Journal::open(&path).unwrap()));
    j.lock().batch(|tx| put_node(tx, &node(2, 1, "a"))).unwrap();
    // Without the background thread, nothing checkpoints a small log.
    std::thread::sleep(IDLE * 3);
    assert!(!database_alone_holds(&path, dir.path(), 2));
    checkpoint_when_idle(&j);
    j.lock().batch(|tx| put_node(tx, &node(3, 1, "b"))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !database_alone_holds(&path, dir.path(), 3) {
        assert!(Instant::now() < deadline, "never checkpointed");
        std::thread::sleep(IDLE);
    }
    assert!(database_alone_holds(&path, dir.path(), 2));
    assert!(
        j.lock().sync_needed().unwrap().is_none(),
        "a whole checkpoint is durable"
    );
}

/// A program's fsync syncs the journal only when something was committed since.
#[test]
fn a_sync_with_nothing_new_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    j.sync().unwrap();
    assert!(j.sync_needed().unwrap().is_none());
    j.batch(|tx| put_node(tx, &node(2, 1, "a"))).unwrap();
    assert!(j.sync_needed().unwrap().is_some());
    j.sync().unwrap();
    assert!(j.sync_needed().unwrap().is_none());
    j.set_meta("k", "v").unwrap();
    assert!(j.sync_needed().unwrap().is_some());
}

/// The sync a program's fsync runs outside the lock covers what was committed before it
/// was taken, not what came while it ran; and it syncs the journal's own log.
#[cfg(unix)]
#[test]
fn a_sync_covers_only_the_commits_before_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let mut j = Journal::open(&path).unwrap();
    j.batch(|tx| put_node(tx, &node(2, 1, "a"))).unwrap();
    let first = j.sync_needed().unwrap().expect("a commit to sync");
    let log = std::fs::metadata(dir.path().join("j.sqlite-wal")).unwrap();
    let held = first.log.metadata().unwrap();
    assert_eq!((held.dev(), held.ino()), (log.dev(), log.ino()));
    // Another commit while the first sync runs.
    j.batch(|tx| put_node(tx, &node(3, 1, "b"))).unwrap();
    first.run().unwrap();
    j.synced(&first);
    let second = j
        .sync_needed()
        .unwrap()
        .expect("the later commit is not durable yet");
    second.run().unwrap();
    j.synced(&second);
    // A late report of the first sync does not undo the second.
    j.synced(&first);
    assert!(j.sync_needed().unwrap().is_none());
}
