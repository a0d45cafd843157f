//! [`AckedSet`]: which records of one segment are acked, without a per-message index.
//!
//! A record is named by its byte offset in the segment. Records are at least
//! [`GRAIN`] bytes long (frame + sequence number), so `offset / GRAIN` is distinct for every
//! record and a bitmap over it — one bit per 16 bytes of segment, at most 64 KiB for an
//! 8 MiB segment — says which are acked. The bitmap is only allocated once something in the
//! segment is acked: a backlog left on disk and never touched costs no memory per message.
//! When every record of a segment is acked the bits are dropped for a watermark
//! ([`all_below`](AckedSet::all_below)), so the segment being written by a queue that keeps
//! up with its publishers stays small too.

/// Smallest record size (`len` + `crc` + `seq`): the offsets of two records differ by at
/// least this much.
pub(crate) const GRAIN: u32 = 16;

/// The acked records of one segment (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct AckedSet {
    /// Every record before this offset is acked.
    below: u32,
    /// The word holding bit `base * 64` is `words[0]`.
    base: u32,
    /// Bit `offset / GRAIN` set: the record at `offset` is acked.
    words: Vec<u64>,
}

impl AckedSet {
    /// Whether the record at `offset` is acked.
    #[inline]
    pub(crate) fn contains(&self, offset: u32) -> bool {
        if offset < self.below {
            return true;
        }
        let bit = offset / GRAIN;
        let Some(i) = ((bit / 64) as usize).checked_sub(self.base as usize) else {
            return false;
        };
        self.words.get(i).is_some_and(|w| w >> (bit % 64) & 1 == 1)
    }

    /// Marks the record at `offset` acked; returns whether it was not already.
    #[inline]
    pub(crate) fn insert(&mut self, offset: u32) -> bool {
        if self.contains(offset) {
            return false;
        }
        let bit = offset / GRAIN;
        let i = (bit / 64 - self.base) as usize;
        if i >= self.words.len() {
            self.words.resize(i + 1, 0);
        }
        self.words[i] |= 1 << (bit % 64);
        true
    }

    /// Every record before `end` is acked (the segment's live count reached zero): the bits
    /// are dropped, later records start a new bitmap (in the same allocation, so a queue whose
    /// consumers keep up does not allocate per message).
    pub(crate) fn all_below(&mut self, end: u32) {
        self.below = end;
        self.base = end / GRAIN / 64;
        self.words.clear();
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_watermark_and_lazy_allocation() {
        let mut s = AckedSet::default();
        assert_eq!(s.heap_bytes(), 0);
        assert!(!s.contains(16));
        assert!(s.insert(16));
        assert!(!s.insert(16));
        assert!(s.contains(16));
        // Neighbouring records 16 bytes apart never share a bit.
        assert!(!s.contains(32));
        assert!(s.insert(100_000));
        assert!(s.contains(100_000) && !s.contains(100_016));
        s.all_below(200_000);
        assert!(s.contains(16) && s.contains(199_999));
        assert!(!s.contains(200_000));
        assert!(s.insert(200_016));
        assert!(s.contains(200_016) && !s.contains(200_000));
    }
}
