//! Tests of message groups (`x-message-group-header`) and deduplication
//! (`x-deduplication-window`) in [`QueueState`], including a property test over random
//! operations: never two unacked messages of one group, and per-group delivery order equal to
//! publish order (a requeued message goes back to its group's head).

use super::*;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use warren_codec::{BasicProperties, FieldTable, FieldValue};

use crate::message::Message;

/// Channel `n` of connection 0.
fn chan(n: u16) -> ChannelKey {
    ChannelKey::new(crate::ids::ConnId(0), n)
}

fn queue(entries: &[(&str, FieldValue)]) -> QueueState {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(*k, v.clone());
    }
    QueueState::new("q", QueueArgs::parse(&t, "q", "/").expect("valid arguments"))
}

fn grouped(extra: &[(&str, FieldValue)]) -> QueueState {
    let mut e = vec![("x-message-group-header", FieldValue::str("order-id"))];
    e.extend(extra.iter().cloned());
    queue(&e)
}

/// A message `body` in group `group` (None = no header).
fn gmsg(body: &str, group: Option<&str>) -> MessageRef {
    let headers = group.map(|g| {
        let mut h = FieldTable::new();
        h.insert("order-id", FieldValue::str(g));
        h
    });
    Arc::new(Message::new(
        "",
        "q",
        BasicProperties {
            headers,
            ..Default::default()
        },
        Bytes::copy_from_slice(body.as_bytes()),
    ))
}

fn idmsg(body: &str, id: &str) -> MessageRef {
    Arc::new(Message::new(
        "",
        "q",
        BasicProperties {
            message_id: Some(id.into()),
            ..Default::default()
        },
        Bytes::copy_from_slice(body.as_bytes()),
    ))
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.msg.body.to_vec()).unwrap()
}

fn consumer(key: u64, prefetch: u32) -> ConsumerSpec {
    ConsumerSpec {
        key: ConsumerKey(key),
        channel: chan(key as u16),
        tag: format!("c{key}").into(),
        no_ack: false,
        prefetch,
        exclusive: false,
        priority: 0,
    }
}

fn pubg(q: &mut QueueState, body: &str, group: Option<&str>) {
    let mut fx = Effects::default();
    assert_eq!(
        q.publish(gmsg(body, group), 0, None, &mut fx),
        Published::Enqueued
    );
}

fn dispatch(q: &mut QueueState, now: u64) -> Vec<Delivery> {
    let mut fx = Effects::default();
    q.dispatch(now, |_| true, &mut fx);
    fx.deliveries
}

fn bodies(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(body).collect()
}

#[test]
fn one_in_flight_per_group_and_groups_in_parallel() {
    let mut q = grouped(&[]);
    for (b, g) in [
        ("a1", "A"),
        ("a2", "A"),
        ("b1", "B"),
        ("a3", "A"),
        ("b2", "B"),
        ("c1", "C"),
    ] {
        pubg(&mut q, b, Some(g));
    }
    pubg(&mut q, "u1", None);
    pubg(&mut q, "u2", None);
    q.add_consumer(consumer(1, 0), "/").unwrap();
    q.add_consumer(consumer(2, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    // One head per group, ungrouped messages flow freely; groups alternate consumers.
    assert_eq!(bodies(&ds), ["a1", "b1", "c1", "u1", "u2"]);
    assert_eq!(q.busy_groups(), 3);
    let seq_of = |ds: &[Delivery], b: &str| ds.iter().find(|d| body(d) == b).unwrap().seq;
    assert!(q.ack(seq_of(&ds, "a1")));
    let ds2 = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds2), ["a2"]);
    assert!(q.ack(seq_of(&ds, "b1")));
    assert!(q.ack(seq_of(&ds2, "a2")));
    let ds3 = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds3), ["a3", "b2"]);
}

#[test]
fn requeue_holds_the_group_head_and_dead_letter_releases() {
    let mut q = grouped(&[("x-dead-letter-exchange", FieldValue::str("dlx"))]);
    for b in ["a1", "a2", "a3"] {
        pubg(&mut q, b, Some("A"));
    }
    q.add_consumer(consumer(1, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds), ["a1"]);
    let mut fx = Effects::default();
    assert!(q.reject(ds[0].seq, Some(Return::Failed), 0, &mut fx));
    q.dispatch(0, |_| true, &mut fx);
    assert_eq!(
        bodies(&fx.deliveries),
        ["a1"],
        "the requeued head comes back first"
    );
    assert!(fx.deliveries[0].redelivered);
    let seq = fx.deliveries[0].seq;
    let mut fx = Effects::default();
    assert!(q.reject(seq, None, 0, &mut fx));
    assert_eq!(fx.dead_letters.len(), 1);
    q.dispatch(0, |_| true, &mut fx);
    assert_eq!(
        bodies(&fx.deliveries),
        ["a2"],
        "dead-lettering the head releases the next"
    );
}

