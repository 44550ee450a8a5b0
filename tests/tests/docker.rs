//! The design's main use, end to end with a real Docker engine: the launcher (`sipfs run`)
//! presents the project, a container gets it as a bind mount, three workflow steps run in it
//! and each ends with `echo "flush step-N" > /data/.sipfs/control`. After each step's control
//! write the share holds exactly the project as the container left it (content and mtimes of
//! every file and folder), and before it the share has none of that step's results.
//!
//! Four ways: a FUSE mount or a mirror folder, each with `docker run -v` and with a
//! docker-compose.yml that takes the project from `PROJECT_PATH`.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipfs_tests::docker::{docker_ready, IMAGE};
use sipfs_tests::*;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Mount,
    Mirror,
}

#[derive(Clone, Copy, Debug)]
enum Launch {
    DockerRun,
    Compose,
}

const STEPS: u32 = 3;

/// The project view minus sipfs's own control folder and what is never written back.
fn view(root: &Path) -> BTreeMap<String, Entry> {
    snapshot(root, &|p| p == ".sipfs" || default_ignored(p))
}

/// The share, minus the old versions a step's flush captured: they stay, under a private
/// name, until the next flush (fs-core's `flush/capture.rs`).
fn share_view(root: &Path) -> BTreeMap<String, Entry> {
    snapshot(root, &|p| p.split('/').any(fs_core::names::is_capture_name))
}

/// Kills the launcher if the test fails half-way (and the containers it started, which would
/// wait for the handshake, and the mount it leaves), and shows what it printed.
struct Launcher {
    child: Option<Child>,
    log: PathBuf,
    containers: String,
    mount: PathBuf,
}

impl Launcher {
    fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "docker ps -aq --filter name={} | xargs -r docker rm -f",
                    self.containers
                ))
                .output();
            let _ = Command::new("umount").arg("-l").arg(&self.mount).output();
        }
    }
}

