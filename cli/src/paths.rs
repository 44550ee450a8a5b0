//! Where caches live by default.

use std::path::{Path, PathBuf};

/// FNV-1a: a hash that stays the same across Rust versions, so a share keeps its cache.
fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The per-user cache folder for a share path: `~/.cache/sipfs/NAME-HASH` on Linux,
/// `%LOCALAPPDATA%\sipfs\cache\NAME-HASH` on Windows.
pub fn default_cache_dir(backing: &Path) -> PathBuf {
    let base = directories::ProjectDirs::from("", "", "sipfs")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("sipfs-cache"));
    let name: String = backing
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let key = backing.to_string_lossy();
    base.join(format!("{name}-{:016x}", stable_hash(key.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cache_per_share_path() {
        let a = default_cache_dir(Path::new("/mnt/share/proj"));
        let b = default_cache_dir(Path::new("/mnt/other/proj"));
        assert_ne!(a, b);
        assert_eq!(a, default_cache_dir(Path::new("/mnt/share/proj")));
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("proj-"));
    }
}
