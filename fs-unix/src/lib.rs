//! sipfs-unix: the FUSE adapter (Linux, and macOS through macFUSE).
//!
//! A thin layer: every call is translated to the [`fs_core::Engine`] and back. The only things
//! that live here are what FUSE itself is about: inode and handle numbers, the kernel's caches
//! and passthrough, and the `.sipfs/` control directory (which exists only in a mount).

#[cfg(unix)]
mod attr;
#[cfg(unix)]
mod control_dir;
#[cfg(unix)]
mod fs;
#[cfg(unix)]
mod mount;
#[cfg(unix)]
mod owners;
#[cfg(unix)]
mod requests;
#[cfg(unix)]
mod state;

#[cfg(unix)]
pub use mount::{is_sipfs_mount, is_stale_mount, mount, unmount_path, MountHandle, MountOptions};
