//! WinFsp's side of the drive, for tests: what the kernel driver (FSD) and the dispatcher in
//! WinFsp's DLL (`src/dll/fsop.c`, `src/dll/security.c`) do around the callbacks, rewritten
//! from their source, calling the adapter's `FileSystemContext` methods in the same order with
//! the same arguments. The callbacks run for real (adapter, `NtFs`, engine, cache, share
//! folder); so do the parts of WinFsp's DLL the adapter calls itself (`FspFileSystemAddDirInfo`
//! for listings, `winfsp_init`). What is rewritten here and not WinFsp's own code running:
//! - fsop.c's create dispositions and access checks (read-only files, folder or file);
//! - the FSD's bookkeeping: one node per open file, delete-pending, cleanup on each handle
//!   with the delete flag on the last one, new opens of a delete-pending file refused;
//! - nothing of the FSD's share-access checks, name checks, caches or oplocks.
//!
//! The API is Win32's or NT's, named as in WinFsp's tests, answering NTSTATUS codes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fs_core::nt::NtFs;
use fs_core::{DirBacking, Engine, EngineOptions, FlushReport, RetryPolicy};
use fs_windows::{Context, DriveFs};
use winfsp::filesystem::{FileInfo, FileSystemContext, OpenFileInfo, VolumeInfo};
use winfsp::U16CString;
use winfsp_sys::{FSP_FSCTL_FILE_INFO, FSP_FSCTL_OPEN_FILE_INFO, FSP_FSCTL_VOLUME_INFO};

pub type Status = i32;
pub use fs_core::nt::status::*;
pub const STATUS_DELETE_PENDING: Status = 0xC000_0056_u32 as i32;

// NtCreateFile's dispositions and options, and access rights (winnt.h).
pub const FILE_SUPERSEDE: u32 = 0;
pub const FILE_OPEN: u32 = 1;
pub const FILE_CREATE: u32 = 2;
pub const FILE_OPEN_IF: u32 = 3;
pub const FILE_OVERWRITE: u32 = 4;
pub const FILE_OVERWRITE_IF: u32 = 5;
pub const FILE_DIRECTORY_FILE: u32 = 0x1;
pub const FILE_NON_DIRECTORY_FILE: u32 = 0x40;
pub const FILE_DELETE_ON_CLOSE: u32 = 0x1000;
pub const READ: u32 = 0x0012_0089; // FILE_GENERIC_READ
pub const WRITE: u32 = 0x0012_0116; // FILE_GENERIC_WRITE
pub const DELETE: u32 = 0x0001_0000;
pub const FILE_READ_ATTRIBUTES: u32 = 0x80;
pub const FILE_WRITE_ATTRIBUTES: u32 = 0x100;
pub const FILE_APPEND_DATA_ONLY: u32 = 0x4;
pub const FILE_FLAG_DELETE_ON_CLOSE: u32 = 0x0400_0000;
pub const FILE_FLAG_BACKUP_SEMANTICS: u32 = 0x0200_0000;
const FILE_WRITE_DATA: u32 = 0x2;
const FILE_APPEND_DATA: u32 = 0x4;
const FILE_ADD_SUBDIRECTORY: u32 = 0x4;
const FILE_DELETE_CHILD: u32 = 0x40;
// Attributes.
pub const READONLY: u32 = 0x1;
pub const HIDDEN: u32 = 0x2;
pub const SYSTEM: u32 = 0x4;
pub const DIRECTORY: u32 = 0x10;
pub const ARCHIVE: u32 = 0x20;
pub const NORMAL: u32 = 0x80;
pub const TEMPORARY: u32 = 0x100;
// WinFsp's cleanup flags (winfsp.h).
pub const CLEANUP_DELETE: u32 = 0x01;
pub const CLEANUP_SET_ARCHIVE_BIT: u32 = 0x10;
pub const CLEANUP_SET_LAST_WRITE_TIME: u32 = 0x40;

/// WinFsp's DLL, loaded once per test process (from beside the test exe).
fn init_winfsp() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        winfsp::winfsp_init()
            .expect("winfsp_init: winfsp-x64.dll beside the test exe (the runner puts it there)");
    });
}

