//! Listings as the FSD gathers them: QueryDirectory requests of a given size, each from the
//! last name the one before gave, and the FSP_FSCTL_DIR_INFO records they come back in.

use winfsp::filesystem::FileInfo;
use winfsp_sys::FSP_FSCTL_FILE_INFO;

use crate::dispatcher::{
    status, wide, Drive, Handle, Status, FILE_FLAG_BACKUP_SEMANTICS, FILE_OPEN, READ,
};

impl Drive {
    /// One QueryDirectory request: entries from after `marker` into a buffer of `len` bytes.
    /// Returns the entries and whether the end mark came.
    pub fn read_dir(
        &self,
        h: &Handle,
        marker: Option<&str>,
        len: usize,
    ) -> Result<(Vec<(String, FileInfo)>, bool), Status> {
        let mut buf = vec![0u8; len];
        let marker = marker.map(wide);
        let n = status(self.fs.read_dir(h.ctx(), marker.as_deref(), &mut buf))? as usize;
        Ok(parse_dir_infos(&buf[..n]))
    }

    /// FindFirstFileW/FindNextFileW over `dir` with a pattern `prefix*` (the FSD matches
    /// patterns itself: this volume does not ask for them).
    pub fn find(&self, dir: &str, prefix: &str) -> Result<Vec<(String, FileInfo)>, Status> {
        let p = prefix.to_uppercase();
        Ok(self
            .list(dir, 4096)?
            .into_iter()
            .filter(|(n, _)| n.to_uppercase().starts_with(&p))
            .collect())
    }

    /// A whole listing, as the FSD gathers it: requests of `len` bytes, each from the last
    /// name the one before gave, until the end mark (or an empty answer).
    pub fn list(&self, dir: &str, len: usize) -> Result<Vec<(String, FileInfo)>, Status> {
        let h = self.create_file(dir, READ, FILE_OPEN, FILE_FLAG_BACKUP_SEMANTICS)?;
        let mut all: Vec<(String, FileInfo)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let marker = all.last().map(|e| e.0.clone());
            let (got, end) = self.read_dir(&h, marker.as_deref(), len)?;
            let empty = got.is_empty();
            for (n, _) in &got {
                // A listing that does not move on from its marker would never end.
                assert!(seen.insert(n.clone()), "{n} listed twice in {dir}");
            }
            all.extend(got);
            if end || empty {
                break;
            }
        }
        self.close(h);
        Ok(all)
    }

    pub fn names(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .list(dir, 4096)
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .filter(|n| n != "." && n != "..")
            .collect();
        v.sort();
        v
    }
}

/// The entries of a buffer of FSP_FSCTL_DIR_INFO records (8-byte aligned), and whether it
/// ends with the end mark (a zero size).
fn parse_dir_infos(buf: &[u8]) -> (Vec<(String, FileInfo)>, bool) {
    let header = std::mem::size_of::<winfsp_sys::FSP_FSCTL_DIR_INFO>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= buf.len() {
        let size = u16::from_le_bytes([buf[at], buf[at + 1]]) as usize;
        if size == 0 {
            return (out, true);
        }
        let rec = &buf[at..at + size];
        // SAFETY: FSP_FSCTL_DIR_INFO is plain data; read unaligned from the record's start.
        let di: winfsp_sys::FSP_FSCTL_DIR_INFO =
            unsafe { std::ptr::read_unaligned(rec.as_ptr().cast()) };
        let name: Vec<u16> = rec[header..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let fi = file_info_of(&di.FileInfo);
        out.push((String::from_utf16(&name).unwrap(), fi));
        at += size.div_ceil(8) * 8;
    }
    (out, false)
}

fn file_info_of(f: &FSP_FSCTL_FILE_INFO) -> FileInfo {
    FileInfo {
        file_attributes: f.FileAttributes,
        reparse_tag: f.ReparseTag,
        allocation_size: f.AllocationSize,
        file_size: f.FileSize,
        creation_time: f.CreationTime,
        last_access_time: f.LastAccessTime,
        last_write_time: f.LastWriteTime,
        change_time: f.ChangeTime,
        index_number: f.IndexNumber,
        hard_links: f.HardLinks,
        ea_size: f.EaSize,
    }
}
