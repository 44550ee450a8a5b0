//! Windows file-system semantics over the engine, for the WinFsp drive.
//!
//! Everything the drive decides is here, as plain Rust on plain types, so it is built and
//! tested on every platform: `fs-windows` only passes WinFsp's calls in and copies the answers
//! out. What is Windows' and not POSIX's:
//! - the volume is case-insensitive and case-preserving over an engine (and a share) that is
//!   case-sensitive: a name opens the entry that matches it exactly, or else the first that
//!   differs only in case, and the on-disk case is handed back ([`names`]);
//! - opens are checked against `FILE_DIRECTORY_FILE` / `FILE_NON_DIRECTORY_FILE`; WinFsp itself
//!   turns a create disposition into `create`, `open` or `open` + `overwrite`;
//! - files are opened for reading, and become writable in the engine only at their first
//!   change: Excel and others open for writing what they only read, and an open for writing
//!   would count as a change to flush;
//! - a delete is asked (`can_delete`: a folder must be empty; WinFsp refuses read-only files) and
//!   done at the last handle's cleanup, which is also how `FILE_DELETE_ON_CLOSE` arrives;
//! - a rename onto an existing name needs `replace`, never replaces a folder, and a rename
//!   that changes only the case is an ordinary rename;
//! - times are FILETIMEs ([`time`]) and attributes are derived from the mode and name
//!   ([`attributes`]); errors are NTSTATUS codes ([`status`]).
//! - `\.sipfs\control` and `\.sipfs\status` work as on the FUSE mount (`control`).

pub mod attributes;
pub mod names;
pub mod status;
pub mod time;

use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{info_span, warn};

use crate::backing::EntryKind;
use crate::control::{self, FlushProgress, CONTROL_FILE, STATUS_FILE};
use crate::engine::{Attr, Engine, FileHandle, SetAttr};
use crate::error::FsError;
use crate::ignore_rules::CONTROL_DIR;
use crate::tree::{Ino, ROOT_INO};

use status::*;

/// NtCreateFile's `CreateOptions` bits that matter here.
pub const FILE_DIRECTORY_FILE: u32 = 0x1;
pub const FILE_NON_DIRECTORY_FILE: u32 = 0x40;
/// WinFsp's cleanup flags.
pub const CLEANUP_DELETE: u32 = 0x01;

/// Sizes are reported as whole clusters of this size.
pub const ALLOCATION_UNIT: u64 = 4096;

/// What Windows is told about an entry (WinFsp's `FileInfo`, field for field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NtInfo {
    pub attributes: u32,
    pub file_size: u64,
    pub allocation_size: u64,
    pub creation_time: u64,
    pub last_access_time: u64,
    pub last_write_time: u64,
    pub change_time: u64,
    pub index_number: u64,
}

/// What a handle is open on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Entry(Ino),
    ControlDir,
    Control,
    Status,
}

/// An open handle (WinFsp's file context).
#[derive(Debug)]
pub struct NtHandle {
    target: Target,
    kind: EntryKind,
    /// Files: the engine's handle, read-only until the first change through it.
    file: Mutex<Option<FileHandle>>,
    /// `.sipfs\status`: what it said when opened.
    status: Vec<u8>,
    /// Folders: the listing in progress, in listing order, taken when a listing starts (no
    /// marker) and resumed from by the requests after it. Without it each request would list
    /// and sort the whole folder again: a folder of n entries read in requests of k would
    /// cost n²/k look-ups (WinFsp's querydir_test, ported, took minutes).
    listing: Mutex<Vec<(ListingKey, String, NtInfo)>>,
}