/// The FSD's per-file state: open handles and the pending delete.
#[derive(Default)]
struct Node {
    opens: usize,
    delete_pending: bool,
    /// Its name now (the FSD's FileNode name), for the rename checks.
    name: String,
}

/// An open handle: the callbacks' context and what the FSD keeps per file object.
pub struct Handle {
    ctx: Option<Context>,
    /// The name the open was made with, normalized (the case on disk).
    pub name: String,
    pub info: FileInfo,
    node: u64,
    delete_on_close: bool,
    modified: bool,
}

impl Handle {
    pub(crate) fn ctx(&self) -> &Context {
        self.ctx.as_ref().expect("open")
    }
}

/// A drive: the adapter over a real engine, cache and share folder, and WinFsp's side.
pub struct Drive {
    pub fs: DriveFs,
    pub share: PathBuf,
    nodes: RefCell<HashMap<u64, Node>>,
    _tmp: tempfile::TempDir,
}

/// An `OpenFileInfo` as fsop.c hands it to Create and Open: `FSP_FSCTL_OPEN_FILE_INFO` with a
/// buffer for the normalized name, of FSP_FSCTL_TRANSACT_RSP_BUFFER_SIZEMAX bytes.
struct OpenInfo {
    raw: FSP_FSCTL_OPEN_FILE_INFO,
    _name: Box<[u16]>,
}

impl OpenInfo {
    fn new() -> OpenInfo {
        let mut name = vec![0u16; winfsp::constants::FSP_FSCTL_TRANSACT_RSP_BUFFER_SIZEMAX / 2]
            .into_boxed_slice();
        let raw = FSP_FSCTL_OPEN_FILE_INFO {
            FileInfo: FSP_FSCTL_FILE_INFO::default(),
            NormalizedName: name.as_mut_ptr(),
            NormalizedNameSize: (name.len() * 2) as u16,
        };
        OpenInfo { raw, _name: name }
    }

    fn as_open_file_info(&mut self) -> &mut OpenFileInfo {
        // SAFETY: winfsp asserts at compile time that OpenFileInfo has this struct's layout
        // (`ensure_layout!`), and its own dispatcher makes one from the other the same way.
        unsafe { &mut *(&mut self.raw as *mut FSP_FSCTL_OPEN_FILE_INFO).cast::<OpenFileInfo>() }
    }

    fn normalized(&self) -> String {
        let n = self.raw.NormalizedNameSize as usize / 2;
        // SAFETY: the adapter wrote n UTF-16 units into the buffer (as set_normalized_name).
        let s = unsafe { std::slice::from_raw_parts(self.raw.NormalizedName, n) };
        String::from_utf16(s).expect("UTF-16 name")
    }
}

pub fn wide(s: &str) -> U16CString {
    U16CString::from_str(s).expect("no NUL in names")
}

pub fn status<T>(r: winfsp::Result<T>) -> Result<T, Status> {
    r.map_err(|e| e.to_ntstatus())
}

impl Drive {
    /// A new drive over a new share folder; `files` are put on the share first.
    pub fn new(files: &[(&str, &str)]) -> Drive {
        init_winfsp();
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let share = tmp.path().join("share");
        std::fs::create_dir_all(&share).unwrap();
        for (path, content) in files {
            let p = share.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        let cache = tmp.path().join("cache");
        let mut opts = EngineOptions::new(&cache, "wine-drive");
        opts.retry = RetryPolicy::none();
        let engine = Engine::open(Arc::new(DirBacking::new(&share)), opts).expect("engine");
        Drive {
            fs: DriveFs::new(NtFs::new(Arc::new(engine), "S:"), &cache),
            share,
            nodes: RefCell::default(),
            _tmp: tmp,
        }
    }

    /// What sipfs flush does: the engine writes its changes to the share.
    pub fn flush(&self) -> FlushReport {
        self.fs.nt().engine().flush(Some("test"))
    }

    /// A file on the share, after a flush: None when it is not there.
    pub fn on_share(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(
            self.share
                .join(rel.trim_start_matches('\\').replace('\\', "/")),
        )
        .ok()
    }

    pub fn share_has(&self, rel: &str) -> bool {
        self.share
            .join(rel.trim_start_matches('\\').replace('\\', "/"))
            .exists()
    }

    /// The names in a share folder, sorted, without the old versions a flush moved aside and
    /// removes at the next flush (issue 27's captures: sipfs's own, never shown).
    pub fn share_names(&self, rel: &str) -> Vec<String> {
        let dir: &Path = &self
            .share
            .join(rel.trim_start_matches('\\').replace('\\', "/"));
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !fs_core::names::is_capture_name(n))
            .collect();
        v.sort();
        v
    }

