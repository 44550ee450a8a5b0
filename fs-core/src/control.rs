//! The control protocol: what a program inside the mount (a step in a container) writes to
//! `.sipfs/control` to flush or refresh, without a sipfs binary of its own.
//!
//! One command a write: `flush [LABEL]`, `refresh`, `status`, and in a mirror folder `stop`
//! (a last flush, then the serving process ends: how `sipfs unmount FOLDER` stops it on every
//! platform, without signals). On a mount the write returns when
//! the command is done, and fails when a flush left changes pending (the adapter maps that to
//! EIO). `status` brings `.sipfs/status` up to date: a mount's always is; a mirror folder's
//! serving process scans the folder first (see `mirror::requests`).

use crate::engine::Engine;

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
