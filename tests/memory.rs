//! Memory that comes back (issue 21), measured on the real `warren` binary in its own process
//! (RSS from /proc):
//! - bursts of connections opened and closed: RSS after each burst stays bounded and does not
//!   grow burst over burst (it grew by 90–110 MB per burst of 5,000 with glibc's allocator);
//! - a full `GET /api/queues` over many queues costs memory proportional to a chunk, not to
//!   the listing (it took 475 MB for 50,000 queues), and pagination answers as RabbitMQ's.
//!
//! Bounded for CI (about half a minute): `WARREN_BURST_CONNS` (default 2,000),
//! `WARREN_BURSTS` (3) and `WARREN_LISTING_QUEUES` (20,000) make it bigger.

mod common;

use std::time::{Duration, Instant};

use common::process::Warren;
use common::raw::Raw;
use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use warren_codec::methods::QueueDeclare;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// RSS once it stops falling (an allocator may return memory over a few seconds): the
/// smallest of the samples taken until two seconds pass without a new low, at most `secs`.
async fn settled_rss(w: &Warren, secs: u64) -> f64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut low = w.rss_mb();
    let mut since = Instant::now();
    while Instant::now() < end && since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = w.rss_mb();
        if now < low - 0.5 {
            low = now;
            since = Instant::now();
        }
    }
    low.min(w.rss_mb())
}

/// The lowest RSS seen until it is within `margin` MB of `base`, or until `secs` pass: jemalloc
/// gives freed pages back on a decay curve (about 10 s, from its background thread), in steps
/// that can be seconds apart, so "no new low for a while" is not "settled".
async fn rss_back_towards(w: &Warren, base: f64, margin: f64, secs: u64) -> f64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut low = w.rss_mb();
    while low >= base + margin && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(200)).await;
        low = low.min(w.rss_mb());
    }
    low
}

