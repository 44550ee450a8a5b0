//! `Ranges`: which bytes of a file are present, as sorted, disjoint, non-touching
//! half-open ranges. A file fetched in ranges (`engine/partial.rs`) keeps two: the bytes in
//! its cache file, and the bytes recorded in the journal as durable there.

use std::ops::Range;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    /// Sorted by start; no two overlap or touch.
    spans: Vec<Range<u64>>,
}

impl Ranges {
    pub fn new() -> Ranges {
        Ranges::default()
    }

    /// Adds `r`, merging it with the spans it overlaps or touches.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.is_empty() {
            return;
        }
        // The first span that ends at or after r.start may merge with r.
        let first = self.spans.partition_point(|s| s.end < r.start);
        let mut merged = r;
        let mut last = first;
        while last < self.spans.len() && self.spans[last].start <= merged.end {
            merged.start = merged.start.min(self.spans[last].start);
            merged.end = merged.end.max(self.spans[last].end);
            last += 1;
        }
        self.spans.splice(first..last, std::iter::once(merged));
    }

    /// The parts of `within` that are not present, in order.
    pub fn missing(&self, within: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = within.start;
        let first = self.spans.partition_point(|s| s.end <= within.start);
        for s in &self.spans[first..] {
            if s.start >= within.end {
                break;
            }
            if s.start > at {
                out.push(at..s.start);
            }
            at = at.max(s.end);
        }
        if at < within.end {
            out.push(at..within.end);
        }
        out
    }

    /// True when every byte of `within` is present.
    pub fn covers(&self, within: Range<u64>) -> bool {
        within.is_empty() || self.missing(within).is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.spans.iter().map(|s| s.end - s.start).sum()
    }

    pub fn spans(&self) -> &[Range<u64>] {
        &self.spans
    }

    /// The journal's form: each span as two little-endian u64s.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.spans.len() * 16);
        for s in &self.spans {
            out.extend_from_slice(&s.start.to_le_bytes());
            out.extend_from_slice(&s.end.to_le_bytes());
        }
        out
    }

    /// Reads [`Ranges::encode`]'s form. Anything malformed yields nothing present: the file is
    /// then fetched again, never served from bytes not known to be there.
    pub fn decode(bytes: &[u8]) -> Ranges {
        let mut r = Ranges::new();
        if !bytes.len().is_multiple_of(16) {
            return r;
        }
        for pair in bytes.chunks_exact(16) {
            let start = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
            let end = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
            if start > end {
                return Ranges::new();
            }
            r.insert(start..end);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spans_merge_when_they_touch_or_overlap() {
        let mut r = Ranges::new();
        r.insert(10..20);
        r.insert(30..40);
        r.insert(20..25);
        assert_eq!(r.spans(), &[10..25, 30..40]);
        r.insert(5..35);
        assert_eq!(r.spans().to_vec(), vec![5..40]);
        assert_eq!(r.missing(0..50), vec![0..5, 40..50]);
        assert!(r.covers(5..40));
        assert!(!r.covers(4..40));
    }

    proptest! {
        /// Against a bitmap of 200 bytes.
        #[test]
        fn ranges_match_a_bitmap(ops in prop::collection::vec((0u64..200, 0u64..60), 0..30),
                                 probe in (0u64..200, 0u64..200)) {
            let mut r = Ranges::new();
            let mut bits = [false; 260];
            for (start, len) in ops {
                r.insert(start..start + len);
                for b in &mut bits[start as usize..(start + len) as usize] {
                    *b = true;
                }
            }
            let (a, b) = (probe.0.min(probe.1), probe.0.max(probe.1));
            let missing: u64 = r.missing(a..b).iter().map(|m| m.end - m.start).sum();
            let expect = bits[a as usize..b as usize].iter().filter(|x| !**x).count() as u64;
            prop_assert_eq!(missing, expect);
            prop_assert_eq!(r.bytes(), bits.iter().filter(|x| **x).count() as u64);
            for w in r.spans().windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            prop_assert_eq!(Ranges::decode(&r.encode()), r);
        }
    }
}
