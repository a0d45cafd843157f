//! Credit flow from a queue to the connections publishing into it: the accounting, with no
//! clock or IO of its own (callers pass `now` in milliseconds).
//!
//! RabbitMQ throttles a publisher when the queue process it feeds falls behind its mailbox.
//! Warren enqueues on the publisher's own task, so "falling behind" is measured where it shows:
//! a queue whose consumers are taking messages grants at most one window of publishes beyond
//! what it has delivered. Each delivery earns one credit back; a publisher that took the last
//! one stops reading its socket (TCP back-pressure) until the queue has delivered half a window
//! again. So a consumer that keeps up is never starved by ingest: the publisher runs at the
//! consumers' pace with at most a window queued.
//! Publishes taken beyond the window (the rest of a read batch, a forwarded batch enqueued
//! whole) are owed: deliveries pay them back before the window grows again, so overshoot does
//! not accumulate into a backlog.
//!
//! Two cases must not throttle, and do not:
//! - a queue with no consumers absorbs bursts at full speed into its paged log (its backlog on
//!   disk is the point), so it never runs out;
//! - a queue whose consumers are slow (the client, not the broker, is the bottleneck) must not
//!   slow a fanout's other queues to its pace: when a queue out of credit delivers less than
//!   an eighth of a window in a [`SLOW_CONSUMER_GRACE_MS`] period (under 25,000 msg/s with the
//!   defaults), it grants a fresh window and lets its backlog grow (and page to disk). A queue
//!   that delivers more keeps pacing its publishers by its deliveries, period after period.
//!
//! The line between the two is drawn while the publisher is parked: a consumer that was
//! starved of CPU by the publisher's ingest gets the core for the whole period and shows what
//! it can take (far more than the threshold on any machine that can run a broker); one that is
//! slow by itself stays slow.

/// Publishes a queue with consumers takes beyond what it has delivered before its publishers
/// must wait. Big enough to keep a pipelined publisher busy over a delivery round trip, small
/// enough that the backlog a keeping-up consumer sees stays a few milliseconds long.
pub const DEFAULT_WINDOW: u32 = 4000;

/// The period over which a queue out of credit judges its consumers: less than
/// [`Credit::window`] / [`SLOW_FRACTION`] delivered in it means slow (client-bound) consumers,
/// and a fresh window is granted.
pub const SLOW_CONSUMER_GRACE_MS: u64 = 20;

/// Consumers delivering less than `window / SLOW_FRACTION` per grace period are slow.
pub const SLOW_FRACTION: u32 = 8;

/// One queue's ingest credit.
#[derive(Debug, Clone)]
pub struct Credit {
    window: u32,
    /// Credits left; below zero, the publishes taken beyond the window (a publisher's read
    /// batch, or a forwarded batch, is enqueued whole), which deliveries pay back first.
    available: i64,
    /// When the current judging period began: the queue ran out of credit since its last
    /// wake-up (None: publishers run).
    out_since_ms: Option<u64>,
    /// Deliveries since `out_since_ms`.
    delivered_in_period: u32,
    /// The judging period ([`SLOW_CONSUMER_GRACE_MS`] unless set by [`Credit::with_grace`]).
    grace_ms: u64,
}

impl Default for Credit {
    fn default() -> Self {
        Credit::new(DEFAULT_WINDOW)
    }
}

/// What [`Credit::take`] says to the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Go on publishing.
    Go,
    /// That was the last credit: stop reading until the queue grants more.
    Exhausted,
}

impl Credit {
    /// A full window of `window` credits (at least 1).
    pub fn new(window: u32) -> Credit {
        Credit::with_grace(window, SLOW_CONSUMER_GRACE_MS)
    }

    /// A full window of `window` credits whose consumers are judged over `grace_ms`: longer
    /// than the default for a queue whose deliveries wait for a commit (a quorum queue), so a
    /// period that happened to fall between two commits does not make them look slow.
    pub fn with_grace(window: u32, grace_ms: u64) -> Credit {
        let window = window.max(1);
        Credit {
            window,
            available: i64::from(window),
            out_since_ms: None,
            delivered_in_period: 0,
            grace_ms: grace_ms.max(1),
        }
    }

    /// The judging period in milliseconds.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// The window size.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Credits left (0 when publishes went beyond the window).
    pub fn available(&self) -> u32 {
        self.available.clamp(0, i64::from(self.window)) as u32
    }

    /// Whether a publisher may go on now (not out of credit).
    pub fn has_credit(&self) -> bool {
        self.available > 0
    }

