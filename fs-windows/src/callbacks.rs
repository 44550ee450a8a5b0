//! WinFsp's callbacks: each converts names and answers, and passes through to `NtFs`.
//!
//! [`DriveFs`] is public so that the Wine tests (`tests/dispatch`) can drive it as WinFsp's
//! dispatcher does, through the same trait methods, over a real engine.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use fs_core::nt::{NtFs, NtHandle, NtInfo};
use tracing::debug_span;
use windows::core::HSTRING;
use windows::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
use winfsp::filesystem::{
    DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext, ModificationDescriptor,
    OpenFileInfo, VolumeInfo, WideNameInfo,
};
use winfsp::{FspError, U16CStr};
use winfsp_sys::{FILE_ACCESS_RIGHTS, FILE_FLAGS_AND_ATTRIBUTES};

/// An open handle (WinFsp's file context): the engine's.
pub struct Context {
    h: NtHandle,
}

impl Context {
    pub fn is_dir(&self) -> bool {
        self.h.is_dir()
    }
}

/// The drive's file system, as WinFsp calls it.
pub struct DriveFs {
    nt: NtFs,
    sd: Vec<u8>,
    cache: PathBuf,
}

fn fail(status: i32) -> FspError {
    FspError::NTSTATUS(status)
}

fn name(s: &U16CStr) -> winfsp::Result<String> {
    s.to_string()
        .map_err(|_| fail(fs_core::nt::status::STATUS_OBJECT_NAME_INVALID))
}

fn copy(from: &NtInfo, to: &mut FileInfo) {
    to.file_attributes = from.attributes;
    to.reparse_tag = 0;
    to.file_size = from.file_size;
    to.allocation_size = from.allocation_size;
    to.creation_time = from.creation_time;
    to.last_access_time = from.last_access_time;
    to.last_write_time = from.last_write_time;
    to.change_time = from.change_time;
    to.index_number = from.index_number;
    to.hard_links = 0;
    to.ea_size = 0;
}

fn opened(
    r: Result<(NtHandle, NtInfo, String), i32>,
    file_info: &mut OpenFileInfo,
) -> winfsp::Result<Context> {
    let (h, info, normalized) = r.map_err(fail)?;
    copy(&info, file_info.as_mut());
    let wide: Vec<u16> = normalized.encode_utf16().collect();
    file_info.set_normalized_name(&wide, None);
    Ok(Context { h })
}

impl DriveFs {
    /// `nt` served as a drive; `cache` is the folder whose disk's free space the volume shows.
    pub fn new(nt: NtFs, cache: &Path) -> DriveFs {
        DriveFs {
            nt,
            sd: crate::drive::security_descriptor(),
            cache: cache.to_path_buf(),
        }
    }

    pub fn nt(&self) -> &NtFs {
        &self.nt
    }

    /// The security descriptor every entry shows (self-relative, as WinFsp wants it).
    pub fn security_descriptor(&self) -> &[u8] {
        &self.sd
    }

    fn give_descriptor(&self, out: Option<&mut [c_void]>) {
        if let Some(buf) = out {
            if buf.len() >= self.sd.len() {
                // SAFETY: buf has room for the descriptor's bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.sd.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        self.sd.len(),
                    )
                };
            }
        }
    }

    /// A listing from after `marker` (the last name the driver was given; none: from the
    /// start), as many entries as fit, then the end mark if it fits too. What did not fit is
    /// asked for again from the last name given. `read_directory` is this with WinFsp's marker:
    /// its `DirMarker` has no public constructor, so the Wine tests call this with theirs.
    pub fn read_dir(
        &self,
        context: &Context,
        marker: Option<&U16CStr>,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        let marker = marker.map(name).transpose()?;
        let _span = debug_span!("read_dir", marker = marker.as_deref()).entered();
        let mut cursor = 0u32;
        for (n, info) in self
            .nt
            .list_after(&context.h, marker.as_deref())
            .map_err(fail)?
        {
            let mut di: DirInfo = DirInfo::new();
            di.set_name(&n)?;
            copy(&info, di.file_info_mut());
            // FspFileSystemAddDirInfo, in WinFsp's DLL: false when the entry does not fit.
            if !di.append_to_buffer(buffer, &mut cursor) {
                return Ok(cursor);
            }
        }
        DirInfo::<255>::finalize_buffer(buffer, &mut cursor);
        Ok(cursor)
    }
}

impl FileSystemContext for DriveFs {
    type FileContext = Context;

    fn get_security_by_name(
        &self,
        file_name: &U16CStr,
        security_descriptor: Option<&mut [c_void]>,
        _reparse_point_resolver: impl FnOnce(&U16CStr) -> Option<FileSecurity>,
    ) -> winfsp::Result<FileSecurity> {
        let attributes = self
            .nt
            .attributes_by_name(&name(file_name)?)
            .map_err(fail)?;
        self.give_descriptor(security_descriptor);
        Ok(FileSecurity {
            reparse: false,
            sz_security_descriptor: self.sd.len() as u64,
            attributes,
        })
    }

