//! How reports look on a terminal.

use std::io::Write;

use fs_core::report::human_bytes;
use fs_core::{FlushReport, RefreshReport, Status};

const SHOWN: usize = 20;

pub fn print_flush(r: &FlushReport) {
    print_flush_to(&mut std::io::stdout(), r);
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
    println!(
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
        println!("  {}: {} ({})", e.path, e.reason.describe(), e.message);
    }
}

pub fn print_status(s: &Status) {
    println!("share:   {}", s.backing);
    println!(
        "cache:   {} ({} file(s), {})",
        s.cache_dir,
        s.cached_files,
        human_bytes(s.cache_bytes)
    );
    if s.pending_files == 0 && s.pending_changes == 0 && s.pending_paths.is_empty() {
        println!("pending: nothing");
    } else {
        println!(
            "pending: {} file(s) ({}), {} other change(s)",
            s.pending_files,
            human_bytes(s.pending_bytes),
            s.pending_changes
        );
        for p in s.pending_paths.iter().take(SHOWN) {
            println!("  {p}");
        }
        if s.pending_paths.len() > SHOWN {
            println!("  ...");
        }
    }
    match &s.last_flush {
        Some(f) => {
            println!("last flush: {} — {}", f.started_at, f.summary());
            for p in f.pending.iter().take(SHOWN) {
                println!("  {}: {} → {}", p.path, p.reason.describe(), p.advice);
            }
        }
        None => println!("last flush: never"),
    }
    if let Some(r) = &s.last_retry {
        println!("last retry: {} — {}", r.started_at, r.summary());
    }
    match &s.last_refresh {
        Some(r) => println!(
            "last refresh: {} — {} new, {} changed, {} removed",
            r.started_at, r.added, r.changed, r.removed
        ),
        None => println!("last refresh: never"),
    }
    if !s.conflicts.is_empty() {
        println!("open conflicts:");
        for c in &s.conflicts {
            println!("  {} (share's version: {})", c.path, c.kept_as);
        }
    }
}