    /// One message published into the queue. With no consumers the queue absorbs everything:
    /// the window stays full.
    pub fn take(&mut self, has_consumers: bool, now: u64) -> Take {
        if !has_consumers {
            self.refill();
            return Take::Go;
        }
        self.available -= 1;
        if self.available > 0 {
            return Take::Go;
        }
        // The period counts from the first time it ran out since the last wake-up.
        if self.out_since_ms.is_none() {
            self.out_since_ms = Some(now);
            self.delivered_in_period = 0;
        }
        Take::Exhausted
    }

    /// `n` messages left the queue for consumers (or were removed by purge, TTL, limits).
    /// Returns true when publishers parked on this queue may go on: the credit just rose to
    /// half a window (publishers park only at zero, so every parked one sees this crossing).
    pub fn delivered(&mut self, n: u32) -> bool {
        if n == 0 {
            return false;
        }
        self.delivered_in_period = self.delivered_in_period.saturating_add(n);
        let before = self.available;
        self.available = (self.available + i64::from(n)).min(i64::from(self.window));
        let half = i64::from((self.window / 2).max(1));
        let wake = before < half && self.available >= half;
        if wake {
            self.out_since_ms = None;
        }
        wake
    }

    /// At the end of a judging period: a queue out of credit that delivered less than
    /// `window / SLOW_FRACTION` in it has slow consumers and grants a fresh window (its backlog
    /// grows and pages to disk); returns true, so waiting publishers may go on. One that
    /// delivered more starts another period (its deliveries keep pacing the publishers).
    pub fn grace(&mut self, now: u64) -> bool {
        match self.grace_at() {
            Some(at) if self.available <= 0 && now >= at => {
                if self.delivered_in_period < (self.window / SLOW_FRACTION).max(1) {
                    self.refill();
                    return true;
                }
                self.out_since_ms = Some(now);
                self.delivered_in_period = 0;
                false
            }
            _ => false,
        }
    }

    /// When [`grace`](Self::grace) would grant (None: publishers are not held).
    pub fn grace_at(&self) -> Option<u64> {
        self.out_since_ms.map(|t| t.saturating_add(self.grace_ms))
    }

