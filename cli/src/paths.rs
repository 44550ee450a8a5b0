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
/// `~/Library/Application Support/sipfs/cache/NAME-HASH` on macOS,
/// `%LOCALAPPDATA%\sipfs\cache\NAME-HASH` on Windows. Not `~/Library/Caches` on macOS: the
/// cache holds changes not yet flushed, and cleaning tools empty Caches folders.
pub fn default_cache_dir(backing: &Path) -> PathBuf {
    let base = cache_base();
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

/// Where the per-user caches are.
fn cache_base() -> PathBuf {
    directories::ProjectDirs::from("", "", "sipfs")
        .map(|d| {
            if cfg!(target_os = "macos") {
                d.data_local_dir().join("cache")
            } else {
                d.cache_dir().to_path_buf()
            }
        })
        .unwrap_or_else(|| std::env::temp_dir().join("sipfs-cache"))
}

/// Where the registry of mirror folders keeps what it knows of `folder` (canonical): which
/// share and cache it belongs to. The folder itself keeps nothing of that: programs delete and
/// restore what is in it.
pub fn mirror_registry_entry(folder: &Path) -> PathBuf {
    let key = folder.to_string_lossy();
    cache_base()
        .join("mirrors")
        .join(format!("{:016x}.json", stable_hash(key.as_bytes())))
}

/// The cache of a mirror folder: one per share path and folder, beside the mount caches.
pub fn default_mirror_cache_dir(backing: &Path, folder: &Path) -> PathBuf {
    let mount = default_cache_dir(backing);
    let key = folder.to_string_lossy();
    let name = mount
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    mount.with_file_name(format!(
        "{name}-mirror-{:08x}",
        stable_hash(key.as_bytes()) as u32
    ))
}

/// Where `sipfs run --mode mirror` puts the project when not told: a stable folder per share
/// path (the original Smart Sync design's staging folder, `%TEMP%\sip_workflow\NAME`), so
/// the next run finds it filled.
pub fn default_mirror_folder(backing: &Path) -> PathBuf {
    let cache = default_cache_dir(backing);
    let name = cache
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    mirror_base().join(name)
}

/// Where the mirror folders are, each kept between runs.
#[cfg(not(target_os = "macos"))]
fn mirror_base() -> PathBuf {
    std::env::temp_dir().join("sip_workflow")
}

/// macOS: `~/Library/Application Support/sipfs/sip_workflow`, on the Mac's own APFS disk. Not
/// the temp dir: macOS deletes what lies unused in `$TMPDIR` (`/var/folders/...`) for three
/// days, and a mirror folder holds the user's changes until they are flushed.
#[cfg(target_os = "macos")]
fn mirror_base() -> PathBuf {
    directories::ProjectDirs::from("", "", "sipfs")
        .map(|d| d.data_local_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("sipfs"))
        .join("sip_workflow")
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