impl NtHandle {
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// The drive's view of one engine.
pub struct NtFs {
    engine: Arc<Engine>,
    progress: Arc<FlushProgress>,
    mountpoint: String,
    started: u64,
}

type Res<T> = Result<T, NtStatus>;

fn err(e: FsError) -> NtStatus {
    status::of_error(&e)
}

impl NtFs {
    pub fn new(engine: Arc<Engine>, mountpoint: impl Into<String>) -> NtFs {
        NtFs {
            engine,
            progress: Arc::default(),
            mountpoint: mountpoint.into(),
            started: time::filetime(crate::engine::now_ns()),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The flush the control file runs, with its progress (the unmount's last flush uses it).
    pub fn progress(&self) -> &Arc<FlushProgress> {
        &self.progress
    }

    /// Finds `path` whatever the case of its names. Returns the target and the path with the
    /// case it has on disk (Windows form). A missing folder on the way is
    /// `STATUS_OBJECT_PATH_NOT_FOUND`, a missing last name `STATUS_OBJECT_NAME_NOT_FOUND`.
    fn resolve(&self, path: &str) -> Res<(Target, String)> {
        let parts = names::components(path)?;
        if let Some(first) = parts.first().filter(|p| names::same_name(p, CONTROL_DIR)) {
            let _ = first;
            return match parts.as_slice() {
                [_] => Ok((Target::ControlDir, format!("\\{CONTROL_DIR}"))),
                [_, f] if names::same_name(f, CONTROL_FILE) => {
                    Ok((Target::Control, format!("\\{CONTROL_DIR}\\{CONTROL_FILE}")))
                }
                [_, f] if names::same_name(f, STATUS_FILE) => {
                    Ok((Target::Status, format!("\\{CONTROL_DIR}\\{STATUS_FILE}")))
                }
                [_, _] => Err(STATUS_OBJECT_NAME_NOT_FOUND),
                _ => Err(STATUS_OBJECT_PATH_NOT_FOUND),
            };
        }
        let mut ino = ROOT_INO;
        let mut on_disk = String::new();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let missing = if last {
                STATUS_OBJECT_NAME_NOT_FOUND
            } else {
                STATUS_OBJECT_PATH_NOT_FOUND
            };
            let name = match self.engine.lookup(ino, part) {
                Ok(a) => {
                    ino = a.ino;
                    (*part).to_owned()
                }
                Err(FsError::NotFound(_)) => {
                    let entries = self.engine.readdir(ino).map_err(err)?;
                    let Some(found) = names::pick(entries.iter().map(|e| e.name.as_str()), part)
                    else {
                        return Err(missing);
                    };
                    let found = found.to_owned();
                    ino = entries
                        .iter()
                        .find(|e| e.name == found)
                        .expect("listed")
                        .ino;
                    found
                }
                Err(FsError::NotDir(_)) => return Err(STATUS_OBJECT_PATH_NOT_FOUND),
                Err(e) => return Err(err(e)),
            };
            on_disk.push('\\');
            on_disk.push_str(&name);
        }
        if on_disk.is_empty() {
            on_disk.push('\\');
        }
        Ok((Target::Entry(ino), on_disk))
    }

    /// The attributes of `path`, for WinFsp's access check before an open.
    pub fn attributes_by_name(&self, path: &str) -> Res<u32> {
        let (target, normalized) = self.resolve(path)?;
        Ok(self.info_of(target, &normalized)?.attributes)
    }

    fn info_of(&self, target: Target, path: &str) -> Res<NtInfo> {
        let (attr, name) = match target {
            Target::Entry(ino) => (self.engine.getattr(ino).map_err(err)?, last_name(path)),
            Target::ControlDir => {
                return Ok(self.control_info(attributes::DIRECTORY | attributes::HIDDEN, 0))
            }
            Target::Control => return Ok(self.control_info(attributes::ARCHIVE, 0)),
            Target::Status => return Ok(self.control_info(attributes::READONLY, 0)),
        };
        Ok(info_of_attr(&attr, name))
    }

    fn control_info(&self, attributes: u32, size: u64) -> NtInfo {
        NtInfo {
            attributes: attributes | attributes::SYSTEM,
            file_size: size,
            allocation_size: size.div_ceil(ALLOCATION_UNIT) * ALLOCATION_UNIT,
            creation_time: self.started,
            last_access_time: self.started,
            last_write_time: self.started,
            change_time: self.started,
            index_number: 0,
        }
    }

    /// Opens an existing entry. Returns the handle, what to tell Windows about it, and its
    /// path with the case it has on disk.
    pub fn open(&self, path: &str, create_options: u32) -> Res<(NtHandle, NtInfo, String)> {
        let _span = info_span!("nt_open", path).entered();
        let (target, normalized) = self.resolve(path)?;
        let mut info = self.info_of(target, &normalized)?;
        let kind = if info.attributes & attributes::DIRECTORY != 0 {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        if create_options & FILE_DIRECTORY_FILE != 0 && kind != EntryKind::Dir {
            return Err(STATUS_NOT_A_DIRECTORY);
        }
        if create_options & FILE_NON_DIRECTORY_FILE != 0 && kind == EntryKind::Dir {
            return Err(STATUS_FILE_IS_A_DIRECTORY);
        }
        let file = match target {
            Target::Entry(ino) if kind == EntryKind::File => {
                Some(self.engine.open_file(ino, false, false).map_err(err)?)
            }
            _ => None,
        };
        let status = if target == Target::Status {
            let s = control::status_json(&self.engine, &self.progress, self.extra());
            info.file_size = s.len() as u64;
            s
        } else {
            Vec::new()
        };
        let h = NtHandle {
            target,
            kind,
            file: Mutex::new(file),
            status,
            listing: Mutex::default(),
        };
        Ok((h, info, normalized))
    }

    fn extra(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("mountpoint".into(), self.mountpoint.clone().into());
        m.insert("mode".into(), "drive".into());
        m
    }

    /// Creates a file or (with `FILE_DIRECTORY_FILE`) a folder that does not exist yet.
    pub fn create(
        &self,
        path: &str,
        create_options: u32,
        file_attributes: u32,
    ) -> Res<(NtHandle, NtInfo, String)> {
        let _span = info_span!("nt_create", path).entered();
        let parts = names::components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(STATUS_OBJECT_NAME_COLLISION);
        };
        let parent_path = format!("\\{}", dirs.join("\\"));
        let (parent, parent_disk) = match self.resolve(&parent_path) {
            Ok((Target::Entry(p), d)) => (p, d),
            Ok(_) => return Err(STATUS_ACCESS_DENIED),
            Err(STATUS_OBJECT_NAME_NOT_FOUND) => return Err(STATUS_OBJECT_PATH_NOT_FOUND),
            Err(e) => return Err(e),
        };
        if dirs.is_empty() && names::same_name(name, CONTROL_DIR) {
            return Err(STATUS_OBJECT_NAME_COLLISION);
        }
        let siblings = self.engine.readdir(parent).map_err(err)?;
        if names::pick(siblings.iter().map(|e| e.name.as_str()), name).is_some() {
            return Err(STATUS_OBJECT_NAME_COLLISION);
        }
        let normalized = if parent_disk == "\\" {
            format!("\\{name}")
        } else {
            format!("{parent_disk}\\{name}")
        };
        let (attr, file, kind) = if create_options & FILE_DIRECTORY_FILE != 0 {
            let a = self.engine.mkdir(parent, name, 0o755).map_err(err)?;
            (a, None, EntryKind::Dir)
        } else {
            let mode = if file_attributes & attributes::READONLY != 0 {
                0o444
            } else {
                0o644
            };
            let (a, fh) = self.engine.create(parent, name, mode).map_err(err)?;
            (a, Some(fh), EntryKind::File)
        };
        let h = NtHandle {
            target: Target::Entry(attr.ino),
            kind,
            file: Mutex::new(file),
            status: Vec::new(),
            listing: Mutex::default(),
        };
        Ok((h, info_of_attr(&attr, name), normalized))
    }

    fn ino(h: &NtHandle) -> Res<Ino> {
        match h.target {
            Target::Entry(i) => Ok(i),
            _ => Err(STATUS_ACCESS_DENIED),
        }
    }

    /// What Windows is told about an open handle (also after the entry was deleted).
    pub fn info(&self, h: &NtHandle) -> Res<NtInfo> {
        match h.target {
            Target::Entry(ino) => match self.engine.getattr(ino) {
                Ok(a) => {
                    let name = self.engine.path_of(ino).map(|p| p.name().to_owned());
                    Ok(info_of_attr(&a, name.as_deref().unwrap_or("")))
                }
                Err(FsError::StaleInode(_)) => {
                    let file = h.file.lock();
                    let fh = file.as_ref().ok_or(STATUS_FILE_DELETED)?;
                    Ok(info_of_attr(
                        &self.engine.getattr_handle(fh).map_err(err)?,
                        "",
                    ))
                }
                Err(e) => Err(err(e)),
            },
            Target::Status => Ok(self.control_info(attributes::READONLY, h.status.len() as u64)),
            t => self.info_of(t, ""),
        }
    }

    /// Makes the handle's engine handle writable (the first change through it).
    fn writable<'a>(
        &self,
        h: &'a NtHandle,
    ) -> Res<parking_lot::MutexGuard<'a, Option<FileHandle>>> {
        let ino = Self::ino(h)?;
        let mut file = h.file.lock();
        if !file.as_ref().is_some_and(FileHandle::is_writable) {
            let w = self.engine.open_file(ino, true, false).map_err(err)?;
            if let Some(old) = file.replace(w) {
                self.engine.release(old);
            }
        }
        Ok(file)
    }

