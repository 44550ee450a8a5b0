//! Helpers for the integration tests: real `sipfs` processes on real FUSE mounts, real files.
//!
//! They run on Linux, where the mounts, the share servers and Docker are (the Windows build is
//! tested from here too, under Wine: tests/windows.rs). On other targets the crate is empty,
//! so that the workspace type-checks for Windows.
#![cfg(unix)]

pub mod docker;
pub mod smb_share;
pub mod ssh_share;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `sipfs` binary, built once per test run (so tests never run a stale one).
pub fn sipfs_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SIPFS_BIN") {
            return PathBuf::from(p);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let st = Command::new(cargo)
            .args(["build", "--quiet", "-p", "sipfs", "--bin", "sipfs"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(st.success(), "building sipfs failed");
        let bin = target_dir().join("debug").join("sipfs");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}

/// The folder cargo builds into, wherever it is (`CARGO_TARGET_DIR`, a cargo config's
/// `build.target-dir`, or `target/`): found from this test binary's own path,
/// `TARGET/PROFILE/deps/NAME`, so that it agrees with cargo whatever set it.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .unwrap_or_else(|| panic!("{} is not under TARGET/PROFILE/deps", exe.display()))
        .to_path_buf()
}

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fails with a clear message when a tool the test starts is missing.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args([
                "-c",
                &format!("command -v {tool} >/dev/null || test -x /usr/sbin/{tool}"),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} is needed (scripts/setup-debian installs it)");
    }
}

/// Runs `sipfs ARGS` to completion.
pub fn sipfs(args: &[&str]) -> Output {
    let out = Command::new(sipfs_bin())
        .args(args)
        .output()
        .expect("running sipfs");
    show("sipfs", args, &out);
    out
}

/// Shows a finished command and what it printed (the test's output, when it fails).
pub fn show(program: &str, args: &[&str], out: &Output) {
    eprintln!(
        "$ {program} {}\n{}{}-> {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
}

/// `sipfs run BACKING [--mode MODE] --at AT --cache CACHE -- sh -c SCRIPT`, as a launcher
/// calls it; without a mode, sipfs picks one.
pub fn sipfs_run(
    backing: &Path,
    mode: Option<&str>,
    at: &Path,
    cache: &Path,
    script: &str,
) -> Output {
    let mut args = vec!["run", backing.to_str().unwrap()];
    if let Some(m) = mode {
        args.extend(["--mode", m]);
    }
    args.extend([
        "--at",
        at.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        script,
    ]);
    sipfs(&args)
}

/// A share folder, a mount point and a cache folder, removed at the end.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub share: PathBuf,
    pub mnt: PathBuf,
    pub cache: PathBuf,
}

impl Scratch {
    pub fn new() -> Scratch {
        assert!(
            Path::new("/dev/fuse").exists(),
            "these tests need FUSE (/dev/fuse; run as root or install fuse3)"
        );
        let dir = tempfile::Builder::new()
            .prefix("sipfs-it-")
            .tempdir()
            .unwrap();
        let share = dir.path().join("share");
        let mnt = dir.path().join("mnt");
        let cache = dir.path().join("cache");
        fs::create_dir_all(&share).unwrap();
        fs::create_dir_all(&mnt).unwrap();
        Scratch {
            dir,
            share,
            mnt,
            cache,
        }
    }