    /// fsop.c's access check (FspAccessCheckEx) for an existing file, as far as it concerns
    /// this volume: everyone may do anything (the descriptor allows all), so what is left are
    /// the attribute checks.
    fn open_check(&self, path: &str, options: u32, access: u32) -> Result<u32, Status> {
        let mut sd = vec![0u8; 1024];
        let sec = status(self.fs.get_security_by_name(
            &wide(path),
            Some(unsafe_bytes(&mut sd)),
            |_| None,
        ))?;
        let a = sec.attributes;
        if options & FILE_DIRECTORY_FILE != 0 && a & DIRECTORY == 0 {
            return Err(STATUS_NOT_A_DIRECTORY);
        }
        if options & FILE_NON_DIRECTORY_FILE != 0 && a & DIRECTORY != 0 {
            return Err(STATUS_FILE_IS_A_DIRECTORY);
        }
        let writes = FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_ADD_SUBDIRECTORY | FILE_DELETE_CHILD;
        if a & (READONLY | DIRECTORY) == READONLY && access & writes != 0 {
            return Err(STATUS_ACCESS_DENIED);
        }
        if a & READONLY != 0 && options & FILE_DELETE_ON_CLOSE != 0 {
            return Err(STATUS_CANNOT_DELETE);
        }
        Ok(a)
    }

    /// The parent check before a create: the parent must be a folder.
    fn create_check(&self, path: &str, options: u32, attributes: u32) -> Result<(), Status> {
        if attributes & READONLY != 0 && options & FILE_DELETE_ON_CLOSE != 0 {
            return Err(STATUS_CANNOT_DELETE);
        }
        let parent = match path.rfind('\\') {
            Some(0) => "\\",
            Some(i) => &path[..i],
            None => return Err(STATUS_OBJECT_NAME_INVALID),
        };
        if path == "\\" {
            return Err(STATUS_INVALID_PARAMETER);
        }
        match self.fs.get_security_by_name(&wide(parent), None, |_| None) {
            Ok(s) if s.attributes & DIRECTORY == 0 => Err(STATUS_NOT_A_DIRECTORY),
            Ok(_) => Ok(()),
            Err(e) if e.to_ntstatus() == STATUS_OBJECT_NAME_NOT_FOUND => {
                Err(STATUS_OBJECT_PATH_NOT_FOUND)
            }
            Err(e) => Err(e.to_ntstatus()),
        }
    }

