//! Tests of consumer failover in [`QueueState`] (issue 15): the single-active-consumer
//! activation rule (after the active consumer is cancelled or lost, the next one is served
//! only once the old one holds no unacked messages, and then it is), and the requeue-position
//! rule (messages returned by a channel's release go back to their original positions, for
//! plain, single-active-consumer, priority and message-group queues and ahead of a paged-out
//! backlog). A property test drives random operations and checks that every delivery takes
//! exactly the message queue order says, and that no consumer with room is left idle.

use super::*;

use std::collections::BTreeMap;
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

fn sac() -> QueueState {
    queue(&[("x-single-active-consumer", FieldValue::Bool(true))])
}

/// A message `body` with `priority` and, if given, group `group` (header `g`).
fn message(body: &str, priority: u8, group: Option<u8>) -> MessageRef {
    let headers = group.map(|g| {
        let mut h = FieldTable::new();
        h.insert("g", FieldValue::str(&format!("g{g}")));
        h
    });
    Arc::new(Message::new(
        "",
        "q",
        BasicProperties {
            priority: Some(priority),
            headers,
            ..Default::default()
        },
        Bytes::copy_from_slice(body.as_bytes()),
    ))
}

fn publish(q: &mut QueueState, body: &str) {
    let mut fx = Effects::default();
    assert_eq!(
        q.publish(message(body, 0, None), 0, None, &mut fx),
        Published::Enqueued
    );
}

fn consumer(key: u64, prefetch: u32, priority: i32) -> ConsumerSpec {
    ConsumerSpec {
        key: ConsumerKey(key),
        channel: chan(key as u16),
        tag: format!("c{key}").into(),
        no_ack: false,
        prefetch,
        exclusive: false,
        priority,
    }
}

fn dispatch(q: &mut QueueState) -> Vec<(ConsumerKey, String, bool)> {
    let mut fx = Effects::default();
    q.dispatch(0, |_| true, &mut fx);
    fx.deliveries
        .iter()
        .map(|d| {
            (
                d.consumer.expect("a consumer"),
                String::from_utf8(d.msg.body.to_vec()).expect("utf-8"),
                d.redelivered,
            )
        })
        .collect()
}

fn to(key: u64, bodies: &[&str], redelivered: bool) -> Vec<(ConsumerKey, String, bool)> {
    bodies
        .iter()
        .map(|b| (ConsumerKey(key), b.to_string(), redelivered))
        .collect()
}

fn release(q: &mut QueueState, channel: u16) {
    q.release_channel(chan(channel), Return::Failed, 0, &mut Effects::default());
}

#[test]
fn sac_cancelled_holder_blocks_until_its_channel_closes() {
    let mut q = sac();
    q.add_consumer(consumer(1, 3, 0), "/").unwrap();
    q.add_consumer(consumer(2, 0, 0), "/").unwrap();
    for b in ["m0", "m1", "m2", "m3", "m4"] {
        publish(&mut q, b);
    }
    assert_eq!(dispatch(&mut q), to(1, &["m0", "m1", "m2"], false));
    // basic.cancel while holding three: nobody is served, m3 and m4 wait.
    q.remove_consumer(ConsumerKey(1));
    assert_eq!(q.active_consumer(), None);
    assert!(dispatch(&mut q).is_empty());
    publish(&mut q, "m5");
    assert!(dispatch(&mut q).is_empty());
    // The channel closes: the returned messages come first, in order, then the rest.
    release(&mut q, 1);
    assert_eq!(q.active_consumer(), Some(ConsumerKey(2)));
    let mut want = to(2, &["m0", "m1", "m2"], true);
    want.extend(to(2, &["m3", "m4", "m5"], false));
    assert_eq!(dispatch(&mut q), want);
}

