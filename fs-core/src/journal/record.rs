//! The journal's record log: namespace changes appended to a plain file, one `pwrite` each,
//! before the change is acknowledged, and folded into the SQLite database later in batches
//! (`Journal::fold`).
//!
//! Why: an SQLite transaction per create or delete cost more than the kernel's own round trips
//! for it (its pages written whole to the WAL, twice or more per change). A record here is the
//! change's rows, a few hundred bytes, written where the page cache holds it: once `pwrite`
//! returned, a `kill -9` of sipfs loses nothing (the kernel has the bytes), and an `fdatasync`
//! of this file makes it survive a power cut (what a program's fsync asks for).
//!
//! A record is a header (magic, payload length, the record's number, a hash of number and
//! payload) and a payload (the rows: [`Change`]). Numbers rise by one from record to record and
//! never repeat; the database keeps the number of the last record folded into it (`meta`
//! key [`FOLDED_KEY`], written in the same transaction as the fold). Reading the log back finds
//! the records in order from the start, up to the first that is torn, fails its hash, or does
//! not carry the next number; those numbered above the folded one are folded again.
//!
//! The log is written from the start again ("wrapped") only once everything in it is folded and
//! the database is synced to disk, so no crash can find a record neither here nor durable
//! there. Old bytes beyond the new records are never taken for records: their numbers are lower.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::error::JournalError;
use crate::tree::{Ino, Node};

use super::codec::{kind_code, owner_code, xattrs_code};

/// The `meta` key holding the number of the last record folded into the database.
pub(super) const FOLDED_KEY: &str = "records_folded";

const MAGIC: u32 = 0x5349_5052; // "SIPR"
const HEADER: usize = 24;
/// A record longer than this is not one (a torn header can claim anything).
const MAX_PAYLOAD: usize = 64 << 20;

/// One namespace change as rows of the `node` and `op` tables, in the order they are applied.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Change {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    PutNode(NodeRow),
    DeleteNode(i64),
    DeleteOp(i64),
    PushOp { seq: i64, body: String },
}

/// A node as the `node` table holds it, column by column.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeRow {
    pub ino: i64,
    pub parent: i64,
    pub name: String,
    pub kind: i64,
    pub listed: bool,
    pub cached: bool,
    pub in_share: bool,
    pub base_size: Option<i64>,
    pub base_mtime: Option<i64>,
    pub content_dirty: bool,
    pub meta_dirty: bool,
    pub size: i64,
    pub mtime: i64,
    pub mode: i64,
    pub link: Option<String>,
    pub atime: Option<i64>,
    pub owner: Option<i64>,
    pub rdev: Option<i64>,
    pub shown: Option<i64>,
    pub xattrs: Option<Vec<u8>>,
}

impl NodeRow {
    pub(super) fn of(n: &Node) -> NodeRow {
        NodeRow {
            ino: n.ino as i64,
            parent: n.parent as i64,
            name: n.name.as_str().to_owned(),
            kind: kind_code(n.kind),
            listed: n.children.is_some(),
            cached: n.cached,
            in_share: n.in_share,
            base_size: n.base.map(|b| b.size as i64),
            base_mtime: n.base.map(|b| b.mtime_ns),
            content_dirty: n.content_dirty,
            meta_dirty: n.meta_dirty,
            size: n.size as i64,
            mtime: n.mtime_ns,
            mode: n.mode as i64,
            link: n.link().map(str::to_owned),
            atime: n.atime_ns(),
            owner: n.owner().map(owner_code),
            rdev: (n.rdev() != 0).then_some(n.rdev() as i64),
            shown: n.shown().map(|i| i as i64),
            xattrs: n.xattrs().map(xattrs_code),
        }
    }

