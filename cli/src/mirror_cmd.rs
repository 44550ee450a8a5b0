//! Mirror mode from the command line: `sipfs mirror` (fill a plain folder from the share and
//! serve requests until stopped), and `flush` / `refresh` / `status` / `unmount` on a mirror
//! folder. Works the same on every platform: it is the Windows fallback where a drive cannot
//! be shared with Docker.

use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use fs_core::ignore_rules::CONTROL_DIR;
use fs_core::mirror::requests::{self, FlushProgress};
use fs_core::mirror::Marker;
use fs_core::{
    EngineOptions, FlushReport, FsError, JournalError, Mirror, MirrorError, RefreshReport, Status,
};
use serde::Deserialize;
use tracing::info;

use crate::paths::{default_mirror_cache_dir, mirror_registry_entry};
use crate::{output, Exit, MirrorArgs};

/// How a mirror is set up, from `sipfs mirror`, `sipfs run --mode mirror` or a marker.
pub struct Setup {
    pub backing: PathBuf,
    pub folder: PathBuf,
    pub cache: Option<PathBuf>,
    pub ignore: Vec<String>,
    pub windows_share: bool,
    pub parallel: usize,
    /// Seconds a share call may go unanswered; 0: no deadline.
    pub share_timeout: u64,
}

/// What is known of the mirror folder `folder`: from the registry of mirror folders (by the
/// folder's canonical path), or from the marker a sipfs before issue 30 kept in the folder.
/// `None`: not a mirror folder (a mount point, or nothing sipfs set up).
pub fn find_marker(folder: &Path) -> Option<Marker> {
    let abs = absolute(folder).ok()?;
    if let Some(m) = Marker::read_legacy(&abs) {
        return Some(m);
    }
    // A sipfs mount serves `.sipfs/status`; a mirror folder keeps none (its status is with the
    // cache): a registry entry left for a path now used as a mount point is not taken.
    if abs
        .join(CONTROL_DIR)
        .join(fs_core::control::STATUS_FILE)
        .exists()
    {
        return None;
    }
    let canonical = dunce::canonicalize(&abs).unwrap_or(abs);
    Marker::read_from(&mirror_registry_entry(&canonical)).filter(|m| m.folder == canonical)
}

