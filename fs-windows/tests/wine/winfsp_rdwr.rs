//! WinFsp's read/write and flush tests (tst/winfsp-tests/rdwr-test.c, flush-test.c), ported
//! for the cached case: writes arrive as the application's, then again as the cache
//! manager's paging writes (constrained: never past the end of the file).

use crate::dispatcher::*;

/// WinFsp's tests write sectors of the volume's size: this volume's is 4096.
const SECTOR: usize = 4096;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// rdwr_cached_append_test: a handle with FILE_APPEND_DATA only writes at the end, wherever
/// that is; the read-back matches; delete-on-close removes it.
#[test]
fn rdwr_cached_append_test() {
    let d = Drive::new(&[]);
    let data = pattern(2 * SECTOR, 7);
    let mut h = d
        .create_file("\\file0", FILE_APPEND_DATA_ONLY, FILE_CREATE, NORMAL)
        .unwrap();
    assert_eq!(d.append(&mut h, &data[..SECTOR]).unwrap() as usize, SECTOR);
    assert_eq!(d.append(&mut h, &data[SECTOR..]).unwrap() as usize, SECTOR);
    // The cache manager's lazy writer, later: the same bytes as paging I/O, in whole pages,
    // which must not make the file longer than the appends did.
    let mut page = data.clone();
    page.resize(3 * SECTOR, 0);
    assert_eq!(
        d.write_constrained(&h, &page, 0).unwrap() as usize,
        2 * SECTOR
    );
    assert_eq!(d.info(&h).unwrap().file_size as usize, 2 * SECTOR);
    d.close(h);
    let r = d.flush();
    assert!(r.pending.is_empty(), "{:?}", r.pending);
    assert_eq!(d.on_share("file0").unwrap(), data);

    let h = d
        .create_file(
            "\\file0",
            READ | WRITE,
            FILE_OPEN,
            FILE_FLAG_DELETE_ON_CLOSE,
        )
        .unwrap();
    assert_eq!(d.read(&h, 2 * SECTOR, 0).unwrap(), data);
    assert_eq!(
        d.read(&h, SECTOR, 2 * SECTOR as u64),
        Err(STATUS_END_OF_FILE)
    );
    d.close(h);
    assert_eq!(
        d.create_file("\\file0", READ | WRITE, FILE_OPEN, 0).err(),
        Some(STATUS_OBJECT_NAME_NOT_FOUND)
    );
    d.flush();
    assert!(!d.share_has("file0"));
}

/// flush_test and flush_volume_test: writes at 0 and at two sectors (leaving a hole), read
/// back, FlushFileBuffers on the file and on the volume, read back again. The share gets the
/// hole as zeros.
#[test]
fn flush_test() {
    for volume in [false, true] {
        let d = Drive::new(&[]);
        let data = pattern(SECTOR, 3);
        let mut h = d
            .create_file("\\file0", READ | WRITE, FILE_CREATE, NORMAL)
            .unwrap();
        d.write(&mut h, &data, 0).unwrap();
        d.write(&mut h, &data, 2 * SECTOR as u64).unwrap();
        assert_eq!(d.read(&h, SECTOR, 0).unwrap(), data);
        assert_eq!(d.read(&h, SECTOR, 2 * SECTOR as u64).unwrap(), data);
        let info = d.flush_buffers((!volume).then_some(&h)).unwrap();
        if !volume {
            assert_eq!(info.file_size as usize, 3 * SECTOR);
        }
        assert_eq!(d.read(&h, SECTOR, 0).unwrap(), data);
        assert_eq!(d.read(&h, SECTOR, SECTOR as u64).unwrap(), vec![0; SECTOR]);
        d.close(h);
        let r = d.flush();
        assert!(r.pending.is_empty(), "{:?}", r.pending);
        let on_share = d.on_share("file0").unwrap();
        assert_eq!(on_share.len(), 3 * SECTOR);
        assert_eq!(&on_share[..SECTOR], &data[..]);
        assert_eq!(&on_share[SECTOR..2 * SECTOR], &vec![0; SECTOR][..]);
        assert_eq!(&on_share[2 * SECTOR..], &data[..]);
        d.delete_file("\\file0").unwrap();
        d.flush();
        assert!(!d.share_has("file0"));
    }
}
