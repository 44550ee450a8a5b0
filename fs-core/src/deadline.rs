//! A deadline on every call to the share.
//!
//! A share whose server froze (a dropped VPN, a hung file server) does not fail: its calls
//! hang until the OS client gives up, which for sshfs or SMB takes minutes. [`DeadlineBacking`]
//! runs each call on a worker thread and waits at most the deadline for it. A call that passes
//! it is abandoned where it hangs (its thread is left to finish or hang; a late result is
//! dropped), and from then on the share counts as **stalled**: further calls fail at once,
//! instead of each waiting out its own deadline, until the abandoned call returns (the server
//! answers again) or, once per deadline, a call is let through to find out.
//!
//! A share can also fail slowly: a client that lost its server and reconnects may answer each
//! call with an error after a few seconds (sshfs with `reconnect` says EIO once its
//! `ConnectTimeout` passes). Each call is then within its deadline, and a flush making them
//! one after another would wait for all of them. So a share that has answered nothing but
//! passing failures (unreachable, timed out) for a whole deadline counts as stalled too.
//!
//! The schedule is for calls nobody waits on (a background retry). A flush the user asks for
//! first looks at the share now ([`Backing::check_now`]): one stat of the share's top folder,
//! with a short deadline of its own. If it answers, the share counts as back at once, even
//! while calls abandoned earlier have not returned yet (a server that resumed answers new
//! requests before the client has drained the old ones).
//!
//! What an abandoned call may leave behind is what any interrupted call leaves: a flush's
//! temporary on the share is recorded in the journal before it is written, and removed by the
//! next flush.
//!
//! Transfers (fetch, stage) may take longer than the deadline on a slow link: for them the
//! deadline counts from the last progress (a chunk of the file moved), not from the start.

use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::backing::{Backing, EntryKind, ShareReader, Stat};
use crate::relpath::RelPath;

/// The error of a call that passed its deadline, or that was refused because an earlier one
/// still hangs. Its kind is [`io::ErrorKind::TimedOut`]; retrying it at once is pointless.
#[derive(Debug, thiserror::Error)]
#[error("the share did not answer within {} s{}", .secs, if *.failing { " (it failed every call for that long)" } else if *.waiting { " (an earlier call is still waiting for it)" } else { "" })]
pub struct Stalled {
    pub secs: u64,
    /// Refused without trying: an earlier call still hangs, or the share failed every call
    /// for a whole deadline.
    pub waiting: bool,
    /// Refused because every call for a whole deadline failed (see the module's comment).
    pub failing: bool,
}

impl Stalled {
    pub fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<Stalled>())
    }
}

thread_local! {
    /// The progress counter of the call this worker thread is running, for transfers.
    static PROGRESS: RefCell<Option<Arc<dyn Progress>>> = const { RefCell::new(None) };
}

/// Called by transfers as bytes move: the deadline of the call counts from now.
pub fn progressed() {
    PROGRESS.with(|p| {
        if let Some(c) = &*p.borrow() {
            c.bump();
        }
    });
}

/// A call to run: it returns what delivers its result to the caller. The worker is back among
/// the idle ones before it delivers, so a caller that makes its next call at once finds it.
type Job = Box<dyn FnOnce() -> Box<dyn FnOnce()> + Send>;

/// Worker threads that are waiting for a call. A thread whose call hangs is simply not here;
/// when its call returns, it comes back (or ends, if enough others wait).
struct Workers {
    idle: Mutex<Vec<mpsc::Sender<Job>>>,
}

/// Threads kept waiting for calls; more are started when all are busy or stuck.
const MAX_IDLE: usize = 32;

