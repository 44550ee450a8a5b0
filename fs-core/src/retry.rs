//! Bounded retries of share operations that failed for a passing reason.

use std::io;
use std::time::Duration;

use crate::error::Reason;

/// A failure that took longer than this is not a passing hiccup, and is not tried again.
const SLOW_FAILURE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled before each further one.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three tries within about a second: long enough for a network hiccup, short enough that
    /// a dead share is reported quickly.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(150),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            attempts: 1,
            first_delay: Duration::ZERO,
        }
    }

    /// Runs `f` until it succeeds, fails for a lasting reason, or the tries are used up.
    pub fn run<T>(&self, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        let mut delay = self.first_delay;
        let mut tries = 1;
        loop {
            let started = std::time::Instant::now();
            match f() {
                Ok(v) => return Ok(v),
                // A call that passed its deadline, or that took seconds to fail (a client
                // that tried to reconnect and gave up), already waited longer than a retry
                // would: retrying it only multiplies the wait.
                Err(e)
                    if tries < self.attempts
                        && Reason::classify(&e).is_transient()
                        && !crate::deadline::Stalled::is(&e)
                        && started.elapsed() < SLOW_FAILURE =>
                {
                    tracing::debug!(error = %e, tries, "share operation failed, retrying");
                    std::thread::sleep(delay);
                    delay *= 2;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_transient_errors_only() {
        let p = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
        };
        let mut n = 0;
        let r: io::Result<()> = p.run(|| {
            n += 1;
            Err(io::Error::from_raw_os_error(libc::ENOTCONN))
        });
        assert!(r.is_err());
        assert_eq!(n, 3);

        let mut n = 0;
        let r: io::Result<()> = p.run(|| {
            n += 1;
            Err(io::Error::from_raw_os_error(libc::EACCES))
        });
        assert!(r.is_err());
        assert_eq!(n, 1);

        let mut n = 0;
        let r = p.run(|| {
            n += 1;
            if n < 2 {
                Err(io::Error::from_raw_os_error(libc::ETIMEDOUT))
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
    }

    /// A failure that took seconds (a client that tried to reconnect and gave up) is not a
    /// hiccup: trying it again would only wait as long again.
    #[test]
    fn a_slow_failure_is_not_tried_again() {
        let p = RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(1),
        };
        let mut n = 0;
        let r: io::Result<()> = p.run(|| {
            n += 1;
            std::thread::sleep(SLOW_FAILURE + Duration::from_millis(50));
            Err(io::Error::from_raw_os_error(libc::EIO))
        });
        assert!(r.is_err());
        assert_eq!(n, 1);
    }
}
