//! Commands that talk to a running mount through its control files: `.sipfs/control` to ask,
//! `.sipfs/status` to read the outcome. The same files serve programs in containers.

use std::fs::{self, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fs_core::ignore_rules::CONTROL_DIR;
use fs_core::{FlushReport, Status};
use serde::Deserialize;

use crate::output;
use crate::Exit;

/// What `.sipfs/status` holds: the engine's status plus what only the mount knows.
#[derive(Deserialize)]
struct MountStatus {
    #[serde(flatten)]
    status: Status,
    #[cfg_attr(not(unix), allow(dead_code))]
    pid: u32,
    flush_progress: Option<FlushProgress>,
}

#[derive(Deserialize)]
struct FlushProgress {
    done: u64,
    total: u64,
    bytes: u64,
}

fn control_dir(mountpoint: &Path) -> Result<PathBuf> {
    let dir = mountpoint.join(CONTROL_DIR);
    if !dir.join("control").exists() {
        #[cfg(unix)]
        if fs_unix::is_stale_mount(mountpoint) {
            bail!(
                "{} is a mount whose sipfs process is gone; run `sipfs unmount {}` to clear it, then mount again (pending changes are kept in the cache)",
                mountpoint.display(),
                mountpoint.display()
            );
        }
        bail!(
            "{} is not a sipfs mount (it has no .sipfs/control)",
            mountpoint.display()
        );
    }
    Ok(dir)
}

fn read_status(mountpoint: &Path) -> Result<MountStatus> {
    let path = control_dir(mountpoint)?.join("status");
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Sends one command. `Ok(false)` when the mount answered that changes stay pending (EIO).
fn send(mountpoint: &Path, command: &str) -> Result<bool> {
    let path = control_dir(mountpoint)?.join("control");
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.write_all(command.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if is_pending_answer(&e) => Ok(false),
        Err(e) => {
            Err(anyhow!(e).context(format!("sending `{command}` to {}", mountpoint.display())))
        }
    }
}

/// Shows a progress bar while a long flush runs, when a person is watching.
fn progress_watcher(mountpoint: &Path) -> Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let mp = mountpoint.to_path_buf();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let mut bar: Option<indicatif::ProgressBar> = None;
        while !s.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            if start.elapsed() < Duration::from_secs(1) {
                continue;
            }
            let Ok(st) = read_status(&mp) else { continue };
            let Some(p) = st.flush_progress.filter(|p| p.total > 0) else {
                continue;
            };
            let b = bar.get_or_insert_with(|| {
                let b = indicatif::ProgressBar::new(p.total);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "flushing {bar:30} {pos}/{len} files, {msg} {elapsed}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            b.set_length(p.total.max(p.done));
            b.set_position(p.done);
            b.set_message(fs_core::report::human_bytes(p.bytes));
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    });
    Some((stop, t))
}

fn flush_report(mountpoint: &Path, label: Option<&str>) -> Result<FlushReport> {
    let command = match label {
        Some(l) if l.contains('\n') => bail!("a step label must be one line"),
        Some(l) => format!("flush {l}\n"),
        None => "flush\n".to_owned(),
    };
    let watcher = progress_watcher(mountpoint);
    let sent = send(mountpoint, &command);
    if let Some((stop, t)) = watcher {
        stop.store(true, Ordering::Relaxed);
        let _ = t.join();
    }
    sent?;
    read_status(mountpoint)?
        .status
        .last_flush
        .ok_or_else(|| anyhow!("the mount reported no flush"))
}

pub fn flush(mountpoint: &Path, label: Option<&str>, json: bool) -> Result<Exit> {
    let r = flush_report(mountpoint, label)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        output::print_flush(&r);
    }
    Ok(Exit::of_flush(&r))
}

pub fn refresh(mountpoint: &Path, json: bool) -> Result<Exit> {
    let ok = send(mountpoint, "refresh\n")?;
    let r = read_status(mountpoint)?
        .status
        .last_refresh
        .ok_or_else(|| anyhow!("the mount reported no refresh"))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        output::print_refresh(&r);
    }
    Ok(if ok { Exit::Ok } else { Exit::Error })
}

pub fn status(mountpoint: &Path, json: bool) -> Result<Exit> {
    if json {
        let path = control_dir(mountpoint)?.join("status");
        out!("{}", fs::read_to_string(path)?);
    } else {
        output::print_status(&read_status(mountpoint)?.status);
    }
    Ok(Exit::Ok)
}

#[cfg(unix)]
pub fn unmount(mountpoint: &Path) -> Result<Exit> {
    if fs_unix::is_stale_mount(mountpoint) {
        fs_unix::unmount_path(mountpoint, true)
            .with_context(|| format!("clearing the stale mount at {}", mountpoint.display()))?;
        errln!(
            "sipfs: cleared a stale mount at {} (its process was gone); pending changes are still in its cache and are written by the next mount's flush",
            mountpoint.display()
        );
        return Ok(Exit::Ok);
    }
    let pid = read_status(mountpoint)?.pid;
    let report = flush_report(mountpoint, Some("unmount"))?;
    output::print_flush(&report);
    // Asked to stop, the mount process unmounts, flushes what came in meanwhile, and exits.
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid as i32, libc::SIGTERM) } != 0 {
        fs_unix::unmount_path(mountpoint, false)
            .with_context(|| format!("unmounting {}", mountpoint.display()))?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while process_alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "the sipfs process {pid} did not finish within 2 minutes; it may still be flushing"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Exit::of_flush(&report))
}

/// True while `pid` runs (a zombie waiting for its parent counts as gone).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        // No /proc (macOS): ask the kernel.
        // SAFETY: kill with signal 0 only checks that the process exists.
        Err(_) if !Path::new("/proc/self").exists() => unsafe { libc::kill(pid as i32, 0) == 0 },
        Err(_) => false,
    }
}

/// How a mount or drive answers a write to `control` whose command did not fully succeed:
/// EIO, which Windows reports as ERROR_IO_DEVICE.
fn is_pending_answer(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    const CODE: i32 = libc::EIO;
    #[cfg(windows)]
    const CODE: i32 = 1117;
    e.raw_os_error() == Some(CODE)
}

/// A Windows drive: flush, then `stop` through the control file (there are no signals to send),
/// and wait for the drive to go.
#[cfg(not(unix))]
pub fn unmount(mountpoint: &Path) -> Result<Exit> {
    let report = flush_report(mountpoint, Some("unmount"))?;
    output::print_flush(&report);
    send(mountpoint, "stop\n")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while mountpoint.join(CONTROL_DIR).join("control").exists() {
        if Instant::now() > deadline {
            bail!(
                "{} is still mounted after 2 minutes; its sipfs process may still be flushing",
                mountpoint.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Exit::of_flush(&report))
}
