//! An SMB share for tests: Samba's smbd on 127.0.0.1 (own configuration, a free port, names
//! case-insensitive as on Windows, vetoed names), reached through `rclone mount :smb:`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmbShare {
    /// The exported folder, as the server sees it.
    pub export: PathBuf,
    /// Where rclone mounts it: the backing folder sipfs is given.
    pub mnt: PathBuf,
    smbd: Child,
    rclone: Child,
}

impl SmbShare {
    pub fn start(dir: &Path) -> SmbShare {
        crate::require_tools(&["smbd", "rclone"]);
        let dir = dir.join("smb");
        let run = dir.join("run");
        let export = dir.join("export");
        let mnt = dir.join("rclone");
        for d in [&run, &export, &mnt] {
            fs::create_dir_all(d).unwrap();
        }
        fs::set_permissions(&export, fs::Permissions::from_mode(0o777)).unwrap();
        let port = crate::free_port();
        let conf = dir.join("smb.conf");
        let r = run.display();
        fs::write(
            &conf,
            format!(
                "[global]\n smb ports = {port}\n bind interfaces only = yes\n interfaces = lo\n\
                 pid directory = {r}\n lock directory = {r}\n state directory = {r}\n\
                 cache directory = {r}\n private dir = {r}\n ncalrpc dir = {r}/ncalrpc\n\
                 log file = {r}/log.%m\n passdb backend = tdbsam:{r}/passdb.tdb\n\
                 map to guest = Bad User\n guest account = nobody\n server min protocol = SMB2\n\
                 disable netbios = yes\n server role = standalone server\n load printers = no\n\
                 printing = bsd\n printcap name = /dev/null\n\
                 [proj]\n path = {e}\n read only = no\n guest ok = yes\n force user = root\n\
                 case sensitive = no\n veto files = /*.vetoed/\n",
                e = export.display()
            ),
        )
        .unwrap();
        let smbd_bin = if Path::new("/usr/sbin/smbd").exists() {
            "/usr/sbin/smbd"
        } else {
            "smbd"
        };
        let smbd = Command::new(smbd_bin)
            .args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("smbd.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting smbd");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smbd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rclone = Command::new("rclone")
            .args(["mount", ":smb:proj"])
            .arg(&mnt)
            .args([
                "--smb-host",
                "127.0.0.1",
                "--smb-port",
                &port.to_string(),
                "--smb-user",
                "guest",
            ])
            .args([
                "--vfs-cache-mode",
                "off",
                "--dir-cache-time",
                "0s",
                "--attr-timeout",
                "0s",
            ])
            .args(["--config", "/dev/null", "--log-level", "ERROR"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("rclone.log")).unwrap())
            .spawn()
            .expect("starting rclone mount");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mounted = fs::read_to_string("/proc/self/mounts")
                .unwrap()
                .contains(&format!(" {} ", mnt.display()));
            if mounted {
                break;
            }
            assert!(Instant::now() < deadline, "rclone mount did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmbShare {
            export,
            mnt,
            smbd,
            rclone,
        }
    }
}

impl Drop for SmbShare {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = self.rclone.kill();
        let _ = self.rclone.wait();
        let _ = self.smbd.kill();
        let _ = self.smbd.wait();
    }
}
