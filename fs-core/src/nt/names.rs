//! Windows paths on a case-insensitive, case-preserving volume over an engine that is case
//! sensitive, as the share behind it may be.

use crate::error::FsError;
use crate::relpath::RelPath;

use super::status::{NtStatus, STATUS_OBJECT_NAME_INVALID};

/// The components of a path as WinFsp gives it (`\dir\file.txt`; `\` is the root).
pub fn components(path: &str) -> Result<Vec<&str>, NtStatus> {
    let trimmed = path.strip_prefix('\\').unwrap_or(path);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = trimmed.split('\\').collect();
    // Named streams (`file:stream`) are off on this volume; empty components are malformed.
    if parts.iter().any(|p| p.is_empty() || p.contains(':')) {
        return Err(STATUS_OBJECT_NAME_INVALID);
    }
    Ok(parts)
}

/// The engine's path for components whose case is already the one on disk.
pub fn rel_path(parts: &[&str]) -> Result<RelPath, FsError> {
    RelPath::new(&parts.join("/"))
}

/// Windows compares names by upper-casing them (its upcase table); per-character upper case
/// is the same for every name a program is likely to use.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b
        || (a.chars().count() == b.chars().count()
            && a.chars()
                .flat_map(char::to_uppercase)
                .eq(b.chars().flat_map(char::to_uppercase)))
}

/// The entry of `names` that `wanted` opens: the exact name if there is one, otherwise the
/// first (in listing order) that differs only in case.
pub fn pick<'a>(names: impl IntoIterator<Item = &'a str>, wanted: &str) -> Option<&'a str> {
    let mut folded = None;
    for n in names {
        if n == wanted {
            return Some(n);
        }
        if folded.is_none() && same_name(n, wanted) {
            folded = Some(n);
        }
    }
    folded
}

/// The volume prefix of a drive mounted as a network drive (`\sipfs\NAME`, which programs
/// see as `\\sipfs\NAME`), NAME from the project folder's last name: letters, digits, `.`,
/// `-` and `_` kept, anything else a `-`, at most 64 characters. Programs asking where a file
/// is (GetFinalPathNameByHandle) are told `\\?\UNC\sipfs\NAME\...` there, which a WinFsp
/// disk mounted without the Mount Manager cannot tell them (winfsp#410, #427, #690).
pub fn network_prefix(project: &str) -> String {
    let last = project
        .trim_end_matches(['\\', '/'])
        .rsplit(['\\', '/', ':'])
        .find(|p| !p.is_empty())
        .unwrap_or("");
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let name = name.trim_matches(['.', '-']);
    format!(
        "\\sipfs\\{}",
        if name.is_empty() { "project" } else { name }
    )
}

/// The path in Windows form, for `set_normalized_name` and messages.
pub fn windows_path(rel: &RelPath) -> String {
    let mut s = String::from("\\");
    s.push_str(&rel.as_str().replace('/', "\\"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_prefixes_name_the_project() {
        assert_eq!(
            network_prefix("Z:\\Labs\\Projekt Müller\\"),
            "\\sipfs\\Projekt-M-ller"
        );
        assert_eq!(network_prefix("\\\\server\\share\\proj"), "\\sipfs\\proj");
        assert_eq!(network_prefix("/mnt/share/run_7.b"), "\\sipfs\\run_7.b");
        assert_eq!(network_prefix("Z:\\"), "\\sipfs\\Z");
        assert_eq!(network_prefix("ü"), "\\sipfs\\project");
        assert_eq!(
            network_prefix(&"x".repeat(100)).len(),
            "\\sipfs\\".len() + 64
        );
    }

    #[test]
    fn splits_windows_paths() {
        assert_eq!(components("\\").unwrap(), Vec::<&str>::new());
        assert_eq!(components("\\a\\b.txt").unwrap(), vec!["a", "b.txt"]);
        assert_eq!(components("\\a\\\\b"), Err(STATUS_OBJECT_NAME_INVALID));
        assert_eq!(components("\\a:stream"), Err(STATUS_OBJECT_NAME_INVALID));
    }

    #[test]
    fn names_match_whatever_their_case_and_the_exact_one_wins() {
        assert!(same_name("Résumé.CSV", "résumé.csv"));
        assert!(!same_name("a.csv", "b.csv"));
        let names = ["DATA.csv", "data.csv", "Other"];
        assert_eq!(pick(names, "data.csv"), Some("data.csv"));
        assert_eq!(pick(names, "Data.CSV"), Some("DATA.csv"));
        assert_eq!(pick(names, "other"), Some("Other"));
        assert_eq!(pick(names, "none"), None);
        assert_eq!(
            windows_path(&RelPath::new("a/b c.txt").unwrap()),
            "\\a\\b c.txt"
        );
        assert_eq!(windows_path(&RelPath::root()), "\\");
    }
}
