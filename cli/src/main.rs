//! `sipfs`: work on a project that lives on a slow or unreliable network share as if it were on
//! a fast local disk, and write the changes back when you choose.
//!
//! A thin layer over sipfs-core (the engine) and sipfs-unix (the FUSE mount): argument parsing,
//! messages and exit codes live here, nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Printing that a closed pipe cannot turn into a panic (see `output::closed_pipe`).
macro_rules! outln {
    ($($t:tt)*) => { $crate::output::to_stdout(format_args!("{}\n", format_args!($($t)*))) };
}
macro_rules! out {
    ($($t:tt)*) => { $crate::output::to_stdout(format_args!($($t)*)) };
}
macro_rules! errln {
    ($($t:tt)*) => { $crate::output::to_stderr(format_args!("{}\n", format_args!($($t)*))) };
}

#[cfg(any(unix, all(windows, target_env = "msvc")))]
mod cache;
mod client;
mod detect;
#[cfg(all(windows, target_env = "msvc"))]
mod drive_cmd;
mod exit;
mod mirror_cmd;
#[cfg(unix)]
mod mount_cmd;
mod output;
mod paths;
mod probe;
mod run_cmd;
mod share;
mod stop;

/// Exit codes, documented in `sipfs --help` and docs/USER_GUIDE.md.
pub use exit::Exit;

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  error (the message says what and why)
  2  wrong usage
  3  changes remain pending (share unreachable, refused, locked...): nothing is lost,
     run `sipfs flush` again once the cause is fixed
  4  conflicting versions were kept side by side (NAME.sipfs-conflict-DATE-TIME.EXT)";

#[derive(Parser)]
#[command(
    name = "sipfs",
    version,
    about = "Work on a project on a slow network share at local-disk speed; write changes back when you choose",
    long_about = "sipfs presents a project folder that lives on a network share (SMB, NFS, sshfs...) \
as a local file system backed by a write-back cache on local disk. Programs read and write at \
local-disk speed; changes reach the share only when flushed (`sipfs flush`, a write to \
MOUNTPOINT/.sipfs/control, or at unmount). A refresh pulls in what others changed. A flush that \
cannot finish loses nothing: the change stays pending, survives a crash or reboot, and is \
reported by path with a reason.",
    after_help = EXIT_CODES,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount a share-backed project at a local mount point
    #[command(after_help = "Examples:
  sipfs mount /mnt/share/proj ~/proj
  sipfs mount /mnt/share/proj ~/proj --daemon --allow-other
  sipfs mount /mnt/share/proj ~/proj --cache /fast/disk/sipfs-proj

Stop it with Ctrl-C, SIGTERM or `sipfs unmount MOUNTPOINT`: pending changes are flushed first.
If that flush cannot finish, they stay in the cache and are written by the next mount's flush.

Other users: only you may use the mount unless --allow-other lets others in. They are then held
to modes and owners as on a local disk: nobody deletes, renames or chmods a file that is not
theirs to change. Root, and so a container running as root, may do anything, as on a disk. A
container that runs as a user who owns nothing in the project needs --no-permission-checks.

Exit codes: as for `sipfs flush` (3: changes remain pending, 4: conflicts kept).")]
    Mount(MountArgs),
    /// Write pending changes to the share now
    #[command(after_help = "Examples:
  sipfs flush ~/proj --step step-3
  sipfs flush ~/proj --json > report.json

From a program that cannot run sipfs (a step in a container):
  echo \"flush step-3\" > ~/proj/.sipfs/control   # fails with EIO if changes stay pending

Exit codes: 0 all written, 3 changes remain pending, 4 conflicting versions kept, 1 error.")]
    Flush(FlushArgs),
    /// Pull in what others changed on the share (clean entries only)
    #[command(after_help = "Example:
  sipfs refresh ~/proj

Files changed here and on the share are left alone; the next flush keeps both versions.")]
    Refresh(ReportArgs),
    /// Show what is pending, the last flush and refresh, conflicts and cache size
    #[command(after_help = "Examples:
  sipfs status ~/proj
  sipfs status ~/proj --json     # what MOUNTPOINT/.sipfs/status holds")]
    Status(ReportArgs),
    /// Say whether a folder is on a network share and what sipfs would do about it
    #[command(after_help = "Examples:
  sipfs detect /mnt/share/proj
  sipfs detect Z:\\proj --json

