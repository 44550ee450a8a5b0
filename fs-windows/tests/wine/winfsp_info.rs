//! WinFsp's file information, delete and rename tests (tst/winfsp-tests/info-test.c),
//! ported. Win32 errors are their NTSTATUS here: ERROR_DIR_NOT_EMPTY is
//! STATUS_DIRECTORY_NOT_EMPTY, ERROR_ALREADY_EXISTS STATUS_OBJECT_NAME_COLLISION,
//! ERROR_ACCESS_DENIED STATUS_ACCESS_DENIED (or, for a file whose delete is pending,
//! STATUS_DELETE_PENDING).

use crate::dispatcher::*;

const RW: u32 = READ | WRITE;

fn clean_flush(d: &Drive) {
    let r = d.flush();
    assert!(
        r.pending.is_empty() && r.conflicts.is_empty(),
        "{:?} {:?}",
        r.pending,
        r.conflicts
    );
}

/// getfileinfo_name_test: GetFinalPathNameByHandle's name is the normalized name the open
/// answered with, the case on disk, whatever case the open used. (That Windows asks the
/// Mount Manager for the volume's part is the FSD's and Windows' matter: winfsp#410.)
#[test]
fn getfileinfo_name_test() {
    let d = Drive::new(&[]);
    d.close(d.create_file("\\File0", RW, FILE_CREATE, NORMAL).unwrap());
    let h = d
        .create_file("\\FILE0", RW, FILE_OPEN, FILE_FLAG_DELETE_ON_CLOSE)
        .unwrap();
    assert_eq!(h.name, "\\File0");
    d.close(h);
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
    // A folder, and a file in it, opened in other cases.
    d.create_directory("\\Dir1").unwrap();
    d.close(
        d.create_file("\\Dir1\\Data.csv", RW, FILE_CREATE, 0)
            .unwrap(),
    );
    let h = d
        .create_file("\\dir1\\DATA.CSV", READ, FILE_OPEN, 0)
        .unwrap();
    assert_eq!(h.name, "\\Dir1\\Data.csv");
    d.close(h);
    clean_flush(&d);
    assert_eq!(d.share_names("Dir1"), ["Data.csv"]);
}

/// setfileinfo_test. The creation time is not kept (the share has no place for it; the
/// last write time stands in, as Samba does): WinFsp's checks that it stays when the write
/// time is set, and that it can be set, are left out.
#[test]
fn setfileinfo_test() {
    let d = Drive::new(&[]);
    let f = "\\file0";
    let mut h = d
        .create_file(f, RW, FILE_CREATE, NORMAL | FILE_FLAG_DELETE_ON_CLOSE)
        .unwrap();
    let info0 = d.info(&h).unwrap();
    assert_eq!(info0.file_attributes, ARCHIVE);
    // SetFileAttributesW(FILE_ATTRIBUTE_DIRECTORY | FILE_ATTRIBUTE_HIDDEN): neither sticks
    // here (HIDDEN follows the name), and the file is still a file.
    d.set_file_attributes(f, DIRECTORY | HIDDEN).unwrap();
    assert_eq!(d.info(&h).unwrap().file_attributes & DIRECTORY, 0);
    let t = 116_444_736_000_000_000u64 + 0x42_0000_0042;
    d.set_basic_info(&h, 0, [0, t, t, 0]).unwrap();
    let info = d.info(&h).unwrap();
    assert_eq!(info.last_access_time, t);
    assert_eq!(info.last_write_time, t);
    d.set_file_size(&mut h, 42, false).unwrap();
    assert_eq!(d.info(&h).unwrap().file_size, 42);
    d.close(h);
    clean_flush(&d);
    assert!(!d.share_has("file0"), "deleted on close");

    // The same, kept: the share gets the size and the write time.
    let mut h = d.create_file("\\kept", RW, FILE_CREATE, NORMAL).unwrap();
    d.set_file_size(&mut h, 42, false).unwrap();
    d.set_basic_info(&h, 0, [0, t, t, 0]).unwrap();
    d.close(h);
    clean_flush(&d);
    let meta = std::fs::metadata(d.share.join("kept")).unwrap();
    assert_eq!(meta.len(), 42);
    let mtime = meta.modified().unwrap();
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(secs, 0x42_0000_0042 / 10_000_000);
}

