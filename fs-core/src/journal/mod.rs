//! The crash-safe record of the cache: every node, the pending namespace log, temporaries
//! placed on the share, and the last reports. It is an SQLite database in WAL mode, and a
//! record log (`record.rs`) in front of it for namespace changes.
//!
//! A namespace change (create, delete, rename, mkdir, a file marked dirty) is appended to the
//! record log, one `pwrite`, before it is acknowledged, and folded into the database in
//! batches: from the background thread, before any other transaction, and when the journal is
//! opened (after a crash). Other changes are database transactions, which fold what is
//! pending first, so the database sees every change in the order it was made.
//!
//! Either way a change survives the sipfs process being killed once acknowledged (its bytes are
//! in the OS page cache), and the database stays consistent after a power cut (commits use
//! `synchronous=NORMAL`). A program's `fsync` on a file in the mount asks for a sync of the
//! journal too (the record log, and the database's log if it committed since), which gives the
//! same guarantee a local disk gives: what was fsync'ed survives a power cut.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::JournalError;
use crate::mirror::stamp::{Check, Stamp};
use crate::pending::{Base, Logged, NsOp};
use crate::ranges::Ranges;
use crate::relpath::RelPath;
use crate::tree::{Ino, Node};

pub use record::Change;
use record::{RecordLog, FOLDED_KEY};
pub use rows::*;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS node(
    ino INTEGER PRIMARY KEY,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    listed INTEGER NOT NULL,
    cached INTEGER NOT NULL,
    in_share INTEGER NOT NULL,
    base_size INTEGER,
    base_mtime INTEGER,
    content_dirty INTEGER NOT NULL,
    meta_dirty INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    link TEXT,
    atime INTEGER,
    owner INTEGER,
    rdev INTEGER,
    shown INTEGER,
    xattrs BLOB
);
CREATE TABLE IF NOT EXISTS op(seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS staged(
    temp TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    conflict TEXT,
    ino INTEGER NOT NULL,
    ready INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS partial(
    ino INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    ranges BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS base_hash(
    ino INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    hash INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stamp(
    ino INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime INTEGER NOT NULL,
    ctime INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    fino INTEGER NOT NULL,
    checked INTEGER NOT NULL,
    hash INTEGER NOT NULL
);
";

/// A temporary a flush put on the share: `ready` ones are complete and get renamed into place
/// by the next flush (roll forward); others are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRow {
    pub temp: RelPath,
    pub target: RelPath,
    pub conflict: Option<RelPath>,
    pub ino: Ino,
    pub ready: bool,
}

pub struct Journal {
    conn: Connection,
    /// The database file; its log is next to it, with `-wal` appended.
    path: PathBuf,
    /// The log, opened by us to sync it (see [`LogSync`]); opened at the first sync.
    log: Option<Arc<File>>,
    /// Namespace changes not yet folded into the database, and the file they are in.
    records: RecordLog,
    /// The number the next logged namespace change (`op` table) gets.
    next_op_seq: i64,
    /// When the last commit happened, while some commit is not yet checkpointed into the database.
    last_unchecked_commit: Option<Instant>,
    /// Database transactions so far (folds of the record log aside), and how many of them are
    /// known durable. A program's fsync has to sync the database's log too only while they
    /// differ; otherwise its file's own sync is all it costs (an SQLite database in the mount
    /// fsyncs at every transaction, and after its first write the journal has nothing new to
    /// say about it).
    committed: u64,
    durable: u64,
    /// Records appended so far, and how many of them are known durable (the record log synced,
    /// or the database holding them synced).
    appended: u64,
    appended_durable: u64,
}

/// A sync of the journal's log, taken under the journal's lock and run outside it: a program's
/// fsync then syncs its own file and the log at the same time, and a journaling file system
/// serves the two with one commit of its own journal where they overlap (on ext4, a rollback
/// journal's fsync cost about twice the native one when they ran one after the other).
///
/// Syncing the log file is what SQLite itself does for a commit under `synchronous=FULL`:
/// the frames of every commit are already written to it, only not yet forced to disk.
#[derive(Clone)]
pub struct LogSync {
    /// The database's log, when a transaction committed since its last sync.
    log: Option<Arc<File>>,
    /// The record log, when a record was appended since its last sync.
    records: Option<Arc<File>>,
    /// The commits and records this sync makes durable (all those before it was taken).
    upto: u64,
    upto_records: u64,
}

impl LogSync {
    pub fn run(&self) -> io::Result<()> {
        if let Some(r) = &self.records {
            r.sync_data()?;
        }
        if let Some(l) = &self.log {
            l.sync_data()?;
        }
        Ok(())
    }
}

/// How long the journal must have seen no commit before an idle checkpoint runs.
const IDLE: Duration = Duration::from_millis(100);

/// With idle checkpoints, the log may grow to this many pages (64 MiB) before a commit has to
/// checkpoint it inline anyway (a change that never pauses).
const MAX_LOG_PAGES: u32 = 16_384;

/// Records appended and not folded beyond this many are folded by the change that appends
/// the next (without the background thread, or in a burst that never pauses). A burst of
/// fewer (an unzip or `cp -r` of a project) is folded in the pause after it, off the path of
/// its changes; a fold of this many takes some 100 ms, the stall such a burst pays once per
/// this many changes (a record is some 200 bytes: 3 MiB of memory, under `WRAP_AFTER`).
const MAX_UNFOLDED: usize = 16_384;

/// Sets how long the journal must be idle before the background thread folds and checkpoints
/// it, in milliseconds, instead of [`IDLE`]: for tests that crash sipfs with changes left in
/// the record log, whatever the machine's pace.
pub const IDLE_ENV: &str = "SIPFS_JOURNAL_IDLE_MS";

/// Folds the record log into the database and checkpoints `journal` from a background thread
/// whenever it has been idle for a moment, until the journal is dropped. A checkpoint syncs
/// the log and the database to disk, which takes milliseconds; inline, it would stall
/// whichever change filled the log. A whole checkpoint makes every record durable in the
/// database, so the record log is then written from its start again.
pub fn checkpoint_when_idle(journal: &Arc<Mutex<Journal>>) {
    if let Err(e) = journal
        .lock()
        .conn
        .pragma_update(None, "wal_autocheckpoint", MAX_LOG_PAGES)
    {
        tracing::warn!(error = %e, "journal checkpoints stay inline");
        return;
    }
    let idle = std::env::var(IDLE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(IDLE, Duration::from_millis);
    let weak = Arc::downgrade(journal);
    let spawned = std::thread::Builder::new()
        .name("sipfs-journal".into())
        .spawn(move || loop {
            std::thread::sleep(IDLE.min(idle));
            let Some(journal) = weak.upgrade() else {
                return;
            };
            let mut j = journal.lock();
            if j.last_unchecked_commit.is_some_and(|t| t.elapsed() >= idle) {
                let _span = tracing::debug_span!("checkpoint").entered();
                if let Err(e) = j.fold() {
                    tracing::warn!(error = %e, "journal: folding recorded changes failed; retrying");
                    continue;
                }
                match j.checkpoint() {
                    // A whole checkpoint syncs the log and the database: all of it is durable,
                    // the records folded into it too.
                    Ok(true) => {
                        j.last_unchecked_commit = None;
                        j.durable = j.committed;
                        j.appended_durable = j.appended;
                        j.records.wrap();
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "journal checkpoint failed; retrying"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no background journal checkpoints");
    }
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Windows cannot replace a file while we hold it open (SQLite's deletes of the log would fail,
/// and it never deletes it while the connection lives).
#[cfg(not(unix))]
fn same_file(_f: &File, path: &Path) -> bool {
    path.exists()
}

fn rel(s: String) -> RelPath {
    // Paths in the journal were valid when written.
    RelPath::new(&s).unwrap_or_default()
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let conn = Connection::open(path)?;
        // One process owns a cache at a time (the engine's lock file says which), so the
        // journal is locked once for the connection's life instead of at every transaction:
        // a commit is then its WAL writes and nothing else (no fcntl locks, no shared-memory
        // index). Set before WAL mode, so that the WAL index lives in this process's memory.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // macOS: SQLite's own syncs (a checkpoint's, of the log into the database) flush the
        // drive's cache too, as sipfs's own syncs of the log do (std's are F_FULLFSYNC there);
        // a plain fsync on macOS does not, and a power cut could then find the log reset
        // before the database held it. Elsewhere the two do nothing.
        conn.pragma_update(None, "fullfsync", true)?;
        conn.pragma_update(None, "checkpoint_fullfsync", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        // Journals written before access times, owners, device numbers or hard links were
        // kept lack their columns.
        for (column, ty) in [
            ("atime", "INTEGER"),
            ("owner", "INTEGER"),
            ("rdev", "INTEGER"),
            ("shown", "INTEGER"),
            ("xattrs", "BLOB"),
        ] {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('node') WHERE name = ?1")?
                .exists([column])?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE node ADD COLUMN {column} {ty}"))?;
            }
        }
        let folded = get_meta(&conn, FOLDED_KEY)?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let records = RecordLog::open(&sibling(path, "-records"), folded)?;
        let mut j = Journal {
            conn,
            path: path.to_owned(),
            log: None,
            records,
            next_op_seq: 1,
            last_unchecked_commit: None,
            committed: 1,
            durable: 0,
            // What was recovered from the record log may not be on disk yet.
            appended: 1,
            appended_durable: 0,
        };
        // Changes recorded before a crash, now in the database like the others.
        j.fold()?;
        // AUTOINCREMENT keeps the highest number ever given in sqlite_sequence (once it has
        // given one): numbers of changes flushed and removed are never given again.
        let given: i64 = j.conn.query_row(
            "SELECT max(coalesce((SELECT max(seq) FROM op), 0),
                        coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'op'), 0))",
            [],
            |r| r.get(0),
        )?;
        j.next_op_seq = given + 1;
        Ok(j)
    }

    /// Appends a namespace change to the record log: once this returns, it survives sipfs
    /// being killed, and the next sync makes it survive a power cut. It reaches the database
    /// at the next fold.
    pub fn append(&mut self, change: Change) -> Result<(), JournalError> {
        if change.is_empty() {
            return Ok(());
        }
        if self.records.unfolded().0.len() >= MAX_UNFOLDED {
            self.fold()?;
        }
        if self.records.wants_wrap() && self.records.unfolded().0.is_empty() {
            self.make_durable_and_wrap()?;
        }
        if let Some(seq) = change.last_op_seq() {
            self.next_op_seq = self.next_op_seq.max(seq + 1);
        }
        self.records.append(change)?;
        self.appended += 1;
        self.last_unchecked_commit = Some(Instant::now());
        Ok(())
    }

    /// The number for a new logged namespace change ([`Change::push_op`]).
    pub fn next_op_seq(&mut self) -> i64 {
        let s = self.next_op_seq;
        self.next_op_seq += 1;
        s
    }

    /// Writes the records not yet folded into the database, in one transaction.
    fn fold(&mut self) -> Result<(), JournalError> {
        let pending = self.records.unfolded().0.len();
        if pending == 0 {
            return Ok(());
        }
        let _span = tracing::debug_span!("fold", records = pending).entered();
        let tx = self.conn.transaction()?;
        apply_unfolded(&self.records, &tx)?;
        tx.commit()?;
        self.records.folded();
        self.last_unchecked_commit = Some(Instant::now());
        Ok(())
    }

    /// Once the record log has grown long without an idle moment to checkpoint in: syncs the
    /// database's log, which then holds every record durably, and writes records from the
    /// start of the record log again. Only with every record folded.
    fn make_durable_and_wrap(&mut self) -> Result<(), JournalError> {
        match self.log_file() {
            Some(log) => log.sync_data().map_err(|e| self.log_error(e))?,
            None => return Ok(()),
        }
        self.durable = self.committed;
        self.appended_durable = self.appended;
        self.records.wrap();
        Ok(())
    }

    /// Writes the log into the database and syncs both (no reader can hold it back: the
    /// journal is this connection's alone).
    /// True when every frame of the log made it into the database.
    fn checkpoint(&self) -> Result<bool, JournalError> {
        let (busy, log, done): (i64, i64, i64) =
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
        Ok(busy == 0 && log == done)
    }

    /// Runs `f` in one transaction: all of its writes land, or none. The records not yet
    /// folded are folded in the same transaction first: they came before.
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let tx = self.conn.transaction()?;
        let folding = apply_unfolded(&self.records, &tx)?;
        let out = f(&tx)?;
        tx.commit()?;
        if folding {
            self.records.folded();
        }
        self.last_unchecked_commit = Some(Instant::now());
        self.committed += 1;
        Ok(out)
    }

    /// Transactions committed since the journal was opened (folds of the record log aside).
    pub fn commits(&self) -> u64 {
        self.committed
    }

    /// Makes everything committed so far durable against a power cut.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if let Some(s) = self.sync_needed()? {
            s.run().map_err(|e| self.log_error(e))?;
            self.synced(&s);
        }
        Ok(())
    }

    /// What it takes to make everything committed so far durable: `None` when it already
    /// is. Run the sync without holding the journal, then report it with [`Journal::synced`].
    pub fn sync_needed(&mut self) -> Result<Option<LogSync>, JournalError> {
        let upto = self.committed;
        let upto_records = self.appended;
        let records = (upto_records != self.appended_durable).then(|| self.records.file());
        let log = if upto == self.durable {
            None
        } else {
            match self.log_file() {
                Some(log) => Some(log),
                None => {
                    // No log to sync by hand (never expected in WAL mode): a commit under
                    // synchronous=FULL syncs it.
                    self.conn.pragma_update(None, "synchronous", "FULL")?;
                    let r = put_meta(&self.conn, "synced", &chrono::Utc::now().to_rfc3339());
                    self.conn.pragma_update(None, "synchronous", "NORMAL")?;
                    r?;
                    self.durable = upto;
                    None
                }
            }
        };
        if log.is_none() && records.is_none() {
            return Ok(None);
        }
        Ok(Some(LogSync {
            log,
            records,
            upto,
            upto_records,
        }))
    }

    /// Records a sync that ran: the commits and records it covered are durable.
    pub fn synced(&mut self, s: &LogSync) {
        if s.log.is_some() {
            self.durable = self.durable.max(s.upto);
        }
        if s.records.is_some() {
            self.appended_durable = self.appended_durable.max(s.upto_records);
        }
    }

    pub fn log_error(&self, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.log_path(),
            source,
        }
    }

    fn log_path(&self) -> PathBuf {
        sibling(&self.path, "-wal")
    }

    /// The log, opened once. SQLite keeps the same file for the connection's life (it only
    /// truncates or rewrites it), but a handle to a file replaced under the same name would
    /// sync the wrong one, so on Unix the handle is checked against the name each time.
    fn log_file(&mut self) -> Option<Arc<File>> {
        let path = self.log_path();
        if let Some(f) = &self.log {
            if same_file(f, &path) {
                return Some(f.clone());
            }
        }
        // Write access: Windows flushes a file's buffers only through a handle that may write.
        let f = OpenOptions::new().read(true).write(true).open(&path).ok()?;
        let f = Arc::new(f);
        self.log = Some(f.clone());
        Some(f)
    }

    pub fn load_nodes(&self) -> Result<Vec<Node>, JournalError> {
        let mut st = self.conn.prepare(
            "SELECT ino, parent, name, kind, listed, cached, in_share, base_size, base_mtime,
                    content_dirty, meta_dirty, size, mtime, mode, link, atime, owner, rdev,
                    shown, xattrs FROM node",
        )?;
        let rows = st.query_map([], |r| {
            let kind = kind_of(r.get(3)?);
            let listed: bool = r.get(4)?;
            let base_size: Option<i64> = r.get(7)?;
            let base_mtime: Option<i64> = r.get(8)?;
            let mut node = Node {
                ino: r.get::<_, i64>(0)? as Ino,
                parent: r.get::<_, i64>(1)? as Ino,
                name: r.get_ref(2)?.as_str()?.into(),
                kind,
                children: listed.then(Default::default),
                cached: r.get(5)?,
                in_share: r.get(6)?,
                base: base_size.zip(base_mtime).map(|(s, m)| Base {
                    size: s as u64,
                    mtime_ns: m,
                }),
                content_dirty: r.get(9)?,
                meta_dirty: r.get(10)?,
                size: r.get::<_, i64>(11)? as u64,
                mtime_ns: r.get(12)?,
                mode: r.get::<_, i64>(13)? as u32,
                ctime_ns: r.get(12)?,
                rare: None,
                gen: 0,
            };
            node.set_link(r.get::<_, Option<String>>(14)?.map(Box::from));
            node.set_atime_ns(r.get(15)?);
            node.set_owner(r.get::<_, Option<i64>>(16)?.map(owner_of));
            node.set_rdev(r.get::<_, Option<i64>>(17)?.unwrap_or(0) as u64);
            node.set_shown(r.get::<_, Option<i64>>(18)?.map(|i| i as Ino));
            node.set_xattrs(r.get::<_, Option<Vec<u8>>>(19)?.and_then(|b| xattrs_of(&b)));
            Ok(node)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn load_ops(&self) -> Result<Vec<Logged>, JournalError> {
        let mut st = self.conn.prepare("SELECT seq, body FROM op ORDER BY seq")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            match serde_json::from_str::<NsOp>(&body) {
                Ok(op) => out.push((seq, op)),
                Err(e) => tracing::error!(seq, error = %e, "unreadable pending change in journal"),
            }
        }
        Ok(out)
    }

    pub fn load_staged(&self) -> Result<Vec<StagedRow>, JournalError> {
        let mut st = self
            .conn
            .prepare("SELECT temp, target, conflict, ino, ready FROM staged")?;
        let rows = st.query_map([], |r| {
            Ok(StagedRow {
                temp: rel(r.get(0)?),
                target: rel(r.get(1)?),
                conflict: r.get::<_, Option<String>>(2)?.map(rel),
                ino: r.get::<_, i64>(3)? as Ino,
                ready: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Files fetched in ranges, not whole yet (`engine/partial.rs`).
    pub fn load_partials(&self) -> Result<Vec<PartialRow>, JournalError> {
        let mut st = self
            .conn
            .prepare("SELECT ino, file, size, mtime, mode, ranges FROM partial")?;
        let rows = st.query_map([], |r| {
            Ok(PartialRow {
                ino: r.get::<_, i64>(0)? as Ino,
                file: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                mtime_ns: r.get(3)?,
                mode: r.get::<_, i64>(4)? as u32,
                ranges: Ranges::decode(&r.get::<_, Vec<u8>>(5)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Mirror mode: what each entry of the mirror folder looked like when last accounted for.
    pub fn load_stamps(&self) -> Result<Vec<(Ino, Stamp)>, JournalError> {
        let mut st = self
            .conn
            .prepare("SELECT ino, kind, size, mtime, ctime, dev, fino, checked, hash FROM stamp")?;
        let rows = st.query_map([], |r| {
            let check = match r.get::<_, i64>(7)? {
                0 => Check::Meta,
                1 => Check::Hash(r.get::<_, i64>(8)? as u64),
                _ => Check::Always,
            };
            Ok((
                r.get::<_, i64>(0)? as Ino,
                Stamp {
                    kind: kind_of(r.get(1)?),
                    size: r.get::<_, i64>(2)? as u64,
                    mtime_ns: r.get(3)?,
                    ctime_ns: r.get(4)?,
                    file_id: (r.get::<_, i64>(5)? as u64, r.get::<_, i64>(6)? as u64),
                    check,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, JournalError> {
        get_meta(&self.conn, key)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), JournalError> {
        self.fold()?;
        self.committed += 1;
        put_meta(&self.conn, key, value)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The content hash of entry `ino`'s base version, if it was recorded for that version.
    pub fn base_hash(&self, ino: Ino, base: Base) -> Result<Option<u64>, JournalError> {
        Ok(self
            .conn
            .query_row(
                "SELECT hash FROM base_hash WHERE ino = ?1 AND size = ?2 AND mtime = ?3",
                params![ino as i64, base.size as i64, base.mtime_ns],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|h| h as u64))
    }

    /// The content hashes recorded for versions of any entry with `base`'s size and time: for
    /// a version replaced by a removal or a rename here, whose entry is gone.
    pub fn hashes_of_versions(&self, base: Base) -> Result<Vec<u64>, JournalError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT hash FROM base_hash WHERE size = ?1 AND mtime = ?2")?;
        let rows = q.query_map(params![base.size as i64, base.mtime_ns], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(rows
            .collect::<Result<Vec<i64>, _>>()?
            .into_iter()
            .map(|h| h as u64)
            .collect())
    }
}

/// Writes the records not yet folded, and the number of the last, in the open transaction
/// `tx`; whether there were any (then `RecordLog::folded` once it commits).
fn apply_unfolded(records: &RecordLog, tx: &Transaction<'_>) -> Result<bool, JournalError> {
    let (changes, last) = records.unfolded();
    let Some(last) = last else {
        return Ok(false);
    };
    for (_, c) in changes {
        c.apply(tx)?;
    }
    put_meta(tx, FOLDED_KEY, &last.to_string())?;
    Ok(true)
}

fn get_meta(c: &Connection, key: &str) -> Result<Option<String>, JournalError> {
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

/// The file named as `db` with `suffix` appended, next to it.
fn sibling(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.to_path_buf().into_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

mod codec;
mod record;
mod rows;
mod sync_worker;
use codec::{kind_of, owner_of, xattrs_of};
pub use sync_worker::LogSyncer;

#[cfg(test)]
mod tests;
