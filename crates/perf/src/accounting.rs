//! Message accounting, pure and IO-free: which sequence numbers of each producer were consumed
//! (to find lost, duplicated and out-of-order deliveries) and which publishes the broker
//! confirmed.
//!
//! - [`SeqTracker`]: one producer's sequence numbers seen by one delivery group, as a sliding
//!   bitmap. Words below the lowest gap are dropped, so an in-order stream costs O(1) memory.
//! - [`ConfirmTracker`]: one publishing channel's confirm state (delivery tags from 1), with
//!   `multiple` acks/nacks and out-of-order single acks.
//! - [`Accounting`]: every (group, producer) tracker plus the delivery counters; a *group* is
//!   one expected copy of each message: one group in total when each message is routed to
//!   exactly one queue, one group per queue for a fanout.

use std::collections::{BTreeSet, VecDeque};

/// Sequence numbers more than this far above the lowest unseen one are treated as corrupt
/// (the bitmap would otherwise grow without bound on a garbage body).
pub const MAX_SEQ_SPAN: u64 = 1 << 36;

/// What [`SeqTracker::record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time, in order (one above the highest seen so far, or filling the next slot).
    New,
    /// First time, but a higher sequence number was seen before it.
    NewOutOfOrder,
    /// Already seen.
    Duplicate,
    /// Absurdly far ahead: not recorded.
    Corrupt,
}

/// The set of sequence numbers seen from one producer, as a sliding bitmap.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Sequence number of bit 0 of `words[0]` (a multiple of 64); everything below is seen.
    base: u64,
    words: VecDeque<u64>,
    /// One above the highest sequence number seen.
    next: u64,
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
}

impl SeqTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one delivery of `seq`.
    pub fn record(&mut self, seq: u64) -> Seen {
        if seq < self.base {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        let off = seq - self.base;
        if off >= MAX_SEQ_SPAN {
            return Seen::Corrupt;
        }
        let word = (off / 64) as usize;
        let bit = 1u64 << (off % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        self.words[word] |= bit;
        self.unique += 1;
        let seen = if seq + 1 < self.next {
            self.out_of_order += 1;
            Seen::NewOutOfOrder
        } else {
            self.next = seq + 1;
            Seen::New
        };
        while self.words.len() > 1 && self.words[0] == u64::MAX {
            self.words.pop_front();
            self.base += 64;
        }
        seen
    }

    /// Whether `seq` was seen.
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.base {
            return true;
        }
        let off = seq - self.base;
        match self.words.get((off / 64) as usize) {
            Some(w) => w & (1u64 << (off % 64)) != 0,
            None => false,
        }
    }

    /// Distinct sequence numbers seen.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Deliveries of an already-seen sequence number.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// New sequence numbers that arrived after a higher one.
    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Calls `f` for every sequence number in `0..upto` not seen (ascending).
    pub fn for_each_missing(&self, upto: u64, mut f: impl FnMut(u64)) {
        let mut seq = self.base;
        for &w in &self.words {
            if seq >= upto {
                return;
            }
            if w != u64::MAX {
                for b in 0..64 {
                    let s = seq + b;
                    if s >= upto {
                        return;
                    }
                    if w & (1u64 << b) == 0 {
                        f(s);
                    }
                }
            }
            seq += 64;
        }
        for s in seq.max(self.base)..upto {
            f(s);
        }
    }

    /// How many sequence numbers in `0..upto` were not seen.
    pub fn missing(&self, upto: u64) -> u64 {
        let mut n = 0;
        self.for_each_missing(upto, |_| n += 1);
        n
    }
}

/// Publisher-confirm state of one channel: delivery tags are 1, 2, 3, … in publish order.
#[derive(Debug, Clone, Default)]
pub struct ConfirmTracker {
    published: u64,
    /// Lowest tag not settled by a contiguous prefix; every tag below is acked or nacked.
    low: u64,
    /// Tags ≥ `low` settled out of order.
    settled: BTreeSet<u64>,
    /// Nacked tags (rare), to tell acks from nacks below `low`.
    nacked_tags: BTreeSet<u64>,
    acked: u64,
    nacked: u64,
}

