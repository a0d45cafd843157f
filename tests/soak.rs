//! A bounded soak test (issue 11): many connections doing random valid operations (publish
//! with confirms, get, ack, nack-requeue, consume/cancel, bind/unbind, passive declares) while
//! a few others send garbage (random bytes, before and after a valid handshake). Afterwards
//! nothing is lost (every worker gets back exactly what it published), no connection, channel,
//! consumer or queue leaked (the broker's `/api/overview`), and the broker's RSS — the real
//! binary in its own process, sampled from /proc — is printed and bounded, and does not keep
//! growing in the second half of the run.
//!
//! Defaults keep it under a minute for CI: `WARREN_SOAK_SECS` (default 15),
//! `WARREN_SOAK_CONNS` (50) and `WARREN_SOAK_GARBAGE` (5) make it longer or bigger:
//! `WARREN_SOAK_SECS=600 WARREN_SOAK_CONNS=200 WARREN_SOAK_GARBAGE=20 cargo test --test soak -- --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::raw::Raw;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: a tiny deterministic generator per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

async fn worker(b: std::sync::Arc<String>, i: u64, end: Instant) -> (u64, u64) {
    let conn = lapin::Connection::connect(&b, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    let q = format!("soak-{i}");
    declare(&ch, &q).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1));
    let (mut sent, mut acked) = (0u64, 0u64);
    let mut n = 0u64;
    while Instant::now() < end {
        match rng.next() % 10 {
            0..=3 => {
                n += 1;
                let size = (rng.next() % 4096) as usize;
                let body = vec![(n % 251) as u8; size];
                let c = ch
                    .basic_publish(
                        "".into(),
                        q.as_str().into(),
                        Default::default(),
                        &body,
                        Default::default(),
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                assert!(c.is_ack());
                sent += 1;
            }
            4 | 5 => {
                if let Some(m) = ch.basic_get(q.as_str().into(), Default::default()).await.unwrap() {
                    m.delivery.ack(Default::default()).await.unwrap();
                    acked += 1;
                }
            }
            6 => {
                if let Some(m) = ch.basic_get(q.as_str().into(), Default::default()).await.unwrap() {
                    m.delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                }
            }
            7 => {
                // A short-lived consumer with a prefetch: take up to 5, ack them, cancel.
                let cch = conn.create_channel().await.unwrap();
                cch.basic_qos(5, Default::default()).await.unwrap();
                let mut c = cch
                    .basic_consume(
                        q.as_str().into(),
                        "".into(),
                        Default::default(),
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
                for _ in 0..5 {
                    match tokio::time::timeout(Duration::from_millis(50), c.next()).await {
                        Ok(Some(Ok(d))) => {
                            d.ack(Default::default()).await.unwrap();
                            acked += 1;
                        }
                        _ => break,
                    }
                }
                cch.close(200, "bye".into()).await.unwrap();
            }
            8 => {
                ch.queue_bind(
                    q.as_str().into(),
                    "amq.direct".into(),
                    q.as_str().into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
                ch.queue_unbind(
                    q.as_str().into(),
                    "amq.direct".into(),
                    q.as_str().into(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            }
            _ => {
                let d = ch
                    .queue_declare(
                        q.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .unwrap();
                assert!(d.message_count() as u64 <= sent - acked);
            }
        }
    }
    // Drain what is left: nothing may be missing.
    while let Some(m) = ch.basic_get(q.as_str().into(), Default::default()).await.unwrap() {
        m.delivery.ack(Default::default()).await.unwrap();
        acked += 1;
    }
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .unwrap();
    conn.close(200, "done".into()).await.unwrap();
    (sent, acked)
}

async fn garbage(addr: std::net::SocketAddr, i: u64, end: Instant) -> u64 {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (i + 7));
    let mut rounds = 0;
    while Instant::now() < end {
        rounds += 1;
        let len = (rng.next() % 2048) as usize + 1;
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let mut stream = match rng.next() % 3 {
            0 => {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(&junk).await;
                s
            }
            1 => {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let _ = s.write_all(&warren_codec::frame::PROTOCOL_HEADER).await;
                let _ = s.write_all(&junk).await;
                s
            }
            _ => {
                let mut r = Raw::handshake(addr, 0).await;
                // A valid frame header (so the junk is read as a frame) or raw junk.
                if rng.next() % 2 == 0 {
                    let mut f = vec![1u8, 0, 1];
                    f.extend_from_slice(&(junk.len() as u32).to_be_bytes());
                    f.extend_from_slice(&junk);
                    f.push(0xCE);
                    r.send(&f).await;
                } else {
                    let _ = r.stream.write_all(&junk).await;
                }
                r.stream
            }
        };
        // Read whatever the broker answers until it closes (or give up and hang up).
        let mut buf = vec![0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
    rounds
}

/// The broker runs as its own process (the real binary), so its memory is measured apart from
/// the 200 lapin clients of this test process; leaks are checked through its HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_random_valid_traffic_with_garbage() {
    let secs = env("WARREN_SOAK_SECS", 15);
    let conns = env("WARREN_SOAK_CONNS", 50);
    let bad = env("WARREN_SOAK_GARBAGE", 5);
    let data = tempdir::Dir::new();
    let (port, http_port) = (free_port(), free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--amqp-listen", &format!("127.0.0.1:{port}")])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--prometheus-listen", "127.0.0.1:0"])
        .args(["--handshake-timeout", "2"])
        .arg("--data-dir")
        .arg(&data.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn warren");
    let pid = child.id();
    // A failing test never leaves its broker process behind.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    within(60, "the broker to listen", async {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let overview = || async move {
        let r = warren_server::http::client::request(
            "GET",
            &format!("http://127.0.0.1:{http_port}/api/overview"),
            Some(("guest", "guest")),
            None,
        )
        .await
        .expect("GET /api/overview");
        r.json()["object_totals"].clone()
    };
    let rss0 = proc_mem_mb(pid, "VmRSS");
    let end = Instant::now() + Duration::from_secs(secs);
    let url = std::sync::Arc::new(format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    let mut workers = Vec::new();
    for i in 0..conns {
        workers.push(tokio::spawn(worker(url.clone(), i, end)));
    }
    let mut garbage_tasks = Vec::new();
    for i in 0..bad {
        garbage_tasks.push(tokio::spawn(garbage(addr, i, end)));
    }
    // The broker's RSS every 200 ms, until the workers are done.
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while Instant::now() < end + Duration::from_secs(1) {
            samples.push(proc_mem_mb(pid, "VmRSS"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        samples
    });
    let (mut sent, mut acked) = (0, 0);
    for w in workers {
        let (s, a) = within(secs + 60, "a soak worker", w).await.expect("worker ok");
        assert_eq!(s, a, "a worker lost or duplicated messages");
        sent += s;
        acked += a;
    }
    let mut rounds = 0;
    for g in garbage_tasks {
        rounds += within(30, "a garbage sender", g).await.unwrap();
    }
    let samples = sampler.await.unwrap();
    let mut totals = overview().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while (totals["connections"] != 0 || totals["channels"] != 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        totals = overview().await;
    }
    assert_eq!(
        (
            &totals["connections"],
            &totals["channels"],
            &totals["queues"],
            &totals["consumers"]
        ),
        (&0.into(), &0.into(), &0.into(), &0.into()),
        "leaked objects: {totals}"
    );
    let rss1 = proc_mem_mb(pid, "VmRSS");
    // The second half of the run against the first: a leak keeps growing, a working set does not.
    let half = samples.len() / 2;
    let max_of = |s: &[f64]| s.iter().copied().fold(0.0, f64::max);
    let (first, second) = (max_of(&samples[..half]), max_of(&samples[half..]));
    let peak = proc_mem_mb(pid, "VmHWM").max(first).max(second);
    println!(
        "soak: {secs} s, {conns} connections, {bad} garbage senders ({rounds} garbage connections); \
         {sent} messages published, {acked} acked; broker RSS {rss0:.1} MB at start, max {first:.1} MB \
         in the first half and {second:.1} MB in the second, peak {peak:.1} MB, {rss1:.1} MB at the end"
    );
    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(peak - rss0 < 400.0, "broker RSS grew by {:.1} MB", peak - rss0);
    assert!(
        second < first * 1.5 + 32.0,
        "broker RSS kept growing: {first:.1} MB -> {second:.1} MB"
    );
}
