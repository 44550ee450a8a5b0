//! An sshfs share's folders are listed over SFTP with their attributes (`fs_core::sftp`), as a
//! real sshd on 127.0.0.1 serves them: the same entries the mount shows, no stat per entry
//! at the server, and a fall back to the mount wherever the listing cannot be trusted.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use fs_core::backing::{Backing, DirBacking, Stat};
use fs_core::relpath::RelPath;
use fs_core::sftp::SftpLister;
use sipfs_tests::ssh_share::{chown_to_share_user, SshShare};
use sipfs_tests::*;

/// A project with what a listing must get right: nested folders, modes, times, a symbolic
/// link, a name that is not UTF-8, an empty folder.
fn make_project(root: &Path) -> Vec<RelPath> {
    let dirs = ["", "data", "data/deep", "empty", ".hidden"];
    for d in &dirs {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for (i, d) in dirs.iter().enumerate().filter(|(_, d)| **d != "empty") {
        for j in 0..5 {
            let p = root.join(d).join(format!("f{j}.csv"));
            fs::write(&p, vec![b'x'; i * 100 + j]).unwrap();
            filetime::set_file_mtime(
                &p,
                filetime::FileTime::from_unix_time(1_600_000_000 + (i * 10 + j) as i64, 0),
            )
            .unwrap();
        }
    }
    fs::set_permissions(root.join("data/f1.csv"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("data/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("f0.csv", root.join("data/link")).unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt")),
        b"latin-1",
    )
    .unwrap();
    chown_to_share_user(root);
    dirs.iter()
        .map(|d| {
            if d.is_empty() {
                RelPath::root()
            } else {
                RelPath::new(d).unwrap()
            }
        })
        .collect()
}

fn sorted(mut l: Vec<(String, Stat)>) -> Vec<(String, Stat)> {
    l.sort_by(|a, b| a.0.cmp(&b.0));
    l
}

#[test]
fn an_sshfs_share_is_listed_over_sftp_as_the_mount_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    let share = SshShare::start(tmp.path());
    let project = share.export.join("proj");
    let dirs = make_project(&project);
    let on_mount = share.mnt.join("proj");

    let lister = SftpLister::for_share(&on_mount).expect("an sshfs share gets a lister");
    let sftp = DirBacking::new(&on_mount).with_lister(Some(lister));
    let plain = DirBacking::new(&on_mount);

    // Stats of the project's files at the server (sshfs also looks up each folder on a
    // path at every call: those are left out).
    let file_lstats = || share.sftp_requests("lstat name", ".csv\"");
    let lstats = file_lstats();
    let mut files = 0;
    for d in &dirs {
        let over_sftp = sorted(sftp.list(d).unwrap());
        files += over_sftp
            .iter()
            .filter(|(n, _)| n.ends_with(".csv"))
            .count();
        assert_eq!(over_sftp, sorted(plain.list(d).unwrap()), "listing of {d}");
    }
    assert_eq!(sftp.lister().unwrap().listings(), dirs.len() as u64 + 1); // + its check at start
    let plain_lstats = file_lstats() - lstats;
    assert_eq!(files, 20);
    // Through the mount, every file is a stat at the server; over SFTP none is.
    assert!(
        plain_lstats >= files,
        "{plain_lstats} lstats for {files} files"
    );
    let before = file_lstats();
    let links = share.sftp_requests("lstat name", "/link\"");
    for d in &dirs {
        sftp.list(d).unwrap();
    }
    assert_eq!(file_lstats() - before, 0);
    // The link's through the mount: sshfs may follow links, the mount says what it is.
    assert!(share.sftp_requests("lstat name", "/link\"") > links);

    // Someone changes a file in place on the server: the next listing has its new size.
    fs::OpenOptions::new()
        .append(true)
        .open(project.join("data/f3.csv"))
        .unwrap()
        .write_all_at_end(b"more");
    let st = sftp
        .list(&RelPath::new("data").unwrap())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "f3.csv")
        .unwrap()
        .1;
    assert_eq!(
        st.size,
        fs::metadata(project.join("data/f3.csv")).unwrap().len()
    );

    // A missing folder is the error the mount gives.
    let e = sftp.list(&RelPath::new("gone").unwrap()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
}

trait AppendAll {
    fn write_all_at_end(self, b: &[u8]);
}

impl AppendAll for fs::File {
    fn write_all_at_end(mut self, b: &[u8]) {
        use std::io::Write;
        self.write_all(b).unwrap();
    }
}

#[test]
fn a_mount_that_shows_other_modes_is_listed_through_the_mount() {
    let tmp = tempfile::tempdir().unwrap();
    let share = SshShare::start(tmp.path());
    make_project(&share.export.join("proj"));
    let masked = tmp.path().join("masked");
    fs::create_dir_all(&masked).unwrap();
    share.mount_at(&masked, ",umask=077");
    let guard = UnmountOnDrop(&masked);
    assert!(
        SftpLister::for_share(&masked.join("proj")).is_none(),
        "sshfs's umask changes the modes the mount shows: the listing must not be used"
    );
    drop(guard);
    assert!(SftpLister::for_share(&share.mnt.join("proj")).is_some());
    // Not sshfs at all.
    assert!(SftpLister::for_share(tmp.path()).is_none());
}

