//! Recovery benchmark: writes 1,000,000 messages of 16 bytes to one queue log (default 8 MiB
//! segments), acks every 10th, then times reopening it (scan, CRC, apply acks, copy payloads).
//!
//! `cargo run --release -p warren-store --example recovery_bench [messages]`

use std::sync::Arc;
use std::time::Instant;

use warren_store::{StdFs, Store, StoreOptions};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("warren-recovery-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = || StoreOptions {
        fs: Arc::new(StdFs),
        ..StoreOptions::default()
    };
    {
        let store = Store::open(&dir, opts()).expect("open store");
        let (mut log, _) = store.open_queue("bench").expect("open queue");
        let t = Instant::now();
        let mut acks = Vec::new();
        for i in 0..n {
            let pos = log.append(i, &i.to_le_bytes().repeat(2)).expect("append");
            if i % 10 == 0 {
                acks.push(pos);
            }
        }
        for p in acks {
            log.ack(p).expect("ack");
        }
        log.flush().expect("flush");
        store.syncer().sync_blocking().expect("sync");
        println!(
            "wrote {n} x 16 B (+{} acks) in {:?}, {} bytes on disk",
            n / 10,
            t.elapsed(),
            store.disk_usage()
        );
    }
    let store = Store::open(&dir, opts()).expect("reopen store");
    let t = Instant::now();
    let (log, recovered) = store.open_queue("bench").expect("reopen queue");
    let took = t.elapsed();
    assert_eq!(recovered.len() as u64, n - n.div_ceil(10));
    assert!(log.recovery_report().is_clean());
    println!(
        "recovered {} live messages from {} segments in {:?} ({:.0} msgs/s)",
        recovered.len(),
        log.recovery_report().segments_scanned,
        took,
        recovered.len() as f64 / took.as_secs_f64()
    );
    drop(log);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
