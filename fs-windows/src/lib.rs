//! sipfs-windows: the WinFsp adapter, the project as a drive (`S:`) or a folder mount point.
//!
//! A thin layer: WinFsp's calls are passed to [`fs_core::nt::NtFs`], which holds every
//! Windows rule (names, dispositions, deletes, renames, times, attributes, status codes) and is
//! tested on every platform. The msvc build has the drive; the gnu build has it with the
//! `gnu-drive` feature, for its tests under Wine (`tests/wine`), and the gnu sipfs.exe, built
//! without it, does not offer it (docs/WINDOWS.md, "Building it").

#[cfg(all(windows, any(target_env = "msvc", feature = "gnu-drive")))]
mod callbacks;
#[cfg(all(windows, any(target_env = "msvc", feature = "gnu-drive")))]
mod drive;
#[cfg(all(windows, any(target_env = "msvc", feature = "gnu-drive")))]
pub use callbacks::{Context, DriveFs};
#[cfg(all(windows, any(target_env = "msvc", feature = "gnu-drive")))]
pub use drive::{Drive, DriveError};

/// Where to get WinFsp, for messages.
pub const WINFSP_DOWNLOAD: &str = "https://winfsp.dev/rel/";

/// The WinFsp install folder when WinFsp is installed and this build offers the drive: the
/// msvc build. The gnu build answers None, so that `sipfs detect` recommends the mirror folder
/// it can serve (its drive code runs only in the Wine tests).
pub fn winfsp_dir() -> Option<std::path::PathBuf> {
    #[cfg(all(windows, target_env = "msvc"))]
    return drive::winfsp_dir();
    #[cfg(not(all(windows, target_env = "msvc")))]
    None
}
