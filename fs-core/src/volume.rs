//! What kind of volume a path is on, as macOS (and the BSDs) tell it through `statfs`: the
//! file system's type name (`f_fstypename`) and whether it is local (`MNT_LOCAL`).
//!
//! The classification is pure, so that it is tested on every platform; only [`statfs`] asks
//! the OS, and only where `statfs` has those fields. `sipfs detect` uses it to tell a project
//! on `/Volumes/SERVER/...` from one on the Mac's own disk, and the share code uses it to pick
//! the rename that never replaces (`noreplace.rs`): the exclusive rename only where the volume
//! itself decides it.

/// What a volume is, for sipfs's purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// A disk of this machine (APFS, HFS+, a disk image, an SD card's exFAT...).
    Local,
    /// A volume served by another machine (SMB, AFP, NFS, WebDAV), or any volume macOS does
    /// not call local.
    Network,
    /// A FUSE volume (macFUSE): served by a process, whatever it stands for. sshfs and a sipfs
    /// mount alike; the caller tells them apart by the volume's source.
    Fuse,
}

/// Type names of volumes that live on another machine, as macOS's `f_fstypename` gives them.
const NETWORK_TYPES: &[&str] = &["smbfs", "afpfs", "nfs", "webdav", "ftp"];

/// Type names of FUSE volumes on macOS: macFUSE (`macfuse`; `osxfuse` before version 4).
const FUSE_TYPES: &[&str] = &["macfuse", "osxfuse", "fusefs", "fuse"];

/// The kind of a volume from its statfs type name and its `MNT_LOCAL` flag. A volume macOS
/// does not flag local is taken for a network one whatever its name: a name sipfs does not
/// know (a vendor's network client) is better mirrored than worked on directly.
pub fn classify(fs_type: &str, local_flag: bool) -> VolumeKind {
    let t = fs_type.to_ascii_lowercase();
    if FUSE_TYPES.contains(&t.as_str()) || t.starts_with("macfuse") || t.starts_with("osxfuse") {
        return VolumeKind::Fuse;
    }
    if NETWORK_TYPES.contains(&t.as_str()) || !local_flag {
        return VolumeKind::Network;
    }
    VolumeKind::Local
}

/// What statfs says about the volume a path is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `f_fstypename`: `apfs`, `smbfs`, `macfuse`...
    pub fs_type: String,
    /// `f_mntfromname`: `//user@server/share`, `/dev/disk3s5`, `sipfs:/Volumes/...`.
    pub mounted_from: String,
    /// `f_mntonname`: the volume's mount point (`/Volumes/server`, `/`).
    pub mounted_on: String,
    /// `MNT_LOCAL` is set.
    pub local_flag: bool,
}

impl Volume {
    pub fn kind(&self) -> VolumeKind {
        classify(&self.fs_type, self.local_flag)
    }
}

/// A mount as Linux lists it in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: std::path::PathBuf,
    /// `ext4`, `fuse.sshfs`, `cifs`...
    pub fs_type: String,
    /// `user@host:/dir`, `//server/share`, `/dev/sda1`.
    pub source: String,
}

/// The mount `path` lives on: the longest mount point that contains it.
#[cfg(target_os = "linux")]
pub fn mount_entry(path: &std::path::Path) -> std::io::Result<MountEntry> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .filter_map(parse_mountinfo_line)
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no mount contains this path")
        })
}

/// One line of `/proc/self/mountinfo`:
/// `id parent major:minor root mountpoint options [optional...] - fstype source superopts`.
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mount_point = unescape_mountinfo(left.split_whitespace().nth(4)?);
    let mut r = right.split_whitespace();
    Some(MountEntry {
        mount_point: mount_point.into(),
        fs_type: unescape_mountinfo(r.next()?),
        source: unescape_mountinfo(r.next().unwrap_or("")),
    })
}

/// The kernel writes space, tab, newline and backslash in mountinfo as octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Asks statfs about the volume `path` is on.
#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
pub fn statfs(path: &std::path::Path) -> std::io::Result<Volume> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c is a valid C string and st a zeroed buffer the call fills.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel NUL-terminates the three names within their arrays.
    let text =
        |a: &[libc::c_char]| unsafe { CStr::from_ptr(a.as_ptr()).to_string_lossy().into_owned() };
    #[allow(clippy::unnecessary_cast)] // f_flags is u32 on macOS, u64 on FreeBSD
    let flags = st.f_flags as u64;
    Ok(Volume {
        fs_type: text(&st.f_fstypename),
        mounted_from: text(&st.f_mntfromname),
        mounted_on: text(&st.f_mntonname),
        local_flag: flags & libc::MNT_LOCAL as u64 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_volumes_by_name_or_by_the_missing_local_flag() {
        // What a lab Mac shows for /Volumes/SERVER (Finder's "Connect to Server").
        for t in ["smbfs", "afpfs", "nfs", "webdav", "SMBFS"] {
            assert_eq!(classify(t, false), VolumeKind::Network, "{t}");
            // Flagged local or not, a network client's volume is a network volume.
            assert_eq!(classify(t, true), VolumeKind::Network, "{t}");
        }
        // A type sipfs does not know, not flagged local: mirrored rather than used directly.
        assert_eq!(classify("vendorfs", false), VolumeKind::Network);
    }

    #[test]
    fn the_macs_own_disks_are_local() {
        for t in ["apfs", "hfs", "exfat", "msdos"] {
            assert_eq!(classify(t, true), VolumeKind::Local, "{t}");
        }
    }

    #[test]
    fn fuse_volumes_are_told_apart() {
        for (t, local) in [("macfuse", false), ("osxfuse", false), ("macfuse", true)] {
            assert_eq!(classify(t, local), VolumeKind::Fuse, "{t}");
        }
    }
}
