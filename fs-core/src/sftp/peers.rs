//! Which Unix socket is connected to which: the kernel's `sock_diag` netlink interface (what
//! `ss -x` shows as "Peer"), asked once for every socket with `UDIAG_SHOW_PEER`.

use std::collections::HashMap;
use std::io;

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_PEER: u16 = 2;
/// `struct nlmsghdr`, then `struct unix_diag_msg`.
const HEADER: usize = 16;
const DIAG_MSG: usize = 16;

/// Every Unix stream socket's inode, mapped to its peer's.
pub fn unix_socket_peers() -> io::Result<HashMap<u32, u32>> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is closed by this owner alone.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);

    let mut req = Vec::with_capacity(HEADER + 24);
    req.extend_from_slice(&((HEADER + 24) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, padding
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    req.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]); // cookie
                                      // SAFETY: the address is a zeroed sockaddr_nl with its family set; the buffer is `req`.
    let sent = unsafe {
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            raw,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut peers = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv(2) into `buf`, within its length.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= HEADER {
            let len = u32_at(msgs, 0) as usize;
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            if len < HEADER || len > msgs.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a malformed sock_diag reply",
                ));
            }
            match kind {
                NLMSG_DONE => return Ok(peers),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(msgs[HEADER..HEADER + 4].try_into().expect("4"));
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => {
                    if let Some((ino, peer)) = peer_of(&msgs[HEADER..len]) {
                        peers.insert(ino, peer);
                    }
                }
            }
            msgs = &msgs[align(len).min(msgs.len())..];
        }
    }
}

/// A `unix_diag_msg` and its attributes: the socket's inode and its peer's, if it has one.
fn peer_of(msg: &[u8]) -> Option<(u32, u32)> {
    if msg.len() < DIAG_MSG {
        return None;
    }
    let ino = u32_at(msg, 4);
    let mut attrs = &msg[DIAG_MSG..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == UNIX_DIAG_PEER && len >= 8 {
            return Some((ino, u32_at(attrs, 4)));
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Netlink messages and attributes start on 4-byte boundaries.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn inode(fd: i32) -> u32 {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let s = link.to_str().unwrap();
        s["socket:[".len()..s.len() - 1].parse().unwrap()
    }

    #[test]
    fn each_end_of_a_socket_pair_is_the_others_peer() {
        let (a, b) = UnixStream::pair().unwrap();
        let (ia, ib) = (inode(a.as_raw_fd()), inode(b.as_raw_fd()));
        let peers = unix_socket_peers().unwrap();
        assert_eq!(peers.get(&ia), Some(&ib));
        assert_eq!(peers.get(&ib), Some(&ia));
    }
}