    /// Back to a full window (the consumers went away, the queue was purged or deleted).
    /// Returns true if it was out of credit.
    pub fn refill(&mut self) -> bool {
        let was_out = self.available <= 0;
        self.available = i64::from(self.window);
        self.out_since_ms = None;
        self.delivered_in_period = 0;
        was_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_without_consumers_never_runs_out() {
        let mut c = Credit::new(3);
        for i in 0..10_000 {
            assert_eq!(c.take(false, i), Take::Go);
        }
        assert_eq!(c.available(), 3);
        assert_eq!(c.grace_at(), None);
    }

    #[test]
    fn a_window_of_publishes_beyond_deliveries_then_exhausted() {
        let mut c = Credit::new(3);
        assert_eq!(c.take(true, 0), Take::Go);
        assert_eq!(c.take(true, 0), Take::Go);
        assert_eq!(c.take(true, 0), Take::Exhausted);
        assert!(!c.has_credit());
        // Further publishes (already read frames) are owed: deliveries pay them back first.
        assert_eq!(c.take(true, 0), Take::Exhausted);
        assert_eq!(c.take(true, 0), Take::Exhausted);
        assert_eq!(c.available(), 0);
        assert!(!c.delivered(2));
        assert!(
            !c.has_credit(),
            "the two publishes beyond the window were paid back first"
        );
        assert!(c.delivered(2));
        assert_eq!(c.available(), 2);
    }

    #[test]
    fn deliveries_earn_credit_back_and_wake_at_half_a_window() {
        let mut c = Credit::new(10);
        for _ in 0..10 {
            c.take(true, 0);
        }
        assert!(!c.has_credit());
        // One delivery: credit, but not yet half a window: publishers stay parked.
        assert!(!c.delivered(1));
        assert!(c.has_credit());
        // Rising to half a window wakes them.
        assert!(c.delivered(4));
        assert_eq!(c.available(), 5);
        // Above half: no second wake-up.
        assert!(!c.delivered(1));
        c.take(true, 1);
        for _ in 0..5 {
            c.take(true, 2);
        }
        assert!(c.delivered(5), "out of credit, then half a window: wake");
        assert_eq!(c.available(), 5);
    }

    #[test]
    fn credit_never_exceeds_the_window() {
        let mut c = Credit::new(4);
        c.take(true, 0);
        c.delivered(100);
        assert_eq!(c.available(), 4);
        assert!(!c.delivered(0));
    }

    #[test]
    fn a_stalled_queue_grants_a_fresh_window_after_the_grace_period() {
        let mut c = Credit::new(2);
        c.take(true, 100);
        assert_eq!(c.grace_at(), None);
        assert_eq!(c.take(true, 105), Take::Exhausted);
        assert_eq!(c.grace_at(), Some(105 + SLOW_CONSUMER_GRACE_MS));
        assert!(!c.grace(105 + SLOW_CONSUMER_GRACE_MS - 1));
        assert!(c.grace(105 + SLOW_CONSUMER_GRACE_MS));
        assert_eq!(c.available(), 2);
        assert_eq!(c.grace_at(), None);
        // With credit left, grace does nothing.
        assert!(!c.grace(10_000));
    }

    #[test]
    fn a_trickle_of_deliveries_does_not_hold_publishers_past_the_grace() {
        // A slow consumer earns a credit now and then (less than window / SLOW_FRACTION per
        // period); the publisher takes it at once. The period counts from the first time the
        // queue ran out.
        let mut c = Credit::new(800);
        for _ in 0..800 {
            c.take(true, 0);
        }
        for ms in 1..SLOW_CONSUMER_GRACE_MS {
            assert!(!c.delivered(1));
            assert_eq!(c.take(true, ms), Take::Exhausted);
            assert!(!c.grace(ms));
        }
        assert!(c.grace(SLOW_CONSUMER_GRACE_MS));
        assert_eq!(c.available(), 800);
    }

    #[test]
    fn consumers_delivering_enough_per_period_keep_pacing_the_publisher() {
        let mut c = Credit::new(800);
        for _ in 0..800 {
            c.take(true, 0);
        }
        let per_period = 800 / SLOW_FRACTION;
        for period in 0..5u64 {
            let t = period * SLOW_CONSUMER_GRACE_MS;
            // Delivered just enough, and the publisher took each credit at once.
            for _ in 0..per_period {
                c.delivered(1);
                c.take(true, t);
            }
            assert!(!c.grace(t + SLOW_CONSUMER_GRACE_MS), "period {period}: not slow");
            assert_eq!(c.grace_at(), Some(t + 2 * SLOW_CONSUMER_GRACE_MS));
        }
        // A period with too few deliveries: slow, a fresh window.
        assert!(c.grace(6 * SLOW_CONSUMER_GRACE_MS));
        assert_eq!(c.available(), 800);
    }

    #[test]
    fn a_longer_judging_period_waits_for_its_end() {
        let mut c = Credit::with_grace(2, 100);
        c.take(true, 0);
        assert_eq!(c.take(true, 0), Take::Exhausted);
        assert_eq!(c.grace_at(), Some(100));
        assert!(
            !c.grace(SLOW_CONSUMER_GRACE_MS),
            "the default period is not this one's"
        );
        assert!(c.grace(100));
        assert_eq!(c.available(), 2);
    }

    #[test]
    fn earning_half_a_window_back_restarts_the_grace_period() {
        let mut c = Credit::new(4);
        for _ in 0..4 {
            c.take(true, 0);
        }
        assert!(c.delivered(2));
        assert_eq!(c.grace_at(), None);
        c.take(true, 6);
        assert_eq!(c.take(true, 7), Take::Exhausted);
        assert_eq!(c.grace_at(), Some(7 + SLOW_CONSUMER_GRACE_MS));
    }

    #[test]
    fn a_throttled_publisher_moves_at_the_consumers_pace_plus_one_window() {
        // Simulate: consumer delivers 7 per ms, publisher wants 1000 per ms.
        let mut c = Credit::new(50);
        let (mut published, mut delivered) = (0u64, 0u64);
        for ms in 0..1000u64 {
            let mut n = 0;
            while n < 1000 && c.has_credit() {
                c.take(true, ms);
                published += 1;
                n += 1;
            }
            let backlog = published - delivered;
            let d = backlog.min(7);
            delivered += d;
            c.delivered(d as u32);
            assert!(published - delivered <= 50);
            assert!(!c.grace(ms), "a live consumer never triggers the grace");
        }
        assert!(delivered >= 6_900, "the consumer keeps its pace: {delivered}");
    }

    #[test]
    fn refill_reports_whether_publishers_waited() {
        let mut c = Credit::new(1);
        assert!(!c.refill());
        c.take(true, 0);
        assert!(c.refill());
        assert!(c.has_credit());
    }
}