async fn open_connections(w: &Warren) -> usize {
    w.api("GET", "/api/overview").await.json()["object_totals"]["connections"]
        .as_u64()
        .unwrap_or(u64::MAX) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_bursts_give_memory_back() {
    let conns = env("WARREN_BURST_CONNS", 2000);
    let bursts = env("WARREN_BURSTS", 3).max(2);
    let w = Warren::start(&[]).await;
    let rss0 = settled_rss(&w, 5).await;
    let (mut held, mut after) = (Vec::new(), Vec::new());
    for burst in 0..bursts {
        // `conns` clients logged in at once (each with a channel), all held, then all closed.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let addr = w.addr;
            tasks.spawn(async move {
                // 2,000 logins at once: on a loaded 2-core machine one reply can take more
                // than the default 5 s; the burst as a whole is bounded below.
                let mut r = Raw::handshake_within(addr, 0, None, 50).await;
                r.open_channel(1).await;
                r
            });
        }
        let mut clients = Vec::with_capacity(conns);
        while let Some(r) = within(60, "a burst of connections", tasks.join_next()).await {
            clients.push(r.expect("a client logs in"));
        }
        assert_eq!(open_connections(&w).await, conns, "burst {burst}: all open");
        held.push(w.rss_mb());
        for mut c in clients.drain(..) {
            let _ = c.stream.shutdown().await;
        }
        drop(clients);
        let deadline = Instant::now() + Duration::from_secs(30);
        while open_connections(&w).await != 0 {
            assert!(
                Instant::now() < deadline,
                "burst {burst}: connections never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        after.push(rss_back_towards(&w, rss0, 12.0, 30).await);
    }
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ");
    println!(
        "connection bursts: {bursts} x {conns}; broker RSS {rss0:.1} MB at start; \
         held: {} MB; after close: {} MB",
        fmt(&held),
        fmt(&after)
    );
    // Later bursts reuse what the first one took: no growth burst over burst ...
    let first = after[0];
    for (i, a) in after.iter().enumerate().skip(1) {
        assert!(
            *a < first + 16.0,
            "RSS after burst {i} is {a:.1} MB, after the first {first:.1} MB: memory is not reused"
        );
    }
    // ... and what the connections held is given back, not kept.
    let peak = held.iter().copied().fold(0.0, f64::max);
    let last = after[after.len() - 1];
    assert!(
        last - rss0 < ((peak - rss0) / 2.0).max(24.0),
        "RSS stays at {last:.1} MB after every connection closed (start {rss0:.1}, held {peak:.1})"
    );
}

/// Declares `n` queues `q-00000`… over one connection, pipelined (no-wait), then waits until
/// the broker has them all. The connection is returned, to be held while measuring.
async fn declare_many(w: &Warren, n: usize) -> Raw {
    let mut r = Raw::handshake(w.addr, 0).await;
    r.open_channel(1).await;
    let mut buf = bytes::BytesMut::new();
    for i in 0..n {
        warren_codec::encode_method(
            &mut buf,
            1,
            &QueueDeclare {
                queue: format!("q-{i:05}").into(),
                nowait: true,
                ..Default::default()
            },
        );
    }
    r.send(&buf).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let totals = w.api("GET", "/api/overview").await.json()["object_totals"].clone();
        if totals["queues"].as_u64() == Some(n as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "only {totals} declared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r
}

/// Resets the kernel's peak-RSS mark of `pid` to its current RSS (`/proc/PID/clear_refs`, 5),
/// so `VmHWM` afterwards is the peak of what follows. False where that is not permitted.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_listing_costs_a_page_not_the_broker() {
    let n = env("WARREN_LISTING_QUEUES", 20_000);
    let w = Warren::start(&[]).await;
    let _declarer = declare_many(&w, n).await;
    let before = settled_rss(&w, 5).await;
    let exact_peak = reset_peak(w.pid);
    // Sampled too, in case the peak mark cannot be reset.
    let pid = w.pid;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_mem_mb(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(2));
            }
            peak
        })
    };
    let t = Instant::now();
    let all = w.api("GET", "/api/queues").await;
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sampled = sampler.join().unwrap();
    let peak = if exact_peak {
        proc_mem_mb(pid, "VmHWM").max(sampled)
    } else {
        sampled
    };
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some("application/json"));
    let list: Vec<Value> = serde_json::from_slice(&all.body).expect("a JSON array");
    assert_eq!(list.len(), n);
    assert_eq!(list[0]["name"], "q-00000");
    assert_eq!(list[n - 1]["name"], format!("q-{:05}", n - 1));
    assert_eq!(list[7]["messages"], 0);
    let growth = peak - before;
    println!(
        "GET /api/queues over {n} queues: {:.1} MB in {took:?}; broker RSS {before:.1} MB before, \
         peak {peak:.1} MB (+{growth:.1} MB, {})",
        all.body.len() as f64 / 1e6,
        if exact_peak { "VmHWM" } else { "sampled" }
    );
    // Before streaming the listing cost about 9.5 kB of RSS per queue (190 MB here); a chunked
    // listing costs its snapshot of names and a chunk or two.
    assert!(
        growth < 24.0 + n as f64 * 0.4e-3,
        "listing {n} queues took {growth:.1} MB of broker memory"
    );

    // Pagination answers as RabbitMQ 3.10's (checked side by side).
    let page = w.api("GET", "/api/queues?page=3&page_size=500").await.json();
    let keys: Vec<&str> = page.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "filtered_count",
            "item_count",
            "items",
            "page",
            "page_count",
            "page_size",
            "total_count"
        ]
    );
    assert_eq!(
        (&page["total_count"], &page["filtered_count"], &page["item_count"]),
        (&n.into(), &n.into(), &500.into())
    );
    assert_eq!(
        (&page["page"], &page["page_size"], &page["page_count"]),
        (&3.into(), &500.into(), &n.div_ceil(500).into())
    );
    assert_eq!(page["items"][0]["name"], "q-01000");
    assert_eq!(page["items"][0]["vhost"], "/");
    // Name filter (case-insensitive substring, or a regex), sort, columns.
    let f = w
        .api("GET", "/api/queues?page=1&page_size=5&name=Q-0001&sort=name&sort_reverse=true&columns=name,message_stats.publish")
        .await
        .json();
    assert_eq!((&f["filtered_count"], &f["total_count"]), (&10.into(), &n.into()));
    assert_eq!((&f["item_count"], &f["page_count"]), (&5.into(), &2.into()));
    assert_eq!(
        f["items"][0],
        serde_json::json!({"name": "q-00019", "message_stats": {"publish": 0}})
    );
    let re = w
        .api(
            "GET",
            "/api/queues?page=1&name=%5Eq-0000%5B12%5D%24&use_regex=true&columns=name",
        )
        .await
        .json();
    assert_eq!(
        re["items"],
        serde_json::json!([{"name": "q-00001"}, {"name": "q-00002"}])
    );
    let none = w.api("GET", "/api/queues?page=1&name=nomatch").await.json();
    assert_eq!(
        (&none["filtered_count"], &none["page_count"]),
        (&0.into(), &0.into())
    );
    // RabbitMQ's errors: 400 with its error names.
    for (q, error, reason) in [
        (
            "page=0",
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 0, page size undefined",
        ),
        (
            "page=1&page_size=501",
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 1, page size 501",
        ),
        (
            "page=1&page_size=x",
            "bad_request",
            "Pagination parameters are invalid",
        ),
        (
            "page=1000&page_size=500",
            "page_out_of_range",
            &format!("Page out of range, page: 1000 page size: 500, len: {n}"),
        ),
    ] {
        let r = w.api("GET", &format!("/api/queues?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(
            r.json(),
            serde_json::json!({"error": error, "reason": reason}),
            "{q}"
        );
    }
    // The other large listings share the helper.
    let x = w
        .api("GET", "/api/exchanges?page=1&page_size=2&columns=name")
        .await
        .json();
    assert_eq!(
        x["items"],
        serde_json::json!([{"name": ""}, {"name": "amq.direct"}])
    );
    let b: Vec<Value> = w
        .api("GET", "/api/bindings/%2f?columns=destination")
        .await
        .json()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(b.len(), n);
    assert_eq!(b[0], serde_json::json!({"destination": "q-00000"}));
}
