//! WinFsp's directory listing tests (tst/winfsp-tests/dirctl-test.c), ported. The FSD turns
//! the file system's FSP_FSCTL_DIR_INFO entries into FindFirstFile's and NtQueryDirectoryFile's
//! records and matches patterns (this volume does not ask for them); the dispatcher plays that
//! part, asking in requests of a given size, each from the last name it got.

use crate::dispatcher::*;

/// querydir_test: 10 folders and 400 files at the root, 100 files in `dir1`; listed whole,
/// by pattern, and in requests too small for all of them. Run with WinFsp's test's counts.
#[test]
fn querydir_test() {
    let d = Drive::new(&[]);
    for i in 1..=10 {
        d.create_directory(&format!("\\dir{i}")).unwrap();
    }
    let long = "fileABCDEFGHIJKLMNOPQRSTUVXWYZfile";
    for j in 1..=400 {
        let h = d
            .create_file(
                &format!("\\{long}{j}"),
                READ | WRITE,
                FILE_OVERWRITE_IF,
                NORMAL,
            )
            .unwrap();
        d.close(h);
    }
    for j in 1..=100 {
        let h = d
            .create_file(
                &format!("\\dir1\\file{j}"),
                READ | WRITE,
                FILE_OVERWRITE_IF,
                NORMAL,
            )
            .unwrap();
        d.close(h);
    }
    // The root: no `.` or `..`; everything once, whatever the request size.
    for len in [4096, 65536, 200] {
        let all = d.list("\\", len).unwrap();
        assert_eq!(all.len(), 410, "requests of {len} bytes");
        assert!(all
            .iter()
            .all(|(n, _)| n.starts_with("file") || n.starts_with("dir")));
        let mut names: Vec<&String> = all.iter().map(|e| &e.0).collect();
        names.dedup();
        assert_eq!(names.len(), 410, "no entry twice");
    }
    // dir1: `.` and `..` first (folders), then file1..file100.
    let all = d.list("\\dir1", 4096).unwrap();
    assert_eq!(all.len(), 102);
    for (i, (n, info)) in all.iter().take(2).enumerate() {
        assert_eq!(n, &".."[..i + 1]);
        assert_ne!(info.file_attributes & DIRECTORY, 0);
    }
    let total: u64 = all[2..]
        .iter()
        .map(|(n, info)| {
            assert_eq!(info.file_attributes & DIRECTORY, 0);
            n.strip_prefix("file").unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(total, 101 * 100 / 2);
    let dirs = d.find("\\", "dir").unwrap();
    assert_eq!(dirs.len(), 10);
    let total: u64 = dirs
        .iter()
        .map(|(n, info)| {
            assert_ne!(info.file_attributes & DIRECTORY, 0);
            n[3..].parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(total, 11 * 10 / 2);
    let files = d.find("\\", long).unwrap();
    let total: u64 = files
        .iter()
        .map(|(n, _)| n[long.len()..].parse::<u64>().unwrap())
        .sum();
    assert_eq!((files.len(), total), (400, 401 * 400 / 2));

    let r = d.flush();
    assert!(r.pending.is_empty(), "{:?}", r.pending);
    assert_eq!(d.share_names("").len(), 410);
    assert_eq!(d.share_names("dir1").len(), 100);
}

/// querydir_buffer_overflow_test. STATUS_INFO_LENGTH_MISMATCH for an empty buffer and
/// STATUS_BUFFER_OVERFLOW with a cut record are the FSD's answers, from its own records:
/// left out. The file system's part: a request too small for one entry gets nothing, and no
/// end mark (the listing is not over), and nothing is half-written; the next, larger request
/// from the same place gets the entry.
#[test]
fn querydir_buffer_overflow_test() {
    let d = Drive::new(&[]);
    d.close(
        d.create_file("\\file0", READ | WRITE, FILE_CREATE, NORMAL)
            .unwrap(),
    );
    let h = d
        .create_file("\\", READ, FILE_OPEN, FILE_FLAG_BACKUP_SEMANTICS)
        .unwrap();
    for len in [0, 8, 90] {
        let (got, end) = d.read_dir(&h, None, len).unwrap();
        assert!(got.is_empty() && !end, "{len} bytes");
    }
    let (got, end) = d.read_dir(&h, None, 120).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "file0");
    assert!(!end, "no room for the end mark after it");
    let (got, end) = d.read_dir(&h, Some("file0"), 8).unwrap();
    assert!(got.is_empty() && end, "then only the end mark");
    d.close(h);
    d.delete_file("\\file0").unwrap();
    let r = d.flush();
    assert!(r.pending.is_empty(), "{:?}", r.pending);
    assert!(d.share_names("").is_empty());
}
