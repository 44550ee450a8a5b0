//! Mirror mode from the command line, on a real network share (sshfs on 127.0.0.1): `sipfs
//! mirror` serving a folder, `sipfs flush/status/unmount FOLDER` asking it, the same commands
//! with nothing serving it, and `sipfs run --mode mirror`.
#![cfg(unix)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipfs_tests::ssh_share::{chown_to_share_user, SshShare};
use sipfs_tests::*;

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sipfs mirror` process, killed if the test fails before it stops.
struct Server(Option<Child>);

impl Server {
    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.take().unwrap().wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_mirror(share: &Path, folder: &Path, cache: &Path) -> Server {
    let child = Command::new(sipfs_bin())
        .args(["mirror"])
        .arg(share)
        .arg(folder)
        .arg("--cache")
        .arg(cache)
        .args(["--ignore", "*.scratch"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server(Some(child));
    // Ready once the first sync has written the status file (with the cache).
    wait_for("the mirror to be filled", Duration::from_secs(60), || {
        cache.join("status.json").exists()
    });
    server
}

/// Asks through `.sipfs/control` as a container does; the answer that replaces the request.
fn ask_control(folder: &Path, command: &str) -> String {
    let control = folder.join(".sipfs/control");
    fs::write(&control, command).unwrap();
    let mut answer = String::new();
    wait_for(
        "the request to be answered",
        Duration::from_secs(60),
        || {
            answer = fs::read_to_string(&control).unwrap_or_default();
            answer != command
        },
    );
    answer
}

#[test]
fn a_served_mirror_folder_answers_flush_status_and_stop() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    fs::create_dir_all(share.export.join("data")).unwrap();
    fs::write(share.export.join("data/input.csv"), "x,y\n1,2\n").unwrap();
    chown_to_share_user(&share.export);
    let folder = s.dir.path().join("mirror");
    let mut server = start_mirror(&share.mnt, &folder, &s.cache);
    assert_eq!(
        fs::read_to_string(folder.join("data/input.csv")).unwrap(),
        "x,y\n1,2\n",
        "filled from the share"
    );

    fs::write(folder.join("data/output.csv"), "x,y\n3,4\n").unwrap();
    fs::remove_file(folder.join("data/input.csv")).unwrap();
    assert!(
        share.export.join("data/input.csv").exists(),
        "not before a flush"
    );
    let out = sipfs(&["flush", folder.to_str().unwrap(), "--step", "s1", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["label"], "s1", "{r:#}");
    assert_eq!(
        fs::read_to_string(share.export.join("data/output.csv")).unwrap(),
        "x,y\n3,4\n"
    );
    assert!(!share.export.join("data/input.csv").exists());
    // sshfs (SFTP) keeps whole seconds only.
    let secs = |p: &Path| {
        fs::metadata(p)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(
        secs(&folder.join("data/output.csv")),
        secs(&share.export.join("data/output.csv")),
        "mtime kept"
    );

    // status lists what is pending, found by comparing the folder with the journal.
    fs::write(folder.join("late.txt"), "late\n").unwrap();
    let answer = ask_control(&folder, "flush\n");
    assert!(answer.starts_with("ok flush"), "{answer}");
    assert!(share.export.join("late.txt").exists());
    // That flush went by the OS's notifications: it looked at the top folder's entries only.
    let served: serde_json::Value =
        serde_json::from_slice(&fs::read(s.cache.join("status.json")).unwrap()).unwrap();
    assert_eq!(served["watched"], true, "{served:#}");
    assert_eq!(served["last_scan"]["full"], false, "{served:#}");
    assert_eq!(served["last_scan"]["created"], 1, "{served:#}");
    assert!(
        served["last_scan"]["entries"].as_u64().unwrap() <= 4,
        "{served:#}"
    );

    fs::write(folder.join("last.txt"), "last\n").unwrap();
    let out = sipfs(&["status", folder.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        st["pending_paths"],
        serde_json::json!(["last.txt"]),
        "the serving process scans for status: {st:#}"
    );
    let out = sipfs(&["unmount", folder.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let status = server.wait();
    assert!(status.success(), "the server stops cleanly: {status}");
    assert_eq!(
        fs::read_to_string(share.export.join("last.txt")).unwrap(),
        "last\n"
    );

    // Nothing serves the folder now: the commands do the work themselves.
    fs::write(
        folder.join("offline-edit.txt"),
        "edited without sipfs running\n",
    )
    .unwrap();
    fs::write(
        folder.join("notes.scratch"),
        "kept local by the folder's rules\n",
    )
    .unwrap();
    let out = sipfs(&["status", folder.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["pending_files"], 1, "{st:#}");
    let out = sipfs(&["flush", folder.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(share.export.join("offline-edit.txt").exists());
    assert!(
        !share.export.join("notes.scratch").exists(),
        "the rules `sipfs mirror --ignore` set apply without it"
    );
    // Others' changes come in with a refresh.
    fs::write(share.export.join("theirs.txt"), "from a colleague\n").unwrap();
    chown_to_share_user(&share.export);
    let out = sipfs(&["refresh", folder.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(folder.join("theirs.txt")).unwrap(),
        "from a colleague\n"
    );
}

/// The names in a folder, recursively, with their content, `.sipfs/` left out.
fn project_files(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // sipfs's own: the control folder, and on the share the captured old versions a
            // flush removes later (docs/ARCHITECTURE.md, "The commit that loses no version").
            if rel == ".sipfs" || rel.contains(".sipfs-tmp-") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_snapshot_zip_and_an_undo_of_the_folder_leave_the_mirror_working() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    fs::write(share.export.join("workflow_state.json"), "{\"step\": 0}").unwrap();
    chown_to_share_user(&share.export);
    let folder = s.dir.path().join("mirror");
    let mut server = start_mirror(&share.mnt, &folder, &s.cache);
    let dir = |p: &Path| p.to_str().unwrap().to_owned();
    let (zip, manifest) = (
        s.dir.path().join("snap.zip"),
        s.dir.path().join("manifest.json"),
    );
    // The folder keeps nothing of sipfs's own but the control file.
    let names: Vec<_> = fs::read_dir(folder.join(".sipfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["control"]);
    for (undo, drop_sipfs) in [(1, false), (2, true)] {
        // A step, flushed through the control file; then the workflow manager's snapshot,
        // `.sipfs/` and the answer in it included.
        fs::create_dir_all(folder.join(format!("step{undo}"))).unwrap();
        fs::write(
            folder.join(format!("step{undo}/out.csv")),
            format!("{undo}\n"),
        )
        .unwrap();
        fs::write(
            folder.join("workflow_state.json"),
            format!("{{\"step\": {undo}}}"),
        )
        .unwrap();
        let answer = ask_control(&folder, &format!("flush step-{undo}\n"));
        assert!(
            answer.starts_with(&format!("ok flush step-{undo}")),
            "{answer}"
        );
        python(
            "snapshot_undo.py",
            &["snapshot", &dir(&folder), &dir(&zip), &dir(&manifest)],
        );
        let before = project_files(&folder);
        // The next step, flushed; then undone: its files deleted (`.sipfs/`'s too, the
        // second time), the snapshot restored over the folder.
        fs::write(folder.join("later.csv"), "later\n").unwrap();
        fs::write(folder.join("workflow_state.json"), "{\"step\": 99}").unwrap();
        let answer = ask_control(&folder, "flush later\n");
        assert!(answer.starts_with("ok flush later"), "{answer}");
        assert!(share.export.join("later.csv").exists());
        let mut args = vec!["undo", &dir(&folder), &dir(&zip), &dir(&manifest)]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if drop_sipfs {
            args.push("--drop-sipfs".into());
        }
        python(
            "snapshot_undo.py",
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(project_files(&folder), before);
        // The restored answer is not taken for a request; a new request is served, and the
        // share ends as the folder: the undo's deletion and restored content written, nothing
        // else lost.
        let answer = ask_control(&folder, &format!("flush undo-{undo}\n"));
        assert!(
            answer.starts_with(&format!("ok flush undo-{undo}")),
            "{answer}"
        );
        assert_eq!(project_files(&share.export), before, "undo {undo}");
        let out = sipfs(&["status", &dir(&folder), "--json"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["pending_files"], 0, "{st:#}");
    }
    // Refresh still brings in what others wrote.
    fs::write(share.export.join("theirs.txt"), "t\n").unwrap();
    chown_to_share_user(&share.export);
    let out = sipfs(&["refresh", &dir(&folder)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(folder.join("theirs.txt")).unwrap(),
        "t\n"
    );
    let out = sipfs(&["unmount", &dir(&folder)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.wait().success());
    assert!(!share.export.join(".sipfs").exists());
}

#[test]
fn run_in_mirror_mode_fills_serves_requests_and_flushes_at_the_end() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    fs::write(share.export.join("input.csv"), "a,b\n").unwrap();
    chown_to_share_user(&share.export);
    let at = s.dir.path().join("staging");
    let script = "set -e; test \"$SMART_SYNC_ENABLED\" = true; test \"$PROJECT_PATH\" = \"$LOCAL_PROJECT_PATH\"; \
        cat \"$PROJECT_PATH/input.csv\" > \"$PROJECT_PATH/copy.csv\"; \
        test ! -e \"$NETWORK_PROJECT_PATH/copy.csv\"; \
        echo 'flush step-1' > \"$PROJECT_PATH/.sipfs/control\"; \
        while grep -qx 'flush step-1' \"$PROJECT_PATH/.sipfs/control\"; do sleep 0.1; done; \
        grep -q '^ok flush step-1' \"$PROJECT_PATH/.sipfs/control\"; \
        test -e \"$NETWORK_PROJECT_PATH/copy.csv\"; \
        echo after > \"$PROJECT_PATH/after.txt\"; exit 5";
    let out = sipfs_run(&share.mnt, Some("mirror"), &at, &s.cache, script);
    assert_eq!(out.status.code(), Some(5), "the command's exit code");
    assert_eq!(
        fs::read_to_string(share.export.join("copy.csv")).unwrap(),
        "a,b\n"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("after.txt")).unwrap(),
        "after\n",
        "the final flush"
    );
    assert!(
        !share.export.join(".sipfs").exists(),
        "control files stay local"
    );
    // The folder stays for the next run, which only pulls in what changed.
    assert!(at.join("copy.csv").exists());
}

#[test]
fn run_works_from_the_mirror_while_the_share_is_away() {
    let s = Scratch::new();
    let mut share = SshShare::start(s.dir.path());
    fs::write(share.export.join("input.csv"), "a,b\n").unwrap();
    chown_to_share_user(&share.export);
    let at = s.dir.path().join("staging");
    let run = |share: &SshShare, script: &str| {
        sipfs_run(&share.mnt, Some("mirror"), &at, &s.cache, script)
    };
    assert_eq!(
        run(&share, "true").status.code(),
        Some(0),
        "first run fills"
    );

    // The share goes away: the workflow still runs, from the folder, and is told.
    share.stop_server();
    let out = run(
        &share,
        "cat \"$PROJECT_PATH/input.csv\" > \"$PROJECT_PATH/copy.csv\"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "pending: {err}");
    assert!(err.contains("cannot be reached"), "{err}");
    assert_eq!(fs::read_to_string(at.join("copy.csv")).unwrap(), "a,b\n");

    // Back: the change is written by the next flush, from the folder.
    share.start_server();
    let out = sipfs(&["flush", at.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(share.export.join("copy.csv")).unwrap(),
        "a,b\n"
    );
}

#[test]
fn a_first_run_without_the_share_is_a_clear_error() {
    let s = Scratch::new();
    let out = sipfs(&[
        "run",
        s.dir.path().join("no-such-share").to_str().unwrap(),
        "--mode",
        "mirror",
        "--at",
        s.dir.path().join("staging").to_str().unwrap(),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be reached") && err.contains("no copy"),
        "{err}"
    );
}
