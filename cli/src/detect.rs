//! `sipfs detect`: is a folder on a network file system, and what would sipfs do about it?

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A virtual drive / FUSE mount backed by the cache.
    Mount,
    /// A plain local folder kept in sync (where a virtual drive cannot be shared with Docker).
    Mirror,
    /// Local already: nothing to do.
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub path: PathBuf,
    /// The file system type as the OS names it (`cifs`, `nfs4`, `fuse.sshfs`, `ext4`...).
    pub fs_type: String,
    /// Where it is mounted from (`//server/share`, `user@host:/dir`), when known.
    pub source: Option<String>,
    pub network: bool,
    pub windows_share: bool,
    pub recommended: Mode,
    pub explanation: String,
}

/// File system types that live on another machine.
pub fn is_network_fs(fs_type: &str) -> bool {
    let t = fs_type.to_ascii_lowercase();
    let base = t.strip_prefix("fuse.").unwrap_or(&t);
    matches!(
        base,
        "cifs"
            | "smb"
            | "smb3"
            | "smbfs"
            | "smb2"
            | "nfs"
            | "nfs4"
            | "afs"
            | "ceph"
            | "glusterfs"
            | "9p"
            | "davfs"
            | "webdav"
            | "afpfs"
            | "sshfs"
            | "rclone"
            | "smbnetfs"
            | "s3fs"
            | "gcsfuse"
            | "lustre"
            | "beegfs"
            | "gpfs"
            | "ncpfs"
            | "coda"
    )
}

pub fn is_windows_share_fs(fs_type: &str) -> bool {
    let t = fs_type.to_ascii_lowercase();
    matches!(
        t.strip_prefix("fuse.").unwrap_or(&t),
        "cifs" | "smb" | "smb3" | "smbfs" | "smb2" | "smbnetfs"
    )
}

/// The mount (type, source) a path lives on: the longest mount point that contains it.
#[cfg(target_os = "linux")]
fn mount_of(path: &Path) -> Result<(String, Option<String>)> {
    let m = fs_core::volume::mount_entry(path).context("reading /proc/self/mountinfo")?;
    Ok((m.fs_type, Some(m.source)))
}

/// macOS and the BSDs: statfs names the volume's type and source.
#[cfg(all(unix, not(target_os = "linux")))]
fn mount_of(path: &Path) -> Result<(String, Option<String>)> {
    let v = fs_core::volume::statfs(path).context("statfs")?;
    Ok((v.fs_type, Some(v.mounted_from)))
}

/// Whether a volume statfs describes is on another machine: a network type, or a volume
/// macOS does not flag local (`MNT_LOCAL`). A FUSE volume (macFUSE) is taken for a network
/// one (sshfs, a cloud drive), unless it is a sipfs mount, whose source names sipfs: it is
/// the local cache already. Pure, so it is tested on every platform.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub fn is_network_volume(fs_type: &str, local_flag: bool, source: &str) -> bool {
    use fs_core::volume::{classify, VolumeKind};
    match classify(fs_type, local_flag) {
        VolumeKind::Local => false,
        VolumeKind::Network => true,
        VolumeKind::Fuse => !source.starts_with("sipfs:"),
    }
}

/// Whether the path is on another machine: statfs's flags on macOS, the type name elsewhere.
#[cfg(target_os = "macos")]
fn is_network_path(path: &Path, fs_type: &str) -> bool {
    match fs_core::volume::statfs(path) {
        Ok(v) => is_network_volume(&v.fs_type, v.local_flag, &v.mounted_from),
        Err(_) => is_network_fs(fs_type),
    }
}

#[cfg(not(target_os = "macos"))]
fn is_network_path(_path: &Path, fs_type: &str) -> bool {
    is_network_fs(fs_type)
}

#[cfg(windows)]
fn mount_of(path: &Path) -> Result<(String, Option<String>)> {
    let s = path.to_string_lossy();
    let (fs_type, source) = classify_windows_path(&s);
    if fs_type != "drive" {
        return Ok((fs_type.into(), source));
    }
    let letter = source.unwrap_or_default();
    {
        let root: Vec<u16> = format!("{letter}\\")
            .encode_utf16()
            .chain(Some(0))
            .collect();
        // SAFETY: root is a NUL-terminated wide string.
        let kind = unsafe { windows_sys_get_drive_type(root.as_ptr()) };
        const DRIVE_REMOTE: u32 = 4;
        if kind == DRIVE_REMOTE {
            return Ok(("smb".into(), Some(letter)));
        }
    }
    Ok(("local".into(), None))
}