fn wait_for(launcher: &mut Launcher, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !path.exists() {
        assert!(
            launcher.alive(),
            "the launcher ended before {}:\n{}",
            path.display(),
            launcher.log()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}:\n{}",
            path.display(),
            launcher.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn compose_file(sync: &Path) -> PathBuf {
    let path = sync.join("docker-compose.yml");
    fs::write(
        &path,
        format!(
            "version: \"3\"
services:
  step:
    image: {IMAGE}
    network_mode: none
    volumes:
      - ${{PROJECT_PATH}}:/data
      - {sync}:/sync
    command: python3 /sync/container_workflow.py {STEPS}
",
            sync = sync.display()
        ),
    )
    .unwrap();
    path
}

fn scenario(mode: Mode, launch: Launch) {
    if !docker_ready() {
        return;
    }
    let s = Scratch::new();
    // The project on the share: a folder here, so times are compared to the nanosecond.
    fs::write(s.share.join("input.csv"), "sample,value\ns0,1\n").unwrap();
    fs::write(s.share.join("workflow_state.json"), "{\"steps_done\": []}").unwrap();
    let sync = s.dir.path().join("sync");
    fs::create_dir_all(&sync).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/container_workflow.py"),
        sync.join("container_workflow.py"),
    )
    .unwrap();
    let at = match mode {
        Mode::Mount => s.mnt.clone(),
        Mode::Mirror => s.dir.path().join("staging"),
    };
    // Unique per test (they run in parallel in one process); compose wants lowercase.
    let name: String = s
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let inner = match launch {
        Launch::DockerRun => format!(
            "exec docker run --rm --name {name} --network none -v \"$PROJECT_PATH\":/data -v {}:/sync {IMAGE} python3 /sync/container_workflow.py {STEPS}",
            sync.display()
        ),
        Launch::Compose => format!(
            "exec docker-compose -f {} -p {name} run --rm step",
            compose_file(&sync).display()
        ),
    };
    let log = s.dir.path().join("launcher.log");
    let mode_arg = match mode {
        Mode::Mount => "mount",
        Mode::Mirror => "mirror",
    };
    let child = Command::new(sipfs_bin())
        .arg("run")
        .arg(&s.share)
        .args(["--mode", mode_arg, "--allow-other", "--at"])
        .arg(&at)
        .arg("--cache")
        .arg(&s.cache)
        .args(["--", "sh", "-c", &inner])
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::options().append(true).open(&log).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut launcher = Launcher {
        child: Some(child),
        log,
        containers: name.clone(),
        mount: at.clone(),
    };

    let mut before = share_view(&s.share);
    for n in 1..=STEPS {
        wait_for(&mut launcher, &sync.join(format!("ready-{n}")));
        // The step has written everything; nothing of it may be on the share yet.
        assert_eq!(
            share_view(&s.share),
            before,
            "step {n}: the share changed before the control write"
        );
        assert!(!s.share.join(format!("results/step-{n}.csv")).exists());
        fs::write(sync.join(format!("go-{n}")), "1").unwrap();

        wait_for(&mut launcher, &sync.join(format!("flushed-{n}")));
        let share = share_view(&s.share);
        assert_same_tree(&share, &view(&at));
        for f in [
            format!("results/step-{n}.csv"),
            format!(".workflow_status/step-{n}.done"),
            format!(".snapshots/step-{n}.zip"),
            "results/measurements.sqlite".to_owned(),
        ] {
            assert!(share.contains_key(&f), "step {n}: {f} missing on the share");
        }
        let log = fs::read_to_string(s.share.join(".workflow_logs/workflow.log")).unwrap();
        assert_eq!(log.lines().count(), n as usize, "{log}");
        let state: serde_json::Value =
            serde_json::from_slice(&fs::read(s.share.join("workflow_state.json")).unwrap())
                .unwrap();
        assert_eq!(
            state["steps_done"],
            serde_json::json!((1..=n).collect::<Vec<_>>())
        );
        assert!(
            !share.keys().any(|k| k.contains(".sipfs")),
            "sipfs's own files reached the share: {:?}",
            share
                .keys()
                .filter(|k| k.contains(".sipfs"))
                .collect::<Vec<_>>()
        );
        before = share;
        fs::write(sync.join(format!("next-{n}")), "1").unwrap();
    }
    let status = launcher.child.as_mut().unwrap().wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the launcher passes the container's exit code:\n{}",
        launcher.log()
    );
    assert!(
        launcher.log().contains(&format!("{STEPS} steps done")),
        "{}",
        launcher.log()
    );
    // The final flush found nothing left: every step's flush had written it all.
    assert_eq!(share_view(&s.share), before);
}

#[test]
fn steps_in_docker_run_on_a_mount() {
    scenario(Mode::Mount, Launch::DockerRun);
}

#[test]
fn steps_in_docker_compose_on_a_mount() {
    scenario(Mode::Mount, Launch::Compose);
}

#[test]
fn steps_in_docker_run_on_a_mirror_folder() {
    scenario(Mode::Mirror, Launch::DockerRun);
}

#[test]
fn steps_in_docker_compose_on_a_mirror_folder() {
    scenario(Mode::Mirror, Launch::Compose);
}

/// `sipfs run --mode mount --docker-image IMAGE`, optionally inside a private mount
/// namespace (`unshare -m`): there the FUSE mount exists for sipfs and its command, but the
/// Docker daemon, in the machine's namespace, would bind-mount the empty folder under it — as
/// Docker Desktop does with a WinFsp drive it cannot share. Returns what the command saw as
/// `PROJECT_PATH`, and sipfs's output.
fn run_with_probe(s: &Scratch, private_namespace: bool) -> (String, String) {
    let script = r#"printf %s "$PROJECT_PATH" > "$PROJECT_PATH/where.txt""#;
    let mut cmd = if private_namespace {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private"]).arg(sipfs_bin());
        c
    } else {
        Command::new(sipfs_bin())
    };
    cmd.args([
        "run",
        s.share.to_str().unwrap(),
        "--mode",
        "mount",
        "--docker-image",
        IMAGE,
    ])
    .arg("--at")
    .arg(&s.mnt)
    .arg("--cache")
    .arg(&s.cache)
    .args(["--", "sh", "-c", script])
    .env("TMPDIR", s.dir.path());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let seen = fs::read_to_string(s.share.join("where.txt")).expect("the final flush wrote it");
    (seen, text)
}

