//! Starting and stopping a mount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fs_core::control::FlushProgress;
use fs_core::Engine;
use tracing::warn;

#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let other users (and containers running as other users) in.
    pub allow_other: bool,
    /// With `allow_other`: check nothing, so that anyone let in may read, change and delete
    /// anything, whatever the modes and owners say (for containers that run as a user who owns
    /// nothing in the project). Off, the default, the kernel checks modes and owners as on a
    /// local disk, for the mounting user and everyone let in alike.
    pub no_permission_checks: bool,
    /// Hand file I/O to the kernel (FUSE passthrough) when it supports it.
    pub passthrough: bool,
    /// Threads serving FUSE requests. A flush asked through the control file occupies one.
    pub threads: usize,
    /// Serve extended attributes. Off, every xattr call is "not supported" and new files cost
    /// one kernel round trip less (see docs/ARCHITECTURE.md, "Set-ID bits").
    pub xattrs: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            allow_other: false,
            no_permission_checks: false,
            passthrough: true,
            threads: 4,
            xattrs: true,
        }
    }
}

/// A running mount. Dropping it does not unmount; call [`MountHandle::unmount`].
pub struct MountHandle {
    mountpoint: PathBuf,
    session: Option<JoinHandle<io::Result<()>>>,
    ended: mpsc::Receiver<()>,
    engine: Arc<Engine>,
    progress: Arc<FlushProgress>,
}

/// Mounts `engine` at `mountpoint` and serves it from background threads.
#[cfg(sipfs_fuse)]
pub fn mount(
    engine: Arc<Engine>,
    mountpoint: &Path,
    opts: &MountOptions,
) -> io::Result<MountHandle> {
    use crate::state::SipFs;
    use fuser::{Config, SessionACL};

    let mut fs = SipFs::new(
        engine.clone(),
        mountpoint.display().to_string(),
        opts.passthrough,
    );
    fs.xattrs = opts.xattrs;
    let progress = fs.progress.clone();
    let notifier = fs.notifier.clone();
    let mut config = Config::default();
    config.mount_options = mount_options(&engine, mountpoint, opts);
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    // Several threads, so that a flush asked through the control file does not stall the mount;
    // fuser runs more than one only on Linux. On macOS the one session thread serves every
    // request, a flush through the control file included (docs/MACOS.md).
    #[cfg(target_os = "linux")]
    {
        config.n_threads = Some(opts.threads.max(2));
        config.clone_fd = true;
    }
    let session = fuser::Session::new(fs, mountpoint, &config)?;
    let _ = notifier.set(session.notifier());
    let (tx, ended) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sipfs-fuse".into())
        .spawn(move || {
            let r = session.run();
            let _ = tx.send(());
            r
        })?;
    tracing::info!(mountpoint = %mountpoint.display(), "serving");
    Ok(MountHandle {
        mountpoint: mountpoint.to_path_buf(),
        session: Some(thread),
        ended,
        engine,
        progress,
    })
}

/// This build has no FUSE mount (macOS without the `macfuse` feature): it says so, and what
/// serves the project instead.
#[cfg(not(sipfs_fuse))]
pub fn mount(
    _engine: Arc<Engine>,
    _mountpoint: &Path,
    _opts: &MountOptions,
) -> io::Result<MountHandle> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this sipfs was built without the FUSE mount: on macOS sipfs keeps a mirror folder \
         (`sipfs run` does so by default, or `sipfs mirror SHARE FOLDER`); the mount needs \
         macFUSE and a build with `--features macfuse` (docs/MACOS.md)",
    ))
}