impl Workers {
    fn run(self: &Arc<Self>, job: Job) {
        let mut job = job;
        loop {
            let Some(tx) = self.idle.lock().pop() else {
                break;
            };
            match tx.send(job) {
                Ok(()) => return,
                // That thread ended (it cannot, while its sender is idle here; but be safe).
                Err(mpsc::SendError(j)) => job = j,
            }
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let workers = Arc::downgrade(self);
        let me = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("sipfs-share".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let deliver = job();
                    let back = workers.upgrade().is_some_and(|w| {
                        let mut idle = w.idle.lock();
                        let room = idle.len() < MAX_IDLE;
                        if room {
                            idle.push(me.clone());
                        }
                        room
                    });
                    deliver();
                    if !back {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => {
                // The new thread owns `rx`; it takes this first job from its channel.
                let _ = tx.send(job);
            }
            // No thread to be had: run it here, without a deadline, rather than not at all.
            Err(e) => {
                tracing::warn!(error = %e, "no thread for a share call; it runs without a deadline");
                job()();
            }
        }
    }
}

/// Whether the share is stalled.
struct Health {
    /// Calls that passed their deadline and have not returned yet.
    hanging: AtomicUsize,
    /// A probe answered after the last call was abandoned: the share answers again, whatever
    /// the calls still hanging do.
    revived: AtomicBool,
    /// When a call was last let through to a stalled share.
    last_try: Mutex<Instant>,
    /// Since when every call has failed for a passing reason (`None`: the last one answered).
    failing_since: Mutex<Option<Instant>>,
}

/// The deadline of a probe ([`Backing::check_now`]): short, since a user waits for it, and
/// long enough for a round trip over a slow link. Never longer than the share's deadline.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// A [`Backing`] whose every call has a deadline (see the module's comment).
pub struct DeadlineBacking {
    inner: Arc<dyn Backing>,
    deadline: Arc<Deadline>,
}

/// What the calls to one share have in common: their deadline, the workers that run them and
/// whether the share is stalled. Shared with the files open on it ([`DeadlineReader`]).
struct Deadline {
    timeout: Duration,
    share: String,
    workers: Arc<Workers>,
    health: Arc<Health>,
}

impl DeadlineBacking {
    pub fn new(inner: Arc<dyn Backing>, timeout: Duration) -> DeadlineBacking {
        let share = inner.describe();
        DeadlineBacking {
            inner,
            deadline: Arc::new(Deadline {
                timeout,
                share,
                workers: Arc::new(Workers {
                    idle: Mutex::new(Vec::new()),
                }),
                health: Arc::new(Health {
                    hanging: AtomicUsize::new(0),
                    revived: AtomicBool::new(false),
                    last_try: Mutex::new(Instant::now()),
                    failing_since: Mutex::new(None),
                }),
            }),
        }
    }

    /// True while a call that passed its deadline still hangs.
    pub fn stalled(&self) -> bool {
        self.deadline.stalled()
    }

    fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Backing) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        self.deadline.run(move || call(&*inner))
    }
}

/// A file open on the share whose every range read has the share's deadline.
struct DeadlineReader {
    inner: Arc<dyn ShareReader>,
    deadline: Arc<Deadline>,
}

impl ShareReader for DeadlineReader {
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let inner = self.inner.clone();
        self.deadline.run(move || inner.read_range(offset, len))
    }
}

impl Deadline {
    fn stalled(&self) -> bool {
        self.hanging() || self.failing()
    }

    /// A call passed its deadline and hangs, and no probe has heard from the share since.
    fn hanging(&self) -> bool {
        self.health.hanging.load(Ordering::SeqCst) > 0
            && !self.health.revived.load(Ordering::SeqCst)
    }

    /// Every call for a whole deadline failed for a passing reason.
    fn failing(&self) -> bool {
        self.health
            .failing_since
            .lock()
            .is_some_and(|t| t.elapsed() >= self.timeout)
    }

    /// Notes how a call ended, for [`Deadline::failing`].
    fn note<T>(&self, result: &io::Result<T>) {
        // A locked file is the share's answer, not its failure: only a share that cannot be
        // reached or does not answer counts.
        let passing_failure = result.as_ref().err().is_some_and(|e| {
            use crate::error::Reason;
            matches!(Reason::classify(e), Reason::Unreachable | Reason::TimedOut) && !Stalled::is(e)
        });
        let mut since = self.health.failing_since.lock();
        match (passing_failure, *since) {
            (true, None) => *since = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => *since = None,
        }
        if passing_failure {
            // It was a try: a share found failing is asked again a deadline after this.
            *self.health.last_try.lock() = Instant::now();
        }
    }

