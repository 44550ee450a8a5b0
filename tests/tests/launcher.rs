//! `sipfs detect` and `sipfs run`: what the workflow manager's launcher calls.
#![cfg(unix)]

use std::fs;
use std::process::Command;

use sipfs_tests::ssh_share::{chown_to_share_user, SshShare};
use sipfs_tests::*;

#[test]
fn detect_tells_local_from_network() {
    let s = Scratch::new();
    let out = sipfs(&["detect", s.share.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["network"], false, "{d:#}");
    assert_eq!(d["recommended"], "none");

    let share = SshShare::start(s.dir.path());
    let out = sipfs(&["detect", share.mnt.to_str().unwrap(), "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["network"], true, "{d:#}");
    assert_eq!(d["fs_type"], "fuse.sshfs");
    assert_eq!(d["recommended"], "mount");
    let out = sipfs(&["detect", share.mnt.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("network file system"));
}

#[test]
fn run_on_a_local_project_changes_nothing() {
    let s = Scratch::new();
    let out = sipfs(&[
        "run",
        s.share.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"$SMART_SYNC_ENABLED $PROJECT_PATH\"; echo local > \"$PROJECT_PATH/out.txt\"; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "the command's exit code");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("false {}", s.share.display())
    );
    assert_eq!(
        fs::read_to_string(s.share.join("out.txt")).unwrap(),
        "local\n"
    );
}

#[test]
fn run_on_a_network_project_mounts_flushes_and_passes_the_exit_code() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    fs::write(share.export.join("input.csv"), "a,b\n").unwrap();
    chown_to_share_user(&share.export.join("input.csv"));
    let at = s.dir.path().join("work");
    fs::create_dir_all(&at).unwrap();
    let script = "set -e; test \"$SMART_SYNC_ENABLED\" = true; test \"$LOCAL_PROJECT_PATH\" = \"$PROJECT_PATH\"; \
                  cat \"$PROJECT_PATH/input.csv\" > \"$PROJECT_PATH/copy.csv\"; \
                  echo \"$NETWORK_PROJECT_PATH\" > \"$PROJECT_PATH/network.txt\"; \
                  test ! -e \"$NETWORK_PROJECT_PATH/copy.csv\"; exit 5";
    let out = sipfs_run(&share.mnt, None, &at, &s.cache, script);
    assert_eq!(
        out.status.code(),
        Some(5),
        "the command's exit code passes through"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("copy.csv")).unwrap(),
        "a,b\n",
        "flushed at the end"
    );
    assert_eq!(
        fs::read_to_string(share.export.join("network.txt"))
            .unwrap()
            .trim(),
        share.mnt.to_str().unwrap()
    );
    assert!(fs::read_dir(&at).unwrap().next().is_none(), "unmounted");

    // A final flush that cannot finish says so, with exit code 3.
    Command::new("chattr")
        .arg("+i")
        .arg(share.export.join("copy.csv"))
        .status()
        .unwrap();
    let out = sipfs_run(
        &share.mnt,
        None,
        &at,
        &s.cache,
        "echo changed > \"$PROJECT_PATH/copy.csv\"",
    );
    Command::new("chattr")
        .arg("-i")
        .arg(share.export.join("copy.csv"))
        .status()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stay pending"));
}

#[test]
fn run_on_a_mount_works_from_the_cache_while_the_share_is_away() {
    let s = Scratch::new();
    let mut share = SshShare::start(s.dir.path());
    fs::write(share.export.join("input.csv"), "a,b\n").unwrap();
    chown_to_share_user(&share.export.join("input.csv"));
    let at = s.dir.path().join("work");
    fs::create_dir_all(&at).unwrap();
    let run = |share: &SshShare, script: &str| {
        sipfs_run(&share.mnt, Some("mount"), &at, &s.cache, script)
    };
    // The first run reads the input, so the cache has it.
    let first = run(&share, "cat \"$PROJECT_PATH/input.csv\" > /dev/null");
    assert_eq!(first.status.code(), Some(0));

    share.stop_server();
    let out = run(
        &share,
        "cat \"$PROJECT_PATH/input.csv\" > \"$PROJECT_PATH/copy.csv\"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "pending: {err}");
    assert!(err.contains("cannot be reached"), "{err}");

    // Back: the next run writes what the last one left pending, before anything else.
    share.start_server();
    let out = run(&share, "true");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        fs::read_to_string(share.export.join("copy.csv")).unwrap(),
        "a,b\n"
    );
}