impl ConfirmTracker {
    /// A fresh tracker (next publish gets tag 1).
    pub fn new() -> Self {
        ConfirmTracker {
            low: 1,
            ..Default::default()
        }
    }

    /// Notes `n` more publishes.
    pub fn on_publish(&mut self, n: u64) {
        self.published += n;
    }

    /// Handles basic.ack (`nack == false`) or basic.nack from the broker. Tags never published
    /// or already settled are ignored; returns how many publishes this settled.
    pub fn on_confirm(&mut self, tag: u64, multiple: bool, nack: bool) -> u64 {
        let tag = tag.min(self.published);
        let mut n = 0;
        if multiple {
            if tag < self.low {
                return 0;
            }
            let mut settle = |t: u64, this: &mut Self| {
                n += 1;
                if nack {
                    this.nacked_tags.insert(t);
                }
            };
            for t in self.low..=tag {
                if !self.settled.contains(&t) {
                    settle(t, self);
                }
            }
            self.settled = self.settled.split_off(&(tag + 1));
            self.low = tag + 1;
        } else {
            if tag < self.low || tag == 0 || !self.settled.insert(tag) {
                return 0;
            }
            n = 1;
            if nack {
                self.nacked_tags.insert(tag);
            }
        }
        while self.settled.remove(&self.low) {
            self.low += 1;
        }
        if nack {
            self.nacked += n;
        } else {
            self.acked += n;
        }
        n
    }

    /// Publishes so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Publishes acked by the broker.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Publishes nacked by the broker.
    pub fn nacked(&self) -> u64 {
        self.nacked
    }

    /// Publishes not yet acked or nacked.
    pub fn outstanding(&self) -> u64 {
        self.published - self.acked - self.nacked
    }

    /// Whether the publish with this tag was acked (not nacked, not outstanding).
    pub fn is_acked(&self, tag: u64) -> bool {
        let settled = tag != 0 && tag <= self.published && (tag < self.low || self.settled.contains(&tag));
        settled && !self.nacked_tags.contains(&tag)
    }
}

/// Every (group, producer) tracker and the delivery counters of one run.
#[derive(Debug, Clone)]
pub struct Accounting {
    groups: Vec<Vec<SeqTracker>>,
    /// Deliveries seen (every one, duplicates included).
    pub deliveries: u64,
    /// Deliveries flagged `redelivered`.
    pub redelivered: u64,
    /// Repeats of a sequence number that arrived flagged `redelivered` (not counted as dups).
    pub redelivered_repeats: u64,
    /// Bodies whose producer id or sequence number cannot be ours.
    pub corrupt: u64,
}

/// One producer's publishing outcome, for [`Accounting::summary`].
#[derive(Debug, Clone, Default)]
pub struct ProducerTally {
    /// Messages written to the socket (sequence numbers `0..published`).
    pub published: u64,
    /// Confirm state, if the producer used confirms.
    pub confirms: Option<ConfirmTracker>,
}

/// Loss and duplication over a whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Deliveries expected: published × groups.
    pub expected: u64,
    /// Distinct (group, producer, seq) consumed.
    pub unique: u64,
    /// Expected deliveries never seen.
    pub lost: u64,
    /// Of those, deliveries whose publish the broker had acked (a broken promise).
    pub lost_confirmed: u64,
    /// Repeats not flagged `redelivered`.
    pub duplicated: u64,
    /// New sequence numbers that arrived after a higher one of the same producer and group.
    pub out_of_order: u64,
}

impl Accounting {
    /// Trackers for `groups` delivery groups of `producers` producers.
    pub fn new(groups: usize, producers: usize) -> Self {
        Accounting {
            groups: vec![vec![SeqTracker::new(); producers]; groups.max(1)],
            deliveries: 0,
            redelivered: 0,
            redelivered_repeats: 0,
            corrupt: 0,
        }
    }

