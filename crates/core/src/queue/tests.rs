use super::*;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use warren_codec::{BasicProperties, FieldTable, FieldValue};

use crate::message::Message;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses real `x-` arguments, as queue.declare would.
/// Channel `n` of connection 0.
fn chan(n: u16) -> ChannelKey {
    ChannelKey::new(crate::ids::ConnId(0), n)
}

fn args(entries: &[(&str, FieldValue)]) -> QueueArgs {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(*k, v.clone());
    }
    QueueArgs::parse(&t, "q", "/").expect("valid queue arguments")
}

fn queue(entries: &[(&str, FieldValue)]) -> QueueState {
    QueueState::new("q", args(entries))
}

fn dlx() -> (&'static str, FieldValue) {
    ("x-dead-letter-exchange", FieldValue::str("dlx"))
}

fn msg_with(body: &str, props: BasicProperties) -> MessageRef {
    Arc::new(Message::new(
        "ex",
        "rk",
        props,
        Bytes::copy_from_slice(body.as_bytes()),
    ))
}

fn msg(body: &str) -> MessageRef {
    msg_with(body, BasicProperties::default())
}

fn msg_prio(body: &str, priority: Option<u8>) -> MessageRef {
    msg_with(
        body,
        BasicProperties {
            priority,
            ..Default::default()
        },
    )
}

fn body(m: &MessageRef) -> String {
    String::from_utf8(m.body.to_vec()).expect("utf-8 body")
}

fn consumer(key: u64, channel: u16, prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        key: ConsumerKey(key),
        channel: chan(channel),
        tag: format!("ctag-{key}").into(),
        no_ack: false,
        prefetch,
        exclusive: false,
        priority: 0,
    }
}

fn add(q: &mut QueueState, spec: ConsumerSpec) {
    q.add_consumer(spec, "/").expect("consumer added");
}

/// Publishes at `now` with no per-message TTL, expecting it to be enqueued with no effects.
fn publish(q: &mut QueueState, b: &str) {
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg(b), 0, None, &mut fx), Published::Enqueued);
    assert!(fx.deliveries.is_empty() && fx.dead_letters.is_empty());
}

fn dispatch(q: &mut QueueState, now: u64) -> Effects {
    let mut fx = Effects::default();
    q.dispatch(now, |_| true, &mut fx);
    fx
}

fn get(q: &mut QueueState, now: u64) -> Option<(Delivery, u32)> {
    let mut fx = Effects::default();
    let r = q.get(chan(99), false, now, &mut fx);
    assert!(fx.dead_letters.is_empty());
    r
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| body(&d.msg)).collect()
}

fn keys(ds: &[Delivery]) -> Vec<u64> {
    ds.iter()
        .map(|d| d.consumer.expect("consumer delivery").0)
        .collect()
}

fn dead(fx: &Effects) -> Vec<(String, DeadReason)> {
    fx.dead_letters.iter().map(|(m, r)| (body(m), *r)).collect()
}

fn dl(b: &str, r: DeadReason) -> (String, DeadReason) {
    (b.to_string(), r)
}

/// Drains the ready messages with basic.get (acking each), returning their bodies.
fn drain(q: &mut QueueState, now: u64) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((d, _)) = get(q, now) {
        assert!(q.ack(d.seq));
        out.push(body(&d.msg));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Ordering, round-robin and prefetch
// ---------------------------------------------------------------------------------------------

#[test]
fn fifo_dispatch_and_get() {
    let mut q = queue(&[]);
    for b in ["a", "b", "c", "d"] {
        publish(&mut q, b);
    }
    assert_eq!(q.message_count(), 4);
    let (d, left) = get(&mut q, 0).unwrap();
    assert_eq!((body(&d.msg).as_str(), left), ("a", 3));
    add(&mut q, consumer(1, 1, 0));
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["b", "c", "d"]);
    // Seqs follow publish order.
    let seqs: Vec<u64> = fx.deliveries.iter().map(|d| d.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && d.seq < seqs[0]);
    assert!(
        fx.deliveries
            .iter()
            .all(|d| !d.redelivered && d.channel == chan(1) && !d.no_ack)
    );
}

#[test]
fn round_robin_between_two_consumers() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    add(&mut q, consumer(2, 2, 0));
    for b in ["a", "b", "c", "d", "e"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a", "b", "c", "d", "e"]);
    assert_eq!(keys(&fx.deliveries), [1, 2, 1, 2, 1]);
    // Round-robin continues across dispatch calls.
    publish(&mut q, "f");
    publish(&mut q, "g");
    let fx = dispatch(&mut q, 0);
    assert_eq!(keys(&fx.deliveries), [2, 1]);
    assert_eq!(fx.deliveries[0].channel, chan(2));
}

#[test]
fn prefetch_one_with_two_consumers_waits_for_ack() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 1));
    add(&mut q, consumer(2, 2, 1));
    for b in ["a", "b", "c"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a", "b"]);
    assert_eq!(keys(&fx.deliveries), [1, 2]);
    assert_eq!((q.message_count(), q.unacked_count()), (1, 2));
    // Both are full: nothing more until an ack.
    assert!(dispatch(&mut q, 0).deliveries.is_empty());
    assert_eq!(q.message_count(), 1);
    assert!(q.ack(fx.deliveries[1].seq));
    let fx2 = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx2.deliveries), ["c"]);
    assert_eq!(keys(&fx2.deliveries), [2]);
    assert_eq!((q.message_count(), q.unacked_count()), (0, 2));
}

#[test]
fn prefetch_zero_is_unlimited() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    for i in 0..500 {
        publish(&mut q, &i.to_string());
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(fx.deliveries.len(), 500);
    assert_eq!((q.message_count(), q.unacked_count()), (0, 500));
}

#[test]
fn no_ack_consumer_settles_on_dispatch() {
    let mut q = queue(&[]);
    add(
        &mut q,
        ConsumerSpec {
            no_ack: true,
            ..consumer(1, 1, 1)
        },
    );
    for b in ["a", "b", "c"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    // Prefetch does not apply to auto-ack consumers (nothing is ever outstanding).
    assert_eq!(bodies(&fx.deliveries), ["a", "b", "c"]);
    assert!(fx.deliveries.iter().all(|d| d.no_ack));
    assert_eq!((q.message_count(), q.unacked_count()), (0, 0));
    assert!(q.is_empty());
    for d in &fx.deliveries {
        assert!(!q.ack(d.seq));
        assert!(!q.reject(d.seq, Some(Return::Failed), 0, &mut Effects::default()));
    }
    assert!(q.is_empty());
}

#[test]
fn basic_get_reports_remaining_count() {
    let mut q = queue(&[]);
    for b in ["a", "b", "c"] {
        publish(&mut q, b);
    }
    let mut fx = Effects::default();
    let (d, left) = q.get(chan(7), false, 0, &mut fx).unwrap();
    assert_eq!(
        (body(&d.msg).as_str(), left, d.channel, d.consumer),
        ("a", 2, chan(7), None)
    );
    assert!(!d.no_ack && !d.redelivered);
    assert_eq!(q.unacked_count(), 1);
    let (d2, left) = q.get(chan(7), true, 0, &mut fx).unwrap();
    assert_eq!((body(&d2.msg).as_str(), left), ("b", 1));
    assert!(d2.no_ack);
    assert_eq!(q.unacked_count(), 1, "no-ack get is settled at once");
    assert!(!q.ack(d2.seq));
    let (d3, left) = q.get(chan(7), false, 0, &mut fx).unwrap();
    assert_eq!((body(&d3.msg).as_str(), left), ("c", 0));
    assert!(q.get(chan(7), false, 0, &mut fx).is_none());
    assert_eq!((q.message_count(), q.unacked_count(), q.total_count()), (0, 2, 2));
    assert!(q.ack(d.seq) && q.ack(d3.seq));
    assert!(q.is_empty());
    assert!(fx.deliveries.is_empty() && fx.dead_letters.is_empty());
}

#[test]
fn ack_of_unknown_or_settled_seq_is_false() {
    let mut q = queue(&[]);
    assert!(!q.ack(1));
    assert!(!q.ack(12345));
    publish(&mut q, "a");
    // Ready but not delivered: cannot be acked.
    assert!(!q.ack(1));
    let (d, _) = get(&mut q, 0).unwrap();
    assert!(q.ack(d.seq));
    assert!(!q.ack(d.seq));
    let mut fx = Effects::default();
    assert!(!q.reject(d.seq, None, 0, &mut fx));
    assert!(!q.reject(d.seq, Some(Return::Failed), 0, &mut fx));
    assert!(!q.unsend(d.seq, None, chan(99)));
    assert!(q.is_empty() && fx.dead_letters.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Returns: reject, nack, channel loss, unsend
// ---------------------------------------------------------------------------------------------

#[test]
fn reject_requeue_restores_original_position() {
    let mut q = queue(&[]);
    for b in ["a", "b", "c", "d"] {
        publish(&mut q, b);
    }
    add(&mut q, consumer(1, 1, 2));
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a", "b"]);
    let (a, b) = (fx.deliveries[0].seq, fx.deliveries[1].seq);
    let mut fx = Effects::default();
    assert!(q.reject(b, Some(Return::Failed), 0, &mut fx));
    assert!(q.reject(a, Some(Return::Returned), 0, &mut fx));
    assert!(fx.dead_letters.is_empty() && fx.deliveries.is_empty());
    assert_eq!((q.message_count(), q.unacked_count()), (4, 0));
    assert!(q.remove_consumer(ConsumerKey(1)).is_some());
    let got: Vec<(String, bool, u64)> = std::iter::from_fn(|| get(&mut q, 0))
        .map(|(d, _)| (body(&d.msg), d.redelivered, d.seq))
        .collect();
    assert_eq!(
        got.iter().map(|(b, r, _)| (b.as_str(), *r)).collect::<Vec<_>>(),
        [("a", true), ("b", true), ("c", false), ("d", false)]
    );
    assert_eq!((got[0].2, got[1].2), (a, b), "seq is kept across a requeue");
}

#[test]
fn reject_requeue_goes_ahead_of_later_messages_for_consumers() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 1));
    for b in ["a", "b", "c"] {
        publish(&mut q, b);
    }
    let d = dispatch(&mut q, 0).deliveries.remove(0);
    assert!(q.reject(d.seq, Some(Return::Failed), 0, &mut Effects::default()));
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    assert!(fx.deliveries[0].redelivered);
    assert_eq!(fx.deliveries[0].delivery_count, 1);
    assert_eq!(fx.deliveries[0].acquired_count, 1);
}