/// What a Windows path's form alone says: `("smb", \\SERVER\SHARE)` for a UNC path (plain or
/// `\\?\UNC\`), `("drive", X:)` for a drive letter (plain or `\\?\X:`), whose kind only
/// Windows can tell, or `("local", None)`. Pure, so it is tested on every platform.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn classify_windows_path(s: &str) -> (&'static str, Option<String>) {
    let share_of = |rest: &str| {
        let mut parts = rest.split(['\\', '/']).filter(|p| !p.is_empty());
        match (parts.next(), parts.next()) {
            (Some(server), Some(share)) => Some(format!(r"\\{server}\{share}")),
            (Some(server), None) => Some(format!(r"\\{server}")),
            _ => None,
        }
    };
    if let Some(rest) = s.strip_prefix(r"\\?\UNC\") {
        return ("smb", share_of(rest));
    }
    let plain = s.strip_prefix(r"\\?\").unwrap_or(s);
    if !s.starts_with(r"\\?\") && s.starts_with(r"\\") {
        return ("smb", share_of(&s[2..]));
    }
    let b = plain.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return ("drive", Some(plain[..2].to_ascii_uppercase()));
    }
    ("local", None)
}

#[cfg(windows)]
#[link(name = "kernel32")]
extern "system" {
    #[link_name = "GetDriveTypeW"]
    fn windows_sys_get_drive_type(root: *const u16) -> u32;
}