    /// Records one delivery; returns what the tracker found.
    pub fn record(&mut self, group: usize, producer: usize, seq: u64, redelivered: bool) -> Seen {
        self.deliveries += 1;
        if redelivered {
            self.redelivered += 1;
        }
        let Some(t) = self.groups.get_mut(group).and_then(|g| g.get_mut(producer)) else {
            self.corrupt += 1;
            return Seen::Corrupt;
        };
        let seen = t.record(seq);
        match seen {
            Seen::Duplicate if redelivered => {
                // Not a duplicate in the sense of the report: the broker said it may be one.
                t.duplicates -= 1;
                self.redelivered_repeats += 1;
            }
            Seen::Corrupt => self.corrupt += 1,
            _ => {}
        }
        seen
    }

    /// Distinct deliveries so far.
    pub fn unique(&self) -> u64 {
        self.groups.iter().flatten().map(SeqTracker::unique).sum()
    }

    /// The tracker of one (group, producer).
    pub fn tracker(&self, group: usize, producer: usize) -> Option<&SeqTracker> {
        self.groups.get(group)?.get(producer)
    }

    /// Loss and duplication given what each producer published (index = producer id).
    pub fn summary(&self, producers: &[ProducerTally]) -> Summary {
        let mut s = Summary::default();
        for group in &self.groups {
            for (p, t) in group.iter().enumerate() {
                s.unique += t.unique();
                s.duplicated += t.duplicates();
                s.out_of_order += t.out_of_order();
                let Some(tally) = producers.get(p) else { continue };
                s.expected += tally.published;
                t.for_each_missing(tally.published, |seq| {
                    s.lost += 1;
                    if tally.confirms.as_ref().is_some_and(|c| c.is_acked(seq + 1)) {
                        s.lost_confirmed += 1;
                    }
                });
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_is_compact_and_complete() {
        let mut t = SeqTracker::new();
        for s in 0..10_000 {
            assert_eq!(t.record(s), Seen::New);
        }
        assert_eq!(t.unique(), 10_000);
        assert_eq!(t.duplicates(), 0);
        assert_eq!(t.out_of_order(), 0);
        assert_eq!(t.missing(10_000), 0);
        assert!(t.words.len() <= 2, "bitmap slid forward: {} words", t.words.len());
        assert!(t.contains(0) && t.contains(9_999) && !t.contains(10_000));
    }

    #[test]
    fn detects_lost_messages() {
        let mut t = SeqTracker::new();
        for s in (0..1_000).filter(|s| s % 100 != 7) {
            t.record(s);
        }
        assert_eq!(t.missing(1_000), 10);
        let mut gaps = Vec::new();
        t.for_each_missing(1_000, |s| gaps.push(s));
        assert_eq!(gaps, (0..10).map(|i| i * 100 + 7).collect::<Vec<_>>());
        // Messages published past the last one seen are lost too.
        assert_eq!(t.missing(1_005), 15);
    }

    #[test]
    fn nothing_seen_means_everything_missing() {
        let t = SeqTracker::new();
        assert_eq!(t.missing(130), 130);
        assert_eq!(t.missing(0), 0);
    }

    #[test]
    fn detects_duplicates_before_and_after_compaction() {
        let mut t = SeqTracker::new();
        for s in 0..200 {
            t.record(s);
        }
        assert_eq!(t.record(5), Seen::Duplicate); // below the slid base
        assert_eq!(t.record(199), Seen::Duplicate); // inside the window
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.unique(), 200);
    }

    #[test]
    fn detects_out_of_order() {
        let mut t = SeqTracker::new();
        assert_eq!(t.record(0), Seen::New);
        assert_eq!(t.record(2), Seen::New);
        assert_eq!(t.record(1), Seen::NewOutOfOrder);
        assert_eq!(t.record(3), Seen::New);
        assert_eq!(t.out_of_order(), 1);
        assert_eq!(t.missing(4), 0);
    }

    #[test]
    fn corrupt_sequence_is_not_recorded() {
        let mut t = SeqTracker::new();
        assert_eq!(t.record(MAX_SEQ_SPAN + 5), Seen::Corrupt);
        assert_eq!(t.unique(), 0);
        assert!(t.words.is_empty());
    }

    #[test]
    fn confirm_multiple_and_single() {
        let mut c = ConfirmTracker::new();
        c.on_publish(10);
        assert_eq!(c.outstanding(), 10);
        assert_eq!(c.on_confirm(3, true, false), 3);
        assert_eq!(c.on_confirm(5, false, false), 1);
        assert_eq!(c.on_confirm(5, false, false), 0, "repeat ignored");
        assert_eq!(c.on_confirm(2, true, false), 0, "stale multiple ignored");
        assert_eq!(c.on_confirm(4, false, true), 1, "nack");
        assert_eq!(c.low, 6, "4 and 5 joined the prefix");
        assert_eq!(c.on_confirm(10, true, false), 5);
        assert_eq!((c.acked(), c.nacked(), c.outstanding()), (9, 1, 0));
        assert!(c.is_acked(1) && c.is_acked(5) && !c.is_acked(4) && !c.is_acked(11));
    }

    #[test]
    fn confirm_multiple_skips_already_settled() {
        let mut c = ConfirmTracker::new();
        c.on_publish(5);
        c.on_confirm(3, false, false);
        c.on_confirm(4, false, true);
        assert_eq!(c.on_confirm(5, true, false), 3);
        assert_eq!((c.acked(), c.nacked()), (4, 1));
        assert!(c.settled.is_empty());
        assert!(!c.is_acked(4));
    }

    #[test]
    fn confirm_of_unpublished_tag_is_clamped() {
        let mut c = ConfirmTracker::new();
        c.on_publish(2);
        assert_eq!(c.on_confirm(99, true, false), 2);
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn summary_counts_lost_confirmed_and_dups_per_group() {
        // Two groups (a fanout to two queues), two producers of 100 messages each.
        let mut a = Accounting::new(2, 2);
        for seq in 0..100 {
            a.record(0, 0, seq, false);
            a.record(0, 1, seq, false);
            if seq != 42 {
                a.record(1, 0, seq, false);
            }
            if seq < 90 {
                a.record(1, 1, seq, false);
            }
        }
        a.record(0, 0, 7, false); // a real duplicate
        a.record(0, 1, 7, true); // a redelivery: not a duplicate
        assert_eq!(a.record(0, 9, 0, false), Seen::Corrupt); // unknown producer
        let mut conf = ConfirmTracker::new();
        conf.on_publish(100);
        conf.on_confirm(95, true, false); // tags 1..=95 = seqs 0..=94
        let tallies = [
            ProducerTally {
                published: 100,
                confirms: None,
            },
            ProducerTally {
                published: 100,
                confirms: Some(conf),
            },
        ];
        let s = a.summary(&tallies);
        assert_eq!(s.expected, 400);
        assert_eq!(s.unique, 389);
        assert_eq!(s.lost, 11);
        assert_eq!(s.lost_confirmed, 5, "seqs 90..=94 of producer 1 were acked");
        assert_eq!(s.duplicated, 1);
        assert_eq!(a.redelivered, 1);
        assert_eq!(a.redelivered_repeats, 1);
        assert_eq!(a.corrupt, 1);
        assert_eq!(a.deliveries, 392);
    }

    #[test]
    fn out_of_order_across_queues_is_counted_not_lost() {
        let mut a = Accounting::new(1, 1);
        for seq in [1, 0, 3, 2, 5, 4] {
            a.record(0, 0, seq, false);
        }
        let s = a.summary(&[ProducerTally {
            published: 6,
            confirms: None,
        }]);
        assert_eq!((s.lost, s.duplicated, s.out_of_order), (0, 0, 3));
    }
}