#[test]
fn reject_discard_dead_letters_rejected() {
    let mut q = queue(&[dlx()]);
    publish(&mut q, "a");
    let (d, _) = get(&mut q, 0).unwrap();
    let mut fx = Effects::default();
    assert!(q.reject(d.seq, None, 0, &mut fx));
    assert_eq!(dead(&fx), [dl("a", DeadReason::Rejected)]);
    assert!(q.is_empty());
    // Without a DLX the message is simply dropped.
    let mut q = queue(&[]);
    publish(&mut q, "a");
    let (d, _) = get(&mut q, 0).unwrap();
    let mut fx = Effects::default();
    assert!(q.reject(d.seq, None, 0, &mut fx));
    assert!(fx.dead_letters.is_empty() && fx.dropped_by_limit == 0);
    assert!(q.is_empty());
}

#[test]
fn release_channel_requeues_in_order_as_failed() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    add(&mut q, consumer(2, 2, 0));
    for b in ["a", "b", "c", "d", "e", "f"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(keys(&fx.deliveries), [1, 2, 1, 2, 1, 2]);
    assert!(q.remove_consumer(ConsumerKey(1)).is_some());
    assert!(q.remove_consumer(ConsumerKey(2)).is_some());
    assert_eq!(
        q.unacked_count(),
        6,
        "unacked stay with the channel after basic.cancel"
    );
    let mut fx = Effects::default();
    q.release_channel(chan(1), Return::Failed, 0, &mut fx);
    assert!(fx.deliveries.is_empty() && fx.dead_letters.is_empty());
    assert_eq!((q.message_count(), q.unacked_count()), (3, 3));
    let got: Vec<Delivery> = std::iter::from_fn(|| get(&mut q, 0)).map(|(d, _)| d).collect();
    assert_eq!(bodies(&got), ["a", "c", "e"]);
    assert!(
        got.iter()
            .all(|d| d.redelivered && d.delivery_count == 1 && d.acquired_count == 1)
    );
    // Channel 2's messages are untouched (the three above are now unacked by the getter).
    assert_eq!(q.unacked_count(), 6);
    let mut fx2 = Effects::default();
    q.release_channel(chan(2), Return::Returned, 0, &mut fx2);
    let got: Vec<Delivery> = std::iter::from_fn(|| get(&mut q, 0)).map(|(d, _)| d).collect();
    assert_eq!(bodies(&got), ["b", "d", "f"]);
    assert!(
        got.iter()
            .all(|d| d.redelivered && d.delivery_count == 0 && d.acquired_count == 1)
    );
}

#[test]
fn release_channel_frees_consumer_prefetch() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 1));
    publish(&mut q, "a");
    publish(&mut q, "b");
    assert_eq!(bodies(&dispatch(&mut q, 0).deliveries), ["a"]);
    assert!(dispatch(&mut q, 0).deliveries.is_empty());
    q.release_channel(chan(1), Return::Failed, 0, &mut Effects::default());
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    assert!(fx.deliveries[0].redelivered);
    // Releasing another channel does nothing.
    q.release_channel(chan(2), Return::Failed, 0, &mut Effects::default());
    assert_eq!((q.message_count(), q.unacked_count()), (1, 1));
}

#[test]
fn returned_increments_acquired_count_only() {
    let mut q = queue(&[]);
    publish(&mut q, "a");
    let mut fx = Effects::default();
    let (d, _) = get(&mut q, 0).unwrap();
    assert_eq!((d.delivery_count, d.acquired_count, d.redelivered), (0, 0, false));
    assert!(q.reject(d.seq, Some(Return::Returned), 0, &mut fx));
    let (d, _) = get(&mut q, 0).unwrap();
    assert_eq!((d.delivery_count, d.acquired_count, d.redelivered), (0, 1, true));
    assert!(q.reject(d.seq, Some(Return::Failed), 0, &mut fx));
    let (d, _) = get(&mut q, 0).unwrap();
    assert_eq!((d.delivery_count, d.acquired_count, d.redelivered), (1, 2, true));
    q.release_channel(d.channel, Return::Returned, 0, &mut fx);
    let (d, _) = get(&mut q, 0).unwrap();
    assert_eq!((d.delivery_count, d.acquired_count), (1, 3));
    assert!(fx.dead_letters.is_empty());
}

#[test]
fn unsend_returns_without_redelivered_or_counts() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 2));
    for b in ["a", "b", "c"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a", "b"]);
    let b = fx.deliveries[1].seq;
    assert!(
        !q.unsend(b, Some(ConsumerKey(2)), chan(1)),
        "another consumer's delivery is not taken back"
    );
    assert!(q.unsend(b, Some(ConsumerKey(1)), chan(1)));
    assert!(!q.unsend(b, Some(ConsumerKey(1)), chan(1)));
    assert_eq!((q.message_count(), q.unacked_count()), (2, 1));
    // The consumer's slot is freed: it gets b again, in its original position (before c).
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["b"]);
    let d = &fx.deliveries[0];
    assert_eq!(
        (d.seq, d.redelivered, d.delivery_count, d.acquired_count),
        (b, false, 0, 0)
    );
    assert!(q.unsend(b, Some(ConsumerKey(1)), chan(1)));
    assert!(q.remove_consumer(ConsumerKey(1)).is_some());
    assert_eq!(drain(&mut q, 0), ["b", "c"]);
}

// ---------------------------------------------------------------------------------------------
// Delivery limit
// ---------------------------------------------------------------------------------------------

/// Gets and rejects the single message with `how` until it leaves the queue; returns how many
/// times it was delivered and the accumulated effects.
fn bounce(q: &mut QueueState, how: Return) -> (u32, Effects) {
    let mut fx = Effects::default();
    let mut n = 0;
    while let Some((d, _)) = get(q, 0) {
        n += 1;
        assert!(n < 1000, "message never left the queue");
        assert!(q.reject(d.seq, Some(how), 0, &mut fx));
    }
    (n, fx)
}

