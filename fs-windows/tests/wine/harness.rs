//! The harness itself: each kind of call, in the order WinFsp makes them.

use crate::dispatcher::*;

#[test]
fn create_write_cleanup_close_then_flush() {
    let d = Drive::new(&[("Docs/Report.txt", "old")]);
    let mut h = d
        .create_file("\\Docs\\new.csv", READ | WRITE, FILE_CREATE, NORMAL)
        .unwrap();
    assert_eq!(h.name, "\\Docs\\new.csv");
    assert_eq!(d.write(&mut h, b"a,b\n", 0).unwrap(), 4);
    assert_eq!(d.write(&mut h, b"1,2\n", 4).unwrap(), 4);
    assert_eq!(h.info.file_size, 8);
    d.close(h);
    assert_eq!(d.read_all("\\DOCS\\NEW.CSV").unwrap(), b"a,b\n1,2\n");
    assert!(
        !d.share_has("Docs/new.csv"),
        "nothing reaches the share before a flush"
    );
    d.flush();
    assert_eq!(d.on_share("Docs/new.csv").unwrap(), b"a,b\n1,2\n");
}

#[test]
fn listings_come_through_the_dll_in_pieces() {
    let d = Drive::new(&[("a.txt", "1"), ("B.txt", "2"), ("c/d.txt", "3")]);
    let whole = d.list("\\", 4096).unwrap();
    let names: Vec<&str> = whole.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["a.txt", "B.txt", "c"]);
    // A buffer with room for one entry at a time: each request resumes after the last name.
    let small = d.list("\\", 120).unwrap();
    assert_eq!(small.iter().map(|e| &e.0).collect::<Vec<_>>(), names);
}

#[test]
fn set_delete_then_the_last_cleanup_deletes() {
    let d = Drive::new(&[("Docs/old.txt", "x"), ("Docs/keep.txt", "y")]);
    let h1 = d
        .create_file("\\docs\\OLD.txt", READ, FILE_OPEN, 0)
        .unwrap();
    let h2 = d
        .create_file("\\Docs\\old.txt", DELETE, FILE_OPEN, 0)
        .unwrap();
    d.set_delete(&h2, true).unwrap();
    d.close(h2);
    assert_eq!(
        d.names("\\Docs"),
        ["keep.txt", "old.txt"],
        "one handle is left"
    );
    d.close(h1);
    assert_eq!(d.names("\\Docs"), ["keep.txt"]);
    // A folder with something in it refuses; the root always does.
    let h = d
        .create_file("\\Docs", DELETE, FILE_OPEN, FILE_FLAG_BACKUP_SEMANTICS)
        .unwrap();
    assert_eq!(d.set_delete(&h, true), Err(STATUS_DIRECTORY_NOT_EMPTY));
    d.close(h);
    let root = d
        .create_file("\\", DELETE, FILE_OPEN, FILE_FLAG_BACKUP_SEMANTICS)
        .unwrap();
    assert_eq!(d.set_delete(&root, true), Err(STATUS_ACCESS_DENIED));
    d.close(root);
    d.flush();
    assert_eq!(d.share_names("Docs"), ["keep.txt"]);
}

