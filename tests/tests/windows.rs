//! sipfs.exe, the Windows build, run under Wine: what a lab user on Windows does, end to end.
//!
//! `scripts/build-windows --wine-fixture` builds the exe and the Wine fixture (scripts/test does
//! it first); `SIPFS_WINDOWS_EXE` may name another exe. One Wine prefix serves every test:
//! drive `N:` is a network drive (`HKLM\Software\Wine\Drives "n:"="network"`, so
//! `GetDriveTypeW` answers DRIVE_REMOTE) over a folder here, and `\\server\share` is Wine's UNC
//! mapping of the same folder. Wine's `C:` is a folder here too, so a test writes into a mirror
//! folder from Linux the way a container writes through a bind mount.
//!
//! Where Wine differs from Windows (said again where it matters): volume serial numbers are
//! fixed values, so file ids repeat across drives; subtree change notifications do not arrive
//! (the mirror finds changes by its scan, as it does anyway); UNC paths resolve to the drive
//! letter their folder is mapped to; no real SMB server stands behind `N:`.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Wine {
    prefix: PathBuf,
    /// The folder behind `N:`.
    shares: PathBuf,
}

fn wine() -> &'static Wine {
    static W: OnceLock<Wine> = OnceLock::new();
    W.get_or_init(|| {
        let built = sipfs_tests::target_dir().join("windows");
        let exe = std::env::var_os("SIPFS_WINDOWS_EXE")
            .map(PathBuf::from)
            .unwrap_or_else(|| built.join("x86_64-pc-windows-gnu/release/sipfs.exe"));
        let dll = built.join("bcryptprimitives.dll");
        let hold = built.join("hold.exe");
        assert!(
            exe.is_file() && dll.is_file() && hold.is_file(),
            "{}, {} or {} is missing: run scripts/build-windows --wine-fixture (scripts/test does)",
            exe.display(),
            dll.display(),
            hold.display()
        );
        assert!(
            Command::new("wine").arg("--version").output().is_ok(),
            "wine is needed (apt-get install wine64; scripts/test installs it)"
        );
        let root = tempfile::Builder::new()
            .prefix("sipfs-wine-")
            .tempdir()
            .unwrap()
            .keep();
        // A prefix takes some 700 MB: it goes when the test process exits.
        ROOT.set(root.clone()).unwrap();
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(remove_prefix) };
        let prefix = root.join("prefix");
        let shares = root.join("shares");
        fs::create_dir_all(&shares).unwrap();
        let w = Wine { prefix, shares };
        let st = w.cmd("wineboot").arg("-i").output().unwrap();
        assert!(
            st.status.success(),
            "wineboot: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        std::os::unix::fs::symlink(&w.shares, w.prefix.join("dosdevices/n:")).unwrap();
        fs::create_dir_all(w.prefix.join("dosdevices/unc/server")).unwrap();
        std::os::unix::fs::symlink(&w.shares, w.prefix.join("dosdevices/unc/server/share"))
            .unwrap();
        let st = w
            .cmd("wine")
            .args([
                "reg",
                "add",
                r"HKLM\Software\Wine\Drives",
                "/v",
                "n:",
                "/t",
                "REG_SZ",
                "/d",
                "network",
                "/f",
            ])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "reg add: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let bin = w.c("sipfs");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(&exe, bin.join("sipfs.exe")).unwrap();
        fs::copy(&dll, bin.join("bcryptprimitives.dll")).unwrap();
        fs::copy(&hold, bin.join("hold.exe")).unwrap();
        w
    })
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_prefix() {
    if let Some(root) = ROOT.get() {
        let _ = Command::new("wineserver")
            .arg("-k")
            .env("WINEPREFIX", root.join("prefix"))
            .status();
        let _ = fs::remove_dir_all(root);
    }
}

