//! Names as the OS has them, and as the engine keeps them.
//!
//! On Linux a name is any bytes but `/` and NUL; the engine, the journal and the reports keep
//! names as UTF-8 text. A name that is not UTF-8 is kept with each byte that is not part of a
//! valid character written as one character of a private-use block (U+10FF80 + the byte's
//! value above 0x80). Characters of that block that a name really contains are written so too,
//! byte by byte, so the mapping goes both ways without loss: the mount, the cache tree and the
//! share see the original bytes (`to_os`), and nothing else needs to know.
//!
//! A share that takes only Unicode names (SMB) refuses such a name; the flush then reports it
//! by path, as it does names Windows refuses.

use std::borrow::Cow;
use std::ffi::OsStr;

/// The block escaped bytes go to: U+10FF80 ..= U+10FFFF, one character per byte 0x80 ..= 0xFF
/// (bytes below 0x80 are always valid UTF-8 on their own).
const BASE: u32 = 0x10FF00;

fn is_escape(c: char) -> bool {
    (BASE + 0x80..=BASE + 0xFF).contains(&(c as u32))
}

/// Whether `s` may hold a character of the escape block: each is encoded starting with 0xF4
/// (as are the last 65 536 code points). A byte scan, so that the names of nearly every path
/// built (every stat of a cached file builds one) are told apart without decoding them.
fn may_hold_escapes(s: &str) -> bool {
    s.as_bytes().contains(&0xF4)
}

fn escape(b: u8) -> char {
    char::from_u32(BASE + u32::from(b)).expect("in the private-use plane")
}

/// Appends `s` to `out`, escaping the characters of the escape block itself.
fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        if is_escape(c) {
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                out.push(escape(b));
            }
        } else {
            out.push(c);
        }
    }
}

/// The engine's form of the name `bytes`.
pub fn from_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !is_escaped(s) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_text(&mut out, s);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                push_text(
                    &mut out,
                    std::str::from_utf8(valid).expect("valid up to here"),
                );
                let bad = e.error_len().unwrap_or(after.len());
                for &b in &after[..bad] {
                    out.push(escape(b));
                }
                rest = &after[bad..];
            }
        }
    }
    Cow::Owned(out)
}

/// The bytes the engine's name `s` stands for.
pub fn to_bytes(s: &str) -> Cow<'_, [u8]> {
    if !is_escaped(s) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if is_escape(c) {
            out.push((c as u32 - BASE) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// True when `s` stands for bytes that are not UTF-8 (which a Unicode-only share refuses).
pub fn is_escaped(s: &str) -> bool {
    may_hold_escapes(s) && s.chars().any(is_escape)
}

/// The engine's form of an OS name.
#[cfg(unix)]
pub fn from_os(name: &OsStr) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    from_bytes(name.as_bytes())
}

/// Windows names are UTF-16; one with an unpaired surrogate (rare) is shown replaced.
#[cfg(not(unix))]
pub fn from_os(name: &OsStr) -> Cow<'_, str> {
    name.to_string_lossy()
}

/// The OS name the engine's name `s` stands for.
#[cfg(unix)]
pub fn to_os(s: &str) -> Cow<'_, OsStr> {
    use std::os::unix::ffi::OsStrExt;
    match to_bytes(s) {
        Cow::Borrowed(b) => Cow::Borrowed(OsStr::from_bytes(b)),
        Cow::Owned(b) => Cow::Owned(std::os::unix::ffi::OsStringExt::from_vec(b)),
    }
}

#[cfg(not(unix))]
pub fn to_os(s: &str) -> Cow<'_, OsStr> {
    Cow::Borrowed(OsStr::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_stays_as_it_is() {
        assert!(matches!(
            from_bytes(b"results.csv"),
            Cow::Borrowed("results.csv")
        ));
        assert!(matches!(to_bytes("r\u{e9}sum\u{e9}"), Cow::Borrowed(_)));
    }

    #[test]
    fn latin1_bytes_are_kept() {
        let name = b"r\xe9sum\xe9.txt";
        let kept = from_bytes(name);
        assert!(is_escaped(&kept));
        assert_eq!(kept.chars().count(), name.len());
        assert_eq!(&*to_bytes(&kept), name);
    }

    proptest! {
        /// Any bytes go there and back unchanged, and different names stay different.
        #[test]
        fn any_bytes_go_there_and_back(a in prop::collection::vec(any::<u8>(), 0..40),
                                       b in prop::collection::vec(any::<u8>(), 0..40)) {
            let (ka, kb) = (from_bytes(&a).into_owned(), from_bytes(&b).into_owned());
            prop_assert_eq!(&*to_bytes(&ka), &a[..]);
            prop_assert_eq!(ka == kb, a == b);
        }

        /// Names made of the escape block's own characters too.
        #[test]
        fn the_escape_block_itself_goes_there_and_back(cs in prop::collection::vec(
            prop_oneof![Just('\u{10FF80}'), Just('\u{10FFFF}'), Just('a'), Just('\u{e9}')], 0..12)) {
            let s: String = cs.into_iter().collect();
            let kept = from_bytes(s.as_bytes()).into_owned();
            prop_assert_eq!(&*to_bytes(&kept), s.as_bytes());
        }
    }
}
