//! What the share does to the modification times a flush gives its files, learned from the
//! first file written whose time can tell: a later file then needs no stat after its rename to
//! know the version the share holds (its `base`), which over a slow link is a round trip per
//! component of its path.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not learned yet (the default, 0).
const UNKNOWN: u8 = 0;
const EXACT: u8 = 1;
/// SFTP (sshfs) keeps whole seconds.
const SECONDS: u8 = 2;
/// SMB keeps 100 ns.
const HUNDRED_NS: u8 = 3;
/// The share keeps none of the times it is given (it stamps its own: some SMB clients).
const NONE: u8 = 4;

const SECOND: i64 = 1_000_000_000;

#[derive(Debug, Default)]
pub(crate) struct ShareTimes(AtomicU8);

/// The journal meta key under which what was learned is kept: a process started again must
/// not forget it. Hashes of versions are recorded only while the share may be coarse
/// (`maybe_coarse`), so a process that forgot a share keeps fine times would judge by content
/// against a hash left from before it learned, of an older version that had the same size and
/// time (the mirror model found it: a conflict copy of our own version after a restart).
pub(crate) const SHARE_TIMES_KEY: &str = "share_times";

impl ShareTimes {
    /// What was learned, as the journal keeps it.
    pub(crate) fn saved(&self) -> String {
        self.0.load(Ordering::SeqCst).to_string()
    }

    /// What a journal kept (`saved`); nothing learned where it says nothing sensible.
    pub(crate) fn restored(saved: Option<&str>) -> ShareTimes {
        let way = saved
            .and_then(|s| s.parse::<u8>().ok())
            .filter(|w| *w <= NONE)
            .unwrap_or(UNKNOWN);
        ShareTimes(AtomicU8::new(way))
    }

    /// The time the share holds after it was given `ours`, once that is known.
    pub(crate) fn kept(&self, ours: i64) -> Option<i64> {
        match self.0.load(Ordering::SeqCst) {
            EXACT => Some(ours),
            SECONDS => Some(ours - ours.rem_euclid(SECOND)),
            HUNDRED_NS => Some(ours - ours.rem_euclid(100)),
            _ => None,
        }
    }

    /// Learns from the share's time `share` for a file given `ours`. Only a time with a part
    /// below 100 ns tells the three apart; a share that kept none of them (one that cannot set
    /// times) teaches nothing, and its files keep being asked.
    pub(crate) fn learn(&self, ours: i64, share: i64) {
        if ours.rem_euclid(100) == 0 {
            return;
        }
        let seen = if share == ours {
            EXACT
        } else if share == ours - ours.rem_euclid(SECOND) {
            SECONDS
        } else if share == ours - ours.rem_euclid(100) {
            HUNDRED_NS
        } else {
            return;
        };
        self.0.store(seen, Ordering::SeqCst);
    }

    /// Learns from our own temporary, which nobody else writes: a time that tells but
    /// matches none of the three means the share keeps no times at all. (The file at the name
    /// after a publish may already be someone else's: it teaches only through `learn`, which
    /// never concludes that.)
    pub(crate) fn learn_from_own(&self, ours: i64, share: i64) {
        self.learn(ours, share);
        if !self.known() && ours.rem_euclid(100) != 0 {
            self.0.store(NONE, Ordering::SeqCst);
        }
    }

    /// Whether it is not known yet that the share keeps times finely enough to tell versions
    /// apart: content hashes are recorded meanwhile.
    pub(crate) fn maybe_coarse(&self) -> bool {
        matches!(self.0.load(Ordering::SeqCst), UNKNOWN | SECONDS | NONE)
    }

    /// Whether a file written has taught it what the share keeps (`kept` answers unless the
    /// share keeps no times).
    pub(crate) fn known(&self) -> bool {
        self.0.load(Ordering::SeqCst) != UNKNOWN
    }
}

impl crate::engine::Engine {
    /// Lets `learn` teach the share's way with times, and keeps in the journal what changed.
    pub(crate) fn learn_share_times(&self, learn: impl FnOnce(&ShareTimes)) {
        let before = self.share_times.saved();
        learn(&self.share_times);
        let now = self.share_times.saved();
        if now != before {
            if let Err(e) = self.journal.lock().set_meta(SHARE_TIMES_KEY, &now) {
                tracing::warn!(error = %e, "could not record what the share does to times; it is learned again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_temporary_can_teach_that_the_share_keeps_no_times() {
        let ours = 1_700_000_000_123_456_789;
        let stamped = 1_800_000_000_987_654_321;
        let t = ShareTimes::default();
        // The name after a publish may hold someone else's version: nothing learned.
        t.learn(ours, stamped);
        assert!(!t.known());
        t.learn_from_own(ours, stamped);
        assert!(t.known());
        assert_eq!(t.kept(ours), None);
        assert!(t.maybe_coarse());
        // A time that tells nothing (whole 100 ns) teaches nothing either way.
        let t = ShareTimes::default();
        t.learn_from_own(1_700_000_000_000_000_000, stamped);
        assert!(!t.known());
    }

    #[test]
    fn what_was_learned_is_kept_across_a_restart() {
        let ours = 1_700_000_000_123_456_789;
        let t = ShareTimes::default();
        t.learn(ours, 1_700_000_000_000_000_000);
        let again = ShareTimes::restored(Some(&t.saved()));
        assert!(again.maybe_coarse());
        assert_eq!(again.kept(ours), Some(1_700_000_000_000_000_000));
        for nonsense in [None, Some("9"), Some("x")] {
            assert!(!ShareTimes::restored(nonsense).known());
        }
    }

    #[test]
    fn learns_each_resolution_from_a_time_that_tells() {
        let ours = 1_700_000_000_123_456_789;
        for (share, kept) in [
            (ours, ours),
            (1_700_000_000_000_000_000, 1_700_000_000_000_000_000),
            (1_700_000_000_123_456_700, 1_700_000_000_123_456_700),
        ] {
            let t = ShareTimes::default();
            assert_eq!(t.kept(ours), None);
            // A whole-second time cannot tell: nothing is learned from it.
            t.learn(1_700_000_001_000_000_000, 1_700_000_001_000_000_000);
            assert!(!t.known());
            t.learn(ours, share);
            assert_eq!(t.kept(ours), Some(kept));
        }
        // A share that kept none of them (it sets its own times) is asked every time.
        let t = ShareTimes::default();
        t.learn(ours, 5);
        assert!(!t.known());
    }
}
