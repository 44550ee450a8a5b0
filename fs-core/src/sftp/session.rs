//! One SFTP session over an `ssh` child process's pipes, shared by every thread that lists.
//!
//! Requests from many threads are written one after another on the child's stdin, each with
//! its own id; a reader thread hands each reply to the thread that waits for that id. So
//! folders listed together cost round trips together, as sshfs's own requests do.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{debug, warn};

use super::wire::{self, Attrs, Reader};

/// A reply that takes longer than this ends the session (the lister falls back to the mount,
/// whose calls have the share's own deadline). Long enough for a busy server on a slow link.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A reply's type and the bytes after its id.
type Reply = (u8, Vec<u8>);

/// What the reader thread and the requesting threads share.
struct Shared {
    waiting: Mutex<HashMap<u32, SyncSender<Reply>>>,
    /// Set when the child's output ended or made no sense: every request fails from then on.
    broken: AtomicBool,
}

pub struct Session {
    child: Mutex<Child>,
    stdin: Mutex<ChildStdin>,
    next_id: AtomicU32,
    shared: Arc<Shared>,
}

impl Session {
    /// Starts `command` (an `ssh ... -s sftp` line) and agrees on version 3.
    pub fn start(command: &[String]) -> io::Result<Session> {
        let (program, args) = command
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no ssh command"))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let handshake = (|| {
            stdin.write_all(&wire::init())?;
            stdin.flush()?;
            let (kind, body) = read_packet(&mut stdout)?;
            let version = Reader::new(&body).u32()?;
            if kind != wire::FXP_VERSION || version < 3 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the server answered INIT with type {kind}, version {version}"),
                ));
            }
            Ok(())
        })();
        if let Err(e) = handshake {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let shared = Arc::new(Shared {
            waiting: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        });
        let reader_shared = shared.clone();
        std::thread::Builder::new()
            .name("sipfs-sftp-reader".into())
            .spawn(move || read_replies(stdout, &reader_shared))?;
        Ok(Session {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            next_id: AtomicU32::new(1),
            shared,
        })
    }

    pub fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::Acquire)
    }

    /// Sends a request and returns where its reply will arrive.
    fn send(&self, kind: u8, body: &[u8]) -> io::Result<Receiver<Reply>> {
        if self.is_broken() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SFTP session ended",
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        self.shared.waiting.lock().insert(id, tx);
        // The reader marks the session broken before it lets go of the waiting requests: one
        // added after that would wait out the whole timeout.
        if self.is_broken() {
            self.shared.waiting.lock().remove(&id);
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SFTP session ended",
            ));
        }
        let r = {
            let mut stdin = self.stdin.lock();
            stdin
                .write_all(&wire::request(kind, id, body))
                .and_then(|()| stdin.flush())
        };
        if let Err(e) = r {
            self.shared.waiting.lock().remove(&id);
            self.end();
            return Err(e);
        }
        Ok(rx)
    }

    fn wait(&self, rx: Receiver<Reply>) -> io::Result<Reply> {
        match rx.recv_timeout(REPLY_TIMEOUT) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                warn!(
                    "the SFTP server did not answer in {} s",
                    REPLY_TIMEOUT.as_secs()
                );
                self.end();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the SFTP server did not answer",
                ))
            }
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the SFTP session ended",
            )),
        }
    }

    fn call(&self, kind: u8, body: &[u8]) -> io::Result<Reply> {
        let rx = self.send(kind, body)?;
        self.wait(rx)
    }

    /// The entries of the folder `path` on the server, with their attributes as the listing
    /// brought them (`.` and `..` left out).
    pub fn list(&self, path: &[u8]) -> io::Result<Vec<(Vec<u8>, Attrs)>> {
        let handle = match self.call(wire::FXP_OPENDIR, &wire::string(path))? {
            (wire::FXP_HANDLE, body) => Reader::new(&body).string()?.to_vec(),
            reply => return Err(unexpected(reply, "opendir")),
        };
        let handle_arg = wire::string(&handle);
        let mut out = Vec::new();
        let listed = loop {
            match self.call(wire::FXP_READDIR, &handle_arg) {
                Ok((wire::FXP_NAME, body)) => {
                    let mut r = Reader::new(&body);
                    let r = (|| {
                        for _ in 0..r.u32()? {
                            let name = r.string()?;
                            r.string()?; // the `ls -l` line
                            let attrs = r.attrs()?;
                            if name != b"." && name != b".." {
                                out.push((name.to_vec(), attrs));
                            }
                        }
                        Ok(())
                    })();
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
                Ok(reply) if is_eof(&reply) => break Ok(()),
                Ok(reply) => break Err(unexpected(reply, "readdir")),
                Err(e) => break Err(e),
            }
        };
        // Nobody waits for the close: its reply is dropped when it comes.
        if !self.is_broken() {
            let _ = self.send(wire::FXP_CLOSE, &handle_arg);
        }
        listed.map(|()| out)
    }

    /// What the server's lstat says of `path`.
    pub fn lstat(&self, path: &[u8]) -> io::Result<Attrs> {
        match self.call(wire::FXP_LSTAT, &wire::string(path))? {
            (wire::FXP_ATTRS, body) => Reader::new(&body).attrs(),
            reply => Err(unexpected(reply, "lstat")),
        }
    }

    /// No more requests: the child is stopped and every waiting request fails.
    pub fn end(&self) {
        self.shared.broken.store(true, Ordering::Release);
        let mut child = self.child.lock();
        let _ = child.kill();
        let _ = child.wait();
        self.shared.waiting.lock().clear();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

fn is_eof((kind, body): &Reply) -> bool {
    *kind == wire::FXP_STATUS && Reader::new(body).u32().ok() == Some(wire::FX_EOF)
}

fn unexpected((kind, body): Reply, what: &str) -> io::Error {
    if kind == wire::FXP_STATUS {
        let mut r = Reader::new(&body);
        if let (Ok(code), Ok(msg)) = (r.u32(), r.string()) {
            return wire::status_error(code, msg, what);
        }
    }
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("SFTP {what}: unexpected reply of type {kind}"),
    )
}

/// One packet: its type and what follows the type (for replies, the id first).
fn read_packet(from: &mut impl Read) -> io::Result<Reply> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    // OpenSSH's own limit is 256 KiB; anything far larger is not SFTP talking.
    if !(1..=4 << 20).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an SFTP packet of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    from.read_exact(&mut buf)?;
    let kind = buf.remove(0);
    Ok((kind, buf))
}

fn read_replies(mut stdout: impl Read, shared: &Shared) {
    loop {
        let (kind, body) = match read_packet(&mut stdout) {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "the SFTP session's output ended");
                break;
            }
        };
        let Ok(id) = Reader::new(&body).u32() else {
            break;
        };
        if let Some(tx) = shared.waiting.lock().remove(&id) {
            let _ = tx.send((kind, body[4..].to_vec()));
        }
    }
    shared.broken.store(true, Ordering::Release);
    // Dropping the senders wakes every waiting request with an error.
    shared.waiting.lock().clear();
}