/// Opens the mirror. `Ok(None)`: another sipfs process serves it (ask that one).
///
/// A share that cannot be reached is not an error when the folder mirrors it already: work
/// goes on from the folder, with a warning, and flushes leave changes pending until the share
/// is back. Without a mirror yet there is nothing to work on, and that is an error.
pub fn open(setup: &Setup) -> Result<Option<Mirror>> {
    let folder = absolute(&setup.folder)?;
    let marker = find_marker(&folder);
    let backing = match fs::metadata(&setup.backing) {
        Ok(md) if md.is_dir() => dunce::canonicalize(&setup.backing)
            .with_context(|| format!("resolving {}", setup.backing.display()))?,
        Ok(_) => bail!(
            "the share folder {} is not a directory",
            setup.backing.display()
        ),
        Err(e) => match &marker {
            Some(m) => {
                errln!(
                    "sipfs: warning: the share folder {} cannot be reached ({e}); working from the mirror folder {}; changes stay pending until the share is back",
                    setup.backing.display(),
                    folder.display()
                );
                PathBuf::from(&m.backing)
            }
            None => bail!(
                "the share folder {} cannot be reached ({e}; is the share mounted?), and {} holds no copy of it yet",
                setup.backing.display(),
                folder.display()
            ),
        },
    };
    let cache = setup
        .cache
        .clone()
        .or_else(|| marker.as_ref().map(|m| m.cache_dir.clone()))
        .unwrap_or_else(|| default_mirror_cache_dir(&backing, &folder));
    let mut opts = EngineOptions::new(&cache, backing.display().to_string());
    // Rules given now replace the folder's; none given keeps the folder's.
    opts.extra_ignore = match (&marker, setup.ignore.is_empty()) {
        (Some(m), true) => m.ignore.clone(),
        _ => setup.ignore.clone(),
    };
    opts.windows_share = setup.windows_share || marker.as_ref().is_some_and(|m| m.windows_share);
    opts.parallelism = setup.parallel.max(1);
    opts.idle_checkpoints = true;
    match Mirror::open(
        crate::share::share_at(&backing, setup.share_timeout),
        opts,
        &folder,
    ) {
        Ok(m) => {
            let entry = mirror_registry_entry(m.folder());
            let wanted = m.marker();
            if Marker::read_from(&entry).as_ref() != Some(&wanted) {
                wanted.write_to(&entry).with_context(|| {
                    format!("recording the mirror folder in {}", entry.display())
                })?;
            }
            Ok(Some(m))
        }
        Err(MirrorError::Engine(FsError::Journal(JournalError::InUse(_)))) => Ok(None),
        Err(e) => Err(anyhow!(e)),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

fn progress_bar(what: &'static str) -> Option<indicatif::ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{what} {{bar:30}} {{pos}}/{{len}} files {{elapsed}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    })
}

/// How often a fill says how far it got when no terminal shows a bar (a log, a CI job).
const FILL_REPORT_EVERY: Duration = Duration::from_secs(2);

/// Shows a fill's progress on stderr: a bar on a terminal, else a line every
/// [`FILL_REPORT_EVERY`] (none for a fill shorter than that, such as a refresh that fetches a
/// few files).
struct FillProgress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: std::sync::Mutex<Instant>,
    bytes: std::sync::atomic::AtomicU64,
}

impl FillProgress {
    fn new() -> FillProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "copying from the share {bar:30} {pos}/{len} files, {msg} {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        FillProgress {
            bar,
            started: Instant::now(),
            last_line: std::sync::Mutex::new(Instant::now()),
            bytes: 0.into(),
        }
    }

    fn update(&self, p: fs_core::Progress) {
        let bytes = self.bytes.fetch_add(p.bytes, Ordering::Relaxed) + p.bytes;
        let what = format!(
            "{}/{} files, {} of {}",
            p.done,
            p.total,
            fs_core::report::human_bytes(bytes),
            fs_core::report::human_bytes(p.total_bytes)
        );
        if let Some(b) = &self.bar {
            b.set_length(p.total);
            b.set_position(p.done);
            b.set_message(format!(
                "{} of {}",
                fs_core::report::human_bytes(bytes),
                fs_core::report::human_bytes(p.total_bytes)
            ));
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= FILL_REPORT_EVERY && p.done < p.total {
            *last = Instant::now();
            errln!(
                "sipfs: copying from the share: {what} ({} s)",
                self.started.elapsed().as_secs()
            );
        }
    }

    /// The last line, for a fill that took long enough to be reported.
    fn finish(self, fetched: u64) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
            return;
        }
        // A refresh that fetched nothing took its time listing: no line for it.
        if fetched > 0 && self.started.elapsed() >= FILL_REPORT_EVERY {
            errln!(
                "sipfs: copied {fetched} file(s), {}, from the share in {:.1} s",
                fs_core::report::human_bytes(self.bytes.load(Ordering::Relaxed)),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Brings the folder up to date with the share (the first time: fills it), with its progress
/// on stderr.
pub fn sync(mirror: &Mirror) -> Result<fs_core::SyncReport> {
    let progress = FillProgress::new();
    let r = mirror.sync(&|p| progress.update(p))?;
    progress.finish(r.fetched);
    for e in &r.errors {
        errln!(
            "sipfs: warning: {}: {} — working from what the folder has",
            e.path,
            e.message
        );
    }
    let _ = requests::write_status(mirror, None);
    Ok(r)
}

/// Serves requests from the control file until `stop` is set, keeping the mirror's status
/// (`CACHE/status.json`) current while a flush runs (progress bars of `sipfs flush FOLDER`
/// read it).
pub struct Server {
    stop: Arc<AtomicBool>,
    progress: Arc<FlushProgress>,
    threads: Vec<std::thread::JoinHandle<()>>,
    _retries: Option<fs_core::auto_retry::AutoRetryHandle>,
}

impl Server {
    pub fn start(mirror: Arc<Mirror>, retry_after: u64) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(FlushProgress::default());
        let mut threads = Vec::new();
        {
            let (m, s, p) = (mirror.clone(), stop.clone(), progress.clone());
            threads.push(std::thread::spawn(move || requests::serve(&m, &s, &p)));
        }
        {
            let (m, s, p) = (mirror.clone(), stop.clone(), progress.clone());
            threads.push(std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(500));
                    if p.running.load(Ordering::Relaxed) {
                        let _ = requests::write_status(&m, Some(&p));
                    }
                }
            }));
        }
        let retries = fs_core::auto_retry::AutoRetry::after_secs(retry_after)
            .map(|r| r.spawn(mirror.engine().clone()));
        Server {
            stop,
            progress,
            threads,
            _retries: retries,
        }
    }

    /// A `stop` request came through the control file (`sipfs unmount FOLDER`).
    pub fn stop_requested(&self) -> bool {
        self.progress.stop_requested.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The last flush, with a progress bar when a person watches.
pub fn flush_now(mirror: &Mirror, label: Option<&str>) -> Result<FlushReport> {
    let bar = progress_bar("flushing");
    let r = mirror.flush_with_progress(label, &|p| {
        if let Some(b) = &bar {
            b.set_length(p.total);
            b.set_position(p.done);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let _ = requests::write_status(mirror, None);
    Ok(r?)
}

/// `sipfs mirror BACKING FOLDER`.
pub fn run(args: MirrorArgs) -> Result<Exit> {
    let setup = Setup {
        backing: args.backing.clone(),
        folder: args.folder.clone(),
        cache: args.cache.clone(),
        ignore: args.ignore.clone(),
        windows_share: args.windows_share
            || crate::detect::detect(&args.backing).is_ok_and(|d| d.windows_share),
        parallel: args.parallel,
        share_timeout: args.share_timeout,
    };
    let Some(mirror) = open(&setup)? else {
        bail!(
            "another sipfs process already serves the mirror folder {}",
            args.folder.display()
        );
    };
    let mirror = Arc::new(mirror);
    // Before the first sync, whose scan walks everything: changes made from then on are
    // seen, and later flushes walk only what changed.
    mirror.watch_changes();
    sync(&mirror)?;
    crate::stop::install()?;
    let server = Server::start(mirror.clone(), args.retry_after);
    errln!(
        "sipfs: {} mirrored in {} (Ctrl-C to flush and stop)",
        args.backing.display(),
        mirror.folder().display()
    );
    while !crate::stop::requested() && !server.stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
    }
    info!("stopping: a last flush");
    server.stop();
    let r = flush_now(&mirror, Some("stop"));
    crate::stop::finished();
    let r = r?;
    output::print_flush(&r);
    Ok(Exit::of_flush(&r))
}

/// What `.sipfs/status` of a served mirror holds.
#[derive(Deserialize)]
struct ServedStatus {
    #[serde(flatten)]
    status: Status,
    pid: u32,
}

fn setup_of(folder: &Path, marker: &Marker) -> Setup {
    Setup {
        backing: PathBuf::from(&marker.backing),
        folder: folder.to_path_buf(),
        cache: Some(marker.cache_dir.clone()),
        ignore: Vec::new(),
        windows_share: marker.windows_share,
        parallel: 8,
        share_timeout: crate::share::DEFAULT_TIMEOUT_SECS,
    }
}

fn read_served(marker: &Marker) -> Result<ServedStatus> {
    let path = fs_core::mirror::status_path(&marker.cache_dir);
    let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Asks the process serving `folder` to run `command` (one line, with its newline) through
/// the control file, as a container would, and waits for the answer that replaces it there.
fn request(folder: &Path, marker: &Marker, command: &str) -> Result<String> {
    let control = folder
        .join(CONTROL_DIR)
        .join(fs_core::control::CONTROL_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    // One request at a time: wait for an earlier one to be answered.
    while fs::read(&control).is_ok_and(|d| !requests::is_answer(&d)) {
        if Instant::now() > deadline {
            bail!(
                "the sipfs process serving {} has not taken the request waiting in {} for 10 s",
                folder.display(),
                control.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::write(&control, command).with_context(|| format!("writing {}", control.display()))?;
    // A bar once the serving process reports a flush in progress.
    let mut bar: Option<indicatif::ProgressBar> = None;
    let start = Instant::now();
    let status = fs_core::mirror::status_path(&marker.cache_dir);
    let answer = loop {
        match fs::read(&control) {
            Ok(now) if now != command.as_bytes() => break now,
            // Removed by a program: the serving process makes it again, empty, and our
            // request is lost with it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "{} was removed before the request was answered",
                    control.display()
                )
            }
            _ => {}
        }
        // Often at first (a watched folder answers a small flush within milliseconds), then
        // a few times a second.
        let pause = if start.elapsed() < Duration::from_millis(500) {
            5
        } else {
            100
        };
        std::thread::sleep(Duration::from_millis(pause));
        let progress = fs::read(&status)
            .ok()
            .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s).ok())
            .and_then(|v| v.get("flush_progress").cloned());
        if let Some(p) = progress {
            if bar.is_none() {
                bar = progress_bar("flushing");
            }
            if let Some(b) = &bar {
                b.set_length(p["total"].as_u64().unwrap_or(0));
                b.set_position(p["done"].as_u64().unwrap_or(0));
            }
        }
        if start.elapsed() > Duration::from_secs(30) && !server_alive(marker) {
            bail!(
                "the sipfs process serving {} is gone; run the command again to do it here",
                folder.display()
            );
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The answer's first line; a status answer goes on with the status, read from the cache.
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Runs `command` in the process serving `folder`; its status afterwards.
fn ask(folder: &Path, marker: &Marker, command: &str) -> Result<Status> {
    let answer = request(folder, marker, command)?;
    if answer.starts_with("error") {
        bail!("{}", answer.trim());
    }
    Ok(read_served(marker)?.status)
}

/// Whether a process still holds the mirror's cache (tells a crashed server from a slow one).
fn server_alive(marker: &Marker) -> bool {
    fs::OpenOptions::new()
        .write(true)
        .open(marker.cache_dir.join("lock"))
        .is_ok_and(|f| f.try_lock().is_err())
}

pub fn flush(folder: &Path, marker: Marker, label: Option<&str>, json: bool) -> Result<Exit> {
    let report = match open(&setup_of(folder, &marker))? {
        Some(m) => flush_now(&m, label)?,
        None => {
            let command = match label {
                Some(l) if l.contains('\n') => bail!("a step label must be one line"),
                Some(l) => format!("flush {l}\n"),
                None => "flush\n".to_owned(),
            };
            ask(folder, &marker, &command)?
                .last_flush
                .ok_or_else(|| anyhow!("the mirror reported no flush"))?
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_flush(&report);
    }
    Ok(Exit::of_flush(&report))
}

pub fn refresh(folder: &Path, marker: Marker, json: bool) -> Result<Exit> {
    let report: RefreshReport = match open(&setup_of(folder, &marker))? {
        Some(m) => sync(&m)?.refresh,
        None => ask(folder, &marker, "refresh\n")?
            .last_refresh
            .ok_or_else(|| anyhow!("the mirror reported no refresh"))?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_refresh(&report);
    }
    Ok(if report.errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Error
    })
}

pub fn status(folder: &Path, marker: Marker, json: bool) -> Result<Exit> {
    let status = match open(&setup_of(folder, &marker))? {
        Some(m) => {
            let s = m.status()?;
            let _ = requests::write_status(&m, None);
            s
        }
        // Served: the serving process scans and writes the status file.
        None => ask(folder, &marker, "status\n")?,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        output::print_status(&status);
    }
    Ok(Exit::Ok)
}

/// Stops the process serving a mirror folder after a last flush.
pub fn stop(folder: &Path, marker: Marker) -> Result<Exit> {
    if !server_alive(&marker) {
        // Nothing serves it: flushing is all there is to do.
        return flush(folder, marker, Some("stop"), false);
    }
    let pid = read_served(&marker)?.pid;
    let exit = flush(folder, marker.clone(), Some("stop"), false)?;
    // Through the control file, as a container could: works the same on every platform.
    request(folder, &marker, "stop\n")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while server_alive(&marker) {
        if Instant::now() > deadline {
            bail!(
                "the sipfs process {pid} serving {} did not stop within 2 minutes",
                folder.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(exit)
}