#[test]
fn sac_cancelled_holder_acking_its_last_message_activates_the_next() {
    let mut q = sac();
    q.add_consumer(consumer(1, 2, 0), "/").unwrap();
    q.add_consumer(consumer(2, 0, 0), "/").unwrap();
    for b in ["m0", "m1", "m2"] {
        publish(&mut q, b);
    }
    assert_eq!(dispatch(&mut q), to(1, &["m0", "m1"], false));
    q.remove_consumer(ConsumerKey(1));
    assert!(q.ack(1));
    assert!(dispatch(&mut q).is_empty(), "one message still held");
    // A reject of the last one (requeue) also settles it: it goes back first.
    assert!(q.reject(2, Some(Return::Failed), 0, &mut Effects::default()));
    assert_eq!(q.active_consumer(), Some(ConsumerKey(2)));
    let mut want = to(2, &["m1"], true);
    want.extend(to(2, &["m2"], false));
    assert_eq!(dispatch(&mut q), want);
}

#[test]
fn sac_higher_priority_newcomer_waits_for_the_holder_to_settle() {
    let mut q = sac();
    q.add_consumer(consumer(1, 0, 0), "/").unwrap();
    publish(&mut q, "m0");
    assert_eq!(dispatch(&mut q), to(1, &["m0"], false));
    q.add_consumer(consumer(2, 0, 5), "/").unwrap();
    publish(&mut q, "m1");
    assert!(dispatch(&mut q).is_empty());
    assert_eq!(q.active_consumer(), Some(ConsumerKey(1)));
    assert!(q.ack(1));
    assert_eq!(q.active_consumer(), Some(ConsumerKey(2)));
    assert_eq!(dispatch(&mut q), to(2, &["m1"], false));
}

#[test]
fn sac_unsend_of_an_undelivered_message_counts_as_settled() {
    let mut q = sac();
    q.add_consumer(consumer(1, 0, 0), "/").unwrap();
    q.add_consumer(consumer(2, 0, 0), "/").unwrap();
    publish(&mut q, "m0");
    assert_eq!(dispatch(&mut q), to(1, &["m0"], false));
    q.remove_consumer(ConsumerKey(1));
    // The consumer's connection never wrote it: it goes back untouched.
    assert!(q.unsend(1, Some(ConsumerKey(1)), chan(1)));
    assert_eq!(dispatch(&mut q), to(2, &["m0"], false));
    // A late unsend from the old channel does not take it back from the new consumer.
    assert!(!q.unsend(1, Some(ConsumerKey(1)), chan(1)));
    assert_eq!(q.unacked_count(), 1);
}

#[test]
fn release_puts_messages_back_ahead_of_a_paged_backlog() {
    let mut q = queue(&[]);
    q.set_paging(2, 1 << 20);
    let mut fx = Effects::default();
    for i in 0..5u64 {
        let m = message(&format!("m{i}"), 0, None);
        assert_eq!(
            q.publish_at(m, 0, None, Some(StorePos(100 + i)), &mut fx),
            Published::Enqueued
        );
    }
    assert_eq!((q.in_memory_ready(), q.paged().count), (2, 3));
    q.add_consumer(consumer(1, 2, 0), "/").unwrap();
    assert_eq!(dispatch(&mut q), to(1, &["m0", "m1"], false));
    q.remove_consumer(ConsumerKey(1));
    release(&mut q, 1);
    // Back in memory ahead of everything still on disk.
    assert_eq!((q.in_memory_ready(), q.paged().count), (2, 3));
    assert_eq!(q.paged().from, StorePos(102));
    q.add_consumer(consumer(2, 0, 0), "/").unwrap();
    assert_eq!(dispatch(&mut q), to(2, &["m0", "m1"], true));
}

#[test]
fn release_restores_positions_in_priority_levels_and_groups() {
    let mut q = queue(&[
        ("x-max-priority", FieldValue::I64(5)),
        ("x-message-group-header", FieldValue::str("g")),
    ]);
    let mut fx = Effects::default();
    for (b, p, g) in [
        ("a0", 1, 0),
        ("b0", 5, 1),
        ("a1", 1, 0),
        ("b1", 5, 1),
        ("c0", 1, 2),
    ] {
        q.publish(message(b, p, Some(g)), 0, None, &mut fx);
    }
    q.add_consumer(consumer(1, 0, 0), "/").unwrap();
    assert_eq!(dispatch(&mut q), to(1, &["b0", "a0", "c0"], false));
    q.add_consumer(consumer(2, 0, 0), "/").unwrap();
    q.remove_consumer(ConsumerKey(1));
    // Groups stay held by the lost consumer until its messages are back.
    assert!(dispatch(&mut q).is_empty());
    release(&mut q, 1);
    let got = dispatch(&mut q);
    assert_eq!(got, to(2, &["b0", "a0", "c0"], true));
}

