//! Does a container see the served project? Docker Desktop may not bind-mount a WinFsp drive
//! or junction (docker/for-win#14271, winfsp#473), and a FUSE mount made in another mount
//! namespace, or without `--allow-other` for a daemon of another user, is not what a container
//! gets either: it gets the empty folder under it. `sipfs run` asks before the command starts,
//! and falls back to a mirror folder when the answer is no.
//!
//! The question is asked of a throw-away container of the workflow's own image: it reads the
//! served `.sipfs/status` through a bind mount and must find this process's pid in it. Nothing
//! is written to the project for it.

use std::path::Path;
use std::process::{Command, Stdio};

/// What the probe found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Yes,
    /// The container got something else at the path (or nothing): with why, for the message.
    No(String),
}

/// Asks a container of `image` whether it sees the project this process serves at `path`.
/// `Err` when Docker itself could not be asked (not installed, no engine, no such image).
pub fn container_sees(path: &Path, image: &str) -> Result<Seen, String> {
    let inspect = Command::new("docker")
        .args(["image", "inspect", image])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker could not be started ({e})"))?;
    if !inspect.status.success() {
        let why = String::from_utf8_lossy(&inspect.stderr);
        return Err(format!("docker has no image {image} ({})", why.trim()));
    }
    let out = probe_run(path, ":ro", image, "cat", &["/sipfs-probe/.sipfs/status"])
        .map_err(|e| format!("docker could not be started ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(judge(
        out.status.code(),
        &stdout,
        &stderr,
        std::process::id(),
    ))
}

/// Whether the user a container of the image runs as may write in the project's top folder.
/// (Asked of FUSE mounts, whose permission checks the container's user meets.)
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))]
pub enum MayWrite {
    Yes,
    No,
    /// The question could not be asked (no `test` in the image, Docker failed): with why.
    Unknown(String),
}

/// Asks a container of `image`, as the user it runs as, whether it may write in the project
/// served at `path` (`test -w`: the kernel answers from the mount's modes and owners, exactly
/// as for the workflow's own writes). Nothing is written.
#[cfg_attr(not(unix), allow(dead_code))]
pub fn container_may_write(path: &Path, image: &str) -> MayWrite {
    match probe_run(path, "", image, "test", &["-w", "/sipfs-probe"]) {
        Ok(out) => judge_write(out.status.code(), &String::from_utf8_lossy(&out.stderr)),
        Err(e) => MayWrite::Unknown(format!("docker could not be started ({e})")),
    }
}

/// The verdict from `docker run ... test -w`: `test` says 0 or 1; anything else is Docker's
/// own failure (125: the container did not start; 126, 127: no `test` in the image).
#[cfg_attr(not(unix), allow(dead_code))]
fn judge_write(code: Option<i32>, stderr: &str) -> MayWrite {
    match code {
        Some(0) => MayWrite::Yes,
        Some(1) => MayWrite::No,
        _ => MayWrite::Unknown(
            stderr
                .lines()
                .last()
                .unwrap_or("the container did not run")
                .to_owned(),
        ),
    }
}

/// Runs `entrypoint args` in a throw-away container of `image`, without network, with the
/// project at `path` bind-mounted at `/sipfs-probe` (`mode`: "" or ":ro").
fn probe_run(
    path: &Path,
    mode: &str,
    image: &str,
    entrypoint: &str,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    let mount = format!("{}:/sipfs-probe{mode}", path.display());
    Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v", &mount])
        .args(["--entrypoint", entrypoint, image])
        .args(args)
        .stdin(Stdio::null())
        .output()
}

/// The verdict from what `docker run ... cat .sipfs/status` printed.
fn judge(code: Option<i32>, stdout: &str, stderr: &str, pid: u32) -> Seen {
    let ours = serde_json::from_str::<serde_json::Value>(stdout)
        .ok()
        .and_then(|v| v.get("pid").and_then(serde_json::Value::as_u64))
        == Some(u64::from(pid));
    match code {
        Some(0) if ours => Seen::Yes,
        Some(0) => Seen::No("the container sees another project's status there".into()),
        _ => Seen::No(
            stderr
                .lines()
                .last()
                .unwrap_or("the container found no .sipfs/status there")
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tests_own_answer_says_whether_a_container_may_write() {
        assert_eq!(judge_write(Some(0), ""), MayWrite::Yes);
        assert_eq!(judge_write(Some(1), ""), MayWrite::No);
        let missing = "docker: Error response from daemon: exec: \"test\": executable file not found in $PATH";
        assert_eq!(
            judge_write(Some(127), missing),
            MayWrite::Unknown(missing.into())
        );
        assert!(matches!(judge_write(None, ""), MayWrite::Unknown(_)));
    }

    #[test]
    fn only_our_own_status_counts() {
        let ours = "{\n  \"pid\": 42,\n  \"mountpoint\": \"/p\"\n}\n";
        assert_eq!(judge(Some(0), ours, "", 42), Seen::Yes);
        assert!(matches!(judge(Some(0), ours, "", 7), Seen::No(_)));
        let empty = judge(
            Some(1),
            "",
            "cat: /sipfs-probe/.sipfs/status: No such file or directory",
            42,
        );
        assert_eq!(
            empty,
            Seen::No("cat: /sipfs-probe/.sipfs/status: No such file or directory".into())
        );
    }
}
