//! Which paths are never written back to the share.
//!
//! Built-in names (`__pycache__/`, `.DS_Store`, `Thumbs.db`, `.sync_log.json`), rules from the
//! configuration, and a `.sipfsignore` file at the project root, all in gitignore syntax
//! (matched by the `ignore` crate, the same matcher ripgrep uses). Ignored paths work normally in
//! the cache; they are only left out of flushes. Hidden files are not ignored: `.snapshots/`,
//! `.workflow_status/` and `.workflow_logs/` are ordinary project data.

use std::path::Path;

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::relpath::RelPath;

/// Never written back, whatever the configuration says. `.sipfs/` folders below the root are
/// copies of a mirror folder's control folder (a snapshot of the project copies it along).
pub const DEFAULT_RULES: &[&str] = &[
    "__pycache__/",
    ".DS_Store",
    "Thumbs.db",
    ".sync_log.json",
    ".sipfs/",
];

/// The name of the per-project rules file, read from the project root.
pub const IGNORE_FILE: &str = ".sipfsignore";

/// The name sipfs reserves at the root of a mount for its control files.
pub const CONTROL_DIR: &str = ".sipfs";

#[derive(Debug, Clone)]
pub struct IgnoreRules {
    matcher: Gitignore,
}

#[derive(Debug, thiserror::Error)]
#[error("ignore rule {rule:?}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

impl IgnoreRules {
    /// The default rules plus `extra` rules (gitignore lines) plus the lines of `project_file`.
    pub fn new(extra: &[String], project_file: Option<&str>) -> Result<Self, RuleError> {
        // Matching is done on relative paths only; the root given here is never touched.
        let mut b = GitignoreBuilder::new(Path::new("/"));
        let lines = DEFAULT_RULES
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .chain(
                project_file
                    .into_iter()
                    .flat_map(|t| t.lines().map(str::to_owned)),
            );
        for line in lines {
            b.add_line(None, &line).map_err(|e| RuleError {
                rule: line.clone(),
                message: e.to_string(),
            })?;
        }
        let matcher = b.build().map_err(|e| RuleError {
            rule: String::new(),
            message: e.to_string(),
        })?;
        Ok(IgnoreRules { matcher })
    }

    pub fn defaults() -> Self {
        Self::new(&[], None).expect("built-in rules are valid")
    }

    /// True when `path` (or a directory above it) must never be written back.
    pub fn is_ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        if path.is_root() {
            return false;
        }
        if path.components().next() == Some(CONTROL_DIR) {
            return true;
        }
        self.matcher
            .matched_path_or_any_parents(Path::new(path.as_str()), is_dir)
            .is_ignore()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn defaults_cover_the_original_list() {
        let r = IgnoreRules::defaults();
        assert!(r.is_ignored(&p("__pycache__"), true));
        assert!(r.is_ignored(&p("src/__pycache__/m.cpython-311.pyc"), false));
        assert!(r.is_ignored(&p("a/.DS_Store"), false));
        assert!(r.is_ignored(&p("Thumbs.db"), false));
        assert!(r.is_ignored(&p(".sync_log.json"), false));
        assert!(r.is_ignored(&p(".sipfs/control"), false));
    }

    #[test]
    fn hidden_project_folders_are_synced() {
        let r = IgnoreRules::defaults();
        for s in [
            ".snapshots/step1.zip",
            ".workflow_status/step1.done",
            ".workflow_logs/run.log",
            "workflow_state.json",
            ".hidden",
        ] {
            assert!(!r.is_ignored(&p(s), false), "{s} must be synced");
        }
    }

    #[test]
    fn user_rules_in_gitignore_syntax() {
        let r =
            IgnoreRules::new(&["*.tmp".into()], Some("scratch/\n!keep.tmp\n# comment\n")).unwrap();
        assert!(r.is_ignored(&p("x/y.tmp"), false));
        assert!(!r.is_ignored(&p("keep.tmp"), false));
        assert!(r.is_ignored(&p("scratch/big.bin"), false));
        assert!(!r.is_ignored(&p("scratchpad.txt"), false));
    }
}
