//! sipfs-unix: the FUSE adapter (Linux, and macOS through macFUSE).
//!
//! A thin layer: every call is translated to the [`fs_core::Engine`] and back. The only things
//! that live here are what FUSE itself is about: inode and handle numbers, the kernel's caches
//! and passthrough, and the `.sipfs/` control directory (which exists only in a mount).

//!
//! `cfg(sipfs_fuse)` (set by build.rs) says whether this build has the mount: always on Linux,
//! on macOS only with the `macfuse` feature. Without it `mount` says so, and the helpers that
//! ask about mounts still answer (a Mac may still have a stale mount of an earlier build).

#[cfg(sipfs_fuse)]
mod attr;
#[cfg(sipfs_fuse)]
mod control_dir;
#[cfg(sipfs_fuse)]
mod fs;
#[cfg(unix)]
mod mount;
#[cfg(sipfs_fuse)]
mod owners;
#[cfg(sipfs_fuse)]
mod platform;
#[cfg(sipfs_fuse)]
mod requests;
#[cfg(sipfs_fuse)]
mod state;

#[cfg(unix)]
pub use mount::{is_sipfs_mount, is_stale_mount, mount, unmount_path, MountHandle, MountOptions};