#[test]
fn renames_with_and_without_replace() {
    let d = Drive::new(&[("a.txt", "a"), ("b.txt", "b"), ("sub/c.txt", "c")]);
    assert_eq!(
        d.move_file("\\a.txt", "\\B.TXT", false),
        Err(STATUS_OBJECT_NAME_COLLISION)
    );
    // Replacing a name that differs in case: the new name takes the case asked for.
    d.move_file("\\a.txt", "\\B.TXT", true).unwrap();
    assert_eq!(d.names("\\"), ["B.TXT", "sub"]);
    assert_eq!(d.read_all("\\b.txt").unwrap(), b"a");
    d.move_file("\\sub", "\\Moved", false).unwrap();
    assert_eq!(d.read_all("\\moved\\C.TXT").unwrap(), b"c");
    assert_eq!(
        d.move_file("\\nothing", "\\x", false),
        Err(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        d.move_file("\\B.TXT", "\\nowhere\\x", false),
        Err(STATUS_OBJECT_PATH_NOT_FOUND)
    );
    d.flush();
    assert_eq!(d.share_names(""), ["B.TXT", "Moved"]);
    assert_eq!(d.on_share("B.TXT").unwrap(), b"a");
}

#[test]
fn basic_info_size_overwrite_and_flush() {
    let d = Drive::new(&[("book.xlsx", "0123456789")]);
    let mut h = d
        .create_file("\\book.xlsx", READ | WRITE, FILE_OPEN, 0)
        .unwrap();
    assert_eq!(h.info.file_size, 10);
    let t = 133_537_680_001_234_567u64; // 2024-03-01T12:00:00.1234567Z
    let fi = d.set_basic_info(&h, READONLY, [0, 0, t, 0]).unwrap();
    assert_eq!(fi.last_write_time, t);
    assert_eq!(fi.file_attributes, READONLY | ARCHIVE);
    d.set_basic_info(&h, NORMAL, [0; 4]).unwrap();
    d.set_file_size(&mut h, 4, false).unwrap();
    assert_eq!(d.read(&h, 100, 0).unwrap(), b"0123");
    // An allocation size only ever cuts.
    d.set_file_size(&mut h, 100, true).unwrap();
    assert_eq!(d.info(&h).unwrap().file_size, 4);
    d.set_file_size(&mut h, 2, true).unwrap();
    assert_eq!(d.info(&h).unwrap().file_size, 2);
    d.flush_buffers(Some(&h)).unwrap();
    d.flush_buffers(None).unwrap();
    d.close(h);
    // Overwrite (CREATE_ALWAYS on an existing file): emptied, attributes added.
    let mut h = d
        .create_file("\\book.xlsx", READ | WRITE, FILE_OVERWRITE_IF, HIDDEN)
        .unwrap();
    assert_eq!(h.info.file_size, 0);
    d.write(&mut h, b"new", 0).unwrap();
    d.close(h);
    let (total, free, label) = d.volume_info();
    assert!(total > 0 && free <= total, "{total} {free}");
    assert_eq!(label, "sipfs");
    d.flush();
    assert_eq!(d.on_share("book.xlsx").unwrap(), b"new");
}

#[test]
fn the_control_file_flushes_and_the_status_file_reads() {
    let d = Drive::new(&[]);
    d.write_all("\\step.csv", b"1\n").unwrap();
    // `echo flush step-1 > S:\.sipfs\control`: an overwrite, then a write.
    let mut c = d
        .create_file("\\.SIPFS\\Control", READ | WRITE, FILE_OVERWRITE_IF, 0)
        .unwrap();
    assert_eq!(c.name, "\\.sipfs\\control");
    assert_eq!(d.write(&mut c, b"flush step-1\r\n", 0).unwrap(), 14);
    assert_eq!(
        d.write(&mut c, b"nonsense\r\n", 0),
        Err(STATUS_INVALID_PARAMETER)
    );
    d.close(c);
    assert_eq!(d.on_share("step.csv").unwrap(), b"1\n");
    let s = d
        .create_file("\\.sipfs\\status", READ, FILE_OPEN, 0)
        .unwrap();
    let text = d.read(&s, s.info.file_size as usize, 0).unwrap();
    d.close(s);
    let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(v["last_flush"]["label"], "step-1");
    assert_eq!(v["mode"], "drive");
    assert_eq!(
        d.list("\\.sipfs", 4096)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect::<Vec<_>>(),
        [".", "..", "control", "status"]
    );
    assert!(
        d.names("\\").iter().all(|n| n != ".sipfs"),
        "hidden from the root's listing"
    );
    assert!(!d.share_has(".sipfs"));
}

#[test]
fn one_permissive_descriptor_for_every_entry() {
    let d = Drive::new(&[("a.txt", "a")]);
    let h = d.create_file("\\a.txt", READ, FILE_OPEN, 0).unwrap();
    let mut sd = d.get_security(&h).unwrap();
    assert_eq!(sd, d.fs.security_descriptor());
    // A self-relative descriptor: revision 1, SE_SELF_RELATIVE (0x8000) in its control word.
    assert_eq!(sd[0], 1);
    assert_ne!(u16::from_le_bytes([sd[2], sd[3]]) & 0x8000, 0);
    // Accepted and not kept, as on a FAT drive: the next answer is the same.
    d.set_security(&h, 4 /* DACL_SECURITY_INFORMATION */, &mut sd)
        .unwrap();
    assert_eq!(d.get_security(&h).unwrap(), d.fs.security_descriptor());
    d.close(h);
}

/// `Drive::mount` as far as it goes without WinFsp's kernel driver: the install folder from
/// the registry, the DLL loaded by its full path, `winfsp_init`, the volume's parameters, the
/// file system; then `FileSystemHost::new` asks the driver for a volume and fails, and the
/// mount says so with the status instead of crashing. On Windows with WinFsp the same call
/// mounts (the Windows workflow's end-to-end test).
#[test]
fn mount_goes_as_far_as_the_driver_and_fails_cleanly_without_it() {
    use windows::core::w;
    use windows::Win32::System::Registry::{
        RegDeleteTreeW, RegSetKeyValueW, HKEY_LOCAL_MACHINE, REG_SZ,
    };

    let d = Drive::new(&[]);
    if fs_windows::winfsp_dir().is_some() {
        eprintln!("SKIPPED: WinFsp is installed here; the Windows workflow mounts for real");
        return;
    }
    // An install folder as WinFsp's installer makes it, with the DLL beside this exe.
    let exe_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let install = tempfile::tempdir().unwrap();
    std::fs::create_dir(install.path().join("bin")).unwrap();
    std::fs::copy(
        exe_dir.join("winfsp-x64.dll"),
        install.path().join("bin").join("winfsp-x64.dll"),
    )
    .unwrap();
    let value: Vec<u16> = format!("{}\\", install.path().display())
        .encode_utf16()
        .chain([0])
        .collect();
    // SAFETY: a NUL-terminated UTF-16 value of the length given, in bytes.
    let r = unsafe {
        RegSetKeyValueW(
            HKEY_LOCAL_MACHINE,
            w!("SOFTWARE\\WinFsp"),
            w!("InstallDir"),
            REG_SZ.0,
            Some(value.as_ptr().cast()),
            (value.len() * 2) as u32,
        )
    };
    assert!(r.is_ok(), "registry: {r:?}");
    let nt = fs_core::nt::NtFs::new(d.fs.nt().engine().clone(), "S:");
    let cache = tempfile::tempdir().unwrap();
    let result = fs_windows::Drive::mount(nt, cache.path(), "S:", None);
    // SAFETY: removes the key this test made.
    let _ = unsafe { RegDeleteTreeW(HKEY_LOCAL_MACHINE, w!("SOFTWARE\\WinFsp")) };
    match result {
        // STATUS_NO_SUCH_DEVICE, as an HRESULT (windows-rs's form of an NTSTATUS).
        Err(fs_windows::DriveError::Init(status)) => assert_eq!(status as u32, 0xD000_000E),
        Err(e) => panic!("the mount stopped before the driver: {e}"),
        Ok(_) => panic!("a drive mounted under Wine, with no WinFsp driver"),
    }
}
