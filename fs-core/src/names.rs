//! Names sipfs itself puts on the share: temporaries of a flush and kept conflict versions.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Local};

const TEMP_MARK: &str = ".sipfs-tmp-";
const CONFLICT_MARK: &str = ".sipfs-conflict-";

/// A fresh temporary name for staging `name` in the same directory. It starts with a dot so
/// that file managers hide it, and carries the process id so two machines never collide.
pub fn temp_name(name: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let short = short(name);
    format!(".{short}{TEMP_MARK}{}-{n}", std::process::id())
}

/// The part of `name` a temporary's name carries: at most 150 bytes, whole characters, so that
/// the temporary stays within 255 bytes (Linux, and the Samba shares on it) and 255 UTF-16
/// units (NTFS). 150 characters would not: 80 of Japanese are 240 bytes in UTF-8 (WinFsp's
/// create_namelen_test, ported in fs-windows/tests/wine, found a flush failing on them).
fn short(name: &str) -> &str {
    let mut end = name.len().min(150);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A fresh private name for the version of `name` that a commit moves aside
/// (`flush/capture.rs`): a temporary's name, so that it is never shown nor synced, marked as a
/// capture, and with a random part, since a capture must never land on another machine's
/// (process ids repeat across machines).
pub fn capture_name(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let short = short(name);
    format!(
        ".{short}{TEMP_MARK}{CAPTURE_MARK}{}-{:016x}",
        std::process::id(),
        h.finish()
    )
}

/// True for a name [`capture_name`] made (ours or another machine's).
pub fn is_capture_name(name: &str) -> bool {
    is_temp_name(name) && name.contains(&format!("{TEMP_MARK}{CAPTURE_MARK}"))
}

/// True for a name [`capture_name`] made for `name` (ours or another machine's): a commit of
/// `name` is under way, or was interrupted, somewhere.
pub fn is_capture_of(candidate: &str, name: &str) -> bool {
    is_capture_name(candidate)
        && candidate
            .strip_prefix('.')
            .and_then(|rest| rest.strip_prefix(short(name)))
            .is_some_and(|rest| rest.starts_with(&format!("{TEMP_MARK}{CAPTURE_MARK}")))
}

const CAPTURE_MARK: &str = "cap-";

/// True for a temporary written by a flush (ours or another machine's). Such names are
/// never shown in the mount.
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// `data.xlsx` → `data.sipfs-conflict-20261125-143000.xlsx`; `Makefile` →
/// `Makefile.sipfs-conflict-20261125-143000`. `attempt` > 0 adds `-N` for a free name.
pub fn conflict_name(name: &str, when: DateTime<Local>, attempt: u32) -> String {
    let stamp = when.format("%Y%m%d-%H%M%S");
    let suffix = if attempt == 0 {
        String::new()
    } else {
        format!("-{}", attempt + 1)
    };
    // A leading dot is part of the stem, not an extension separator (".bashrc").
    match name.rfind('.').filter(|&i| i > 0) {
        Some(i) => format!("{}{CONFLICT_MARK}{stamp}{suffix}{}", &name[..i], &name[i..]),
        None => format!("{name}{CONFLICT_MARK}{stamp}{suffix}"),
    }
}

pub fn is_conflict_name(name: &str) -> bool {
    name.contains(CONFLICT_MARK)
}

/// Why a Windows (SMB) share would refuse `name`, if it would.
pub fn windows_name_problem(name: &str) -> Option<&'static str> {
    const RESERVED: &[&str] = &[
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    if name.ends_with('.') || name.ends_with(' ') {
        return Some("ends with a dot or a space");
    }
    if crate::os_names::is_escaped(name) {
        return Some("is not valid Unicode (bytes only Linux and macOS allow in names)");
    }
    if name
        .chars()
        .any(|c| matches!(c, '<' | '>' | ':' | '"' | '\\' | '|' | '?' | '*') || (c as u32) < 32)
    {
        return Some("contains one of < > : \" \\ | ? * or a control character");
    }
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Some("is a device name Windows reserves (CON, PRN, AUX, NUL, COM1-9, LPT1-9)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn when() -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 11, 25, 14, 30, 0).unwrap()
    }

    #[test]
    fn temporaries_of_long_names_stay_within_255_bytes() {
        for name in ["x".repeat(255), "ぁ".repeat(85), "é".repeat(127)] {
            for t in [temp_name(&name), capture_name(&name)] {
                assert!(t.len() <= 255, "{} bytes: {t}", t.len());
            }
            assert!(is_capture_of(&capture_name(&name), &name));
        }
    }

    #[test]
    fn captures_are_temporaries_told_apart_by_the_name_they_hold() {
        let cap = capture_name("sheet.csv");
        assert!(is_temp_name(&cap) && is_capture_name(&cap), "{cap}");
        assert!(is_capture_of(&cap, "sheet.csv"));
        assert!(!is_capture_of(&cap, "sheet.cs"));
        assert!(!is_capture_of(&capture_name("sheet.csv.bak"), "sheet.csv"));
        // Two captures of one name never share a name, on one machine or two.
        assert_ne!(cap, capture_name("sheet.csv"));
        let temp = temp_name("sheet.csv");
        assert!(is_temp_name(&temp) && !is_capture_name(&temp));
    }

    #[test]
    fn names_windows_refuses() {
        assert_eq!(windows_name_problem("results.csv"), None);
        assert!(windows_name_problem("aux").is_some());
        assert!(windows_name_problem("a:b").is_some());
        let latin1 = crate::os_names::from_bytes(b"r\xe9sum\xe9.txt");
        assert!(windows_name_problem(&latin1).unwrap().contains("Unicode"));
        assert_eq!(windows_name_problem("r\u{e9}sum\u{e9}.txt"), None);
    }

    #[test]
    fn conflict_names_keep_the_extension() {
        assert_eq!(
            conflict_name("data.xlsx", when(), 0),
            "data.sipfs-conflict-20261125-143000.xlsx"
        );
        assert_eq!(
            conflict_name("Makefile", when(), 0),
            "Makefile.sipfs-conflict-20261125-143000"
        );
        assert_eq!(
            conflict_name(".bashrc", when(), 1),
            ".bashrc.sipfs-conflict-20261125-143000-2"
        );
        assert!(is_conflict_name(&conflict_name("a.b.c", when(), 0)));
    }

    #[test]
    fn temp_names_are_recognized_and_unique() {
        let a = temp_name("x.db");
        let b = temp_name("x.db");
        assert_ne!(a, b);
        assert!(is_temp_name(&a));
        assert!(!is_temp_name("x.db"));
    }

    #[test]
    fn windows_refusals() {
        for bad in ["a:b", "CON", "aux.txt", "trail.", "trail ", "q?"] {
            assert!(windows_name_problem(bad).is_some(), "{bad}");
        }
        for ok in ["console.txt", "data.xlsx", ".snapshots", "COM10"] {
            assert!(windows_name_problem(ok).is_none(), "{ok}");
        }
    }
}