    fn open(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        _granted_access: FILE_ACCESS_RIGHTS,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Context> {
        opened(self.nt.open(&name(file_name)?, create_options), file_info)
    }

    fn close(&self, context: Context) {
        self.nt.close(context.h);
    }

    fn create(
        &self,
        file_name: &U16CStr,
        create_options: u32,
        _granted_access: FILE_ACCESS_RIGHTS,
        file_attributes: FILE_FLAGS_AND_ATTRIBUTES,
        _security_descriptor: Option<&[c_void]>,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        _extra_buffer_is_reparse_point: bool,
        file_info: &mut OpenFileInfo,
    ) -> winfsp::Result<Context> {
        opened(
            self.nt
                .create(&name(file_name)?, create_options, file_attributes),
            file_info,
        )
    }

    fn cleanup(&self, context: &Context, _file_name: Option<&U16CStr>, flags: u32) {
        self.nt.cleanup(&context.h, flags);
    }

    fn flush(&self, context: Option<&Context>, file_info: &mut FileInfo) -> winfsp::Result<()> {
        if let Some(c) = context {
            copy(&self.nt.flush(&c.h).map_err(fail)?, file_info);
        }
        Ok(())
    }

    fn get_file_info(&self, context: &Context, file_info: &mut FileInfo) -> winfsp::Result<()> {
        copy(&self.nt.info(&context.h).map_err(fail)?, file_info);
        Ok(())
    }

    fn get_security(
        &self,
        _context: &Context,
        security_descriptor: Option<&mut [c_void]>,
    ) -> winfsp::Result<u64> {
        self.give_descriptor(security_descriptor);
        Ok(self.sd.len() as u64)
    }

    fn set_security(
        &self,
        _context: &Context,
        _security_information: u32,
        _modification_descriptor: ModificationDescriptor,
    ) -> winfsp::Result<()> {
        // No ACLs to keep: accepted and not kept, as on a FAT drive.
        Ok(())
    }

    fn overwrite(
        &self,
        context: &Context,
        file_attributes: FILE_FLAGS_AND_ATTRIBUTES,
        replace_file_attributes: bool,
        _allocation_size: u64,
        _extra_buffer: Option<&[u8]>,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .overwrite(&context.h, file_attributes, replace_file_attributes)
            .map_err(fail)?;
        copy(&info, file_info);
        Ok(())
    }

    fn read_directory(
        &self,
        context: &Context,
        _pattern: Option<&U16CStr>,
        marker: DirMarker,
        buffer: &mut [u8],
    ) -> winfsp::Result<u32> {
        self.read_dir(context, marker.inner_as_cstr(), buffer)
    }

    fn rename(
        &self,
        context: &Context,
        _file_name: &U16CStr,
        new_file_name: &U16CStr,
        replace_if_exists: bool,
    ) -> winfsp::Result<()> {
        self.nt
            .rename(&context.h, &name(new_file_name)?, replace_if_exists)
            .map_err(fail)
    }

    fn set_basic_info(
        &self,
        context: &Context,
        file_attributes: u32,
        _creation_time: u64,
        last_access_time: u64,
        last_write_time: u64,
        _last_change_time: u64,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .set_basic_info(
                &context.h,
                file_attributes,
                last_access_time,
                last_write_time,
            )
            .map_err(fail)?;
        copy(&info, file_info);
        Ok(())
    }

    fn set_delete(
        &self,
        context: &Context,
        _file_name: &U16CStr,
        delete_file: bool,
    ) -> winfsp::Result<()> {
        if delete_file {
            self.nt.can_delete(&context.h).map_err(fail)?;
        }
        Ok(())
    }

    fn set_file_size(
        &self,
        context: &Context,
        new_size: u64,
        set_allocation_size: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<()> {
        let info = self
            .nt
            .set_file_size(&context.h, new_size, set_allocation_size)
            .map_err(fail)?;
        copy(&info, file_info);
        Ok(())
    }

    fn read(&self, context: &Context, buffer: &mut [u8], offset: u64) -> winfsp::Result<u32> {
        self.nt.read(&context.h, buffer, offset).map_err(fail)
    }

    fn write(
        &self,
        context: &Context,
        buffer: &[u8],
        offset: u64,
        write_to_eof: bool,
        constrained_io: bool,
        file_info: &mut FileInfo,
    ) -> winfsp::Result<u32> {
        let (n, info) = self
            .nt
            .write(&context.h, buffer, offset, write_to_eof, constrained_io)
            .map_err(fail)?;
        copy(&info, file_info);
        Ok(n)
    }

    fn get_volume_info(&self, out_volume_info: &mut VolumeInfo) -> winfsp::Result<()> {
        let (mut free, mut total) = (0u64, 0u64);
        let dir = HSTRING::from(self.cache.as_os_str());
        // SAFETY: out-pointers to two u64s.
        let _ = unsafe { GetDiskFreeSpaceExW(&dir, Some(&mut free), Some(&mut total), None) };
        out_volume_info.total_size = total;
        out_volume_info.free_size = free;
        out_volume_info.set_volume_label("sipfs");
        Ok(())
    }
}
