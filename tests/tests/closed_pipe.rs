//! A reader that closes the pipe before sipfs writes (`sipfs status | head -3`, `| head -c 20`)
//! must end sipfs quietly: no panic, exit 0 for commands that only print, and for commands
//! that change things the work done all the same, with its own exit code.
#![cfg(unix)]

use std::fs;
use std::process::{Command, Output, Stdio};

use sipfs_tests::*;

/// Runs sipfs with its stdout on a pipe whose reader is already gone: its first write fails
/// with EPIPE, as a `| head` that has read enough makes every later one fail.
fn sipfs_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(sipfs_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("running sipfs");
    eprintln!(
        "$ sipfs {} | (closed)\n{}-> {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        out.status
    );
    out
}

fn assert_quiet(out: &Output, code: i32) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "sipfs panicked: {err}");
    assert!(!err.contains("Broken pipe"), "sipfs complained: {err}");
    assert_eq!(out.status.code(), Some(code), "{err}");
}

#[test]
fn commands_that_only_print_end_with_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_quiet(&sipfs_into_closed_pipe(&["detect", d, "--json"]), 0);
    assert_quiet(&sipfs_into_closed_pipe(&["detect", d]), 0);
    assert_quiet(&sipfs_into_closed_pipe(&["--help"]), 0);
    assert_quiet(&sipfs_into_closed_pipe(&["flush", "--help"]), 0);
    assert_quiet(&sipfs_into_closed_pipe(&["--version"]), 0);
}

#[test]
fn status_and_flush_on_a_mount_into_a_closed_pipe() {
    let s = Scratch::new();
    fs::write(s.share.join("in.csv"), "a\n").unwrap();
    let m = s.mount(&[]);
    let mnt = m.mnt.to_str().unwrap();
    fs::write(m.mnt.join("out.csv"), "b\n").unwrap();
    assert_quiet(&sipfs_into_closed_pipe(&["status", mnt]), 0);
    assert_quiet(&sipfs_into_closed_pipe(&["status", mnt, "--json"]), 0);
    // The flush is done whole although nobody reads its report.
    assert_quiet(&sipfs_into_closed_pipe(&["flush", mnt, "--step", "s1"]), 0);
    assert_eq!(fs::read_to_string(s.share.join("out.csv")).unwrap(), "b\n");
    assert!(m.stop().success());
}
