//! `sipfs mount Z:\proj S:` on Windows: the project as a WinFsp drive (or folder mount point),
//! served by the engine until Ctrl-C, a closing console, logoff, shutdown or `sipfs unmount`.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fs_core::nt::NtFs;
use tracing::info;

use crate::cache::{check_backing, open_engine, setup_of};
use crate::paths::default_cache_dir;
use crate::{output, Exit, MountArgs};

/// The first free drive letter from Z: down, as WinFsp's own choice would be.
pub fn free_letter() -> Option<String> {
    (b'D'..=b'Z')
        .rev()
        .map(|l| format!("{}:", l as char))
        .find(|d| !Path::new(&format!("{d}\\")).exists())
}

/// Where to mount: `S:` (a free letter), `*` (the next free letter), or a folder that does not
/// exist yet (WinFsp creates it as a mount point).
fn check_target(at: &Path) -> Result<String> {
    let s = at.to_string_lossy().into_owned();
    if s == "*" {
        return free_letter().ok_or_else(|| anyhow::anyhow!("no drive letter is free"));
    }
    let b = s.as_bytes();
    if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        if Path::new(&format!("{s}\\")).exists() {
            bail!("the drive {s} is in use; pick a free letter, or `*` for the next free one");
        }
        return Ok(s.to_ascii_uppercase());
    }
    if at.exists() {
        bail!(
            "{} exists; WinFsp mounts on a folder that does not exist yet (it creates it)",
            at.display()
        );
    }
    let parent = at.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent.filter(|p| !p.is_dir()) {
        bail!(
            "the folder {} for the mount point does not exist",
            p.display()
        );
    }
    Ok(s)
}

pub fn run(args: MountArgs) -> Result<Exit> {
    let backing = check_backing(&args.backing)?;
    let at = check_target(&args.mountpoint)?;
    if fs_windows::winfsp_dir().is_none() {
        bail!(
            "WinFsp is not installed: get it from {} (the installer, default options), then run sipfs mount again. Without it, `sipfs mirror {} FOLDER` keeps a plain local folder instead",
            fs_windows::WINFSP_DOWNLOAD,
            backing.display()
        );
    }
    if args.daemon {
        bail!("--daemon is for Linux and macOS; on Windows start the drive in its own console (`start sipfs mount ...`)");
    }
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(&backing));
    let windows_share =
        args.windows_share || crate::detect::detect(&backing).is_ok_and(|d| d.windows_share);
    let engine = open_engine(&backing, &cache, setup_of(&args), windows_share)?;
    if args.prefetch {
        let n = engine
            .prefetch(&|_| {})
            .context("prefetching the project")?;
        info!(files = n, "prefetched");
    }
    crate::stop::install()?;
    let nt = NtFs::new(engine.clone(), at.clone());
    let progress = nt.progress().clone();
    let network = args
        .network_drive
        .then(|| fs_core::nt::names::network_prefix(&backing.to_string_lossy()));
    let drive = fs_windows::Drive::mount(nt, &cache, &at, network.as_deref())?;
    let _retries = fs_core::auto_retry::AutoRetry::after_secs(args.retry_after)
        .map(|r| r.spawn(engine.clone()));
    errln!(
        "sipfs: {} mounted at {} (Ctrl-C to flush and unmount)",
        backing.display(),
        drive.mount_point
    );
    while !crate::stop::requested() && !progress.stop_requested.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    info!("stopping: flushing, then unmounting");
    let first = progress.flush(&engine, Some("unmount"));
    drive.stop();
    // What came in between the flush and the unmount.
    let last = engine.flush(Some("unmount")).after(&first);
    crate::stop::finished();
    Ok(output::stopped(&last, &cache))
}
