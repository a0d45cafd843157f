//! Direct-exchange routing through `Topology::route`: `amq.direct` with 10,000 queues, each bound
//! with its own routing key (`q.0` … `q.9999`). Target: ≥ 10,000,000 routes/s.
//!
//! - `direct_10k/same_key`: one key, over and over.
//! - `direct_10k/cycling_keys`: every iteration the next of the 10,000 bound keys (a different
//!   hash-table slot each time, as with many producers publishing to many queues).
//! - `direct_10k/unbound_key`: a key no queue is bound with (route to nothing).
//!
//! Each route returns a fresh `Routed` (its `Vec<QueueId>` is part of `route`'s cost).
//!
//! Run with `cargo bench -p warren-core --bench topology`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warren_codec::FieldTable;
use warren_core::topology::{QueueDeclare, Topology};

const QUEUES: usize = 10_000;

fn topology() -> (Topology, Vec<String>) {
    let mut t = Topology::new("/");
    let args = FieldTable::new();
    let mut keys = Vec::with_capacity(QUEUES);
    for i in 0..QUEUES {
        let name = format!("q.{i}");
        t.declare_queue(&QueueDeclare {
            name: &name,
            passive: false,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: &args,
            owner: warren_core::ids::ConnId(0),
            server_named: false,
        })
        .expect("declare");
        t.bind_queue(&name, "amq.direct", &name, &args).expect("bind");
        keys.push(name);
    }
    (t, keys)
}

fn bench(c: &mut Criterion) {
    let (t, keys) = topology();
    // Sanity: every key reaches exactly its queue.
    for k in keys.iter().step_by(997) {
        let r = t.route("amq.direct", &[k.as_str()], None).expect("route");
        assert_eq!(r.queues.len(), 1);
        assert_eq!(Some(r.queues[0]), t.queue(k).map(|q| q.id));
    }
    assert!(t.route("amq.direct", &["nope"], None).unwrap().queues.is_empty());

    let mut g = c.benchmark_group("direct_10k");
    g.throughput(Throughput::Elements(1));
    let key = keys[4242].as_str();
    g.bench_function("same_key", |b| {
        b.iter(|| black_box(t.route(black_box("amq.direct"), &[black_box(key)], None).unwrap()))
    });
    let mut i = 0usize;
    g.bench_function("cycling_keys", |b| {
        b.iter(|| {
            i = if i + 1 == keys.len() { 0 } else { i + 1 };
            black_box(
                t.route(black_box("amq.direct"), &[keys[i].as_str()], None)
                    .unwrap(),
            )
        })
    });
    g.bench_function("unbound_key", |b| {
        b.iter(|| {
            black_box(
                t.route(black_box("amq.direct"), &[black_box("no.such.key")], None)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
