//! Paths in the cache tree, however long.
//!
//! The cache copy of `PATH` is `CACHE/tree/PATH`. Spelled out, that path is longer than the
//! one programs use in the mount by the cache folder's own path, so a path near `PATH_MAX`
//! (4096 bytes on Linux) in the mount would be too long for the cache, and a folder deep enough
//! could not be made there at all. A local disk has no such limit below the mount's.
//!
//! So on Linux a path that would be too long is reached through a handle on its folder
//! instead: the folder is opened relative to the tree's own handle (`openat`, a few components
//! at a time), and the entry is named as `/proc/self/fd/N/NAME`, which any path-taking call
//! accepts and which is short. Paths of a usual length (all but a few) are used as they are,
//! at no extra cost. Elsewhere the spelled-out path is used, and the limit stays.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use crate::relpath::RelPath;

/// The folder that mirrors the project's layout, and a handle on it.
#[derive(Debug)]
pub(crate) struct CacheTree {
    root: PathBuf,
    #[cfg(target_os = "linux")]
    dir: File,
}

/// A path to an entry of the cache tree, valid while this lives (it may hold its folder open).
#[derive(Debug)]
pub(crate) struct CachePath {
    path: PathBuf,
    _dir: Option<File>,
}

impl Deref for CachePath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for CachePath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// The longest path handed to the OS as it is: `PATH_MAX` counts the terminating NUL.
#[cfg(target_os = "linux")]
const LONGEST: usize = 4095;

impl CacheTree {
    pub fn open(root: PathBuf) -> io::Result<CacheTree> {
        #[cfg(target_os = "linux")]
        {
            let dir = open_dir(None, &root)?;
            Ok(CacheTree { root, dir })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(CacheTree { root })
    }

    #[cfg(all(test, target_os = "linux"))]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry at `rel` is in the cache tree.
    pub fn path(&self, rel: &RelPath) -> CachePath {
        let path = rel.to_path(&self.root);
        #[cfg(target_os = "linux")]
        if path.as_os_str().len() > LONGEST {
            if let (Some(parent), false) = (rel.parent(), rel.is_root()) {
                // A folder that cannot be opened: the long path fails as the OS says.
                if let Ok(dir) = self.open_folder(&parent) {
                    use std::os::fd::AsRawFd;
                    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                        .join(crate::os_names::to_os(rel.name()));
                    return CachePath {
                        path: short,
                        _dir: Some(dir),
                    };
                }
            }
        }
        CachePath { path, _dir: None }
    }

    /// `mkdir -p` of the folder `rel` in the cache tree.
    pub fn create_dir_all(&self, rel: &RelPath) -> io::Result<()> {
        let path = rel.to_path(&self.root);
        #[cfg(target_os = "linux")]
        if path.as_os_str().len() > LONGEST {
            let mut cur: Option<File> = None;
            for name in rel.components() {
                let at = cur.as_ref().unwrap_or(&self.dir);
                let name = crate::os_names::to_os(name);
                match make_dir_at(at, &name) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                cur = Some(open_dir(Some(at), Path::new(&name))?);
            }
            return Ok(());
        }
        std::fs::create_dir_all(path)
    }

    /// A handle on the folder `rel`, opened a few components at a time so that no call is
    /// given more than the OS takes.
    #[cfg(target_os = "linux")]
    fn open_folder(&self, rel: &RelPath) -> io::Result<File> {
        let mut cur: Option<File> = None;
        let mut chunk = PathBuf::new();
        let mut names = rel.components().map(crate::os_names::to_os).peekable();
        while let Some(name) = names.next() {
            chunk.push(&name);
            let full = names
                .peek()
                .is_none_or(|next| chunk.as_os_str().len() + 1 + next.len() > LONGEST);
            if full {
                let at = cur.as_ref().unwrap_or(&self.dir);
                cur = Some(open_dir(Some(at), &chunk)?);
                chunk.clear();
            }
        }
        match cur {
            Some(d) => Ok(d),
            None => self.dir.try_clone(),
        }
    }
}

/// Opens a folder for use as a starting point of paths (`O_PATH`: nothing is read through it).
#[cfg(target_os = "linux")]
fn open_dir(at: Option<&File>, path: &Path) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dirfd = at.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    // SAFETY: `c` is a valid NUL-terminated string; the fd returned is ours to own.
    let fd = unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(target_os = "linux")]
fn make_dir_at(at: &File, name: &std::ffi::OsStr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated name and an open folder handle.
    if unsafe { libc::mkdirat(at.as_raw_fd(), c.as_ptr(), 0o777) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs;

    /// A path of 5 000 bytes below the tree: made, written, read, renamed and removed, and
    /// folders made below it, though the spelled-out path is longer than the OS takes.
    #[test]
    fn paths_longer_than_the_os_takes_work_through_folder_handles() {
        let dir = tempfile::tempdir().unwrap();
        let tree = CacheTree::open(dir.path().to_path_buf()).unwrap();
        let mut rel = RelPath::root();
        for i in 0..25 {
            rel = rel.join(&format!("{i:02}{}", "x".repeat(198)));
        }
        assert!(rel.as_str().len() > 5_000);
        tree.create_dir_all(&rel).unwrap();
        let file = rel.join("data.csv");
        assert!(file.to_path(tree.root()).as_os_str().len() > LONGEST);
        let p = tree.path(&file);
        assert!(p.as_os_str().len() < 100, "{}", p.display());
        fs::write(&p, "a,b\n").unwrap();
        assert_eq!(fs::read_to_string(tree.path(&file)).unwrap(), "a,b\n");
        let moved = rel.join("moved.csv");
        fs::rename(tree.path(&file), tree.path(&moved)).unwrap();
        assert_eq!(fs::metadata(tree.path(&moved)).unwrap().len(), 4);
        assert!(fs::metadata(tree.path(&file)).is_err());
        fs::remove_file(tree.path(&moved)).unwrap();
        // The same file seen from the top, a folder at a time: it is where it should be.
        fs::write(tree.path(&file), "x").unwrap();
        let mut cur = open_dir(None, dir.path()).unwrap();
        let mut depth = 0;
        loop {
            use std::os::fd::AsRawFd;
            let listing = PathBuf::from(format!("/proc/self/fd/{}", cur.as_raw_fd()));
            let e = fs::read_dir(&listing).unwrap().next().unwrap().unwrap();
            if !e.file_type().unwrap().is_dir() {
                assert_eq!(e.file_name(), "data.csv");
                break;
            }
            cur = open_dir(Some(&cur), Path::new(&e.file_name())).unwrap();
            depth += 1;
        }
        assert_eq!(depth, 25);
        // A short path is left as it is.
        let short = RelPath::new("a/b").unwrap();
        assert_eq!(&*tree.path(&short), dir.path().join("a/b"));
    }
}
