//! The control protocol: what a program inside the mount (a step in a container) writes to
//! `.sipfs/control` to flush or refresh, without a sipfs binary of its own.
//!
//! One command a write: `flush [LABEL]`, `refresh`, `status`, and `stop` (a last flush, then
//! the serving process unmounts or stops serving: how `sipfs unmount` stops a mirror folder or
//! a Windows drive, without signals). On a mount the write returns when
//! the command is done, and fails when a flush left changes pending (the adapter maps that to
//! EIO). `status` brings `.sipfs/status` up to date: a mount's always is; a mirror folder's
//! serving process scans the folder first (see `mirror::requests`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::Engine;
use crate::report::Progress;

/// The files of the control directory, relative to `.sipfs/`.
pub const CONTROL_FILE: &str = "control";
pub const STATUS_FILE: &str = "status";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    Flush { label: Option<String> },
    Refresh,
    Status,
    Stop,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown control command {0:?}: write `flush [LABEL]`, `refresh`, `status` or `stop`")]
pub struct ControlParseError(pub String);

impl ControlCommand {
    pub fn parse(input: &[u8]) -> Result<Self, ControlParseError> {
        let text = String::from_utf8_lossy(input);
        let line = text.trim();
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "flush" => Ok(ControlCommand::Flush {
                label: (!rest.is_empty()).then(|| rest.chars().take(200).collect()),
            }),
            "refresh" if rest.is_empty() => Ok(ControlCommand::Refresh),
            "status" if rest.is_empty() => Ok(ControlCommand::Status),
            "stop" if rest.is_empty() => Ok(ControlCommand::Stop),
            _ => Err(ControlParseError(line.chars().take(80).collect())),
        }
    }
}

/// What every form that serves a project (a mount, a drive, a mirror folder) keeps for its
/// control files: the progress of the flush running now, shown in `.sipfs/status` (`sipfs
/// flush` draws its progress bar from it), and whether a `stop` was asked.
#[derive(Debug, Default)]
pub struct FlushProgress {
    /// Set by a `stop` request (mirror folders): the server flushes a last time and ends.
    pub stop_requested: AtomicBool,
    pub running: AtomicBool,
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub bytes: AtomicU64,
}

impl FlushProgress {
    /// Runs a flush, publishing its progress while it runs.
    pub fn track<R>(&self, flush: impl FnOnce(&(dyn Fn(Progress) + Sync)) -> R) -> R {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
        let r = flush(&|p: Progress| {
            self.done.store(p.done, Ordering::Relaxed);
            self.total.store(p.total, Ordering::Relaxed);
            self.bytes.fetch_add(p.bytes, Ordering::Relaxed);
        });
        self.running.store(false, Ordering::Relaxed);
        r
    }

    /// The engine's flush, tracked.
    pub fn flush(&self, engine: &Engine, label: Option<&str>) -> crate::FlushReport {
        self.track(|p| engine.flush_with_progress(label, p))
    }
}

/// The contents of `.sipfs/status`: the engine's status, what the serving process adds about
/// itself (`extra`: its pid, where it serves...), and the running flush, if any.
pub fn status_json(
    engine: &Engine,
    progress: &FlushProgress,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Vec<u8> {
    let mut v = serde_json::to_value(engine.status()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("pid".into(), std::process::id().into());
        o.extend(extra);
        if progress.running.load(Ordering::Relaxed) {
            o.insert(
                "flush_progress".into(),
                serde_json::json!({
                    "done": progress.done.load(Ordering::Relaxed),
                    "total": progress.total.load(Ordering::Relaxed),
                    "bytes": progress.bytes.load(Ordering::Relaxed),
                }),
            );
        }
    }
    let mut text = serde_json::to_vec_pretty(&v).unwrap_or_default();
    text.push(b'\n');
    text
}

/// A write to a mount's or drive's `.sipfs/control`, run before the write returns. `Ok(false)`
/// when it did not fully succeed (a flush left changes pending, a refresh missed folders): the
/// adapter fails the write (EIO), so the writing program can tell.
/// `after_refresh` sees what a refresh changed (a FUSE adapter tells the kernel).
pub fn serve_write(
    engine: &Engine,
    progress: &FlushProgress,
    data: &[u8],
    after_refresh: &dyn Fn(&crate::RefreshReport),
) -> Result<bool, ControlParseError> {
    let cmd = ControlCommand::parse(data)?;
    tracing::info!(command = ?cmd, "control command");
    Ok(match &cmd {
        ControlCommand::Flush { label } => {
            progress.flush(engine, label.as_deref()).pending.is_empty()
        }
        ControlCommand::Refresh => {
            let r = engine.refresh();
            after_refresh(&r);
            r.errors.is_empty()
        }
        // A mount's status file is always current.
        ControlCommand::Status => true,
        // The serving process sees the flag, flushes a last time and unmounts: how
        // `sipfs unmount` stops a drive on Windows, which has no signals to send.
        ControlCommand::Stop => {
            progress.stop_requested.store(true, Ordering::Relaxed);
            true
        }
    })
}

/// What a control command did.
#[derive(Debug, Clone)]
pub struct ControlOutcome {
    /// False when a flush left changes pending or kept conflicting versions.
    pub ok: bool,
    /// The report as JSON, readable afterwards from `.sipfs/status`.
    pub json: String,
}

impl Engine {
    pub fn run_control(&self, cmd: &ControlCommand) -> ControlOutcome {
        match cmd {
            ControlCommand::Flush { label } => {
                let r = self.flush(label.as_deref());
                ControlOutcome {
                    ok: r.pending.is_empty(),
                    json: serde_json::to_string_pretty(&r).expect("serializes"),
                }
            }
            ControlCommand::Refresh => {
                let r = self.refresh();
                ControlOutcome {
                    ok: r.errors.is_empty(),
                    json: serde_json::to_string_pretty(&r).expect("serializes"),
                }
            }
            ControlCommand::Status => ControlOutcome {
                ok: true,
                json: self.status_json(),
            },
            // A mount stops with `sipfs unmount`, which the kernel sees; the control file
            // only stops a mirror folder's server.
            ControlCommand::Stop => ControlOutcome {
                ok: false,
                json: serde_json::json!({
                    "error": "`stop` is for mirror folders; stop a mount with `sipfs unmount MOUNTPOINT`"
                })
                .to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(
            ControlCommand::parse(b"flush step-1\n"),
            Ok(ControlCommand::Flush {
                label: Some("step-1".into())
            })
        );
        assert_eq!(
            ControlCommand::parse(b"flush"),
            Ok(ControlCommand::Flush { label: None })
        );
        assert_eq!(
            ControlCommand::parse(b" refresh \n"),
            Ok(ControlCommand::Refresh)
        );
        assert!(ControlCommand::parse(b"rm -rf /").is_err());
        assert!(ControlCommand::parse(b"refresh now").is_err());
        assert_eq!(ControlCommand::parse(b"stop\n"), Ok(ControlCommand::Stop));
        assert_eq!(
            ControlCommand::parse(b"status\n"),
            Ok(ControlCommand::Status)
        );
    }
}