// ---------------------------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Sac,
    Priority,
    Groups,
}

impl Kind {
    fn queue(self) -> QueueState {
        match self {
            Kind::Plain => queue(&[]),
            Kind::Sac => sac(),
            Kind::Priority => queue(&[("x-max-priority", FieldValue::I64(2))]),
            Kind::Groups => queue(&[("x-message-group-header", FieldValue::str("g"))]),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Publish {
        priority: u8,
        group: u8,
    },
    AddConsumer {
        prefetch: u32,
        priority: i32,
    },
    /// basic.cancel: the consumer goes, its channel keeps its messages.
    Cancel(usize),
    /// The channel of a consumer (cancelled or not) closes.
    Close(usize),
    Ack(usize),
    Requeue(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u8..3).prop_map(|(priority, group)| Op::Publish { priority, group }),
        2 => (0u32..4, 0i32..2).prop_map(|(prefetch, priority)| Op::AddConsumer { prefetch, priority }),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => any::<usize>().prop_map(Op::Close),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Requeue),
    ]
}

/// What the test knows: ready messages (seq → priority, group, returned before), unacked ones
/// (seq → consumer and the message), consumers in registration order.
#[derive(Default)]
struct Model {
    ready: BTreeMap<u64, (u8, u8, bool)>,
    unacked: BTreeMap<u64, (ConsumerKey, (u8, u8, bool))>,
    /// (key, prefetch, priority), registered.
    consumers: Vec<(ConsumerKey, u32, i32)>,
    /// Every consumer ever added (so that closes can pick cancelled ones too).
    channels: Vec<ConsumerKey>,
    next_seq: u64,
}

impl Model {
    fn busy(&self, group: u8) -> bool {
        self.unacked.values().any(|(_, (_, g, _))| *g == group)
    }

    /// The seq queue order says goes next.
    fn expected(&self, kind: Kind) -> Option<u64> {
        let mut best: Option<(u64, u8)> = None;
        for (&s, &(p, g, _)) in &self.ready {
            if kind == Kind::Groups && self.busy(g) {
                continue;
            }
            let p = if kind == Kind::Priority { p } else { 0 };
            if best.is_none_or(|(_, bp)| p > bp) {
                best = Some((s, p));
            }
        }
        best.map(|(s, _)| s)
    }

    fn held(&self, key: ConsumerKey) -> u32 {
        self.unacked.values().filter(|(k, _)| *k == key).count() as u32
    }

    fn has_room(&self, c: &(ConsumerKey, u32, i32)) -> bool {
        c.1 == 0 || self.held(c.0) < c.1
    }

    /// The single active consumer as the rule says: none while a consumer other than the first
    /// registered one (by priority, then registration) holds messages.
    fn sac_active(&self) -> Option<ConsumerKey> {
        let top = self.consumers.iter().map(|c| c.2).max()?;
        let first = self.consumers.iter().find(|c| c.2 == top)?.0;
        let other_holds = self.unacked.values().any(|(k, _)| *k != first);
        (!other_holds).then_some(first)
    }

    fn check_delivery(&mut self, kind: Kind, d: &Delivery) {
        let want = self.expected(kind);
        assert_eq!(
            Some(d.seq),
            want,
            "delivered {} where queue order says {want:?}",
            d.seq
        );
        let key = d.consumer.expect("consumer delivery");
        assert!(
            self.consumers.iter().any(|c| c.0 == key),
            "delivery to a cancelled consumer {key}"
        );
        if kind == Kind::Sac {
            assert_eq!(
                self.sac_active(),
                Some(key),
                "delivery to {key}, not the active consumer"
            );
        }
        let m = self.ready.remove(&d.seq).expect("ready");
        assert_eq!(d.redelivered, m.2, "redelivered flag of {}", d.seq);
        self.unacked.insert(d.seq, (key, m));
    }