Network file systems: SMB/CIFS, NFS, sshfs, rclone and other network or FUSE file systems
(Windows: mapped drives and UNC paths). Local folders: nothing to do.")]
    Detect(ReportPathArgs),
    /// Run a command on a project, through sipfs when the project is on a network share
    #[command(after_help = "Examples:
  sipfs run /mnt/share/proj -- python run.py
  sipfs run /mnt/share/proj --at ~/proj -- docker compose up
  sipfs run Z:\\proj --mode mirror --at C:\\temp\\sip_workflow\\proj -- python run.py

The command gets SMART_SYNC_ENABLED (true/false), NETWORK_PROJECT_PATH (the share),
LOCAL_PROJECT_PATH and PROJECT_PATH (where to work). For a network project sipfs refreshes,
mounts (or fills and serves the mirror folder), runs the command, then flushes and unmounts. For a local project the command runs
untouched (SMART_SYNC_ENABLED=false, PROJECT_PATH=the project). Signals go to the command.

Exit code: the command's, or 3 / 4 if the final flush left changes pending or kept conflicting
versions (sipfs says so).")]
    Run(RunArgs),
    /// Keep a plain local folder in sync with a share-backed project (mirror mode)
    #[command(after_help = "Examples:
  sipfs mirror /mnt/share/proj ~/proj-mirror
  sipfs mirror Z:\\proj C:\\temp\\sip_workflow\\proj

For where a mounted drive cannot be used (Docker Desktop on Windows with drives other than C:,
WSL2). The folder is filled from the share first, then served until Ctrl-C: programs work in it
directly; `sipfs flush FOLDER`, `sipfs refresh FOLDER`, or a request written to
FOLDER/.sipfs/control (from a container) writes changes back or pulls others' in. Changes are
found by comparing each entry with what was last synced (size, mtime, file id), so files
written by containers or with skewed clocks are never missed. Stopping flushes once more;
what cannot be written stays pending, and `sipfs flush FOLDER` writes it later, with or without
a running `sipfs mirror`.

Exit codes: as for `sipfs flush` (3: changes remain pending, 4: conflicts kept).")]
    Mirror(MirrorArgs),
    /// Flush, then unmount (or stop serving a mirror folder)
    #[command(after_help = "Example:
  sipfs unmount ~/proj

A mount left behind by a killed sipfs process is cleared too.
Exit codes: 0 unmounted with everything written, 3 unmounted with changes pending in the cache
(the next `sipfs mount` of the same share writes them), 4 conflicts kept, 1 error.")]
    Unmount(UnmountArgs),
}

#[derive(Args)]
struct MountArgs {
    /// The project folder on the share (e.g. /mnt/share/proj, Z:\proj)
    backing: PathBuf,
    /// An empty directory to mount the project on
    mountpoint: PathBuf,
    /// Local folder for the cache (default: per-user cache dir, one per share path)
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Let other users, and containers running as other users, use the mount. What each may
    /// do is checked against modes and owners, as on a local disk
    #[arg(long)]
    allow_other: bool,
    /// With --allow-other: check nothing. Everyone let in may read, change, delete and chmod
    /// every file, whatever its modes and owner say. For containers that run as a user who owns
    /// nothing in the project; `sipfs run --docker-image` turns it on by itself when its probe
    /// shows a container needs it, and says so
    #[arg(long, requires = "allow_other")]
    no_permission_checks: bool,
    /// The default since permission checks are always on (kept so that older scripts run)
    #[arg(
        long,
        hide = true,
        requires = "allow_other",
        conflicts_with = "no_permission_checks"
    )]
    #[allow(dead_code)]
    check_permissions: bool,
    /// Return once the mount is ready and keep serving in the background
    #[arg(long)]
    daemon: bool,
    /// Fetch the whole project into the cache first, for offline work
    #[arg(long)]
    prefetch: bool,
    /// Serve file I/O through sipfs instead of handing it to the kernel (FUSE passthrough)
    #[arg(long)]
    no_passthrough: bool,
    /// Do not keep extended attributes (`cp -a` and `shutil.copy2` then copy files without
    /// them): a new file costs one kernel round trip less, which only a program that creates
    /// many thousands of small files notices
    #[arg(long)]
    no_xattrs: bool,
    /// Extra paths never written back, in gitignore syntax (repeatable)
    #[arg(long = "ignore", value_name = "RULE")]
    ignore: Vec<String>,
    /// Share operations in flight at once during a flush or refresh
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Keep the cache at most this big (e.g. 20GB, 500MiB): past it, the least recently
    /// opened files that are unchanged and closed are dropped from the cache and fetched again
    /// when next opened. Changed files are never dropped. Default: no limit
    #[arg(long, value_name = "SIZE")]
    cache_max_size: Option<bytesize::ByteSize>,
    /// Apply Windows share rules (refuse names like CON or a:b; names differing only in case
    /// are one file). On by itself for SMB/CIFS shares; use this for SMB reached otherwise
    /// (rclone, smbnetfs)
    #[arg(long)]
    windows_share: bool,
    /// Seconds before pending changes that failed for a passing reason (share unreachable,
    /// file locked) are retried in the background; the delay doubles up to 5 minutes. 0: never
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    retry_after: u64,
    /// Windows: a network drive (\\sipfs\NAME behind the letter) instead of a local disk.
    /// Programs that ask for a file's final path (Docker Desktop, WSL, Python's realpath) get
    /// an answer there; on a local-disk WinFsp drive Windows cannot give one
    #[arg(long)]
    #[cfg_attr(not(all(windows, target_env = "msvc")), allow(dead_code))]
    network_drive: bool,
    /// Seconds a call to the share may go unanswered (a frozen server, a dropped VPN) before
    /// the share counts as unreachable: the flush then ends, leaving the rest pending, instead
    /// of waiting minutes for the OS to give up. Transfers count from their last progress.
    /// 0: no deadline
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    share_timeout: u64,
}