#[test]
fn run_keeps_a_mount_that_containers_see() {
    if !docker_ready() {
        return;
    }
    let s = Scratch::new();
    let (seen, text) = run_with_probe(&s, false);
    assert_eq!(Path::new(&seen), s.mnt.as_path(), "{text}");
    assert!(!text.contains("mirror folder instead"), "{text}");
}

#[test]
fn run_falls_back_to_a_mirror_folder_when_containers_cannot_see_the_mount() {
    if !docker_ready() {
        return;
    }
    require_tools(&["unshare"]);
    let s = Scratch::new();
    let (seen, text) = run_with_probe(&s, true);
    assert!(text.contains("using a mirror folder instead"), "{text}");
    assert_ne!(Path::new(&seen), s.mnt.as_path(), "{text}");
    assert!(
        Path::new(&seen).starts_with(s.dir.path().join("sip_workflow")),
        "{seen}"
    );
}

/// The tests' image as a user who owns nothing in the project (nobody), as many images run.
fn image_as_nobody() -> &'static str {
    const NOBODY: &str = "sipfs-test/python:nobody";
    let have = Command::new("docker")
        .args(["image", "inspect", NOBODY])
        .output()
        .unwrap();
    if !have.status.success() {
        let made = run_ok(Command::new("docker").args(["create", IMAGE, "true"]));
        let id = String::from_utf8_lossy(&made.stdout).trim().to_owned();
        run_ok(Command::new("docker").args([
            "commit",
            "--change",
            "USER 65534:65534",
            &id,
            NOBODY,
        ]));
        run_ok(Command::new("docker").args(["rm", &id]));
    }
    NOBODY
}

/// `sipfs run --allow-other --docker-image IMG` where IMG runs as a user who may not write in
/// the project under the mount's permission checks (the default): sipfs sees it with its
/// probe, mounts again without the checks, and says so; the step in the container then
/// writes. Without the fallback the container's write is refused and the step fails.
#[test]
fn run_drops_permission_checks_when_the_container_user_may_not_write() {
    if !docker_ready() {
        return;
    }
    let image = image_as_nobody();
    let s = Scratch::new();
    let step = format!(
        r#"docker run --rm --network none -v "$PROJECT_PATH:/data" {image} \
             sh -c 'id -u > /data/written-by.txt'"#
    );
    let out = Command::new(sipfs_bin())
        .args(["run", s.share.to_str().unwrap(), "--mode", "mount"])
        .args(["--allow-other", "--docker-image", image, "--at"])
        .arg(&s.mnt)
        .arg("--cache")
        .arg(&s.cache)
        .args(["--", "sh", "-c", &step])
        .env("TMPDIR", s.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("--no-permission-checks"), "{text}");
    assert_eq!(
        fs::read_to_string(s.share.join("written-by.txt")).unwrap(),
        "65534\n",
        "{text}"
    );
}

/// The same with a container that runs as root: root passes permission checks, so the mount
/// keeps them, and says nothing about them.
#[test]
fn run_keeps_permission_checks_for_a_container_running_as_root() {
    if !docker_ready() {
        return;
    }
    let s = Scratch::new();
    let step = format!(
        r#"docker run --rm --network none -v "$PROJECT_PATH:/data" {IMAGE} \
             sh -c 'id -u > /data/written-by.txt'"#
    );
    let out = Command::new(sipfs_bin())
        .args(["run", s.share.to_str().unwrap(), "--mode", "mount"])
        .args(["--allow-other", "--docker-image", IMAGE, "--at"])
        .arg(&s.mnt)
        .arg("--cache")
        .arg(&s.cache)
        .args(["--", "sh", "-c", &step])
        .env("TMPDIR", s.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("permission checks"), "{text}");
    assert_eq!(
        fs::read_to_string(s.share.join("written-by.txt")).unwrap(),
        "0\n"
    );
}
