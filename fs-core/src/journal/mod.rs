//! The crash-safe record of the cache: every node, the pending namespace log, temporaries
//! placed on the share, and the last reports. It is an SQLite database in WAL mode.
//!
//! Commits use `synchronous=NORMAL`: a committed change survives the sipfs process being
//! killed (the WAL is in the OS page cache), and the database stays consistent after a power
//! cut. A program's `fsync` on a file in the mount asks for a full sync of the journal too,
//! which gives the same guarantee a local disk gives: what was fsync'ed survives a power cut.

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
    /// When the last commit happened, while some commit is not yet checkpointed into the database.
    last_unchecked_commit: Option<Instant>,
    /// Commits so far, and how many of them are known durable. A program's fsync has to sync
    /// the journal too only while they differ; otherwise its file's own sync is all it costs
    /// (an SQLite database in the mount fsyncs at every transaction, and after its first write
    /// the journal has nothing new to say about it).
    committed: u64,
    durable: u64,
}

/// A sync of the journal's log, taken under the journal's lock and run outside it: a program's
/// fsync then syncs its own file and the log at the same time, and a journaling file system
/// serves the two with one commit of its own journal where they overlap (on ext4, a rollback
/// journal's fsync cost about twice the native one when they ran one after the other).
///
/// Syncing the log file is what SQLite itself does for a commit under `synchronous=FULL`:
/// the frames of every commit are already written to it, only not yet forced to disk.
pub struct LogSync {
    log: Arc<File>,
    /// The commits this sync makes durable (all those before it was taken).
    upto: u64,
}

impl LogSync {
    pub fn run(&self) -> io::Result<()> {
        self.log.sync_data()
    }
}

/// How long the journal must have seen no commit before an idle checkpoint runs.
const IDLE: Duration = Duration::from_millis(100);

/// With idle checkpoints, the log may grow to this many pages (64 MiB) before a commit has to
/// checkpoint it inline anyway (a change that never pauses).
const MAX_LOG_PAGES: u32 = 16_384;

/// Checkpoints `journal` from a background thread whenever it has been idle for a moment,
/// until the journal is dropped. A checkpoint syncs the log and the database to disk, which
/// takes milliseconds; inline, it would stall whichever change filled the log.
pub fn checkpoint_when_idle(journal: &Arc<Mutex<Journal>>) {
    if let Err(e) = journal
        .lock()
        .conn
        .pragma_update(None, "wal_autocheckpoint", MAX_LOG_PAGES)
    {
        tracing::warn!(error = %e, "journal checkpoints stay inline");
        return;
    }
    let weak = Arc::downgrade(journal);
    let spawned = std::thread::Builder::new()
        .name("sipfs-journal".into())
        .spawn(move || loop {
            std::thread::sleep(IDLE);
            let Some(journal) = weak.upgrade() else {
                return;
            };
            let mut j = journal.lock();
            if j.last_unchecked_commit.is_some_and(|t| t.elapsed() >= IDLE) {
                let _span = tracing::debug_span!("checkpoint").entered();
                match j.checkpoint() {
                    // A whole checkpoint syncs the log and the database: all of it is durable.
                    Ok(true) => {
                        j.last_unchecked_commit = None;
                        j.durable = j.committed;
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
        Ok(Journal {
            conn,
            path: path.to_owned(),
            log: None,
            last_unchecked_commit: None,
            committed: 1,
            durable: 0,
        })
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

    /// Runs `f` in one transaction: all of its writes land, or none.
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let tx = self.conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        self.last_unchecked_commit = Some(Instant::now());
        self.committed += 1;
        Ok(out)
    }

    /// Transactions committed since the journal was opened.
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
        if self.committed == self.durable {
            return Ok(None);
        }
        let upto = self.committed;
        match self.log_file() {
            Some(log) => Ok(Some(LogSync { log, upto })),
            None => {
                // No log to sync by hand (never expected in WAL mode): a commit under
                // synchronous=FULL syncs it.
                self.conn.pragma_update(None, "synchronous", "FULL")?;
                let r = put_meta(&self.conn, "synced", &chrono::Utc::now().to_rfc3339());
                self.conn.pragma_update(None, "synchronous", "NORMAL")?;
                r?;
                self.durable = upto;
                Ok(None)
            }
        }
    }

    /// Records a sync that ran: the commits it covered are durable.
    pub fn synced(&mut self, s: &LogSync) {
        self.durable = self.durable.max(s.upto);
    }

    pub fn log_error(&self, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.log_path(),
            source,
        }
    }

    fn log_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push("-wal");
        PathBuf::from(p)
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
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), JournalError> {
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
}

/// Records the content hash of entry `ino`'s version `base` on the share (what a flush wrote,
/// or a fetch read): on a share that keeps whole seconds, two versions of one size written
/// within a second are told apart by it (`flush/capture.rs`).
pub fn put_base_hash(c: &Connection, ino: Ino, base: Base, hash: u64) -> Result<(), JournalError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO base_hash(ino, size, mtime, hash) VALUES(?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        ino as i64,
        base.size as i64,
        base.mtime_ns,
        hash as i64
    ])?;
    Ok(())
}

