//! A mount as complete as a local disk: hard links, FIFOs, sockets, device nodes and owners,
//! through real programs on a real FUSE mount, over a local share (which holds them all) and
//! an sshfs share (which holds none of the special files).
//!
//! Linux only: device numbers and modes have other types and meanings on macOS, where the
//! mount is macFUSE's and these tests have never run (docs/MACOS.md).
#![cfg(target_os = "linux")]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use sipfs_tests::ssh_share::{chown_to_share_user, SshShare};
use sipfs_tests::*;

fn mknod(path: &Path, mode: u32, dev: u64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev as libc::dev_t) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn flush_json(mnt: &Path) -> serde_json::Value {
    let out = sipfs(&["flush", mnt.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ln`, then writes, `chmod`, renames and removals through either name, as on a local disk;
/// each name reaches the share; the link survives a remount.
#[test]
fn a_hard_link_is_one_file_under_two_names() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    let a = m.mnt.join("a.log");
    fs::write(&a, "first\n").unwrap();
    fs::create_dir(m.mnt.join("runs")).unwrap();
    let b = m.mnt.join("runs/b.log");
    run_ok(std::process::Command::new("ln").arg(&a).arg(&b));
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(ma.ino(), mb.ino());
    assert_eq!((ma.nlink(), mb.nlink()), (2, 2));

    fs::OpenOptions::new()
        .append(true)
        .open(&b)
        .unwrap()
        .write_all(b"second\n")
        .unwrap();
    assert_eq!(fs::read_to_string(&a).unwrap(), "first\nsecond\n");
    run_ok(std::process::Command::new("chmod").args(["600"]).arg(&a));
    assert_eq!(fs::metadata(&b).unwrap().mode() & 0o777, 0o600);

    let r = flush_json(&m.mnt);
    assert_eq!(r["files_written"], 2, "{r:#}");
    for p in ["a.log", "runs/b.log"] {
        assert_eq!(
            fs::read_to_string(s.share.join(p)).unwrap(),
            "first\nsecond\n",
            "{p}"
        );
    }
    let share_ino = |p: &str| fs::metadata(s.share.join(p)).unwrap().ino();
    assert_eq!(
        share_ino("a.log"),
        share_ino("runs/b.log"),
        "a share that keeps hard links gets one"
    );

    // A third name, then the first goes: the others keep the content and the number.
    let c = m.mnt.join("c.log");
    fs::hard_link(&b, &c).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 3);
    fs::remove_file(&a).unwrap();
    let (mb, mc) = (fs::metadata(&b).unwrap(), fs::metadata(&c).unwrap());
    assert_eq!((mb.ino(), mb.nlink()), (ma.ino(), 2));
    assert_eq!(mc.ino(), ma.ino());
    fs::rename(&c, m.mnt.join("runs/c.log")).unwrap();
    assert!(m.stop().success());
    assert!(!s.share.join("a.log").exists());
    assert_eq!(
        fs::read_to_string(s.share.join("runs/c.log")).unwrap(),
        "first\nsecond\n"
    );

    // Across a remount: still one file.
    let m = s.mount(&[]);
    let (b, c) = (m.mnt.join("runs/b.log"), m.mnt.join("runs/c.log"));
    let (mb, mc) = (fs::metadata(&b).unwrap(), fs::metadata(&c).unwrap());
    assert_eq!(mb.ino(), mc.ino());
    assert_eq!(mb.nlink(), 2);
    fs::write(&c, "rewritten\n").unwrap();
    assert_eq!(fs::read_to_string(&b).unwrap(), "rewritten\n");
    assert!(m.stop().success());
    assert_eq!(
        fs::read_to_string(s.share.join("runs/b.log")).unwrap(),
        "rewritten\n"
    );
}

/// Makes a FIFO, a socket and a character device in `dir` and uses the first two between
/// processes: the kernel serves them, the mount keeps them.
fn make_and_use_special_files(dir: &Path) {
    let fifo = dir.join("progress.fifo");
    run_ok(std::process::Command::new("mkfifo").arg(&fifo));
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::write(fifo, "step 3 of 7\n").unwrap())
    };
    let mut got = String::new();
    fs::File::open(&fifo)
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    writer.join().unwrap();
    assert_eq!(
        got, "step 3 of 7\n",
        "the FIFO passes data between processes"
    );

    let sock = dir.join("worker.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut client = UnixStream::connect(&sock).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping", "the socket connects");

    // Made and shown; not opened: a FUSE mount is `nodev`, as most mounts of user data are.
    mknod(
        &dir.join("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    )
    .unwrap();
    let md = fs::symlink_metadata(dir.join("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));
}

/// sshfs holds no special files: they work in the mount, stay in the cache (across a remount),
/// and the flush says so once and `status` lists them, while everything else is written.
#[test]
fn special_files_work_in_the_mount_and_stay_local_on_a_share_that_cannot_hold_them() {
    let s = Scratch::new();
    let share = SshShare::start(s.dir.path());
    chown_to_share_user(&share.export);
    let m = MountProc::start(&share.mnt, &s.mnt, &s.cache, &[]);
    make_and_use_special_files(&m.mnt);
    fs::write(m.mnt.join("result.csv"), "x\n1\n").unwrap();
    run_ok(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys; os.setxattr(sys.argv[1], 'user.run', b'7')",
            ])
            .arg(m.mnt.join("result.csv")),
    );

    let r = flush_json(&m.mnt);
    assert_eq!(r["files_written"], 1, "{r:#}");
    // Nor extended attributes: said once, and kept here.
    let no_xattrs = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w.as_str()
                .unwrap()
                .contains("does not keep extended attributes")
        })
        .count();
    assert_eq!(no_xattrs, 1, "{r:#}");
    assert_eq!(r["pending"], serde_json::json!([]), "{r:#}");
    let warnings = r["warnings"].as_array().unwrap();
    let kept: Vec<_> = warnings
        .iter()
        .filter(|w| w.as_str().unwrap().contains("kept in the cache only"))
        .collect();
    assert_eq!(kept.len(), 1, "{r:#}");
    assert_eq!(
        fs::read_to_string(share.export.join("result.csv")).unwrap(),
        "x\n1\n"
    );
    for n in ["progress.fifo", "worker.sock", "null"] {
        assert!(!share.export.join(n).exists(), "{n} on the share");
    }
    let out = sipfs(&["status", m.mnt.to_str().unwrap(), "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = st["kept_local"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["null", "progress.fifo", "worker.sock"], "{st:#}");
    let text = sipfs(&["status", m.mnt.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("progress.fifo: a FIFO"),
        "{text:?}"
    );
    // Settled: a second flush writes nothing and says nothing.
    let r = flush_json(&m.mnt);
    assert_eq!(r["files_written"], 0, "{r:#}");
    assert_eq!(r["warnings"], serde_json::json!([]), "{r:#}");
    assert!(m.stop().success());

    let m = MountProc::start(&share.mnt, &s.mnt, &s.cache, &[]);
    let out = run_ok(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys; print(os.getxattr(sys.argv[1], 'user.run').decode())",
            ])
            .arg(m.mnt.join("result.csv")),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n");
    let ft = |n: &str| fs::symlink_metadata(m.mnt.join(n)).unwrap().file_type();
    assert!(ft("progress.fifo").is_fifo());
    assert!(ft("worker.sock").is_socket());
    assert!(ft("null").is_char_device());
    assert!(m.stop().success());
}

/// A plain folder holds them: a flush writes them there, with their kinds and device numbers.
#[test]
fn special_files_reach_a_share_that_holds_them() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    make_and_use_special_files(&m.mnt);
    let r = flush_json(&m.mnt);
    assert_eq!(r["warnings"], serde_json::json!([]), "{r:#}");
    let md = |n: &str| fs::symlink_metadata(s.share.join(n)).unwrap();
    assert!(md("progress.fifo").file_type().is_fifo());
    assert!(md("worker.sock").file_type().is_socket());
    assert!(md("null").file_type().is_char_device());
    assert_eq!(md("null").rdev(), libc::makedev(1, 3));
    assert!(m.stop().success());
}

/// A path as long as the mount allows (`PATH_MAX`) works as on a local disk, though its cache
/// copy's spelled-out path is longer; the flush writes it to the share (in a new folder, under
/// a short temporary name renamed into place).
#[test]
fn a_path_as_long_as_the_mount_allows_works() {
    let s = Scratch::new();
    let m = s.mount(&[]);
    let mut dir = m.mnt.clone();
    let mut n = 0;
    while dir.as_os_str().len() + 201 < 4000 {
        dir.push(format!("{n:02}{}", "d".repeat(198)));
        n += 1;
    }
    fs::create_dir_all(&dir).unwrap();
    let room = 4095 - dir.as_os_str().len() - 1;
    let file = dir.join("f".repeat(room.min(255)));
    assert!(file.as_os_str().len() > 4050, "{}", file.as_os_str().len());
    assert!(
        s.cache.as_os_str().len() > m.mnt.as_os_str().len(),
        "the cache's own path is the longer"
    );
    fs::write(&file, "deep\n").unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), "deep\n");
    let moved = dir.join("moved.csv");
    fs::rename(&file, &moved).unwrap();
    fs::hard_link(&moved, &file).unwrap();
    assert_eq!(fs::metadata(&file).unwrap().nlink(), 2);
    fs::remove_file(&moved).unwrap();
    let r = flush_json(&m.mnt);
    assert_eq!(r["files_written"], 1, "{r:#}");
    // Read on the share a folder at a time, as its spelled-out path is too long to open.
    let rel = file.strip_prefix(&m.mnt).unwrap();
    let out = run_ok(
        std::process::Command::new("python3")
            .arg("-c")
            .arg("import os, sys\nfor c in sys.argv[2].split('/')[:-1]: os.chdir(c)\nprint(open(sys.argv[2].split('/')[-1]).read(), end='')")
            .arg(&s.share)
            .arg(rel)
            .current_dir(&s.share),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deep\n");
    assert!(m.stop().success());
    // Still there after a remount.
    let m = s.mount(&[]);
    assert_eq!(fs::read_to_string(&file).unwrap(), "deep\n");
    assert!(m.stop().success());
}

/// Extended attributes as ext4 has them: set, listed, replaced, removed, copied by `cp -a` and
/// `shutil.copy2`; kept across a remount; written to a share that keeps them, removals too.
#[test]
fn extended_attributes_are_kept_copied_and_written_back() {
    let s = Scratch::new();
    fs::write(s.share.join("old.csv"), "old\n").unwrap();
    let m = s.mount(&[]);
    let src = s.dir.path().join("src.csv");
    fs::write(&src, "a,b\n").unwrap();
    let code = "import os, shutil, sys, errno\n\
        src, mnt = sys.argv[1], sys.argv[2]\n\
        os.setxattr(src, 'user.sample', b'S-17')\n\
        p = os.path.join(mnt, 'x.csv')\n\
        open(p, 'w').write('x')\n\
        os.setxattr(p, 'user.k', b'v1')\n\
        os.setxattr(p, 'user.k', b'v2', os.XATTR_REPLACE)\n\
        os.setxattr(p, 'user.gone', b'1')\n\
        os.removexattr(p, 'user.gone')\n\
        assert os.getxattr(p, 'user.k') == b'v2'\n\
        assert os.listxattr(p) == ['user.k'], os.listxattr(p)\n\
        for call, code in ((lambda: os.getxattr(p, 'user.gone'), errno.ENODATA),\n\
        \x20                  (lambda: os.setxattr(p, 'user.k', b'x', os.XATTR_CREATE), errno.EEXIST),\n\
        \x20                  (lambda: os.setxattr(p, 'user.new', b'x', os.XATTR_REPLACE), errno.ENODATA),\n\
        \x20                  (lambda: os.removexattr(p, 'user.gone'), errno.ENODATA)):\n\
        \x20   try:\n\
        \x20       call(); sys.exit('should fail')\n\
        \x20   except OSError as e:\n\
        \x20       assert e.errno == code, e\n\
        os.setxattr(os.path.join(mnt, 'old.csv'), 'user.tag', b'checked')\n\
        os.mkdir(os.path.join(mnt, 'dir'))\n\
        os.setxattr(os.path.join(mnt, 'dir'), 'user.d', b'folder')\n\
        shutil.copy2(src, os.path.join(mnt, 'copied.csv'))\n\
        assert os.getxattr(os.path.join(mnt, 'copied.csv'), 'user.sample') == b'S-17'\n";
    run_ok(
        std::process::Command::new("python3")
            .args(["-c", code, src.to_str().unwrap()])
            .arg(&m.mnt),
    );
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(m.mnt.join("cp-a.csv")),
    );
    let get = |p: &Path, n: &str| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import os,sys\ntry: print(os.getxattr(sys.argv[1], sys.argv[2]).decode(), end='')\nexcept OSError as e: print('errno', e.errno, end='')"])
            .arg(p)
            .arg(n)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(&m.mnt.join("cp-a.csv"), "user.sample"), "S-17");
    let r = flush_json(&m.mnt);
    assert_eq!(r["warnings"], serde_json::json!([]), "{r:#}");
    for (p, n, v) in [
        ("x.csv", "user.k", "v2"),
        ("old.csv", "user.tag", "checked"),
        ("dir", "user.d", "folder"),
        ("copied.csv", "user.sample", "S-17"),
        ("cp-a.csv", "user.sample", "S-17"),
    ] {
        assert_eq!(get(&s.share.join(p), n), v, "{p} {n} on the share");
    }
    assert_eq!(
        get(&s.share.join("x.csv"), "user.gone"),
        format!("errno {}", libc::ENODATA)
    );
    // A removal reaches the share too.
    run_ok(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import os,sys; os.removexattr(sys.argv[1], 'user.tag')",
            ])
            .arg(m.mnt.join("old.csv")),
    );
    assert!(m.stop().success());
    assert_eq!(
        get(&s.share.join("old.csv"), "user.tag"),
        format!("errno {}", libc::ENODATA)
    );
    let m = s.mount(&[]);
    assert_eq!(
        get(&m.mnt.join("x.csv"), "user.k"),
        "v2",
        "kept across a remount"
    );
    assert!(m.stop().success());
}

/// The set-user-ID and set-group-ID bits go on chown, and on writes and truncates by others,
/// exactly as on the local disk the test runs on (compared case by case): the mount takes
/// that on itself so that the kernel need not ask before every write.
#[test]
fn set_id_bits_go_as_on_a_local_disk() {
    require_tools(&["setpriv"]);
    let s = Scratch::new();
    let local = s.dir.path().join("local");
    fs::create_dir(&local).unwrap();
    let script = r#"
        as_nobody() { setpriv --reuid=65534 --regid="$1" --clear-groups sh -c "$2"; }
        echo x > a; chmod 4755 a; chown 1000 a
        echo x > b; chmod 6755 b; chown 1000 b
        echo x > c; chmod 2745 c; chown 1000 c
        echo x > d; chmod 6777 d; as_nobody 65534 'echo y >> d'
        echo x > e; chmod 6777 e; as_nobody 65534 'truncate -s 1 e'
        echo x > f; chmod 6777 f; echo z >> f
        echo x > g; chmod 2767 g; as_nobody 65534 'echo y >> g'
        echo x > h; chmod 2767 h; as_nobody 0 'echo y >> h'
        echo x > i; chmod 4777 i; as_nobody 65534 ': > i'
        stat -c '%n %a' a b c d e f g h i
    "#;
    let run_in = |dir: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        let out = run_ok(
            std::process::Command::new("sh")
                .args(["-ec", script])
                .current_dir(dir),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = run_in(&local);
    assert!(
        expected.contains("a 755") && expected.contains("f 6777"),
        "{expected}"
    );
    // Dropped by the mount (it serves extended attributes), or by the kernel (it does not).
    for opts in [
        &["--allow-other"][..],
        &["--allow-other", "--no-permission-checks"],
        &["--allow-other", "--no-permission-checks", "--no-xattrs"],
    ] {
        let m = s.mount(opts);
        for n in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
            let _ = fs::remove_file(m.mnt.join(n));
        }
        assert_eq!(run_in(&m.mnt), expected, "{opts:?}");
        assert!(m.stop().success());
    }
}

/// `--no-xattrs`: every xattr call is cleanly "not supported" (which `cp -a` and
/// `shutil.copy2` take as "none here"), and new files cost no capability lookup.
#[test]
fn no_xattrs_makes_them_cleanly_unsupported() {
    let s = Scratch::new();
    let m = s.mount(&["--no-xattrs"]);
    let src = s.dir.path().join("src.csv");
    fs::write(&src, "a,b\n").unwrap();
    let code = "import os, shutil, sys, errno\n\
        src, mnt = sys.argv[1], sys.argv[2]\n\
        p = os.path.join(mnt, 'x.csv')\n\
        open(p, 'w').write('x')\n\
        for call in (lambda: os.setxattr(p, 'user.k', b'v'), lambda: os.getxattr(p, 'user.k'), lambda: os.listxattr(p)):\n\
        \x20   try:\n\
        \x20       call(); sys.exit('an xattr call worked')\n\
        \x20   except OSError as e:\n\
        \x20       assert e.errno == errno.EOPNOTSUPP, e\n\
        shutil.copy2(src, os.path.join(mnt, 'copied.csv'))\n\
        assert open(os.path.join(mnt, 'copied.csv')).read() == 'a,b\\n'\n";
    run_ok(
        std::process::Command::new("python3")
            .args(["-c", code, src.to_str().unwrap()])
            .arg(&m.mnt),
    );
    let status = || -> serde_json::Value {
        serde_json::from_slice(&fs::read(m.mnt.join(".sipfs/status")).unwrap()).unwrap()
    };
    let before = status()["kernel_requests"]["xattr"].as_u64().unwrap();
    for i in 0..20 {
        fs::write(m.mnt.join(format!("n{i}.csv")), "x").unwrap();
    }
    let after = status()["kernel_requests"]["xattr"].as_u64().unwrap();
    assert_eq!(after, before, "no capability lookups");
    assert!(m.stop().success());
}

/// A name is any bytes but `/` and NUL, as on a local disk: one that is not UTF-8 is made,
/// listed, renamed and written to the share with its bytes; one already on the share shows.
#[test]
fn names_that_are_not_utf8_work_and_reach_the_share() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let s = Scratch::new();
    let theirs = OsStr::from_bytes(b"d\xfcsseldorf-\xff.csv");
    fs::write(s.share.join(theirs), "theirs\n").unwrap();
    let m = s.mount(&[]);
    let ours = OsStr::from_bytes(b"r\xe9sum\xe9.txt");
    fs::write(m.mnt.join(ours), "ours\n").unwrap();
    let mut names: Vec<Vec<u8>> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [theirs.as_bytes().to_vec(), ours.as_bytes().to_vec()]
    );
    assert_eq!(fs::read_to_string(m.mnt.join(theirs)).unwrap(), "theirs\n");
    let renamed = OsStr::from_bytes(b"\xe9t\xe9.txt");
    fs::rename(m.mnt.join(ours), m.mnt.join(renamed)).unwrap();
    std::os::unix::fs::symlink(ours, m.mnt.join("link")).unwrap();
    assert_eq!(fs::read_link(m.mnt.join("link")).unwrap().as_os_str(), ours);
    let r = flush_json(&m.mnt);
    assert_eq!(r["pending"], serde_json::json!([]), "{r:#}");
    assert_eq!(fs::read_to_string(s.share.join(renamed)).unwrap(), "ours\n");
    assert_eq!(
        fs::read_link(s.share.join("link")).unwrap().as_os_str(),
        ours
    );
    assert!(!s.share.join(ours).exists());
    assert!(m.stop().success());
}

/// Owners as on a local disk: what another user creates is theirs; root's chown is shown,
/// written to a share that keeps owners (a local folder here) and kept across a remount; a
/// chown by a user who may not is refused with EPERM, not taken and not ignored.
#[test]
fn owners_are_shown_kept_and_refused_as_on_a_local_disk() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    require_tools(&["setpriv"]);
    let s = Scratch::new();
    // Other users may enter only a mount with --allow-other.
    let m = s.mount(&["--allow-other"]);
    let open = m.mnt.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let theirs = open.join("theirs.csv");
    let out = as_nobody(&["touch", theirs.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let owner = |p: &Path| {
        let md = fs::symlink_metadata(p).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(
        owner(&theirs),
        (65534, 65534),
        "made by nobody, so nobody's"
    );
    assert_eq!(owner(&open), (0, 0), "made by root, who mounted");

    // nobody may not give the file away, nor take root's.
    let mine = m.mnt.join("mine.csv");
    fs::write(&mine, "root's").unwrap();
    for (target, to) in [(&theirs, "0"), (&mine, "65534")] {
        let out = as_nobody(&["chown", to, target.to_str().unwrap()]);
        assert!(!out.status.success(), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not permitted"), "{err}");
    }
    assert_eq!(owner(&mine), (0, 0));

    // root may.
    std::os::unix::fs::chown(&mine, Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(&theirs, None, Some(42)).unwrap();
    assert_eq!(owner(&mine), (1234, 5678));
    assert_eq!(owner(&theirs), (65534, 42));

    assert_eq!(
        sipfs(&["flush", m.mnt.to_str().unwrap()]).status.code(),
        Some(0)
    );
    assert_eq!(owner(&s.share.join("mine.csv")), (1234, 5678));
    assert_eq!(owner(&s.share.join("open/theirs.csv")), (65534, 42));
    assert!(m.stop().success());

    // Kept across a remount; and the kernel checks modes against them, as on a local disk:
    // nobody may write in its own file and a 0777 folder, not in root's 0755 top folder.
    let m = s.mount(&["--allow-other"]);
    assert_eq!(
        owner(&m.mnt.join("mine.csv")),
        (1234, 5678),
        "kept across a remount"
    );
    assert_eq!(owner(&theirs), (65534, 42));
    let out = as_nobody(&["sh", "-c", &format!("echo more >> {}", theirs.display())]);
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(&["touch", open.join("second.csv").to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(&["touch", m.mnt.join("top.csv").to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert!(m.stop().success());
}

/// `--allow-other` lets other users in, held to modes and owners as on a local disk: nobody
/// may not delete, rename, chmod, truncate or set the times of root's files (pjdfstest's
/// failures on a mount without the checks). `--no-permission-checks` is the permissive mode
/// containers running as another user may need, and it says what it does: all of it works.
#[test]
fn other_users_let_in_are_held_to_modes_and_owners() {
    use std::os::unix::fs::PermissionsExt;
    require_tools(&["setpriv"]);
    let as_nobody = |args: &[&str]| {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    let s = Scratch::new();
    for (opts, allowed) in [
        (&["--allow-other"][..], false),
        (&["--allow-other", "--no-permission-checks"][..], true),
    ] {
        let m = s.mount(opts);
        // A root file in root's 0755 top folder.
        let file = m.mnt.join("root.csv");
        let moved = m.mnt.join("moved.csv");
        let _ = fs::remove_file(&moved);
        fs::write(&file, "root's data").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let (f, to) = (file.to_str().unwrap(), moved.to_str().unwrap());
        // The last removes whichever name the file has by then.
        let gone = if allowed { to } else { f };
        let tries: [(&str, Vec<&str>); 5] = [
            ("chmod", vec!["chmod", "666", f]),
            ("truncate", vec!["truncate", "-s", "0", f]),
            ("utimensat", vec!["touch", "-d", "2001-01-01", f]),
            ("rename", vec!["mv", f, to]),
            ("unlink", vec!["rm", gone]),
        ];
        for (what, args) in tries {
            let out = as_nobody(&args);
            assert_eq!(
                out.status.success(),
                allowed,
                "{opts:?}: nobody's {what} of root's file: {out:?}"
            );
            if !allowed {
                assert_eq!(fs::read_to_string(&file).unwrap(), "root's data", "{what}");
            }
        }
        assert_eq!(file.exists() || moved.exists(), !allowed);
        assert!(m.stop().success());
    }
}
