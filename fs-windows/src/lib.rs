//! sipfs-windows: the WinFsp adapter, the project as a drive (`S:`) or a folder mount point.
//!
//! A thin layer: WinFsp's calls are passed to [`fs_core::nt::NtFs`], which holds every
//! Windows rule (names, dispositions, deletes, renames, times, attributes, status codes) and is
//! tested on every platform. Only the msvc build has it: WinFsp's bindings build only there.

#[cfg(all(windows, target_env = "msvc"))]
mod drive;
#[cfg(all(windows, target_env = "msvc"))]
pub use drive::{winfsp_dir, Drive, DriveError};

/// Where to get WinFsp, for messages.
pub const WINFSP_DOWNLOAD: &str = "https://winfsp.dev/rel/";

/// The WinFsp install folder when WinFsp is installed (and this build can use it).
#[cfg(not(all(windows, target_env = "msvc")))]
pub fn winfsp_dir() -> Option<std::path::PathBuf> {
    None
}
