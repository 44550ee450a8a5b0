//! Extended attributes, kept in the node (`Node::xattrs`) and the journal, and written back by
//! a flush where the share keeps them (`Backing::set_xattr`).
//!
//! The share's own attributes are never read: a listing does not carry them, and asking for
//! each entry would be a round trip each. So a program sees the attributes set in this cache;
//! a flush sets them on the share and removes those removed here, leaving any others there.
//! Which namespaces a caller may use (`trusted.*` for root, `user.*` on files and folders
//! only) the kernel decides before the call comes here, as for any file system.

use super::*;
use crate::tree::Xattrs;

/// The longest value Linux takes (`XATTR_SIZE_MAX`) and the longest name (`XATTR_NAME_MAX`).
const MAX_VALUE: usize = 64 << 10;
const MAX_NAME: usize = 255;

/// What `setxattr` may find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrMode {
    /// Create or replace.
    Any,
    /// `XATTR_CREATE`: fail if it exists.
    Create,
    /// `XATTR_REPLACE`: fail if it does not.
    Replace,
}

fn shown_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl Engine {
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        match node.xattrs().and_then(|x| x.get(name)) {
            Some(Some(v)) => Ok(v.to_vec()),
            _ => Err(FsError::NoAttribute(
                tree.path_of(ino).unwrap_or_default(),
                shown_name(name),
            )),
        }
    }

    /// The names of the entry's attributes, in order.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
        let tree = self.state.read();
        let node = tree.get(ino).ok_or(FsError::StaleInode(ino))?;
        Ok(node
            .xattrs()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.to_vec())
            .collect())
    }

    pub fn setxattr(
        &self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> Result<(), FsError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(FsError::OutOfRange(format!(
                "an attribute name of {} bytes",
                name.len()
            )));
        }
        if value.len() > MAX_VALUE {
            return Err(FsError::OutOfRange(format!(
                "an attribute value of {} bytes",
                value.len()
            )));
        }
        if name.starts_with(b"system.") {
            // POSIX ACLs and the like: nothing here would enforce them.
            return Err(FsError::NotSupported("system extended attributes"));
        }
        self.change_xattrs(ino, |path, x| {
            let exists = matches!(x.get(name), Some(Some(_)));
            match mode {
                XattrMode::Create if exists => return Err(FsError::Exists(path.clone())),
                XattrMode::Replace if !exists => {
                    return Err(FsError::NoAttribute(path.clone(), shown_name(name)))
                }
                _ => {}
            }
            x.insert(name.into(), Some(value.into()));
            Ok(())
        })
    }

    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<(), FsError> {
        self.change_xattrs(ino, |path, x| match x.get_mut(name) {
            Some(v @ Some(_)) => {
                // Kept as removed, for the flush to remove it on the share too.
                *v = None;
                Ok(())
            }
            _ => Err(FsError::NoAttribute(path.clone(), shown_name(name))),
        })
    }

    /// Changes the entry's attributes with `change`; the entry's metadata is then dirty (the
    /// next flush writes them) and its ctime moves, as on a local disk.
    fn change_xattrs(
        &self,
        ino: Ino,
        change: impl FnOnce(&RelPath, &mut Xattrs) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let mut tree = self.state.write();
        let path = tree.path_of(ino).ok_or(FsError::StaleInode(ino))?;
        let _span = info_span!("setxattr", path = %path).entered();
        let n = tree.get_mut(ino).ok_or(FsError::StaleInode(ino))?;
        let mut x = n.xattrs().cloned().unwrap_or_default();
        change(&path, &mut x)?;
        n.set_xattrs(Some(x));
        n.ctime_ns = now_ns();
        n.meta_dirty = true;
        n.gen += 1;
        tree.reindex(ino);
        self.put_linked(&mut tree, ino)
    }
}