    pub(super) fn put(&self, c: &Connection) -> Result<(), JournalError> {
        c.prepare_cached(
            "INSERT OR REPLACE INTO node(ino, parent, name, kind, listed, cached, in_share,
                base_size, base_mtime, content_dirty, meta_dirty, size, mtime, mode, link, atime,
                owner, rdev, shown, xattrs)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20)",
        )?
        .execute(params![
            self.ino,
            self.parent,
            self.name,
            self.kind,
            self.listed,
            self.cached,
            self.in_share,
            self.base_size,
            self.base_mtime,
            self.content_dirty,
            self.meta_dirty,
            self.size,
            self.mtime,
            self.mode,
            self.link,
            self.atime,
            self.owner,
            self.rdev,
            self.shown,
            self.xattrs,
        ])?;
        Ok(())
    }
}

impl Change {
    pub fn put_node(&mut self, n: &Node) {
        self.entries.push(Entry::PutNode(NodeRow::of(n)));
    }

    pub fn delete_node(&mut self, ino: Ino) {
        self.entries.push(Entry::DeleteNode(ino as i64));
    }

    /// Takes back logged change `seq` (see `Engine::adopt_removed`).
    pub fn delete_op(&mut self, seq: i64) {
        self.entries.push(Entry::DeleteOp(seq));
    }

    /// Appends a logged change under `seq` (from [`super::Journal::next_op_seq`]).
    pub fn push_op(&mut self, seq: i64, op: &crate::pending::NsOp) {
        let body = serde_json::to_string(op).expect("ops serialize");
        self.entries.push(Entry::PushOp { seq, body });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the change's rows in the open transaction `c`.
    pub(super) fn apply(&self, c: &Connection) -> Result<(), JournalError> {
        for e in &self.entries {
            match e {
                Entry::PutNode(row) => row.put(c)?,
                Entry::DeleteNode(ino) => super::delete_node(c, *ino as Ino)?,
                Entry::DeleteOp(seq) => super::delete_op(c, *seq)?,
                Entry::PushOp { seq, body } => {
                    c.prepare_cached("INSERT INTO op(seq, body) VALUES(?1, ?2)")?
                        .execute(params![seq, body])?;
                }
            }
        }
        Ok(())
    }

    /// The highest logged-change number this change adds.
    pub(super) fn last_op_seq(&self) -> Option<i64> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::PushOp { seq, .. } => Some(*seq),
                _ => None,
            })
            .max()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        for e in &self.entries {
            match e {
                Entry::PutNode(r) => {
                    w.u8(1);
                    w.i64(r.ino);
                    w.i64(r.parent);
                    w.bytes(r.name.as_bytes());
                    w.i64(r.kind);
                    w.u8(u8::from(r.listed) | u8::from(r.cached) << 1 | u8::from(r.in_share) << 2);
                    w.u8(u8::from(r.content_dirty) | u8::from(r.meta_dirty) << 1);
                    w.opt_i64(r.base_size);
                    w.opt_i64(r.base_mtime);
                    w.i64(r.size);
                    w.i64(r.mtime);
                    w.i64(r.mode);
                    w.opt_bytes(r.link.as_ref().map(|l| l.as_bytes()));
                    w.opt_i64(r.atime);
                    w.opt_i64(r.owner);
                    w.opt_i64(r.rdev);
                    w.opt_i64(r.shown);
                    w.opt_bytes(r.xattrs.as_deref());
                }
                Entry::DeleteNode(ino) => {
                    w.u8(2);
                    w.i64(*ino);
                }
                Entry::DeleteOp(seq) => {
                    w.u8(3);
                    w.i64(*seq);
                }
                Entry::PushOp { seq, body } => {
                    w.u8(4);
                    w.i64(*seq);
                    w.bytes(body.as_bytes());
                }
            }
        }
    }

    fn decode(mut b: &[u8]) -> Option<Change> {
        let r = &mut b;
        let mut entries = Vec::new();
        while !r.is_empty() {
            let e = match read_u8(r)? {
                1 => {
                    let ino = read_i64(r)?;
                    let parent = read_i64(r)?;
                    let name = read_str(r)?;
                    let kind = read_i64(r)?;
                    let flags = read_u8(r)?;
                    let dirty = read_u8(r)?;
                    Entry::PutNode(NodeRow {
                        ino,
                        parent,
                        name,
                        kind,
                        listed: flags & 1 != 0,
                        cached: flags & 2 != 0,
                        in_share: flags & 4 != 0,
                        content_dirty: dirty & 1 != 0,
                        meta_dirty: dirty & 2 != 0,
                        base_size: read_opt_i64(r)?,
                        base_mtime: read_opt_i64(r)?,
                        size: read_i64(r)?,
                        mtime: read_i64(r)?,
                        mode: read_i64(r)?,
                        link: match read_opt_bytes(r)? {
                            Some(l) => Some(String::from_utf8(l).ok()?),
                            None => None,
                        },
                        atime: read_opt_i64(r)?,
                        owner: read_opt_i64(r)?,
                        rdev: read_opt_i64(r)?,
                        shown: read_opt_i64(r)?,
                        xattrs: read_opt_bytes(r)?,
                    })
                }
                2 => Entry::DeleteNode(read_i64(r)?),
                3 => Entry::DeleteOp(read_i64(r)?),
                4 => Entry::PushOp {
                    seq: read_i64(r)?,
                    body: read_str(r)?,
                },
                _ => return None,
            };
            entries.push(e);
        }
        Some(Change { entries })
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
            None => self.u8(0),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt_bytes(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
            None => self.u8(0),
        }
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Some(head)
}

