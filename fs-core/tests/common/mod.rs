//! What the engine's test files share.

use std::path::{Path, PathBuf};

/// Where test folders go: tmpfs makes the many fsyncs of flushes cheap; the semantics are the
/// same.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