#[derive(Args)]
struct MirrorArgs {
    /// The project folder on the share (e.g. /mnt/share/proj, Z:\proj)
    backing: PathBuf,
    /// The local folder to keep in sync: new or empty the first time
    folder: PathBuf,
    /// Local folder for the journal (default: per-user cache dir, one per share and folder)
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Extra paths never written back, in gitignore syntax (repeatable)
    #[arg(long = "ignore", value_name = "RULE")]
    ignore: Vec<String>,
    /// Share operations in flight at once during a flush or refresh
    #[arg(long, default_value_t = 8)]
    parallel: usize,
    /// Apply Windows share rules (on by itself for SMB/CIFS shares)
    #[arg(long)]
    windows_share: bool,
    /// Seconds before changes left pending for a passing reason are retried in the
    /// background; the delay doubles up to 5 minutes. 0: never
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    retry_after: u64,
    /// Seconds a call to the share may go unanswered (a frozen server, a dropped VPN) before
    /// the share counts as unreachable: the flush then ends, leaving the rest pending, instead
    /// of waiting minutes for the OS to give up. Transfers count from their last progress.
    /// 0: no deadline
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    share_timeout: u64,
}

#[derive(Args)]
struct FlushArgs {
    /// The mount point or mirror folder
    mountpoint: PathBuf,
    /// A label for the report, such as the workflow step
    #[arg(long, value_name = "LABEL")]
    step: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReportArgs {
    /// The mount point or mirror folder
    mountpoint: PathBuf,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReportPathArgs {
    /// The folder to look at
    path: PathBuf,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RunMode {
    /// A FUSE mount backed by the cache
    Mount,
    /// A plain local folder kept in sync
    Mirror,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// The project folder on the share
    backing: PathBuf,
    /// How to present it (default: what `sipfs detect` recommends)
    #[arg(long, value_enum)]
    mode: Option<RunMode>,
    /// Where the local project appears. Mount mode: an empty folder (default: a new one under
    /// the temp dir). Mirror mode: the mirror folder (default: TEMP/sip_workflow/NAME-HASH;
    /// on macOS ~/Library/Application Support/sipfs/sip_workflow/NAME-HASH; kept between runs
    /// so the next run only pulls in what changed)
    #[arg(long, value_name = "PATH")]
    at: Option<PathBuf>,
    /// Local folder for the cache (default: per-user cache dir, one per share path)
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Let other users, and containers running as other users, use the mount, held to modes
    /// and owners as on a local disk
    #[arg(long)]
    allow_other: bool,
    /// With --allow-other: check nothing; everyone let in may change and delete every file
    /// (see `sipfs mount --help`). --docker-image turns it on by itself when needed
    #[arg(long, requires = "allow_other")]
    no_permission_checks: bool,
    /// The image the workflow's containers run (also the one its compose file names). Mount
    /// mode first checks that a container of it sees the mount, and falls back to a mirror
    /// folder when it does not (Docker Desktop may not share a WinFsp drive). It also checks
    /// that the container's user may write in the project; when it may not (it runs as a
    /// user who owns nothing there), the mount is made again with --no-permission-checks,
    /// and sipfs says so
    #[arg(long, value_name = "IMAGE")]
    docker_image: Option<String>,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Args)]
struct UnmountArgs {
    /// The mount point or mirror folder
    mountpoint: PathBuf,
}

/// glibc gives each thread that allocates its own arena, and memory freed in one stays there:
/// with a FUSE thread per core plus the share workers, a mount's resident memory grew by a
/// sixth over what it holds (measured on a 100 000-entry listing). Two arenas keep most of
/// that, and the threads rarely allocate at once (their work is system calls).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold: buffers of 128 KiB and more (a folder's listing, its reply to the
        // kernel) are mapped and unmapped on their own. glibc's default raises the threshold
        // after each such free, which puts them in the heap between the long-lived nodes made
        // meanwhile, and a first listing of 100 000 entries then left ~10 MB of holes there.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIPFS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn detect_cmd(a: &ReportPathArgs) -> anyhow::Result<Exit> {
    let d = detect::detect(&a.path)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        outln!("{}: {}", d.path.display(), d.explanation);
        outln!(
            "  file system: {}{}",
            d.fs_type,
            d.source
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        if d.windows_share {
            outln!("  Windows share rules apply (names, case)");
        }
    }
    Ok(Exit::Ok)
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    // Commands whose whole job is to print: a reader that stops early (`| head`) got what it
    // wanted, so they end with 0 then. Commands that change things still finish their work
    // and say by their exit code whether it landed.
    let only_prints = matches!(cli.command, Command::Detect(_) | Command::Status(_));
    let code = run(cli);
    if only_prints && output::closed_pipe() {
        return Exit::Ok.into();
    }
    code
}

fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        #[cfg(unix)]
        Command::Mount(a) => {
            init_logging("info,fuser=error");
            mount_cmd::run(a)
        }
        #[cfg(all(windows, target_env = "msvc"))]
        Command::Mount(a) => {
            init_logging("info");
            drive_cmd::run(a)
        }
        #[cfg(not(any(unix, all(windows, target_env = "msvc"))))]
        Command::Mount(_) => Err(anyhow::anyhow!(
            "this sipfs.exe has no drive (it serves mirror folders: `sipfs mirror SHARE FOLDER`); the drive comes with the WinFsp build"
        )),
        Command::Mirror(a) => {
            init_logging("info");
            mirror_cmd::run(a)
        }
        // A mirror folder is a plain folder with a marker; anything else is taken for a mount.
        Command::Flush(a) => {
            init_logging("warn");
            match mirror_cmd::find_marker(&a.mountpoint) {
                Some(m) => mirror_cmd::flush(&a.mountpoint, m, a.step.as_deref(), a.json),
                None => client::flush(&a.mountpoint, a.step.as_deref(), a.json),
            }
        }
        Command::Refresh(a) => {
            init_logging("warn");
            match mirror_cmd::find_marker(&a.mountpoint) {
                Some(m) => mirror_cmd::refresh(&a.mountpoint, m, a.json),
                None => client::refresh(&a.mountpoint, a.json),
            }
        }
        Command::Status(a) => {
            init_logging("warn");
            match mirror_cmd::find_marker(&a.mountpoint) {
                Some(m) => mirror_cmd::status(&a.mountpoint, m, a.json),
                None => client::status(&a.mountpoint, a.json),
            }
        }
        Command::Unmount(a) => {
            init_logging("warn");
            match mirror_cmd::find_marker(&a.mountpoint) {
                Some(m) => mirror_cmd::stop(&a.mountpoint, m),
                None => client::unmount(&a.mountpoint),
            }
        }
        Command::Detect(a) => {
            init_logging("warn");
            detect_cmd(&a)
        }
        Command::Run(a) => {
            init_logging("warn");
            return match run_cmd::run(a) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    errln!("sipfs: {}", output::error_line(&e));
                    Exit::Error.into()
                }
            };
        }
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            errln!("sipfs: {}", output::error_line(&e));
            Exit::Error.into()
        }
    }
}
