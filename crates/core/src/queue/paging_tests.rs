//! Paging is invisible: a queue that keeps only a tiny budget of ready messages in memory (the
//! rest "on disk", a fake log here) behaves exactly like one that keeps everything, under
//! random operations — same deliveries in the same order with the same flags and counters,
//! same dead letters, same counts.

use super::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use warren_codec::{BasicProperties, FieldTable, FieldValue};

use crate::message::Message;

#[derive(Debug, Clone)]
enum Op {
    Publish { ttl: Option<u64>, size: usize },
    Consume { channel: u16, prefetch: u32 },
    Cancel(usize),
    Get { no_ack: bool },
    Ack(usize),
    Requeue { pick: usize, failed: bool },
    Discard(usize),
    Purge,
    Tick(u64),
}

/// Channel `n` of connection 0.
fn chan(n: u16) -> ChannelKey {
    ChannelKey::new(crate::ids::ConnId(0), n)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (prop::option::of((1u64..20).prop_map(|t| t * 100)), 0usize..40)
            .prop_map(|(ttl, size)| Op::Publish { ttl, size }),
        2 => (1u16..=3, 0u32..4).prop_map(|(channel, prefetch)| Op::Consume { channel, prefetch }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => any::<bool>().prop_map(|no_ack| Op::Get { no_ack }),
        4 => any::<usize>().prop_map(Op::Ack),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, failed)| Op::Requeue { pick, failed }),
        1 => any::<usize>().prop_map(Op::Discard),
        1 => Just(Op::Purge),
        2 => (0u64..10).prop_map(|t| Op::Tick(t * 100)),
    ]
}

/// The "disk": every persisted message by position (= seq here), until the queue removes it.
#[derive(Default)]
struct FakeLog {
    live: BTreeMap<StorePos, (MessageRef, Option<u64>)>,
}

struct Pair {
    plain: QueueState,
    paged: QueueState,
    log: FakeLog,
    now: u64,
    /// Unacked seqs (same in both queues), in delivery order.
    unacked: Vec<u64>,
    consumers: Vec<u64>,
    next_key: u64,
}

fn same_delivery(a: &Delivery, b: &Delivery) {
    assert_eq!(
        (
            a.seq,
            a.redelivered,
            a.delivery_count,
            a.acquired_count,
            a.consumer,
            a.no_ack
        ),
        (
            b.seq,
            b.redelivered,
            b.delivery_count,
            b.acquired_count,
            b.consumer,
            b.no_ack
        )
    );
    assert_eq!(a.msg.body, b.msg.body);
}

fn same_effects(a: &Effects, b: &Effects) {
    assert_eq!(a.deliveries.len(), b.deliveries.len(), "deliveries differ");
    for (x, y) in a.deliveries.iter().zip(&b.deliveries) {
        same_delivery(x, y);
    }
    let da: Vec<_> = a.dead_letters.iter().map(|(m, r)| (m.body.clone(), *r)).collect();
    let db: Vec<_> = b.dead_letters.iter().map(|(m, r)| (m.body.clone(), *r)).collect();
    assert_eq!(da, db, "dead letters differ");
    assert_eq!(a.dropped_by_limit, b.dropped_by_limit);
}

impl Pair {
    fn new(args: QueueArgs, budget: usize) -> Pair {
        let mut paged = QueueState::new("q", args.clone());
        paged.set_paging(budget, 1 << 20);
        Pair {
            plain: QueueState::new("q", args),
            paged,
            log: FakeLog::default(),
            now: 0,
            unacked: Vec::new(),
            consumers: Vec::new(),
            next_key: 1,
        }
    }

    /// The paged queue's store work: removed messages leave the fake log; purged paged ones too.
    fn store(&mut self) {
        let (removed, _) = self.paged.take_store_effects();
        for p in removed {
            self.log.live.remove(&p);
        }
        if let Some(Paged { from, .. }) = self.paged.take_purged_paged() {
            self.log.live.retain(|p, _| *p < from);
        }
        let _ = self.plain.take_store_effects();
    }

    /// The server's loop after an operation: dispatch; while the queue wants more from disk,
    /// page in (and tick again when the operation was a tick) and dispatch again.
    fn settle(&mut self, tick: bool, fa: &mut Effects, fb: &mut Effects) {
        self.plain.dispatch(self.now, |_| true, fa);
        self.paged.dispatch(self.now, |_| true, fb);
        self.store();
        while self.page_in(fb) {
            if tick {
                self.paged.tick(self.now, fb);
            }
            self.paged.dispatch(self.now, |_| true, fb);
            self.store();
        }
        for d in &fa.deliveries {
            if !d.no_ack {
                self.unacked.push(d.seq);
            }
        }
        same_effects(fa, fb);
        assert_eq!(self.plain.message_count(), self.paged.message_count());
        assert_eq!(self.plain.unacked_count(), self.paged.unacked_count());
        assert_eq!(self.plain.ready_bytes(), self.paged.ready_bytes());
        assert!(self.paged.in_memory_ready() <= 8 + self.unacked.len() + 1);
    }