    pub fn mount(&self, extra: &[&str]) -> MountProc {
        MountProc::start(&self.share, &self.mnt, &self.cache, extra)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// A `sipfs mount` running in the foreground as a child process.
pub struct MountProc {
    child: Option<Child>,
    pub mnt: PathBuf,
    pub log: PathBuf,
    leave_stale: bool,
}

impl MountProc {
    pub fn start(share: &Path, mnt: &Path, cache: &Path, extra: &[&str]) -> MountProc {
        MountProc::start_env(share, mnt, cache, extra, &[])
    }

    /// As [`MountProc::start`], with environment variables for the sipfs process.
    pub fn start_env(
        share: &Path,
        mnt: &Path,
        cache: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> MountProc {
        let log = cache.with_extension(format!("log-{}", std::process::id()));
        let logf = fs::File::create(&log).unwrap();
        let child = Command::new(sipfs_bin())
            .arg("mount")
            .arg(share)
            .arg(mnt)
            .arg("--cache")
            .arg(cache)
            .args(extra)
            .env(
                "SIPFS_LOG",
                std::env::var("SIPFS_TEST_LOG").unwrap_or_else(|_| "info,fuser=error".into()),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("starting sipfs mount");
        let mut m = MountProc {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            log,
            leave_stale: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // The kernel may still answer for a dead mount from its caches: wait for this process.
        while !(m.log_text().contains("mounted at") && mnt.join(".sipfs/control").exists()) {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sipfs mount exited ({st}): {}", m.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "mount not ready: {}",
                m.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for the process (which flushes and unmounts) to exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: plain kill(2).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = wait_timeout(&mut child, Duration::from_secs(60));
        eprintln!("mount log:\n{}", self.log_text());
        st
    }

    /// Waits for the process to end by itself (after a `stop` request).
    pub fn wait_exit(mut self, d: Duration) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let st = wait_timeout(&mut child, d);
        eprintln!("mount log:\n{}", self.log_text());
        st
    }

    /// Waits for the process to die by itself, killed by SIGKILL (a crash point,
    /// `fs_core::crash`); the mount point is left stale, as after a crash. Panics if it lives
    /// on past `d` or ends otherwise.
    pub fn wait_killed(mut self, d: Duration) {
        use std::os::unix::process::ExitStatusExt;
        let mut child = self.child.take().unwrap();
        let st = wait_timeout(&mut child, d);
        self.leave_stale = true;
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "sipfs ended with {st}, not killed at its crash point: {}",
            self.log_text()
        );
    }

    /// `kill -9`: no flush, no unmount; the mount point is left stale, as after a crash.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        self.leave_stale = true;
    }
}

fn wait_timeout(child: &mut Child, d: Duration) -> ExitStatus {
    let deadline = Instant::now() + d;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sipfs did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.leave_stale {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// One entry of a tree snapshot: what must be equal on the share and in the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { content: Vec<u8>, mtime_ns: i64 },
    Dir { mtime_ns: i64 },
    Link(String),
}

fn mtime(md: &fs::Metadata) -> i64 {
    md.mtime() * 1_000_000_000 + md.mtime_nsec()
}

/// Every entry below `root` (names relative, `/`-separated), except those `skip` names.
pub fn snapshot(root: &Path, skip: &dyn Fn(&str) -> bool) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let p = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if skip(&p) {
                continue;
            }
            let md = fs::symlink_metadata(e.path()).unwrap();
            if md.file_type().is_symlink() {
                out.insert(
                    p,
                    Entry::Link(fs::read_link(e.path()).unwrap().display().to_string()),
                );
            } else if md.is_dir() {
                out.insert(
                    p.clone(),
                    Entry::Dir {
                        mtime_ns: mtime(&md),
                    },
                );
                stack.push((e.path(), p));
            } else {
                out.insert(
                    p,
                    Entry::File {
                        content: fs::read(e.path()).unwrap(),
                        mtime_ns: mtime(&md),
                    },
                );
            }
        }
    }
    out
}

/// Paths sipfs never writes back by default, and the old versions a flush's commits
/// captured, which stay on the share under a private name until the next flush
/// (fs-core's `flush/capture.rs`).
pub fn default_ignored(p: &str) -> bool {
    p.split('/').any(|c| {
        fs_core::names::is_capture_name(c)
            || matches!(
                c,
                "__pycache__" | ".DS_Store" | "Thumbs.db" | ".sync_log.json"
            )
    })
}

/// Asserts two snapshots are equal, naming the first difference.
pub fn assert_same_tree(share: &BTreeMap<String, Entry>, mount: &BTreeMap<String, Entry>) {
    for (p, e) in mount {
        match share.get(p) {
            None => panic!("{p} is in the mount but not on the share"),
            Some(s) if s != e => panic!("{p} differs:\n share: {}\n mount: {}", brief(s), brief(e)),
            _ => {}
        }
    }
    for p in share.keys() {
        assert!(
            mount.contains_key(p),
            "{p} is on the share but not in the mount"
        );
    }
}

fn brief(e: &Entry) -> String {
    match e {
        Entry::File { content, mtime_ns } => {
            format!("file of {} bytes, mtime {mtime_ns}", content.len())
        }
        Entry::Dir { mtime_ns } => format!("dir, mtime {mtime_ns}"),
        Entry::Link(t) => format!("link to {t}"),
    }
}

/// Runs `cmd` to completion; panics with its error output unless it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the program starts");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a Python script from tests/scripts with arguments; panics with its output on failure.
pub fn python(script: &str, args: &[&str]) -> Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a control command the way a program in a container does (`echo ... > control`).
pub fn control(mnt: &Path, command: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(mnt.join(".sipfs/control"))?;
    f.write_all(command.as_bytes())
}