#[test]
fn delayed_retry_blocks_only_its_group() {
    let mut q = grouped(&[
        ("x-delayed-retry-type", FieldValue::str("all")),
        ("x-delayed-retry-min", FieldValue::I32(100)),
    ]);
    pubg(&mut q, "a1", Some("A"));
    pubg(&mut q, "a2", Some("A"));
    pubg(&mut q, "b1", Some("B"));
    pubg(&mut q, "b2", Some("B"));
    q.add_consumer(consumer(1, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds), ["a1", "b1"]);
    let mut fx = Effects::default();
    q.reject(ds[0].seq, Some(Return::Failed), 0, &mut fx);
    assert!(q.ack(ds[1].seq));
    let ds = dispatch(&mut q, 10);
    assert_eq!(bodies(&ds), ["b2"], "group A waits for its delayed head");
    assert!(q.ack(ds[0].seq));
    assert!(dispatch(&mut q, 50).is_empty());
    let mut fx = Effects::default();
    q.tick(100, &mut fx);
    let ds = dispatch(&mut q, 100);
    assert_eq!(bodies(&ds), ["a1"]);
    assert!(q.ack(ds[0].seq));
    assert_eq!(bodies(&dispatch(&mut q, 100)), ["a2"]);
}

#[test]
fn channel_loss_requeues_heads_and_another_consumer_takes_over() {
    let mut q = grouped(&[]);
    for i in 0..4 {
        pubg(&mut q, &format!("a{i}"), Some("A"));
        pubg(&mut q, &format!("b{i}"), Some("B"));
    }
    q.add_consumer(consumer(1, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds), ["a0", "b0"]);
    q.remove_consumer(ConsumerKey(1));
    let mut fx = Effects::default();
    q.release_channel(chan(1), Return::Failed, 0, &mut fx);
    q.add_consumer(consumer(2, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    assert_eq!(bodies(&ds), ["a0", "b0"]);
    assert!(
        ds.iter()
            .all(|d| d.redelivered && d.consumer == Some(ConsumerKey(2)))
    );
}

#[test]
fn basic_get_respects_groups_and_no_ack_does_not_block() {
    let mut q = grouped(&[]);
    pubg(&mut q, "a1", Some("A"));
    pubg(&mut q, "a2", Some("A"));
    pubg(&mut q, "b1", Some("B"));
    let mut fx = Effects::default();
    let (d, _) = q.get(chan(9), false, 0, &mut fx).unwrap();
    assert_eq!(body(&d), "a1");
    let (d2, _) = q.get(chan(9), false, 0, &mut fx).unwrap();
    assert_eq!(body(&d2), "b1");
    assert!(q.get(chan(9), false, 0, &mut fx).is_none(), "a2 waits for a1");
    assert!(q.ack(d.seq));
    let (d3, _) = q.get(chan(9), true, 0, &mut fx).unwrap();
    assert_eq!(body(&d3), "a2");
    assert_eq!(q.busy_groups(), 1, "a no-ack delivery is settled at once");
}

#[test]
fn integer_group_values_and_purge_of_delayed() {
    let mut t = FieldTable::new();
    t.insert("order-id", FieldValue::I64(7));
    let m = Arc::new(Message::new(
        "",
        "q",
        BasicProperties {
            headers: Some(t),
            ..Default::default()
        },
        Bytes::from_static(b"x"),
    ));
    let mut q = grouped(&[("x-delayed-retry-type", FieldValue::str("all"))]);
    let mut fx = Effects::default();
    q.publish(m.clone(), 0, None, &mut fx);
    q.publish(m, 0, None, &mut fx);
    q.add_consumer(consumer(1, 0), "/").unwrap();
    let ds = dispatch(&mut q, 0);
    assert_eq!(ds.len(), 1);
    q.reject(ds[0].seq, Some(Return::Failed), 0, &mut fx);
    assert_eq!(q.busy_groups(), 1);
    q.purge();
    assert_eq!(q.busy_groups(), 0);
}

#[test]
fn dedup_drops_ids_seen_within_the_window() {
    let mut q = queue(&[("x-deduplication-window", FieldValue::I32(1000))]);
    let mut fx = Effects::default();
    assert_eq!(q.publish(idmsg("1", "m1"), 0, None, &mut fx), Published::Enqueued);
    assert_eq!(
        q.publish(idmsg("2", "m1"), 10, None, &mut fx),
        Published::Duplicate
    );
    assert_eq!(
        q.publish(idmsg("3", "m1"), 999, None, &mut fx),
        Published::Duplicate
    );
    assert_eq!(
        q.publish(idmsg("4", "m2"), 999, None, &mut fx),
        Published::Enqueued
    );
    assert_eq!(q.message_count(), 2);
    assert_eq!(q.duplicates_dropped(), 2);
    assert_eq!(
        q.publish(idmsg("5", "m1"), 1000, None, &mut fx),
        Published::Enqueued
    );
    // Without an id there is no deduplication.
    assert_eq!(
        q.publish(gmsg("6", None), 1000, None, &mut fx),
        Published::Enqueued
    );
    assert_eq!(
        q.publish(gmsg("7", None), 1000, None, &mut fx),
        Published::Enqueued
    );
}

#[test]
fn dedup_by_header_rejected_ids_are_not_remembered_and_rebuild() {
    let mut q = queue(&[
        ("x-deduplication-window", FieldValue::I32(1000)),
        ("x-deduplication-header", FieldValue::str("order-id")),
        ("x-max-length", FieldValue::I32(1)),
        ("x-overflow", FieldValue::str("reject-publish")),
    ]);
    let mut fx = Effects::default();
    assert_eq!(
        q.publish(gmsg("1", Some("o1")), 0, None, &mut fx),
        Published::Enqueued
    );
    assert_eq!(
        q.publish(gmsg("2", Some("o1")), 0, None, &mut fx),
        Published::Duplicate
    );
    assert_eq!(
        q.publish(gmsg("3", Some("o2")), 0, None, &mut fx),
        Published::Rejected
    );
    let (d, _) = q.get(chan(1), false, 0, &mut fx).unwrap();
    q.ack(d.seq);
    assert_eq!(
        q.publish(gmsg("4", Some("o2")), 1, None, &mut fx),
        Published::Enqueued
    );

    // Recovery: a fresh queue restored with the held messages remembers their ids.
    let mut r = queue(&[
        ("x-deduplication-window", FieldValue::I32(1000)),
        ("x-deduplication-header", FieldValue::str("order-id")),
    ]);
    r.restore([Entry {
        seq: 5,
        msg: gmsg("4", Some("o2")),
        redelivered: true,
        delivery_count: 0,
        acquired_count: 0,
        expires_at: None,
        pos: None,
    }]);
    r.rebuild_dedup(5000);
    assert_eq!(
        r.publish(gmsg("5", Some("o2")), 5001, None, &mut fx),
        Published::Duplicate
    );
    assert_eq!(
        r.publish(gmsg("6", Some("o2")), 6000, None, &mut fx),
        Published::Enqueued
    );
}

// ---------------------------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Publish { group: Option<u8> },
    AddConsumer { prefetch: u32 },
    RemoveConsumer(usize),
    Ack(usize),
    Requeue(usize, bool),
    Discard(usize),
    ReleaseChannel(usize),
    Get,
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::option::weighted(0.85, 0u8..5).prop_map(|group| Op::Publish { group }),
        2 => (0u32..4).prop_map(|prefetch| Op::AddConsumer { prefetch }),
        1 => (0usize..8).prop_map(Op::RemoveConsumer),
        5 => (0usize..16).prop_map(Op::Ack),
        2 => ((0usize..16), any::<bool>()).prop_map(|(i, f)| Op::Requeue(i, f)),
        1 => (0usize..16).prop_map(Op::Discard),
        1 => (0usize..8).prop_map(Op::ReleaseChannel),
        1 => Just(Op::Get),
        1 => (0u64..300).prop_map(Op::Tick),
    ]
}