/// Someone else at work in `dir` on the server until `stop`: a log appended to every
/// millisecond, and a flush's temporaries and captures coming and going beside it.
fn keep_busy(
    dir: &Path,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    use std::io::Write;
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let mut writes = 0;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("busy.log"))
            .unwrap();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            writeln!(log, "line {writes}").unwrap();
            let tmp = dir.join(fs_core::names::capture_name("busy.log"));
            fs::write(&tmp, b"x").unwrap();
            fs::remove_file(&tmp).unwrap();
            writes += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        writes
    })
}

/// A share others are writing to changes between the mount's look and the server's: that
/// alone does not keep the listing out, and a mount that shows other modes is still found.
#[test]
fn a_share_others_are_writing_to_is_still_checked_and_listed_over_sftp() {
    let tmp = tempfile::tempdir().unwrap();
    let share = SshShare::start(tmp.path());
    let project = share.export.join("proj");
    make_project(&project);
    let masked = tmp.path().join("masked");
    fs::create_dir_all(&masked).unwrap();
    share.mount_at(&masked, ",umask=077");
    let _guard = UnmountOnDrop(&masked);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = keep_busy(&project, stop.clone());
    let mut checks = Vec::new();
    for _ in 0..3 {
        checks.push((
            SftpLister::for_share(&share.mnt.join("proj")).is_some(),
            SftpLister::for_share(&masked.join("proj")).is_some(),
        ));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = busy.join().unwrap();
    assert!(writes > 10, "the other writer wrote {writes} times");
    assert_eq!(
        checks,
        vec![(true, false); 3],
        "(plain mount listed over SFTP, umask=077 mount listed over SFTP), while someone writes"
    );
}

struct UnmountOnDrop<'a>(&'a Path);

impl Drop for UnmountOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0)
            .status();
    }
}

#[test]
fn a_stopped_server_is_listed_through_the_mount_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let mut share = SshShare::start(tmp.path());
    make_project(&share.export.join("proj"));
    let on_mount = share.mnt.join("proj");
    let sftp = DirBacking::new(&on_mount).with_lister(SftpLister::for_share(&on_mount));
    assert!(sftp.list(&RelPath::root()).is_ok());
    let listed = sftp.lister().unwrap().listings();
    share.stop_server();
    // The session ended with the server: the mount answers (with its own error).
    assert!(sftp.list(&RelPath::root()).is_err());
    assert_eq!(sftp.lister().unwrap().listings(), listed);
    share.start_server();
    // Until a new session starts, folders are listed through the mount, which reconnects.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match sftp.list(&RelPath::root()) {
            Ok(l) => {
                assert!(l.iter().any(|(n, _)| n == "data"));
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(e) => panic!("the mount did not come back: {e}"),
        }
    }
}

#[test]
fn a_refresh_through_sipfs_lists_with_attributes_and_sees_changes_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let share = SshShare::start(tmp.path());
    let project = share.export.join("proj");
    make_project(&project);
    let s = Scratch::new();
    let m = MountProc::start(&share.mnt.join("proj"), &s.mnt, &s.cache, &[]);
    // The first look at every folder, as a scan does.
    let n = walkdir_count(&s.mnt);
    assert!(n >= 25, "{n}");
    let before = share.sftp_requests("lstat name", ".csv\"");
    // Someone else changes a file in place, keeping its size, and gives it a new time.
    fs::write(project.join("data/deep/f2.csv"), vec![b'y'; 302]).unwrap();
    filetime::set_file_mtime(
        project.join("data/deep/f2.csv"),
        filetime::FileTime::from_unix_time(1_700_000_000, 0),
    )
    .unwrap();
    let out = sipfs(&["refresh", s.mnt.to_str().unwrap()]);
    show("sipfs", &["refresh"], &out);
    assert!(out.status.success());
    let lstats = share.sftp_requests("lstat name", ".csv\"") - before;
    // Not one stat per file: the listings brought their attributes.
    assert_eq!(
        lstats, 0,
        "lstats of files at the server for a refresh of {n} entries"
    );
    assert_eq!(
        fs::read(s.mnt.join("data/deep/f2.csv")).unwrap(),
        vec![b'y'; 302]
    );
    assert!(
        m.log_text().contains("listed over SFTP"),
        "the log says how the share is listed"
    );
}

/// Entries below `root`, every folder listed and every entry stat'ed, as a scan does.
fn walkdir_count(root: &Path) -> usize {
    let mut n = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            n += 1;
            if md.is_dir() && e.file_name() != ".sipfs" {
                todo.push(e.path());
            }
        }
    }
    n
}

#[test]
fn the_session_starts_at_the_first_listing_and_not_before() {
    let tmp = tempfile::tempdir().unwrap();
    let share = SshShare::start(tmp.path());
    make_project(&share.export.join("proj"));
    let on_mount = share.mnt.join("proj");
    let sessions = || share.sftp_requests("session opened", "");
    let before = sessions();
    // What `sipfs flush FOLDER` does when a server already serves the mirror: it opens the
    // share, and lists nothing. No ssh handshake for it.
    let b = DirBacking::new(&on_mount).with_sftp_listing();
    assert!(b.stat(&RelPath::root()).unwrap().is_some());
    assert!(b.lister().is_none());
    assert_eq!(sessions(), before);
    b.list(&RelPath::new("data").unwrap()).unwrap();
    b.list(&RelPath::root()).unwrap();
    assert!(b.lister().is_some());
    assert_eq!(sessions(), before + 1, "one session for every listing");
}