impl Wine {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        c
    }

    /// A path on Wine's `C:` drive, as a Linux path.
    fn c(&self, rel: &str) -> PathBuf {
        self.prefix.join("drive_c").join(rel.replace('\\', "/"))
    }

    /// A new project on `N:`: (Linux path, Windows path).
    fn project(&self, test: &str, name: &str) -> (PathBuf, String) {
        let p = self.shares.join(test).join(name);
        fs::create_dir_all(&p).unwrap();
        (p, format!(r"N:\{test}\{name}"))
    }

    fn sipfs_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd("wine");
        c.arg(r"C:\sipfs\sipfs.exe").args(args);
        c
    }

    fn sipfs(&self, args: &[&str]) -> Output {
        let out = self.sipfs_cmd(args).output().expect("wine");
        sipfs_tests::show("sipfs.exe", args, &out);
        out
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `sipfs mirror SHARE FOLDER` served in the background.
struct Served {
    child: Child,
    folder: PathBuf,
}

impl Served {
    fn start(w: &Wine, share: &str, folder_win: &str, extra: &[&str]) -> Served {
        let folder = w.c(folder_win.trim_start_matches(r"C:\"));
        let mut args = vec!["mirror", share, folder_win];
        args.extend(extra);
        let child = w
            .sipfs_cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Served { child, folder };
        // Served once a status request is answered (the status itself is with the cache).
        wait_for("the mirror to be set up", 60, || {
            s.folder.join(".sipfs/control").exists()
        });
        s.request("status");
        s
    }

    /// Asks through `.sipfs\control` as a container does; the answer's first line, which
    /// replaces the request in the file.
    fn request(&self, command: &str) -> String {
        let control = self.folder.join(".sipfs/control");
        let asked = format!("{command}\n");
        fs::write(&control, &asked).unwrap();
        let mut answer = String::new();
        wait_for("the answer", 60, || {
            answer = fs::read_to_string(&control).unwrap_or_default();
            answer != asked
        });
        answer.lines().next().unwrap_or_default().to_owned()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn detect_tells_a_network_drive_a_unc_path_and_a_local_drive_apart() {
    let w = wine();
    let (_, proj) = w.project("detect", "proj");
    let out = w.sipfs(&["detect", &proj, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["network"], true, "{d}");
    assert_eq!(d["windows_share"], true);
    assert_eq!(d["recommended"], "mirror");
    assert_eq!(d["path"], proj, "the plain form, never \\\\?\\");

    let out = w.sipfs(&["detect", r"\\server\share\detect\proj", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["network"], true, "{d}");
    assert_eq!(d["source"], r"\\server\share");

    let out = w.sipfs(&["detect", r"C:\sipfs", "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["network"], false, "{d}");
    assert_eq!(d["recommended"], "none");
    assert!(!text(&out).contains(r"\\?\"));
}

#[test]
fn run_on_a_network_drive_syncs_without_being_told_how() {
    let w = wine();
    let (share, proj) = w.project("run", "proj");
    fs::write(share.join("samples.csv"), "a,b\n1,2\n").unwrap();
    // The workflow manager's launcher, as a Windows command: it records what it was given.
    let out = w.sipfs(&[
        "run",
        &proj,
        "--",
        "cmd",
        "/c",
        r"set > %PROJECT_PATH%\env.txt && copy %PROJECT_PATH%\samples.csv %PROJECT_PATH%\result.csv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(r"\\?\"), "{}", text(&out));
    let env = fs::read_to_string(share.join("env.txt")).expect("the final flush wrote env.txt");
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} not set: {env}"))
            .trim()
            .to_owned()
    };
    assert_eq!(var("SMART_SYNC_ENABLED"), "true");
    assert_eq!(var("NETWORK_PROJECT_PATH"), proj);
    let local = var("LOCAL_PROJECT_PATH");
    assert_eq!(var("PROJECT_PATH"), local);
    assert!(
        local.starts_with(r"C:\") && !local.contains(r"\\?\"),
        "{local}"
    );
    assert_eq!(
        fs::read_to_string(share.join("result.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    // Its cache is where Windows keeps per-user caches (%LOCALAPPDATA%).
    let users = w.c("users");
    let found = fs::read_dir(&users).unwrap().flatten().any(|u| {
        u.path()
            .join("AppData/Local/sipfs/cache")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    });
    assert!(found, "no cache under %LOCALAPPDATA%\\sipfs\\cache");
}

#[test]
fn a_mirror_folder_serves_steps_flushes_on_request_and_stops_on_unmount() {
    let w = wine();
    let (share, proj) = w.project("mirror", "proj");
    fs::create_dir_all(share.join("inputs")).unwrap();
    fs::write(share.join("inputs/samples.csv"), "id\n1\n").unwrap();
    let s = Served::start(w, &proj, r"C:\work\mirror", &[]);
    assert_eq!(
        fs::read_to_string(s.folder.join("inputs/samples.csv")).unwrap(),
        "id\n1\n"
    );
    // A workflow step, written into the folder as a container writes into its bind mount.
    fs::create_dir_all(s.folder.join(".workflow_status")).unwrap();
    fs::write(s.folder.join(".workflow_status/step1.done"), "").unwrap();
    fs::write(s.folder.join("results.csv"), "id,x\n1,2\n").unwrap();
    fs::create_dir_all(s.folder.join("__pycache__")).unwrap();
    fs::write(s.folder.join("__pycache__/m.pyc"), "x").unwrap();
    assert!(
        !share.join("results.csv").exists(),
        "nothing reaches the share before a flush"
    );
    let answer = s.request("flush step-1");
    assert!(answer.starts_with("ok flush step-1"), "{answer}");
    assert_eq!(
        fs::read_to_string(share.join("results.csv")).unwrap(),
        "id,x\n1,2\n"
    );
    assert!(
        share.join(".workflow_status/step1.done").exists(),
        "hidden folders are synced"
    );
    assert!(!share.join("__pycache__").exists() && !share.join(".sipfs").exists());

    let out = w.sipfs(&["status", r"C:\work\mirror", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["pending_files"], 0, "{st}");

    fs::write(s.folder.join("late.csv"), "late\n").unwrap();
    let out = w.sipfs(&["unmount", r"C:\work\mirror"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fs::read_to_string(share.join("late.csv")).unwrap(),
        "late\n"
    );
    let mut s = s;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "the server ended with {st}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sipfs unmount did not stop the serving process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn conflicts_and_names_windows_refuses_lose_nothing() {
    let w = wine();
    let (share, proj) = w.project("conflict", "proj");
    fs::write(share.join("book.csv"), "v1\n").unwrap();
    let s = Served::start(w, &proj, r"C:\work\conflict", &[]);
    // Changed here and on the share (a colleague, later).
    fs::write(s.folder.join("book.csv"), "ours\n").unwrap();
    fs::write(share.join("book.csv"), "theirs, longer\n").unwrap();
    // A name a Windows share refuses, as a container can write it. (Reserved device names
    // such as `aux.csv` are left out here: Wine opens its AUX device for them, which waits
    // forever; the engine's name rules are unit-tested for them.)
    fs::write(s.folder.join("trailing dot."), "x").unwrap();
    fs::write(s.folder.join("fine.csv"), "ok").unwrap();
    let answer = s.request("flush step-2");
    assert!(answer.starts_with("pending"), "{answer}");
    assert_eq!(
        fs::read_to_string(share.join("book.csv")).unwrap(),
        "ours\n"
    );
    let kept: Vec<String> = fs::read_dir(&share)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("book.sipfs-conflict-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs::read_to_string(share.join(&kept[0])).unwrap(),
        "theirs, longer\n"
    );
    assert_eq!(fs::read_to_string(share.join("fine.csv")).unwrap(), "ok");
    assert!(!share.join("trailing dot.").exists());
    let out = w.sipfs(&["status", r"C:\work\conflict", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending = st["last_flush"]["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let item = pending.iter().find(|p| p["path"] == "trailing dot.");
    assert!(
        item.is_some_and(|p| p["reason"] == "name_not_allowed"),
        "{pending:?}"
    );
    // Still there, still pending: nothing lost.
    assert!(s.folder.join("trailing dot.").exists());
}

#[test]
fn spaces_other_alphabets_and_paths_past_260_characters() {
    let w = wine();
    let (share, proj) = w.project("names", "Projekt Müller ü");
    let deep = (0..16)
        .map(|i| format!("folder number {i:02}"))
        .collect::<Vec<_>>()
        .join("/");
    fs::create_dir_all(share.join(&deep)).unwrap();
    fs::write(share.join(&deep).join("résumé ✓.csv"), "deep\n").unwrap();
    let folder = r"C:\work\Ordner mit Leerzeichen";
    let s = Served::start(w, &proj, folder, &[]);
    let win_len = folder.len() + 1 + deep.len() + 1 + "résumé ✓.csv".chars().count();
    assert!(win_len > 260, "the path must pass MAX_PATH: {win_len}");
    assert_eq!(
        fs::read_to_string(s.folder.join(&deep).join("résumé ✓.csv")).unwrap(),
        "deep\n"
    );
    fs::write(s.folder.join(&deep).join("新しい 結果.csv"), "new\n").unwrap();
    let answer = s.request("flush");
    assert!(answer.starts_with("ok"), "{answer}");
    assert_eq!(
        fs::read_to_string(share.join(&deep).join("新しい 結果.csv")).unwrap(),
        "new\n"
    );
}

/// Ctrl-C flushes before the server goes. (Wine turns SIGINT into the console's CTRL_C_EVENT;
/// closing the console, logoff and shutdown take the same handler on Windows, but Wine ends a
/// process on SIGHUP or SIGTERM without any console event, so those are not exercised here.)
#[test]
fn ctrl_c_flushes_first() {
    let w = wine();
    let (share, proj) = w.project("ctrlc", "proj");
    let s = Served::start(w, &proj, r"C:\work\ctrlc", &[]);
    fs::write(s.folder.join("last step.csv"), "done\n").unwrap();
    let mut s = s;
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "Ctrl-C did not stop the server");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st.success(), "{st}");
    assert_eq!(
        fs::read_to_string(share.join("last step.csv")).unwrap(),
        "done\n"
    );
}

/// A workbook held open on the share without sharing, as Excel holds it: Wine enforces share
/// modes between its processes as Windows does, so the flush's open of the share's file fails
/// with a sharing violation. The flush says "locked" and keeps the file pending; once the
/// workbook is closed, the next flush writes it.
#[test]
fn a_workbook_held_open_on_the_share_stays_pending_until_it_is_closed() {
    use std::io::{BufRead, BufReader, Write};
    let w = wine();
    let (share, proj) = w.project("locked", "proj");
    fs::write(share.join("book.xlsx"), "v1").unwrap();
    fs::write(share.join("notes.txt"), "n1").unwrap();
    let s = Served::start(w, &proj, r"C:\work\locked", &[]);
    fs::write(s.folder.join("book.xlsx"), "v2, ours").unwrap();
    fs::write(s.folder.join("notes.txt"), "n2").unwrap();
    let mut hold = w
        .cmd("wine")
        .arg(r"C:\sipfs\hold.exe")
        .arg(format!(r"{proj}\book.xlsx"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held", "hold.exe could not open the workbook");

    let answer = s.request("flush step-1");
    assert!(answer.starts_with("pending"), "{answer}");
    assert_eq!(fs::read_to_string(share.join("book.xlsx")).unwrap(), "v1");
    assert_eq!(fs::read_to_string(share.join("notes.txt")).unwrap(), "n2");
    let out = w.sipfs(&["status", r"C:\work\locked", "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pending = st["last_flush"]["pending"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let item = pending.iter().find(|p| p["path"] == "book.xlsx");
    assert!(item.is_some_and(|p| p["reason"] == "locked"), "{pending:?}");

    // The workbook is closed: the next flush writes it.
    let mut stdin = hold.stdin.take().unwrap();
    stdin.write_all(b"done\n").unwrap();
    drop(stdin);
    assert!(hold.wait().unwrap().success());
    let answer = s.request("flush step-2");
    assert!(answer.starts_with("ok"), "{answer}");
    assert_eq!(
        fs::read_to_string(share.join("book.xlsx")).unwrap(),
        "v2, ours"
    );
}

/// This build (gnu, mirror mode) has no drive, and says so rather than failing obscurely.
#[test]
fn the_mirror_build_says_it_has_no_drive() {
    let w = wine();
    let (_, proj) = w.project("nodrive", "proj");
    let out = w.sipfs(&["mount", &proj, "S:"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("sipfs mirror"), "{}", text(&out));
}