/// Whether this machine and build can serve a project as a mount. Each platform builds some
/// of these; the tests build them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub enum MountSupport {
    /// A mount is what `run` uses for a network project.
    Available,
    /// No mount here (why): a mirror folder.
    Missing(&'static str),
    /// A mount may be had, but a mirror folder is the default (macOS: the mount needs macFUSE's
    /// kernel extension, which Apple Silicon Macs load only with Reduced Security).
    MirrorFirst(&'static str),
}

/// What this machine and build can do.
#[cfg(windows)]
fn mount_support() -> MountSupport {
    match fs_windows::winfsp_dir() {
        Some(_) => MountSupport::Available,
        None => MountSupport::Missing("WinFsp is not installed"),
    }
}

#[cfg(target_os = "macos")]
fn mount_support() -> MountSupport {
    MountSupport::MirrorFirst(
        "on macOS sipfs keeps a local mirror folder, which needs no kernel extension (`--mode mount` needs macFUSE and a build with the macfuse feature)",
    )
}

#[cfg(not(any(windows, target_os = "macos")))]
fn mount_support() -> MountSupport {
    if cfg!(unix) && Path::new("/dev/fuse").exists() {
        MountSupport::Available
    } else {
        MountSupport::Missing("FUSE is not available here")
    }
}

/// The mode `run` uses by default, and why. Pure, so that every platform's answer is tested.
pub fn recommend(fs_type: &str, network: bool, support: MountSupport) -> (Mode, String) {
    match (network, support) {
        (false, _) => (Mode::None, "a local folder: programs can use it as it is".to_owned()),
        (true, MountSupport::Available) => (
            Mode::Mount,
            format!("on a network file system ({fs_type}): mount it through a local cache with `sipfs mount` or `sipfs run`"),
        ),
        (true, MountSupport::Missing(why)) => (
            Mode::Mirror,
            format!("on a network file system ({fs_type}), and {why}: keep a local mirror folder"),
        ),
        (true, MountSupport::MirrorFirst(why)) => (
            Mode::Mirror,
            format!("on a network file system ({fs_type}): {why}"),
        ),
    }
}

pub fn detect(path: &Path) -> Result<Detection> {
    // The plain form (`Z:\proj`, `\\server\share`), which people and other programs
    // (Docker among them) take; `\\?\` only where a path needs it (over 260 characters).
    let canon = dunce::canonicalize(path)
        .with_context(|| format!("{} cannot be reached", path.display()))?;
    // A UNC path as given is a share whatever it resolves to (Wine resolves one to the drive
    // letter its folder is mapped to).
    #[cfg(windows)]
    let typed = match classify_windows_path(&path.to_string_lossy()) {
        ("smb", source) => Some(("smb".to_owned(), source)),
        _ => None,
    };
    #[cfg(not(windows))]
    let typed: Option<(String, Option<String>)> = None;
    let (fs_type, source) = match typed {
        Some(t) => t,
        None => mount_of(&canon)?,
    };
    let network = is_network_path(&canon, &fs_type);
    let windows_share = is_windows_share_fs(&fs_type);
    let (recommended, explanation) = recommend(&fs_type, network, mount_support());
    Ok(Detection {
        path: canon,
        fs_type,
        source,
        network,
        windows_share,
        recommended,
        explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_by_their_form() {
        // What canonicalize gives on Windows, and the plain forms people type.
        for (path, kind, source) in [
            (r"\\?\N:\proj", "drive", Some("N:")),
            (r"z:\proj\sub", "drive", Some("Z:")),
            (r"\\?\UNC\server\share\proj", "smb", Some(r"\\server\share")),
            (r"\\server\share\proj", "smb", Some(r"\\server\share")),
            (r"\\server", "smb", Some(r"\\server")),
            ("relative", "local", None),
        ] {
            assert_eq!(
                classify_windows_path(path),
                (kind, source.map(str::to_owned)),
                "{path}"
            );
        }
    }

    #[test]
    fn network_types() {
        for t in ["cifs", "smb3", "nfs4", "fuse.sshfs", "fuse.rclone", "9p"] {
            assert!(is_network_fs(t), "{t}");
        }
        for t in [
            "ext4", "xfs", "tmpfs", "btrfs", "fuse", "overlay", "apfs", "ntfs",
        ] {
            assert!(!is_network_fs(t), "{t}");
        }
        assert!(is_windows_share_fs("cifs") && !is_windows_share_fs("nfs"));
    }

    #[test]
    fn mac_network_volumes_by_statfs() {
        // What statfs gives for /Volumes/SERVER on a lab Mac, and for its own disks.
        for (fs_type, local, source) in [
            ("smbfs", false, "//alice@fileserver/lab"),
            ("afpfs", false, "afp://fileserver/lab"),
            ("nfs", false, "fileserver:/export/lab"),
            ("webdav", false, "https://dav.example/lab"),
            ("nfs", true, "fileserver:/export/lab"),
            ("vendorfs", false, "vendor://lab"),
            ("macfuse", false, "alice@host:/lab"),
        ] {
            assert!(
                is_network_volume(fs_type, local, source),
                "{fs_type} {local}"
            );
        }
        for (fs_type, local, source) in [
            ("apfs", true, "/dev/disk3s5"),
            ("hfs", true, "/dev/disk4s2"),
            ("exfat", true, "/dev/disk5s1"),
            ("macfuse", false, "sipfs:/Volumes/fileserver/lab"),
        ] {
            assert!(!is_network_volume(fs_type, local, source), "{fs_type}");
        }
        assert!(
            is_windows_share_fs("smbfs"),
            "Finder's SMB volumes hold Windows names"
        );
    }

    #[test]
    fn a_mac_mirrors_network_projects_by_default() {
        // `sipfs run /Volumes/fileserver/proj -- ./run.command` needs no --mode on a Mac.
        let mac = MountSupport::MirrorFirst("on macOS sipfs keeps a local mirror folder");
        let (mode, why) = recommend("smbfs", true, mac);
        assert_eq!(mode, Mode::Mirror);
        assert!(
            why.contains("smbfs") && why.contains("mirror folder"),
            "{why}"
        );
        assert_eq!(recommend("apfs", false, mac).0, Mode::None);
        assert_eq!(
            recommend("cifs", true, MountSupport::Available).0,
            Mode::Mount
        );
        assert_eq!(
            recommend("cifs", true, MountSupport::Missing("no FUSE")).0,
            Mode::Mirror
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_local_temp_folder_needs_nothing() {
        let d = tempfile_dir();
        let det = detect(&d).unwrap();
        assert!(!det.network, "{det:?}");
        assert_eq!(det.recommended, Mode::None);
        let _ = std::fs::remove_dir(&d);
    }

    #[cfg(target_os = "linux")]
    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("sipfs-detect-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
