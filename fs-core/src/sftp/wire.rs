//! The few SFTP version 3 packets a listing needs (draft-ietf-secsh-filexfer-02), as bytes.
//!
//! Every packet is a 4-byte big-endian length, a type byte, and for requests a 4-byte id that
//! the reply carries back, so requests can be in flight together and answered in any order.

use std::io;

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;

pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// An entry's attributes as the server sent them; absent fields are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    /// `st_mode`: type and permission bits.
    pub mode: Option<u32>,
    /// Whole seconds: version 3 has no finer times (sshfs shows the same).
    pub mtime: Option<u32>,
}

/// A request with an id: type, id, then `body`, framed.
pub fn request(kind: u8, id: u32, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + body.len());
    p.extend_from_slice(&(5 + body.len() as u32).to_be_bytes());
    p.push(kind);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(body);
    p
}

/// `INIT` asking for version 3 (it carries a version where other requests carry an id).
pub fn init() -> Vec<u8> {
    request(FXP_INIT, 3, &[])
}

/// An SFTP string: its length, then its bytes.
pub fn string(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + s.len());
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s);
    v
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed SFTP reply: {what}"),
    )
}

/// Reads a reply's fields front to back.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(bad("cut short"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub fn string(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn attrs(&mut self) -> io::Result<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.mode = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.u32()?; // atime
            a.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

/// A `STATUS` reply's code and message, as an error (`EOF` is not one, and is told apart by
/// the caller).
pub fn status_error(code: u32, message: &[u8], what: &str) -> io::Error {
    let kind = match code {
        FX_NO_SUCH_FILE => io::ErrorKind::NotFound,
        FX_PERMISSION_DENIED => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(
        kind,
        format!(
            "SFTP {what}: {} (status {code})",
            String::from_utf8_lossy(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs_bytes(flags: u32, fields: &[&[u8]]) -> Vec<u8> {
        let mut v = flags.to_be_bytes().to_vec();
        for f in fields {
            v.extend_from_slice(f);
        }
        v
    }

    #[test]
    fn a_request_is_framed_with_its_length_type_and_id() {
        let p = request(FXP_OPENDIR, 7, &string(b"a/b"));
        assert_eq!(
            p,
            [
                &[0, 0, 0, 12][..],
                &[FXP_OPENDIR],
                &[0, 0, 0, 7],
                &[0, 0, 0, 3],
                b"a/b"
            ]
            .concat()
        );
    }

    #[test]
    fn attributes_skip_what_is_not_needed_and_keep_the_rest() {
        let bytes = attrs_bytes(
            ATTR_SIZE | ATTR_UIDGID | ATTR_PERMISSIONS | ATTR_ACMODTIME | ATTR_EXTENDED,
            &[
                &1234u64.to_be_bytes(),
                &[0, 0, 3, 232, 0, 0, 3, 232],
                &0o100644u32.to_be_bytes(),
                &5u32.to_be_bytes(),
                &1_700_000_000u32.to_be_bytes(),
                &1u32.to_be_bytes(),
                &string(b"k"),
                &string(b"v"),
                b"tail",
            ],
        );
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.attrs().unwrap(),
            Attrs {
                size: Some(1234),
                mode: Some(0o100644),
                mtime: Some(1_700_000_000)
            }
        );
        assert_eq!(r.take(4).unwrap(), b"tail");
    }

    #[test]
    fn absent_fields_stay_absent_and_a_short_reply_is_an_error() {
        let bytes = attrs_bytes(ATTR_PERMISSIONS, &[&0o40755u32.to_be_bytes()]);
        let a = Reader::new(&bytes).attrs().unwrap();
        assert_eq!((a.size, a.mode, a.mtime), (None, Some(0o40755), None));
        let short = attrs_bytes(ATTR_SIZE, &[&[0, 0, 0]]);
        let e = Reader::new(&short).attrs().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn status_codes_become_the_errors_the_engine_classifies() {
        assert_eq!(
            status_error(FX_NO_SUCH_FILE, b"No such file", "opendir").kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            status_error(FX_PERMISSION_DENIED, b"", "opendir").kind(),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(
            status_error(4, b"Failure", "readdir").kind(),
            io::ErrorKind::Other
        );
    }
}
