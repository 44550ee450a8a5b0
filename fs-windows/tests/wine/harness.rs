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
