//! Sequences of channel commands against `QueueState` (issue 11): publish, consume, cancel,
//! dispatch, get, ack, reject/nack, channel loss, unsend, purge and time passing, under
//! arbitrary queue arguments (max-length and overflow, TTL, delivery limit, dead-lettering,
//! single active consumer, priorities). Beyond "no panic" it checks the settlement invariants
//! against a model: a delivery tag settles at most once, `unacked_count` equals the deliveries
//! outstanding in the model, and ready + unacked = total.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use warren_codec::{BasicProperties, FieldTable, FieldValue, ShortStr};
use warren_core::Message;
use warren_core::args::QueueArgs;
use warren_core::queue::{ConsumerSpec, Effects, QueueState, Return};

#[derive(Arbitrary, Debug)]
struct Setup {
    max_length: Option<u8>,
    reject_publish: bool,
    ttl: Option<u16>,
    delivery_limit: Option<u8>,
    dlx: bool,
    single_active: bool,
    max_priority: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Publish { size: u8, ttl: Option<u16>, priority: Option<u8> },
    Consume { ch: u8, no_ack: bool, prefetch: u8, exclusive: bool, priority: i8 },
    Cancel { idx: u8 },
    Dispatch { budget: u8 },
    Get { ch: u8, no_ack: bool },
    Ack { idx: u8 },
    Reject { idx: u8, requeue: u8 },
    ReleaseChannel { ch: u8, failed: bool },
    Unsend { idx: u8 },
    Purge,
    Advance { ms: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let s = &input.setup;
    let mut t = FieldTable::new();
    if let Some(n) = s.max_length {
        t.insert("x-max-length", FieldValue::I64(n as i64));
    }
    if s.reject_publish {
        t.insert("x-overflow", FieldValue::str("reject-publish"));
    }
    if let Some(ms) = s.ttl {
        t.insert("x-message-ttl", FieldValue::I64(ms as i64));
    }
    if let Some(n) = s.delivery_limit {
        t.insert("x-delivery-limit", FieldValue::I64(n as i64));
    }
    if s.dlx {
        t.insert("x-dead-letter-exchange", FieldValue::str("dlx"));
    }
    if s.single_active {
        t.insert("x-single-active-consumer", FieldValue::Bool(true));
    }
    if let Some(p) = s.max_priority {
        t.insert("x-max-priority", FieldValue::I64((p % 11) as i64));
    }
    let Ok(args) = QueueArgs::parse(&t, "fuzz", "/") else {
        return;
    };
    let mut q = QueueState::new("fuzz", args);
    let mut now: u64 = 1_000;
    let mut next_key = 1u64;
    let mut consumers: Vec<ConsumerSpec> = Vec::new();
    // seq -> channel of every delivery outstanding (not settled) in the model.
    let mut outstanding: BTreeMap<u64, u64> = BTreeMap::new();
    let mut fx = Effects::default();

    let take = |fx: &mut Effects, outstanding: &mut BTreeMap<u64, u64>| {
        for d in fx.deliveries.drain(..) {
            if !d.no_ack {
                assert!(outstanding.insert(d.seq, d.channel).is_none(), "seq {} delivered twice", d.seq);
            }
        }
        fx.dead_letters.clear();
    };
    let pick = |outstanding: &BTreeMap<u64, u64>, idx: u8| -> Option<u64> {
        if outstanding.is_empty() {
            None
        } else {
            outstanding.keys().nth(idx as usize % outstanding.len()).copied()
        }
    };

    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Publish { size, ttl, priority } => {
                let props = BasicProperties {
                    priority: priority.map(|p| p % 12),
                    ..Default::default()
                };
                let m = Message::new("", "fuzz", props, Bytes::from(vec![0u8; size as usize]));
                q.publish(std::sync::Arc::new(m), now, ttl.map(u64::from), &mut fx);
            }
            Op::Consume { ch, no_ack, prefetch, exclusive, priority } => {
                let spec = ConsumerSpec {
                    key: next_key,
                    channel: (ch % 4) as u64,
                    tag: ShortStr::from(format!("c{next_key}")),
                    no_ack,
                    prefetch: prefetch as u32 % 8,
                    exclusive,
                    priority: priority as i32,
                };
                next_key += 1;
                if q.add_consumer(spec.clone(), "/").is_ok() {
                    consumers.push(spec);
                }
            }
            Op::Cancel { idx } => {
                if !consumers.is_empty() {
                    let c = consumers.remove(idx as usize % consumers.len());
                    assert!(q.remove_consumer(c.key).is_some());
                }
            }
            Op::Dispatch { budget } => {
                let mut left = budget as u32;
                q.dispatch(
                    now,
                    |_| {
                        if left == 0 {
                            false
                        } else {
                            left -= 1;
                            true
                        }
                    },
                    &mut fx,
                );
            }
            Op::Get { ch, no_ack } => {
                let _ = q.get((ch % 4) as u64, no_ack, now, &mut fx).map(|(d, _)| {
                    if !d.no_ack {
                        assert!(outstanding.insert(d.seq, d.channel).is_none());
                    }
                });
            }
            Op::Ack { idx } => {
                if let Some(seq) = pick(&outstanding, idx) {
                    assert!(q.ack(seq), "ack of outstanding seq {seq} refused");
                    outstanding.remove(&seq);
                    assert!(!q.ack(seq), "seq {seq} settled twice");
                }
            }
            Op::Reject { idx, requeue } => {
                if let Some(seq) = pick(&outstanding, idx) {
                    let how = match requeue % 3 {
                        0 => None,
                        1 => Some(Return::Failed),
                        _ => Some(Return::Returned),
                    };
                    assert!(q.reject(seq, how, now, &mut fx));
                    outstanding.remove(&seq);
                }
            }
            Op::ReleaseChannel { ch, failed } => {
                let ch = (ch % 4) as u64;
                let how = if failed { Return::Failed } else { Return::Returned };
                q.release_channel(ch, how, now, &mut fx);
                outstanding.retain(|_, c| *c != ch);
            }
            Op::Unsend { idx } => {
                if let Some(seq) = pick(&outstanding, idx) {
                    assert!(q.unsend(seq));
                    outstanding.remove(&seq);
                }
            }
            Op::Purge => {
                q.purge();
            }
            Op::Advance { ms } => {
                now += ms as u64;
                q.tick(now, &mut fx);
            }
        }
        take(&mut fx, &mut outstanding);
        assert_eq!(q.unacked_count() as usize, outstanding.len(), "unacked count drifted");
        assert_eq!(q.total_count(), q.message_count() + q.unacked_count());
    }
});
