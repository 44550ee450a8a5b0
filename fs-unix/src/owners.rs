//! Owners and groups, as a local disk has them.
//!
//! An entry shows the owner the engine recorded for it (`Node::owner`: a privileged `chown`
//! gave it, or another user created it here), otherwise the user who mounted. The kernel checks
//! who may chown (`default_permissions`); where it does not (`--allow-other
//! --no-permission-checks`, so that containers running as any user can write), the same rules
//! are checked here, so a chown is refused with EPERM as on a local disk rather than taken
//! from anyone.

use fs_core::Attr;
use fuser::Request;

use crate::attr::Owner;

/// The owner and group an entry shows.
pub fn shown(a: &Attr, default: Owner) -> (u32, u32) {
    a.owner.unwrap_or((default.uid, default.gid))
}

/// The owner and group a chown of `a` by `req` to `uid`/`gid` gives it, or EPERM.
/// The rules of a local disk: only root changes the owner; the owner may change the group to
/// one of the groups they are in; root may do anything.
pub fn chown(
    req: &Request,
    a: &Attr,
    default: Owner,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<(u32, u32), i32> {
    let now = shown(a, default);
    let new = (uid.unwrap_or(now.0), gid.unwrap_or(now.1));
    if req.uid() == 0 {
        return Ok(new);
    }
    let owns = req.uid() == now.0;
    if uid.is_some_and(|u| u != now.0 || !owns) {
        return Err(libc::EPERM);
    }
    if let Some(g) = gid {
        if !owns || (g != now.1 && !in_group(req, g)) {
            return Err(libc::EPERM);
        }
    }
    Ok(new)
}

/// Whether the caller is in group `gid`: its own group, or one of the supplementary groups
/// of its process (`/proc/PID/status`, the only place a FUSE server can learn them).
fn in_group(req: &Request, gid: u32) -> bool {
    if req.gid() == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", req.pid())) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

/// The owner and group of an entry `req` creates in a folder shown as `parent`: the creator,
/// and the folder's group when the folder is setgid (as on a local disk). `None` when that is
/// the default owner, which needs no record.
pub fn of_new(req: &Request, parent: &Attr, default: Owner) -> Option<(u32, u32)> {
    // S_ISGID (a literal: macOS's libc has it as a 16-bit mode).
    let gid = match parent.mode & 0o2000 {
        0 => req.gid(),
        _ => shown(parent, default).1,
    };
    let owner = (req.uid(), gid);
    (owner != (default.uid, default.gid)).then_some(owner)
}

/// What takes away a file's set-user-ID and set-group-ID bits, as the kernel does on a local
/// disk. The mount asks the kernel to leave that to it (`FUSE_HANDLE_KILLPRIV_V2`): otherwise
/// the kernel asks for `security.capability` before every write, one round trip each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// A chown, by anyone.
    Chown,
    /// A write or truncate; not by root, who keeps the bits (`CAP_FSETID`). With passthrough
    /// the kernel writes without telling us, so an open for writing counts as the write.
    Write,
}

/// The mode `a` is left with after `what` by `req`, if it changes (the rules of Linux 6's
/// `setattr_should_drop_suidgid`): the set-user-ID bit goes; the set-group-ID bit goes where
/// the group may execute, or where the caller is neither in the file's group nor root.
/// Folders keep theirs.
pub fn killed_mode(a: &Attr, req: &Request, what: Kill, default: Owner) -> Option<u32> {
    let root = req.uid() == 0;
    if a.kind != fs_core::EntryKind::File || (what == Kill::Write && root) {
        return None;
    }
    let mut mode = a.mode & !0o4000;
    if mode & 0o2000 != 0 && (mode & 0o010 != 0 || (!root && !in_group(req, shown(a, default).1))) {
        mode &= !0o2000;
    }
    (mode != a.mode).then_some(mode)
}
