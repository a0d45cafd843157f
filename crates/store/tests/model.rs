//! Property test: random sequences of append / ack / set_counts / flush / read / reopen on a
//! small-segment log behave like a plain in-memory model of the live messages.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::TestDir;
use proptest::prelude::*;
use warren_store::{MsgPos, StdFs, Store, StoreOptions};

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Ack(usize),
    SetCounts(usize, u32, u32),
    Read(usize),
    /// Page everything back in with `read_batch` (`n` messages, `max_bytes` at a time).
    ReadAll(usize, usize),
    /// `ack_from` the i-th live message (a purge of what is left on disk).
    Purge(usize),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Append),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => (any::<usize>(), 0u32..100, 0u32..100).prop_map(|(i, d, a)| Op::SetCounts(i, d, a)),
        1 => any::<usize>().prop_map(Op::Read),
        1 => (1usize..20, 1usize..400).prop_map(|(n, b)| Op::ReadAll(n, b)),
        1 => any::<usize>().prop_map(Op::Purge),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug, PartialEq)]
struct Live {
    seq: u64,
    pos: MsgPos,
    payload: Bytes,
    counts: (u32, u32),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..200), seg in 100u64..600) {
        let dir = TestDir::new("model");
        let opts = StoreOptions { segment_size: seg, fs: Arc::new(StdFs), fsync: false };
        let store = Store::open(dir.path(), opts).unwrap();
        let (mut log, rec) = store.open_queue("m").unwrap();
        prop_assert!(rec.is_empty());
        let mut model: Vec<Live> = Vec::new();
        let mut next_seq = 0u64;
        let check = |log: &warren_store::QueueLog, rec: Vec<warren_store::Recovered>, model: &[Live]| {
            let got: Vec<Live> = rec
                .into_iter()
                .map(|r| Live { seq: r.seq, pos: r.pos, payload: r.payload, counts: (r.delivery_count, r.acquired_count) })
                .collect();
            assert_eq!(got, model);
            assert_eq!(log.live_count(), model.len() as u64);
            assert!(log.recovery_report().is_clean(), "{:?}", log.recovery_report());
        };
        for op in ops {
            match op {
                Op::Append(p) => {
                    let pos = log.append(next_seq, &p).unwrap();
                    model.push(Live { seq: next_seq, pos, payload: Bytes::from(p), counts: (0, 0) });
                    next_seq += 1;
                }
                Op::Ack(i) if !model.is_empty() => {
                    let m = model.remove(i % model.len());
                    log.ack(m.pos).unwrap();
                    log.ack(m.pos).unwrap_or(()); // twice is harmless (or the segment is gone)
                }
                Op::SetCounts(i, d, a) if !model.is_empty() => {
                    let n = model.len();
                    let m = &mut model[i % n];
                    log.set_counts(m.pos, d, a).unwrap();
                    m.counts = (d, a);
                }
                Op::Read(i) if !model.is_empty() => {
                    let m = &model[i % model.len()];
                    prop_assert_eq!(log.read(m.pos).unwrap(), m.payload.clone());
                }
                Op::ReadAll(n, max_bytes) if !model.is_empty() => {
                    let mut at = model[0].pos;
                    let mut got = Vec::new();
                    loop {
                        let (batch, next) = log.read_batch(at, n, max_bytes).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        prop_assert!(batch.len() <= n);
                        at = next;
                        got.extend(batch.into_iter().map(|r| (r.seq, r.pos, r.payload)));
                    }
                    let want: Vec<_> = model.iter().map(|m| (m.seq, m.pos, m.payload.clone())).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Purge(i) if !model.is_empty() => {
                    let i = i % model.len();
                    let purged = log.ack_from(model[i].pos).unwrap();
                    prop_assert_eq!(purged, (model.len() - i) as u64);
                    model.truncate(i);
                }
                Op::Flush => log.flush().unwrap(),
                Op::Reopen => {
                    drop(log);
                    let (l, rec) = store.open_queue("m").unwrap();
                    log = l;
                    check(&log, rec, &model);
                }
                _ => {}
            }
            prop_assert_eq!(log.live_count(), model.len() as u64);
        }
        drop(log);
        let (log, rec) = store.open_queue("m").unwrap();
        check(&log, rec, &model);
        if model.is_empty() {
            prop_assert_eq!(store.disk_usage(), 0);
        }
    }
}