    /// The next batch from the fake log, as the server reads it.
    fn page_in(&mut self, fb: &mut Effects) -> bool {
        let Some(req) = self.paged.page_request() else {
            return false;
        };
        let batch: Vec<Entry> = self
            .log
            .live
            .range(req.from..)
            .take(req.max_msgs)
            .map(|(&pos, (m, exp))| Entry {
                seq: pos.0,
                msg: m.clone(),
                redelivered: false,
                delivery_count: 0,
                acquired_count: 0,
                expires_at: *exp,
                pos: Some(pos),
            })
            .collect();
        let next = StorePos(batch.last().map_or(u64::MAX, |e| e.seq + 1));
        assert!(
            !batch.is_empty(),
            "messages counted as paged are missing from the log"
        );
        self.paged.page_in(batch, next, fb);
        self.store();
        true
    }

    /// basic.get as the server runs it: an empty in-memory list with messages on disk pages
    /// in and tries again.
    fn get_paged(&mut self, channel: ChannelKey, no_ack: bool, fb: &mut Effects) -> Option<(Delivery, u32)> {
        loop {
            let r = self.paged.get(channel, no_ack, self.now, fb);
            self.store();
            if r.is_some() || !self.page_in(fb) {
                return r;
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let mut fa = Effects::default();
        let mut fb = Effects::default();
        let mut tick = false;
        match op {
            Op::Publish { ttl, size } => {
                let seq = self.paged.next_seq();
                assert_eq!(seq, self.plain.next_seq());
                let m: MessageRef = Arc::new(Message::new(
                    "x",
                    "k",
                    BasicProperties::default(),
                    Bytes::from(format!("{seq:>width$}", width = *size)),
                ));
                let a = self
                    .plain
                    .publish_at(m.clone(), self.now, *ttl, Some(StorePos(seq)), &mut fa);
                let b = self
                    .paged
                    .publish_at(m.clone(), self.now, *ttl, Some(StorePos(seq)), &mut fb);
                assert_eq!(a, b);
                if b == Published::Enqueued {
                    self.log
                        .live
                        .insert(StorePos(seq), (m, self.paged.expiry(self.now, *ttl)));
                }
            }
            Op::Consume { channel, prefetch } => {
                let key = self.next_key;
                self.next_key += 1;
                let spec = ConsumerSpec {
                    key: ConsumerKey(key),
                    channel: chan(*channel),
                    tag: format!("c{key}").as_str().into(),
                    no_ack: false,
                    prefetch: *prefetch,
                    exclusive: false,
                    priority: 0,
                };
                self.plain.add_consumer(spec.clone(), "/").unwrap();
                self.paged.add_consumer(spec, "/").unwrap();
                self.consumers.push(key);
            }
            Op::Cancel(i) => {
                if !self.consumers.is_empty() {
                    let k = self.consumers.remove(i % self.consumers.len());
                    self.plain.remove_consumer(ConsumerKey(k));
                    self.paged.remove_consumer(ConsumerKey(k));
                }
            }
            Op::Get { no_ack } => {
                let a = self.plain.get(chan(9), *no_ack, self.now, &mut fa);
                let b = self.get_paged(chan(9), *no_ack, &mut fb);
                match (&a, &b) {
                    (Some((x, n)), Some((y, m))) => {
                        same_delivery(x, y);
                        assert_eq!(n, m);
                        if !no_ack {
                            self.unacked.push(x.seq);
                        }
                    }
                    (None, None) => {}
                    _ => panic!("basic.get differs: {a:?} / {b:?}"),
                }
            }
            Op::Ack(i) | Op::Discard(i) | Op::Requeue { pick: i, .. } => {
                if self.unacked.is_empty() {
                    return;
                }
                let seq = self.unacked.remove(i % self.unacked.len());
                match op {
                    Op::Ack(_) => {
                        assert_eq!(self.plain.ack(seq), self.paged.ack(seq));
                    }
                    Op::Discard(_) => {
                        self.plain.reject(seq, None, self.now, &mut fa);
                        self.paged.reject(seq, None, self.now, &mut fb);
                    }
                    Op::Requeue { failed, .. } => {
                        let how = if *failed { Return::Failed } else { Return::Returned };
                        self.plain.reject(seq, Some(how), self.now, &mut fa);
                        self.paged.reject(seq, Some(how), self.now, &mut fb);
                    }
                    _ => unreachable!(),
                }
            }
            Op::Purge => {
                assert_eq!(self.plain.purge(), self.paged.purge());
            }
            Op::Tick(dt) => {
                self.now += dt;
                self.plain.tick(self.now, &mut fa);
                self.paged.tick(self.now, &mut fb);
                tick = true;
            }
        }
        self.settle(tick, &mut fa, &mut fb);
    }
}

fn args(entries: &[(&str, FieldValue)]) -> QueueArgs {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(*k, v.clone());
    }
    QueueArgs::parse(&t, "q", "/").expect("valid queue arguments")
}

fn run(args: QueueArgs, ops: &[Op]) {
    let mut p = Pair::new(args, 4);
    for op in ops {
        p.apply(op);
    }
    // Drain everything through basic.get: same order to the end.
    loop {
        let mut fa = Effects::default();
        let mut fb = Effects::default();
        let a = p.plain.get(chan(99), true, p.now, &mut fa);
        let b = p.get_paged(chan(99), true, &mut fb);
        match (&a, &b) {
            (Some((x, _)), Some((y, _))) => same_delivery(x, y),
            (None, None) => break,
            _ => panic!("drain differs: {a:?} / {b:?}"),
        }
        p.settle(false, &mut fa, &mut fb);
    }
    assert_eq!(p.paged.paged().count, 0);
}

#[test]
fn a_backlog_pages_out_and_back_in_order() {
    let mut p = Pair::new(args(&[]), 4);
    for _ in 0..50 {
        p.apply(&Op::Publish { ttl: None, size: 3 });
    }
    assert_eq!(p.paged.in_memory_ready(), 4);
    assert_eq!(p.paged.paged().count, 46);
    assert_eq!(p.paged.message_count(), 50);
    p.apply(&Op::Consume {
        channel: 1,
        prefetch: 0,
    });
    assert_eq!(p.unacked, (1..=50).collect::<Vec<u64>>());
    assert_eq!(p.paged.paged().count, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn prop_paging_is_invisible(ops in prop::collection::vec(op(), 1..=80)) {
        run(args(&[]), &ops);
    }

    #[test]
    fn prop_paging_is_invisible_with_limits_ttl_and_dlx(
        max_len in 1i64..12,
        ttl in 0i64..8,
        limit in 0i64..3,
        ops in prop::collection::vec(op(), 1..=80),
    ) {
        run(
            args(&[
                ("x-dead-letter-exchange", FieldValue::str("dlx")),
                ("x-max-length", FieldValue::I64(max_len)),
                ("x-message-ttl", FieldValue::I64(ttl * 100)),
                ("x-delivery-limit", FieldValue::I64(limit)),
            ]),
            &ops,
        );
    }
}

/// At-least-once dead-lettering hands the store position over instead of removing it;
/// `x-dead-letter-strategy: at-most-once` (or no durable log) removes it with the message.
#[test]
fn dead_lettered_positions_wait_for_the_targets_unless_at_most_once() {
    for (strategy, at_least_once, want_handed) in [
        (None, true, true),
        (Some("at-most-once"), true, false),
        (None, false, false),
    ] {
        let mut entries = vec![("x-dead-letter-exchange", FieldValue::str("dlx"))];
        if let Some(s) = strategy {
            entries.push(("x-dead-letter-strategy", FieldValue::str(s)));
        }
        let mut q = QueueState::new("q", args(&entries));
        q.set_dead_letter_at_least_once(at_least_once);
        let mut fx = Effects::default();
        let m: MessageRef = Arc::new(Message::new(
            "x",
            "k",
            BasicProperties::default(),
            Bytes::from_static(b"m"),
        ));
        q.publish_at(m, 0, None, Some(StorePos(42)), &mut fx);
        let (d, _) = q.get(chan(1), false, 0, &mut fx).unwrap();
        q.reject(d.seq, None, 0, &mut fx);
        assert_eq!(fx.dead_letters.len(), 1);
        let (removed, _) = q.take_store_effects();
        if want_handed {
            assert_eq!(
                (fx.dead_letter_positions.clone(), removed),
                (vec![StorePos(42)], vec![])
            );
        } else {
            assert_eq!(
                (fx.dead_letter_positions.clone(), removed),
                (vec![], vec![StorePos(42)])
            );
        }
    }
}
