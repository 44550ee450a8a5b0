//! The WinFsp drive on a real Windows machine: `sipfs.exe mount SHARE S:` and programs'
//! file operations on `S:`, checked on the share after flushes and the unmount.
//!
//! These run only on Windows with WinFsp installed, from `.github/workflows/windows.yml` on a
//! hosted Windows runner (`SIPFS_DRIVE_TESTS=1`). They cannot run on the Linux machines the
//! project is developed and tested on; there they are type-checked for
//! x86_64-pc-windows-msvc by `scripts/check-windows-msvc`.
#![cfg(all(windows, target_env = "msvc"))]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sipfs_exe() -> PathBuf {
    std::env::var_os("SIPFS_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // TARGET\PROFILE\deps\this.exe: the release build is TARGET\release\sipfs.exe,
            // wherever CARGO_TARGET_DIR put TARGET.
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.ancestors()
                .nth(3)
                .expect("a test binary under TARGET\\PROFILE\\deps")
                .join("release")
                .join("sipfs.exe")
        })
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Mounted {
    child: Child,
    drive: String,
}

impl Mounted {
    fn start(share: &Path, cache: &Path, drive: &str) -> Mounted {
        let child = Command::new(sipfs_exe())
            .arg("mount")
            .arg(share)
            .arg(drive)
            .arg("--cache")
            .arg(cache)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting sipfs.exe mount");
        let m = Mounted {
            child,
            drive: drive.to_owned(),
        };
        wait_for("the drive", || m.path(".sipfs\\status").exists());
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{}\\{rel}", self.drive))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn programs_work_on_the_drive_and_flushes_reach_the_share() {
    if std::env::var_os("SIPFS_DRIVE_TESTS").is_none() {
        eprintln!("SKIPPED: set SIPFS_DRIVE_TESTS=1 on a Windows machine with WinFsp");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("Inputs")).unwrap();
    fs::write(share.join("Inputs\\Samples.csv"), "id\n1\n").unwrap();
    let mut m = Mounted::start(&share, &tmp.path().join("cache"), "S:");

    // Names open whatever their case; the drive keeps the case they were made with.
    assert_eq!(
        fs::read_to_string(m.path("inputs\\samples.CSV")).unwrap(),
        "id\n1\n"
    );
    fs::create_dir(m.path("Results")).unwrap();
    fs::write(m.path("Results\\out.csv"), "x\n").unwrap();
    fs::rename(m.path("Results\\out.csv"), m.path("Results\\Out.csv")).unwrap();
    fs::write(m.path("gone.txt"), "").unwrap();
    fs::remove_file(m.path("gone.txt")).unwrap();
    let mut p = fs::metadata(m.path("Results\\Out.csv"))
        .unwrap()
        .permissions();
    p.set_readonly(true);
    fs::set_permissions(m.path("Results\\Out.csv"), p).unwrap();
    assert!(
        fs::remove_file(m.path("Results\\Out.csv")).is_err(),
        "read-only files refuse deletion"
    );
    assert!(
        fs::remove_dir(m.path("Results")).is_err(),
        "a folder with files in it stays"
    );
    assert!(
        !share.join("Results").exists(),
        "nothing reaches the share before a flush"
    );

    // A step in a container (or a script) asks for a flush through the control file.
    fs::write(m.path(".sipfs\\control"), "flush step-1\n").unwrap();
    assert_eq!(
        fs::read_to_string(share.join("Results\\Out.csv")).unwrap(),
        "x\n"
    );
    assert!(!share.join("gone.txt").exists());

    fs::write(m.path("late.csv"), "late\n").unwrap();
    let out = Command::new(sipfs_exe())
        .args(["unmount", "S:"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the mount process to end", || {
        matches!(m.child.try_wait(), Ok(Some(_)))
    });
    assert_eq!(
        fs::read_to_string(share.join("late.csv")).unwrap(),
        "late\n"
    );
}