    pub fn read(&self, h: &NtHandle, buf: &mut [u8], offset: u64) -> Res<u32> {
        let data = match h.target {
            Target::Status => {
                let start = (offset as usize).min(h.status.len());
                h.status[start..].iter().take(buf.len()).copied().collect()
            }
            Target::Entry(_) => {
                let file = h.file.lock();
                let fh = file.as_ref().ok_or(STATUS_INVALID_DEVICE_REQUEST)?;
                self.engine.read(fh, offset, buf.len()).map_err(err)?
            }
            // A mount's control file reads empty: the requester's wait loop ends at once.
            Target::Control => Vec::new(),
            Target::ControlDir => return Err(STATUS_INVALID_DEVICE_REQUEST),
        };
        if data.is_empty() && !buf.is_empty() {
            return Err(STATUS_END_OF_FILE);
        }
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len() as u32)
    }

    /// Writes `data` at `offset` (at the end with `write_to_eof`); `constrained` (paging I/O)
    /// never extends the file. A write to `\.sipfs\control` runs the command first.
    pub fn write(
        &self,
        h: &NtHandle,
        data: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained: bool,
    ) -> Res<(u32, NtInfo)> {
        if h.target == Target::Control {
            // WinFsp's own caches last a second (`file_info_timeout`): nothing to tell them.
            return match control::serve_write(&self.engine, &self.progress, data, &|_| {}) {
                Ok(true) => Ok((data.len() as u32, self.control_info(attributes::ARCHIVE, 0))),
                Ok(false) => Err(STATUS_IO_DEVICE_ERROR),
                Err(e) => {
                    warn!("{e}");
                    Err(STATUS_INVALID_PARAMETER)
                }
            };
        }
        let file = self.writable(h)?;
        let fh = file.as_ref().expect("writable");
        let size = self.engine.getattr_handle(fh).map_err(err)?.size;
        let offset = if write_to_eof { size } else { offset };
        let data = if constrained {
            let room = size.saturating_sub(offset) as usize;
            &data[..data.len().min(room)]
        } else {
            data
        };
        if !data.is_empty() {
            self.engine.write(fh, offset, data).map_err(err)?;
        }
        drop(file);
        Ok((data.len() as u32, self.info(h)?))
    }