#[test]
fn delivery_limit_five_delivers_six_times_then_dead_letters() {
    let mut q = queue(&[("x-delivery-limit", FieldValue::I64(5)), dlx()]);
    assert_eq!(q.args().delivery_limit, Some(5));
    publish(&mut q, "a");
    let mut counts = Vec::new();
    let mut fx = Effects::default();
    while let Some((d, _)) = get(&mut q, 0) {
        counts.push(d.delivery_count);
        assert!(q.reject(d.seq, Some(Return::Failed), 0, &mut fx));
    }
    assert_eq!(counts, [0, 1, 2, 3, 4, 5], "delivered 6 times");
    assert_eq!(dead(&fx), [dl("a", DeadReason::DeliveryLimit)]);
    assert_eq!(fx.dropped_by_limit, 0);
    assert!(q.is_empty());
}

#[test]
fn delivery_limit_without_dlx_counts_dropped() {
    let mut q = queue(&[("x-delivery-limit", FieldValue::I64(5))]);
    publish(&mut q, "a");
    publish(&mut q, "b");
    let (n, fx) = bounce(&mut q, Return::Failed);
    assert_eq!(n, 12);
    assert_eq!(fx.dropped_by_limit, 2);
    assert!(fx.dead_letters.is_empty());
    assert!(q.is_empty());
}

#[test]
fn delivery_limit_ignores_returned_by_default() {
    let mut q = queue(&[("x-delivery-limit", FieldValue::I64(1)), dlx()]);
    publish(&mut q, "a");
    let mut fx = Effects::default();
    for _ in 0..20 {
        let (d, _) = get(&mut q, 0).unwrap();
        assert!(q.reject(d.seq, Some(Return::Returned), 0, &mut fx));
    }
    assert!(fx.dead_letters.is_empty());
    assert_eq!(q.message_count(), 1);
}

#[test]
fn delivery_limit_counts_all_includes_returned() {
    let mut q = queue(&[
        ("x-delivery-limit", FieldValue::I64(2)),
        ("x-delivery-limit-counts", FieldValue::str("all")),
        dlx(),
    ]);
    assert_eq!(q.args().limit_counts, LimitCounts::All);
    publish(&mut q, "a");
    let (n, fx) = bounce(&mut q, Return::Returned);
    assert_eq!(n, 3);
    assert_eq!(dead(&fx), [dl("a", DeadReason::DeliveryLimit)]);
}

#[test]
fn delivery_limit_applies_to_release_channel() {
    let mut q = queue(&[("x-delivery-limit", FieldValue::I64(0)), dlx()]);
    add(&mut q, consumer(1, 1, 0));
    publish(&mut q, "a");
    publish(&mut q, "b");
    assert_eq!(dispatch(&mut q, 0).deliveries.len(), 2);
    let mut fx = Effects::default();
    q.release_channel(chan(1), Return::Failed, 0, &mut fx);
    assert_eq!(
        dead(&fx),
        [
            dl("a", DeadReason::DeliveryLimit),
            dl("b", DeadReason::DeliveryLimit)
        ]
    );
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Delayed retry
// ---------------------------------------------------------------------------------------------

#[test]
fn delayed_retry_has_no_head_of_line_blocking() {
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("failed")),
        ("x-delayed-retry-min", FieldValue::I64(1000)),
        ("x-delayed-retry-max", FieldValue::I64(10_000)),
    ]);
    add(&mut q, consumer(1, 1, 1));
    publish(&mut q, "a");
    publish(&mut q, "b");
    let fx = dispatch(&mut q, 0);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    assert_eq!(q.next_deadline(), None);
    let mut fx2 = Effects::default();
    assert!(q.reject(fx.deliveries[0].seq, Some(Return::Failed), 100, &mut fx2));
    assert_eq!(q.next_deadline(), Some(1100));
    assert_eq!(q.message_count(), 2, "delayed messages count as ready");
    // b flows while a waits.
    let fx = dispatch(&mut q, 200);
    assert_eq!(bodies(&fx.deliveries), ["b"]);
    assert!(q.ack(fx.deliveries[0].seq));
    publish(&mut q, "c");
    let fx = dispatch(&mut q, 300);
    assert_eq!(bodies(&fx.deliveries), ["c"]);
    assert!(q.ack(fx.deliveries[0].seq));
    // Nothing to dispatch or get until the retry is due.
    assert!(dispatch(&mut q, 1099).deliveries.is_empty());
    assert!(get(&mut q, 1099).is_none());
    assert_eq!(q.message_count(), 1);
    q.tick(1099, &mut fx2);
    assert!(dispatch(&mut q, 1099).deliveries.is_empty());
    q.tick(1100, &mut fx2);
    assert_eq!(q.next_deadline(), None);
    let fx = dispatch(&mut q, 1100);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    let d = &fx.deliveries[0];
    assert!(d.redelivered);
    assert_eq!((d.delivery_count, d.acquired_count), (1, 1));
    assert!(fx2.dead_letters.is_empty());
}

/// Delays chosen for successive returns of one message (via next_deadline).
fn retry_delays(q: &mut QueueState, how: Return, n: usize) -> Vec<u64> {
    publish(q, "a");
    let mut now = 0;
    let mut out = Vec::new();
    for _ in 0..n {
        let (d, _) = get(q, now).unwrap();
        assert!(get(q, now).is_none());
        assert!(q.reject(d.seq, Some(how), now, &mut Effects::default()));
        let due = q.next_deadline().expect("delayed");
        out.push(due - now);
        q.tick(due - 1, &mut Effects::default());
        assert!(get(q, due - 1).is_none(), "not due yet");
        q.tick(due, &mut Effects::default());
        now = due;
    }
    out
}

#[test]
fn delayed_retry_linear() {
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("all")),
        ("x-delayed-retry-min", FieldValue::I64(100)),
        ("x-delayed-retry-max", FieldValue::I64(250)),
    ]);
    assert_eq!(retry_delays(&mut q, Return::Failed, 4), [100, 200, 250, 250]);
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("all")),
        ("x-delayed-retry-min", FieldValue::I64(100)),
        ("x-delayed-retry-max", FieldValue::I64(250)),
    ]);
    assert_eq!(retry_delays(&mut q, Return::Returned, 3), [100, 200, 250]);
}

#[test]
fn delayed_retry_exponential() {
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("failed")),
        ("x-delayed-retry-min", FieldValue::I64(100)),
        ("x-delayed-retry-max", FieldValue::I64(1000)),
        ("x-delayed-retry-multiplier", FieldValue::I64(2)),
    ]);
    assert_eq!(
        retry_delays(&mut q, Return::Failed, 6),
        [100, 200, 400, 800, 1000, 1000]
    );
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("returned")),
        ("x-delayed-retry-min", FieldValue::I64(10)),
        ("x-delayed-retry-max", FieldValue::I64(1000)),
        ("x-delayed-retry-multiplier", FieldValue::F64(3.0)),
    ]);
    assert_eq!(retry_delays(&mut q, Return::Returned, 4), [10, 30, 90, 270]);
}

#[test]
fn delayed_retry_type_selects_which_returns_wait() {
    let setup = |kind: &str| {
        let mut q = queue(&[
            ("x-delayed-retry-type", FieldValue::str(kind)),
            ("x-delayed-retry-min", FieldValue::I64(100)),
        ]);
        publish(&mut q, "a");
        q
    };
    for (kind, how, delayed) in [
        ("failed", Return::Failed, true),
        ("failed", Return::Returned, false),
        ("returned", Return::Returned, true),
        ("returned", Return::Failed, false),
        ("all", Return::Failed, true),
        ("all", Return::Returned, true),
        ("disabled", Return::Failed, false),
    ] {
        let mut q = setup(kind);
        let (d, _) = get(&mut q, 0).unwrap();
        assert!(q.reject(d.seq, Some(how), 0, &mut Effects::default()));
        assert_eq!(get(&mut q, 0).is_none(), delayed, "{kind} {how:?}");
        assert_eq!(q.next_deadline().is_some(), delayed, "{kind} {how:?}");
    }
}