    /// Asks the share now, with the probe's own deadline, whether it answers (see the module's
    /// comment). A share that is not stalled is not asked.
    fn check_now(&self, probe: Arc<dyn Backing>) -> io::Result<()> {
        if !self.stalled() {
            return Ok(());
        }
        let within = PROBE_DEADLINE.min(self.timeout);
        let answered = self.run_within(within, false, move || probe.stat(&RelPath::root()));
        match answered {
            Ok(_) => {
                self.health.revived.store(true, Ordering::SeqCst);
                tracing::info!(share = %self.share, "the share answers again");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn stalled_error(&self, waiting: bool) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            Stalled {
                secs: self.timeout.as_secs().max(1),
                waiting,
                failing: waiting && !self.hanging() && self.failing(),
            },
        )
    }

    /// Runs `call` on a worker and waits for it until the deadline.
    fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.run_within(self.timeout, true, call)
    }

    /// Runs `call` on a worker and waits for it for `timeout` (from its last progress). With
    /// `gated`, a stalled share is asked only once per deadline; a probe is let through.
    fn run_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        gated: bool,
        call: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        if gated && self.stalled() {
            let mut last = self.health.last_try.lock();
            if last.elapsed() < self.timeout {
                return Err(self.stalled_error(true));
            }
            // Once per deadline, one call finds out whether the share answers again.
            *last = Instant::now();
        }
        let shared = Arc::new(Call {
            slot: Mutex::new(Slot::Waiting),
            ready: Condvar::new(),
            progress: AtomicU64::new(0),
        });
        let (health, job) = (self.health.clone(), shared.clone());
        self.workers.run(Box::new(move || {
            PROGRESS.with(|p| *p.borrow_mut() = Some(job.clone()));
            let result = call();
            PROGRESS.with(|p| *p.borrow_mut() = None);
            Box::new(move || {
                let mut slot = job.slot.lock();
                if matches!(*slot, Slot::Abandoned) {
                    // The caller gave up on this call: the share answered after all.
                    health.hanging.fetch_sub(1, Ordering::SeqCst);
                    tracing::info!("a share call that passed its deadline has returned");
                } else {
                    *slot = Slot::Done(result);
                    job.ready.notify_one();
                }
            })
        }));
        let mut slot = shared.slot.lock();
        let mut seen = 0;
        loop {
            if matches!(*slot, Slot::Done(_)) {
                let Slot::Done(r) = std::mem::replace(&mut *slot, Slot::Waiting) else {
                    unreachable!()
                };
                drop(slot);
                self.note(&r);
                return r;
            }
            if !shared.ready.wait_for(&mut slot, timeout).timed_out() {
                continue;
            }
            if matches!(*slot, Slot::Done(_)) {
                continue;
            }
            let now = shared.progress.load(Ordering::Relaxed);
            if now != seen {
                tracing::debug!(
                    chunks = now - seen,
                    "a transfer past its deadline moved: waiting on"
                );
                seen = now;
                continue;
            }
            // Under the slot's lock: the worker, when it returns, finds the call abandoned
            // and takes its count back.
            *slot = Slot::Abandoned;
            self.health.hanging.fetch_add(1, Ordering::SeqCst);
            self.health.revived.store(false, Ordering::SeqCst);
            *self.health.last_try.lock() = Instant::now();
            tracing::warn!(
                secs = timeout.as_secs_f32(),
                share = %self.share,
                "a share call passed its deadline; the share counts as stalled"
            );
            return Err(self.stalled_error(false));
        }
    }
}

/// One call, shared by its caller and the worker running it.
struct Call<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
    /// Bumped by transfers as bytes move ([`progressed`]).
    progress: AtomicU64,
}

enum Slot<T> {
    Waiting,
    Done(io::Result<T>),
    /// The caller passed the deadline and left.
    Abandoned,
}

/// The progress counter of a running call, whatever its result type.
trait Progress: Send + Sync {
    fn bump(&self);
}

impl<T: Send> Progress for Call<T> {
    fn bump(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
    }
}