    /// Truncates a file opened with an overwrite or supersede disposition, and sets its
    /// attributes (`replace`: exactly these; otherwise these are added).
    pub fn overwrite(&self, h: &NtHandle, file_attributes: u32, replace: bool) -> Res<NtInfo> {
        if h.target == Target::Control {
            // `echo flush > S:\.sipfs\control` truncates first: nothing to do.
            return self.info(h);
        }
        let ino = Self::ino(h)?;
        drop(self.writable(h)?);
        let attr = self.engine.getattr(ino).map_err(err)?;
        let wanted = if replace {
            file_attributes
        } else {
            file_attributes | attributes::of(&attr, "")
        };
        let mode = attributes::mode_for(attr.mode, attr.kind, wanted);
        self.engine
            .setattr(
                ino,
                SetAttr {
                    owner: None,
                    size: Some(0),
                    mode,
                    ..Default::default()
                },
            )
            .map_err(err)?;
        self.info(h)
    }

    /// Sets the file size, or with `allocation` the allocation size (which only ever cuts a
    /// file shorter: space is not reserved here).
    pub fn set_file_size(&self, h: &NtHandle, size: u64, allocation: bool) -> Res<NtInfo> {
        if h.target == Target::Control {
            return self.info(h);
        }
        let ino = Self::ino(h)?;
        let current = self.info(h)?.file_size;
        if allocation && size >= current {
            return self.info(h);
        }
        if size != current {
            drop(self.writable(h)?);
            self.engine
                .setattr(
                    ino,
                    SetAttr {
                        owner: None,
                        size: Some(size),
                        ..Default::default()
                    },
                )
                .map_err(err)?;
        }
        self.info(h)
    }

