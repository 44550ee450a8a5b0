//! The project's scripts find what cargo built where cargo put it. Many Rust developers set
//! `CARGO_TARGET_DIR` globally; a script that runs `target/release/sipfs` then fails with
//! "No such file or directory" after a build that succeeded.
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `scripts/target-dir`, run from `cwd` with `CARGO_TARGET_DIR` set to `value` (or unset).
fn target_dir(cwd: &Path, value: Option<&str>) -> PathBuf {
    let mut c = Command::new(workspace().join("scripts/target-dir"));
    c.current_dir(cwd);
    match value {
        Some(v) => c.env("CARGO_TARGET_DIR", v),
        None => c.env_remove("CARGO_TARGET_DIR"),
    };
    let out = c.output().expect("running scripts/target-dir");
    assert!(
        out.status.success(),
        "scripts/target-dir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn target_dir_follows_cargo_target_dir() {
    let ws = workspace();
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(
        target_dir(&ws, Some(elsewhere.path().to_str().unwrap())),
        elsewhere.path()
    );
    // A relative CARGO_TARGET_DIR is relative to where cargo runs, which the script makes the
    // workspace (as every script does: `cd "$(dirname "$0")/.."`).
    assert_eq!(target_dir(elsewhere.path(), Some("tgt")), ws.join("tgt"));
    // Unset, and no cargo config that says otherwise: target/ in the workspace.
    if std::env::var_os("CARGO_BUILD_TARGET_DIR").is_none() && !ws.join(".cargo").exists() {
        assert_eq!(target_dir(&ws, None), ws.join("target"));
    }
}

/// Every script that runs a binary cargo built asks `scripts/target-dir` where it is. A path
/// spelled `target/...` in a script is where the binary is only when nothing moved it.
#[test]
fn no_script_spells_out_the_target_folder() {
    let mut offenders = Vec::new();
    for entry in fs::read_dir(workspace().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            let spelled = [
                "target/release",
                "target/debug",
                "target/windows",
                "target/tools",
            ]
            .iter()
            .any(|t| {
                code.match_indices(t).any(|(i, _)| {
                    // `$target_dir/release` is fine; `target/release` on its own is not.
                    i == 0
                        || !code.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && code.as_bytes()[i - 1] != b'_'
                })
            });
            if spelled {
                offenders.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "scripts that assume cargo builds into target/:\n{}",
        offenders.join("\n")
    );
}