    /// After a dispatch: nobody who could take a message is left idle.
    fn check_idle(&self, kind: Kind) {
        if self.expected(kind).is_none() {
            return;
        }
        match kind {
            Kind::Sac => {
                if let Some(k) = self.sac_active() {
                    let c = self.consumers.iter().find(|c| c.0 == k).expect("registered");
                    assert!(!self.has_room(c), "active consumer {k} left idle with room");
                }
            }
            _ => assert!(
                self.consumers.iter().all(|c| !self.has_room(c)),
                "a consumer with room left idle"
            ),
        }
    }

    fn returned(&mut self, seq: u64) {
        let (_, (p, g, _)) = self.unacked.remove(&seq).expect("unacked");
        self.ready.insert(seq, (p, g, true));
    }
}

fn run(kind: Kind, ops: &[Op]) {
    let mut q = kind.queue();
    let mut m = Model {
        next_seq: 1,
        ..Default::default()
    };
    let mut next_key = 1u64;
    for op in ops {
        match *op {
            Op::Publish { priority, group } => {
                let s = m.next_seq;
                m.next_seq += 1;
                let mut fx = Effects::default();
                q.publish(message(&s.to_string(), priority, Some(group)), 0, None, &mut fx);
                m.ready.insert(s, (priority, group, false));
            }
            Op::AddConsumer { prefetch, priority } => {
                let k = next_key;
                next_key += 1;
                q.add_consumer(consumer(k, prefetch, priority), "/").unwrap();
                // Registration order within a priority: behind the others of that priority.
                let pos = m.consumers.partition_point(|c| c.2 >= priority);
                m.consumers.insert(pos, (ConsumerKey(k), prefetch, priority));
                m.channels.push(ConsumerKey(k));
            }
            Op::Cancel(i) => {
                if m.consumers.is_empty() {
                    continue;
                }
                let (k, ..) = m.consumers.remove(i % m.consumers.len());
                assert!(q.remove_consumer(k).is_some());
            }
            Op::Close(i) => {
                if m.channels.is_empty() {
                    continue;
                }
                let k = m.channels.remove(i % m.channels.len());
                // As the server does: the consumer goes first, then its messages come back.
                if let Some(pos) = m.consumers.iter().position(|c| c.0 == k) {
                    m.consumers.remove(pos);
                    q.remove_consumer(k);
                }
                release(&mut q, k.0 as u16);
                let held: Vec<u64> = m
                    .unacked
                    .iter()
                    .filter(|(_, (c, _))| *c == k)
                    .map(|(s, _)| *s)
                    .collect();
                for s in held {
                    m.returned(s);
                }
            }
            Op::Ack(i) | Op::Requeue(i) => {
                if m.unacked.is_empty() {
                    continue;
                }
                let s = *m.unacked.keys().nth(i % m.unacked.len()).expect("in range");
                if matches!(op, Op::Ack(_)) {
                    assert!(q.ack(s));
                    m.unacked.remove(&s);
                } else {
                    assert!(q.reject(s, Some(Return::Failed), 0, &mut Effects::default()));
                    m.returned(s);
                }
            }
        }
        let mut fx = Effects::default();
        q.dispatch(0, |_| true, &mut fx);
        for d in &fx.deliveries {
            m.check_delivery(kind, d);
        }
        m.check_idle(kind);
        assert_eq!(q.message_count() as usize, m.ready.len());
        assert_eq!(q.unacked_count() as usize, m.unacked.len());
        if kind == Kind::Sac {
            let holder_gone = m
                .unacked
                .values()
                .any(|(k, _)| !m.consumers.iter().any(|c| c.0 == *k));
            if holder_gone {
                assert_eq!(
                    q.active_consumer(),
                    None,
                    "no consumer is active while a lost one holds messages"
                );
            }
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Plain),
        Just(Kind::Sac),
        Just(Kind::Priority),
        Just(Kind::Groups)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every delivery is the message queue order names (returned messages at their original
    /// positions), single active consumer hand-over waits for the old holder and then happens.
    #[test]
    fn prop_failover_keeps_queue_order(kind in kind(), ops in prop::collection::vec(op(), 1..80)) {
        run(kind, &ops);
    }
}
