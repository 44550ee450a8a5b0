//! Requests to the process serving a mirror folder from programs that cannot run sipfs (a
//! step in a container): the same `.sipfs/control` file as in a mount, and the same commands
//! (`flush [LABEL]`, `refresh`, `status`: scan the folder so `.sipfs/status` lists every
//! pending change).
//!
//! A mount answers a write when the command is done. A plain folder cannot, so here the file
//! is the request queue of one: the serving process looks at it a few times a second, runs
//! the command, writes the outcome to `.sipfs/result` (one line: `ok`, `pending` or `error`,
//! then the command and a summary) and `.sipfs/status` (JSON, as in a mount), and then empties
//! `control`. A requester waits until `control` is empty again:
//!
//! ```sh
//! echo "flush step-3" > /data/.sipfs/control
//! while [ -s /data/.sipfs/control ]; do sleep 0.2; done   # returns at once on a mount
//! cat /data/.sipfs/result
//! ```
//!
//! Polling, woken early by file-change notifications where the folder is watched
//! (`watch.rs`): notifications do not cross Docker Desktop's file sharing reliably, and a stat
//! a few times a second costs nothing, so a request is never left to them alone. One request
//! at a time: a second request written while the first runs is taken after it, but one
//! written in the instant between the reply and the emptying is lost, so requesters wait for
//! the reply.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::Mirror;
pub use crate::control::FlushProgress;
use crate::control::{ControlCommand, CONTROL_FILE, STATUS_FILE};
use crate::ignore_rules::CONTROL_DIR;

/// The reply to the last request, one line.
pub const RESULT_FILE: &str = "result";

/// How often the control file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A request without its final newline is taken once it has not changed for this long (a
/// writer may still be writing it).
const PARTIAL_GRACE: Duration = Duration::from_secs(1);

fn control_dir(root: &Path) -> PathBuf {
    root.join(CONTROL_DIR)
}

/// Creates the control files of a mirror folder (an empty `control`, writable by every user:
/// a step in a container may run as anyone).
pub fn prepare(root: &Path) -> io::Result<()> {
    let dir = control_dir(root);
    fs::create_dir_all(&dir)?;
    let control = dir.join(CONTROL_FILE);
    if !control.exists() {
        fs::write(&control, b"")?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&control, fs::Permissions::from_mode(0o666))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// Writes `.sipfs/status`: the engine's status and who serves the folder, as a mount's
/// `.sipfs/status` reads.
pub fn write_status(mirror: &Mirror, progress: Option<&FlushProgress>) -> io::Result<()> {
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
    let text = crate::control::status_json(mirror.engine(), progress.unwrap_or(&idle), extra);
    replace_file(&control_dir(mirror.folder()).join(STATUS_FILE), &text)
}

/// Writes a file whole, so a reader never sees half of it: a temporary of its own, then a
/// rename. (One shared temporary name let two threads writing the status at once write into
/// the same file, and a reader then found two statuses run together.)
fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut b = tempfile::Builder::new();
    b.prefix(".write-");
    // Readable by all, as a plain write leaves it: a step in a container, under another user,
    // reads the status and the answers.
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut tmp = b.tempfile_in(dir)?;
    io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Runs one request if one is waiting. Returns what was done, for logs and tests.
pub fn poll_once(mirror: &Mirror, progress: &FlushProgress) -> Option<String> {
    let path = control_dir(mirror.folder()).join(CONTROL_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let _ = prepare(mirror.folder());
            return None;
        }
        Err(e) => {
            warn!(error = %e, "could not read the control file");
            return None;
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
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
    let dir = control_dir(mirror.folder());
    if let Err(e) = write_status(mirror, None) {
        warn!(error = %e, "could not write the status file");
    }
    if let Err(e) = replace_file(&dir.join(RESULT_FILE), format!("{result}\n").as_bytes()) {
        warn!(error = %e, "could not write the result file");
    }
    // The reply: `control` empties, unless a new request replaced this one meanwhile.
    if fs::read(&path).is_ok_and(|now| now == data) {
        if let Err(e) = OpenOptions::new().write(true).truncate(true).open(&path) {
            warn!(error = %e, "could not empty the control file");
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
