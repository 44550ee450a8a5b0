//! `sipfs run BACKING -- COMMAND...`: the launcher's one call. For a project on a network share
//! it mounts (or mirrors) the project through the cache, runs COMMAND with the Smart Sync
//! variables set, flushes and unmounts when COMMAND ends; for a local project it runs COMMAND
//! untouched.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::detect::{detect, Mode};
use crate::mirror_cmd;
use crate::paths::default_mirror_folder;
use crate::{output, Exit, RunArgs};

/// Runs the command with the variables the workflow manager's launcher defines.
fn run_command(cmd: &[String], enabled: bool, network: &Path, local: &Path) -> Result<i32> {
    let (prog, rest) = cmd.split_first().context("no command given after --")?;
    let mut child = Command::new(prog)
        .args(rest)
        .env("SMART_SYNC_ENABLED", if enabled { "true" } else { "false" })
        .env("NETWORK_PROJECT_PATH", network)
        .env("LOCAL_PROJECT_PATH", local)
        .env("PROJECT_PATH", local)
        .spawn()
        .with_context(|| format!("starting {prog}"))?;
    wait_forwarding_signals(&mut child)
}

/// Ctrl-C and stop requests go to the command; sipfs flushes once it has ended.
#[cfg(unix)]
fn wait_forwarding_signals(child: &mut std::process::Child) -> Result<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use std::os::unix::process::ExitStatusExt;
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let handle = signals.handle();
    let pid = child.id() as i32;
    let forwarder = std::thread::spawn(move || {
        for sig in signals.forever() {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid, sig) };
        }
    });
    let status = child.wait()?;
    handle.close();
    let _ = forwarder.join();
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The console's Ctrl-C reaches the command by itself; sipfs only must outlive it to flush.
#[cfg(not(unix))]
fn wait_forwarding_signals(child: &mut std::process::Child) -> Result<i32> {
    // A stop request is noted, and sipfs waits for the command (which got the same console
    // event) and flushes; a closing console waits for that flush (see `stop`).
    crate::stop::install()?;
    Ok(child.wait()?.code().unwrap_or(1))
}

pub fn run(args: RunArgs) -> Result<i32> {
    let (mode, windows_share) = match (detect(&args.backing), args.mode) {
        (Ok(det), mode) => (
            mode.map(Mode::from).unwrap_or(det.recommended),
            det.windows_share,
        ),
        // The share may only be offline: with the mode given, work goes on from the local copy
        // if there is one (the mode's own checks say so).
        (Err(_), Some(mode)) => (Mode::from(mode), false),
        (Err(e), None) => {
            return Err(e.context(
                "cannot tell what the project needs; with --mode mirror or --mode mount, sipfs works from an earlier local copy while the share is away",
            ))
        }
    };
    match mode {
        Mode::None => {
            // A local project: nothing changes for its users.
            let code = run_command(&args.command, false, &args.backing, &args.backing)?;
            Ok(code)
        }
        Mode::Mirror => run_mirrored(&args, windows_share),
        #[cfg(unix)]
        Mode::Mount => run_mounted(&args, windows_share),
        #[cfg(all(windows, target_env = "msvc"))]
        Mode::Mount => run_on_drive(&args, windows_share),
        #[cfg(not(any(unix, all(windows, target_env = "msvc"))))]
        Mode::Mount => {
            anyhow::bail!("this sipfs.exe has no drive (the WinFsp build has); use --mode mirror")
        }
    }
}

fn run_mirrored(args: &RunArgs, windows_share: bool) -> Result<i32> {
    let folder = args
        .at
        .clone()
        .unwrap_or_else(|| default_mirror_folder(&args.backing));
    let setup = mirror_cmd::Setup {
        backing: args.backing.clone(),
        folder: folder.clone(),
        cache: args.cache.clone(),
        ignore: Vec::new(),
        windows_share,
        parallel: 8,
        share_timeout: crate::share::DEFAULT_TIMEOUT_SECS,
    };
    let mirror = Arc::new(mirror_cmd::open(&setup)?.ok_or_else(|| {
        anyhow::anyhow!(
            "another sipfs process already serves the mirror folder {}",
            folder.display()
        )
    })?);
    // Before the command: fill the folder, or pull in what others changed since last time.
    mirror_cmd::sync(&mirror)?;
    let server = mirror_cmd::Server::start(mirror.clone(), 10);
    errln!(
        "sipfs: {} mirrored in {}",
        args.backing.display(),
        mirror.folder().display()
    );
    let code = run_command(&args.command, true, &args.backing, mirror.folder());
    server.stop();
    let last = mirror_cmd::flush_now(&mirror, Some("final"));
    crate::stop::finished();
    finish(code?, &last?, &mirror.engine().options().cache_dir)
}