/// The mount options: the source names sipfs and the share, as `is_sipfs_mount` looks for.
#[cfg(sipfs_fuse)]
fn mount_options(
    engine: &Engine,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Vec<fuser::MountOption> {
    use fuser::MountOption;
    let mut options = vec![
        MountOption::FSName(format!("sipfs:{}", engine.backing().describe())),
        MountOption::NoAtime,
        MountOption::Exec,
    ];
    // The type Linux shows (`fuse.sipfs`); macFUSE's mount tool knows no such option.
    #[cfg(not(target_os = "macos"))]
    options.push(MountOption::Subtype("sipfs".into()));
    if !(opts.allow_other && opts.no_permission_checks) {
        // The kernel checks modes and owners for us (owners as the engine records them). A
        // file system that keeps a lab's data is as safe as the disk it stands in for: a user
        // let in by `allow_other` may not delete or chmod someone else's files.
        options.push(MountOption::DefaultPermissions);
    }
    #[cfg(target_os = "macos")]
    options.extend(
        macos_mount_options(mountpoint)
            .into_iter()
            .map(MountOption::CUSTOM),
    );
    #[cfg(not(target_os = "macos"))]
    let _ = mountpoint;
    options
}

/// macFUSE's own options: Finder shows the volume under the project's name (`volname`), and
/// Finder's `._NAME` AppleDouble files and `com.apple.*` attributes are kept off it
/// (`noappledouble`, `noapplexattr`), so they neither reach the share nor count as changes.
/// Spotlight does not index it: without `allow_other` macFUSE keeps every other user out,
/// Spotlight's root-run indexer included; with it, the root's `.metadata_never_index`
/// (`control_dir`) says no; and sipfs never passes `local`, which would make the volume look
/// like a local disk to index.
#[cfg(all(target_os = "macos", sipfs_fuse))]
fn macos_mount_options(mountpoint: &Path) -> Vec<String> {
    let name = mountpoint
        .file_name()
        .map(|n| n.to_string_lossy().replace(',', "_"))
        .unwrap_or_else(|| "sipfs".into());
    vec![
        format!("volname={name}"),
        "noappledouble".into(),
        "noapplexattr".into(),
    ]
}

impl MountHandle {
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Waits up to `timeout` for the mount to end (unmounted from outside). True if it ended.
    pub fn wait_ended(&self, timeout: Duration) -> bool {
        !matches!(
            self.ended.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// A `stop` was written to the control file.
    pub fn stop_requested(&self) -> bool {
        self.progress
            .stop_requested
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Flushes through the same path the control file uses (progress shows in `status`).
    pub fn flush(&self, label: Option<&str>) -> fs_core::FlushReport {
        self.progress.flush(&self.engine, label)
    }

    /// Unmounts and waits for the session to end. A mount still in use is detached: programs
    /// that have files open keep them for up to `grace`, then the session is left behind.
    pub fn unmount(mut self, grace: Duration) -> io::Result<()> {
        if let Err(e) = unmount_path(&self.mountpoint, false) {
            if e.raw_os_error() == Some(libc::EBUSY) {
                warn!(mountpoint = %self.mountpoint.display(), "still in use; detaching it");
                unmount_path(&self.mountpoint, true)?;
                if !self.wait_ended(grace) {
                    warn!("files stayed open in the mount; stopping without waiting for them");
                    return Ok(());
                }
            } else if !self.wait_ended(Duration::ZERO) {
                return Err(e);
            }
        }
        self.join()
    }

    /// Waits for the session thread after the mount went away.
    pub fn join(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("FUSE session panicked"))),
            None => Ok(()),
        }
    }
}

/// Unmounts a FUSE mount: directly as root, else through fusermount3.
#[cfg(not(target_os = "macos"))]
pub fn unmount_path(path: &Path, lazy: bool) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: c is a valid C string.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    for tool in ["fusermount3", "fusermount"] {
        let mut cmd = Command::new(tool);
        cmd.arg(if lazy { "-uz" } else { "-u" }).arg(path);
        match cmd.status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(_) => return Err(io::Error::from_raw_os_error(libc::EBUSY)),
            Err(_) => continue,
        }
    }
    Err(err)
}

/// Unmounts a macFUSE mount. macOS lets the user who mounted a volume unmount it
/// (`unmount(2)`); it has no lazy detach, so `lazy` forces it (`MNT_FORCE`: files still open
/// in it fail from then on). `diskutil` is asked when the call is refused.
#[cfg(target_os = "macos")]
pub fn unmount_path(path: &Path, lazy: bool) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let flags = if lazy { libc::MNT_FORCE } else { 0 };
    // SAFETY: c is a valid C string.
    if unsafe { libc::unmount(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    let mut cmd = Command::new("/usr/sbin/diskutil");
    cmd.arg("unmount");
    if lazy {
        cmd.arg("force");
    }
    match cmd.arg(path).status() {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EBUSY)),
        Err(_) => Err(err),
    }
}

/// True when `path` is a FUSE mount whose process is gone. Asked with statfs, which the
/// kernel never answers from its caches (a stat may be answered from them for a while).
pub fn is_stale_mount(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid C string, st a valid out-pointer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // macFUSE answers ENXIO for a volume whose process is gone, Linux ENOTCONN.
    r != 0
        && matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENOTCONN | libc::ENXIO)
        )
}

/// True when `path` is currently a mount point of a sipfs file system.
#[cfg(not(target_os = "macos"))]
pub fn is_sipfs_mount(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (src, target, fstype) = (f.next(), f.next(), f.next());
        // Mounted directly (as root) the type is plain `fuse`; the source names sipfs.
        target.map(unescape_mount_path) == Some(canon.display().to_string())
            && (fstype.is_some_and(|t| t.contains("sipfs"))
                || src.is_some_and(|s| s.starts_with("sipfs:")))
    })
}

/// True when `path` is currently a mount point of a sipfs file system: statfs names the
/// volume's own mount point and its source, which sipfs sets to `sipfs:SHARE`.
#[cfg(target_os = "macos")]
pub fn is_sipfs_mount(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    fs_core::volume::statfs(&canon)
        .is_ok_and(|v| Path::new(&v.mounted_on) == canon && v.mounted_from.starts_with("sipfs:"))
}

#[cfg(not(target_os = "macos"))]
fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\134", "\\")
}