/// delete_test.
#[test]
fn delete_test() {
    let d = Drive::new(&[]);
    d.create_directory("\\dir1").unwrap();
    d.close(
        d.create_file("\\dir1\\file0", RW, FILE_CREATE, NORMAL)
            .unwrap(),
    );
    clean_flush(&d);
    assert_eq!(d.share_names("dir1"), ["file0"]);
    assert_eq!(
        d.remove_directory("\\dir1").err(),
        Some(STATUS_DIRECTORY_NOT_EMPTY)
    );
    d.delete_file("\\dir1\\file0").unwrap();
    assert_eq!(
        d.delete_file("\\dir1\\file0").err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    d.remove_directory("\\dir1").unwrap();
    assert_eq!(
        d.remove_directory("\\dir1").err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
}

/// delete_pending_test. Refusing new opens of a file whose delete is pending is the FSD's
/// part (played by the dispatcher); the file system's is that the delete waits for the last
/// cleanup and then happens.
#[test]
fn delete_pending_test() {
    let d = Drive::new(&[("file0", "on the share")]);
    let h = d.create_file("\\file0", DELETE, FILE_OPEN, 0).unwrap();
    d.set_delete(&h, true).unwrap();
    assert!(d.delete_pending(&h));
    assert_eq!(
        d.create_file("\\file0", FILE_READ_ATTRIBUTES, FILE_OPEN, 0)
            .err(),
        Some(STATUS_DELETE_PENDING)
    );
    // Not gone before the last handle's cleanup: the file system still lists it.
    assert_eq!(d.names("\\"), ["file0"]);
    d.close(h);
    assert_eq!(
        d.delete_file("\\file0").err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    assert!(
        d.share_has("file0"),
        "nothing reaches the share before a flush"
    );
    clean_flush(&d);
    assert!(!d.share_has("file0"));
}

/// delete_ex_test (FileDispositionInformationEx). POSIX semantics (the name goes at once,
/// open handles keep the file) need SupportsPosixUnlinkRename, which this volume does not
/// offer: the FSD then treats the flag as absent, and WinFsp's test skips itself on such a
/// volume. What concerns the file system: without IGNORE_READONLY_ATTRIBUTE a read-only file
/// refuses; with it, it goes; a delete asked and taken back leaves the file.
#[test]
fn delete_ex_test() {
    let d = Drive::new(&[]);
    let f = "\\file0";
    let h0 = d
        .create_file(f, RW | DELETE, FILE_CREATE, READONLY)
        .unwrap();
    let h1 = d.create_file(f, DELETE, FILE_OPEN, 0).unwrap();
    assert_eq!(d.set_disposition_ex(&h1, 3), Err(STATUS_CANNOT_DELETE));
    d.set_disposition_ex(&h1, 0x13).unwrap();
    assert_eq!(d.names("\\"), ["file0"], "still there while open");
    assert_eq!(
        d.create_file(f, 0, FILE_OPEN, 0).err(),
        Some(STATUS_DELETE_PENDING)
    );
    d.close(h1);
    d.close(h0);
    assert_eq!(
        d.create_file(f, 0, FILE_OPEN, 0).err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );

    // Set, then reset: the file stays.
    let h0 = d.create_file(f, RW, FILE_CREATE, NORMAL).unwrap();
    let h1 = d.create_file(f, DELETE, FILE_OPEN, 0).unwrap();
    d.set_disposition_ex(&h1, 3).unwrap();
    d.set_disposition_ex(&h1, 0).unwrap();
    d.close(h1);
    assert_eq!(d.names("\\"), ["file0"]);
    clean_flush(&d);
    assert!(d.share_has("file0"));
    let h1 = d.create_file(f, DELETE, FILE_OPEN, 0).unwrap();
    d.set_disposition_ex(&h1, 3).unwrap();
    d.close(h1);
    d.close(h0);
    assert!(d.names("\\").is_empty());
    clean_flush(&d);
    assert!(!d.share_has("file0"));
}

/// rename_test. Refusing to rename a folder with a file open below it is the FSD's check
/// (played by the dispatcher); refusing to replace a folder is the file system's.
#[test]
fn rename_test() {
    let d = Drive::new(&[]);
    d.create_directory("\\dir1").unwrap();
    d.create_directory("\\dir2").unwrap();
    let (file0, file1, file2) = ("\\dir1\\file0", "\\dir1\\file1", "\\dir2\\file2");
    let mut h = d.create_file(file0, RW, FILE_CREATE, NORMAL).unwrap();
    d.write(&mut h, b"first", 0).unwrap();
    d.close(h);
    d.move_file(file0, file1, false).unwrap();
    let mut h = d.create_file(file0, RW, FILE_CREATE, NORMAL).unwrap();
    d.write(&mut h, b"second", 0).unwrap();
    d.close(h);
    assert_eq!(
        d.move_file(file0, file1, false).err(),
        Some(STATUS_OBJECT_NAME_COLLISION)
    );
    d.move_file(file0, file1, true).unwrap();
    assert_eq!(d.read_all(file1).unwrap(), b"second");
    d.move_file(file1, file2, false).unwrap();
    assert_eq!(
        d.move_file("\\dir2", "\\dir1", true).err(),
        Some(STATUS_ACCESS_DENIED),
        "a folder is never replaced"
    );
    d.remove_directory("\\dir1").unwrap();
    d.move_file("\\dir2", "\\dir1", false).unwrap();
    d.move_file("\\dir1", "\\dir2", false).unwrap();
    let h = d.create_file(file2, RW, FILE_OPEN, 0).unwrap();
    assert_eq!(
        d.move_file("\\dir2", "\\dir1", false).err(),
        Some(STATUS_ACCESS_DENIED)
    );
    d.close(h);
    d.create_directory("\\dir1").unwrap();
    clean_flush(&d);
    assert_eq!(d.share_names(""), ["dir1", "dir2"]);
    assert_eq!(d.on_share("dir2/file2").unwrap(), b"second");
    d.remove_directory("\\dir1").unwrap();
    d.delete_file(file2).unwrap();
    d.remove_directory("\\dir2").unwrap();
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
}

/// rename_open_test: a file renamed while another handle has it open; the new name opens.
/// (The share modes of those opens are the FSD's.)
#[test]
fn rename_open_test() {
    let d = Drive::new(&[]);
    d.close(d.create_file("\\file0", RW, FILE_CREATE, NORMAL).unwrap());
    let h0 = d.create_file("\\file0", DELETE, FILE_OPEN, NORMAL).unwrap();
    let h1 = d
        .create_file("\\file0", FILE_READ_ATTRIBUTES, FILE_OPEN, NORMAL)
        .unwrap();
    d.rename(&h0, "\\file2", false).unwrap();
    let h2 = d
        .create_file("\\file2", FILE_READ_ATTRIBUTES, FILE_OPEN, NORMAL)
        .unwrap();
    assert_eq!(d.info(&h1).unwrap().index_number, h2.info.index_number);
    d.close(h2);
    d.close(h1);
    d.close(h0);
    clean_flush(&d);
    assert_eq!(d.share_names(""), ["file2"]);
    d.delete_file("\\file2").unwrap();
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
}

/// What a rename that changes only the case leaves on the share folder: `to` on Windows;
/// under Wine 8, which takes such a rename of a folder as one onto itself, a no-op (checked
/// here by doing one; files are renamed), `from`. The drive itself shows `to` either way.
fn case_on_share(from: &str, to: &str, dir: bool) -> String {
    let tmp = tempfile::tempdir().unwrap();
    if dir {
        std::fs::create_dir(tmp.path().join("probe")).unwrap();
    } else {
        std::fs::write(tmp.path().join("probe"), "").unwrap();
    }
    std::fs::rename(tmp.path().join("probe"), tmp.path().join("PROBE")).unwrap();
    let kept = std::fs::read_dir(tmp.path())
        .unwrap()
        .any(|e| e.unwrap().file_name() == "probe");
    if kept { from } else { to }.to_owned()
}

/// rename_caseins_test: a rename onto the same name, and onto the same name in another case
/// (which changes the case, on the drive and on the share).
#[test]
fn rename_caseins_test() {
    let d = Drive::new(&[]);
    d.create_directory("\\dir1").unwrap();
    d.close(d.create_file("\\file1", RW, FILE_CREATE, NORMAL).unwrap());
    // On the share first, so that the flush after the renames renames there.
    clean_flush(&d);
    d.move_file("\\dir1", "\\dir1", false).unwrap();
    d.move_file("\\dir1", "\\DIR1", false).unwrap();
    d.move_file("\\file1", "\\file1", false).unwrap();
    d.move_file("\\file1", "\\FILE1", false).unwrap();
    assert_eq!(d.names("\\"), ["DIR1", "FILE1"]);
    clean_flush(&d);
    assert_eq!(
        d.share_names(""),
        [
            case_on_share("dir1", "DIR1", true),
            case_on_share("file1", "FILE1", false)
        ]
    );
    d.remove_directory("\\DIR1").unwrap();
    d.delete_file("\\FILE1").unwrap();
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
}

/// rename_ex_test (FileRenameInformationEx). POSIX semantics need
/// SupportsPosixUnlinkRename, not offered here (WinFsp's test skips itself then), and
/// refusing to replace a file that is open is the FSD's (played by the dispatcher). What
/// concerns the file system: a rename of an open file, and a replace once the target is
/// closed.
#[test]
fn rename_ex_test() {
    let d = Drive::new(&[]);
    d.close(d.create_file("\\file0", RW, FILE_CREATE, NORMAL).unwrap());
    let h0 = d.create_file("\\file0", DELETE, FILE_OPEN, NORMAL).unwrap();
    let h1 = d
        .create_file("\\file0", FILE_READ_ATTRIBUTES, FILE_OPEN, NORMAL)
        .unwrap();
    d.rename(&h0, "\\file2", false).unwrap();
    d.close(
        d.create_file("\\file2", FILE_READ_ATTRIBUTES, FILE_OPEN, 0)
            .unwrap(),
    );
    d.close(h1);
    d.close(h0);
    let mut h = d.create_file("\\file0", RW, FILE_CREATE, NORMAL).unwrap();
    d.write(&mut h, b"zero", 0).unwrap();
    d.close(h);
    let h1 = d.create_file("\\file0", RW, FILE_OPEN, NORMAL).unwrap();
    let h2 = d.create_file("\\file2", DELETE, FILE_OPEN, NORMAL).unwrap();
    assert_eq!(d.rename(&h2, "\\file0", true), Err(STATUS_ACCESS_DENIED));
    d.close(h1);
    d.rename(&h2, "\\file0", true).unwrap();
    d.close(h2);
    assert_eq!(d.names("\\"), ["file0"]);
    clean_flush(&d);
    assert_eq!(d.share_names(""), ["file0"]);
    assert_eq!(
        d.on_share("file0").unwrap(),
        b"",
        "file2's content replaced file0's"
    );
    d.delete_file("\\file0").unwrap();
    clean_flush(&d);
    assert!(d.share_names("").is_empty());
}
