//! Finding how sshfs reaches the server behind a share: the mount's source names the folder
//! on the server, and the `ssh` process sshfs runs names everything needed to connect.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::volume::{mount_entry, MountEntry};

pub struct Found {
    /// The `ssh` command line to run: sshfs's own, made unable to prompt.
    pub command: Vec<String>,
    /// The share's folder on the server.
    pub remote_root: Vec<u8>,
    /// `user@host`, for the log.
    pub server: String,
}

/// How to list `share` over SFTP, if it is on an sshfs mount whose `ssh` process can be found.
pub fn sshfs_of(share: &Path) -> Option<Found> {
    let share = fs::canonicalize(share).ok()?;
    let mount = mount_entry(&share).ok()?;
    if mount.fs_type != "fuse.sshfs" {
        return None;
    }
    let (server, remote_base) = split_source(&mount.source)?;
    let below = share.strip_prefix(&mount.mount_point).ok()?;
    let remote_root = join_remote(remote_base, below);
    let Some(ssh) = ssh_of_sshfs(&mount) else {
        debug!(mount = %mount.mount_point.display(), "no ssh process of this sshfs mount was found");
        return None;
    };
    Some(Found {
        command: no_prompts(ssh),
        remote_root,
        server: server.to_owned(),
    })
}

/// `[user@]host:path` (the host perhaps `[v6 address]`) into the server and the path, which is
/// relative to the login folder unless it starts with `/` (empty: the login folder).
pub fn split_source(source: &str) -> Option<(&str, &str)> {
    let host_end = match source.find('[') {
        Some(open) if !source[..open].contains(':') => open + source[open..].find(']')?,
        _ => 0,
    };
    let colon = host_end + source[host_end..].find(':')?;
    Some((&source[..colon], &source[colon + 1..]))
}

/// The server's path of the folder `below` the mounted `base`.
pub fn join_remote(base: &str, below: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut p = base.as_bytes().to_vec();
    for c in below.components() {
        if !p.is_empty() && !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(c.as_os_str().as_bytes());
    }
    p
}

/// `BatchMode` right after the program: a listing must never wait for a password prompt
/// (`ssh` takes the first value given for an option).
pub fn no_prompts(mut ssh: Vec<String>) -> Vec<String> {
    ssh.insert(1.min(ssh.len()), "-oBatchMode=yes".into());
    ssh
}

/// The command line of the `ssh` process of the sshfs process serving `mount`.
///
/// sshfs starts `ssh` before it forks into the background, so the process left serving the
/// mount is not ssh's parent (ssh is handed to init). What ties them is the socket pair
/// between them: ssh's standard input is one end, and the serving process holds the other.
/// The kernel names each end's peer (`sock_diag`, as `ss -x` shows it).
fn ssh_of_sshfs(mount: &MountEntry) -> Option<Vec<String>> {
    let procs = processes();
    let sshfs = procs.iter().find(|p| {
        p.comm == "sshfs"
            && p.argv.iter().skip(1).any(|a| {
                let arg = Path::new(a);
                let abs = if arg.is_absolute() {
                    arg.to_path_buf()
                } else {
                    p.cwd.join(arg)
                };
                fs::canonicalize(abs).is_ok_and(|c| c == mount.mount_point)
                    || arg == mount.mount_point
            })
    })?;
    // A reconnect's ssh is the serving process's own child.
    if let Some(child) = procs
        .iter()
        .find(|p| p.ppid == sshfs.pid && p.comm == "ssh")
    {
        return Some(child.argv.clone());
    }
    let held = socket_inodes(sshfs.pid);
    let peers = super::peers::unix_socket_peers()
        .map_err(|e| debug!(error = %e, "could not ask the kernel for socket peers"))
        .ok()?;
    procs
        .iter()
        .filter(|p| p.comm == "ssh")
        .find(|p| {
            socket_inode(&format!("/proc/{}/fd/0", p.pid))
                .and_then(|ino| peers.get(&ino))
                .is_some_and(|peer| held.contains(peer))
        })
        .map(|p| p.argv.clone())
}

/// The inode of the socket the file descriptor link `fd` names.
fn socket_inode(fd: &str) -> Option<u32> {
    let target = fs::read_link(fd).ok()?;
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of every socket process `pid` holds.
fn socket_inodes(pid: u32) -> Vec<u32> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| socket_inode(fd.path().to_str()?))
        .collect()
}

struct Process {
    pid: u32,
    ppid: u32,
    comm: String,
    argv: Vec<String>,
    cwd: PathBuf,
}

/// This user's processes that can be read (others' are skipped).
fn processes() -> Vec<Process> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let base = e.path();
            let stat = fs::read_to_string(base.join("stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            let argv = fs::read(base.join("cmdline"))
                .ok()?
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let cwd = fs::read_link(base.join("cwd")).unwrap_or_default();
            Some(Process {
                pid,
                ppid,
                comm,
                argv,
                cwd,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_names_the_server_and_its_folder() {
        assert_eq!(
            split_source("lab@files.example.org:/srv/projects"),
            Some(("lab@files.example.org", "/srv/projects"))
        );
        assert_eq!(split_source("host:"), Some(("host", "")));
        assert_eq!(split_source("host:rel/dir"), Some(("host", "rel/dir")));
        assert_eq!(
            split_source("u@[fe80::1]:/x:y"),
            Some(("u@[fe80::1]", "/x:y"))
        );
        assert_eq!(split_source("no-colon"), None);
    }

    #[test]
    fn a_project_below_the_mount_point_is_below_the_source_folder() {
        assert_eq!(join_remote("/srv", Path::new("a/b")), b"/srv/a/b");
        assert_eq!(join_remote("/", Path::new("a")), b"/a");
        assert_eq!(join_remote("", Path::new("a")), b"a");
        assert_eq!(join_remote("/srv", Path::new("")), b"/srv");
    }

    #[test]
    fn the_listing_session_never_prompts() {
        let cmd = no_prompts(vec!["ssh".into(), "-p".into(), "22".into(), "h".into()]);
        assert_eq!(cmd, ["ssh", "-oBatchMode=yes", "-p", "22", "h"]);
    }

    #[test]
    fn mountinfo_lines_give_an_sshfs_mounts_source() {
        let line = "77 30 0:52 / /mnt/my\\040share rw,nosuid,nodev,relatime shared:1 - fuse.sshfs lab@host:/srv/p rw,user_id=0,group_id=0";
        let m = crate::volume::parse_mountinfo_line(line).unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt/my share"));
        assert_eq!(m.fs_type, "fuse.sshfs");
        assert_eq!(m.source, "lab@host:/srv/p");
    }
}