pub fn put_meta(c: &Connection, key: &str, value: &str) -> Result<(), JournalError> {
    c.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

pub fn put_node(c: &Connection, n: &Node) -> Result<(), JournalError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO node(ino, parent, name, kind, listed, cached, in_share,
            base_size, base_mtime, content_dirty, meta_dirty, size, mtime, mode, link, atime,
            owner, rdev, shown, xattrs)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
            ?18, ?19, ?20)",
    )?
    .execute(params![
        n.ino as i64,
        n.parent as i64,
        n.name.as_str(),
        kind_code(n.kind),
        n.children.is_some(),
        n.cached,
        n.in_share,
        n.base.map(|b| b.size as i64),
        n.base.map(|b| b.mtime_ns),
        n.content_dirty,
        n.meta_dirty,
        n.size as i64,
        n.mtime_ns,
        n.mode as i64,
        n.link(),
        n.atime_ns(),
        n.owner().map(owner_code),
        (n.rdev() != 0).then_some(n.rdev() as i64),
        n.shown().map(|i| i as i64),
        n.xattrs().map(xattrs_code),
    ])?;
    Ok(())
}

pub fn delete_node(c: &Connection, ino: Ino) -> Result<(), JournalError> {
    c.prepare_cached("DELETE FROM node WHERE ino = ?1")?
        .execute([ino as i64])?;
    Ok(())
}

pub fn push_op(c: &Connection, op: &NsOp) -> Result<i64, JournalError> {
    let body = serde_json::to_string(op).expect("ops serialize");
    c.prepare_cached("INSERT INTO op(body) VALUES(?1)")?
        .execute([body])?;
    Ok(c.last_insert_rowid())
}

pub fn delete_op(c: &Connection, seq: i64) -> Result<(), JournalError> {
    c.prepare_cached("DELETE FROM op WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

pub fn put_staged(c: &Connection, s: &StagedRow) -> Result<(), JournalError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO staged(temp, target, conflict, ino, ready) VALUES(?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        s.temp.as_str(),
        s.target.as_str(),
        s.conflict.as_ref().map(|p| p.as_str().to_owned()),
        s.ino as i64,
        s.ready
    ])?;
    Ok(())
}

pub fn delete_staged(c: &Connection, temp: &RelPath) -> Result<(), JournalError> {
    c.prepare_cached("DELETE FROM staged WHERE temp = ?1")?
        .execute([temp.as_str()])?;
    Ok(())
}

/// A file fetched in ranges: the share's version being fetched, the part file holding it, and
/// the ranges of it that are durable there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialRow {
    pub ino: Ino,
    /// The part file's name in `CACHE/parts/`.
    pub file: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub mode: u32,
    pub ranges: Ranges,
}

pub fn put_partial(c: &Connection, p: &PartialRow) -> Result<(), JournalError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO partial(ino, file, size, mtime, mode, ranges)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        p.ino as i64,
        p.file,
        p.size as i64,
        p.mtime_ns,
        p.mode as i64,
        p.ranges.encode()
    ])?;
    Ok(())
}

/// Forgets the ranged copy of `ino` held in `file` (and no other: a newer one of the same
/// file may have taken its place).
pub fn delete_partial(c: &Connection, ino: Ino, file: &str) -> Result<(), JournalError> {
    c.prepare_cached("DELETE FROM partial WHERE ino = ?1 AND file = ?2")?
        .execute(params![ino as i64, file])?;
    Ok(())
}

pub fn put_stamp(c: &Connection, ino: Ino, s: &Stamp) -> Result<(), JournalError> {
    let (checked, hash) = match s.check {
        Check::Meta => (0, 0),
        Check::Hash(h) => (1, h),
        Check::Always => (2, 0),
    };
    c.prepare_cached(
        "INSERT OR REPLACE INTO stamp(ino, kind, size, mtime, ctime, dev, fino, checked, hash)
         VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        ino as i64,
        kind_code(s.kind),
        s.size as i64,
        s.mtime_ns,
        s.ctime_ns,
        s.file_id.0 as i64,
        s.file_id.1 as i64,
        checked,
        hash as i64
    ])?;
    Ok(())
}

pub fn delete_stamp(c: &Connection, ino: Ino) -> Result<(), JournalError> {
    c.prepare_cached("DELETE FROM stamp WHERE ino = ?1")?
        .execute([ino as i64])?;
    Ok(())
}

mod codec;
use codec::{kind_code, kind_of, owner_code, owner_of, xattrs_code, xattrs_of};

#[cfg(test)]
mod tests;
