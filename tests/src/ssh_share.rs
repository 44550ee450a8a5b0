//! A real network share for tests: an sshd on 127.0.0.1 (own host key, own config, a free
//! port), reached through sshfs as an unprivileged user, so the server's permission checks
//! apply. Stopping the server is how the share "goes away"; sshfs reconnects once it is back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's SFTP server program.
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// The remote account the share is reached as.
pub const SHARE_USER: &str = "sipfsshare";

pub struct SshShare {
    pub dir: PathBuf,
    /// The exported folder, as the server sees it (tests edit it "as someone else").
    pub export: PathBuf,
    /// Where sshfs mounts it: the backing folder sipfs is given.
    pub mnt: PathBuf,
    pub port: u16,
    sshd: Option<Child>,
    /// When set, sshfs reaches the server through a relay that delays every chunk.
    latency: Option<Duration>,
    /// sshfs checks that the server is alive only every minute (the default is never), so it
    /// takes minutes to notice a frozen server, as users' mounts do.
    patient: bool,
}

/// A TCP relay on 127.0.0.1 that holds every chunk for `delay` before passing it on: a slow
/// link between sshfs and the server. Returns the port to connect to.
fn slow_link(target: u16, delay: Duration) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                std::thread::sleep(delay);
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl SshShare {
    /// Starts a server exporting a fresh folder owned by [`SHARE_USER`] and mounts it.
    pub fn start(dir: &Path) -> SshShare {
        Self::start_with_latency(dir, None)
    }

    /// The same, with an sshfs that takes minutes to notice a server that stopped answering.
    pub fn start_patient(dir: &Path) -> SshShare {
        Self::start_with(dir, None, true)
    }

    /// The same, reached over a slow link that delays every chunk by `latency`.
    pub fn start_with_latency(dir: &Path, latency: Option<Duration>) -> SshShare {
        Self::start_with(dir, latency, false)
    }

    fn start_with(dir: &Path, latency: Option<Duration>, patient: bool) -> SshShare {
        crate::require_tools(&["sshd", "sshfs", "ssh-keygen"]);
        if Command::new("id")
            .arg(SHARE_USER)
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
        {
            let _ = Command::new("useradd")
                .args(["-M", "-s", "/bin/sh", SHARE_USER])
                .status();
        }
        // No password, but not locked: sshd refuses locked accounts even for key logins.
        run(Command::new("usermod").args(["-p", "*", SHARE_USER]));
        let dir = dir.join("ssh");
        let export = dir.join("export");
        let mnt = dir.join("sshfs");
        fs::create_dir_all(&export).unwrap();
        fs::create_dir_all(&mnt).unwrap();
        // The server reads keys as the share user: the folders must be traversable.
        let mut p = dir.clone();
        while p.parent().is_some() && p != Path::new("/") {
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            if mode & 0o005 != 0o005 && p.starts_with(std::env::temp_dir()) {
                fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o755)).unwrap();
            }
            p = p.parent().unwrap().to_path_buf();
        }
        let uid = uid_of(SHARE_USER);
        std::os::unix::fs::chown(&export, Some(uid), Some(uid)).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("host_key")));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("client_key")));
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        fs::set_permissions(
            dir.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let port = crate::free_port();
        // The server's own log of each request, for tests that count them: the external
        // sftp-server at VERBOSE (internal-sftp's log goes nowhere we can read).
        let sftp_log = dir.join("sftp.log");
        fs::write(&sftp_log, "").unwrap();
        fs::set_permissions(&sftp_log, fs::Permissions::from_mode(0o666)).unwrap();
        let subsystem = if Path::new(SFTP_SERVER).exists() {
            format!("{SFTP_SERVER} -l VERBOSE -e 2>>{}", sftp_log.display())
        } else {
            "internal-sftp".to_owned()
        };
        fs::write(
            dir.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nStrictModes no\nPermitRootLogin no\nAllowUsers {SHARE_USER}\n\
                 Subsystem sftp {subsystem}\nLogLevel ERROR\n",
                hk = dir.join("host_key").display(),
                pid = dir.join("sshd.pid").display(),
                ak = dir.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        // sshd wants its privilege-separation folder.
        fs::create_dir_all("/run/sshd").unwrap();
        let mut share = SshShare {
            dir,
            export,
            mnt,
            port,
            sshd: None,
            latency,
            patient,
        };
        share.start_server();
        share.mount();
        share
    }

    pub fn start_server(&mut self) {
        let sshd = if Path::new("/usr/sbin/sshd").exists() {
            "/usr/sbin/sshd"
        } else {
            "sshd"
        };
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                // Appended to: a restarted server's requests count on from the first one's.
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("sshd.log"))
                    .unwrap(),
            );
        self.sshd = Some(cmd.spawn().expect("starting sshd"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The share goes away: the server and all its connections stop. (Each connection is a
    /// child in a session of its own, so the whole process tree is looked up.)
    pub fn stop_server(&mut self) {
        self.signal_server(libc::SIGKILL);
        if let Some(mut c) = self.sshd.take() {
            let _ = c.wait();
        }
    }

    /// The server freezes: it and its connections stop (SIGSTOP) with their sockets open, as
    /// a hung file server or a dropped VPN looks to a client.
    pub fn freeze_server(&self) {
        self.signal_server(libc::SIGSTOP);
    }

    pub fn thaw_server(&self) {
        self.signal_server(libc::SIGCONT);
    }

    fn signal_server(&self, signal: i32) {
        let Some(c) = &self.sshd else { return };
        let mut tree = vec![c.id()];
        let mut i = 0;
        while i < tree.len() {
            tree.extend(children_of(tree[i]));
            i += 1;
        }
        for pid in tree.iter().rev() {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(*pid as i32, signal) };
        }
    }

    /// The server's requests of one kind so far whose line holds `holding`, as its log
    /// (sftp-server's `VERBOSE` level) names them: `lstat name`, `opendir`, `open`...
    pub fn sftp_requests(&self, kind: &str, holding: &str) -> usize {
        assert!(
            Path::new(SFTP_SERVER).exists(),
            "counting requests needs {SFTP_SERVER} (Debian's openssh-sftp-server)"
        );
        let log = fs::read_to_string(self.dir.join("sftp.log")).unwrap_or_default();
        let prefix = format!("{kind} ");
        log.lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(holding))
            .count()
    }

    fn mount(&self) {
        self.mount_at(&self.mnt, "");
    }

    /// The export mounted once more at `mnt`, with sshfs's options and `extra` ones
    /// (`,umask=077`...).
    pub fn mount_at(&self, mnt: &Path, extra: &str) {
        let port = match self.latency {
            Some(d) => slow_link(self.port, d),
            None => self.port,
        };
        run(Command::new("sshfs")
            .arg(format!("{SHARE_USER}@127.0.0.1:{}", self.export.display()))
            .arg(mnt)
            .args(["-p", &port.to_string()])
            .arg("-o")
            .arg(format!(
                "IdentityFile={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,\
                 reconnect,ServerAliveInterval={alive},ServerAliveCountMax=3,ConnectTimeout=3,\
                 dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,\
                 allow_other,LogLevel=ERROR{extra}",
                self.dir.join("client_key").display(),
                alive = if self.patient { 60 } else { 1 },
            )));
    }
}

impl Drop for SshShare {
    fn drop(&mut self) {
        self.thaw_server();
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        self.stop_server();
    }
}

/// Gives files the test put in the export to the share's user, as if they were written there.
pub fn chown_to_share_user(path: &Path) {
    let st = Command::new("chown")
        .args(["-R", SHARE_USER])
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success(), "chown {}", path.display());
}
