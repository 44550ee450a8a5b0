//! `sipfs mount`: checks, the cache, the FUSE session, and a clean stop on signals.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use fs_unix::{is_sipfs_mount, is_stale_mount, unmount_path, MountOptions};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

use crate::cache::{check_backing, open_engine, setup_of};
use crate::paths::default_cache_dir;
use crate::{output, Exit, MountArgs};

const DAEMON_CHILD: &str = "SIPFS_DAEMON_CHILD";

/// True for a folder on an SMB/CIFS mount (Linux's own client).
fn is_smb(p: &Path) -> bool {
    const CIFS_MAGIC: i64 = 0xFF53_4D42;
    const SMB2_MAGIC: i64 = 0xFE53_4D42;
    const SMB_MAGIC: i64 = 0x517B;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid C string, st a valid out-pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64 & 0xFFFF_FFFF;
    matches!(t, CIFS_MAGIC | SMB2_MAGIC | SMB_MAGIC)
}

fn check_mountpoint(p: &Path) -> Result<PathBuf> {
    if is_stale_mount(p) {
        unmount_path(p, true)
            .with_context(|| format!("clearing the stale mount at {}", p.display()))?;
        errln!(
            "sipfs: cleared a stale mount at {} left by a sipfs process that was killed; its pending changes are in the cache and will be flushed",
            p.display()
        );
    }
    if is_sipfs_mount(p) {
        bail!(
            "{} is already a sipfs mount (see `sipfs status {}`)",
            p.display(),
            p.display()
        );
    }
    let md = fs::metadata(p).with_context(|| {
        format!(
            "the mount point {} does not exist (create an empty directory)",
            p.display()
        )
    })?;
    if !md.is_dir() {
        bail!("the mount point {} is not a directory", p.display());
    }
    if fs::read_dir(p)?.next().is_some() {
        bail!(
            "the mount point {} is not empty; mount on an empty directory so nothing there is hidden",
            p.display()
        );
    }
    dunce::canonicalize(p).with_context(|| format!("resolving {}", p.display()))
}

/// Starts the same command in the background and returns once the mount is ready.
fn daemonize(args: &MountArgs, mountpoint: &Path, cache: &Path) -> Result<Exit> {
    fs::create_dir_all(cache).with_context(|| format!("creating the cache {}", cache.display()))?;
    let log_path = cache.join("sipfs.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening the log {}", log_path.display()))?;
    let exe = std::env::current_exe()?;
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let mut cmd = Command::new(exe);
    cmd.args(&argv)
        .env(DAEMON_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: the terminal closing does not stop it.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the background sipfs")?;
    let deadline = Instant::now() + Duration::from_secs(60 + if args.prefetch { 3600 } else { 0 });
    loop {
        if is_sipfs_mount(mountpoint) {
            outln!(
                "sipfs: {} mounted at {} (pid {}, log {})",
                args.backing.display(),
                mountpoint.display(),
                child.id(),
                log_path.display()
            );
            return Ok(Exit::Ok);
        }
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "the background sipfs stopped ({status}) before the mount was ready:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the mount was not ready in time; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(args: MountArgs) -> Result<Exit> {
    let backing = check_backing(&args.backing)?;
    let mountpoint = check_mountpoint(&args.mountpoint)?;
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(&backing));
    if args.daemon && std::env::var_os(DAEMON_CHILD).is_none() {
        return daemonize(&args, &mountpoint, &cache);
    }
    let windows_share = args.windows_share || is_smb(&backing);
    let engine = open_engine(&backing, &cache, setup_of(&args), windows_share)?;
    if args.prefetch {
        let bar = indicatif::ProgressBar::new(0);
        let n = engine
            .prefetch(&|p| {
                bar.set_length(p.total);
                bar.set_position(p.done);
            })
            .context("prefetching the project")?;
        bar.finish_and_clear();
        info!(files = n, "prefetched");
    }
    let mopts = MountOptions {
        allow_other: args.allow_other,
        no_permission_checks: args.no_permission_checks,
        passthrough: !args.no_passthrough,
        xattrs: !args.no_xattrs,
        ..Default::default()
    };
    let handle = fs_unix::mount(engine.clone(), &mountpoint, &mopts)
        .with_context(|| format!("mounting on {}", mountpoint.display()))?;
    let _retries = fs_core::auto_retry::AutoRetry::after_secs(args.retry_after)
        .map(|r| r.spawn(engine.clone()));
    errln!(
        "sipfs: {} mounted at {} (Ctrl-C to flush and unmount)",
        backing.display(),
        mountpoint.display()
    );

    let (tx, signals_rx) = mpsc::channel();
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = tx.send(sig);
        }
    });
    let mut reports = Vec::new();
    loop {
        let stop = signals_rx
            .try_recv()
            .ok()
            .or(handle.stop_requested().then_some(0));
        if let Some(sig) = stop {
            info!(signal = sig, "stopping: flushing, then unmounting");
            reports.push(handle.flush(Some("unmount")));
            if let Err(e) = handle.unmount(Duration::from_secs(10)) {
                warn!(error = %e, "unmount failed");
            }
            break;
        }
        if handle.wait_ended(Duration::from_millis(200)) {
            info!("unmounted from outside");
            let mut handle = handle;
            let _ = handle.join();
            break;
        }
    }
    sig_handle.close();
    // What was written between the flush and the unmount, or everything if unmounted from
    // outside. Whatever cannot be written stays in the cache for the next mount.
    let mut merged = engine.flush(Some("unmount"));
    for r in &reports {
        merged = merged.after(r);
    }
    Ok(output::stopped(&merged, &cache))
}
