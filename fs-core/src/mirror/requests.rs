//! Requests to the process serving a mirror folder from programs that cannot run sipfs (a
//! step in a container): the same `.sipfs/control` file as in a mount, and the same commands
//! (`flush [LABEL]`, `refresh`, `status`: scan the folder so `.sipfs/status` lists every
//! pending change).
//!
//! A mount answers a write when the command is done. A plain folder cannot, so here the file
//! is the request queue of one, and the answer comes back in it: the serving process looks at
//! it a few times a second, runs the command, and replaces the request with its answer, one
//! line (`ok`, `pending`, `conflict` or `error`, then the command and a summary; a `status`
//! request's answer goes on with the status as JSON). A requester waits until the file no
//! longer holds its request:
//!
//! ```sh
//! echo "flush step-3" > /data/.sipfs/control
//! while grep -qsx "flush step-3" /data/.sipfs/control; do sleep 0.2; done
//! cat /data/.sipfs/control    # ok flush step-3: ... (a mount's cannot be read: the write answered)
//! ```
//!
//! The control file is the only file of sipfs's own the folder keeps, because programs treat
//! the folder as theirs: workflow managers list it, zip it into snapshots, delete what was
//! created after a snapshot and restore the zip over it. So an answer is never taken for a
//! request (a restored one is left as it is), a control file or `.sipfs/` that was removed is
//! made again, and one restored without its permissions is made writable to all again. The
//! status (`status.json`) is with the cache; `sipfs status FOLDER` reads it there.
//!
//! Polling, woken early by file-change notifications where the folder is watched
//! (`watch.rs`): notifications do not cross Docker Desktop's file sharing reliably, and a stat
//! a few times a second costs nothing, so a request is never left to them alone. One request
//! at a time: a second request written while the first runs is taken after it, but one
//! written in the instant between the answer and the replacing is lost, so requesters wait for
//! the answer.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Mirror;
pub use crate::control::FlushProgress;
use crate::control::{ControlCommand, CONTROL_FILE};
use crate::ignore_rules::CONTROL_DIR;

/// The first words of an answer; no request begins with one.
pub const ANSWER_WORDS: [&str; 4] = ["ok", "pending", "conflict", "error"];

/// Whether the control file's content is an answer (or nothing): no request waits.
pub fn is_answer(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let first = text.split_whitespace().next();
    first.is_none_or(|w| ANSWER_WORDS.contains(&w))
}

/// How often the control file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A request without its final newline is taken once it has not changed for this long (a
/// writer may still be writing it).
const PARTIAL_GRACE: Duration = Duration::from_secs(1);

fn control_dir(root: &Path) -> PathBuf {
    root.join(CONTROL_DIR)
}

/// Makes the control file of a mirror folder if it is missing (an empty `control` in
/// `.sipfs/`), and keeps both writable by every user: a step in a container may run as anyone,
/// and a snapshot restored over the folder brings the file back with its own permissions.
pub fn prepare(root: &Path) -> io::Result<()> {
    let dir = control_dir(root);
    let control = dir.join(CONTROL_FILE);
    if !control.exists() {
        fs::create_dir_all(&dir)?;
        // Never over a request written meanwhile.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&control)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [(&control, 0o666), (&dir, 0o777)] {
            if fs::metadata(p)?.permissions().mode() & 0o777 != mode {
                fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
            }
        }
    }
    Ok(())
}

/// Writes the served status (with the cache, see [`Mirror::status_path`]): the engine's
/// status and who serves the folder, as a mount's `.sipfs/status` reads.
pub fn write_status(mirror: &Mirror, progress: Option<&FlushProgress>) -> io::Result<()> {
    replace_file(&mirror.status_path(), &status_text(mirror, progress), 0o644)
}

fn status_text(mirror: &Mirror, progress: Option<&FlushProgress>) -> Vec<u8> {
    let mut extra = serde_json::Map::new();
    extra.insert("mode".into(), "mirror".into());
    extra.insert(
        "folder".into(),
        mirror.folder().display().to_string().into(),
    );
    extra.insert("watched".into(), mirror.is_watched().into());
    if let Some(scan) = mirror.last_scan() {
        extra.insert(
            "last_scan".into(),
            serde_json::to_value(scan).unwrap_or_default(),
        );
    }
    let idle = FlushProgress::default();
    crate::control::status_json(mirror.engine(), progress.unwrap_or(&idle), extra)
}