    /// Attributes and times a program sets (`SetFileInformation`, `SetFileTime`). Creation and
    /// change times are not kept: the share has no place for them.
    pub fn set_basic_info(
        &self,
        h: &NtHandle,
        file_attributes: u32,
        last_access_time: u64,
        last_write_time: u64,
    ) -> Res<NtInfo> {
        let Target::Entry(ino) = h.target else {
            return self.info(h);
        };
        let attr = self.engine.getattr(ino).map_err(err)?;
        let req = SetAttr {
            owner: None,
            mode: attributes::mode_for(attr.mode, attr.kind, file_attributes),
            mtime_ns: time::requested(last_write_time),
            atime_ns: time::requested(last_access_time),
            size: None,
        };
        if req.mode.is_some() || req.mtime_ns.is_some() || req.atime_ns.is_some() {
            self.engine.setattr(ino, req).map_err(err)?;
        }
        self.info(h)
    }

    /// Whether the entry may be deleted (WinFsp deletes at cleanup): a folder must be empty.
    /// A read-only file is WinFsp's to refuse (its DLL answers STATUS_CANNOT_DELETE before
    /// asking here), unless the program asked to ignore the attribute
    /// (FILE_DISPOSITION_IGNORE_READONLY_ATTRIBUTE): refusing it here too would make that
    /// flag fail (WinFsp's delete_ex_test).
    pub fn can_delete(&self, h: &NtHandle) -> Res<()> {
        let ino = Self::ino(h)?;
        if ino == ROOT_INO {
            return Err(STATUS_ACCESS_DENIED);
        }
        if h.is_dir() && !self.engine.readdir(ino).map_err(err)?.is_empty() {
            return Err(STATUS_DIRECTORY_NOT_EMPTY);
        }
        Ok(())
    }

    /// The last cleanup of a handle: with `CLEANUP_DELETE` (a delete asked earlier, or
    /// `FILE_DELETE_ON_CLOSE`), the entry goes now.
    pub fn cleanup(&self, h: &NtHandle, flags: u32) {
        if flags & CLEANUP_DELETE == 0 {
            return;
        }
        let Target::Entry(ino) = h.target else { return };
        let _span = info_span!("nt_delete", ino).entered();
        if let Some(fh) = h.file.lock().take() {
            self.engine.release(fh);
        }
        let Some(path) = self.engine.path_of(ino) else {
            return;
        };
        let Some(parent) = path.parent().and_then(|p| self.engine.resolve(&p).ok()) else {
            return;
        };
        let r = if h.is_dir() {
            self.engine.rmdir(parent, path.name())
        } else {
            self.engine.unlink(parent, path.name())
        };
        if let Err(e) = r {
            warn!(path = %path, error = %e, "could not delete at cleanup");
        }
    }

    /// The handle is closed: its engine handle goes.
    pub fn close(&self, h: NtHandle) {
        if let Some(fh) = h.file.into_inner() {
            self.engine.release(fh);
        }
    }

    /// Renames the entry open in `h` to `new_path`.
    pub fn rename(&self, h: &NtHandle, new_path: &str, replace: bool) -> Res<()> {
        let ino = Self::ino(h)?;
        let _span = info_span!("nt_rename", ino, to = new_path).entered();
        let from = self.engine.path_of(ino).ok_or(STATUS_FILE_DELETED)?;
        let from_parent = from
            .parent()
            .map(|p| self.engine.resolve(&p))
            .transpose()
            .map_err(err)?
            .ok_or(STATUS_ACCESS_DENIED)?;
        let parts = names::components(new_path)?;
        let Some((new_name, dirs)) = parts.split_last() else {
            return Err(STATUS_ACCESS_DENIED);
        };
        // A folder missing on the way is the path's fault, as for a create (NTFS's answer).
        let to_parent = match self.resolve(&format!("\\{}", dirs.join("\\"))) {
            Ok((Target::Entry(p), _)) => p,
            Ok(_) => return Err(STATUS_ACCESS_DENIED),
            Err(STATUS_OBJECT_NAME_NOT_FOUND) => return Err(STATUS_OBJECT_PATH_NOT_FOUND),
            Err(e) => return Err(e),
        };
        let siblings = self.engine.readdir(to_parent).map_err(err)?;
        let existing = names::pick(siblings.iter().map(|e| e.name.as_str()), new_name)
            .and_then(|n| siblings.iter().find(|e| e.name == n));
        if let Some(e) = existing.filter(|e| e.ino != ino) {
            if !replace {
                return Err(STATUS_OBJECT_NAME_COLLISION);
            }
            if e.kind == EntryKind::Dir {
                return Err(STATUS_ACCESS_DENIED);
            }
            if e.name != *new_name {
                // The name there differs in case: it goes, and ours takes the case asked for.
                self.engine.unlink(to_parent, &e.name).map_err(err)?;
            }
        }
        self.engine
            .rename(from_parent, from.name(), to_parent, new_name, false)
            .map_err(err)
    }