/// The exit code: the command's, unless the final flush left something to say.
fn finish(code: i32, last: &fs_core::FlushReport, cache: &Path) -> Result<i32> {
    eprint_report(last);
    Ok(match Exit::of_flush(last) {
        Exit::Ok => code,
        Exit::Pending => {
            errln!("sipfs: the command exited with {code}, but changes stay pending in {}: run `sipfs flush` on the project later", cache.display());
            Exit::Pending as i32
        }
        other => {
            errln!("sipfs: the command exited with {code}; conflicting versions were kept on the share");
            other as i32
        }
    })
}

#[cfg(unix)]
fn run_mounted(args: &RunArgs, windows_share: bool) -> Result<i32> {
    use crate::paths::default_cache_dir;
    use std::time::Duration;

    // An unreachable share is worked around from the cache, with a warning, when it has one.
    let backing = match dunce::canonicalize(&args.backing) {
        Ok(b) => b,
        Err(e) => {
            let b = std::path::absolute(&args.backing)?;
            let cache = args.cache.clone().unwrap_or_else(|| default_cache_dir(&b));
            if !cache.join("journal.sqlite").exists() {
                anyhow::bail!(
                    "the share folder {} cannot be reached ({e}; is the share mounted?), and there is no cache of it yet",
                    args.backing.display()
                );
            }
            errln!(
                "sipfs: warning: the share folder {} cannot be reached ({e}); working from the cache {}; changes stay pending until the share is back",
                args.backing.display(),
                cache.display()
            );
            b
        }
    };
    let (at, made_at) = match &args.at {
        Some(p) => (p.clone(), false),
        None => {
            let name = backing
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let p = std::env::temp_dir().join(format!("sipfs-run-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&p)?;
            (p, true)
        }
    };
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(&backing));
    let engine = crate::cache::open_engine(&backing, &cache, Default::default(), windows_share)?;
    // Before the command: pull in what others changed since this cache last looked.
    let refresh = engine.refresh();
    if !refresh.errors.is_empty() {
        errln!("sipfs: warning: the refresh could not reach every folder; working from the cache");
    }
    let mount = |no_permission_checks: bool| {
        fs_unix::mount(
            engine.clone(),
            &at,
            &fs_unix::MountOptions {
                allow_other: args.allow_other,
                no_permission_checks,
                ..Default::default()
            },
        )
        .with_context(|| format!("mounting on {}", at.display()))
    };
    let mut handle = mount(args.no_permission_checks)?;
    errln!("sipfs: {} mounted at {}", backing.display(), at.display());
    if !containers_see(args, &at) {
        let _ = handle.unmount(Duration::from_secs(10));
        drop(engine);
        if made_at {
            let _ = std::fs::remove_dir(&at);
        }
        return run_mirrored(&args.without_at(), windows_share);
    }
    if containers_need_no_checks(args, &at) {
        handle
            .unmount(Duration::from_secs(10))
            .context("unmounting to mount again without permission checks")?;
        handle = mount(true)?;
    }
    let code = run_command(&args.command, true, &args.backing, &at);
    let first = handle.flush(Some("final"));
    if let Err(e) = handle.unmount(Duration::from_secs(10)) {
        errln!("sipfs: warning: unmount: {e}");
    }
    let last = engine.flush(Some("final")).after(&first);
    if made_at {
        let _ = std::fs::remove_dir(&at);
    }
    finish(code?, &last, &cache)
}

/// Windows: the project as a WinFsp drive around the command.
#[cfg(all(windows, target_env = "msvc"))]
fn run_on_drive(args: &RunArgs, windows_share: bool) -> Result<i32> {
    use crate::paths::default_cache_dir;

    let backing = dunce::canonicalize(&args.backing).with_context(|| {
        format!(
            "the share folder {} cannot be reached",
            args.backing.display()
        )
    })?;
    let at = match &args.at {
        Some(p) => p.to_string_lossy().into_owned(),
        None => crate::drive_cmd::free_letter()
            .ok_or_else(|| anyhow::anyhow!("no free drive letter; give one with --at"))?,
    };
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(|| default_cache_dir(&backing));
    let engine = crate::cache::open_engine(&backing, &cache, Default::default(), windows_share)?;
    if !engine.refresh().errors.is_empty() {
        errln!("sipfs: warning: the refresh could not reach every folder; working from the cache");
    }
    let nt = fs_core::nt::NtFs::new(engine.clone(), at.clone());
    let progress = nt.progress().clone();
    // For containers, the network form (docs/WINDOWS.md, "Docker Desktop"): Docker Desktop
    // asks Windows for the final path of what it shares, which a local-disk WinFsp drive
    // cannot give (winfsp#410) and a network drive can.
    let network = args
        .docker_image
        .is_some()
        .then(|| fs_core::nt::names::network_prefix(&backing.to_string_lossy()));
    let drive = fs_windows::Drive::mount(nt, &cache, &at, network.as_deref())?;
    let root = std::path::PathBuf::from(format!("{at}\\"));
    errln!("sipfs: {} mounted at {}", backing.display(), at);
    if !containers_see(args, &root) {
        drive.stop();
        drop(engine);
        return run_mirrored(&args.without_at(), windows_share);
    }
    let code = run_command(&args.command, true, &args.backing, &root);
    let first = progress.flush(&engine, Some("final"));
    drive.stop();
    let last = engine.flush(Some("final")).after(&first);
    crate::stop::finished();
    finish(code?, &last, &cache)
}

impl RunArgs {
    /// For a fallback to a mirror folder: `--at` named the mount point, not a mirror folder.
    fn without_at(&self) -> RunArgs {
        RunArgs {
            at: None,
            ..self.clone()
        }
    }
}

/// With `--docker-image`: whether a container of it sees the mount at `at` (see `probe`).
/// When Docker cannot be asked at all, the mount is kept, with a warning.
#[cfg_attr(not(any(unix, all(windows, target_env = "msvc"))), allow(dead_code))]
fn containers_see(args: &RunArgs, at: &Path) -> bool {
    let Some(image) = &args.docker_image else {
        return true;
    };
    match crate::probe::container_sees(at, image) {
        Ok(crate::probe::Seen::Yes) => true,
        Ok(crate::probe::Seen::No(why)) => {
            errln!(
                "sipfs: a container of {image} does not see the mount at {} ({why}); using a mirror folder instead",
                at.display()
            );
            false
        }
        Err(why) => {
            errln!("sipfs: warning: could not ask Docker whether its containers see the mount ({why}); keeping the mount");
            true
        }
    }
}

/// With `--docker-image` and `--allow-other`, on a mount that checks permissions: whether a
/// container of the image runs as a user who may not write in the project, so that the mount
/// must let everyone do anything for the workflow to work. Says so when it must.
#[cfg(unix)]
fn containers_need_no_checks(args: &RunArgs, at: &Path) -> bool {
    let Some(image) = &args.docker_image else {
        return false;
    };
    if !args.allow_other || args.no_permission_checks {
        return false;
    }
    match crate::probe::container_may_write(at, image) {
        crate::probe::MayWrite::Yes => false,
        crate::probe::MayWrite::No => {
            errln!(
                "sipfs: a container of {image} runs as a user who may not write in the project at {}; mounting it again with --no-permission-checks, so that every user let in may change and delete every file",
                at.display()
            );
            true
        }
        crate::probe::MayWrite::Unknown(why) => {
            errln!("sipfs: warning: could not tell whether a container of {image} may write in the project ({why}); keeping permission checks");
            false
        }
    }
}

fn eprint_report(r: &fs_core::FlushReport) {
    // The command's own output is on stdout: the report goes to stderr.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    output::print_flush_to(&mut output::Out::stderr(), r);
}

impl From<crate::RunMode> for Mode {
    fn from(m: crate::RunMode) -> Mode {
        match m {
            crate::RunMode::Mount => Mode::Mount,
            crate::RunMode::Mirror => Mode::Mirror,
        }
    }
}
