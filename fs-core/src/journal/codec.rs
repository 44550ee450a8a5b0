//! How the node table's compact columns encode what they hold: kinds, owners and extended
//! attributes.

use crate::backing::EntryKind;
use crate::tree::Xattrs;

pub(super) fn kind_code(k: EntryKind) -> i64 {
    match k {
        EntryKind::File => 0,
        EntryKind::Dir => 1,
        EntryKind::Symlink => 2,
        EntryKind::Fifo => 3,
        EntryKind::Socket => 4,
        EntryKind::CharDevice => 5,
        EntryKind::BlockDevice => 6,
    }
}

pub(super) fn kind_of(c: i64) -> EntryKind {
    match c {
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink,
        3 => EntryKind::Fifo,
        4 => EntryKind::Socket,
        5 => EntryKind::CharDevice,
        6 => EntryKind::BlockDevice,
        _ => EntryKind::File,
    }
}

/// Extended attributes in one column: per attribute, the name's length (4 bytes, little
/// endian), the name, then the value's length plus one (0: removed here) and the value.
pub(super) fn xattrs_code(x: &Xattrs) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in x {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name);
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32 + 1).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&0u32.to_le_bytes()),
        }
    }
    out
}

/// `None` for a column that does not decode (never written so): no attributes rather than
/// wrong ones.
pub(super) fn xattrs_of(mut b: &[u8]) -> Option<Xattrs> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    fn len(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    let mut x = Xattrs::new();
    while !b.is_empty() {
        let n = len(&mut b)?;
        let name: Box<[u8]> = take(&mut b, n)?.into();
        let value = match len(&mut b)? {
            0 => None,
            v => Some(take(&mut b, v - 1)?.into()),
        };
        x.insert(name, value);
    }
    Some(x)
}

/// An owner and group in one column: the uid in the high 32 bits.
pub(super) fn owner_code((uid, gid): (u32, u32)) -> i64 {
    ((u64::from(uid) << 32) | u64::from(gid)) as i64
}

pub(super) fn owner_of(code: i64) -> (u32, u32) {
    let c = code as u64;
    ((c >> 32) as u32, c as u32)
}