/// Writes a file whole, so a reader never sees half of it: a temporary of its own, then a
/// rename. (One shared temporary name let two threads writing the status at once write into
/// the same file, and a reader then found two statuses run together.)
fn replace_file(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut b = tempfile::Builder::new();
    b.prefix(".write-");
    // Readable by all, as a plain write leaves it (a step in a container, under another user,
    // reads the answers), and the control file writable by all.
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = b.tempfile_in(dir)?;
    io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Runs one request if one is waiting. Returns what was done, for logs and tests.
pub fn poll_once(mirror: &Mirror, progress: &FlushProgress) -> Option<String> {
    let path = control_dir(mirror.folder()).join(CONTROL_FILE);
    // Made again if a program removed it, writable again if a restore took that away.
    if let Err(e) = prepare(mirror.folder()) {
        warn!(error = %e, "could not make the control file");
    }
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(error = %e, "could not read the control file");
            return None;
        }
    };
    // Nothing asked, or the answer to an earlier request (perhaps restored from a snapshot).
    if is_answer(&data) {
        return None;
    }
    if !data.ends_with(b"\n") {
        let age = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok());
        if age.is_none_or(|a| a < PARTIAL_GRACE) {
            return None;
        }
    }
    let line = String::from_utf8_lossy(&data).trim().to_owned();
    info!(request = %line, "mirror request");
    let result = match ControlCommand::parse(&data) {
        Ok(ControlCommand::Flush { label }) => {
            let r = progress.track(|p| mirror.flush_with_progress(label.as_deref(), p));
            match r {
                Ok(r) if r.pending.is_empty() && r.conflicts.is_empty() => {
                    format!("ok {line}: {}", r.summary())
                }
                Ok(r) if r.pending.is_empty() => format!("conflict {line}: {}", r.summary()),
                Ok(r) => format!("pending {line}: {}", r.summary()),
                Err(e) => format!("error {line}: {e}"),
            }
        }
        Ok(ControlCommand::Status) => match mirror.scan() {
            Ok(_) => {
                let s = mirror.engine().status();
                format!(
                    "ok {line}: {} file(s) and {} other change(s) pending",
                    s.pending_files, s.pending_changes
                )
            }
            Err(e) => format!("error {line}: {e}"),
        },
        Ok(ControlCommand::Refresh) => match mirror.sync(&|_| {}) {
            Ok(r) if r.errors.is_empty() => format!(
                "ok {line}: {} added, {} changed, {} removed, {} fetched",
                r.refresh.added, r.refresh.changed, r.refresh.removed, r.fetched
            ),
            Ok(r) => format!("pending {line}: {} folder(s) not reached", r.errors.len()),
            Err(e) => format!("error {line}: {e}"),
        },
        Ok(ControlCommand::Stop) => {
            progress.stop_requested.store(true, Ordering::Relaxed);
            format!("ok {line}: stopping after a last flush")
        }
        Err(e) => format!("error {e}"),
    };
    if let Err(e) = write_status(mirror, None) {
        warn!(error = %e, "could not write the status file");
    }
    let mut answer = format!("{result}\n").into_bytes();
    if matches!(ControlCommand::parse(&data), Ok(ControlCommand::Status)) {
        // The container that asked has no other way to the status.
        answer.extend(status_text(mirror, None));
        answer.push(b'\n');
    }
    // The answer replaces the request, unless a new request replaced it meanwhile. Whole, by a
    // rename: a requester polling the file sees the request or the answer, never nothing.
    if fs::read(&path).is_ok_and(|now| now == data) {
        if let Err(e) = replace_file(&path, &answer, 0o666) {
            warn!(error = %e, "could not answer in the control file");
        }
    }
    Some(result)
}

/// Serves requests until `stop` is set or a `stop` request came.
pub fn serve(mirror: &Mirror, stop: &AtomicBool, progress: &FlushProgress) {
    while !stop.load(Ordering::Relaxed) && !progress.stop_requested.load(Ordering::Relaxed) {
        mirror.wait_for_request(POLL_INTERVAL);
        poll_once(mirror, progress);
    }
}
