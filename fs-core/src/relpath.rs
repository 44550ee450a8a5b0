//! Paths relative to the project root.
//!
//! Every part of the engine speaks in [`RelPath`]s: the same path names an entry in the
//! mount, in the cache tree and (once pending renames are taken into account) on the share.
//! They are always `/`-separated so that journals and reports read the same on every platform.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FsError;

/// A normalized path below the project root. The root itself is the empty path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RelPath(String);

/// The longest name a component may have, in bytes (what local disks and SMB allow).
pub const NAME_MAX: usize = 255;

/// Checks one path component: not empty, not `.` or `..`, no separator, no NUL, not longer
/// than [`NAME_MAX`] bytes.
pub fn check_name(name: &str) -> Result<(), FsError> {
    // Counted as the OS counts it: in the bytes the name stands for (`os_names`).
    if crate::os_names::to_bytes(name).len() > NAME_MAX {
        return Err(FsError::NameTooLong(name.chars().take(40).collect()));
    }
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || (cfg!(windows) && name.contains('\\'))
    {
        return Err(FsError::InvalidName(name.to_owned()));
    }
    Ok(())
}

impl RelPath {
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// Parses a `/`-separated relative path, rejecting `.`, `..` and empty components.
    pub fn new(s: &str) -> Result<Self, FsError> {
        let trimmed = s.trim_matches('/');
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        for part in trimmed.split('/') {
            check_name(part)?;
        }
        Ok(RelPath(trimmed.to_owned()))
    }

    /// The child `name` of this path. `name` must be a valid component (see [`check_name`]).
    pub fn join(&self, name: &str) -> RelPath {
        debug_assert!(check_name(name).is_ok(), "bad component {name:?}");
        if self.0.is_empty() {
            RelPath(name.to_owned())
        } else {
            RelPath(format!("{}/{}", self.0, name))
        }
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parent path; `None` for the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_owned()),
            None => RelPath::root(),
        })
    }

    /// The last component; empty for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// True when `self` is `base` or lies below it (component-wise, so `ab` is not below `a`).
    pub fn is_within(&self, base: &RelPath) -> bool {
        base.0.is_empty()
            || self.0 == base.0
            || (self.0.starts_with(&base.0) && self.0.as_bytes().get(base.0.len()) == Some(&b'/'))
    }

    /// True when one of the two paths contains the other.
    pub fn overlaps(&self, other: &RelPath) -> bool {
        self.is_within(other) || other.is_within(self)
    }

    /// Replaces the prefix `from` by `to`, when `self` is within `from`.
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.is_within(from) {
            return None;
        }
        let rest = &self.0[from.0.len()..];
        let rest = rest.trim_start_matches('/');
        Some(if rest.is_empty() {
            to.clone()
        } else if to.0.is_empty() {
            RelPath(rest.to_owned())
        } else {
            RelPath(format!("{}/{}", to.0, rest))
        })
    }

    /// This path below a real directory of the local platform.
    pub fn to_path(&self, base: &Path) -> PathBuf {
        let mut p = base.to_path_buf();
        for c in self.components() {
            p.push(crate::os_names::to_os(c));
        }
        p
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("/")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(RelPath::new("/a/b/").unwrap().as_str(), "a/b");
        assert!(RelPath::new("a/../b").is_err());
        assert!(RelPath::new("a//b").is_err());
        assert!(RelPath::new("").unwrap().is_root());
    }

    #[test]
    fn within_is_component_wise() {
        let a = RelPath::new("a").unwrap();
        assert!(RelPath::new("a/b").unwrap().is_within(&a));
        assert!(!RelPath::new("ab").unwrap().is_within(&a));
        assert!(a.is_within(&RelPath::root()));
    }

    #[test]
    fn rebase_moves_prefix() {
        let p = RelPath::new("a/b/c").unwrap();
        let r = p
            .rebase(&RelPath::new("a/b").unwrap(), &RelPath::new("x").unwrap())
            .unwrap();
        assert_eq!(r.as_str(), "x/c");
        assert_eq!(
            p.rebase(&RelPath::new("a").unwrap(), &RelPath::root())
                .unwrap()
                .as_str(),
            "b/c"
        );
        assert!(p
            .rebase(&RelPath::new("b").unwrap(), &RelPath::root())
            .is_none());
    }

    #[test]
    fn parent_and_name() {
        let p = RelPath::new("a/b").unwrap();
        assert_eq!(p.name(), "b");
        assert_eq!(p.parent().unwrap().as_str(), "a");
        assert!(RelPath::new("a").unwrap().parent().unwrap().is_root());
        assert!(RelPath::root().parent().is_none());
    }
}
