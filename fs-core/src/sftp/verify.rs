//! Whether an SFTP session sees the project folder as the mount does, before it is trusted
//! with the share's listings.
//!
//! The session's listing stands in for the mount's only where the two agree: same names, and
//! for each the same kind, size, mode and time. A mount that shows other modes (sshfs's
//! `umask`), follows symbolic links, or is not the folder we think, disagrees on every look.
//!
//! A share others are working on changes while we look, too: a file appended to, a flush's
//! temporary or capture there for a moment, the folder's own time. So the mount is looked at
//! just before and just after the session's listing, and an entry is judged only on what
//! stood still in between: its presence, its whole stat, or, for a file being written, its
//! kind and mode. An entry counts as agreeing once one look finds it the same both ways; only
//! what disagrees on every one of a few looks, a moment apart, keeps the session out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use super::{stat_of, SftpLister};
use crate::backing::Stat;
use crate::relpath::RelPath;

/// Entries of the project folder whose stats are compared.
const VERIFY_ENTRIES: usize = 64;

/// Looks at both before the session is refused, and the pause between them.
const LOOKS: u32 = 4;
const PAUSE: Duration = Duration::from_millis(150);

/// The name the project folder itself goes by among the entries compared.
const FOLDER: &str = ".";

/// `Ok` when every entry agreed on at least one look; else why not, for the log.
pub(super) fn agrees_with(lister: &SftpLister, share: &Path) -> Result<(), String> {
    // The entries that have disagreed on every look so far (all of them before the first).
    let mut unsettled: Option<BTreeSet<String>> = None;
    let mut why = String::new();
    for look in 0..LOOKS {
        if look > 0 {
            std::thread::sleep(PAUSE);
        }
        let now = disagreements(lister, share)?;
        let still: BTreeSet<String> = match unsettled {
            None => now.keys().cloned().collect(),
            Some(before) => before
                .into_iter()
                .filter(|name| now.contains_key(name))
                .collect(),
        };
        match still.first() {
            None => return Ok(()),
            Some(name) => why = now[name].clone(),
        }
        unsettled = Some(still);
    }
    Err(why)
}

/// What the mount shows of the project folder at one moment.
struct MountView {
    /// Its entries, a flush's temporaries and captures left out: whoever's they are, they
    /// come and go, and tell nothing of the session's view.
    names: BTreeSet<String>,
    /// The stats of the folder ([`FOLDER`]) and of the first [`VERIFY_ENTRIES`] entries,
    /// those still there when asked.
    stats: BTreeMap<String, Stat>,
}

impl MountView {
    fn take(share: &Path) -> Result<MountView, String> {
        let names: BTreeSet<String> = std::fs::read_dir(share)
            .map_err(|e| format!("listing through the mount: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| crate::os_names::from_os(&e.file_name()).into_owned())
            .filter(|n| !crate::names::is_temp_name(n))
            .collect();
        let picked: Vec<&str> = std::iter::once(FOLDER)
            .chain(names.iter().map(String::as_str).take(VERIFY_ENTRIES))
            .collect();
        let stats = crate::fanout::map_overlapped(&picked, |name| {
            let path = match *name {
                FOLDER => share.to_path_buf(),
                name => share.join(crate::os_names::to_os(name)),
            };
            std::fs::symlink_metadata(path).map(|md| Stat::from_metadata(&md))
        });
        let stats = picked
            .into_iter()
            .zip(stats)
            .filter_map(|(name, st)| Some((name.to_string(), st.ok()?)))
            .collect();
        Ok(MountView { names, stats })
    }
}

/// One look: each entry on which the session and the mount differ, with how, judged only on
/// what the mount showed the same just before and just after the session's listing. `Err`
/// when the session cannot list the folder at all.
fn disagreements(lister: &SftpLister, share: &Path) -> Result<BTreeMap<String, String>, String> {
    let root = RelPath::root();
    let session = lister.session().ok_or("no session")?;
    let before = MountView::take(share)?;
    let top = session
        .lstat(&lister.remote(&root))
        .map_err(|e| format!("lstat of the folder: {e}"))?;
    let listed: BTreeMap<String, Option<Stat>> = match lister.list(&root) {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Err(format!("listing the folder: {e}")),
        None => return Err("listing the folder failed".into()),
    }
    .into_iter()
    .filter(|(n, _)| !crate::names::is_temp_name(n))
    .chain(std::iter::once((FOLDER.to_string(), stat_of(&top))))
    .collect();
    let after = MountView::take(share)?;

    let mut out = BTreeMap::new();
    let everyone: BTreeSet<&String> = (before.names.iter())
        .chain(after.names.iter())
        .chain(listed.keys().filter(|n| *n != FOLDER))
        .collect();
    for name in everyone {
        let (mounted, still) = (before.names.contains(name), after.names.contains(name));
        if mounted == still && mounted != listed.contains_key(name) {
            let who = if mounted { "the mount" } else { "the server" };
            out.insert(name.clone(), format!("{name}: only {who} lists it"));
        }
    }
    for (name, first) in &before.stats {
        let (Some(second), Some(server)) = (after.stats.get(name), listed.get(name)) else {
            continue;
        };
        if let Some(why) = differs(name, *server, first, second) {
            out.insert(name.clone(), why);
        }
    }
    Ok(out)
}

/// How the server's `server` stat of `name` differs from the mount's, which was `first` just
/// before the server was asked and `second` just after; `None` when it does not, or when the
/// mount's changed in between in what would decide.
fn differs(name: &str, server: Option<Stat>, first: &Stat, second: &Stat) -> Option<String> {
    let why = || format!("{name}: the server says {server:?}, the mount {first:?}");
    let Some(server) = server else {
        // The listing cannot say (a symbolic link, a device): the mount is asked for these.
        return None;
    };
    if first == second {
        return (server != *first).then(why);
    }
    // Written to meanwhile: its size and time moved, its kind and mode tell still.
    let kept = first.kind == second.kind && first.mode == second.mode;
    (kept && (server.kind != first.kind || server.mode != first.mode)).then(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backing::EntryKind;

    fn file(size: u64, mode: u32) -> Stat {
        Stat {
            kind: EntryKind::File,
            size,
            mtime_ns: 1_700_000_000_000_000_000,
            mode,
            rdev: 0,
        }
    }

    #[test]
    fn an_entry_that_stood_still_is_judged_on_its_whole_stat() {
        let st = file(10, 0o644);
        assert_eq!(differs("a", Some(st), &st, &st), None);
        assert!(differs("a", Some(file(11, 0o644)), &st, &st).is_some());
        assert!(differs("a", Some(file(10, 0o600)), &st, &st).is_some());
        // What the listing cannot tell is not held against it.
        assert_eq!(differs("a", None, &st, &st), None);
    }

    #[test]
    fn an_entry_written_to_meanwhile_is_judged_on_its_kind_and_mode() {
        let (first, second) = (file(10, 0o644), file(21, 0o644));
        // The server saw it in between, or before, or after: none of that is a disagreement.
        for size in [10, 15, 21, 30] {
            assert_eq!(differs("a", Some(file(size, 0o644)), &first, &second), None);
        }
        // A mode that is not the mount's is (sshfs's umask), however busy the file.
        assert!(differs("a", Some(file(15, 0o600)), &first, &second).is_some());
        // Its mode changed too: nothing stood still to judge by.
        assert_eq!(
            differs("a", Some(file(15, 0o600)), &first, &file(21, 0o600)),
            None
        );
    }
}
