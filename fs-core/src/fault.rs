//! A [`Backing`] wrapper that fails chosen operations, for tests of failure handling.
//!
//! It wraps the real backing rather than replacing it: what is not failed really happens on
//! disk. Faults are controlled through a shared [`FaultControl`] while the engine runs.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::backing::{Backing, EntryKind, ShareReader, Stat};
use crate::relpath::RelPath;

/// The switches of a [`FaultyBacking`].
#[derive(Debug, Default)]
pub struct FaultControl {
    offline: AtomicBool,
    /// When positive: this many more operations succeed, then the share goes offline.
    ops_until_offline: AtomicI64,
    refused: Mutex<Vec<(RelPath, i32)>>,
    /// Setting times fails with this errno (a share that cannot keep times).
    times_errno: std::sync::atomic::AtomicI32,
    /// Special files are refused as SMB and sshfs refuse them.
    no_specials: AtomicBool,
    /// Hard links are refused as SMB refuses them.
    no_links: AtomicBool,
    /// Operations asked of the share so far.
    ops: std::sync::atomic::AtomicU64,
    /// File content read from the share so far, whole fetches and ranges alike.
    read_bytes: std::sync::atomic::AtomicU64,
    /// When set: listings come in an order drawn from this seed (and the folder's path), the
    /// way a real file system's hashed directories scramble them, but the same on every machine.
    listing_seed: Mutex<Option<u64>>,
    /// A frozen server: calls wait at the gate (see [`FaultControl::freeze`]).
    gate: Gate,
    /// A client that lost its server: every call fails with this errno after this long.
    slow_failure: Mutex<Option<(std::time::Duration, i32)>>,
    /// Someone else's action, run once just before the call that many calls from now.
    /// Actions waiting for their call, by the call's number, in order.
    interleaved: Mutex<std::collections::VecDeque<(u64, Interleaved)>>,
}

/// Someone else's action between two share calls (see [`FaultControl::interleave`]).
struct Interleaved(Box<dyn FnOnce() + Send>);

/// One step of someone else's work (see [`FaultControl::interleave_steps`]).
pub type Step = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Interleaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an interleaved action")
    }
}

/// Where calls to a frozen share wait. A call that came while the share was frozen waits
/// until [`FaultControl::release_frozen`], even after the share thawed: a server that resumed
/// answers new calls before a client has drained the old ones.
#[derive(Debug, Default)]
struct Gate {
    /// Bumped by every release: a call waits until the count moves past the one it saw.
    state: Mutex<(bool, u64)>,
    /// Calls waiting now: how many a client has in flight at once.
    waiting: std::sync::atomic::AtomicU64,
    moved: parking_lot::Condvar,
}

