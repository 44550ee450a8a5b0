//! The rows of each table, written inside a transaction the caller holds (`Journal::batch`),
//! so that the changes of one operation commit together.

use rusqlite::{params, Connection};

use crate::error::JournalError;
use crate::mirror::stamp::{Check, Stamp};
use crate::pending::{Base, NsOp};
use crate::ranges::Ranges;
use crate::relpath::RelPath;
use crate::tree::{Ino, Node};

use super::codec::kind_code;
use super::record::NodeRow;
use super::StagedRow;

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
    NodeRow::of(n).put(c)
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
