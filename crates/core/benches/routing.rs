//! Topic-routing benchmarks: 10,000 bindings with a mix of literal, `*` and `#` patterns.
//!
//! Two workloads: `topic` (5-word keys over a realistic vocabulary, a few destinations per key)
//! and `topic_heavy_fanout` (4-word keys over 12 words per position and wildcard-heavy patterns,
//! hundreds of destinations per key). For each:
//!
//! - `cached_key`: the same routing key every time (served by the route cache).
//! - `new_keys`: a different key every time, cycling through a pool far larger than the cache,
//!   so every route walks the trie (and pays for the cache insertion).
//! - `uncached_trie`: the same key stream with the cache disabled (the trie walk alone).
//!
//! Run with `cargo bench -p warren-core --bench routing`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warren_core::routing::topic::{DEFAULT_CACHE_CAPACITY, TopicIndex};

const BINDINGS: usize = 10_000;
const KEY_POOL: usize = 200_000;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A routing-key shape and how its binding patterns use wildcards.
struct Workload {
    name: &'static str,
    /// Vocabulary size at each word position; keys have `levels.len()` words.
    levels: &'static [usize],
    /// Percent of pattern words that are `*`.
    star_pct: usize,
    /// Percent of patterns whose last 1–3 words are replaced by a single `#`.
    tail_hash_pct: usize,
    /// Percent of patterns that start with `#.` (replacing their first 1–2 words).
    lead_hash_pct: usize,
}

/// `service.region.entity.event.severity`-style keys, a handful of destinations per key.
const TYPICAL: Workload = Workload {
    name: "topic",
    levels: &[50, 10, 40, 20, 5],
    star_pct: 15,
    tail_hash_pct: 15,
    lead_hash_pct: 3,
};

/// Short keys over a small vocabulary and wildcard-heavy patterns: every key matches hundreds
/// of the bindings, so the cost of collecting and deduplicating destinations dominates.
const HEAVY_FANOUT: Workload = Workload {
    name: "topic_heavy_fanout",
    levels: &[12, 12, 12, 12],
    star_pct: 30,
    tail_hash_pct: 20,
    lead_hash_pct: 10,
};

impl Workload {
    fn word(&self, level: usize, i: usize) -> String {
        format!("l{level}w{i}")
    }

    fn pattern(&self, rng: &mut Rng) -> String {
        let n = self.levels.len();
        let mut words: Vec<String> = (0..n)
            .map(|level| {
                if rng.below(100) < self.star_pct {
                    "*".to_owned()
                } else {
                    self.word(level, rng.below(self.levels[level]))
                }
            })
            .collect();
        if rng.below(100) < self.tail_hash_pct {
            words.truncate(n - 1 - rng.below(3));
            words.push("#".to_owned());
        }
        if rng.below(100) < self.lead_hash_pct {
            words.drain(..1 + rng.below(2));
            words.insert(0, "#".to_owned());
        }
        words.join(".")
    }

    fn key(&self, rng: &mut Rng) -> String {
        let words: Vec<String> = self
            .levels
            .iter()
            .enumerate()
            .map(|(level, &n)| self.word(level, rng.below(n)))
            .collect();
        words.join(".")
    }

    fn index(&self, cache_capacity: usize) -> TopicIndex<u32> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut ix = TopicIndex::with_cache_capacity(cache_capacity);
        let mut dest = 0u32;
        while ix.len() < BINDINGS {
            ix.bind(&self.pattern(&mut rng), dest);
            dest += 1;
        }
        ix
    }

    /// Distinct keys (or as many as the key space holds), in random order.
    fn key_pool(&self) -> Vec<String> {
        let space: usize = self.levels.iter().product();
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let mut seen = std::collections::HashSet::new();
        while seen.len() < KEY_POOL.min(space) {
            seen.insert(self.key(&mut rng));
        }
        seen.into_iter().collect()
    }
}

fn bench_workload(c: &mut Criterion, w: &Workload) {
    let keys = w.key_pool();
    let mut g = c.benchmark_group(w.name);
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    let ix = w.index(DEFAULT_CACHE_CAPACITY);
    let mut out = Vec::with_capacity(BINDINGS);
    let mut total = 0usize;
    for k in &keys[..10_000] {
        out.clear();
        ix.route(k, &mut out);
        total += out.len();
    }
    eprintln!(
        "{}: {} bindings, {} distinct keys, mean destinations per key {:.1}",
        w.name,
        ix.len(),
        keys.len(),
        total as f64 / 10_000.0
    );

    let hot = keys[0].clone();
    g.bench_function("cached_key", |b| {
        b.iter(|| {
            out.clear();
            ix.route(black_box(&hot), &mut out);
            black_box(out.len())
        })
    });

    // The pool is far larger than the cache, so a key never repeats before the cache turns over.
    assert!(keys.len() > 4 * DEFAULT_CACHE_CAPACITY);
    let mut i = 0usize;
    g.bench_function("new_keys", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            out.clear();
            ix.route(black_box(&keys[i]), &mut out);
            black_box(out.len())
        })
    });

    let ix = w.index(0);
    g.bench_function("uncached_trie", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            out.clear();
            ix.route(black_box(&keys[i]), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

fn topic(c: &mut Criterion) {
    bench_workload(c, &TYPICAL);
    bench_workload(c, &HEAVY_FANOUT);
}

criterion_group!(benches, topic);
criterion_main!(benches);
