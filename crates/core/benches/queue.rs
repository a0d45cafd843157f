//! `QueueState` publish → dispatch → ack with one consumer (prefetch unlimited, manual ack),
//! one message per cycle. Target: ≥ 5,000,000 messages/s on one core.
//!
//! Messages are pre-built: each iteration publishes an `Arc::clone` of one of 1,024 prepared
//! `Arc<Message>`s (16-byte body), so the bench measures the queue, not message allocation. The
//! `Effects` is reused (its `deliveries` cleared each time), as the server's queue task does.
//!
//! - `cycle/one_by_one`: publish 1, dispatch, ack 1.
//! - `cycle/batch_64`: publish 64, dispatch (64 deliveries), ack the 64; reported per message.
//!
//! Run with `cargo bench -p warren-core --bench queue`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warren_codec::BasicProperties;
use warren_core::Message;
use warren_core::args::QueueArgs;
use warren_core::queue::{ConsumerSpec, Effects, QueueState};

fn queue() -> QueueState {
    let mut q = QueueState::new("bench", QueueArgs::default());
    q.add_consumer(
        ConsumerSpec {
            key: warren_core::ids::ConsumerKey(1),
            channel: warren_core::ids::ChannelKey::new(warren_core::ids::ConnId(0), 1),
            tag: "ctag".into(),
            no_ack: false,
            prefetch: 0,
            exclusive: false,
            priority: 0,
        },
        "/",
    )
    .expect("consumer");
    q
}

fn messages() -> Vec<Arc<Message>> {
    (0..1024)
        .map(|i| {
            Arc::new(Message::new(
                "amq.direct",
                "bench",
                BasicProperties {
                    delivery_mode: Some(1),
                    ..Default::default()
                },
                Bytes::from(format!("message {i:>8}").into_bytes()),
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let msgs = messages();
    let mut g = c.benchmark_group("cycle");

    g.throughput(Throughput::Elements(1));
    let mut q = queue();
    let mut fx = Effects::default();
    let mut i = 0usize;
    g.bench_function("one_by_one", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            q.publish(Arc::clone(&msgs[i]), 0, None, &mut fx);
            fx.deliveries.clear();
            q.dispatch(0, |_| true, &mut fx);
            let seq = fx.deliveries[0].seq;
            fx.deliveries.clear();
            black_box(q.ack(seq))
        })
    });
    assert_eq!(q.message_count() + q.unacked_count(), 0);

    const BATCH: usize = 64;
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut q = queue();
    let mut seqs = Vec::with_capacity(BATCH);
    g.bench_function("batch_64", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                i = (i + 1) & 1023;
                q.publish(Arc::clone(&msgs[i]), 0, None, &mut fx);
            }
            fx.deliveries.clear();
            q.dispatch(0, |_| true, &mut fx);
            seqs.clear();
            seqs.extend(fx.deliveries.drain(..).map(|d| d.seq));
            for &s in &seqs {
                black_box(q.ack(s));
            }
        })
    });
    assert_eq!(q.message_count() + q.unacked_count(), 0);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
