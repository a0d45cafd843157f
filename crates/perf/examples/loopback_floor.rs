//! The machine's own latency floor for scenario 4 of `compare.sh`: the same path as a broker's
//! (producer → process on another CPU → consumer, over loopback TCP, at a fixed rate), with
//! the broker replaced by a relay that copies bytes from one socket to the other and does
//! nothing else. Whatever tail it shows, no broker on this machine can go under.
//!
//! ```text
//! taskset -c 0 loopback_floor relay 127.0.0.1:5900 &
//! taskset -c 1 loopback_floor load 127.0.0.1:5900 --rate 100000 --secs 5
//! ```
//!
//! `load` sends 16-byte records (send time, sequence number), a write of what fell due every
//! 50 µs like `warren-perf --pacing tick`, and prints the end-to-end latency percentiles read
//! as warren-perf reads its own (the same histogram, [`Latency::from_histogram`]), with the
//! share of each CPU the hypervisor took during the run (as warren-perf reports it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use warren_perf::report::Latency;
use warren_perf::stats::{format_steal, histogram, steal_seconds, steal_share};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: f64| -> f64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("relay"), Some(addr)) => relay(addr),
        (Some("load"), Some(addr)) => load(addr, flag("--rate", 100_000.0), flag("--secs", 5.0)),
        _ => {
            eprintln!("usage: loopback_floor relay ADDR | load ADDR [--rate N] [--secs S]");
            std::process::exit(2);
        }
    }
}

/// Accepts a producer, then a consumer, and copies the first's bytes to the second.
fn relay(addr: &str) {
    let l = TcpListener::bind(addr).expect("bind");
    loop {
        let (mut from, _) = l.accept().expect("accept producer");
        let (mut to, _) = l.accept().expect("accept consumer");
        from.set_nodelay(true).ok();
        to.set_nodelay(true).ok();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

fn load(addr: &str, rate: f64, secs: f64) {
    // The relay takes the first connection as the producer: `connect` returns once the
    // connection is in the listener's accept queue, which is served in order.
    let mut prod = TcpStream::connect(addr).expect("connect producer");
    let mut cons = TcpStream::connect(addr).expect("connect consumer");
    prod.set_nodelay(true).ok();
    let origin = Instant::now();
    let steal0 = steal_seconds();
    let total = (rate * secs) as u64;
    let reader = std::thread::spawn(move || {
        let mut lat = histogram();
        let mut buf = vec![0u8; 64 * 1024];
        let mut have = 0;
        while lat.len() < total {
            let n = match cons.read(&mut buf[have..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = origin.elapsed().as_nanos() as u64;
            have += n;
            let whole = have / 16 * 16;
            for r in buf[..whole].chunks_exact(16) {
                let sent = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
                lat.saturating_record(now.saturating_sub(sent));
            }
            buf.copy_within(whole..have, 0);
            have -= whole;
        }
        lat
    });
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while sent < total {
        let due = ((origin.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        if due <= sent {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        out.clear();
        let now = origin.elapsed().as_nanos() as u64;
        for seq in sent..due {
            out.extend_from_slice(&now.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        prod.write_all(&out).expect("write");
        sent = due;
    }
    let lat = reader.join().expect("reader");
    let l = Latency::from_histogram(&lat);
    let steal = steal_share(&steal0, &steal_seconds(), origin.elapsed().as_secs_f64());
    println!(
        "{} msgs at {rate}/s: p50 {:.0} us, p95 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us, steal {}",
        lat.len(),
        l.p50_us,
        l.p95_us,
        l.p99_us,
        l.p999_us,
        l.max_us,
        format_steal(&steal)
    );
}
