//! FILETIME: 100-nanosecond intervals since 1601-01-01 (UTC), Windows' time stamps, and the
//! nanoseconds since 1970 the engine keeps.

/// 1970-01-01 as a FILETIME.
const UNIX_EPOCH: i128 = 116_444_736_000_000_000;

/// A time for Windows; times before 1601 (which FILETIME cannot hold) become 1601.
pub fn filetime(unix_ns: i64) -> u64 {
    let t = UNIX_EPOCH + i128::from(unix_ns).div_euclid(100);
    t.clamp(0, i128::from(u64::MAX)) as u64
}

/// A FILETIME as nanoseconds since 1970, to the 100 ns Windows keeps.
pub fn unix_ns(filetime: u64) -> i64 {
    let ns = (i128::from(filetime) - UNIX_EPOCH) * 100;
    ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// In a request to set times, 0 means "leave it" (and so does all ones, which Windows uses to
/// stop a handle's later writes from moving the time; there is nothing to stop here).
pub fn requested(filetime: u64) -> Option<i64> {
    (filetime != 0 && filetime != u64::MAX).then(|| unix_ns(filetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_100_ns() {
        // 2024-03-01T12:00:00.1234567Z, as Windows shows it.
        let ns = 1_709_294_400_123_456_700;
        assert_eq!(filetime(ns), 133_537_680_001_234_567);
        assert_eq!(unix_ns(filetime(ns)), ns);
        // Finer than 100 ns is cut, as on NTFS.
        assert_eq!(unix_ns(filetime(ns + 99)), ns);
        assert_eq!(filetime(0), UNIX_EPOCH as u64);
        // The earliest nanosecond an i64 holds (1677) is still a FILETIME.
        assert!(filetime(i64::MIN) < UNIX_EPOCH as u64);
        // 1601 lies before what nanoseconds since 1970 can hold in an i64.
        assert_eq!(unix_ns(0), i64::MIN);
    }

    #[test]
    fn zero_and_all_ones_leave_a_time_alone() {
        assert_eq!(requested(0), None);
        assert_eq!(requested(u64::MAX), None);
        assert_eq!(requested(UNIX_EPOCH as u64), Some(0));
    }
}