    /// NtCreateFile: FspFileSystemOpCreate's dispositions, then the FSD's node bookkeeping
    /// and, for the overwrite dispositions, its separate Overwrite request.
    pub fn nt_create(
        &self,
        path: &str,
        access: u32,
        disposition: u32,
        options: u32,
        attributes: u32,
    ) -> Result<Handle, Status> {
        let options = options | (disposition << 24);
        let attributes = attributes & !NORMAL;
        let mut info = OpenInfo::new();
        let mut created = false;
        let ctx = match disposition {
            FILE_CREATE => {
                self.create_check(path, options, attributes)?;
                self.call_create(path, options, access, attributes, &mut info)?
            }
            FILE_OPEN | FILE_OVERWRITE => {
                let extra = if disposition == FILE_OVERWRITE {
                    FILE_WRITE_DATA
                } else {
                    0
                };
                self.open_check(path, options, access | extra)?;
                status(
                    self.fs
                        .open(&wide(path), options, access, info.as_open_file_info()),
                )?
            }
            FILE_OPEN_IF | FILE_OVERWRITE_IF | FILE_SUPERSEDE => {
                let extra = match disposition {
                    FILE_OPEN_IF => 0,
                    FILE_SUPERSEDE => DELETE,
                    _ => FILE_WRITE_DATA,
                };
                match self.open_check(path, options, access | extra) {
                    Ok(_) => status(self.fs.open(
                        &wide(path),
                        options,
                        access,
                        info.as_open_file_info(),
                    ))?,
                    Err(STATUS_OBJECT_NAME_NOT_FOUND) => {
                        self.create_check(path, options, attributes)?;
                        created = true;
                        self.call_create(path, options, access, attributes, &mut info)?
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => return Err(STATUS_INVALID_PARAMETER),
        };
        let fi: FileInfo = info.as_open_file_info().as_ref().clone();
        let node = fi.index_number;
        if self
            .nodes
            .borrow()
            .get(&node)
            .is_some_and(|n| n.delete_pending)
        {
            // The FSD refuses new opens of a file whose delete is pending.
            self.fs.close(ctx);
            return Err(STATUS_DELETE_PENDING);
        }
        {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.entry(node).or_default();
            n.opens += 1;
            n.name = info.normalized();
        }
        let mut h = Handle {
            ctx: Some(ctx),
            name: info.normalized(),
            info: fi,
            node,
            delete_on_close: options & FILE_DELETE_ON_CLOSE != 0,
            modified: created,
        };
        let overwrite = matches!(
            disposition,
            FILE_OVERWRITE | FILE_OVERWRITE_IF | FILE_SUPERSEDE
        );
        if overwrite && !created {
            // The FSD's Overwrite request (FspFileSystemOpOverwrite): attributes are added to
            // the file's, or with supersede replace them; a failure closes the file.
            let mut fi = FileInfo::default();
            let r = self.fs.overwrite(
                h.ctx(),
                attributes,
                disposition == FILE_SUPERSEDE,
                0,
                None,
                &mut fi,
            );
            if let Err(e) = r {
                self.nodes.borrow_mut().get_mut(&node).unwrap().opens -= 1;
                self.fs.close(h.ctx.take().unwrap());
                return Err(e.to_ntstatus());
            }
            h.info = fi;
            h.modified = true;
        }
        Ok(h)
    }

    fn call_create(
        &self,
        path: &str,
        options: u32,
        access: u32,
        attributes: u32,
        info: &mut OpenInfo,
    ) -> Result<Context, Status> {
        let sd = self.fs.security_descriptor().to_vec();
        let r = self.fs.create(
            &wide(path),
            options,
            access,
            attributes,
            Some(bytes_as_void(&sd)),
            0,
            None,
            false,
            info.as_open_file_info(),
        );
        match status(r) {
            // fsop.c's collision check: a file over a folder says it is a folder.
            Err(STATUS_OBJECT_NAME_COLLISION) if options & FILE_NON_DIRECTORY_FILE != 0 => {
                match self.fs.get_security_by_name(&wide(path), None, |_| None) {
                    Ok(s) if s.attributes & DIRECTORY != 0 => Err(STATUS_FILE_IS_A_DIRECTORY),
                    _ => Err(STATUS_OBJECT_NAME_COLLISION),
                }
            }
            r => r,
        }
    }

    /// CreateFileW with its usual mapping onto NtCreateFile.
    pub fn create_file(
        &self,
        path: &str,
        access: u32,
        disposition: u32,
        flags_attrs: u32,
    ) -> Result<Handle, Status> {
        let mut options = 0;
        if flags_attrs & FILE_FLAG_DELETE_ON_CLOSE != 0 {
            options |= FILE_DELETE_ON_CLOSE;
        }
        // Without FILE_FLAG_BACKUP_SEMANTICS (0x02000000) only files open.
        if flags_attrs & FILE_FLAG_BACKUP_SEMANTICS == 0 {
            options |= FILE_NON_DIRECTORY_FILE;
        }
        let access = access
            | if options & FILE_DELETE_ON_CLOSE != 0 {
                DELETE
            } else {
                0
            };
        self.nt_create(path, access, disposition, options, flags_attrs & 0xffff)
    }

    /// CloseHandle: the FSD's Cleanup (with the delete flag on the last handle of a file whose
    /// delete is pending, and the times to set when it was written), then Close.
    pub fn close(&self, mut h: Handle) {
        let mut nodes = self.nodes.borrow_mut();
        let node = nodes.get_mut(&h.node).expect("node");
        if h.delete_on_close {
            node.delete_pending = true;
        }
        node.opens -= 1;
        let last = node.opens == 0;
        let delete = last && node.delete_pending;
        if last {
            nodes.remove(&h.node);
        }
        drop(nodes);
        let mut flags = if delete { CLEANUP_DELETE } else { 0 };
        if h.modified {
            flags |= CLEANUP_SET_ARCHIVE_BIT | CLEANUP_SET_LAST_WRITE_TIME;
        }
        let name = wide(&h.name);
        self.fs.cleanup(h.ctx(), Some(&name), flags);
        self.fs.close(h.ctx.take().unwrap());
    }

    /// SetFileInformationByHandle(FileDispositionInfo): fsop.c refuses a read-only file,
    /// the callback says whether the entry may go, and the FSD marks the file.
    pub fn set_delete(&self, h: &Handle, delete: bool) -> Result<(), Status> {
        self.set_disposition_ex(h, u32::from(delete))
    }

    /// NtSetInformationFile(FileDispositionInformationEx) with FILE_DISPOSITION_* flags:
    /// DELETE (1), POSIX_SEMANTICS (2), IGNORE_READONLY_ATTRIBUTE (0x10). This volume does
    /// not offer POSIX semantics (SupportsPosixUnlinkRename), so the FSD takes 2 as 0.
    pub fn set_disposition_ex(&self, h: &Handle, flags: u32) -> Result<(), Status> {
        let delete = flags & 1 != 0;
        if flags & 0x11 == 1 {
            let mut fi = FileInfo::default();
            status(self.fs.get_file_info(h.ctx(), &mut fi))?;
            if fi.file_attributes & READONLY != 0 {
                return Err(STATUS_CANNOT_DELETE);
            }
        }
        status(self.fs.set_delete(h.ctx(), &wide(&h.name), delete))?;
        if let Some(n) = self.nodes.borrow_mut().get_mut(&h.node) {
            n.delete_pending = delete;
        }
        Ok(())
    }

    /// Whether the file of this handle has a delete pending (the FSD's answer to
    /// FileStandardInformation's DeletePending).
    pub fn delete_pending(&self, h: &Handle) -> bool {
        self.nodes
            .borrow()
            .get(&h.node)
            .is_some_and(|n| n.delete_pending)
    }

    /// SetFileInformationByHandle(FileRenameInfo), after the FSD's own checks: no handle may
    /// be open below a folder being renamed, nor on a file being replaced
    /// (STATUS_ACCESS_DENIED both).
    pub fn rename(&self, h: &Handle, new_path: &str, replace: bool) -> Result<(), Status> {
        let upper = |s: &str| s.to_uppercase();
        let from = upper(&self.node_name(h));
        let below = format!("{from}\\");
        let target = upper(new_path);
        for (id, n) in self.nodes.borrow().iter() {
            if *id == h.node {
                continue;
            }
            let name = upper(&n.name);
            if (h.ctx().is_dir() && name.starts_with(&below)) || (replace && name == target) {
                return Err(STATUS_ACCESS_DENIED);
            }
        }
        status(
            self.fs
                .rename(h.ctx(), &wide(&h.name), &wide(new_path), replace),
        )?;
        // The FSD renames its nodes: the file's and those below it.
        let old = self.node_name(h);
        for n in self.nodes.borrow_mut().values_mut() {
            if upper(&n.name) == upper(&old) {
                n.name = new_path.to_owned();
            } else if let Some(rest) = upper(&n.name).strip_prefix(&below) {
                n.name = format!("{new_path}\\{}", &n.name[n.name.len() - rest.len()..]);
            }
        }
        Ok(())
    }

    fn node_name(&self, h: &Handle) -> String {
        self.nodes.borrow()[&h.node].name.clone()
    }

    pub fn write(&self, h: &mut Handle, data: &[u8], offset: u64) -> Result<u32, Status> {
        let mut fi = FileInfo::default();
        let n = status(self.fs.write(h.ctx(), data, offset, false, false, &mut fi))?;
        h.info = fi;
        h.modified = true;
        Ok(n)
    }

    /// A write with FILE_APPEND_DATA only (or at offset -1): at the end, wherever that is now.
    pub fn append(&self, h: &mut Handle, data: &[u8]) -> Result<u32, Status> {
        let mut fi = FileInfo::default();
        let n = status(self.fs.write(h.ctx(), data, 0, true, false, &mut fi))?;
        h.info = fi;
        h.modified = true;
        Ok(n)
    }

    /// Paging I/O from the cache manager: it never extends the file.
    pub fn write_constrained(&self, h: &Handle, data: &[u8], offset: u64) -> Result<u32, Status> {
        let mut fi = FileInfo::default();
        status(self.fs.write(h.ctx(), data, offset, false, true, &mut fi))
    }

    pub fn read(&self, h: &Handle, len: usize, offset: u64) -> Result<Vec<u8>, Status> {
        let mut buf = vec![0u8; len];
        let n = status(self.fs.read(h.ctx(), &mut buf, offset))?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    pub fn info(&self, h: &Handle) -> Result<FileInfo, Status> {
        let mut fi = FileInfo::default();
        status(self.fs.get_file_info(h.ctx(), &mut fi))?;
        Ok(fi)
    }

    /// SetFileInformationByHandle(FileBasicInfo): times are creation, last access, last
    /// write, change (0: unchanged). The FSD passes attributes 0 as "unchanged", and drops
    /// FILE_ATTRIBUTE_NORMAL from others (so NORMAL alone clears them).
    pub fn set_basic_info(
        &self,
        h: &Handle,
        attributes: u32,
        times: [u64; 4],
    ) -> Result<FileInfo, Status> {
        let attributes = match attributes {
            0 => u32::MAX,
            a => a & !NORMAL,
        };
        let mut fi = FileInfo::default();
        status(self.fs.set_basic_info(
            h.ctx(),
            attributes,
            times[0],
            times[1],
            times[2],
            times[3],
            &mut fi,
        ))?;
        Ok(fi)
    }

    pub fn set_file_size(&self, h: &mut Handle, size: u64, allocation: bool) -> Result<(), Status> {
        let mut fi = FileInfo::default();
        status(self.fs.set_file_size(h.ctx(), size, allocation, &mut fi))?;
        h.info = fi;
        h.modified = true;
        Ok(())
    }

    /// FlushFileBuffers; `None` is the volume's flush.
    pub fn flush_buffers(&self, h: Option<&Handle>) -> Result<FileInfo, Status> {
        let mut fi = FileInfo::default();
        status(self.fs.flush(h.map(Handle::ctx), &mut fi))?;
        Ok(fi)
    }

    /// GetSecurityInfo: the descriptor's bytes, asked as the FSD asks (size first).
    pub fn get_security(&self, h: &Handle) -> Result<Vec<u8>, Status> {
        let size = status(self.fs.get_security(h.ctx(), None))? as usize;
        let mut buf = vec![0u8; size];
        status(self.fs.get_security(h.ctx(), Some(unsafe_bytes(&mut buf))))?;
        Ok(buf)
    }

    /// SetSecurityInfo with a descriptor of `sd`'s bytes.
    pub fn set_security(&self, h: &Handle, info: u32, sd: &mut [u8]) -> Result<(), Status> {
        // winfsp's ModificationDescriptor has no public constructor; it is
        // `#[repr(transparent)]` over PSECURITY_DESCRIPTOR, so this transmute is what winfsp's
        // own dispatcher does by construction, a layout the language guarantees (and the
        // assert below checks, for the version pinned in Cargo.toml).
        const _: () = assert!(
            std::mem::size_of::<winfsp::filesystem::ModificationDescriptor>()
                == std::mem::size_of::<winfsp_sys::PSECURITY_DESCRIPTOR>()
        );
        let ptr: winfsp_sys::PSECURITY_DESCRIPTOR = sd.as_mut_ptr().cast();
        // SAFETY: repr(transparent) over this pointer type; `sd` outlives the call.
        let md: winfsp::filesystem::ModificationDescriptor = unsafe { std::mem::transmute(ptr) };
        status(self.fs.set_security(h.ctx(), info, md))
    }

    pub fn volume_info(&self) -> (u64, u64, String) {
        let mut raw = FSP_FSCTL_VOLUME_INFO::default();
        // SAFETY: winfsp asserts that VolumeInfo has FSP_FSCTL_VOLUME_INFO's layout.
        let vi = unsafe { &mut *(&mut raw as *mut FSP_FSCTL_VOLUME_INFO).cast::<VolumeInfo>() };
        self.fs.get_volume_info(vi).expect("volume info");
        let label =
            String::from_utf16(&raw.VolumeLabel[..raw.VolumeLabelLength as usize / 2]).unwrap();
        (raw.TotalSize, raw.FreeSize, label)
    }

    /// GetFileAttributesW.
    pub fn get_file_attributes(&self, path: &str) -> Result<u32, Status> {
        let h = self.nt_create(path, FILE_READ_ATTRIBUTES, FILE_OPEN, 0, 0)?;
        let a = h.info.file_attributes;
        self.close(h);
        Ok(a)
    }

    /// SetFileAttributesW.
    pub fn set_file_attributes(&self, path: &str, attributes: u32) -> Result<(), Status> {
        let h = self.nt_create(path, FILE_WRITE_ATTRIBUTES, FILE_OPEN, 0, 0)?;
        let r = self.set_basic_info(&h, attributes, [0; 4]).map(|_| ());
        self.close(h);
        r
    }

    /// CreateDirectoryW.
    pub fn create_directory(&self, path: &str) -> Result<(), Status> {
        let h = self.nt_create(path, READ, FILE_CREATE, FILE_DIRECTORY_FILE, 0)?;
        self.close(h);
        Ok(())
    }

    /// DeleteFileW: open for DELETE, mark, close.
    pub fn delete_file(&self, path: &str) -> Result<(), Status> {
        let h = self.nt_create(path, DELETE, FILE_OPEN, FILE_NON_DIRECTORY_FILE, 0)?;
        let r = self.set_delete(&h, true);
        self.close(h);
        r
    }

    /// RemoveDirectoryW.
    pub fn remove_directory(&self, path: &str) -> Result<(), Status> {
        let h = self.nt_create(path, DELETE, FILE_OPEN, FILE_DIRECTORY_FILE, 0)?;
        let r = self.set_delete(&h, true);
        self.close(h);
        r
    }

    /// MoveFileExW (with or without MOVEFILE_REPLACE_EXISTING).
    pub fn move_file(&self, from: &str, to: &str, replace: bool) -> Result<(), Status> {
        let h = self.nt_create(from, DELETE, FILE_OPEN, 0, 0)?;
        let r = self.rename(&h, to, replace);
        self.close(h);
        r
    }

    /// A whole file's content (opened, read, closed).
    pub fn read_all(&self, path: &str) -> Result<Vec<u8>, Status> {
        let h = self.create_file(path, READ, FILE_OPEN, 0)?;
        let size = h.info.file_size as usize;
        let r = if size == 0 {
            Ok(Vec::new())
        } else {
            self.read(&h, size, 0)
        };
        self.close(h);
        r
    }

    /// A whole file written (created or overwritten), then closed.
    pub fn write_all(&self, path: &str, data: &[u8]) -> Result<(), Status> {
        let mut h = self.create_file(path, READ | WRITE, FILE_OVERWRITE_IF, 0)?;
        let r = self.write(&mut h, data, 0).map(|_| ());
        self.close(h);
        r
    }
}

pub(crate) fn unsafe_bytes(v: &mut [u8]) -> &mut [c_void] {
    // SAFETY: c_void slices are how winfsp passes descriptor buffers; same bytes, same length.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) }
}

fn bytes_as_void(v: &[u8]) -> &[c_void] {
    // SAFETY: as above, read-only.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), v.len()) }
}
