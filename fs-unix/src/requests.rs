//! How many requests of each kind the kernel has sent this mount, shown in `.sipfs/status`
//! as `kernel_requests`. What the kernel's caches spare is a count of round trips, so it can
//! be checked exactly (the tests count; they never time).

use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of request, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Req {
    Lookup,
    Getattr,
    Setattr,
    Create,
    Open,
    Release,
    Flush,
    Xattr,
    Ioctl,
    Opendir,
    Readdir,
    Readdirplus,
    Mkdir,
    Unlink,
    Rmdir,
    Rename,
    Fsync,
    Other,
}

const ALL: [Req; 18] = [
    Req::Lookup,
    Req::Getattr,
    Req::Setattr,
    Req::Create,
    Req::Open,
    Req::Release,
    Req::Flush,
    Req::Xattr,
    Req::Ioctl,
    Req::Opendir,
    Req::Readdir,
    Req::Readdirplus,
    Req::Mkdir,
    Req::Unlink,
    Req::Rmdir,
    Req::Rename,
    Req::Fsync,
    Req::Other,
];

impl Req {
    fn name(self) -> &'static str {
        match self {
            Req::Lookup => "lookup",
            Req::Getattr => "getattr",
            Req::Setattr => "setattr",
            Req::Create => "create",
            Req::Open => "open",
            Req::Release => "release",
            Req::Flush => "flush",
            Req::Xattr => "xattr",
            Req::Ioctl => "ioctl",
            Req::Opendir => "opendir",
            Req::Readdir => "readdir",
            Req::Readdirplus => "readdirplus",
            Req::Mkdir => "mkdir",
            Req::Unlink => "unlink",
            Req::Rmdir => "rmdir",
            Req::Rename => "rename",
            Req::Fsync => "fsync",
            Req::Other => "other",
        }
    }
}

#[derive(Debug, Default)]
pub struct Requests([AtomicU64; ALL.len()]);

impl Requests {
    pub fn count(&self, r: Req) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        ALL.iter()
            .map(|&r| {
                (
                    r.name().to_owned(),
                    self.0[r as usize].load(Ordering::Relaxed).into(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_counter_and_name() {
        let r = Requests::default();
        for (i, &k) in ALL.iter().enumerate() {
            assert_eq!(k as usize, i, "{k:?} out of place");
            for _ in 0..=i {
                r.count(k);
            }
        }
        let j = r.to_json();
        for (i, &k) in ALL.iter().enumerate() {
            assert_eq!(j[k.name()], (i + 1) as u64, "{k:?}");
        }
    }
}
