//! State shared by every task of a run: the monotonic clock origin all timestamps count from,
//! live counters for the once-a-second progress line, the [`Tally`] (accounting plus
//! latency histograms) that consumers lock once per read batch, and the readings of the machine
//! a run is judged by (process CPU time, the hypervisor's steal).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::accounting::Accounting;

/// Highest latency recorded exactly (60 s, in ns); larger values saturate.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Consumer-side results, behind one lock.
#[derive(Debug)]
pub struct Tally {
    /// Sequence accounting.
    pub acct: Accounting,
    /// End-to-end latency of every delivery of the run, ns.
    pub latency: Histogram<u64>,
    /// Latency since the last progress line, ns.
    pub interval: Histogram<u64>,
    /// First and last delivery times, ns since the origin.
    pub first_ns: Option<u64>,
    /// Last delivery time.
    pub last_ns: u64,
}

/// Shared state of one run.
#[derive(Debug)]
pub struct Shared {
    /// Clock origin: every body's timestamp is ns since this instant.
    pub origin: Instant,
    /// Messages written by all producers.
    pub published: AtomicU64,
    /// Publishes acked by the broker.
    pub confirmed: AtomicU64,
    /// Deliveries (duplicates included).
    pub consumed: AtomicU64,
    /// Distinct deliveries (what the drain waits for).
    pub unique: AtomicU64,
    tally: Mutex<Tally>,
    errors: Mutex<Vec<String>>,
}

/// A fresh latency histogram (3 significant figures).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("static bounds are valid")
}

impl Shared {
    /// State for `groups` delivery groups of `producers` producers.
    pub fn new(groups: usize, producers: usize) -> Self {
        Shared {
            origin: Instant::now(),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            tally: Mutex::new(Tally {
                acct: Accounting::new(groups, producers),
                latency: histogram(),
                interval: histogram(),
                first_ns: None,
                last_ns: 0,
            }),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Locks the tally (a poisoned lock still holds valid counters).
    pub fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an error from a task.
    pub fn error(&self, e: String) {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    /// Errors so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Process CPU time (user + system, all threads) in seconds, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    proc_cpu_seconds("self")
}

/// CPU time of process `pid` (or "self") in seconds, from `/proc/PID/stat` (USER_HZ = 100).
pub fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" closing the command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Time the hypervisor took from each CPU of this machine since boot ("steal" in
/// `/proc/stat`), in seconds, cpu0 first. Empty where `/proc/stat` cannot be read. On a shared
/// virtual machine a run's latency tail follows this more than anything the broker does, so a
/// run reports how much of it fell in its own window.
pub fn steal_seconds() -> Vec<f64> {
    std::fs::read_to_string("/proc/stat").map_or_else(|_| Vec::new(), |s| parse_steal(&s))
}

/// The steal column (the 8th value) of every `cpuN` line, USER_HZ = 100.
fn parse_steal(stat: &str) -> Vec<f64> {
    stat.lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|l| {
            l.split_whitespace()
                .nth(8)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0) as f64
                / 100.0
        })
        .collect()
}

/// Share of each CPU's time (0.0–1.0) the hypervisor took between two [`steal_seconds`]
/// readings `wall` seconds apart.
pub fn steal_share(before: &[f64], after: &[f64], wall: f64) -> Vec<f64> {
    if wall <= 0.0 {
        return Vec::new();
    }
    before
        .iter()
        .zip(after)
        .map(|(b, a)| ((a - b) / wall).clamp(0.0, 1.0))
        .collect()
}

/// A [`steal_share`] reading as the reports print it: `cpu0 1.5%  cpu1 0.0%`.
pub fn format_steal(share: &[f64]) -> String {
    share
        .iter()
        .enumerate()
        .map(|(i, v)| format!("cpu{i} {:.1}%", v * 100.0))
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_cpus_steal_column() {
        let stat = "cpu  10 0 20 300 4 0 5 70 0 0\n\
                    cpu0 5 0 10 150 2 0 3 25 0 0\n\
                    cpu1 5 0 10 150 2 0 2 45 0 0\n\
                    intr 12345 0 0\n\
                    cpufreq 1\n";
        assert_eq!(parse_steal(stat), vec![0.25, 0.45]);
        assert_eq!(steal_share(&[0.25, 0.45], &[0.75, 0.45], 5.0), vec![0.1, 0.0]);
        assert!(steal_share(&[0.0], &[1.0], 0.0).is_empty());
        assert_eq!(format_steal(&[0.1, 0.0]), "cpu0 10.0%  cpu1 0.0%");
    }

    #[test]
    fn reads_own_cpu_time() {
        let cpu = process_cpu_seconds().expect("/proc/self/stat");
        assert!(cpu >= 0.0);
    }
}