    /// A folder's entries for a listing, `.` and `..` first (but at the root), by name.
    pub fn list(&self, h: &NtHandle) -> Res<Vec<(String, NtInfo)>> {
        let mut out = Vec::new();
        match h.target {
            Target::ControlDir => {
                out.push((".".into(), self.control_info(attributes::DIRECTORY, 0)));
                out.push(("..".into(), self.info_of(Target::Entry(ROOT_INO), "\\")?));
                out.push((
                    CONTROL_FILE.into(),
                    self.control_info(attributes::ARCHIVE, 0),
                ));
                out.push((
                    STATUS_FILE.into(),
                    self.control_info(attributes::READONLY, 0),
                ));
            }
            Target::Entry(ino) => {
                let here = self.info(h)?;
                if ino != ROOT_INO {
                    out.push((".".into(), here));
                    let parent = self
                        .engine
                        .path_of(ino)
                        .and_then(|p| p.parent())
                        .and_then(|p| self.engine.resolve(&p).ok())
                        .unwrap_or(ROOT_INO);
                    out.push(("..".into(), self.info_of(Target::Entry(parent), "")?));
                }
                for e in self.engine.readdir(ino).map_err(err)? {
                    match self.engine.getattr(e.ino) {
                        Ok(a) => out.push((e.name.to_string(), info_of_attr(&a, &e.name))),
                        // Gone since the listing (a refresh): left out.
                        Err(FsError::StaleInode(_)) => {}
                        Err(x) => return Err(err(x)),
                    }
                }
            }
            _ => return Err(STATUS_NOT_A_DIRECTORY),
        }
        Ok(out)
    }

    /// A listing resumed after `marker`, the last name the driver was given (none: from the
    /// start, taking the folder's entries now): `.` and `..` first, then by name as NTFS
    /// orders them (case-insensitively; names that differ only in case, which the share can
    /// hold, by their exact case). The driver asks again from the last name that fitted its
    /// buffer; a marker that is not in the listing (a handle whose listing was not started)
    /// resumes from where it would be.
    pub fn list_after(&self, h: &NtHandle, marker: Option<&str>) -> Res<Vec<(String, NtInfo)>> {
        let mut listing = h.listing.lock();
        if marker.is_none() || listing.is_empty() {
            let mut all: Vec<_> = self
                .list(h)?
                .into_iter()
                .map(|(n, i)| (listing_key(&n), n, i))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            *listing = all;
        }
        let from = match marker {
            None => 0,
            Some(m) => {
                let key = listing_key(m);
                listing.partition_point(|e| e.0 <= key)
            }
        };
        Ok(listing[from..]
            .iter()
            .map(|(_, n, i)| (n.clone(), *i))
            .collect())
    }

    /// `FlushFileBuffers`: the file's data and the journal are durable (as `fsync`).
    pub fn flush(&self, h: &NtHandle) -> Res<NtInfo> {
        if let Some(fh) = h.file.lock().as_ref() {
            self.engine.fsync(fh, false).map_err(err)?;
        }
        self.info(h)
    }
}

/// Where a name comes in a listing: `.`, `..`, then upper-cased names, then exact case.
type ListingKey = (u8, String, String);

fn listing_key(name: &str) -> ListingKey {
    match name {
        "." => (0, String::new(), String::new()),
        ".." => (1, String::new(), String::new()),
        _ => (2, name.to_uppercase(), name.to_owned()),
    }
}

fn last_name(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or("")
}

/// What Windows is told about an entry with these attributes.
pub fn info_of_attr(a: &Attr, name: &str) -> NtInfo {
    let size = if a.kind == EntryKind::Dir { 0 } else { a.size };
    NtInfo {
        attributes: attributes::of(a, name),
        file_size: size,
        allocation_size: size.div_ceil(ALLOCATION_UNIT) * ALLOCATION_UNIT,
        // No creation time is kept: the modification time stands in, as Samba does.
        creation_time: time::filetime(a.mtime_ns),
        last_access_time: time::filetime(a.atime_ns),
        last_write_time: time::filetime(a.mtime_ns),
        change_time: time::filetime(a.ctime_ns),
        index_number: a.ino,
    }
}

#[cfg(test)]
mod tests;