fn read_u8(r: &mut &[u8]) -> Option<u8> {
    take(r, 1).map(|b| b[0])
}

fn read_i64(r: &mut &[u8]) -> Option<i64> {
    take(r, 8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn read_opt_i64(r: &mut &[u8]) -> Option<Option<i64>> {
    match read_u8(r)? {
        0 => Some(None),
        _ => read_i64(r).map(Some),
    }
}

fn read_bytes(r: &mut &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(take(r, 4)?.try_into().expect("4 bytes")) as usize;
    take(r, len).map(<[u8]>::to_vec)
}

fn read_opt_bytes(r: &mut &[u8]) -> Option<Option<Vec<u8>>> {
    match read_u8(r)? {
        0 => Some(None),
        _ => read_bytes(r).map(Some),
    }
}

fn read_str(r: &mut &[u8]) -> Option<String> {
    String::from_utf8(read_bytes(r)?).ok()
}

fn hash(number: u64, payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&number.to_le_bytes());
    h.update(payload);
    h.digest()
}

/// The record log file and where the next record goes.
pub(super) struct RecordLog {
    file: Arc<File>,
    path: PathBuf,
    /// Where the next record is written.
    end: u64,
    /// The file's length: what is past `end` is zeros.
    written: u64,
    /// The next record's number.
    next: u64,
    /// Appended and not folded into the database yet, in order.
    unfolded: Vec<(u64, Change)>,
    /// A buffer reused for each record.
    buf: Vec<u8>,
}

/// How far ahead of the records the file is filled with zeros.
const ZEROS_AHEAD: u64 = 256 << 10;

/// Wraps only once the log is this long: until then, appending after the old records costs the
/// same, and a wrap needs the database synced.
const WRAP_AFTER: u64 = 4 << 20;

impl RecordLog {
    /// Opens (or creates) the log at `path` and reads back the records numbered above `folded`,
    /// which the database does not hold yet.
    pub(super) fn open(path: &Path, folded: u64) -> Result<RecordLog, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        // Write access: Windows flushes a file's buffers only through a handle that may write.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let bytes = std::fs::read(path).map_err(io_err)?;
        let mut log = RecordLog {
            file: Arc::new(file),
            path: path.to_owned(),
            end: 0,
            written: 0,
            next: folded + 1,
            unfolded: Vec::new(),
            buf: Vec::new(),
        };
        let mut last: Option<u64> = None;
        let mut at = 0usize;
        while let Some((number, payload)) = read_record(&bytes[at..]) {
            if last.is_some_and(|l| number != l + 1) {
                break;
            }
            let Some(change) = Change::decode(payload) else {
                break;
            };
            if number > folded {
                log.unfolded.push((number, change));
            }
            last = Some(number);
            at += HEADER + payload.len();
        }
        if let Some(l) = last {
            log.next = log.next.max(l + 1);
        }
        log.end = at as u64;
        log.written = bytes.len() as u64;
        let stale_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if stale_end > at {
            // What follows the last record is no record: old ones from before a wrap, or ones a
            // power cut kept while losing one before them. Numbers given again from here on
            // could otherwise chain onto a kept one, so they become zeros, durably, before any
            // is given.
            write_all_at(&log.file, &vec![0; stale_end - at], log.end).map_err(io_err)?;
            log.file.sync_all().map_err(io_err)?;
        }
        if !log.unfolded.is_empty() {
            tracing::info!(
                records = log.unfolded.len(),
                "journal: changes recorded before a crash are folded in"
            );
        }
        Ok(log)
    }

    /// Writes `change` as the next record: once this returns, the change survives the
    /// process being killed.
    pub(super) fn append(&mut self, change: Change) -> Result<(), JournalError> {
        let number = self.next;
        self.buf.clear();
        self.buf.resize(HEADER, 0);
        change.encode(&mut self.buf);
        let len = self.buf.len() - HEADER;
        let h = hash(number, &self.buf[HEADER..]);
        self.buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        self.buf[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[8..16].copy_from_slice(&number.to_le_bytes());
        self.buf[16..24].copy_from_slice(&h.to_le_bytes());
        let after = self.end + self.buf.len() as u64;
        if after > self.written {
            // Zeros written ahead: a record then overwrites bytes the file already has, and a
            // sync of the log writes its page without a commit of the file system's journal
            // (no new block, no new size), where a program's fsync waits for one of its own.
            let grow = ZEROS_AHEAD.max(after - self.written);
            write_all_at(&self.file, &vec![0; grow as usize], self.written)
                .map_err(|e| self.error(e))?;
            self.written += grow;
        }
        write_all_at(&self.file, &self.buf, self.end).map_err(|e| self.error(e))?;
        self.end = after;
        self.next += 1;
        self.unfolded.push((number, change));
        Ok(())
    }

    /// The changes to fold, in order, and the number of the last.
    pub(super) fn unfolded(&self) -> (&[(u64, Change)], Option<u64>) {
        (&self.unfolded, self.unfolded.last().map(|(n, _)| *n))
    }

    /// The database now holds every change taken from [`RecordLog::unfolded`].
    pub(super) fn folded(&mut self) {
        self.unfolded.clear();
    }

    /// True when the log has grown enough to be written from the start again.
    pub(super) fn wants_wrap(&self) -> bool {
        self.end >= WRAP_AFTER
    }

    /// Starts writing at the start again. Only once every record is folded and the database
    /// that holds them is durable: the old records are overwritten from here on.
    pub(super) fn wrap(&mut self) {
        debug_assert!(self.unfolded.is_empty());
        if self.unfolded.is_empty() {
            self.end = 0;
        }
    }

    /// Where the next record goes.
    #[cfg(test)]
    pub(super) fn end(&self) -> u64 {
        self.end
    }

    pub(super) fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    pub(super) fn error(&self, source: io::Error) -> JournalError {
        JournalError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// The record at the start of `b`, if whole and intact: its number and payload.
fn read_record(b: &[u8]) -> Option<(u64, &[u8])> {
    let head = b.get(..HEADER)?;
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let long = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    if word(0) != MAGIC {
        return None;
    }
    let len = word(4) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let payload = b.get(HEADER..HEADER + len)?;
    let number = long(8);
    (hash(number, payload) == long(16)).then_some((number, payload))
}

#[cfg(unix)]
fn write_all_at(f: &File, buf: &[u8], at: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, at)
}

#[cfg(windows)]
fn write_all_at(f: &File, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_write(buf, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) fn encode_for_test(c: &Change) -> Vec<u8> {
    let mut v = Vec::new();
    c.encode(&mut v);
    v
}

#[cfg(test)]
pub(super) fn decode_for_test(b: &[u8]) -> Option<Change> {
    Change::decode(b)
}
