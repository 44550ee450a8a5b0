//! The drive's Windows semantics, on a real engine over real folders (on every platform).

use std::fs;

use super::*;
use crate::{DirBacking, EngineOptions, RetryPolicy};

struct Rig {
    _tmp: tempfile::TempDir,
    share: std::path::PathBuf,
    nt: NtFs,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir_all(share.join("Docs")).unwrap();
    fs::write(share.join("Docs/Report.TXT"), "hello").unwrap();
    fs::write(share.join("data.csv"), "a,b\n").unwrap();
    let mut opts = EngineOptions::new(tmp.path().join("cache"), "nt-test");
    opts.retry = RetryPolicy::none();
    let engine = Engine::open(Arc::new(DirBacking::new(&share)), opts).unwrap();
    Rig {
        nt: NtFs::new(Arc::new(engine), "S:"),
        share,
        _tmp: tmp,
    }
}

fn pending(r: &Rig) -> usize {
    let s = r.nt.engine().status();
    s.pending_files + s.pending_changes
}

#[test]
fn names_open_whatever_their_case_and_show_the_case_on_disk() {
    let r = rig();
    let (h, info, normalized) = r.nt.open("\\docs\\report.txt", 0).unwrap();
    assert_eq!(normalized, "\\Docs\\Report.TXT");
    assert_eq!(info.file_size, 5);
    assert_eq!(info.attributes, attributes::ARCHIVE);
    r.nt.close(h);
    assert_eq!(
        r.nt.open("\\nope\\x", 0).err(),
        Some(STATUS_OBJECT_PATH_NOT_FOUND)
    );
    assert_eq!(
        r.nt.open("\\Docs\\x", 0).err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    assert_eq!(
        r.nt.open("\\data.csv\\x", 0).err(),
        Some(STATUS_OBJECT_PATH_NOT_FOUND)
    );
    // A new name that differs only in case from an existing one is the existing one.
    assert_eq!(
        r.nt.create("\\DATA.CSV", 0, 0).err(),
        Some(STATUS_OBJECT_NAME_COLLISION)
    );
    assert_eq!(
        r.nt.create("\\x\\y", 0, 0).err(),
        Some(STATUS_OBJECT_PATH_NOT_FOUND)
    );
}

#[test]
fn open_options_are_checked_against_the_kind() {
    let r = rig();
    assert_eq!(
        r.nt.open("\\data.csv", FILE_DIRECTORY_FILE).err(),
        Some(STATUS_NOT_A_DIRECTORY)
    );
    assert_eq!(
        r.nt.open("\\Docs", FILE_NON_DIRECTORY_FILE).err(),
        Some(STATUS_FILE_IS_A_DIRECTORY)
    );
    let (h, info, _) = r.nt.open("\\Docs", FILE_DIRECTORY_FILE).unwrap();
    assert!(h.is_dir() && info.attributes & attributes::DIRECTORY != 0);
    r.nt.close(h);
}

#[test]
fn reading_changes_nothing_and_the_first_write_makes_a_change() {
    let r = rig();
    let (h, _, _) = r.nt.open("\\data.csv", 0).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(r.nt.read(&h, &mut buf, 0).unwrap(), 4);
    assert_eq!(&buf[..4], b"a,b\n");
    assert_eq!(r.nt.read(&h, &mut buf, 4).err(), Some(STATUS_END_OF_FILE));
    assert_eq!(pending(&r), 0, "an open that only reads is no change");
    // Appending, as `>>` does; paging I/O never extends a file.
    let (n, info) = r.nt.write(&h, b"1,2\n", 0, true, false).unwrap();
    assert_eq!((n, info.file_size), (4, 8));
    let (n, _) = r.nt.write(&h, b"xxxxxxxx", 6, false, true).unwrap();
    assert_eq!(n, 2);
    r.nt.close(h);
    assert_eq!(pending(&r), 1);
    let rep = r.nt.engine().flush(None);
    assert!(rep.pending.is_empty(), "{rep:?}");
    assert_eq!(fs::read(r.share.join("data.csv")).unwrap(), b"a,b\n1,xx");
}

#[test]
fn overwrite_size_and_times() {
    let r = rig();
    let (h, _, _) = r.nt.open("\\data.csv", 0).unwrap();
    let info =
        r.nt.overwrite(&h, attributes::ARCHIVE | attributes::READONLY, true)
            .unwrap();
    assert_eq!(info.file_size, 0);
    assert_ne!(info.attributes & attributes::READONLY, 0);
    r.nt.write(&h, b"0123456789", 0, false, false).unwrap();
    // A smaller allocation cuts; a larger one reserves nothing.
    assert_eq!(r.nt.set_file_size(&h, 4, true).unwrap().file_size, 4);
    assert_eq!(r.nt.set_file_size(&h, 4096, true).unwrap().file_size, 4);
    assert_eq!(r.nt.set_file_size(&h, 6, false).unwrap().file_size, 6);
    let t = time::filetime(1_700_000_000_123_456_700);
    let a = time::filetime(1_600_000_000_000_000_000);
    let info = r.nt.set_basic_info(&h, attributes::INVALID, a, t).unwrap();
    assert_eq!((info.last_write_time, info.last_access_time), (t, a));
    assert_eq!(info.allocation_size, ALLOCATION_UNIT);
    // Zero leaves the times alone.
    let info = r.nt.set_basic_info(&h, attributes::ARCHIVE, 0, 0).unwrap();
    assert_eq!(info.last_write_time, t);
    assert_eq!(
        info.attributes & attributes::READONLY,
        0,
        "read-only cleared"
    );
    r.nt.close(h);
    // A drive has no owners: none of this records one.
    let e = r.nt.engine();
    let ino = e
        .resolve(&crate::RelPath::new("data.csv").unwrap())
        .unwrap();
    assert_eq!(e.getattr(ino).unwrap().owner, None);
    assert!(r.nt.engine().flush(None).pending.is_empty());
    let md = fs::metadata(r.share.join("data.csv")).unwrap();
    assert_eq!(md.len(), 6);
    assert_eq!(crate::backing::mtime_ns(&md), 1_700_000_000_123_456_700);
}

#[test]
fn deletes_are_asked_then_done_at_cleanup() {
    let r = rig();
    let (d, _, _) = r.nt.open("\\docs", 0).unwrap();
    assert_eq!(r.nt.can_delete(&d).err(), Some(STATUS_DIRECTORY_NOT_EMPTY));
    let (f, _, _) = r.nt.open("\\Docs\\Report.TXT", 0).unwrap();
    // A read-only file is WinFsp's to refuse; asked here, it may go (the program asked to
    // ignore the attribute).
    r.nt.set_basic_info(&f, attributes::READONLY, 0, 0).unwrap();
    r.nt.can_delete(&f).unwrap();
    r.nt.set_basic_info(&f, attributes::ARCHIVE, 0, 0).unwrap();
    // Nothing goes before the last cleanup says so.
    assert!(r.nt.open("\\Docs\\Report.TXT", 0).is_ok());
    r.nt.cleanup(&f, CLEANUP_DELETE);
    r.nt.close(f);
    r.nt.can_delete(&d).unwrap();
    r.nt.cleanup(&d, CLEANUP_DELETE);
    r.nt.close(d);
    assert_eq!(
        r.nt.open("\\Docs", 0).err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    assert!(r.nt.engine().flush(None).pending.is_empty());
    assert!(!r.share.join("Docs").exists());
}

#[test]
fn renames_replace_only_when_asked_never_a_folder_and_may_change_only_case() {
    let r = rig();
    let (h, _, _) = r.nt.create("\\new.csv", 0, 0).unwrap();
    r.nt.write(&h, b"new", 0, false, false).unwrap();
    assert_eq!(
        r.nt.rename(&h, "\\data.csv", false).err(),
        Some(STATUS_OBJECT_NAME_COLLISION)
    );
    assert_eq!(
        r.nt.rename(&h, "\\DOCS", true).err(),
        Some(STATUS_ACCESS_DENIED)
    );
    assert_eq!(
        r.nt.rename(&h, "\\nowhere\\x.csv", false).err(),
        Some(STATUS_OBJECT_PATH_NOT_FOUND)
    );
    // Replacing a name that differs in case: ours takes the case asked for.
    r.nt.rename(&h, "\\Data.csv", true).unwrap();
    let (_, _, normalized) = r.nt.open("\\data.CSV", 0).unwrap();
    assert_eq!(normalized, "\\Data.csv");
    // A case-only rename of a folder.
    let (d, _, _) = r.nt.open("\\Docs", 0).unwrap();
    r.nt.rename(&d, "\\docs", false).unwrap();
    r.nt.close(d);
    r.nt.close(h);
    assert!(r.nt.engine().flush(None).pending.is_empty());
    // The next flush removes the old data.csv, which the commit captured and kept until then.
    assert!(r.nt.engine().flush(None).is_clean());
    let mut on_share: Vec<String> = fs::read_dir(&r.share)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_share.sort();
    assert_eq!(on_share, ["Data.csv", "docs"]);
    assert_eq!(fs::read(r.share.join("Data.csv")).unwrap(), b"new");
}

#[test]
fn listings_and_the_control_files() {
    let r = rig();
    let (root, _, _) = r.nt.open("\\", 0).unwrap();
    let names: Vec<String> = r.nt.list(&root).unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        ["Docs", "data.csv"],
        "no . or .. at the root, no .sipfs"
    );
    let (d, _, _) = r.nt.open("\\Docs", 0).unwrap();
    let names: Vec<String> = r.nt.list(&d).unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(names, [".", "..", "Report.TXT"]);
    let (h, _, _) = r.nt.create("\\step.csv", 0, 0).unwrap();
    r.nt.write(&h, b"1\n", 0, false, false).unwrap();
    r.nt.close(h);
    // `echo flush step-1 > S:\.sipfs\control`, case as a user may type it.
    let (c, _, normalized) = r.nt.open("\\.SIPFS\\Control", 0).unwrap();
    assert_eq!(normalized, "\\.sipfs\\control");
    r.nt.overwrite(&c, 0, false).unwrap();
    assert_eq!(
        r.nt.write(&c, b"flush step-1\r\n", 0, false, false)
            .unwrap()
            .0,
        14
    );
    assert_eq!(
        r.nt.write(&c, b"nonsense", 0, false, false).err(),
        Some(STATUS_INVALID_PARAMETER)
    );
    r.nt.close(c);
    assert_eq!(fs::read(r.share.join("step.csv")).unwrap(), b"1\n");
    let (s, info, _) = r.nt.open("\\.sipfs\\status", 0).unwrap();
    let mut buf = vec![0u8; info.file_size as usize];
    r.nt.read(&s, &mut buf, 0).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["mountpoint"], "S:");
    assert_eq!(v["last_flush"]["label"], "step-1");
    r.nt.close(s);
    r.nt.close(d);
    r.nt.close(root);
}

#[test]
fn a_listing_resumes_after_its_marker_in_ntfs_order() {
    let r = rig();
    for n in ["b.txt", "B2.txt", "a.txt", "_x"] {
        let (h, _, _) = r.nt.create(&format!("\\Docs\\{n}"), 0, 0).unwrap();
        r.nt.close(h);
    }
    // The share holds names Windows would take as one: both are listed, in a fixed order.
    fs::write(r.share.join("Docs/A.TXT"), "").unwrap();
    r.nt.engine().refresh();
    let (d, _, _) = r.nt.open("\\Docs", 0).unwrap();
    let names = |m: Option<&str>| -> Vec<String> {
        r.nt.list_after(&d, m)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    let all = names(None);
    assert_eq!(
        all,
        [
            ".",
            "..",
            "A.TXT",
            "a.txt",
            "b.txt",
            "B2.txt",
            "Report.TXT",
            "_x"
        ]
    );
    for (i, m) in all.iter().enumerate() {
        assert_eq!(names(Some(m)), all[i + 1..], "after {m}");
    }
    // A marker that is gone since (deleted between two calls) still resumes in order.
    assert_eq!(names(Some("a.tz")), ["b.txt", "B2.txt", "Report.TXT", "_x"]);
    r.nt.close(d);
}