#[test]
fn delayed_retry_still_obeys_delivery_limit() {
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("failed")),
        ("x-delayed-retry-min", FieldValue::I64(100)),
        ("x-delivery-limit", FieldValue::I64(1)),
        dlx(),
    ]);
    publish(&mut q, "a");
    let mut fx = Effects::default();
    let (d, _) = get(&mut q, 0).unwrap();
    assert!(q.reject(d.seq, Some(Return::Failed), 0, &mut fx));
    q.tick(100, &mut fx);
    let (d, _) = get(&mut q, 100).unwrap();
    assert!(q.reject(d.seq, Some(Return::Failed), 100, &mut fx));
    assert_eq!(dead(&fx), [dl("a", DeadReason::DeliveryLimit)]);
    assert_eq!(q.next_deadline(), None);
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------------------------
// TTL
// ---------------------------------------------------------------------------------------------

#[test]
fn queue_ttl_expires_head_on_tick() {
    let mut q = queue(&[("x-message-ttl", FieldValue::I64(1000)), dlx()]);
    assert_eq!(q.args().message_ttl, Some(1000));
    let mut fx = Effects::default();
    q.publish(msg("a"), 0, None, &mut fx);
    q.publish(msg("b"), 500, None, &mut fx);
    assert_eq!(q.next_deadline(), Some(1000));
    q.tick(999, &mut fx);
    assert!(fx.dead_letters.is_empty());
    q.tick(1000, &mut fx);
    assert_eq!(dead(&fx), [dl("a", DeadReason::Expired)]);
    assert_eq!(q.message_count(), 1);
    assert_eq!(q.next_deadline(), Some(1500));
    q.tick(5000, &mut fx);
    assert_eq!(
        dead(&fx),
        [dl("a", DeadReason::Expired), dl("b", DeadReason::Expired)]
    );
    assert_eq!(q.next_deadline(), None);
    assert!(q.is_empty());
}

#[test]
fn per_message_ttl_and_queue_ttl_take_the_minimum() {
    let mut q = queue(&[("x-message-ttl", FieldValue::I64(1000)), dlx()]);
    let mut fx = Effects::default();
    q.publish(msg("short"), 0, Some(50), &mut fx);
    assert_eq!(q.next_deadline(), Some(50));
    q.tick(50, &mut fx);
    assert_eq!(dead(&fx), [dl("short", DeadReason::Expired)]);
    q.publish(msg("long"), 100, Some(5000), &mut fx);
    assert_eq!(q.next_deadline(), Some(1100));
    // Per-message TTL alone.
    let mut q = queue(&[dlx()]);
    q.publish(msg("m"), 10, Some(20), &mut fx);
    assert_eq!(q.next_deadline(), Some(30));
}

#[test]
fn expired_messages_are_never_dispatched() {
    let mut q = queue(&[dlx()]);
    let mut fx = Effects::default();
    // Expired at the head, live behind it.
    q.publish(msg("a"), 0, Some(100), &mut fx);
    q.publish(msg("b"), 0, None, &mut fx);
    // Live at the head, expired behind it (tick only looks at heads).
    q.publish(msg("c"), 0, None, &mut fx);
    q.publish(msg("d"), 0, Some(100), &mut fx);
    q.publish(msg("e"), 0, None, &mut fx);
    add(&mut q, consumer(1, 1, 0));
    let fx = dispatch(&mut q, 200);
    assert_eq!(bodies(&fx.deliveries), ["b", "c", "e"]);
    assert_eq!(
        dead(&fx),
        [dl("a", DeadReason::Expired), dl("d", DeadReason::Expired)]
    );
    assert_eq!((q.message_count(), q.unacked_count()), (0, 3));
}

#[test]
fn expired_messages_are_never_returned_by_get() {
    let mut q = queue(&[dlx()]);
    let mut fx = Effects::default();
    q.publish(msg("a"), 0, None, &mut fx);
    q.publish(msg("b"), 0, Some(100), &mut fx);
    q.publish(msg("c"), 0, None, &mut fx);
    q.publish(msg("d"), 0, Some(100), &mut fx);
    q.tick(200, &mut fx);
    let (d, left) = q.get(chan(1), true, 200, &mut fx).unwrap();
    assert_eq!(body(&d.msg), "a");
    assert!(left <= 3);
    let (d, _) = q.get(chan(1), true, 200, &mut fx).unwrap();
    assert_eq!(body(&d.msg), "c");
    assert!(q.get(chan(1), true, 200, &mut fx).is_none());
    assert_eq!(
        dead(&fx),
        [dl("b", DeadReason::Expired), dl("d", DeadReason::Expired)]
    );
    assert!(q.is_empty());
}

#[test]
fn ttl_zero_reaches_a_waiting_consumer_only() {
    let mut q = queue(&[dlx()]);
    add(&mut q, consumer(1, 1, 1));
    let mut fx = Effects::default();
    q.publish(msg("a"), 100, Some(0), &mut fx);
    q.dispatch(100, |_| true, &mut fx);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    // The consumer is full: the next TTL-0 message expires instead of waiting.
    q.publish(msg("b"), 100, Some(0), &mut fx);
    q.dispatch(100, |_| true, &mut fx);
    assert_eq!(fx.deliveries.len(), 1);
    assert_eq!(q.next_deadline(), Some(100));
    q.tick(100, &mut fx);
    assert_eq!(dead(&fx), [dl("b", DeadReason::Expired)]);
    assert_eq!((q.message_count(), q.unacked_count()), (0, 1));
}

#[test]
fn requeued_expired_message_is_not_redelivered() {
    let mut q = queue(&[("x-message-ttl", FieldValue::I64(100)), dlx()]);
    let mut fx = Effects::default();
    q.publish(msg("a"), 0, None, &mut fx);
    let (d, _) = q.get(chan(1), false, 50, &mut fx).unwrap();
    // Unacked messages do not expire.
    q.tick(500, &mut fx);
    assert!(fx.dead_letters.is_empty());
    assert!(q.reject(d.seq, Some(Return::Failed), 500, &mut fx));
    assert!(q.get(chan(1), false, 500, &mut fx).is_none());
    assert_eq!(dead(&fx), [dl("a", DeadReason::Expired)]);
    assert!(q.is_empty());
}

#[test]
fn expired_without_dlx_is_dropped_silently() {
    let mut q = queue(&[("x-message-ttl", FieldValue::I64(10))]);
    let mut fx = Effects::default();
    q.publish(msg("a"), 0, None, &mut fx);
    q.tick(10, &mut fx);
    assert!(fx.dead_letters.is_empty() && fx.dropped_by_limit == 0);
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Length limits
// ---------------------------------------------------------------------------------------------

#[test]
fn max_length_drop_head_dead_letters_oldest() {
    let mut q = queue(&[("x-max-length", FieldValue::I64(2)), dlx()]);
    let mut fx = Effects::default();
    for b in ["a", "b", "c", "d"] {
        assert_eq!(q.publish(msg(b), 0, None, &mut fx), Published::Enqueued);
    }
    assert_eq!(
        dead(&fx),
        [dl("a", DeadReason::Maxlen), dl("b", DeadReason::Maxlen)]
    );
    assert_eq!(q.message_count(), 2);
    assert_eq!(drain(&mut q, 0), ["c", "d"]);
}

#[test]
fn max_length_counts_ready_messages_only() {
    let mut q = queue(&[
        ("x-max-length", FieldValue::I64(1)),
        ("x-overflow", FieldValue::str("reject-publish")),
    ]);
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg("a"), 0, None, &mut fx), Published::Enqueued);
    let (_d, _) = get(&mut q, 0).unwrap();
    assert_eq!(q.publish(msg("b"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("c"), 0, None, &mut fx), Published::Rejected);
}

#[test]
fn reject_publish_refuses_without_dead_lettering() {
    let mut q = queue(&[
        ("x-max-length", FieldValue::I64(2)),
        ("x-overflow", FieldValue::str("reject-publish")),
        dlx(),
    ]);
    assert_eq!(q.args().overflow, Overflow::RejectPublish);
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg("a"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("b"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("c"), 0, None, &mut fx), Published::Rejected);
    assert!(fx.dead_letters.is_empty());
    assert_eq!(q.message_count(), 2);
    assert_eq!(drain(&mut q, 0), ["a", "b"]);
    assert_eq!(q.publish(msg("d"), 0, None, &mut fx), Published::Enqueued);
}

