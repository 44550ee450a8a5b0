//! The share as the engine reaches it, for every form (mount, drive, mirror, run).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fs_core::{Backing, DeadlineBacking, DirBacking};

/// `--share-timeout`'s default, and what `sipfs run` and one-shot commands use.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// The share at `backing`, every call with a deadline of `timeout_secs` (none if 0).
///
/// Only a share on a network file system (or one whose kind cannot be told) gets the
/// deadline: handing each call to a worker costs some 70 µs on a small VM, a few percent of a
/// network round trip but forty times a local stat, and a local folder does not freeze.
///
/// An sshfs share's folders are listed over an SFTP session of sipfs's own, with their
/// attributes, rather than one stat per entry through the mount (`fs_core::sftp`).
pub fn share_at(backing: &Path, timeout_secs: u64) -> Arc<dyn Backing> {
    let local = crate::detect::detect(backing).is_ok_and(|d| !d.network);
    let dir = DirBacking::new(backing);
    #[cfg(unix)]
    let dir = if local { dir } else { dir.with_sftp_listing() };
    let dir = Arc::new(dir);
    if timeout_secs == 0 || local {
        return dir;
    }
    Arc::new(DeadlineBacking::new(dir, Duration::from_secs(timeout_secs)))
}