impl FaultControl {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes every operation fail as an unreachable share does (`ENOTCONN`).
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
        if !offline {
            self.ops_until_offline.store(0, Ordering::SeqCst);
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst)
    }

    /// Lets `n` more operations through, then goes offline: the share drops mid-flush.
    pub fn offline_after(&self, n: u32) {
        self.ops_until_offline
            .store(i64::from(n) + 1, Ordering::SeqCst);
    }

    /// Changes at or below `path` fail with `errno` (reads still work).
    pub fn refuse(&self, path: RelPath, errno: i32) {
        self.refused.lock().push((path, errno));
    }

    pub fn clear_refusals(&self) {
        self.refused.lock().clear();
    }

    /// Makes setting modification times fail with `errno` (0: works again).
    pub fn refuse_times(&self, errno: i32) {
        self.times_errno.store(errno, Ordering::SeqCst);
    }

    /// Refuses FIFOs, sockets and device nodes, as a share that cannot hold them does.
    pub fn refuse_specials(&self, refuse: bool) {
        self.no_specials.store(refuse, Ordering::SeqCst);
    }

    /// Refuses hard links, as a share without them does.
    pub fn refuse_hard_links(&self, refuse: bool) {
        self.no_links.store(refuse, Ordering::SeqCst);
    }

    /// Listings in an order drawn from `seed`, whatever order the file system keeps.
    pub fn shuffle_listings(&self, seed: u64) {
        *self.listing_seed.lock() = Some(seed);
    }

    /// Freezes the share (`true`): every call from now on waits, as a call to a server that
    /// was SIGSTOPped does. Thawing (`false`) lets new calls through at once; those that came
    /// meanwhile go on waiting until [`FaultControl::release_frozen`].
    pub fn freeze(&self, frozen: bool) {
        self.gate.state.lock().0 = frozen;
    }

    /// Calls waiting at a frozen share now: those a client made without waiting for each
    /// other's answers.
    pub fn calls_waiting(&self) -> u64 {
        self.gate.waiting.load(Ordering::SeqCst)
    }

    /// Lets the calls that came while the share was frozen return.
    pub fn release_frozen(&self) {
        let mut g = self.gate.state.lock();
        g.1 += 1;
        self.gate.moved.notify_all();
    }

    /// Runs `action` (someone else's write on the share, say) once, just before the share
    /// sees the call `n` calls from now (`n = 0`: the next call). A test tries every `n` to act
    /// between any two calls of a flush.
    pub fn interleave(&self, n: u64, action: impl FnOnce() + Send + 'static) {
        self.interleave_steps(n, vec![Box::new(action)]);
    }

    /// Runs `steps` one by one, the first just before the call `n` calls from now, each next
    /// one just before the call after: someone else's work going on, a step per call of ours.
    pub fn interleave_steps(&self, n: u64, steps: Vec<Step>) {
        let at = self.ops.load(Ordering::SeqCst) + n;
        let mut queue = self.interleaved.lock();
        queue.extend((at..).zip(steps.into_iter().map(Interleaved)));
        queue.make_contiguous().sort_by_key(|(at, _)| *at);
    }

    /// Interleaved actions still waiting for their calls.
    pub fn interleaved_left(&self) -> usize {
        self.interleaved.lock().len()
    }

    /// Whether an interleaved action is still waiting for its call.
    pub fn interleave_pending(&self) -> bool {
        !self.interleaved.lock().is_empty()
    }

    /// The error a share that cannot set times gives (`refuse_times`), if one was set.
    fn times_refused(&self) -> io::Result<()> {
        match self.times_errno.load(Ordering::SeqCst) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Drops the interleaved actions that have not run; whether there were any.
    pub fn cancel_interleave(&self) -> bool {
        let mut queue = self.interleaved.lock();
        let pending = !queue.is_empty();
        queue.clear();
        pending
    }

    /// Every call fails with `errno` after `after` (`None`: calls work again), as calls to a
    /// client that lost its server and tried to reconnect do.
    pub fn fail_slowly(&self, how: Option<(std::time::Duration, i32)>) {
        *self.slow_failure.lock() = how;
    }

    /// How many operations were asked of the share so far.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::SeqCst)
    }

    /// Bytes of file content read from the share so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::SeqCst)
    }

    fn count_read(&self, n: u64) {
        self.read_bytes.fetch_add(n, Ordering::SeqCst);
    }

    fn check(&self, paths: &[&RelPath], mutating: bool) -> io::Result<()> {
        let this = self.ops.fetch_add(1, Ordering::SeqCst);
        let due = {
            let mut queue = self.interleaved.lock();
            match queue.front() {
                Some((at, _)) if *at <= this => queue.pop_front(),
                _ => None,
            }
        };
        if let Some((_, Interleaved(action))) = due {
            action();
        }
        {
            let mut g = self.gate.state.lock();
            if g.0 {
                let seen = g.1;
                self.gate.waiting.fetch_add(1, Ordering::SeqCst);
                while g.1 == seen {
                    self.gate.moved.wait(&mut g);
                }
                self.gate.waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let slow = *self.slow_failure.lock();
        if let Some((after, errno)) = slow {
            std::thread::sleep(after);
            return Err(io::Error::from_raw_os_error(errno));
        }
        let left = self.ops_until_offline.load(Ordering::SeqCst);
        if left > 0 && self.ops_until_offline.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.offline.store(true, Ordering::SeqCst);
        }
        if self.offline.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ENOTCONN));
        }
        if mutating {
            for (prefix, errno) in self.refused.lock().iter() {
                if paths.iter().any(|p| p.is_within(prefix)) {
                    return Err(io::Error::from_raw_os_error(*errno));
                }
            }
        }
        Ok(())
    }
}

/// A share file whose every range read consults the [`FaultControl`], as each is a call to
/// the share.
struct FaultyReader {
    inner: Arc<dyn ShareReader>,
    path: RelPath,
    control: Arc<FaultControl>,
}

impl ShareReader for FaultyReader {
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.control.check(&[&self.path], false)?;
        let data = self.inner.read_range(offset, len)?;
        self.control.count_read(data.len() as u64);
        Ok(data)
    }
}

/// A backing that consults a [`FaultControl`] before each operation.
pub struct FaultyBacking {
    inner: Arc<dyn Backing>,
    control: Arc<FaultControl>,
}

