//! How reports look on a terminal, and the one place that writes to stdout and stderr.
//!
//! A reader that closes the pipe early (`sipfs status | head -3`) must never make sipfs panic
//! or stop half-way through a flush: writes to a closed pipe are dropped here, quietly, and
//! [`closed_pipe`] tells `main` it happened. (Rust ignores SIGPIPE, so without this every
//! `println!` after the reader left would panic.)

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use fs_core::report::human_bytes;
use fs_core::{FlushReport, RefreshReport, Status};

const SHOWN: usize = 20;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// True once a write found its reader gone.
pub fn closed_pipe() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// An error and its causes on one line, each said once. fs-core's errors carry their cause in
/// their own message (so that they read whole in a log or a report) and also as their source;
/// printing the whole chain would then say a full disk three times over.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn write_or_note(w: &mut dyn Write, bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = w.write_all(bytes).and_then(|_| w.flush()) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        }
        // Any other failure to print (a full disk behind a redirect) must not stop the work
        // either: the exit code still tells what happened.
    }
}

pub fn to_stdout(args: fmt::Arguments<'_>) {
    write_or_note(&mut io::stdout().lock(), args.to_string().as_bytes());
}

pub fn to_stderr(args: fmt::Arguments<'_>) {
    write_or_note(&mut io::stderr().lock(), args.to_string().as_bytes());
}

/// A writer over stdout or stderr that drops what a closed pipe cannot take.
pub struct Out(pub fn() -> Box<dyn Write>);

impl Out {
    pub fn stdout() -> Out {
        Out(|| Box::new(io::stdout()))
    }
    pub fn stderr() -> Out {
        Out(|| Box::new(io::stderr()))
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_or_note(&mut (self.0)(), buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a mount or drive says when it stops: the last flush, and where what stays pending is.
pub fn stopped(r: &FlushReport, cache: &std::path::Path) -> crate::Exit {
    print_flush(r);
    if !r.pending.is_empty() {
        errln!(
            "sipfs: {} change(s) stay pending in {}; mount the share again and flush to write them",
            r.pending.len(),
            cache.display()
        );
    }
    crate::Exit::of_flush(r)
}

pub fn print_flush(r: &FlushReport) {
    print_flush_to(&mut Out::stdout(), r);
}

pub fn print_flush_to(w: &mut dyn Write, r: &FlushReport) {
    let label = r
        .label
        .as_deref()
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    let _ = writeln!(w, "flush{label}: {}", r.summary());
    if r.rolled_forward > 0 {
        let _ = writeln!(
            w,
            "  finished {} file(s) an interrupted flush had left",
            r.rolled_forward
        );
    }
    for warning in &r.warnings {
        let _ = writeln!(w, "  warning: {warning}");
    }
    if !r.pending.is_empty() {
        let _ = writeln!(w, "pending (kept in the cache, nothing lost):");
        for p in r.pending.iter().take(SHOWN) {
            let _ = writeln!(w, "  {}: {} ({})", p.path, p.reason.describe(), p.message);
            let _ = writeln!(w, "    → {}", p.advice);
        }
        if r.pending.len() > SHOWN {
            let _ = writeln!(
                w,
                "  ... and {} more (see `sipfs status --json`)",
                r.pending.len() - SHOWN
            );
        }
    }
    if !r.conflicts.is_empty() {
        let _ = writeln!(w, "conflicts (both versions kept):");
        for c in &r.conflicts {
            let _ = writeln!(w, "  {}: the share's version is now {}", c.path, c.kept_as);
        }
    }
}

pub fn print_refresh(r: &RefreshReport) {
    outln!(
        "refresh: {} folder(s) checked in {:.2}s: {} new, {} changed, {} removed{}",
        r.dirs_scanned,
        r.duration_ms as f64 / 1000.0,
        r.added,
        r.changed,
        r.removed,
        if r.kept_local > 0 {
            format!(
                ", {} kept (changed here too; the next flush settles them)",
                r.kept_local
            )
        } else {
            String::new()
        }
    );
    for e in &r.errors {
        outln!("  {}: {} ({})", e.path, e.reason.describe(), e.message);
    }
}

pub fn print_status(s: &Status) {
    outln!("share:   {}", s.backing);
    if s.no_replace
        .is_some_and(fs_core::noreplace::NoReplace::is_weak)
    {
        outln!("weak:    {}", fs_core::noreplace::WEAK_WARNING);
    }
    let limit = s
        .cache_limit_bytes
        .map(|l| format!(" of at most {}", human_bytes(l)))
        .unwrap_or_default();
    outln!(
        "cache:   {} ({} file(s), {}{limit})",
        s.cache_dir,
        s.cached_files,
        human_bytes(s.cache_bytes)
    );
    if !s.fetching.is_empty() {
        outln!(
            "fetching: {} big file(s), readable meanwhile",
            s.fetching.len()
        );
        for f in s.fetching.iter().take(SHOWN) {
            outln!(
                "  {}: {} of {}",
                f.path,
                human_bytes(f.fetched_bytes),
                human_bytes(f.size)
            );
        }
    }
    if s.pending_files == 0 && s.pending_changes == 0 && s.pending_paths.is_empty() {
        outln!("pending: nothing");
    } else {
        outln!(
            "pending: {} file(s) ({}), {} other change(s)",
            s.pending_files,
            human_bytes(s.pending_bytes),
            s.pending_changes
        );
        for p in s.pending_paths.iter().take(SHOWN) {
            outln!("  {p}");
        }
        if s.pending_paths.len() > SHOWN {
            outln!("  ...");
        }
    }
    if !s.kept_local.is_empty() {
        outln!(
            "kept local: {} entry(s) the share cannot hold, in the cache only",
            s.kept_local.len()
        );
        for k in s.kept_local.iter().take(SHOWN) {
            outln!("  {}: {}", k.path, k.reason);
        }
        if s.kept_local.len() > SHOWN {
            outln!("  ...");
        }
    }
    match &s.last_flush {
        Some(f) => {
            outln!("last flush: {} — {}", f.started_at, f.summary());
            for p in f.pending.iter().take(SHOWN) {
                outln!("  {}: {} → {}", p.path, p.reason.describe(), p.advice);
            }
        }
        None => outln!("last flush: never"),
    }
    if let Some(r) = &s.last_retry {
        outln!("last retry: {} — {}", r.started_at, r.summary());
    }
    match &s.last_refresh {
        Some(r) => outln!(
            "last refresh: {} — {} new, {} changed, {} removed",
            r.started_at,
            r.added,
            r.changed,
            r.removed
        ),
        None => outln!("last refresh: never"),
    }
    if !s.conflicts.is_empty() {
        outln!("open conflicts:");
        for c in &s.conflicts {
            outln!("  {} (share's version: {})", c.path, c.kept_as);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn an_error_line_says_each_cause_once() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = fs_core::error::JournalError::Io {
            path: "cache/tmp".into(),
            source: full,
        };
        let e = anyhow::Error::from(fs_core::FsError::from(e));
        assert_eq!(
            error_line(&e),
            "journal: cache/tmp: No space left on device (os error 28)"
        );
        // Context that does not repeat its cause keeps it.
        let e = anyhow::Error::from(std::io::Error::from_raw_os_error(libc::ENOENT))
            .context("the mount point /m does not exist");
        assert_eq!(
            error_line(&e),
            "the mount point /m does not exist: No such file or directory (os error 2)"
        );
    }
}
