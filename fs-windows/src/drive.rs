//! Mounting: WinFsp's DLL, the volume's parameters, the host that runs the callbacks
//! (`callbacks`) on WinFsp's dispatcher threads.

use std::path::{Path, PathBuf};

use fs_core::nt::NtFs;
use tracing::info;
use windows::core::{w, HSTRING, PCWSTR};
use windows::Win32::Foundation::{LocalFree, HLOCAL};
use windows::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows::Win32::Security::{GetSecurityDescriptorLength, PSECURITY_DESCRIPTOR};
use windows::Win32::System::LibraryLoader::LoadLibraryW;
use windows::Win32::System::Registry::{RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ};
use winfsp::host::{FileSystemHost, MountPoint, VolumeParams};
use winfsp::{FspError, FspInit};

use crate::callbacks::DriveFs;

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

pub(crate) fn security_descriptor() -> Vec<u8> {
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
#[cfg_attr(not(target_env = "msvc"), allow(dead_code))]
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

/// A mounted drive. `stop` unmounts it; the engine's last flush is the caller's.
pub struct Drive {
    host: FileSystemHost<DriveFs>,
    _init: FspInit,
    pub mount_point: String,
}

impl Drive {
    /// Mounts `nt` at `at`: a drive letter (`S:`), `*` for the next free letter, or a folder
    /// that does not exist yet (WinFsp creates it as a mount point). With `network_prefix`
    /// (`\sipfs\NAME`, see `fs_core::nt::names::network_prefix`) the drive is a network drive
    /// (WinFsp's network provider and MUP): programs then get UNC paths from
    /// GetFinalPathNameByHandle, which a disk drive mounted without the Mount Manager fails.
    pub fn mount(
        nt: NtFs,
        cache: &Path,
        at: &str,
        network_prefix: Option<&str>,
    ) -> Result<Drive, DriveError> {
        let _span = tracing::info_span!("mount", at, network = network_prefix).entered();
        let init = load_winfsp()?;
        let mut vp = VolumeParams::new();
        if let Some(prefix) = network_prefix {
            vp.prefix(prefix);
        }
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
        let fs = DriveFs::new(nt, cache);
        // The host's calls answer with `windows` errors (an HRESULT built from the NTSTATUS).
        let status = |e: windows::core::Error| e.code().0;
        let mut host: FileSystemHost<DriveFs> =
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