struct Model {
    /// Per group: publish order of its message numbers.
    published: HashMap<u8, Vec<u32>>,
    /// Per group: how many of its messages were settled for good (acked or dead-lettered),
    /// which must be a prefix of the publish order.
    done: HashMap<u8, usize>,
    /// Unacked deliveries: seq → (group, message number, channel).
    unacked: Vec<(u64, Option<u8>, u32, ChannelKey)>,
    next: u32,
}

fn parse(d: &Delivery) -> (Option<u8>, u32) {
    let s = body(d);
    let (g, n) = s.split_once(':').unwrap();
    (g.parse().ok(), n.parse().unwrap())
}

fn run(ops: &[Op], retry: bool) {
    let mut extra = vec![("x-dead-letter-exchange", FieldValue::str("dlx"))];
    if retry {
        extra.push(("x-delayed-retry-type", FieldValue::str("all")));
        extra.push(("x-delayed-retry-min", FieldValue::I32(50)));
    }
    let mut q = grouped(&extra);
    let mut m = Model {
        published: HashMap::new(),
        done: HashMap::new(),
        unacked: Vec::new(),
        next: 0,
    };
    let mut consumers: Vec<ConsumerKey> = Vec::new();
    let mut next_key = 1;
    let mut now = 0;
    let observe = |m: &mut Model, ds: Vec<Delivery>| {
        for d in ds {
            let (g, n) = parse(&d);
            if let Some(g) = g {
                assert!(
                    !m.unacked.iter().any(|(_, ug, _, _)| *ug == Some(g)),
                    "two unacked messages of group {g}"
                );
                // The delivered message is the group's first not yet settled.
                let done = m.done.get(&g).copied().unwrap_or(0);
                assert_eq!(m.published[&g][done], n, "group {g} delivered out of order");
            }
            if !d.no_ack {
                m.unacked.push((d.seq, g, n, d.channel));
            }
        }
    };
    let settle_for_good = |m: &mut Model, i: usize| {
        let (_, g, n, _) = m.unacked.remove(i);
        if let Some(g) = g {
            let done = m.done.entry(g).or_insert(0);
            assert_eq!(m.published[&g][*done], n);
            *done += 1;
        }
    };
    for op in ops {
        let mut fx = Effects::default();
        match op {
            Op::Publish { group } => {
                let n = m.next;
                m.next += 1;
                let b = format!("{}:{n}", group.map(|g| g.to_string()).unwrap_or("-".into()));
                let g = group.map(|g| g.to_string());
                q.publish(gmsg(&b, g.as_deref()), now, None, &mut fx);
                if let Some(g) = group {
                    m.published.entry(*g).or_default().push(n);
                }
            }
            Op::AddConsumer { prefetch } => {
                q.add_consumer(consumer(next_key, *prefetch), "/").unwrap();
                consumers.push(ConsumerKey(next_key));
                next_key += 1;
            }
            Op::RemoveConsumer(i) => {
                if !consumers.is_empty() {
                    let k = consumers.remove(i % consumers.len());
                    q.remove_consumer(k);
                }
            }
            Op::Ack(i) => {
                if !m.unacked.is_empty() {
                    let i = i % m.unacked.len();
                    assert!(q.ack(m.unacked[i].0));
                    settle_for_good(&mut m, i);
                }
            }
            Op::Requeue(i, failed) => {
                if !m.unacked.is_empty() {
                    let i = i % m.unacked.len();
                    let how = if *failed { Return::Failed } else { Return::Returned };
                    assert!(q.reject(m.unacked[i].0, Some(how), now, &mut fx));
                    m.unacked.remove(i);
                }
            }
            Op::Discard(i) => {
                if !m.unacked.is_empty() {
                    let i = i % m.unacked.len();
                    assert!(q.reject(m.unacked[i].0, None, now, &mut fx));
                    settle_for_good(&mut m, i);
                }
            }
            Op::ReleaseChannel(i) => {
                let ch = chan(*i as u16 + 1);
                q.release_channel(ch, Return::Failed, now, &mut fx);
                m.unacked.retain(|u| u.3 != ch);
            }
            Op::Get => {
                if let Some((d, _)) = q.get(chan(100), false, now, &mut fx) {
                    observe(&mut m, vec![d]);
                }
            }
            Op::Tick(dt) => {
                now += dt;
                q.tick(now, &mut fx);
            }
        }
        q.dispatch(now, |_| true, &mut fx);
        observe(&mut m, std::mem::take(&mut fx.deliveries));
        assert_eq!(q.unacked_count() as usize, m.unacked.len());
    }
    // Drain: everything left comes out, each group in order.
    let mut fx = Effects::default();
    for (s, ..) in std::mem::take(&mut m.unacked) {
        q.reject(s, Some(Return::Returned), now, &mut fx);
    }
    loop {
        now += 10_000;
        q.tick(now, &mut fx);
        match q.get(chan(100), false, now, &mut fx) {
            Some((d, _)) => {
                observe(&mut m, vec![d.clone()]);
                q.ack(d.seq);
                let last = m.unacked.len() - 1;
                settle_for_good(&mut m, last);
            }
            None if q.message_count() == 0 => break,
            None => {}
        }
    }
    for (g, msgs) in &m.published {
        assert_eq!(
            m.done.get(g).copied().unwrap_or(0),
            msgs.len(),
            "group {g} fully processed"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_groups_one_in_flight_and_ordered(ops in prop::collection::vec(op(), 1..=80)) {
        run(&ops, false);
    }

    #[test]
    fn prop_groups_with_delayed_retry(ops in prop::collection::vec(op(), 1..=80)) {
        run(&ops, true);
    }
}
