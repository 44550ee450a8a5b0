//! The exit codes of `sipfs`.

use std::process::ExitCode;

use fs_core::FlushReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Pending = 3,
    Conflicts = 4,
}

impl Exit {
    /// Pending changes outrank conflicts: they are the ones that still need the user.
    pub fn of_flush(r: &FlushReport) -> Exit {
        if !r.pending.is_empty() {
            Exit::Pending
        } else if !r.conflicts.is_empty() {
            Exit::Conflicts
        } else {
            Exit::Ok
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}