impl Backing for DeadlineBacking {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn check_now(&self) -> io::Result<()> {
        self.deadline.check_now(self.inner.clone())
    }
    fn stat(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        let p = path.clone();
        self.call(move |b| b.stat(&p))
    }
    fn stat_fresh(&self, path: &RelPath) -> io::Result<Option<Stat>> {
        let p = path.clone();
        self.call(move |b| b.stat_fresh(&p))
    }
    fn has_other_names(&self, path: &RelPath) -> io::Result<bool> {
        let p = path.clone();
        self.call(move |b| b.has_other_names(&p))
    }
    fn fetch_version(&self, path: &RelPath, dest: &Path) -> io::Result<Option<Stat>> {
        let (p, d) = (path.clone(), dest.to_owned());
        self.call(move |b| b.fetch_version(&p, &d))
    }
    fn capture(&self, target: &RelPath, cap: &RelPath) -> io::Result<Option<Stat>> {
        let (t, c) = (target.clone(), cap.clone());
        self.call(move |b| b.capture(&t, &c))
    }
    fn list(&self, dir: &RelPath) -> io::Result<Vec<(String, Stat)>> {
        let p = dir.clone();
        self.call(move |b| b.list(&p))
    }
    fn fetch(&self, path: &RelPath, dest: &Path) -> io::Result<()> {
        let (p, d) = (path.clone(), dest.to_owned());
        self.call(move |b| b.fetch(&p, &d))
    }
    fn open_read(&self, path: &RelPath) -> io::Result<Arc<dyn ShareReader>> {
        let p = path.clone();
        let inner = self.call(move |b| b.open_read(&p))?;
        Ok(Arc::new(DeadlineReader {
            inner,
            deadline: self.deadline.clone(),
        }))
    }
    fn read_link(&self, path: &RelPath) -> io::Result<String> {
        let p = path.clone();
        self.call(move |b| b.read_link(&p))
    }
    fn stage(&self, src: &Path, temp: &RelPath, mtime_ns: i64, mode: u32) -> io::Result<()> {
        let (s, t) = (src.to_owned(), temp.clone());
        self.call(move |b| b.stage(&s, &t, mtime_ns, mode))
    }
    fn stage_symlink(&self, target: &str, temp: &RelPath) -> io::Result<()> {
        let (l, t) = (target.to_owned(), temp.clone());
        self.call(move |b| b.stage_symlink(&l, &t))
    }
    fn stage_link(&self, existing: &RelPath, temp: &RelPath) -> io::Result<()> {
        let (e, t) = (existing.clone(), temp.clone());
        self.call(move |b| b.stage_link(&e, &t))
    }
    fn set_xattr(&self, path: &RelPath, name: &[u8], value: Option<&[u8]>) -> io::Result<()> {
        let (p, n, v) = (path.clone(), name.to_vec(), value.map(<[u8]>::to_vec));
        self.call(move |b| b.set_xattr(&p, &n, v.as_deref()))
    }
    fn stage_special(
        &self,
        kind: EntryKind,
        rdev: u64,
        mode: u32,
        temp: &RelPath,
    ) -> io::Result<()> {
        let t = temp.clone();
        self.call(move |b| b.stage_special(kind, rdev, mode, &t))
    }
    fn rename(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (f, t) = (from.clone(), to.clone());
        self.call(move |b| b.rename(&f, &t))
    }
    fn rename_noreplace(&self, from: &RelPath, to: &RelPath) -> io::Result<()> {
        let (f, t) = (from.clone(), to.clone());
        self.call(move |b| b.rename_noreplace(&f, &t))
    }
    fn no_replace(&self) -> Option<crate::noreplace::NoReplace> {
        self.inner.no_replace()
    }
    fn remove_file(&self, path: &RelPath) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.remove_file(&p))
    }
    fn remove_dir(&self, path: &RelPath) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.remove_dir(&p))
    }
    fn create_dir(&self, path: &RelPath) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.create_dir(&p))
    }
    fn set_mtime(&self, path: &RelPath, mtime_ns: i64) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.set_mtime(&p, mtime_ns))
    }
    fn set_mtime_if(
        &self,
        path: &RelPath,
        expect: crate::backing::Expect,
        mtime_ns: i64,
    ) -> io::Result<Option<Stat>> {
        let p = path.clone();
        self.call(move |b| b.set_mtime_if(&p, expect, mtime_ns))
    }
    fn set_mode(&self, path: &RelPath, mode: u32) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.set_mode(&p, mode))
    }
    fn set_owner(&self, path: &RelPath, uid: u32, gid: u32) -> io::Result<()> {
        let p = path.clone();
        self.call(move |b| b.set_owner(&p, uid, gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backing::EntryKind;

    /// A share whose calls wait at a gate until the test opens it, as calls to a frozen server
    /// wait for it to come back. `fetch` instead moves `chunks` chunks, `pause` apart.
    struct Frozen {
        open: Mutex<bool>,
        opened: Condvar,
        calls: AtomicUsize,
        chunks: u32,
        pause: Duration,
    }

    impl Frozen {
        fn new(chunks: u32, pause: Duration) -> Arc<Frozen> {
            Arc::new(Frozen {
                open: Mutex::new(false),
                opened: Condvar::new(),
                calls: AtomicUsize::new(0),
                chunks,
                pause,
            })
        }
        fn thaw(&self) {
            *self.open.lock() = true;
            self.opened.notify_all();
        }
    }

    fn stat() -> Stat {
        Stat {
            kind: EntryKind::File,
            size: 1,
            mtime_ns: 0,
            mode: 0o644,
            rdev: 0,
        }
    }

    impl Backing for Frozen {
        fn describe(&self) -> String {
            "frozen".into()
        }
        fn stat(&self, _: &RelPath) -> io::Result<Option<Stat>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock();
            while !*open {
                self.opened.wait(&mut open);
            }
            Ok(Some(stat()))
        }
        fn list(&self, _: &RelPath) -> io::Result<Vec<(String, Stat)>> {
            Ok(Vec::new())
        }
        fn fetch(&self, _: &RelPath, _: &Path) -> io::Result<()> {
            for _ in 0..self.chunks {
                std::thread::sleep(self.pause);
                progressed();
            }
            Ok(())
        }
        fn open_read(&self, _: &RelPath) -> io::Result<Arc<dyn ShareReader>> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn read_link(&self, _: &RelPath) -> io::Result<String> {
            Ok(String::new())
        }
        fn stage(&self, _: &Path, _: &RelPath, _: i64, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn stage_symlink(&self, _: &str, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn rename(&self, _: &RelPath, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn remove_file(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn remove_dir(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn create_dir(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn set_mtime(&self, _: &RelPath, _: i64) -> io::Result<()> {
            Ok(())
        }
        fn set_mode(&self, _: &RelPath, _: u32) -> io::Result<()> {
            Ok(())
        }
    }

    fn stalled(e: &io::Error) -> &Stalled {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<Stalled>())
            .unwrap_or_else(|| panic!("not a deadline error: {e}"))
    }

    #[test]
    fn a_frozen_share_fails_at_the_deadline_then_at_once_until_it_answers() {
        let share = Frozen::new(0, Duration::ZERO);
        // Long enough for a worker to start on a busy machine: the counts below need it.
        let b = DeadlineBacking::new(share.clone(), Duration::from_millis(500));
        let p = RelPath::new("f").unwrap();
        let e = b.stat(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(!stalled(&e).waiting);
        assert!(b.stalled());
        // Not retried: a retry would only wait again.
        assert!(crate::retry::RetryPolicy::default()
            .run(|| b.stat(&p))
            .is_err());
        // Refused without asking the share: its one call still hangs.
        assert!(stalled(&b.stat(&p).unwrap_err()).waiting);
        assert_eq!(share.calls.load(Ordering::SeqCst), 1);
        // The server comes back: the hung call returns (its late answer is dropped) and the
        // share is no longer stalled.
        share.thaw();
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.stalled() {
            assert!(Instant::now() < deadline, "the hung call never came back");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(b.stat(&p).unwrap(), Some(stat()));
    }

    #[test]
    fn once_per_deadline_one_call_tries_a_stalled_share_again() {
        let share = Frozen::new(0, Duration::ZERO);
        let b = DeadlineBacking::new(share.clone(), Duration::from_millis(500));
        let p = RelPath::new("f").unwrap();
        b.stat(&p).unwrap_err();
        std::thread::sleep(Duration::from_millis(700));
        // Let through, and hangs again.
        assert!(!stalled(&b.stat(&p).unwrap_err()).waiting);
        assert_eq!(share.calls.load(Ordering::SeqCst), 2);
        share.thaw();
    }

    /// A share whose client lost its server and answers each call with an error after a
    /// while: each call is within the deadline, but once the share has failed everything for
    /// a whole deadline it counts as stalled, and calls are refused at once.
    struct Failing {
        calls: AtomicUsize,
        each: Duration,
        up: Mutex<bool>,
    }

    impl Backing for Failing {
        fn describe(&self) -> String {
            "failing".into()
        }
        fn stat(&self, _: &RelPath) -> io::Result<Option<Stat>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if *self.up.lock() {
                return Ok(Some(stat()));
            }
            std::thread::sleep(self.each);
            Err(io::Error::from_raw_os_error(libc::EIO))
        }
        fn list(&self, _: &RelPath) -> io::Result<Vec<(String, Stat)>> {
            Ok(Vec::new())
        }
        fn fetch(&self, _: &RelPath, _: &Path) -> io::Result<()> {
            Ok(())
        }
        fn open_read(&self, _: &RelPath) -> io::Result<Arc<dyn ShareReader>> {
            Err(io::ErrorKind::Unsupported.into())
        }
        fn read_link(&self, _: &RelPath) -> io::Result<String> {
            Ok(String::new())
        }
        fn stage(&self, _: &Path, _: &RelPath, _: i64, _: u32) -> io::Result<()> {
            Ok(())
        }
        fn stage_symlink(&self, _: &str, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn rename(&self, _: &RelPath, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn remove_file(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn remove_dir(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn create_dir(&self, _: &RelPath) -> io::Result<()> {
            Ok(())
        }
        fn set_mtime(&self, _: &RelPath, _: i64) -> io::Result<()> {
            Ok(())
        }
        fn set_mode(&self, _: &RelPath, _: u32) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_share_that_fails_every_call_for_a_deadline_counts_as_stalled() {
        let share = Arc::new(Failing {
            calls: AtomicUsize::new(0),
            each: Duration::from_millis(200),
            up: Mutex::new(false),
        });
        let b = DeadlineBacking::new(share.clone(), Duration::from_millis(500));
        let p = RelPath::new("f").unwrap();
        // Slow failures, each within the deadline, until a deadline's worth has passed.
        let started = Instant::now();
        while !b.stalled() {
            assert!(!Stalled::is(&b.stat(&p).unwrap_err()));
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never counted as stalled"
            );
        }
        let asked = share.calls.load(Ordering::SeqCst);
        let e = b.stat(&p).unwrap_err();
        let s = stalled(&e);
        assert!(s.waiting && s.failing, "{e}");
        assert_eq!(
            share.calls.load(Ordering::SeqCst),
            asked,
            "refused without asking"
        );
        // A probe that hears from the share ends it at once.
        *share.up.lock() = true;
        b.check_now().unwrap();
        assert!(!b.stalled());
        assert_eq!(b.stat(&p).unwrap(), Some(stat()));
    }

    /// The user's flush asks the share now: a probe of a frozen share fails within its own
    /// deadline, and one of a share that answers again ends the stall.
    #[test]
    fn a_probe_fails_within_its_own_deadline_and_sees_the_share_answer_again() {
        let share = Frozen::new(0, Duration::ZERO);
        let b = DeadlineBacking::new(share.clone(), Duration::from_millis(500));
        let p = RelPath::new("f").unwrap();
        b.stat(&p).unwrap_err();
        assert!(b.stalled());
        // Still frozen: the probe fails within its own deadline (the share's, here shorter).
        let t = Instant::now();
        assert!(b.check_now().is_err());
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(b.stalled());
        share.thaw();
        b.check_now().unwrap();
        assert!(!b.stalled());
    }

    #[test]
    fn a_transfer_that_moves_is_not_cut_off() {
        // Thirty chunks 50 ms apart: 1.5 s in all, against a deadline of 1 s.
        let share = Frozen::new(30, Duration::from_millis(50));
        let b = DeadlineBacking::new(share, Duration::from_secs(1));
        b.fetch(&RelPath::new("big").unwrap(), Path::new("/nonexistent"))
            .unwrap();
        assert!(!b.stalled());
    }

    #[test]
    fn workers_are_reused() {
        let share = Frozen::new(0, Duration::ZERO);
        share.thaw();
        let b = DeadlineBacking::new(share, Duration::from_secs(30));
        for _ in 0..100 {
            b.list(&RelPath::root()).unwrap();
        }
        assert_eq!(b.deadline.workers.idle.lock().len(), 1);
    }
}
