//! sipfs-windows: the WinFsp adapter (Windows drive letters such as `S:`), planned.
//!
//! It will be a thin layer like `fs-unix`: WinFsp's path-based calls map onto
//! [`fs_core::Engine::resolve`] and the inode-based engine operations, and the `.sipfs`
//! control directory is served the same way. Nothing here yet: the crate exists so that the
//! workspace layout and the engine's API are shaped for it from the start.
