//! The WinFsp glue: each call converts names and answers, and passes through to `NtFs`.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use fs_core::nt::{NtFs, NtHandle, NtInfo};
use tracing::info;
use windows::core::{w, HSTRING, PCWSTR};
use windows::Win32::Foundation::{LocalFree, HLOCAL};
use windows::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows::Win32::Security::{GetSecurityDescriptorLength, PSECURITY_DESCRIPTOR};
use windows::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
use windows::Win32::System::LibraryLoader::LoadLibraryW;
use windows::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
use winfsp::filesystem::{
    DirBuffer, DirInfo, DirMarker, FileInfo, FileSecurity, FileSystemContext,
    ModificationDescriptor, OpenFileInfo, VolumeInfo, WideNameInfo,
};
use winfsp::host::{FileSystemHost, MountPoint, VolumeParams};
use winfsp::{FspError, FspInit, U16CStr};
use winfsp_sys::{FILE_ACCESS_RIGHTS, FILE_FLAGS_AND_ATTRIBUTES};

/// Why a drive could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("WinFsp is not installed (get it from {}, then run sipfs again); without it, `sipfs mirror` keeps a plain folder instead", crate::WINFSP_DOWNLOAD)]
    NoWinFsp,
    #[error("WinFsp did not start: error {0:#010x}")]
    Init(i32),
    #[error("could not mount on {at}: error {status:#010x} (a drive letter must be free; a folder must not exist yet)")]
    Mount { at: String, status: i32 },
}

fn ntstatus(e: FspError) -> i32 {
    e.to_ntstatus()
}

/// Every entry shows this one permissive descriptor (memfs's): the share has no ACLs to keep,
/// and a program that asks must still be told something valid. Well under 1 KiB.
const SDDL: PCWSTR = w!("O:BAG:BAD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;WD)");

fn security_descriptor() -> Vec<u8> {
    let mut psd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: a constant SDDL string; the descriptor is copied out and freed.
    unsafe {
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            SDDL,
            SDDL_REVISION_1,
            &mut psd,
            None,
        )
        .is_err()
        {
            return Vec::new();
        }
        let len = GetSecurityDescriptorLength(psd) as usize;
        let bytes = std::slice::from_raw_parts(psd.0 as *const u8, len).to_vec();
        let _ = LocalFree(Some(HLOCAL(psd.0)));
        bytes
    }
}

/// WinFsp's install folder, from the registry its installer writes.
pub fn winfsp_dir() -> Option<PathBuf> {
    let mut buf = [0u16; 520];
    let mut len = (buf.len() * 2) as u32;
    for key in [w!("SOFTWARE\\WOW6432Node\\WinFsp"), w!("SOFTWARE\\WinFsp")] {
        // SAFETY: buf and len describe a writable buffer of len bytes.
        let r = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key,
                w!("InstallDir"),
                RRF_RT_REG_SZ,
                None,
                Some(buf.as_mut_ptr().cast()),
                Some(&mut len),
            )
        };
        if r.is_ok() {
            let n = (len as usize / 2).saturating_sub(1);
            let dir = PathBuf::from(String::from_utf16_lossy(&buf[..n]));
            if dir.join("bin").join("winfsp-x64.dll").is_file() {
                return Some(dir);
            }
        }
    }
    None
}

/// Loads WinFsp's DLL from its install folder, so that the delay-loaded imports find it.
fn load_winfsp() -> Result<FspInit, DriveError> {
    let dir = winfsp_dir().ok_or(DriveError::NoWinFsp)?;
    let dll = HSTRING::from(dir.join("bin").join("winfsp-x64.dll").as_os_str());
    // SAFETY: loading a DLL by its full path.
    unsafe { LoadLibraryW(&dll) }.map_err(|_| DriveError::NoWinFsp)?;
    winfsp::winfsp_init().map_err(|e| DriveError::Init(ntstatus(e)))
}

/// An open handle: the engine's, and WinFsp's listing buffer for folders.
pub struct Context {
    h: NtHandle,
    dir: DirBuffer,
}

struct WinFs {
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
    Ok(Context {
        h,
        dir: DirBuffer::new(),
    })
}

impl WinFs {
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
}

impl FileSystemContext for WinFs {
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
        if let Ok(lock) = context.dir.acquire(marker.is_none(), None) {
            for (n, info) in self.nt.list(&context.h).map_err(fail)? {
                let mut di: DirInfo = DirInfo::new();
                di.set_name(&n)?;
                copy(&info, di.file_info_mut());
                lock.write(&mut di)?;
            }
        }
        Ok(context.dir.read(marker, buffer))
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

/// A mounted drive. `stop` unmounts it; the engine's last flush is the caller's.
pub struct Drive {
    host: FileSystemHost<WinFs>,
    _init: FspInit,
    pub mount_point: String,
}

impl Drive {
    /// Mounts `nt` at `at`: a drive letter (`S:`), `*` for the next free letter, or a folder
    /// that does not exist yet (WinFsp creates it as a mount point).
    pub fn mount(nt: NtFs, cache: &Path, at: &str) -> Result<Drive, DriveError> {
        let init = load_winfsp()?;
        let mut vp = VolumeParams::new();
        vp.sector_size(4096)
            .sectors_per_allocation_unit(1)
            .max_component_length(255)
            .case_sensitive_search(false)
            .case_preserved_names(true)
            .unicode_on_disk(true)
            .persistent_acls(true)
            .reparse_points(false)
            .named_streams(false)
            .extended_attributes(false)
            .post_cleanup_when_modified_only(true)
            // The kernel may answer from its caches for a second, as FUSE's TTL: sipfs is the
            // only writer of its namespace between refreshes.
            .file_info_timeout(1000)
            // Programs run as administrator and Docker Desktop look for NTFS (winfsp#603).
            .filesystem_name("NTFS");
        let fs = WinFs {
            nt,
            sd: security_descriptor(),
            cache: cache.to_path_buf(),
        };
        // The host's calls answer with `windows` errors (an HRESULT built from the NTSTATUS).
        let status = |e: windows::core::Error| e.code().0;
        let mut host: FileSystemHost<WinFs> =
            FileSystemHost::new(vp, fs).map_err(|e| DriveError::Init(status(e)))?;
        let mounted = if at == "*" {
            host.mount(MountPoint::NextFreeDrive)
        } else {
            host.mount(at)
        };
        mounted.map_err(|e| DriveError::Mount {
            at: at.to_owned(),
            status: status(e),
        })?;
        host.start().map_err(|e| DriveError::Init(status(e)))?;
        info!(at, "drive mounted");
        Ok(Drive {
            host,
            _init: init,
            mount_point: at.to_owned(),
        })
    }

    /// Unmounts: programs see the drive go; open handles fail from now on.
    pub fn stop(mut self) {
        self.host.stop();
        self.host.unmount();
    }
}