#[test]
fn reject_publish_dlx_refuses_and_dead_letters() {
    let mut q = queue(&[
        ("x-max-length", FieldValue::I64(1)),
        ("x-overflow", FieldValue::str("reject-publish-dlx")),
        dlx(),
    ]);
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg("a"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("b"), 0, None, &mut fx), Published::Rejected);
    assert_eq!(dead(&fx), [dl("b", DeadReason::Maxlen)]);
    assert_eq!(drain(&mut q, 0), ["a"]);
    // Without a DLX it is just refused.
    let mut q = queue(&[
        ("x-max-length", FieldValue::I64(0)),
        ("x-overflow", FieldValue::str("reject-publish-dlx")),
    ]);
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg("a"), 0, None, &mut fx), Published::Rejected);
    assert!(fx.dead_letters.is_empty());
}

#[test]
fn max_length_bytes_drop_head_and_reject() {
    let mut q = queue(&[("x-max-length-bytes", FieldValue::I64(10)), dlx()]);
    let mut fx = Effects::default();
    for b in ["aaaa", "bbbb", "cccc"] {
        assert_eq!(q.publish(msg(b), 0, None, &mut fx), Published::Enqueued);
    }
    assert_eq!(dead(&fx), [dl("aaaa", DeadReason::Maxlen)]);
    assert_eq!(q.ready_bytes(), 8);
    // A message exactly filling the limit fits.
    let mut q = queue(&[("x-max-length-bytes", FieldValue::I64(8)), dlx()]);
    let mut fx = Effects::default();
    q.publish(msg("aaaa"), 0, None, &mut fx);
    q.publish(msg("bbbb"), 0, None, &mut fx);
    assert!(fx.dead_letters.is_empty());
    assert_eq!(q.ready_bytes(), 8);

    let mut q = queue(&[
        ("x-max-length-bytes", FieldValue::I64(10)),
        ("x-overflow", FieldValue::str("reject-publish")),
    ]);
    let mut fx = Effects::default();
    assert_eq!(q.publish(msg("aaaa"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("bbbb"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.publish(msg("cccc"), 0, None, &mut fx), Published::Rejected);
    assert_eq!(q.publish(msg("cc"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(q.ready_bytes(), 10);
    assert!(fx.dead_letters.is_empty());
    assert_eq!(drain(&mut q, 0), ["aaaa", "bbbb", "cc"]);
    assert_eq!(q.ready_bytes(), 0);
}

// ---------------------------------------------------------------------------------------------
// Priorities
// ---------------------------------------------------------------------------------------------

#[test]
fn message_priorities_higher_first_fifo_within_level() {
    let mut q = queue(&[("x-max-priority", FieldValue::I64(5))]);
    assert_eq!(q.args().max_priority, Some(5));
    let mut fx = Effects::default();
    for (b, p) in [
        ("a1", Some(1)),
        ("b5", Some(5)),
        ("c3", Some(3)),
        ("d5", Some(5)),
        ("e-", None),
        ("f9", Some(9)),
        ("g0", Some(0)),
        ("h3", Some(3)),
    ] {
        q.publish(msg_prio(b, p), 0, None, &mut fx);
    }
    // Requeue within a level keeps its position.
    let (d, _) = get(&mut q, 0).unwrap();
    assert_eq!(body(&d.msg), "b5");
    assert!(q.reject(d.seq, Some(Return::Failed), 0, &mut fx));
    add(&mut q, consumer(1, 1, 0));
    let fx = dispatch(&mut q, 0);
    assert_eq!(
        bodies(&fx.deliveries),
        ["b5", "d5", "f9", "c3", "h3", "a1", "e-", "g0"]
    );
    assert!(fx.deliveries[0].redelivered && !fx.deliveries[1].redelivered);
}

#[test]
fn priorities_ignored_without_max_priority() {
    let mut q = queue(&[]);
    let mut fx = Effects::default();
    for (b, p) in [("a", Some(1)), ("b", Some(9)), ("c", None)] {
        q.publish(msg_prio(b, p), 0, None, &mut fx);
    }
    assert_eq!(drain(&mut q, 0), ["a", "b", "c"]);
}

#[test]
fn consumer_priorities_prefer_higher_while_it_has_room() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    add(
        &mut q,
        ConsumerSpec {
            priority: 10,
            ..consumer(2, 2, 2)
        },
    );
    add(
        &mut q,
        ConsumerSpec {
            priority: 5,
            ..consumer(3, 3, 1)
        },
    );
    assert_eq!(q.consumers().map(|c| c.key.0).collect::<Vec<_>>(), [2, 3, 1]);
    for i in 0..6 {
        publish(&mut q, &i.to_string());
    }
    let fx = dispatch(&mut q, 0);
    assert_eq!(keys(&fx.deliveries), [2, 2, 3, 1, 1, 1]);
    assert_eq!(bodies(&fx.deliveries), ["0", "1", "2", "3", "4", "5"]);
    // An ack frees the high-priority consumer: it gets the next message.
    assert!(q.ack(fx.deliveries[0].seq));
    publish(&mut q, "6");
    assert_eq!(keys(&dispatch(&mut q, 0).deliveries), [2]);
}

// ---------------------------------------------------------------------------------------------
// Exclusive and single-active consumers
// ---------------------------------------------------------------------------------------------

#[test]
fn exclusive_consumer_conflicts_are_403() {
    let text = "queue 'q' in vhost '/' in exclusive use";
    let mut q = queue(&[]);
    add(
        &mut q,
        ConsumerSpec {
            exclusive: true,
            ..consumer(1, 1, 0)
        },
    );
    let e = q.add_consumer(consumer(2, 2, 0), "/").unwrap_err();
    assert_eq!(e.code.code(), 403);
    assert_eq!(e.text, text);
    let e = q
        .add_consumer(
            ConsumerSpec {
                exclusive: true,
                ..consumer(3, 2, 0)
            },
            "/",
        )
        .unwrap_err();
    assert_eq!((e.code.code(), e.text.as_str()), (403, text));
    assert_eq!(q.consumer_count(), 1);

    // Existing consumer, then an exclusive one.
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    let e = q
        .add_consumer(
            ConsumerSpec {
                exclusive: true,
                ..consumer(2, 2, 0)
            },
            "/",
        )
        .unwrap_err();
    assert_eq!((e.code.code(), e.text.as_str()), (403, text));
    // Once the queue has no consumers, exclusive is allowed.
    assert!(q.remove_consumer(ConsumerKey(1)).is_some());
    assert!(q.remove_consumer(ConsumerKey(1)).is_none());
    add(
        &mut q,
        ConsumerSpec {
            exclusive: true,
            ..consumer(2, 2, 0)
        },
    );
}

#[test]
fn single_active_consumer_switches_on_cancel() {
    let mut q = queue(&[("x-single-active-consumer", FieldValue::Bool(true))]);
    assert_eq!(q.active_consumer(), None);
    add(&mut q, consumer(1, 1, 2));
    add(&mut q, consumer(2, 2, 0));
    add(&mut q, consumer(3, 3, 0));
    assert_eq!(q.active_consumer(), Some(ConsumerKey(1)));
    for b in ["a", "b", "c", "d"] {
        publish(&mut q, b);
    }
    let fx = dispatch(&mut q, 0);
    // Only the active consumer receives, even when it is full and others have room.
    assert_eq!(keys(&fx.deliveries), [1, 1]);
    assert_eq!(q.message_count(), 2);
    assert!(q.remove_consumer(ConsumerKey(1)).is_some());
    // Consumer 1 still holds two messages: nobody is active until they are back.
    assert_eq!(q.active_consumer(), None);
    assert!(dispatch(&mut q, 0).deliveries.is_empty());
    q.release_channel(chan(1), Return::Failed, 0, &mut Effects::default());
    assert_eq!(q.active_consumer(), Some(ConsumerKey(2)));
    let fx = dispatch(&mut q, 0);
    assert_eq!(keys(&fx.deliveries), [2, 2, 2, 2]);
    assert_eq!(bodies(&fx.deliveries), ["a", "b", "c", "d"]);
    // Without the argument there is no active consumer.
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    assert_eq!(q.active_consumer(), None);
}

// ---------------------------------------------------------------------------------------------
// Purge, reserve
// ---------------------------------------------------------------------------------------------

#[test]
fn purge_counts_ready_and_delayed_but_not_unacked() {
    let mut q = queue(&[
        ("x-delayed-retry-type", FieldValue::str("failed")),
        ("x-delayed-retry-min", FieldValue::I64(100)),
    ]);
    for b in ["a", "b", "c", "d"] {
        publish(&mut q, b);
    }
    let (a, _) = get(&mut q, 0).unwrap();
    assert!(q.reject(a.seq, Some(Return::Failed), 0, &mut Effects::default()));
    let (b, _) = get(&mut q, 0).unwrap();
    assert_eq!(body(&b.msg), "b");
    assert_eq!((q.message_count(), q.unacked_count(), q.total_count()), (3, 1, 4));
    assert_eq!(q.purge(), 3);
    assert_eq!((q.message_count(), q.unacked_count(), q.total_count()), (0, 1, 1));
    assert_eq!(q.ready_bytes(), 0);
    assert_eq!(q.next_deadline(), None);
    assert!(!q.is_empty());
    assert_eq!(q.purge(), 0);
    assert!(q.ack(b.seq));
    assert!(q.is_empty());
}

#[test]
fn reserve_refusal_stops_dispatch_to_that_consumer() {
    let mut q = queue(&[]);
    add(&mut q, consumer(1, 1, 0));
    add(&mut q, consumer(2, 2, 0));
    for b in ["a", "b", "c", "d"] {
        publish(&mut q, b);
    }
    // Channel 1 has room for one more message (channel-wide prefetch), channel 2 for none.
    let mut room: HashMap<ChannelKey, u32> = HashMap::from([(chan(1), 1), (chan(2), 0)]);
    let mut fx = Effects::default();
    q.dispatch(
        0,
        |c| match room.get_mut(&c.channel) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        },
        &mut fx,
    );
    assert_eq!(keys(&fx.deliveries), [1]);
    assert_eq!(bodies(&fx.deliveries), ["a"]);
    assert_eq!(q.message_count(), 3);
    // Nobody reserves: nothing moves and order is kept.
    let mut fx = Effects::default();
    q.dispatch(0, |_| false, &mut fx);
    assert!(fx.deliveries.is_empty());
    // Only consumer 2 reserves.
    q.dispatch(0, |c| c.key == ConsumerKey(2), &mut fx);
    assert_eq!(keys(&fx.deliveries), [2, 2, 2]);
    assert_eq!(bodies(&fx.deliveries), ["b", "c", "d"]);
}

#[test]
fn dispatch_without_consumers_does_nothing() {
    let mut q = queue(&[]);
    publish(&mut q, "a");
    assert!(dispatch(&mut q, 0).deliveries.is_empty());
    assert_eq!(q.message_count(), 1);
    add(&mut q, consumer(1, 1, 0));
    assert_eq!(
        q.remove_consumer(ConsumerKey(1)).map(|s| s.key),
        Some(ConsumerKey(1))
    );
    assert_eq!(q.consumer_count(), 0);
    assert!(dispatch(&mut q, 0).deliveries.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

const CHANNELS: u64 = 3;

#[derive(Debug, Clone)]
struct Config {
    dlx: bool,
    limit: Option<i64>,
    counts_all: bool,
    /// Queue TTL (only with a DLX, so expiries are observable).
    ttl: Option<i64>,
    /// (type, min, max, multiplier)
    retry: Option<(&'static str, i64, i64, Option<i64>)>,
    /// Dispatch after every operation, as the server does.
    auto_dispatch: bool,
}

impl Config {
    fn args(&self) -> QueueArgs {
        let mut a: Vec<(&str, FieldValue)> = Vec::new();
        if self.dlx {
            a.push(dlx());
        }
        if let Some(l) = self.limit {
            a.push(("x-delivery-limit", FieldValue::I64(l)));
        }
        if self.counts_all {
            a.push(("x-delivery-limit-counts", FieldValue::str("all")));
        }
        if let Some(t) = self.ttl {
            a.push(("x-message-ttl", FieldValue::I64(t)));
        }
        if let Some((kind, min, max, mult)) = self.retry {
            a.push(("x-delayed-retry-type", FieldValue::str(kind)));
            a.push(("x-delayed-retry-min", FieldValue::I64(min)));
            a.push(("x-delayed-retry-max", FieldValue::I64(max)));
            if let Some(m) = mult {
                a.push(("x-delayed-retry-multiplier", FieldValue::I64(m)));
            }
        }
        args(&a)
    }
}

// Times are multiples of 100 ms so expiries and retries often fall exactly on a tick.
fn config() -> impl Strategy<Value = Config> {
    (
        any::<bool>(),
        prop::option::of(0i64..4),
        (any::<bool>(), any::<bool>()),
        prop::option::of((0i64..30).prop_map(|t| t * 100)),
        prop::option::of((
            prop::sample::select(vec!["all", "failed", "returned"]),
            (0i64..5).prop_map(|t| t * 100),
            (0i64..20).prop_map(|t| t * 100),
            prop::option::of(1i64..4),
        )),
    )
        .prop_map(|(dlx, limit, (counts_all, auto_dispatch), ttl, retry)| Config {
            dlx,
            auto_dispatch,
            limit,
            counts_all,
            ttl: if dlx { ttl } else { None },
            retry,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        ttl: Option<u64>,
    },
    AddConsumer {
        channel: ChannelKey,
        prefetch: u32,
        no_ack: bool,
    },
    RemoveConsumer(usize),
    Dispatch,
    Get {
        channel: ChannelKey,
        no_ack: bool,
    },
    Ack(usize),
    AckMultiple {
        channel: ChannelKey,
        upto: usize,
    },
    Requeue {
        pick: usize,
        how: Return,
    },
    Discard(usize),
    Release {
        channel: ChannelKey,
        how: Return,
    },
    Tick(u64),
}

fn how() -> impl Strategy<Value = Return> {
    prop_oneof![Just(Return::Failed), Just(Return::Returned)]
}

fn op() -> impl Strategy<Value = Op> {
    let ch = (1..=CHANNELS).prop_map(|n| chan(n as u16));
    prop_oneof![
        6 => prop::option::of((0u64..30).prop_map(|t| t * 100)).prop_map(|ttl| Op::Publish { ttl }),
        2 => (ch.clone(), 0u32..3, prop::bool::weighted(0.2))
            .prop_map(|(channel, prefetch, no_ack)| Op::AddConsumer { channel, prefetch, no_ack }),
        1 => any::<usize>().prop_map(Op::RemoveConsumer),
        3 => Just(Op::Dispatch),
        2 => (ch.clone(), prop::bool::weighted(0.2)).prop_map(|(channel, no_ack)| Op::Get { channel, no_ack }),
        3 => any::<usize>().prop_map(Op::Ack),
        1 => (ch.clone(), any::<usize>()).prop_map(|(channel, upto)| Op::AckMultiple { channel, upto }),
        4 => (any::<usize>(), how()).prop_map(|(pick, how)| Op::Requeue { pick, how }),
        1 => any::<usize>().prop_map(Op::Discard),
        2 => (ch, how()).prop_map(|(channel, how)| Op::Release { channel, how }),
        2 => (0u64..25).prop_map(|t| Op::Tick(t * 100)),
    ]
}

/// What the test knows about one message.
#[derive(Debug, Default, Clone)]
struct MsgModel {
    failed: u32,
    acquired: u32,
    requeued: bool,
    expires_at: Option<u64>,
    /// Delayed retry due time, if the last return was delayed.
    due: Option<u64>,
}

#[derive(Debug, Clone)]
struct Out {
    channel: ChannelKey,
    consumer: Option<ConsumerKey>,
}

#[derive(Default)]
struct Model {
    now: u64,
    msgs: BTreeMap<u64, MsgModel>,
    unacked: BTreeMap<u64, Out>,
    gone: BTreeSet<u64>,
    /// Every seq ever delivered with ack required (for random ack / reject picks).
    delivered: Vec<u64>,
    consumers: Vec<ConsumerSpec>,
    /// Per consumer: delivered and not settled.
    outstanding: HashMap<ConsumerKey, u32>,
    /// Per consumer: the last never-requeued seq delivered to it.
    last_fresh: HashMap<ConsumerKey, u64>,
    /// Globally: the last never-requeued seq delivered.
    last_fresh_any: u64,
    next_key: u64,
}

fn seq_of(m: &MessageRef) -> u64 {
    body(m).parse().expect("numeric body")
}

impl Model {
    fn queued(&self) -> BTreeSet<u64> {
        self.msgs
            .keys()
            .copied()
            .filter(|s| !self.unacked.contains_key(s) && !self.gone.contains(s))
            .collect()
    }

    /// Checks and records deliveries.
    fn deliveries(&mut self, ds: &[Delivery]) {
        for d in ds {
            let s = d.seq;
            assert_eq!(seq_of(&d.msg), s, "seq is the publish position");
            assert!(self.msgs.contains_key(&s), "unknown seq {s}");
            assert!(!self.gone.contains(&s), "delivered a settled message {s}");
            assert!(!self.unacked.contains_key(&s), "delivered an unacked message {s}");
            let m = &self.msgs[&s];
            assert_eq!(d.redelivered, m.requeued, "redelivered flag of {s}");
            assert_eq!(
                (d.delivery_count, d.acquired_count),
                (m.failed, m.acquired),
                "counts of {s}"
            );
            if let Some(t) = m.expires_at {
                // A consumer may still take a message in its expiry millisecond (TTL 0).
                let live = if d.consumer.is_some() {
                    t >= self.now
                } else {
                    t > self.now
                };
                assert!(
                    live,
                    "delivered expired message {s} (expires {t}, now {})",
                    self.now
                );
            }
            if let Some(due) = m.due {
                assert!(due <= self.now, "delivered {s} before its retry was due");
            }
            if !m.requeued {
                assert!(s > self.last_fresh_any, "fresh messages leave in publish order");
                self.last_fresh_any = s;
                if let Some(c) = d.consumer {
                    let last = self.last_fresh.entry(c).or_insert(0);
                    assert!(s > *last, "consumer {c} got fresh messages out of order");
                    *last = s;
                }
            }
            if let Some(c) = d.consumer {
                let spec = self
                    .consumers
                    .iter()
                    .find(|x| x.key == c)
                    .expect("delivery to a live consumer");
                assert_eq!(d.channel, spec.channel);
                assert_eq!(d.no_ack, spec.no_ack);
                if !spec.no_ack {
                    let n = self.outstanding.entry(c).or_insert(0);
                    *n += 1;
                    if spec.prefetch > 0 {
                        assert!(
                            *n <= spec.prefetch,
                            "consumer {c} over its prefetch {}",
                            spec.prefetch
                        );
                    }
                }
            }
            if d.no_ack {
                self.gone.insert(s);
            } else {
                self.unacked.insert(
                    s,
                    Out {
                        channel: d.channel,
                        consumer: d.consumer,
                    },
                );
                self.delivered.push(s);
            }
        }
    }

    /// Checks dead letters that can only be expiries (tick, dispatch, get).
    fn expiries(&mut self, fx: &Effects) {
        assert_eq!(fx.dropped_by_limit, 0);
        for (m, r) in &fx.dead_letters {
            let s = seq_of(m);
            assert_eq!(*r, DeadReason::Expired, "unexpected dead-letter reason for {s}");
            assert!(self.queued().contains(&s), "expired {s} was not ready");
            let t = self.msgs[&s].expires_at.expect("expired without a TTL");
            assert!(t <= self.now, "expired {s} early");
            self.gone.insert(s);
        }
    }

    fn settle(&mut self, s: u64) -> Option<Out> {
        let o = self.unacked.remove(&s)?;
        if let Some(c) = o.consumer {
            *self.outstanding.get_mut(&c).expect("outstanding") -= 1;
        }
        Some(o)
    }

    /// Models a requeue; returns whether the delivery limit kills the message.
    fn requeue(&mut self, args: &QueueArgs, s: u64, how: Return) -> bool {
        let now = self.now;
        let m = self.msgs.get_mut(&s).unwrap();
        m.requeued = true;
        m.acquired += 1;
        if how == Return::Failed {
            m.failed += 1;
        }
        m.due = None;
        if let Some(limit) = args.delivery_limit {
            let counted = match args.limit_counts {
                LimitCounts::Failed => m.failed,
                LimitCounts::All => m.acquired,
            };
            if counted > limit {
                self.gone.insert(s);
                return true;
            }
        }
        if let Some(r) = args.delayed_retry {
            let n = match (r.kind, how) {
                (RetryType::All | RetryType::Failed, Return::Failed) => Some(m.failed),
                (RetryType::All | RetryType::Returned, Return::Returned) => Some(m.acquired),
                _ => None,
            };
            m.due = n.map(|n| now + r.delay_ms(n));
        }
        false
    }

    /// Checks the dead letters of returns against the ones the model expects.
    fn limit_deaths(&self, has_dlx: bool, fx: &Effects, expected: &[u64]) {
        if has_dlx {
            let got: Vec<(u64, DeadReason)> = fx.dead_letters.iter().map(|(m, r)| (seq_of(m), *r)).collect();
            let want: Vec<(u64, DeadReason)> =
                expected.iter().map(|s| (*s, DeadReason::DeliveryLimit)).collect();
            assert_eq!(got, want);
            assert_eq!(fx.dropped_by_limit, 0);
        } else {
            assert!(fx.dead_letters.is_empty());
            assert_eq!(fx.dropped_by_limit, expected.len() as u64);
        }
    }

    /// A delivered seq: mostly one still unacked, sometimes any ever delivered (maybe settled).
    fn pick(&self, i: usize) -> Option<u64> {
        if !i.is_multiple_of(4) && !self.unacked.is_empty() {
            return self.unacked.keys().nth((i / 4) % self.unacked.len()).copied();
        }
        (!self.delivered.is_empty()).then(|| self.delivered[(i / 4) % self.delivered.len()])
    }

    fn check(&self, q: &QueueState) {
        // Where the queue holds each message.
        let mut ready = BTreeSet::new();
        let mut bytes = 0;
        for level in &q.ready.levels {
            assert!(
                level.iter().zip(level.iter().skip(1)).all(|(a, b)| a.seq < b.seq),
                "level out of order"
            );
            for e in level {
                assert!(ready.insert(e.seq), "{} twice in ready", e.seq);
                bytes += e.msg.size();
            }
        }
        assert_eq!(q.ready.len, ready.len());
        assert_eq!(q.ready.bytes, bytes);
        assert_eq!(q.ready_bytes(), bytes);
        let mut held = ready.clone();
        for ((at, seq), e) in &q.delayed {
            assert_eq!(*seq, e.seq);
            assert!(held.insert(e.seq), "{} both ready and delayed", e.seq);
            assert_eq!(self.msgs[&e.seq].due, Some(*at), "due time of delayed {}", e.seq);
        }
        for (seq, u) in &q.unacked {
            assert_eq!(*seq, u.entry.seq);
            assert!(!held.contains(seq), "{seq} both queued and unacked");
            let o = self
                .unacked
                .get(seq)
                .unwrap_or_else(|| panic!("{seq} unacked in queue, not in model"));
            assert_eq!((u.channel, u.consumer), (o.channel, o.consumer), "owner of {seq}");
        }
        // Every published message is in exactly one place.
        let queued = self.queued();
        assert_eq!(held, queued, "ready+delayed vs model");
        assert_eq!(q.message_count() as usize, queued.len());
        assert_eq!(q.unacked_count() as usize, self.unacked.len());
        assert_eq!(
            q.unacked.keys().copied().collect::<BTreeSet<_>>(),
            self.unacked.keys().copied().collect()
        );
        assert!(
            self.gone
                .iter()
                .all(|s| !queued.contains(s) && !self.unacked.contains_key(s))
        );
        assert_eq!(
            queued.len() + self.unacked.len() + self.gone.len(),
            self.msgs.len()
        );
        assert_eq!(q.total_count() as usize, queued.len() + self.unacked.len());
        assert_eq!(q.is_empty(), queued.is_empty() && self.unacked.is_empty());
        // Consumers and their outstanding counts.
        assert_eq!(q.consumer_count() as usize, self.consumers.len());
        for c in &q.consumers {
            let n = self.outstanding.get(&c.spec.key).copied().unwrap_or(0);
            assert_eq!(c.unacked, n, "consumer {} unacked", c.spec.key);
            if c.spec.prefetch > 0 && !c.spec.no_ack {
                assert!(n <= c.spec.prefetch);
            }
        }
        for (c, n) in &self.outstanding {
            let real = self.unacked.values().filter(|o| o.consumer == Some(*c)).count();
            assert_eq!(*n as usize, real);
        }
        // Deadlines.
        let first_due = q.delayed.keys().next().map(|(at, _)| *at);
        match (first_due, q.ready.front_expiry()) {
            (None, None) => assert_eq!(q.next_deadline(), None),
            (a, b) => assert_eq!(q.next_deadline(), a.into_iter().chain(b).min()),
        }
    }
}

/// Dispatches with an always-true reserve and checks the deliveries against the model.
fn dispatch_step(q: &mut QueueState, m: &mut Model) {
    let mut fx = Effects::default();
    q.dispatch(m.now, |_| true, &mut fx);
    m.expiries(&fx);
    m.deliveries(&fx.deliveries);
    // With an always-true reserve, dispatch stops only when nobody has room.
    if q.ready.len > 0 {
        for c in &m.consumers {
            let n = m.outstanding.get(&c.key).copied().unwrap_or(0);
            assert!(
                c.prefetch > 0 && !c.no_ack && n >= c.prefetch,
                "consumer {} idle",
                c.key
            );
        }
    }
}

fn run(cfg: &Config, ops: &[Op]) {
    let mut q = QueueState::new("q", cfg.args());
    let args = q.args().clone();
    assert_eq!(args.dead_letter_exchange.is_some(), cfg.dlx);
    let mut m = Model {
        next_key: 1,
        ..Default::default()
    };
    let mut next_seq = 1u64;
    for op in ops {
        let now = m.now;
        let mut fx = Effects::default();
        match op {
            Op::Publish { ttl } => {
                let ttl = if cfg.dlx { *ttl } else { None };
                let s = next_seq;
                next_seq += 1;
                assert_eq!(
                    q.publish(msg(&s.to_string()), now, ttl, &mut fx),
                    Published::Enqueued
                );
                assert!(fx.dead_letters.is_empty() && fx.deliveries.is_empty());
                let eff = match (args.message_ttl, ttl) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                m.msgs.insert(
                    s,
                    MsgModel {
                        expires_at: eff.map(|t| now + t),
                        ..Default::default()
                    },
                );
            }
            Op::AddConsumer {
                channel,
                prefetch,
                no_ack,
            } => {
                let spec = ConsumerSpec {
                    no_ack: *no_ack,
                    ..consumer(m.next_key, channel.number(), *prefetch)
                };
                m.next_key += 1;
                q.add_consumer(spec.clone(), "/").unwrap();
                m.consumers.push(spec);
            }
            Op::RemoveConsumer(i) => {
                if !m.consumers.is_empty() {
                    let spec = m.consumers.remove(i % m.consumers.len());
                    assert_eq!(q.remove_consumer(spec.key).map(|s| s.key), Some(spec.key));
                } else {
                    assert!(q.remove_consumer(ConsumerKey(u64::MAX)).is_none());
                }
            }
            Op::Dispatch => dispatch_step(&mut q, &mut m),
            Op::Get { channel, no_ack } => {
                let before = m.queued();
                let r = q.get(*channel, *no_ack, now, &mut fx);
                m.expiries(&fx);
                match r {
                    Some((d, left)) => {
                        assert_eq!(d.consumer, None);
                        assert_eq!(d.channel, *channel);
                        assert_eq!(d.no_ack, *no_ack);
                        m.deliveries(std::slice::from_ref(&d));
                        assert_eq!(left, q.message_count());
                    }
                    None => {
                        // Only delayed messages (or none) remain.
                        assert_eq!(q.ready.len, 0);
                        assert!(before.len() >= q.message_count() as usize);
                    }
                }
            }
            Op::Ack(i) => {
                if let Some(s) = m.pick(*i) {
                    let expect = m.unacked.contains_key(&s);
                    assert_eq!(q.ack(s), expect);
                    if expect {
                        m.settle(s);
                        m.gone.insert(s);
                    }
                } else {
                    assert!(!q.ack(1_000_000));
                }
            }
            Op::AckMultiple { channel, upto } => {
                if let Some(top) = m.pick(*upto) {
                    let seqs: Vec<u64> = m
                        .unacked
                        .iter()
                        .filter(|(s, o)| **s <= top && o.channel == *channel)
                        .map(|(s, _)| *s)
                        .collect();
                    for s in seqs {
                        assert!(q.ack(s));
                        m.settle(s);
                        m.gone.insert(s);
                    }
                }
            }
            Op::Requeue { pick, how } => {
                if let Some(s) = m.pick(*pick) {
                    let expect = m.unacked.contains_key(&s);
                    assert_eq!(q.reject(s, Some(*how), now, &mut fx), expect);
                    let mut died = Vec::new();
                    if expect {
                        m.settle(s);
                        if m.requeue(&args, s, *how) {
                            died.push(s);
                        }
                    }
                    m.limit_deaths(cfg.dlx, &fx, &died);
                }
            }
            Op::Discard(i) => {
                if let Some(s) = m.pick(*i) {
                    let expect = m.unacked.contains_key(&s);
                    assert_eq!(q.reject(s, None, now, &mut fx), expect);
                    let got: Vec<(u64, DeadReason)> =
                        fx.dead_letters.iter().map(|(m, r)| (seq_of(m), *r)).collect();
                    if expect && cfg.dlx {
                        assert_eq!(got, [(s, DeadReason::Rejected)]);
                    } else {
                        assert!(got.is_empty());
                    }
                    assert_eq!(fx.dropped_by_limit, 0);
                    if expect {
                        m.settle(s);
                        m.gone.insert(s);
                    }
                }
            }
            Op::Release { channel, how } => {
                let seqs: Vec<u64> = m
                    .unacked
                    .iter()
                    .filter(|(_, o)| o.channel == *channel)
                    .map(|(s, _)| *s)
                    .collect();
                q.release_channel(*channel, *how, now, &mut fx);
                let mut died = Vec::new();
                for s in seqs {
                    m.settle(s);
                    if m.requeue(&args, s, *how) {
                        died.push(s);
                    }
                }
                m.limit_deaths(cfg.dlx, &fx, &died);
                assert!(m.unacked.values().all(|o| o.channel != *channel));
            }
            Op::Tick(dt) => {
                m.now += dt;
                q.tick(m.now, &mut fx);
                m.expiries(&fx);
                // Every due retry has left `delayed`.
                assert!(q.delayed.keys().all(|(at, _)| *at > m.now));
                if let Some(d) = q.next_deadline() {
                    assert!(d > m.now, "tick left due work behind");
                }
            }
        }
        assert!(fx.deliveries.is_empty() || matches!(op, Op::Dispatch));
        m.check(&q);
        if cfg.auto_dispatch {
            // As the server does after every operation.
            dispatch_step(&mut q, &mut m);
            m.check(&q);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn prop_random_operations_keep_invariants(
        cfg in config(),
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        run(&cfg, &ops);
    }

    #[test]
    fn prop_plain_queue_keeps_invariants(
        auto_dispatch in any::<bool>(),
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        let cfg = Config { dlx: false, limit: None, counts_all: false, ttl: None, retry: None, auto_dispatch };
        run(&cfg, &ops);
    }

    #[test]
    fn prop_dlx_and_limit_keep_invariants(
        limit in 0i64..3,
        counts_all in any::<bool>(),
        auto_dispatch in any::<bool>(),
        ops in prop::collection::vec(op(), 1..=60),
    ) {
        let cfg = Config { dlx: true, limit: Some(limit), counts_all, ttl: None, retry: None, auto_dispatch };
        run(&cfg, &ops);
    }
}