impl FaultyBacking {
    pub fn new(inner: Arc<dyn Backing>, control: Arc<FaultControl>) -> Self {
        FaultyBacking { inner, control }
    }
}

impl Backing for FaultyBacking {
    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
    fn check_now(&self) -> io::Result<()> {
        self.inner.check_now()
    }
    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        self.control.check(&[path], false)?;
        self.inner.stat(path)
    }
    fn stat_fresh(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        self.control.check(&[path], false)?;
        self.inner.stat_fresh(path)
    }
    fn has_other_names(&self, path: &RelPath) -> io::Result<bool> {
        self.control.check(&[path], false)?;
        self.inner.has_other_names(path)
    }
    fn list(&self, dir: &RelPath) -> io::Result<Vec<(String, Stat)>> {
        self.control.check(&[dir], false)?;
        let mut entries = self.inner.list(dir)?;
        if let Some(seed) = *self.control.listing_seed.lock() {
            let seed = seed ^ xxh3_64(dir.as_str().as_bytes());
            entries.sort_by_cached_key(|(name, _)| xxh3_64_with_seed(name.as_bytes(), seed));
        }
        Ok(entries)
    }
    fn fetch(&self, path: &RelPath, dest: &Path) -> io::Result<()> {
        self.control.check(&[path], false)?;
        self.inner.fetch(path, dest)?;
        self.control
            .count_read(std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0));
        Ok(())
    }
    fn open_read(&self, path: &RelPath) -> io::Result<Arc<dyn ShareReader>> {
        self.control.check(&[path], false)?;
        Ok(Arc::new(FaultyReader {
            inner: self.inner.open_read(path)?,
            path: path.clone(),
            control: self.control.clone(),
        }))
    }
    fn read_link(&self, path: &RelPath) -> io::Result<String> {
        self.control.check(&[path], false)?;
        self.inner.read_link(path)
    }
    fn stage(&self, src: &Path, temp: &RelPath, mtime_ns: i64, mode: u32) -> io::Result<()> {
        self.control.check(&[temp], true)?;
        self.inner.stage(src, temp, mtime_ns, mode)
    }
    fn stage_symlink(&self, target: &str, temp: &RelPath) -> io::Result<()> {
        self.control.check(&[temp], true)?;
        self.inner.stage_symlink(target, temp)
    }
    fn stage_link(&self, existing: &RelPath, temp: &RelPath) -> io::Result<()> {
        self.control.check(&[existing, temp], true)?;
        if self.control.no_links.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        self.inner.stage_link(existing, temp)
    }
    fn set_xattr(&self, path: &RelPath, name: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.set_xattr(path, name, value)
    }
    fn stage_special(
        &self,
        kind: EntryKind,
        rdev: u64,
        mode: u32,
        temp: &RelPath,
    ) -> io::Result<()> {
        self.control.check(&[temp], true)?;
        if self.control.no_specials.load(Ordering::SeqCst) {
            // What sshfs answers.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                io::Error::from_raw_os_error(libc::EPERM),
            ));
        }
        self.inner.stage_special(kind, rdev, mode, temp)
    }
    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        self.control.check(&[from, to], true)?;
        self.inner.rename(from, to)
    }
    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        self.control.check(&[from, to], true)?;
        if self.control.no_links.load(Ordering::SeqCst) {
            // A share without hard links, as SMB through rclone: only a checked rename.
            if self.inner.stat(to)?.is_some() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            return self.inner.rename(from, to);
        }
        self.inner.rename_noreplace(from, to)
    }
    fn no_replace(&self) -> Option<crate::noreplace::NoReplace> {
        if self.control.no_links.load(Ordering::SeqCst) {
            return Some(crate::noreplace::NoReplace::Checked);
        }
        self.inner.no_replace()
    }
    fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.remove_dir(path)
    }
    fn create_dir(&self, path: &RelPath) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.create_dir(path)
    }
    fn set_mtime(&self, path: &RelPath, mtime_ns: i64) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.control.times_refused()?;
        self.inner.set_mtime(path, mtime_ns)
    }
    fn set_mtime_if(
        &self,
        path: &RelPath,
        expect: crate::backing::Expect,
        mtime_ns: i64,
    ) -> io::Result<Option<Stat>> {
        self.control.check(&[path], true)?;
        self.control.times_refused()?;
        self.inner.set_mtime_if(path, expect, mtime_ns)
    }
    fn set_mode(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.set_mode(path, mode)
    }

    fn set_owner(&self, path: &RelPath, uid: u32, gid: u32) -> io::Result<()> {
        self.control.check(&[path], true)?;
        self.inner.set_owner(path, uid, gid)
    }
}
