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
    let held = first
        .log
        .as_ref()
        .expect("the database's log")
        .metadata()
        .unwrap();
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

fn change(f: impl FnOnce(&mut Change)) -> Change {
    let mut c = Change::default();
    f(&mut c);
    c
}

fn names(j: &Journal) -> Vec<(Ino, String)> {
    let mut v: Vec<_> = j
        .load_nodes()
        .unwrap()
        .into_iter()
        .map(|n| (n.ino, n.name.to_string()))
        .collect();
    v.sort();
    v
}

/// A record encodes every column of a node, and decodes to the same rows.
#[test]
fn a_record_holds_every_column() {
    let op = NsOp::Rename {
        from: RelPath::new("a/b").unwrap(),
        to: RelPath::new("c").unwrap(),
        dest_base: None,
    };
    let c = change(|c| {
        c.delete_node(9);
        c.put_node(&node(2, 1, "a ü"));
        c.delete_op(4);
        c.push_op(5, &op);
    });
    let bytes = record::encode_for_test(&c);
    assert_eq!(record::decode_for_test(&bytes), Some(c));
    assert_eq!(record::decode_for_test(&bytes[..bytes.len() - 1]), None);
}

/// What a `kill -9` leaves: changes appended to the record log and never folded. The next
/// open folds them in, in order, with their logged changes and their numbers.
#[test]
fn recorded_changes_survive_a_crash_and_are_folded_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let op = NsOp::Mkdir {
        path: RelPath::new("d").unwrap(),
    };
    {
        let mut j = Journal::open(&path).unwrap();
        j.append(change(|c| c.put_node(&node(2, 1, "a")))).unwrap();
        let seq = j.next_op_seq();
        j.append(change(|c| {
            c.put_node(&node(3, 1, "d"));
            c.push_op(seq, &op);
        }))
        .unwrap();
        j.append(change(|c| c.delete_node(2))).unwrap();
        // Dropped without a fold: the database never saw them.
        assert_eq!(names(&j), Vec::<(Ino, String)>::new());
    }
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(3, "d".to_owned())]);
    let ops = j.load_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].1, op);
    assert!(
        j.next_op_seq() > ops[0].0,
        "a logged change's number given twice"
    );
    drop(j);
    // Folded once: a third open finds the same, not the records applied again.
    let j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(3, "d".to_owned())]);
    assert_eq!(j.load_ops().unwrap().len(), 1);
}

/// A record cut short (the process died in its write, or a power cut kept part of it) is
/// not folded, nor is anything after it.
#[test]
fn a_torn_record_is_not_folded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let end = {
        let mut j = Journal::open(&path).unwrap();
        j.append(change(|c| c.put_node(&node(2, 1, "a")))).unwrap();
        j.append(change(|c| c.put_node(&node(3, 1, "b")))).unwrap();
        j.records.end()
    };
    // The last bytes of the second record never reached the file.
    let records = dir.path().join("j.sqlite-records");
    let mut bytes = std::fs::read(&records).unwrap();
    bytes[end as usize - 3..end as usize].fill(0);
    std::fs::write(&records, bytes).unwrap();
    let mut j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(2, "a".to_owned())]);
    // The next record goes where the torn one was, and is found after the next crash.
    j.append(change(|c| c.put_node(&node(4, 1, "c")))).unwrap();
    drop(j);
    let j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(2, "a".to_owned()), (4, "c".to_owned())]);
}

/// Other transactions fold what was recorded before them first: the database sees the
/// changes in the order they were made (here a record's node is deleted afterwards).
#[test]
fn a_transaction_after_records_comes_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    {
        let mut j = Journal::open(&path).unwrap();
        j.append(change(|c| c.put_node(&node(2, 1, "a")))).unwrap();
        j.batch(|tx| delete_node(tx, 2)).unwrap();
        j.append(change(|c| c.put_node(&node(3, 1, "b")))).unwrap();
        j.set_meta("k", "v").unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(3, "b".to_owned())]);
}

/// Once idle, the records are folded and made durable, and the record log is written from
/// its start again; the records it held before are never folded again (here one would bring
/// back a node deleted since).
#[test]
fn a_wrapped_record_log_never_replays_its_old_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let j = Arc::new(Mutex::new(Journal::open(&path).unwrap()));
    checkpoint_when_idle(&j);
    j.lock()
        .append(change(|c| c.put_node(&node(2, 1, "a"))))
        .unwrap();
    j.lock()
        .append(change(|c| c.put_node(&node(3, 1, "b"))))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while j.lock().records.end() != 0 {
        assert!(Instant::now() < deadline, "never wrapped");
        std::thread::sleep(IDLE);
    }
    assert!(
        j.lock().sync_needed().unwrap().is_none(),
        "wrapped, not durable"
    );
    j.lock().batch(|tx| delete_node(tx, 3)).unwrap();
    // As long as the first record was: the old second record follows it in the file.
    j.lock()
        .append(change(|c| c.put_node(&node(4, 1, "c"))))
        .unwrap();
    // The background thread lets go of the journal between its ticks.
    let mut j = j;
    loop {
        match Arc::try_unwrap(j) {
            Ok(held) => break drop(held),
            Err(back) => j = back,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(names(&j), vec![(2, "a".to_owned()), (4, "c".to_owned())]);
}

/// An fsync after a recorded change syncs the record log (and not the database's log, which
/// has nothing new); once synced, nothing is left to sync.
#[test]
fn a_sync_after_a_record_syncs_the_record_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j.sqlite")).unwrap();
    j.sync().unwrap();
    assert!(j.sync_needed().unwrap().is_none());
    j.append(change(|c| c.put_node(&node(2, 1, "a")))).unwrap();
    let s = j.sync_needed().unwrap().expect("a record to sync");
    assert!(s.records.is_some() && s.log.is_none());
    s.run().unwrap();
    j.synced(&s);
    assert!(j.sync_needed().unwrap().is_none());
}
